//! The client commands as a user runs them: the built `milvus-like` binary as a
//! subprocess against `milvus-like standalone` (every role in one process; the
//! distributed roles are exercised by the ingest tests), checking exit codes and
//! output.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use milvus_like_api::proto;
use milvus_like_api::schema::CollectionSchema;
use milvus_like_node::columns::{Column, RowBatch};
use milvus_like_tests::{StandaloneProcess, TestDir, free_port, node_binary};

const DIM: usize = 4;

/// A standalone in `dir`, once its proxy answers and its data node owns every channel.
async fn standalone(dir: &TestDir) -> StandaloneProcess {
    let sa = StandaloneProcess::start_in(dir.path(), &[]).expect("standalone");
    sa.wait_ready().await.expect("ready");
    sa
}

/// Runs `milvus-like ARGS` against `sa` with the endpoints in the environment, as a
/// user would set them once.
fn cli(sa: &StandaloneProcess, args: &[&str]) -> Run {
    let mut cmd = Command::new(node_binary());
    cmd.args(args)
        .env("MILVUS_LIKE_PROXY_ENDPOINT", sa.proxy_endpoint())
        .env("MILVUS_LIKE_ROOTCOORD_ENDPOINTS", sa.endpoint())
        .env("MILVUS_LIKE_DATACOORD_ENDPOINTS", sa.datacoord_endpoint())
        .env("MILVUS_LIKE_STORAGE_ROOT", sa.segments());
    run(cmd, args)
}

/// Creates collection `name` shaped like `docs`: a vector of 4, a title and a year.
fn create_like_docs(sa: &StandaloneProcess, name: &str) -> Run {
    let args = [
        "collection",
        "create",
        name,
        "--dim",
        "4",
        "--field",
        "title:varchar(32)",
        "--field",
        "year:int32",
    ];
    cli(sa, &args).expect(0)
}

/// Creates `docs` and `vecs` (a vector of 4); returns what creating `docs` printed.
fn create_docs_and_vecs(sa: &StandaloneProcess) -> Run {
    let created = create_like_docs(sa, "docs");
    cli(sa, &["collection", "create", "vecs", "--dim", "4"]).expect(0);
    created
}

/// What a finished command printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with the output unless the command exited with `code`.
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = cmd
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run milvus-like {args:?}: {e}"));
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ milvus-like {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

/// The vector of key `pk`: exact in binary (multiples of 1/8), so text round-trips.
fn vector(pk: i64) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((pk * 7 + j as i64 * 3) % 64) as f32 / 8.0)
        .collect()
}

/// What one row of `docs` holds besides its key.
#[derive(Debug, Clone, PartialEq)]
struct Doc {
    vector: Vec<f32>,
    title: String,
    year: i32,
}

fn doc(pk: i64) -> Doc {
    Doc {
        vector: vector(pk),
        title: format!("title, \"{pk}\""),
        year: 1900 + (pk % 100) as i32,
    }
}

fn write_csv(path: &Path, keys: std::ops::Range<i64>) {
    let mut text = String::from("id,vector,title,year\n");
    for pk in keys {
        let d = doc(pk);
        let v: Vec<String> = d.vector.iter().map(ToString::to_string).collect();
        // Half the vectors as unquoted JSON arrays, half space separated.
        let cell = if pk % 2 == 0 {
            format!("[{}]", v.join(","))
        } else {
            v.join(" ")
        };
        text.push_str(&format!(
            "{pk},{cell},\"{}\",{}\n",
            d.title.replace('"', "\"\""),
            d.year
        ));
    }
    std::fs::write(path, text).expect("write csv");
}

fn write_npy(path: &Path, keys: std::ops::Range<i64>) {
    let rows = keys.end - keys.start;
    let body: Vec<u8> = keys.flat_map(vector).flat_map(f32::to_le_bytes).collect();
    write_npy_bytes(path, "<f4", &format!("({rows}, {DIM})"), &body);
}

