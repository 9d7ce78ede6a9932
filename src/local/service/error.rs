//! Errors of the service's control operations, shaped after the AWS control-plane
//! exceptions so the HTTP layer maps them one to one.

use crate::local::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{message}")]
    ResourceAlreadyExists {
        message: String,
        resource_id: String,
        resource_arn: Option<String>,
    },
    /// Duplicate id of a resource kind AWS reports with ConflictException (templates).
    #[error("{message}")]
    Conflict {
        message: String,
        resource_id: String,
    },
    #[error("{0}")]
    InvalidStateTransition(String),
    #[error("{0}")]
    VersionConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("internal error: {0}")]
    Store(#[from] StoreError),
    /// The service task is gone (shutting down).
    #[error("the jobs service is not running")]
    Unavailable,
}

impl ServiceError {
    /// The AWS exception name (`x-amzn-ErrorType`).
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            ServiceError::InvalidRequest(_) => "InvalidRequestException",
            ServiceError::ResourceNotFound(_) => "ResourceNotFoundException",
            ServiceError::ResourceAlreadyExists { .. } => "ResourceAlreadyExistsException",
            ServiceError::Conflict { .. } => "ConflictException",
            ServiceError::InvalidStateTransition(_) => "InvalidStateTransitionException",
            ServiceError::VersionConflict(_) => "VersionConflictException",
            ServiceError::LimitExceeded(_) => "LimitExceededException",
            ServiceError::Store(_) => "InternalFailureException",
            ServiceError::Unavailable => "ServiceUnavailableException",
        }
    }

    /// The HTTP status AWS uses for this exception.
    pub fn http_status(&self) -> u16 {
        match self {
            ServiceError::InvalidRequest(_) => 400,
            ServiceError::ResourceNotFound(_) => 404,
            ServiceError::ResourceAlreadyExists { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::InvalidStateTransition(_)
            | ServiceError::VersionConflict(_) => 409,
            ServiceError::LimitExceeded(_) => 410,
            ServiceError::Store(_) => 500,
            ServiceError::Unavailable => 503,
        }
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        ServiceError::ResourceNotFound(format!("{what} does not exist"))
    }
}
