//! Calling again what may succeed later.
//!
//! - "May succeed later" is defined once per error type, by [`Transient`]: for a gRPC
//!   [`Status`] here, for the metadata store, object storage and the log beside their
//!   error types.
//! - [`Retry`] is the one backoff loop: capped exponential backoff, a log line for
//!   each failed attempt it makes again, and it stops at once when the error is
//!   permanent (unless [`Retry::on_every_error`]), when the next attempt would start
//!   after the deadline, or when the cancellation token fires (then the last error is
//!   returned, unlogged: the caller decides what a stop means).

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

/// Whether the same call may succeed if made again (the peer was away, overloaded,
/// changing leaders, or slow), as opposed to an answer that will not change.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for Status {
    /// The server could not be reached, did not answer in time, was overloaded,
    /// aborted the call (a conflict), or the connection broke mid-call (`Unknown`,
    /// `Cancelled`: tonic reports a reset stream so). Every other code is an answer:
    /// the request is wrong, the thing is missing, or the server is broken.
    fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Unknown
                | Code::Cancelled
        )
    }
}

/// How to call again. Built with [`Retry::new`] and the builder methods, then [`Retry::run`].
#[derive(Debug, Clone)]
pub struct Retry {
    what: Cow<'static, str>,
    first: Duration,
    max: Duration,
    deadline: Option<Duration>,
    cancel: Option<CancellationToken>,
    every_error: bool,
    quiet: bool,
}

impl Retry {
    /// `what` is the log line of a failed attempt, a sentence without the error
    /// ("etcd is unreachable"); the error and the pause are added to it.
    /// Backoff from 100 ms to 2 s, no deadline, no cancellation, transient errors only.
    pub fn new(what: impl Into<Cow<'static, str>>) -> Self {
        Self {
            what: what.into(),
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
            deadline: None,
            cancel: None,
            every_error: false,
            quiet: false,
        }
    }

    /// The first pause and the largest; each pause doubles up to `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first = first;
        self.max = max.max(first);
        self
    }

    /// Gives up (with the last error) when the next attempt would start later than
    /// this after the first.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Stops waiting (with the last error) when `token` fires.
    pub fn until_cancelled(mut self, token: &CancellationToken) -> Self {
        self.cancel = Some(token.clone());
        self
    }

    /// Calls again after a permanent error too: for work that must not be given up
    /// while the process runs (a campaign for leadership, watching the sessions).
    pub fn on_every_error(mut self) -> Self {
        self.every_error = true;
        self
    }

    /// Logs failed attempts at debug level instead of warn (expected failures, such
    /// as finding a standby instead of the leader).
    pub fn quietly(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Calls `op` until it succeeds or the policy says stop; returns the last error then.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Transient + Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = self.deadline.map(|d| tokio::time::Instant::now() + d);
        let mut pause = self.first;
        loop {
            let error = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let late = give_up.is_some_and(|g| tokio::time::Instant::now() + pause > g);
            let stopping = self.cancel.as_ref().is_some_and(|c| c.is_cancelled());
            if late || stopping || !(self.every_error || error.is_transient()) {
                return Err(error);
            }
            if self.quiet {
                tracing::debug!(error = %error, "{}; retrying in {pause:?}", self.what);
            } else {
                tracing::warn!(error = %error, "{}; retrying in {pause:?}", self.what);
            }
            match &self.cancel {
                Some(cancel) => tokio::select! {
                    () = cancel.cancelled() => return Err(error),
                    () = tokio::time::sleep(pause) => {}
                },
                None => tokio::time::sleep(pause).await,
            }
            pause = (pause * 2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct E(bool);
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
        }
    }

    fn fast(what: &'static str) -> Retry {
        Retry::new(what).backoff(Duration::from_millis(1), Duration::from_millis(2))
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = fast("t")
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err(E(true)),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_permanent_error_returns_at_once_unless_every_error_is_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = fast("p")
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(false))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r = fast("p")
            .on_every_error()
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(E(false)),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(r.ok(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_retries_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = Retry::new("d")
            .backoff(Duration::from_millis(100), Duration::from_millis(100))
            .deadline(Duration::from_millis(450))
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(true))
            })
            .await;
        assert!(r.is_err());
        // Attempts at 0, 100, 200, 300, 400 ms; the next would start after 450 ms.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        let retry = Retry::new("c")
            .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
            .until_cancelled(&cancel);
        let calls = AtomicU32::new(0);
        let run = retry.run(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(E(true))
        });
        let canceller = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::join!(run, canceller);
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn status_codes_that_are_answers_are_not_transient() {
        assert!(Status::unavailable("x").is_transient());
        assert!(Status::deadline_exceeded("x").is_transient());
        for permanent in [
            Status::invalid_argument("x"),
            Status::not_found("x"),
            Status::failed_precondition("x"),
            Status::already_exists("x"),
            Status::internal("x"),
            Status::permission_denied("x"),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }
}
