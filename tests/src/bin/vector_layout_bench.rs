//! How fast Parquet takes a FLOAT_VECTOR column in the two Arrow layouts it could
//! have, against a raw durable write of the same bytes, in one run (issue 14's
//! flush-write target; docs/benchmarks.md "Vector layout").
//!
//! - `list`: `FixedSizeList<Float32>(dim)`, what the insert logs hold today. arrow-rs
//!   computes repetition and definition levels per vector component.
//! - `binary`: `FixedSizeBinary(dim * 4)`, the little-endian floats of one vector as
//!   one value, as Milvus stores the column (internal/storage/serde.go): no levels.
//!
//! Both files have a primary key (int64) and a timestamp (uint64) column beside the
//! vectors, and the node's writer settings for vectors: no dictionary, no
//! statistics, no compression of the vector column (zstd for the others). Each side
//! is timed encoding into `std::io::sink()` and writing a file that is then fsynced
//! with its directory; the raw side is `std::fs::write` of the same input bytes and
//! the same fsyncs. Sides alternate, `sync` runs before each timed write, medians
//! are printed. Every file is read back and its vectors compared with the input.
//!
//! ```text
//! vector_layout_bench [--rows 200000] [--dim 128] [--repeat 5] [--dir DIR]
//! ```

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, Int64Array,
    RecordBatch, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use milvus_like_tests::measure::{fsync, median, settle};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    List,
    Binary,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Self::List => "FixedSizeList<Float32>",
            Self::Binary => "FixedSizeBinary(dim*4)",
        }
    }
}

struct Options {
    rows: usize,
    dim: usize,
    repeat: usize,
    dir: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Options> {
    let mut o = Options {
        rows: 200_000,
        dim: 128,
        repeat: 5,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => o.rows = value()?.parse().context("--rows")?,
            "--dim" => o.dim = value()?.parse().context("--dim")?,
            "--repeat" => o.repeat = value()?.parse().context("--repeat")?,
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("vector_layout_bench [--rows N] [--dim D] [--repeat R] [--dir DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    ensure!(
        o.rows > 0 && o.dim > 0 && o.repeat > 0,
        "rows, dim and repeat must be > 0"
    );
    Ok(o)
}

/// Deterministic pseudo-random floats (xorshift), as embeddings look: no repetition.
fn vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn schema(layout: Layout, dim: usize) -> anyhow::Result<SchemaRef> {
    let width = i32::try_from(dim).context("dim")?;
    let vector = match layout {
        Layout::List => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            width,
        ),
        Layout::Binary => DataType::FixedSizeBinary(width * 4),
    };
    Ok(Arc::new(Schema::new(vec![
        Field::new("pk", DataType::Int64, false),
        Field::new("_ts", DataType::UInt64, false),
        Field::new("vector", vector, false),
    ])))
}

fn batch(layout: Layout, dim: usize, values: &[f32], rows: usize) -> anyhow::Result<RecordBatch> {
    let width = i32::try_from(dim).context("dim")?;
    let vector: ArrayRef = match layout {
        Layout::List => Arc::new(FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            width,
            Arc::new(Float32Array::from(values.to_vec())),
            None,
        )?),
        Layout::Binary => {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Arc::new(FixedSizeBinaryArray::try_new(
                width * 4,
                arrow_buffer::Buffer::from(bytes),
                None,
            )?)
        }
    };
    let pks = Int64Array::from_iter_values(0..rows as i64);
    let ts = UInt64Array::from_iter_values((0..rows as u64).map(|i| (1 << 40) + i));
    Ok(RecordBatch::try_new(
        schema(layout, dim)?,
        vec![Arc::new(pks), Arc::new(ts), vector],
    )?)
}

/// The node's settings (storage/format.rs): no dictionary, zstd, 64 Ki-row groups;
/// the vector column uncompressed and without statistics.
fn properties(layout: Layout) -> WriterProperties {
    let leaf = match layout {
        Layout::List => ColumnPath::new(vec!["vector".into(), "list".into(), "item".into()]),
        Layout::Binary => ColumnPath::from("vector"),
    };
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_dictionary_enabled(false)
        .set_column_statistics_enabled(leaf.clone(), EnabledStatistics::None)
        .set_column_compression(leaf, Compression::UNCOMPRESSED)
        .build()
}

