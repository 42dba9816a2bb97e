//! The single mapping from errors to HTTP: status code, `error_code`, `detail`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::time;
use crate::error::Error;

/// The body of every non-2xx response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words a caller can act on.
    pub detail: String,
    /// MODEL_NOT_INITIALIZED, INVALID_INPUT, SEQUENCE_TOO_LONG, INFERENCE_ERROR,
    /// CONFIG_ERROR, NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE,
    /// SERVICE_UNAVAILABLE, TIMEOUT.
    #[schema(example = "INVALID_INPUT")]
    pub error_code: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", detail)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Config(_)
            | Error::Checkpoint(_)
            | Error::NoAdapter(_)
            | Error::InvalidInput(_)
            | Error::Tokenizer(_)
            | Error::SequenceTooLong { .. }
            | Error::ModelNotInitialized => StatusCode::BAD_REQUEST,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Gpu { .. } | Error::OutOfMemory(_) | Error::DeviceLost(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            detail: self.detail,
            error_code: self.code.to_string(),
            timestamp: time::now(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