/// An `.npy` file (version 1) of `descr` values of `shape`, `body` their bytes.
fn write_npy_bytes(path: &Path, descr: &str, shape: &str, body: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend(u16::try_from(header.len()).expect("short").to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(body);
    std::fs::write(path, bytes).expect("write npy");
}

fn docs_schema() -> CollectionSchema {
    let mut s = milvus_like_tests::test_schema("docs", DIM as u32);
    s.fields[1].name = "vector".into();
    s.fields.push(proto::FieldSchema {
        name: "title".into(),
        data_type: proto::DataType::Varchar.into(),
        max_length: 32,
        ..Default::default()
    });
    s.fields.push(proto::FieldSchema {
        name: "year".into(),
        data_type: proto::DataType::Int32.into(),
        ..Default::default()
    });
    CollectionSchema::try_from(s).expect("valid")
}

fn write_parquet(path: &Path, keys: std::ops::Range<i64>) {
    let schema = docs_schema();
    let pks: Vec<i64> = keys.collect();
    let rows = RowBatch {
        columns: vec![
            Column::Long(pks.clone()),
            Column::Vector {
                dim: DIM as u32,
                values: pks.iter().flat_map(|pk| vector(*pk)).collect(),
            },
            Column::Str(pks.iter().map(|pk| doc(*pk).title).collect()),
            Column::Int(pks.iter().map(|pk| doc(*pk).year).collect()),
        ],
        num_rows: pks.len(),
    };
    let batch = milvus_like_node::storage::format::rows_record_batch(&schema, rows).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// Every row of an exported Parquet file of `docs`, by key.
fn read_parquet_export(path: &Path) -> BTreeMap<i64, Doc> {
    let file = std::fs::File::open(path).expect("open export");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let mut out = BTreeMap::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "vector", "title", "year"]);
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let vectors = batch.column(1).as_fixed_size_list();
        let titles = batch.column(2).as_string::<i32>();
        let years = batch.column(3).as_primitive::<Int32Type>();
        for i in 0..batch.num_rows() {
            let v = vectors.value(i);
            out.insert(
                ids.value(i),
                Doc {
                    vector: v.as_primitive::<Float32Type>().values().to_vec(),
                    title: titles.value(i).to_owned(),
                    year: years.value(i),
                },
            );
        }
    }
    out
}

/// Every row of an exported CSV file of `docs`, by key, parsed by hand.
fn read_csv_export(path: &Path) -> BTreeMap<i64, Doc> {
    let text = std::fs::read_to_string(path).expect("read export");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,vector,title,year"));
    let mut out = BTreeMap::new();
    for line in lines {
        // 5,"[0.5,1,2,3]","title, ""5""",1905
        let (id, rest) = line.split_once(",\"[").expect("id then vector");
        let (vector, rest) = rest.split_once("]\",").expect("vector then title");
        let (title, year) = rest.rsplit_once(',').expect("title then year");
        // Quoted when it holds a comma or quote (ours do; random ones do not).
        let title = match title.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => title.to_owned(),
        };
        out.insert(
            id.parse().expect("id"),
            Doc {
                vector: vector
                    .split(',')
                    .map(|x| x.parse().expect("float"))
                    .collect(),
                title,
                year: year.parse().expect("year"),
            },
        );
    }
    out
}

