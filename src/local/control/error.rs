//! The AWS rest-json error shape: HTTP status, `x-amzn-ErrorType: <Exception>` header and a
//! JSON body with `message` (plus `resourceId`/`resourceArn` where AWS sends them). botocore
//! reads the exception name from that header, so every failure of the control plane goes
//! through [`ApiError`].

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::local::service::ServiceError;

/// A control-plane error as AWS returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The exception name, e.g. `ResourceNotFoundException`.
    pub kind: &'static str,
    pub message: String,
    pub resource_id: Option<String>,
    pub resource_arn: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            resource_id: None,
            resource_arn: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
            message,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "message": self.message });
        if let Some(id) = &self.resource_id {
            body["resourceId"] = json!(id);
        }
        if let Some(arn) = &self.resource_arn {
            body["resourceArn"] = json!(arn);
        }
        body
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "control operation failed");
        }
        let mut err = ApiError::new(status, e.aws_error_type(), e.to_string());
        match e {
            ServiceError::ResourceAlreadyExists {
                resource_id,
                resource_arn,
                ..
            } => {
                err.resource_id = Some(resource_id);
                err.resource_arn = resource_arn;
            }
            ServiceError::Conflict { resource_id, .. } => err.resource_id = Some(resource_id),
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        // Exception names are ASCII identifiers; the header value always parses.
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            resp.headers_mut().insert("x-amzn-errortype", v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_aws_statuses_and_names() {
        let e: ApiError = ServiceError::ResourceAlreadyExists {
            message: "job j already exists".into(),
            resource_id: "j".into(),
            resource_arn: Some("arn:aws:iot:us-east-1:123456789012:job/j".into()),
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.kind, "ResourceAlreadyExistsException");
        assert_eq!(e.body()["resourceId"], "j");
        let e: ApiError = ServiceError::ResourceNotFound("x does not exist".into()).into();
        assert_eq!(
            (e.status.as_u16(), e.kind),
            (404, "ResourceNotFoundException")
        );
        let e: ApiError = ServiceError::LimitExceeded("too many".into()).into();
        assert_eq!((e.status.as_u16(), e.kind), (410, "LimitExceededException"));
    }

    #[test]
    fn response_carries_header_and_message() {
        let resp = ApiError::invalid("bad targets").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()["x-amzn-errortype"],
            "InvalidRequestException"
        );
    }
}
