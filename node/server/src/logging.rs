//! Logging: `tracing` to stderr as text or JSON, with a filter that can be changed
//! while the process runs (`PUT /log-level` on every role's HTTP port, see
//! [`crate::server::serve_http`]).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// Parses `EnvFilter` directives (`info`, `info,milvus_like_node::datanode=debug`),
/// strictly: an invalid directive is an error naming it, not silently dropped.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    let directives = directives.trim();
    if directives.is_empty() {
        return Err(
            "the log filter is empty; give directives such as `info` or `info,milvus_like_node::datanode=debug`"
                .to_owned(),
        );
    }
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("invalid log filter `{directives}`: {e}"))
}

/// The filter of a running subscriber, changeable in place.
#[derive(Debug, Clone)]
pub struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
}

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The directives do not parse; the filter is unchanged.
    #[error("{0}")]
    Invalid(String),
    /// The subscriber is gone (cannot happen once installed globally).
    #[error("the log subscriber is gone: {0}")]
    Gone(String),
}

impl LogFilter {
    /// A reloadable filter layer starting at `filter`, and its handle.
    pub fn layer(filter: EnvFilter) -> (reload::Layer<EnvFilter, Registry>, Self) {
        let (layer, handle) = reload::Layer::new(filter);
        (layer, Self { handle })
    }

    /// The filter in force, as directives.
    pub fn current(&self) -> Result<String, FilterError> {
        self.handle
            .with_current(|f| f.to_string())
            .map_err(|e| FilterError::Gone(e.to_string()))
    }

    /// Replaces the filter with `directives`; returns (old, new). Logs the change at
    /// info under whichever filter lets it through, so that turning the level down
    /// to `warn` is on record too.
    pub fn set(&self, directives: &str) -> Result<(String, String), FilterError> {
        let filter = parse_filter(directives).map_err(FilterError::Invalid)?;
        let new = filter.to_string();
        let old = self.current()?;
        let noted_before = tracing::enabled!(tracing::Level::INFO);
        if noted_before {
            tracing::info!(old = %old, new = %new, "changing the log filter");
        }
        self.handle
            .reload(filter)
            .map_err(|e| FilterError::Gone(e.to_string()))?;
        if !noted_before {
            tracing::info!(old = %old, new = %new, "changed the log filter");
        }
        Ok((old, new))
    }
}

static GLOBAL: OnceLock<LogFilter> = OnceLock::new();

/// The process's filter, once [`init`] ran.
pub fn global() -> Option<&'static LogFilter> {
    GLOBAL.get()
}

/// Installs the process-wide subscriber: stderr, `format`, starting at `filter`.
/// Call once, first thing in `main`.
pub fn init(format: Format, filter: EnvFilter) {
    let (layer, handle) = LogFilter::layer(filter);
    let registry = tracing_subscriber::registry().with(layer);
    // Colors only for a person at a terminal: a file, `kubectl logs` or a log
    // pipeline gets plain text.
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(colors)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => registry.with(lines).init(),
        Format::Json => registry.with(lines.json()).init(),
    }
    let _ = GLOBAL.set(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_strictly() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter(" info,milvus_like_node::datanode=debug\n").is_ok());
        let empty = parse_filter("  ").expect_err("empty");
        assert!(empty.contains("empty"), "{empty}");
        let bad = parse_filter("info,milvus_like_node=loud").expect_err("bad level");
        assert!(
            bad.starts_with("invalid log filter `info,milvus_like_node=loud`"),
            "{bad}"
        );
    }

    #[test]
    fn the_filter_changes_in_place_and_a_bad_one_changes_nothing() {
        let (layer, filter) = LogFilter::layer(parse_filter("warn").expect("parses"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(filter.current().expect("current"), "warn");
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
            let (old, new) = filter.set("debug").expect("set");
            assert_eq!((old.as_str(), new.as_str()), ("warn", "debug"));
            assert!(tracing::enabled!(tracing::Level::DEBUG));
            let err = filter.set("debug,x=loud").expect_err("invalid");
            assert!(matches!(err, FilterError::Invalid(_)), "{err}");
            assert_eq!(filter.current().expect("current"), "debug");
        });
    }
}