/// Writes in slices of 4096 rows, as the node does.
fn encode<W: std::io::Write + Send>(
    layout: Layout,
    batch: &RecordBatch,
    sink: W,
) -> anyhow::Result<W> {
    let mut writer = ArrowWriter::try_new(sink, batch.schema(), Some(properties(layout)))?;
    let mut offset = 0;
    while offset < batch.num_rows() {
        let n = 4096.min(batch.num_rows() - offset);
        writer.write(&batch.slice(offset, n))?;
        offset += n;
    }
    Ok(writer.into_inner()?)
}

/// The file's vectors as floats, whichever layout it has.
fn read_vectors(path: &Path) -> anyhow::Result<Vec<f32>> {
    let file = std::fs::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = batch.column_by_name("vector").context("no vector column")?;
        if let Some(list) = column.as_any().downcast_ref::<FixedSizeListArray>() {
            let values = list
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .context("list items are not Float32")?;
            out.extend_from_slice(values.values());
        } else if let Some(binary) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() {
            for i in 0..binary.len() {
                out.extend(
                    binary
                        .value(i)
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
        } else {
            bail!("unexpected vector column type {}", column.data_type());
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let o = parse()?;
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("vector-layout-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let values = vectors(o.rows * o.dim, 7);
    // The raw side writes what the three columns hold: pk, ts, the floats.
    let input_bytes = o.rows * (8 + 8 + o.dim * 4);
    let raw: Vec<u8> = (0..input_bytes).map(|i| (i % 251) as u8).collect();
    let batches = [
        (Layout::List, batch(Layout::List, o.dim, &values, o.rows)?),
        (
            Layout::Binary,
            batch(Layout::Binary, o.dim, &values, o.rows)?,
        ),
    ];
    println!(
        "{} rows x {}-d vectors, {:.1} MiB of input, {} runs per side, files in {}",
        o.rows,
        o.dim,
        input_bytes as f64 / MIB,
        o.repeat,
        dir.display()
    );
    let mut encode_times = [Vec::new(), Vec::new()];
    let mut write_times = [Vec::new(), Vec::new()];
    let mut raw_times = Vec::new();
    let mut sizes = [0u64; 2];
    for run in 0..o.repeat {
        for (i, (layout, b)) in batches.iter().enumerate() {
            let t = Instant::now();
            encode(*layout, b, std::io::sink())?;
            encode_times[i].push(t.elapsed());

            let path = dir.join(format!("{i}-{run}.parquet"));
            settle()?;
            let t = Instant::now();
            let file = std::fs::File::create(&path)?;
            let file = encode(*layout, b, std::io::BufWriter::with_capacity(1 << 20, file))?;
            file.into_inner()
                .map_err(|e| anyhow::anyhow!("flush: {e}"))?
                .sync_all()?;
            fsync(&dir)?;
            write_times[i].push(t.elapsed());
            sizes[i] = std::fs::metadata(&path)?.len();
            ensure!(
                read_vectors(&path)? == values,
                "{}: the vectors read back differ from those written",
                layout.name()
            );
            std::fs::remove_file(&path)?;
        }
        let path = dir.join(format!("raw-{run}.bin"));
        settle()?;
        let t = Instant::now();
        std::fs::write(&path, &raw)?;
        fsync(&path)?;
        fsync(&dir)?;
        raw_times.push(t.elapsed());
        std::fs::remove_file(&path)?;
    }
    let raw = median(raw_times);
    let rate = |d: Duration| input_bytes as f64 / MIB / d.as_secs_f64();
    println!();
    println!(
        "| layout | encode into a sink, ms | encode + write + fsync, ms | MiB/s of input | vs raw durable write | file MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, (layout, _)) in batches.iter().enumerate() {
        let e = median(std::mem::take(&mut encode_times[i]));
        let w = median(std::mem::take(&mut write_times[i]));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.1} |",
            layout.name(),
            e.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            rate(w),
            raw.as_secs_f64() / w.as_secs_f64(),
            sizes[i] as f64 / MIB
        );
        println!(
            "summary: layout={layout:?} encode_ms={:.1} write_ms={:.1} mib_per_s={:.1} vs_raw={:.3}",
            e.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            rate(w),
            raw.as_secs_f64() / w.as_secs_f64()
        );
    }
    println!(
        "| raw std::fs::write + fsync | | {:.1} | {:.1} | 1.00x | {:.1} |",
        raw.as_secs_f64() * 1e3,
        rate(raw),
        input_bytes as f64 / MIB
    );
    if o.dir.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
