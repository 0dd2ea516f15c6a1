//! The milvus-like node: every role (root coordinator, data coordinator, proxy,
//! data node, and all of them at once in standalone) and every backend, behind one
//! binary.

#![forbid(unsafe_code)]

pub mod cli;
pub mod columns;
pub mod datacoord;
pub mod datanode;
pub mod deletes;
pub mod election;
pub mod filter;
pub mod idalloc;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod msgstream;
pub mod proxy;
pub mod querynode;
pub mod role;
pub mod rootcoord;
pub mod search;
pub mod server;
pub mod session;
pub mod settings;
pub mod standalone;
mod status;
pub mod storage;
pub mod sys;
pub mod tso;

/// `tokio::spawn` that keeps the caller's span on the task. Every role runs inside
/// a span named after it, with its node id once its session is registered, and
/// spawns its tasks with this: what they log names the role and node that started
/// them (in standalone, four roles share one log).
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(tracing::Instrument::in_current_span(future))
}
