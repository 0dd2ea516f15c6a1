//! The client commands of the `milvus-like` binary: collections, insert, delete,
//! flush, what the coordinators know (segments, channels, nodes) and export.
//!
//! Every command talks to the running services (the proxy for data, the
//! coordinators for the rest) and fails with a [`CliError`]: a sentence that
//! names what to fix, and an exit code from [`ExitCode`] (docs/cli.md lists them).
//! Results go to stdout (tables, or JSON with `--output json`); progress, notes
//! and errors to stderr.

pub mod admin;
pub mod args;
pub mod collection;
pub mod connect;
pub mod delete;
pub mod error;
pub mod export;
pub mod insert;
pub mod progress;
pub mod read_back;
pub mod search;
pub mod source;
pub mod table;

use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

pub use args::{OutputFormat, ProxyArgs, RootCoordEndpoints, StorageArgs, UpstreamArgs};
pub use error::{CliError, ExitCode, exit_code};

/// Deadline of one call of the quick commands.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// Flattened into the binary's own subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create, describe, list and drop collections.
    #[command(subcommand)]
    Collection(collection::CollectionCommand),
    /// Insert rows from a CSV, NumPy .npy or Parquet file, or random rows.
    Insert(insert::InsertArgs),
    /// Delete rows by primary key.
    Delete(delete::DeleteArgs),
    /// Seal a collection's growing segments and wait until they are flushed.
    Flush(delete::FlushArgs),
    /// List a collection's segments: state, rows, files.
    Segments(admin::SegmentsArgs),
    /// Show which data node owns each channel.
    Channels(admin::ChannelsArgs),
    /// List the registered processes with their health and channels.
    Nodes(admin::NodesArgs),
    /// Write a collection's flushed rows, deletes applied, to a Parquet or CSV file.
    Export(export::ExportArgs),
    /// The nearest rows of a loaded collection to one or more query vectors.
    Search(search::SearchArgs),
    /// Rows of a loaded collection by primary key or filter.
    Query(search::QueryArgs),
    /// The live rows of a loaded collection.
    Count(search::CountArgs),
}

/// Runs a client command; `cancel` fires on Ctrl-C or SIGTERM. `insert` and
/// `flush` stop on it themselves (saying what was done); the others are dropped.
pub async fn run(command: ClientCommand, cancel: CancellationToken) -> anyhow::Result<()> {
    let outcome = match command {
        ClientCommand::Insert(args) => insert::run(args, cancel).await,
        ClientCommand::Flush(args) => delete::flush(args, cancel).await,
        other => tokio::select! {
            outcome = run_quick(other) => outcome,
            () = cancel.cancelled() => Err(CliError::new(ExitCode::Interrupted, "interrupted")),
        },
    };
    outcome.map_err(anyhow::Error::new)
}

async fn run_quick(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Collection(c) => collection::run(c).await,
        ClientCommand::Delete(args) => delete::delete(args).await,
        ClientCommand::Segments(args) => admin::segments(args).await,
        ClientCommand::Channels(args) => admin::channels(args).await,
        ClientCommand::Nodes(args) => admin::nodes(args).await,
        ClientCommand::Export(args) => export::export(args).await,
        ClientCommand::Search(args) => search::search(args).await,
        ClientCommand::Count(args) => search::count(args).await,
        ClientCommand::Query(args) => search::query(args).await,
        ClientCommand::Insert(_) | ClientCommand::Flush(_) => {
            unreachable!("run handles insert and flush")
        }
    }
}
