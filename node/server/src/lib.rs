//! The milvus-like node: every role (root coordinator now; data coordinator, data
//! node and proxy as they land) and every backend, behind one binary.

#![forbid(unsafe_code)]

pub mod cli;
pub mod columns;
pub mod datacoord;
pub mod datanode;
pub mod election;
pub mod idalloc;
pub mod meta;
pub mod metrics;
pub mod msgstream;
pub mod proxy;
pub mod role;
pub mod rootcoord;
pub mod server;
pub mod session;
pub mod storage;
pub mod sys;
pub mod tso;
