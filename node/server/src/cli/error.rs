//! The one error type of the client commands: a sentence that names what to fix,
//! and the exit code that tells scripts what kind of failure it was.

use tonic::{Code, Status};

/// Process exit codes of the client commands (documented in docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Anything not listed below.
    Failure = 1,
    /// Bad flags or arguments (clap uses 2 for its own usage errors too).
    Usage = 2,
    /// The collection (or another named thing) does not exist.
    NotFound = 3,
    /// A service cannot be reached, or answers that it is unavailable.
    Unavailable = 4,
    /// A bad input file, or a request the server refused as invalid.
    BadInput = 5,
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

/// What went wrong, as one sentence for people, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
}

impl CliError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ExitCode::NotFound, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ExitCode::BadInput, message)
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Failure, message)
    }

    /// The same error with `note` appended after a semicolon.
    pub fn with_note(mut self, note: impl std::fmt::Display) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }
}

/// The exit code for an error returned by [`super::run`]: the [`CliError`]'s own,
/// else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<CliError>()
        .map_or(ExitCode::Failure as u8, |e| e.code as u8)
}

/// A service the CLI talks to, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `the proxy`, `the root coordinator`.
    pub name: &'static str,
    /// The endpoints as given on the command line, comma separated.
    pub address: String,
    /// The flag and variable that set the address: `--proxy / MILVUS_LIKE_PROXY_ENDPOINT`.
    pub flag: &'static str,
}

impl Service {
    /// "cannot reach the proxy at 127.0.0.1:19531: connection refused; is
    /// milvus-like running? (--proxy / MILVUS_LIKE_PROXY_ENDPOINT)"
    pub fn unreachable(&self, reason: impl std::fmt::Display) -> CliError {
        CliError::new(
            ExitCode::Unavailable,
            format!(
                "cannot reach {} at {}: {reason}; is milvus-like running? ({})",
                self.name, self.address, self.flag
            ),
        )
    }

    /// Turns a failed call into a sentence: `doing` says what was attempted
    /// (`describe collection "docs"`).
    pub fn failed(&self, doing: &str, status: &Status) -> CliError {
        if let Some(reason) = transport_failure(status) {
            return self.unreachable(reason);
        }
        let message = status.message();
        match status.code() {
            Code::NotFound => CliError::not_found(format!("{doing}: {message}")),
            Code::Unavailable => CliError::new(
                ExitCode::Unavailable,
                format!(
                    "{doing}: {} at {} is unavailable: {message}; retry in a moment",
                    self.name, self.address
                ),
            ),
            Code::DeadlineExceeded => CliError::new(
                ExitCode::Unavailable,
                format!(
                    "{doing}: {} at {} did not answer in time ({message}); retry, or check its load",
                    self.name, self.address
                ),
            ),
            Code::InvalidArgument
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::FailedPrecondition => {
                CliError::bad_input(format!("{doing}: {} refused it: {message}", self.name))
            }
            code => CliError::failure(format!(
                "{doing}: {} answered {code:?}: {message}",
                self.name
            )),
        }
    }
}

/// Why the call never reached the server (connection refused, no route, DNS),
/// from the error chain of a transport failure; `None` when the server answered.
fn transport_failure(status: &Status) -> Option<String> {
    use std::error::Error as _;
    let mut current = status.source();
    let mut transport = false;
    while let Some(err) = current {
        if err.is::<tonic::transport::Error>() {
            transport = true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io_reason(io));
        }
        current = err.source();
    }
    transport.then(|| status.message().to_owned())
}

/// Why a TCP connection failed, for [`Service::unreachable`].
pub fn io_reason(e: &std::io::Error) -> String {
    let kind = e.kind().to_string();
    if e.kind() == std::io::ErrorKind::Other || kind.contains("uncategorized") {
        e.to_string()
    } else {
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Service {
        Service {
            name: "the proxy",
            address: "127.0.0.1:19531".into(),
            flag: "--proxy / MILVUS_LIKE_PROXY_ENDPOINT",
        }
    }

    #[test]
    fn statuses_become_sentences_with_their_exit_codes() {
        let e = proxy().failed(
            "describe collection \"x\"",
            &Status::not_found("collection \"x\" does not exist"),
        );
        assert_eq!(e.code, ExitCode::NotFound);
        assert_eq!(
            e.message,
            "describe collection \"x\": collection \"x\" does not exist"
        );
        let e = proxy().failed(
            "insert",
            &Status::invalid_argument("field \"v\" is missing"),
        );
        assert_eq!(e.code, ExitCode::BadInput);
        assert_eq!(
            e.message,
            "insert: the proxy refused it: field \"v\" is missing"
        );
        assert_eq!(
            proxy().failed("flush", &Status::unavailable("busy")).code,
            ExitCode::Unavailable
        );
        assert_eq!(
            proxy().failed("flush", &Status::internal("boom")).code,
            ExitCode::Failure
        );
    }

    #[test]
    fn an_unreachable_service_names_the_flag_to_fix() {
        let e = proxy().unreachable("connection refused");
        assert_eq!(e.code, ExitCode::Unavailable);
        assert_eq!(
            e.message,
            "cannot reach the proxy at 127.0.0.1:19531: connection refused; is milvus-like \
             running? (--proxy / MILVUS_LIKE_PROXY_ENDPOINT)"
        );
    }

    #[test]
    fn exit_codes_come_through_anyhow() {
        let e = anyhow::Error::new(CliError::not_found("x"));
        assert_eq!(exit_code(&e), 3);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }
}
