//! What every milvus-like binary (the node roles and the operator) does the same
//! way: stop on SIGINT or SIGTERM, and name gRPC codes in metric labels.

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGINT or SIGTERM (spawns the listener; call inside a
/// runtime).
pub fn shutdown_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
    cancel
}

/// The `code` label of an RPC counter: `OK`, `UNAVAILABLE`, ... (the names of the
/// gRPC status codes).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Unavailable => "UNAVAILABLE",
        C::Internal => "INTERNAL",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        _ => "OTHER",
    }
}
