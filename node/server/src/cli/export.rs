//! `milvus-like export`: a collection's flushed rows, deletes applied, to one
//! Parquet or CSV file. The rows are read from the segment files exactly as
//! `read-back` reads them ([`for_each_live_batch`]), without the timestamp
//! column, so the file loads back with `insert --file`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use milvus_like_api::proto::SegmentState;
use milvus_like_api::retry::Transient;
use milvus_like_api::schema::CollectionSchema;
use parquet::arrow::ArrowWriter;

use super::admin::{collection_info, list_segments};
use super::args::{StorageArgs, UpstreamArgs};
use super::collection::schema_of;
use super::connect::Coordinator;
use super::error::{CliError, ExitCode};
use crate::columns::{Column, RowBatch};
use crate::storage::format::{VectorLayout, rows_record_batch};
use crate::storage::{SegmentStore, StorageError, for_each_live_batch};

/// What an export file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Parquet,
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The collection to export.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// The file to write: .parquet or .csv (or say --format). Replaced if it exists.
    #[arg(long)]
    pub out: PathBuf,
    /// The file's format, when its name does not tell.
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

impl From<StorageError> for CliError {
    fn from(e: StorageError) -> Self {
        let code = if e.is_transient() {
            ExitCode::Unavailable
        } else {
            ExitCode::Failure
        };
        CliError::new(code, format!("read the segment files: {e}"))
    }
}

pub async fn export(args: ExportArgs) -> Result<(), CliError> {
    let format = match args.format {
        Some(f) => f,
        None => format_of(&args.out)?,
    };
    let root = Coordinator::root(&args.upstream).await?;
    let info = collection_info(&root, &args.collection).await?;
    let schema = schema_of(&info)?;
    let data = Coordinator::data(&args.upstream).await?;
    let listed = list_segments(&data, &info).await?;
    let segments: Vec<_> = listed
        .segments
        .into_iter()
        .filter(|s| s.state != SegmentState::Dropped as i32)
        .collect();
    let unflushed = segments
        .iter()
        .filter(|s| s.state != SegmentState::Flushed as i32)
        .count();
    let store = SegmentStore::open(&args.storage.config())?;
    let partial = Partial(partial_path(&args.out));
    let file = File::create(&partial.0)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", partial.0.display())))?;
    let mut sink = Sink::new(format, file, &schema, &partial.0)?;
    let mut rows = 0u64;
    let outcome = for_each_live_batch(
        &store,
        &schema,
        &segments,
        &listed.delete_logs,
        |batch: RowBatch, _timestamps| {
            rows += batch.num_rows as u64;
            sink.write(&schema, batch)
        },
    )
    .await
    .and_then(|deleted| sink.finish().map(|()| deleted));
    let deleted = outcome?;
    std::fs::rename(&partial.0, &args.out).map_err(|e| {
        CliError::failure(format!(
            "cannot move {} to {}: {e}",
            partial.0.display(),
            args.out.display()
        ))
    })?;
    println!(
        "exported {rows} rows of {:?} to {} ({deleted} deleted rows left out, {} segments read)",
        args.collection,
        args.out.display(),
        segments.len()
    );
    if unflushed > 0 {
        eprintln!(
            "note: {unflushed} segments are not flushed yet, and only flushed rows are exported; \
             run `milvus-like flush -c {}` first to include every acknowledged row",
            args.collection
        );
    }
    Ok(())
}

fn format_of(path: &Path) -> Result<ExportFormat, CliError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet" | "pq") => Ok(ExportFormat::Parquet),
        Some("csv") => Ok(ExportFormat::Csv),
        _ => Err(CliError::usage(format!(
            "cannot tell the format of {} from its name; name it .parquet or .csv, or pass --format",
            path.display()
        ))),
    }
}

/// The file being written; removed unless renamed into place (an error, or Ctrl-C
/// dropping the export, leaves nothing behind).
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `out.parquet` → `out.parquet.partial`: written first, renamed when complete.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The open export file.
enum Sink {
    Parquet(Box<ArrowWriter<File>>),
    Csv(BufWriter<File>),
}

