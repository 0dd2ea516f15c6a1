//! Errors in Milvus's terms. Milvus answers a failed call with a `Status` in
//! the response (code, reason, and the deprecated `error_code` older clients
//! read), not with a gRPC error: pymilvus raises such a status as a
//! `MilvusException`, while it retries most gRPC errors for minutes. So every
//! method here answers its failures in the response, with the code Milvus
//! gives the same condition (`pkg/util/merr` in milvus-io/milvus).

use milvus_like_api::milvus_proto::common::{ErrorCode, Status as MilvusStatus};
use tonic::{Code, Status};

/// `merr.ErrServiceUnavailable`.
const SERVICE_UNAVAILABLE: i32 = 2;
/// `merr.ErrServiceMemoryLimitExceeded`.
const MEMORY_LIMIT: i32 = 3;
/// `merr.ErrServiceUnimplemented`.
const UNIMPLEMENTED: i32 = 10;
/// `merr.ErrCollectionNotFound`.
pub const COLLECTION_NOT_FOUND: i32 = 100;
/// `merr.ErrCollectionNotLoaded`.
const COLLECTION_NOT_LOADED: i32 = 101;
/// `merr.ErrPartitionNotFound`.
const PARTITION_NOT_FOUND: i32 = 202;
/// `merr.ErrIndexNotFound`.
const INDEX_NOT_FOUND: i32 = 700;
/// `merr.ErrParameterInvalid`: what most refusals of bad input are.
const PARAMETER_INVALID: i32 = 1100;
/// Milvus's code for an error it has no code for.
const UNEXPECTED: i32 = 65535;

/// A failed call, answered in the response's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(pub MilvusStatus);

impl Refusal {
    #[allow(deprecated)]
    fn new(code: i32, legacy: ErrorCode, reason: impl Into<String>) -> Self {
        Self(MilvusStatus {
            code,
            error_code: legacy.into(),
            reason: reason.into(),
            ..MilvusStatus::default()
        })
    }

    /// Bad input: what is wrong and how to fix it.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new(PARAMETER_INVALID, ErrorCode::IllegalArgument, reason)
    }

    /// Something Milvus offers that milvus-like does not: says what.
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::invalid(format!(
            "milvus-like does not support {what} (docs/milvus-compatibility.md lists what it does)"
        ))
    }

    /// Milvus's words for an unknown collection.
    pub fn collection_not_found(name: &str) -> Self {
        Self::new(
            COLLECTION_NOT_FOUND,
            ErrorCode::CollectionNotExists,
            format!("collection not found[collection={name}]"),
        )
    }

    /// Milvus's words for a collection without an index.
    pub fn index_not_found(name: &str) -> Self {
        Self::new(
            INDEX_NOT_FOUND,
            ErrorCode::IndexNotExist,
            format!("index not found[collection={name}]"),
        )
    }

    pub fn code(&self) -> i32 {
        self.0.code
    }
}

/// Our own services' errors: the message kept, Milvus's code for the same
/// condition.
impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => {
                Self::new(PARAMETER_INVALID, ErrorCode::IllegalArgument, message)
            }
            Code::NotFound if message.starts_with("partition") => {
                Self::new(PARTITION_NOT_FOUND, ErrorCode::UnexpectedError, message)
            }
            Code::NotFound => Self::new(
                COLLECTION_NOT_FOUND,
                ErrorCode::CollectionNotExists,
                message,
            ),
            Code::FailedPrecondition if message.contains("is not loaded") => {
                Self::new(COLLECTION_NOT_LOADED, ErrorCode::UnexpectedError, message)
            }
            Code::FailedPrecondition if message.contains("has no index yet") => {
                Self::new(INDEX_NOT_FOUND, ErrorCode::IndexNotExist, message)
            }
            Code::FailedPrecondition => {
                Self::new(PARAMETER_INVALID, ErrorCode::IllegalArgument, message)
            }
            Code::ResourceExhausted => {
                Self::new(MEMORY_LIMIT, ErrorCode::InsufficientMemoryToLoad, message)
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => {
                Self::new(SERVICE_UNAVAILABLE, ErrorCode::UnexpectedError, message)
            }
            Code::Unimplemented => Self::new(UNIMPLEMENTED, ErrorCode::UnexpectedError, message),
            _ => Self::new(UNEXPECTED, ErrorCode::UnexpectedError, message),
        }
    }
}

/// A response that carries its status (every MilvusService answer does).
pub trait WithStatus: Default {
    fn set_status(&mut self, status: MilvusStatus);
}

impl WithStatus for MilvusStatus {
    fn set_status(&mut self, status: MilvusStatus) {
        *self = status;
    }
}

macro_rules! with_status {
    ($($t:ty),* $(,)?) => {
        $(impl WithStatus for $t {
            fn set_status(&mut self, status: MilvusStatus) {
                self.status = Some(status);
            }
        })*
    };
}
pub(crate) use with_status;

/// Milvus's success status.
pub fn ok() -> Option<MilvusStatus> {
    Some(MilvusStatus::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_errors_become_milvus_codes_with_the_message_kept() {
        let r = Refusal::from(Status::invalid_argument("dim 3, want 8"));
        assert_eq!((r.code(), r.0.reason.as_str()), (1100, "dim 3, want 8"));
        let r = Refusal::from(Status::not_found("collection \"x\" does not exist"));
        assert_eq!(r.code(), 100);
        let r = Refusal::from(Status::not_found("partition \"p\" does not exist"));
        assert_eq!(r.code(), 202);
        let r = Refusal::from(Status::failed_precondition(
            "collection \"x\" is not loaded; load it first",
        ));
        assert_eq!(r.code(), 101);
        let r = Refusal::from(Status::unavailable("no leader"));
        assert_eq!(r.code(), 2);
        let r = Refusal::from(Status::internal("boom"));
        assert_eq!(r.code(), 65535);
        assert!(
            Refusal::unsupported("partitions")
                .0
                .reason
                .starts_with("milvus-like does not support partitions")
        );
    }
}
