//! `milvus-like search`, `milvus-like count`, `milvus-like collection load | release`.

use clap::{Args, ValueEnum};
use milvus_like_api::proto::{self, ConsistencyLevel};
use milvus_like_api::vectors::FloatVectorArray;
use serde_json::json;

use super::RPC_TIMEOUT;
use super::args::{OutputArgs, OutputFormat, ProxyArgs};
use super::collection::not_found_hint;
use super::connect::Proxy;
use super::error::CliError;
use super::table::Table;

/// Milvus's consistency levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Consistency {
    /// Sees every write acknowledged before the read (waits for the channels).
    #[default]
    Strong,
    Session,
    Bounded,
    /// Whatever the query nodes have read; no wait.
    Eventually,
}

impl Consistency {
    fn wire(self) -> i32 {
        let level = match self {
            Self::Strong => ConsistencyLevel::ConsistencyStrong,
            Self::Session => ConsistencyLevel::ConsistencySession,
            Self::Bounded => ConsistencyLevel::ConsistencyBounded,
            Self::Eventually => ConsistencyLevel::ConsistencyEventually,
        };
        level as i32
    }
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The collection to search (loaded first with `collection load`).
    #[arg(long, short = 'c')]
    pub collection: String,
    /// A query vector, its floats comma separated; repeat for more queries.
    #[arg(
        long = "vector",
        required = true,
        value_name = "FLOATS",
        allow_negative_numbers = true
    )]
    pub vectors: Vec<String>,
    /// How many nearest rows per query.
    #[arg(long, default_value_t = 10)]
    pub top_k: u32,
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub consistency: Consistency,
    /// Search breadth in indexed segments (at least --top-k): more is more
    /// accurate and slower. 0: the larger of --top-k and 64.
    #[arg(long, default_value_t = 0)]
    pub ef: u32,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// The collection to count (loaded first with `collection load`).
    #[arg(long, short = 'c')]
    pub collection: String,
    #[arg(long, value_enum, default_value_t = Consistency::Strong)]
    pub consistency: Consistency,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    pub name: String,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Parses `--vector` values: each a comma-separated list of floats, all of one
/// dimension.
fn parse_vectors(texts: &[String]) -> Result<FloatVectorArray, CliError> {
    let mut values = Vec::new();
    let mut dim = None;
    for (i, text) in texts.iter().enumerate() {
        let row: Vec<f32> = text
            .split(',')
            .map(|s| {
                let s = s.trim();
                s.parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        CliError::bad_input(format!(
                            "--vector {}: {s:?} is not a finite number",
                            i + 1
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        match dim {
            None => dim = Some(row.len()),
            Some(d) if d != row.len() => {
                return Err(CliError::bad_input(format!(
                    "--vector {} has {} floats, the first has {d}; every query has the collection's dimension",
                    i + 1,
                    row.len()
                )));
            }
            Some(_) => {}
        }
        values.extend(row);
    }
    let dim = dim.unwrap_or(0);
    Ok(FloatVectorArray {
        dim: u32::try_from(dim).map_err(|_| CliError::bad_input("--vector is too long"))?,
        values: values.into(),
    })
}

pub async fn search(args: SearchArgs) -> Result<(), CliError> {
    let vectors = parse_vectors(&args.vectors)?;
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let request = proto::SearchRequest {
        collection: args.collection.clone(),
        vectors: Some(vectors),
        top_k: args.top_k,
        consistency: args.consistency.wire(),
        timeout_ms: 0,
        ef: args.ef,
    };
    let answer = proxy
        .call(
            &format!("search {:?}", args.collection),
            |mut c| async move { c.search(request).await },
        )
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    match args.output.output {
        OutputFormat::Json => {
            let results: Vec<_> = answer
                .results
                .iter()
                .map(|hits| {
                    hits.ids
                        .iter()
                        .zip(&hits.scores)
                        .map(|(id, score)| json!({"id": id, "score": score}))
                        .collect::<Vec<_>>()
                })
                .collect();
            let doc =
                json!({"metric": answer.metric, "read_ts": answer.read_ts, "results": results});
            println!("{doc:#}");
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["QUERY", "RANK", "ID", answer.metric.as_str()]);
            for (q, hits) in answer.results.iter().enumerate() {
                for (rank, (id, score)) in hits.ids.iter().zip(&hits.scores).enumerate() {
                    table.row(vec![
                        (q + 1).to_string(),
                        (rank + 1).to_string(),
                        id.to_string(),
                        score.to_string(),
                    ]);
                }
            }
            print!("{}", table.render());
        }
    }
    Ok(())
}

pub async fn count(args: CountArgs) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let request = proto::CountRequest {
        collection: args.collection.clone(),
        consistency: args.consistency.wire(),
        timeout_ms: 0,
    };
    let answer = proxy
        .call(
            &format!("count {:?}", args.collection),
            |mut c| async move { c.count(request).await },
        )
        .await
        .map_err(|e| not_found_hint(e, &args.collection))?;
    println!("{}", answer.rows);
    Ok(())
}

pub async fn load(args: LoadArgs, load: bool) -> Result<(), CliError> {
    let proxy = Proxy::connect(&args.proxy, RPC_TIMEOUT).await?;
    let collection = args.name.clone();
    if load {
        proxy
            .call(
                &format!("load collection {collection:?}"),
                |mut c| async move {
                    c.load_collection(proto::ProxyLoadCollectionRequest { collection })
                        .await
                },
            )
            .await
            .map_err(|e| not_found_hint(e, &args.name))?;
        println!(
            "loaded collection {:?}: searches see its rows now",
            args.name
        );
    } else {
        proxy
            .call(
                &format!("release collection {collection:?}"),
                |mut c| async move {
                    c.release_collection(proto::ProxyReleaseCollectionRequest { collection })
                        .await
                },
            )
            .await
            .map_err(|e| not_found_hint(e, &args.name))?;
        println!("released collection {:?}", args.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_and_must_share_a_dimension() {
        let v = parse_vectors(&["1, 2,-3".into(), "0,0,0.5".into()]).expect("accepted");
        assert_eq!(v.dim, 3);
        assert_eq!(v.values.to_vec(), [1.0, 2.0, -3.0, 0.0, 0.0, 0.5]);
        let e = parse_vectors(&["1,2".into(), "1,2,3".into()]).expect_err("refused");
        assert!(
            e.message.contains("--vector 2 has 3 floats"),
            "{}",
            e.message
        );
        let e = parse_vectors(&["1,x".into()]).expect_err("refused");
        assert!(
            e.message.contains("\"x\" is not a finite number"),
            "{}",
            e.message
        );
        assert!(parse_vectors(&["nan".into()]).is_err());
    }
}
