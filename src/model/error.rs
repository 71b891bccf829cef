//! Domain refusals: values returned by the replicated apply, never panics.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a command was refused. Maps one-to-one onto a gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    /// A read-modify-write lost to a concurrent change.
    Aborted,
    /// The project may not use that queue.
    PermissionDenied,
}

/// A refusal that names the offending field (when there is one) and says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelError {
    pub kind: ErrorKind,
    /// The request field at fault, e.g. `queue` or `command[2]`.
    pub field: Option<String>,
    pub message: String,
}

impl ModelError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidArgument,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::NotFound,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn exists(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::AlreadyExists,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn precondition(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::FailedPrecondition,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn aborted(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Aborted,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn denied(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::PermissionDenied,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The same refusal, about a field of an element of a list (`tasks[3]`).
    pub fn within(mut self, element: &str) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("{element}.{f}"),
            None => element.to_string(),
        });
        self
    }

    pub fn exhausted(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::ResourceExhausted,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ModelError {}
