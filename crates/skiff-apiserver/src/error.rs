//! The API server's error: a Kubernetes `Status`, rendered as the HTTP response body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use skiff_api::status as st;
use skiff_api::Status;
use skiff_store::StoreError;

/// A failed API request, carried as the `Status` Kubernetes clients expect.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} ({:?}): {}", .0.code, .0.reason, .0.message)]
pub struct ApiError(pub Box<Status>);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> &Status {
        &self.0
    }
    pub fn code(&self) -> u16 {
        self.0.code
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        st::bad_request(msg).into()
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        st::internal_error(msg).into()
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(Box::new(s))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        ApiError::from(match e {
            StoreError::Compacted { requested, oldest } => st::resource_expired(requested, oldest),
            StoreError::InvalidArgument(m) if m.contains("the limit is") => st::request_entity_too_large(&m),
            StoreError::InvalidArgument(m) => st::bad_request(m),
            StoreError::Timeout(_) => st::timeout(msg),
            StoreError::Overloaded(_) => st::too_many_requests(msg),
            StoreError::ForwardToLeader { .. }
            | StoreError::NoLeader
            | StoreError::Unavailable(_)
            | StoreError::Shutdown
            | StoreError::Membership(_) => st::service_unavailable(msg),
            StoreError::Raft(_) | StoreError::Storage(_) => st::internal_error(msg),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        if code == StatusCode::SERVICE_UNAVAILABLE || code == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}
