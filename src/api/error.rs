//! Error mapping: node errors and model refusals onto gRPC status codes.
//! `NotLeader` becomes UNAVAILABLE with the leader's id and address in the
//! response metadata, so a client can go there directly.

use tonic::{Code, Status};

use crate::model::{ErrorKind, ModelError};
use crate::raft::NodeError;
use crate::wire::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};

pub fn node_status(e: NodeError) -> Status {
    match &e {
        NodeError::NotLeader { leader, .. } => {
            let mut status = Status::unavailable(e.to_string());
            if let Some((id, addr)) = leader {
                let md = status.metadata_mut();
                if let Ok(v) = id.to_string().parse() {
                    md.insert(LEADER_ID_HEADER, v);
                }
                if let Ok(v) = addr.parse() {
                    md.insert(LEADER_ADDR_HEADER, v);
                }
            }
            status
        }
        NodeError::Unavailable(_) => Status::unavailable(e.to_string()),
        NodeError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
        NodeError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
        NodeError::Fatal(_) => Status::internal(e.to_string()),
    }
}

pub fn model_status(e: ModelError) -> Status {
    let code = match e.kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
    };
    Status::new(code, e.to_string())
}
