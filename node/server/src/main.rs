//! `milvus-like`: one binary, one subcommand per role.

use clap::{CommandFactory, Parser};
use milvus_like_node::datacoord::balancer::BalancerRegistry;
use milvus_like_node::settings::args::{Cli, Command};
use milvus_like_node::{
    cli, datacoord, datanode, logging, proxy, querynode, rootcoord, settings, standalone,
};

/// Reads the config file named by `--config` or MILVUS_LIKE_CONFIG, if any, and
/// exports each of its settings that the environment does not set, for clap to
/// read as environment variables: flag > environment > file > default. Returns how
/// many it exported.
#[allow(unsafe_code)]
fn apply_config_file() -> Result<usize, settings::file::ConfigError> {
    use settings::file;
    let Some(path) = file::config_path(std::env::args_os(), std::env::var_os(settings::CONFIG_ENV))
    else {
        return Ok(0);
    };
    let assignments = file::load(&path, &settings::Settings::of(&Cli::command()))?;
    let exported = file::not_overridden(assignments, |env| std::env::var_os(env).is_some());
    for setting in &exported {
        // SAFETY: this runs first thing in `main`, before the runtime or any other
        // thread exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var(&setting.env, &setting.value) };
    }
    Ok(exported.len())
}

/// Cancels on SIGINT or SIGTERM.
fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let exported = match apply_config_file() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    // `--log-level` went through the same parser as clap's value check.
    match logging::parse_filter(&cli.log_level) {
        Ok(filter) => logging::init(cli.log_format, filter),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Some(path) = &cli.config {
        tracing::info!(config = %path.display(), from_file = exported, "read the config file");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, as one sentence per cause: "open ...: ... is in use ...".
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(milvus_like_node::cli::exit_code(&e))
        }
    }
}

/// glibc gives each thread that allocates its own arena, up to 8 per core, and
/// memory freed into one arena is reused by that arena only. A data node allocates
/// its buffers on the runtime's workers and its Parquet encoders on ever-changing
/// blocking threads, so free memory piles up in many arenas: at `--memory-mib=256`
/// its peak RSS was 689 to 832 MiB with the default and 483 MiB with one arena, at
/// the same throughput (`ingest_bench`, docs/benchmarks.md). `MALLOC_ARENA_MAX` in
/// the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets an allocator parameter; it runs first thing in
        // `main`, before any other thread exists or allocates.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn run(command: Command) -> anyhow::Result<()> {
    let cancel = milvus_like_api::process::shutdown_on_signal();
    match command {
        Command::Standalone(args) => standalone::run(args.config(), cancel).await,
        Command::Rootcoord(args) => {
            let store = args.etcd.store(&cancel).await?;
            rootcoord::run(store, args.config(), cancel).await
        }
        Command::Datacoord(args) => {
            let log = args.cluster.kafka.log();
            let store = args.cluster.etcd.store(&cancel).await?;
            datacoord::run(
                store,
                Some(log),
                args.config(),
                BalancerRegistry::with_builtins(),
                cancel,
            )
            .await
        }
        Command::Proxy(args) => {
            let log = args.cluster.kafka.log();
            let store = args.cluster.etcd.store(&cancel).await?;
            proxy::run(store, log, args.config(), cancel).await
        }
        Command::Datanode(args) => {
            let store = args.cluster.etcd.store(&cancel).await?;
            let log = args.cluster.kafka.log();
            datanode::run(store, log, args.config(), cancel).await
        }
        Command::Querynode(args) => {
            let store = args.cluster.etcd.store(&cancel).await?;
            let log = args.cluster.kafka.log();
            querynode::run(store, log, args.config(), cancel).await
        }
        Command::ReadBack(args) => cli::read_back::run(args).await,
        Command::Client(command) => cli::run(command, cancel).await,
        Command::ConfigDocs => {
            print!("{}", settings::docs::render_docs(&Cli::command()));
            Ok(())
        }
    }
}
