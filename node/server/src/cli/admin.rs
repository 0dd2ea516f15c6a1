//! What the coordinators know: `segments`, `channels` and `nodes`.

use std::collections::HashMap;

use clap::Args;
use milvus_like_api::proto::data_coord_client::DataCoordClient;
use milvus_like_api::proto::root_coord_client::RootCoordClient;
use milvus_like_api::proto::{self, describe_collection_request::Collection};
use serde_json::json;

use super::args::{OutputArgs, OutputFormat, UpstreamArgs};
use super::collection::{not_found_hint, print_json};
use super::connect::Coordinator;
use super::error::CliError;
use super::table::{Table, bytes, tso_ms, utc_time};
use crate::session::role_name;

#[derive(Debug, Args)]
pub struct SegmentsArgs {
    /// The collection whose segments to list.
    #[arg(long, short = 'c')]
    pub collection: String,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The collection, from the root coordinator.
pub async fn collection_info(
    root: &Coordinator,
    name: &str,
) -> Result<proto::CollectionInfo, CliError> {
    root.call(&format!("describe collection {name:?}"), |ch| {
        let request = proto::DescribeCollectionRequest {
            collection: Some(Collection::Name(name.to_owned())),
        };
        async move { RootCoordClient::new(ch).describe_collection(request).await }
    })
    .await
    .map_err(|e| not_found_hint(e, name))?
    .collection
    .ok_or_else(|| {
        CliError::failure(format!(
            "the root coordinator described no collection {name:?}"
        ))
    })
}

/// The segments and delete logs of a collection, from the data coordinator.
pub async fn list_segments(
    data: &Coordinator,
    info: &proto::CollectionInfo,
) -> Result<proto::ListSegmentsResponse, CliError> {
    let collection_id = info.id;
    data.call("list segments", |ch| async move {
        DataCoordClient::new(ch)
            .list_segments(proto::ListSegmentsRequest { collection_id })
            .await
    })
    .await
}

/// `GROWING`, `FLUSHED`.
pub fn state_name(state: i32) -> String {
    proto::SegmentState::try_from(state).map_or_else(
        |_| format!("UNKNOWN({state})"),
        |s| {
            s.as_str_name()
                .trim_start_matches("SEGMENT_STATE_")
                .to_owned()
        },
    )
}

pub async fn segments(args: SegmentsArgs) -> Result<(), CliError> {
    let root = Coordinator::root(&args.upstream).await?;
    let info = collection_info(&root, &args.collection).await?;
    let data = Coordinator::data(&args.upstream).await?;
    let listed = list_segments(&data, &info).await?;
    let mut segments = listed.segments;
    segments.sort_by_key(|s| (s.channel, s.segment_id));
    if args.output.output == OutputFormat::Json {
        let all: Vec<_> = segments
            .iter()
            .map(|s| {
                json!({
                    "id": s.segment_id,
                    "partition_id": s.partition_id,
                    "channel": s.channel,
                    "state": state_name(s.state),
                    "rows": s.num_rows,
                    "max_rows": s.max_rows,
                    "insert_logs": s.insert_log_paths,
                    "indexes": s
                        .insert_logs
                        .iter()
                        .filter(|f| !f.index_path.is_empty())
                        .map(|f| json!({"insert_log": f.path, "index": f.index_path, "bytes": f.index_bytes}))
                        .collect::<Vec<_>>(),
                    "delete_logs": s.delete_log_paths,
                    "created_ts": s.created_ts,
                    "sealed_ts": s.sealed_ts,
                    "seal_reason": s.seal_reason,
                })
            })
            .collect();
        let deletes: Vec<_> = listed
            .delete_logs
            .iter()
            .map(|d| json!({"channel": d.channel, "path": d.path, "rows": d.num_rows}))
            .collect();
        return print_json(&json!({
            "collection": args.collection,
            "collection_id": info.id,
            "segments": all,
            "delete_logs": deletes,
        }));
    }
    if segments.is_empty() {
        println!(
            "collection {:?} has no segments yet; rows get one when they are inserted",
            args.collection
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "SEGMENT",
        "CHANNEL",
        "STATE",
        "ROWS",
        "FILES",
        "INDEXED",
        "CREATED",
        "SEALED BY",
    ]);
    for s in &segments {
        table.row(vec![
            s.segment_id.to_string(),
            s.channel.to_string(),
            state_name(s.state),
            s.num_rows.to_string(),
            s.insert_log_paths.len().to_string(),
            indexed(s).to_string(),
            utc_time(tso_ms(s.created_ts)),
            s.seal_reason.clone(),
        ]);
    }
    print!("{}", table.render());
    let rows: u64 = segments.iter().map(|s| s.num_rows).sum();
    let files: usize = segments.iter().map(|s| s.insert_log_paths.len()).sum();
    let indexes: usize = segments.iter().map(indexed).sum();
    let deleted: u64 = listed.delete_logs.iter().map(|d| d.num_rows).sum();
    println!(
        "{} segments, {rows} rows committed in {files} files ({indexes} indexed); {} delete logs with {deleted} deletes",
        segments.len(),
        listed.delete_logs.len()
    );
    Ok(())
}

/// Insert logs of `s` with an index.
fn indexed(s: &proto::SegmentInfo) -> usize {
    s.insert_logs
        .iter()
        .filter(|f| !f.index_path.is_empty())
        .count()
}

async fn distribution(
    data: &Coordinator,
) -> Result<proto::GetChannelDistributionResponse, CliError> {
    data.call("get the channel distribution", |ch| async move {
        DataCoordClient::new(ch)
            .get_channel_distribution(proto::GetChannelDistributionRequest {})
            .await
    })
    .await
}

pub async fn channels(args: ChannelsArgs) -> Result<(), CliError> {
    let data = Coordinator::data(&args.upstream).await?;
    let dist = distribution(&data).await?;
    let nodes: HashMap<i64, &proto::NodeChannels> =
        dist.nodes.iter().map(|n| (n.node_id, n)).collect();
    let mut channels = dist.channels.clone();
    channels.sort_by_key(|c| c.channel);
    if args.output.output == OutputFormat::Json {
        let all: Vec<_> = channels
            .iter()
            .map(|c| {
                let node = nodes.get(&c.node_id);
                let cp = c.checkpoint.unwrap_or_default();
                json!({
                    "channel": c.channel,
                    "node_id": c.node_id,
                    "node_name": node.map(|n| n.name.clone()),
                    "node_address": node.map(|n| n.address.clone()),
                    "epoch": c.epoch,
                    "insert_next_offset": cp.insert_next_offset,
                    "delete_next_offset": cp.delete_next_offset,
                    "checkpoint_ts": cp.timestamp,
                })
            })
            .collect();
        let node_list: Vec<_> = dist
            .nodes
            .iter()
            .map(|n| json!({"node_id": n.node_id, "name": n.name, "address": n.address, "channels": n.channels, "draining": n.draining}))
            .collect();
        return print_json(&json!({
            "balancer": dist.balancer,
            "last_rebalance_ms": dist.last_rebalance_ms,
            "channels": all,
            "nodes": node_list,
        }));
    }
    println!(
        "balancer {}, last rebalance {}",
        dist.balancer,
        utc_time(dist.last_rebalance_ms)
    );
    let mut table = Table::new(&[
        "CHANNEL",
        "NODE",
        "NAME",
        "ADDRESS",
        "EPOCH",
        "INSERT OFFSET",
        "DELETE OFFSET",
    ]);
    for c in &channels {
        let node = nodes.get(&c.node_id);
        let cp = c.checkpoint.unwrap_or_default();
        let owner = if c.node_id == 0 {
            "-".to_owned()
        } else {
            c.node_id.to_string()
        };
        table.row(vec![
            c.channel.to_string(),
            owner,
            node.map_or_else(String::new, |n| {
                if n.draining {
                    format!("{} (draining)", n.name)
                } else {
                    n.name.clone()
                }
            }),
            node.map_or_else(String::new, |n| n.address.clone()),
            c.epoch.to_string(),
            cp.insert_next_offset.to_string(),
            cp.delete_next_offset.to_string(),
        ]);
    }
    print!("{}", table.render());
    if channels.iter().any(|c| c.node_id == 0) {
        println!("channels without a node are not consumed until a data node joins");
    }
    Ok(())
}

pub async fn nodes(args: NodesArgs) -> Result<(), CliError> {
    let root = Coordinator::root(&args.upstream).await?;
    let listed = root
        .call("list nodes", |ch| async move {
            RootCoordClient::new(ch)
                .list_nodes(proto::ListNodesRequest {
                    role: proto::Role::Unspecified.into(),
                })
                .await
        })
        .await?;
    // Channels per data node, if the data coordinator answers; the list is still
    // useful without them.
    let dist = match Coordinator::data(&args.upstream).await {
        Ok(data) => distribution(&data).await,
        Err(e) => Err(e),
    };
    let (owned, dist_note): (HashMap<i64, &proto::NodeChannels>, Option<String>) = match &dist {
        Ok(d) => (d.nodes.iter().map(|n| (n.node_id, n)).collect(), None),
        Err(e) => (HashMap::new(), Some(e.message.clone())),
    };
    let mut nodes = listed.nodes;
    nodes.sort_by_key(|n| (n.role, n.node_id));
    let role = |n: &proto::NodeInfo| {
        role_name(proto::Role::try_from(n.role).unwrap_or(proto::Role::Unspecified)).to_owned()
    };
    if args.output.output == OutputFormat::Json {
        let all: Vec<_> = nodes
            .iter()
            .map(|n| {
                let health = n.health.clone().unwrap_or_default();
                let channels = owned.get(&n.node_id);
                json!({
                    "node_id": n.node_id,
                    "role": role(n),
                    "name": n.name,
                    "address": n.address,
                    "healthy": n.healthy,
                    "stopping": n.stopping,
                    "problems": n.problems,
                    "started_at_ms": n.started_at_ms,
                    "memory_used_bytes": health.memory_used_bytes,
                    "memory_total_bytes": health.memory_total_bytes,
                    "details": health.details,
                    "channels": channels.map(|c| c.channels.clone()),
                    "draining": channels.map(|c| c.draining),
                    "load": channels.map(|c| json!({
                        "buffered_bytes": c.buffered_bytes,
                        "lag": c.lag,
                        "rows_per_second": c.rows_per_second,
                        "process_memory_bytes": c.memory_used_bytes,
                    })),
                })
            })
            .collect();
        return print_json(&json!({"nodes": all, "channels_unavailable": dist_note}));
    }
    let mut table = Table::new(&[
        "NODE", "ROLE", "NAME", "ADDRESS", "STATE", "MEMORY", "CHANNELS", "BUFFERED", "LAG",
        "ROWS/S", "STARTED",
    ]);
    for n in &nodes {
        let health = n.health.clone().unwrap_or_default();
        let state = if n.stopping {
            "stopping".to_owned()
        } else if n.healthy {
            "healthy".to_owned()
        } else {
            format!("unhealthy: {}", n.problems.join("; "))
        };
        // The data coordinator's view of a data node's load (its last report).
        let load = owned.get(&n.node_id).copied();
        let channels = match (
            owned.get(&n.node_id),
            n.role == proto::Role::DataNode as i32,
        ) {
            (Some(c), _) => {
                let list: Vec<String> = c.channels.iter().map(ToString::to_string).collect();
                let mut s = if list.is_empty() {
                    "-".to_owned()
                } else {
                    list.join(",")
                };
                if c.draining {
                    s.push_str(" (draining)");
                }
                s
            }
            (None, true) if dist_note.is_some() => "?".to_owned(),
            (None, _) => String::new(),
        };
        let memory = if health.memory_total_bytes > 0 {
            format!(
                "{} / {}",
                bytes(health.memory_used_bytes),
                bytes(health.memory_total_bytes)
            )
        } else {
            bytes(health.memory_used_bytes)
        };
        table.row(vec![
            n.node_id.to_string(),
            role(n),
            n.name.clone(),
            n.address.clone(),
            state,
            memory,
            channels,
            load.map_or_else(String::new, |c| bytes(c.buffered_bytes)),
            load.map_or_else(String::new, |c| c.lag.to_string()),
            load.map_or_else(String::new, |c| format!("{:.0}", c.rows_per_second)),
            utc_time(n.started_at_ms),
        ]);
    }
    if table.is_empty() {
        println!("no nodes are registered");
    } else {
        print!("{}", table.render());
    }
    if let Some(note) = dist_note {
        eprintln!("channels left out: {note}");
    }
    Ok(())
}