#[tokio::test]
async fn collections_are_created_described_and_listed() {
    let dir = TestDir::new("cli-collections");
    let sa = standalone(&dir).await;
    let c = |args: &[&str]| cli(&sa, args);
    let created = create_docs_and_vecs(&sa);
    assert!(
        created
            .stdout
            .starts_with("created collection \"docs\" (id "),
        "{}",
        created.stdout
    );
    let again = c(&["collection", "create", "docs", "--dim", "4"]).expect(5);
    assert_eq!(
        again.stderr.trim(),
        "error: collection \"docs\" already exists; pick another name, or drop it first with \
         `milvus-like collection drop docs`"
    );
    let described = c(&["collection", "describe", "docs"]).expect(0);
    for want in [
        "collection \"docs\"",
        "FLOAT_VECTOR(4)",
        "VARCHAR(32)",
        "INT32",
        "_default",
    ] {
        assert!(
            described.stdout.contains(want),
            "{want}: {}",
            described.stdout
        );
    }
    let json = c(&["collection", "describe", "docs", "--output", "json"])
        .expect(0)
        .json();
    let fields: Vec<&str> = json["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(fields, ["id", "vector", "title", "year"]);
    assert_eq!(json["fields"][1]["dim"], 4);
    assert_eq!(json["metric"], "L2", "the default metric");
    let listed = c(&["collection", "list"]).expect(0);
    assert!(listed.stdout.contains("docs") && listed.stdout.contains("vecs"));
    let listed = c(&["collection", "list", "-o", "json"]).expect(0).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // The metric is chosen at creation and kept.
    c(&[
        "collection",
        "create",
        "angles",
        "--dim",
        "4",
        "--metric",
        "cosine",
    ])
    .expect(0);
    let described = c(&["collection", "describe", "angles"]).expect(0);
    assert!(
        described.stdout.contains("metric:      COSINE"),
        "{}",
        described.stdout
    );
    let json = c(&["collection", "describe", "angles", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(json["metric"], "COSINE");
    let bad = c(&[
        "collection",
        "create",
        "bad",
        "--dim",
        "4",
        "--metric",
        "hamming",
    ])
    .expect(2);
    assert!(
        bad.stderr
            .contains("metric \"hamming\" is unknown; it is l2, ip or cosine"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn unknown_collections_exit_3_with_a_sentence() {
    let dir = TestDir::new("cli-unknown");
    let sa = standalone(&dir).await;
    let c = |args: &[&str]| cli(&sa, args);
    let missing = c(&["collection", "describe", "nope"]).expect(3);
    assert_eq!(
        missing.stderr.trim(),
        "error: collection \"nope\" does not exist; `milvus-like collection list` shows the \
         collections"
    );
    c(&["insert", "-c", "nope", "--random", "10"]).expect(3);
    c(&["segments", "-c", "nope"]).expect(3);
}

#[tokio::test]
async fn collections_load_and_answer_searches_and_counts() {
    let dir = TestDir::new("cli-search");
    let sa = standalone(&dir).await;
    let c = |args: &[&str]| cli(&sa, args);
    create_like_docs(&sa, "docs");
    let csv = dir.path().join("docs.csv");
    write_csv(&csv, 0..100);
    c(&["insert", "-c", "docs", "--file", &csv.to_string_lossy()]).expect(0);
    let not_loaded = c(&["search", "-c", "docs", "--vector", "1,2,3,4"]).expect(5);
    assert!(
        not_loaded.stderr.contains("not loaded"),
        "{}",
        not_loaded.stderr
    );
    let loaded = c(&["collection", "load", "docs"]).expect(0);
    assert!(
        loaded.stdout.starts_with("loaded collection \"docs\""),
        "{}",
        loaded.stdout
    );
    assert_eq!(c(&["count", "-c", "docs"]).expect(0).stdout.trim(), "100");
    c(&["delete", "-c", "docs", "--keys", "3"]).expect(0);
    assert_eq!(c(&["count", "-c", "docs"]).expect(0).stdout.trim(), "99");
    let vector = |pk: i64| {
        doc(pk)
            .vector
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let (v7, v3) = (vector(7), vector(3));
    let found = c(&["search", "-c", "docs", "--vector", &v7, "--top-k", "3"]).expect(0);
    let lines: Vec<&str> = found.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {}", found.stdout);
    assert!(lines[0].contains("L2"), "{}", found.stdout);
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first, ["1", "1", "7", "0"], "{}", found.stdout);
    let json = c(&[
        "search", "-c", "docs", "--vector", &v3, "--vector", &v7, "-o", "json",
    ])
    .expect(0)
    .json();
    let results = json["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert!(
        results[0]
            .as_array()
            .expect("hits")
            .iter()
            .all(|h| h["id"] != 3),
        "a deleted row was found: {json}"
    );
    assert_eq!(results[1][0]["id"], 7);
    let wrong = c(&["search", "-c", "docs", "--vector", "1,2,3"]).expect(5);
    assert!(wrong.stderr.contains("dimension 3"), "{}", wrong.stderr);

    // Filters, queries and output fields.
    let late = c(&["count", "-c", "docs", "--filter", "year >= 1990"]).expect(0);
    assert_eq!(late.stdout.trim(), "10", "keys 90..99");
    let by_id = c(&[
        "query",
        "-c",
        "docs",
        "--ids",
        "50,3,7",
        "--output-fields",
        "title,year",
        "-o",
        "json",
    ])
    .expect(0)
    .json();
    let rows = by_id["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "3 is deleted: {by_id}");
    assert_eq!(rows[0]["id"], 7);
    assert_eq!(rows[0]["title"], doc(7).title);
    assert_eq!(rows[1]["id"], 50);
    assert_eq!(rows[1]["year"], doc(50).year);
    let page = c(&[
        "query",
        "-c",
        "docs",
        "--filter",
        "year < 1905",
        "--limit",
        "2",
        "--offset",
        "1",
    ])
    .expect(0);
    let keys: Vec<&str> = page.stdout.lines().skip(1).map(|l| l.trim()).collect();
    assert_eq!(keys, ["1", "2"], "{}", page.stdout);
    let filtered = c(&[
        "search",
        "-c",
        "docs",
        "--vector",
        &v7,
        "--top-k",
        "3",
        "--filter",
        "year > 1950 and title like 'title%'",
        "--output-fields",
        "year",
        "-o",
        "json",
    ])
    .expect(0)
    .json();
    let hits = filtered["results"][0].as_array().expect("hits");
    assert_eq!(hits.len(), 3, "{filtered}");
    for hit in hits {
        let year = hit["year"].as_i64().expect("year shown");
        assert!(year > 1950, "{filtered}");
        assert_eq!(year, i64::from(doc(hit["id"].as_i64().expect("id")).year));
    }
    // A file of queries: throughput, latency and recall against the truth
    // (keys 64 apart share a vector; the smaller key comes first).
    let queries = dir.path().join("queries.npy");
    write_npy(&queries, 10..20);
    let truth = dir.path().join("truth.npy");
    let ids: Vec<u8> = (10..20i64).flat_map(i64::to_le_bytes).collect();
    write_npy_bytes(&truth, "<i8", "(10, 1)", &ids);
    let run = c(&[
        "search",
        "-c",
        "docs",
        "--file",
        &queries.to_string_lossy(),
        "--truth",
        &truth.to_string_lossy(),
        "--top-k",
        "1",
        "--concurrency",
        "2",
        "--batch",
        "3",
        "-o",
        "json",
    ])
    .expect(0)
    .json();
    assert_eq!(run["queries"], 10, "{run}");
    assert_eq!(run["requests"], 4, "{run}");
    assert_eq!(run["recall"], 1.0, "{run}");
    assert!(run["qps"].as_f64().expect("qps") > 0.0, "{run}");
    let table = c(&["search", "-c", "docs", "--file", &queries.to_string_lossy()]).expect(0);
    assert!(table.stdout.starts_with("QUERIES"), "{}", table.stdout);
    let typo = c(&["query", "-c", "docs", "--filter", "yeer > 3"]).expect(5);
    assert!(
        typo.stderr.contains("unknown field \"yeer\""),
        "{}",
        typo.stderr
    );
    let broken = c(&["count", "-c", "docs", "--filter", "year >"]).expect(5);
    assert!(
        broken.stderr.contains("invalid filter at byte 6"),
        "{}",
        broken.stderr
    );

    c(&["collection", "release", "docs"]).expect(0);
    c(&["count", "-c", "docs"]).expect(5);
}

#[tokio::test]
async fn channels_and_nodes_show_every_role_and_the_data_nodes_channels() {
    let dir = TestDir::new("cli-channels");
    let sa = standalone(&dir).await;
    let c = |args: &[&str]| cli(&sa, args);
    let channels = c(&["channels"]).expect(0);
    assert!(
        channels.stdout.starts_with("balancer round_robin"),
        "{}",
        channels.stdout
    );
    let channels = c(&["channels", "-o", "json"]).expect(0).json();
    let owned = channels["channels"].as_array().expect("channels");
    assert_eq!(owned.len(), 3);
    let owners: HashSet<i64> = owned
        .iter()
        .map(|c| c["node_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(owners.len(), 1, "one data node owns every channel");
    let nodes = c(&["nodes"]).expect(0);
    for role in ["rootcoord", "datacoord", "datanode", "proxy", "querynode"] {
        assert!(nodes.stdout.contains(role), "{role}: {}", nodes.stdout);
    }
    assert!(
        nodes.stdout.contains("0,1,2"),
        "the data node's channels: {}",
        nodes.stdout
    );
}

#[tokio::test]
async fn files_load_read_back_export_and_load_again() {
    let dir = TestDir::new("cli");
    let sa = standalone(&dir).await;
    let c = |args: &[&str]| cli(&sa, args);
    let path = |name: &str| dir.path().join(name);
    create_docs_and_vecs(&sa);

    // Inserts from each kind of file, and random rows.
    let csv = path("docs.csv");
    write_csv(&csv, 0..100);
    let csv_arg = csv.to_string_lossy().into_owned();
    let inserted = c(&[
        "insert",
        "-c",
        "docs",
        "--file",
        &csv_arg,
        "--batch-rows",
        "16",
    ])
    .expect(0);
    assert!(
        inserted
            .stdout
            .starts_with("inserted 100 rows into \"docs\" in "),
        "{}",
        inserted.stdout
    );
    assert!(
        inserted.stdout.contains(" rows/s), checksum "),
        "{}",
        inserted.stdout
    );
    let parquet_file = path("docs.parquet");
    write_parquet(&parquet_file, 100..150);
    let pq = parquet_file.to_string_lossy().into_owned();
    let inserted = c(&["insert", "-c", "docs", "-f", &pq, "--batch-rows", "20"]).expect(0);
    assert!(
        inserted.stdout.starts_with("inserted 50 rows"),
        "{}",
        inserted.stdout
    );
    let inserted = c(&[
        "insert",
        "-c",
        "docs",
        "--random",
        "200",
        "--id-start",
        "10000",
    ])
    .expect(0);
    assert!(
        inserted.stdout.starts_with("inserted 200 rows"),
        "{}",
        inserted.stdout
    );
    // The checksum of the acknowledged rows, as read-back computes it.
    let random_checksum = inserted
        .stdout
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("a checksum")
        .to_owned();
    assert_eq!(random_checksum.len(), 16, "{}", inserted.stdout);
    let npy = path("vecs.npy");
    write_npy(&npy, 1000..1050);
    let npy_arg = npy.to_string_lossy().into_owned();
    let inserted = c(&["insert", "-c", "vecs", "-f", &npy_arg, "--id-start", "1000"]).expect(0);
    assert!(
        inserted
            .stdout
            .starts_with("inserted 50 rows into \"vecs\""),
        "{}",
        inserted.stdout
    );

    // A bad file: exit 5, the line and the field named, nothing sent.
    let bad = path("bad.csv");
    std::fs::write(
        &bad,
        "id,vector,title,year\n1,[1,2,3,4],a,1\n2,[1,2,3],b,2\n",
    )
    .expect("write");
    let bad_arg = bad.to_string_lossy().into_owned();
    let refused = c(&["insert", "-c", "docs", "-f", &bad_arg]).expect(5);
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "error: line 3 of {bad_arg}: field \"vector\" has 3 numbers, the collection wants 4"
        )
    );
    let unknown = path("unknown.csv");
    std::fs::write(&unknown, "id,vector,colour\n").expect("write");
    let unknown_arg = unknown.to_string_lossy().into_owned();
    let refused = c(&["insert", "-c", "docs", "-f", &unknown_arg]).expect(5);
    assert!(
        refused.stderr.contains("column \"colour\" is not a field"),
        "{}",
        refused.stderr
    );
    let truncated = path("short.npy");
    write_npy(&truncated, 0..10);
    let bytes = std::fs::read(&truncated).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() - 9]).expect("truncate");
    let short_arg = truncated.to_string_lossy().into_owned();
    let refused = c(&["insert", "-c", "vecs", "-f", &short_arg]).expect(5);
    assert!(
        refused.stderr.contains("is truncated"),
        "{}",
        refused.stderr
    );

    // Deletes from the flag and a file.
    let keys = path("keys.txt");
    std::fs::write(&keys, "3\n4 # and five\n5\n").expect("write");
    let keys_arg = keys.to_string_lossy().into_owned();
    let deleted = c(&[
        "delete",
        "-c",
        "docs",
        "--keys",
        "0,1,2",
        "--keys-file",
        &keys_arg,
    ])
    .expect(0);
    assert!(
        deleted
            .stdout
            .starts_with("deleted 6 primary keys from \"docs\""),
        "{}",
        deleted.stdout
    );

    // Flush, then what the coordinators know.
    let flushed = c(&["flush", "-c", "docs"]).expect(0);
    assert!(
        flushed.stdout.starts_with("flushed \"docs\" in "),
        "{}",
        flushed.stdout
    );
    c(&["flush", "-c", "vecs"]).expect(0);
    // Read back block by block: the 200 random rows (keys 10000..10200) are one
    // block with the checksum insert printed; keys 6..150 another; no key twice.
    let read = c(&[
        "read-back",
        "--collection",
        "docs",
        "--sample",
        "0",
        "--key-blocks",
        "200",
    ])
    .expect(0);
    assert!(
        read.stdout.contains(": 344 rows, 6 deleted"),
        "{}",
        read.stdout
    );
    assert!(
        read.stdout.contains("\nduplicated keys 0\n"),
        "{}",
        read.stdout
    );
    assert!(
        read.stdout.contains(&format!(
            "\nblock 10000 rows 200 checksum {random_checksum}\n"
        )),
        "{}",
        read.stdout
    );
    assert!(
        read.stdout.contains("\nblock 0 rows 144 checksum "),
        "{}",
        read.stdout
    );
    let segments = c(&["segments", "-c", "docs"]).expect(0);
    assert!(segments.stdout.contains("FLUSHED"), "{}", segments.stdout);
    let segments = c(&["segments", "-c", "docs", "-o", "json"])
        .expect(0)
        .json();
    let listed = segments["segments"].as_array().expect("segments");
    let rows: u64 = listed
        .iter()
        .filter(|s| s["state"] != "DROPPED")
        .map(|s| s["rows"].as_u64().expect("rows"))
        .sum();
    assert_eq!(rows, 350, "{segments}");
    assert!(
        listed
            .iter()
            .all(|s| s["state"] == "FLUSHED" || s["state"] == "DROPPED")
    );
    // Export: exactly the live rows, with their values.
    let want: BTreeMap<i64, Doc> = (6..150).map(|pk| (pk, doc(pk))).collect();
    let out_pq = path("export.parquet");
    let out_pq_arg = out_pq.to_string_lossy().into_owned();
    let exported = c(&["export", "-c", "docs", "--out", &out_pq_arg]).expect(0);
    assert!(
        exported.stdout.starts_with(&format!(
            "exported 344 rows of \"docs\" to {out_pq_arg} (6 deleted rows left out"
        )),
        "{}",
        exported.stdout
    );
    let mut got = read_parquet_export(&out_pq);
    let random: Vec<i64> = got.keys().copied().filter(|k| *k >= 10_000).collect();
    assert_eq!(random, (10_000..10_200).collect::<Vec<_>>());
    for k in random {
        let row = got.remove(&k).expect("random row");
        assert_eq!(row.vector.len(), DIM);
        assert!(row.title.len() <= 16);
    }
    assert_eq!(got, want);
    let out_csv = path("export.csv");
    let out_csv_arg = out_csv.to_string_lossy().into_owned();
    c(&["export", "-c", "docs", "--out", &out_csv_arg]).expect(0);
    let mut got = read_csv_export(&out_csv);
    got.retain(|k, _| *k < 10_000);
    assert_eq!(got, want);
    // The CSV export loads back as it is.
    create_like_docs(&sa, "copy");
    let copied = c(&["insert", "-c", "copy", "-f", &out_csv_arg]).expect(0);
    assert!(
        copied.stdout.starts_with("inserted 344 rows into \"copy\""),
        "{}",
        copied.stdout
    );
    let out_vecs = path("vecs.parquet");
    let out_vecs_arg = out_vecs.to_string_lossy().into_owned();
    c(&["export", "-c", "vecs", "--out", &out_vecs_arg]).expect(0);
    let file = std::fs::File::open(&out_vecs).expect("open");
    let meta = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
    use parquet::file::reader::FileReader;
    assert_eq!(meta.metadata().file_metadata().num_rows(), 50);

    // Drop.
    let dropped = c(&["collection", "drop", "docs"]).expect(0);
    assert!(
        dropped.stdout.starts_with("dropped collection \"docs\""),
        "{}",
        dropped.stdout
    );
    c(&["collection", "describe", "docs"]).expect(3);
    c(&["collection", "drop", "docs"]).expect(3);
}

#[test]
fn nothing_listening_exits_4_and_names_the_flag() {
    let port = free_port();
    let mut cmd = Command::new(node_binary());
    cmd.args([
        "collection",
        "list",
        "--proxy",
        &format!("127.0.0.1:{port}"),
    ]);
    let r = run(cmd, &["collection", "list"]).expect(4);
    assert_eq!(
        r.stderr.trim(),
        format!(
            "error: cannot reach the proxy at 127.0.0.1:{port}: connection refused; is \
             milvus-like running? (--proxy / MILVUS_LIKE_PROXY_ENDPOINT)"
        )
    );
    let mut cmd = Command::new(node_binary());
    cmd.args(["nodes"]).env(
        "MILVUS_LIKE_ROOTCOORD_ENDPOINTS",
        format!("127.0.0.1:{port}"),
    );
    let r = run(cmd, &["nodes"]).expect(4);
    assert!(
        r.stderr
            .contains("(--rootcoord-endpoints / MILVUS_LIKE_ROOTCOORD_ENDPOINTS)"),
        "{}",
        r.stderr
    );
    // Usage errors are clap's exit 2.
    let mut cmd = Command::new(node_binary());
    cmd.args(["insert", "-c", "docs"]);
    run(cmd, &["insert", "-c", "docs"]).expect(2);
}