impl Sink {
    fn new(
        format: ExportFormat,
        file: File,
        schema: &CollectionSchema,
        path: &Path,
    ) -> Result<Self, CliError> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::failure(format!("cannot write {}: {e}", path.display()))
        };
        Ok(match format {
            ExportFormat::Parquet => {
                let arrow_schema = rows_record_batch(schema, RowBatch::empty(schema))
                    .map_err(|e| fail(&e))?
                    .schema();
                // The segment files' settings: row groups capped in rows and bytes,
                // so the writer holds at most one of them in memory.
                let props = crate::storage::format::writer_properties(
                    Vec::new(),
                    Some(schema),
                    VectorLayout::List,
                );
                Self::Parquet(Box::new(
                    ArrowWriter::try_new(file, arrow_schema, Some(props)).map_err(|e| fail(&e))?,
                ))
            }
            ExportFormat::Csv => {
                let mut w = BufWriter::with_capacity(1 << 20, file);
                let header: Vec<String> =
                    schema.fields().iter().map(|f| csv_text(&f.name)).collect();
                writeln!(w, "{}", header.join(",")).map_err(|e| fail(&e))?;
                Self::Csv(w)
            }
        })
    }

    fn write(&mut self, schema: &CollectionSchema, rows: RowBatch) -> Result<(), CliError> {
        let fail =
            |e: &dyn std::fmt::Display| CliError::failure(format!("cannot write the export: {e}"));
        match self {
            Self::Parquet(w) => {
                let batch = rows_record_batch(schema, rows).map_err(|e| fail(&e))?;
                w.write(&batch).map_err(|e| fail(&e))
            }
            Self::Csv(w) => {
                let mut line = String::new();
                for row in 0..rows.num_rows {
                    line.clear();
                    for (i, column) in rows.columns.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        csv_cell(&mut line, column, row);
                    }
                    line.push('\n');
                    w.write_all(line.as_bytes()).map_err(|e| fail(&e))?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<(), CliError> {
        let fail =
            |e: &dyn std::fmt::Display| CliError::failure(format!("cannot finish the export: {e}"));
        match self {
            Self::Parquet(w) => {
                let file = w.into_inner().map_err(|e| fail(&e))?;
                file.sync_all().map_err(|e| fail(&e))
            }
            Self::Csv(w) => {
                let file = w.into_inner().map_err(|e| fail(&e))?;
                file.sync_all().map_err(|e| fail(&e))
            }
        }
    }
}

/// One value as a CSV cell: numbers as Rust prints them (floats round-trip
/// exactly), vectors as quoted JSON arrays, strings quoted when they need it.
fn csv_cell(out: &mut String, column: &Column, row: usize) {
    use std::fmt::Write as _;
    let _ = match column {
        Column::Bool(v) => write!(out, "{}", v.get(row).copied().unwrap_or_default()),
        Column::Int(v) => write!(out, "{}", v.get(row).copied().unwrap_or_default()),
        Column::Long(v) => write!(out, "{}", v.get(row).copied().unwrap_or_default()),
        Column::Float(v) => write!(out, "{}", v.get(row).copied().unwrap_or_default()),
        Column::Double(v) => write!(out, "{}", v.get(row).copied().unwrap_or_default()),
        Column::Str(v) => {
            out.push_str(&csv_text(v.get(row).map_or("", String::as_str)));
            Ok(())
        }
        Column::Vector { dim, values } => {
            let d = *dim as usize;
            out.push_str("\"[");
            for (i, x) in values.row(d, row).into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{x}");
            }
            out.push_str("]\"");
            Ok(())
        }
    };
}

/// Quoted (with `""` for a quote) when the text holds a comma, quote, line break
/// or bracket, or starts or ends with a space: what the CSV reader reads back.
fn csv_text(s: &str) -> String {
    let needs = s.contains([',', '"', '\n', '\r', '[']) || s.starts_with(' ') || s.ends_with(' ');
    if needs {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::RowSource;
    use crate::cli::source::csv::CsvSource;
    use crate::cli::source::tests::schema;

    #[test]
    fn csv_exports_read_back_as_they_were() {
        let s = schema(2);
        let rows = RowBatch {
            columns: vec![
                Column::Long(vec![1, -2]),
                Column::Vector {
                    dim: 2,
                    values: vec![0.1, 1e-7, f32::MAX, -0.0].into(),
                },
                Column::Str(vec!["a, \"b\"".into(), " [x".into()]),
                Column::Int(vec![7, -300]),
            ],
            num_rows: 2,
        };
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.csv");
        let mut sink = Sink::new(
            ExportFormat::Csv,
            File::create(&path).expect("create"),
            &s,
            &path,
        )
        .expect("sink");
        sink.write(&s, rows.clone()).expect("write");
        sink.finish().expect("finish");
        let mut back = CsvSource::open(&path, &s, None).expect("header");
        assert_eq!(back.next_batch(10).expect("valid").expect("rows"), rows);
    }

    #[test]
    fn export_names_tell_the_format() {
        assert_eq!(
            format_of(Path::new("a.PARQUET")).expect("ok"),
            ExportFormat::Parquet
        );
        assert_eq!(
            format_of(Path::new("a.csv")).expect("ok"),
            ExportFormat::Csv
        );
        assert_eq!(
            format_of(Path::new("a.txt")).expect_err("unknown").code,
            ExitCode::Usage
        );
        assert_eq!(
            partial_path(Path::new("/t/a.csv")),
            PathBuf::from("/t/a.csv.partial")
        );
    }
}
