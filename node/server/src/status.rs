//! The failure boundary: the gRPC status of every domain error, in one place.
//!
//! The parts of a role fail with errors named for their domain (a channel that is
//! not this node's, a collection that does not exist, an unreachable metadata
//! store); a service method turns them into a [`Status`] with `?`, through exactly
//! one `From` each, here. The codes follow one rule, so that clients can act on
//! them: `Unavailable` when the same call may succeed later (see
//! [`milvus_like_api::retry::Transient`]), `InvalidArgument` for a wrong request,
//! `NotFound` for something missing, `AlreadyExists` for a name taken,
//! `FailedPrecondition` when the state does not allow the call, `Aborted` when it
//! raced a change and may be made again, and `Internal` only for what no retry
//! fixes on the server's side (corrupt metadata, a store refusing our requests). An
//! answer relayed from the root coordinator keeps the root coordinator's code.
//!
//! A standby that is called directly answers with the leader's address in the
//! metadata ([`crate::role::Seat::leader_only`]); a part that loses leadership in
//! the middle of a call answers `Unavailable` without it, and the client's leader
//! pool moves on to the next endpoint.

use tonic::Status;

use crate::datacoord::channels::ChannelError;
use crate::datacoord::segments::SegmentError;
use crate::datanode::DataNodeError;
use crate::idalloc::IdError;
use crate::meta::MetaError;
use crate::msgstream::StreamError;
use crate::rootcoord::CatalogError;
use crate::tso::TsoError;

fn lost_leadership(role: &str) -> Status {
    Status::unavailable(format!(
        "this {role} lost its leadership during the call; retry"
    ))
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Unavailable(m) => {
                Status::unavailable(format!("metadata store unreachable: {m}"))
            }
            // The office's lease is gone: another instance takes over.
            MetaError::LeaseExpired(_) => Status::unavailable(e.to_string()),
            MetaError::Corrupt { .. } | MetaError::Refused(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<StreamError> for Status {
    fn from(e: StreamError) -> Self {
        match e {
            // A write that is refused or fails is not acknowledged: the client retries it.
            StreamError::TooLarge { .. } => {
                Status::invalid_argument(format!("{e}; send fewer or smaller rows per call"))
            }
            StreamError::PartitionMismatch { .. } => Status::failed_precondition(e.to_string()),
            StreamError::Kafka { .. }
            | StreamError::MissingTopic(_)
            | StreamError::Local { .. } => {
                Status::unavailable(format!("the log failed: {e}; retry"))
            }
        }
    }
}

impl From<TsoError> for Status {
    fn from(e: TsoError) -> Self {
        match e {
            TsoError::NotLeader => lost_leadership("root coordinator"),
            TsoError::BadCount(_) => Status::invalid_argument(e.to_string()),
            TsoError::WindowExhausted => Status::unavailable(e.to_string()),
            TsoError::Meta(m) => m.into(),
        }
    }
}

impl From<IdError> for Status {
    fn from(e: IdError) -> Self {
        match e {
            IdError::NotLeader => lost_leadership("root coordinator"),
            IdError::BadCount(_) => Status::invalid_argument(e.to_string()),
            IdError::Meta(m) => m.into(),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotLeader => lost_leadership("root coordinator"),
            CatalogError::InvalidSchema(_) => Status::invalid_argument(e.to_string()),
            CatalogError::AlreadyExists(_) => Status::already_exists(e.to_string()),
            CatalogError::NotFound(_) => Status::not_found(e.to_string()),
            CatalogError::IndexChosen { .. } => Status::failed_precondition(e.to_string()),
            CatalogError::Meta(m) => m.into(),
        }
    }
}

impl From<ChannelError> for Status {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::NotLeader => lost_leadership("data coordinator"),
            ChannelError::Invalid(m) => Status::invalid_argument(m),
            ChannelError::CountChanged { .. } | ChannelError::NotOwner(_) => {
                Status::failed_precondition(e.to_string())
            }
            ChannelError::Meta(m) => m.into(),
        }
    }
}

impl From<SegmentError> for Status {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Channel(c) => c.into(),
            SegmentError::Invalid(m) => Status::invalid_argument(m),
            SegmentError::Missing(m) => Status::not_found(m),
            SegmentError::WrongState(m) => Status::failed_precondition(m),
            SegmentError::Raced(m) => Status::aborted(m),
            // The root coordinator's code, not its metadata: a leader hint in it
            // names a root coordinator, which this caller must not fail over to.
            SegmentError::RootCoord(s) => {
                Status::new(s.code(), format!("root coordinator: {}", s.message()))
            }
            SegmentError::Meta(m) => m.into(),
        }
    }
}

impl From<DataNodeError> for Status {
    fn from(e: DataNodeError) -> Self {
        match e {
            DataNodeError::Epoch { .. }
            | DataNodeError::NotWatched(_)
            | DataNodeError::LogBehindCheckpoint { .. } => {
                Status::failed_precondition(e.to_string())
            }
            DataNodeError::NotCommitted(_) => Status::unavailable(e.to_string()),
            DataNodeError::Log(l) => l.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use milvus_like_api::retry::Transient;
    use tonic::Code;

    use super::*;

    #[test]
    fn an_unreachable_dependency_is_transient_and_a_broken_one_is_not() {
        assert!(Status::from(MetaError::Unavailable("down".into())).is_transient());
        assert!(Status::from(MetaError::LeaseExpired(7)).is_transient());
        assert_eq!(
            Status::from(MetaError::corrupt("k", "junk")).code(),
            Code::Internal
        );
        assert!(
            Status::from(StreamError::Local {
                path: "log.redb".into(),
                reason: "disk".into()
            })
            .is_transient()
        );
        assert_eq!(
            Status::from(StreamError::TooLarge { size: 9, limit: 8 }).code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn lost_leadership_is_transient_everywhere() {
        for s in [
            Status::from(TsoError::NotLeader),
            Status::from(IdError::NotLeader),
            Status::from(CatalogError::NotLeader),
            Status::from(ChannelError::NotLeader),
            Status::from(SegmentError::Channel(ChannelError::NotLeader)),
        ] {
            assert!(s.is_transient(), "{s:?}");
        }
    }

    #[test]
    fn a_root_coordinator_answer_keeps_its_code_but_not_its_leader_hint() {
        let mut upstream = Status::unavailable("not the leader");
        upstream.metadata_mut().insert(
            milvus_like_api::LEADER_HINT_METADATA,
            "10.0.0.1:19530".parse().expect("ascii"),
        );
        let s = Status::from(SegmentError::RootCoord(upstream));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().starts_with("root coordinator: "));
        assert!(
            s.metadata()
                .get(milvus_like_api::LEADER_HINT_METADATA)
                .is_none()
        );
    }

    #[test]
    fn a_commit_that_raced_a_change_may_be_made_again() {
        assert!(Status::from(SegmentError::Raced("changed".into())).is_transient());
        assert!(!Status::from(SegmentError::WrongState("dropped".into())).is_transient());
    }
}
