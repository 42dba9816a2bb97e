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
    /// SERVICE_UNAVAILABLE, SHUTTING_DOWN (503: the service is draining; another
    /// replica can take the request), TIMEOUT (504: the work passed its deadline),
    /// REQUEST_TIMEOUT (408: the body did not arrive in time), UNAUTHORIZED (401),
    /// FORBIDDEN (403: Host not served, a browser request from another origin),
    /// UNSUPPORTED_MEDIA_TYPE (415: a POST body not sent as JSON), RATE_LIMITED (429),
    /// HEADERS_TOO_LARGE (431), URI_TOO_LONG (414).
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
    /// Seconds for `Retry-After` (429 and 503 say 1 when not set).
    pub retry_after: Option<u64>,
    /// The request field at fault, when one is (the OpenAI error shape names it).
    pub param: Option<String>,
}

/// The request field an error response is about, carried to the `/v1` error shape.
#[derive(Clone, Debug)]
pub struct ErrorParam(pub String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            param: None,
        }
    }

    /// Name the request field at fault.
    pub fn param(mut self, field: impl Into<String>) -> Self {
        self.param = Some(field.into());
        self
    }

    /// Answer with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
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
            Error::Unavailable(_) | Error::ShuttingDown(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
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
        if let Some(p) = self.param {
            resp.extensions_mut().insert(ErrorParam(p));
        }
        let busy = self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS;
        if let Some(secs) = self.retry_after.or(busy.then_some(1)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
