//! Pod logs: the API server asks the node agent that runs the pod (`pods/<name>/log`).

use axum::body::Body;
use serde_json::Value;

use crate::error::ApiResult;

/// Query parameters of `GET .../pods/<name>/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub previous: bool,
    pub timestamps: bool,
}

/// Where logs come from: the composition root plugs in a client of the node agents.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync {
    /// The log of a container of `pod` (the pod object as stored), as a streaming body.
    async fn logs(&self, pod: &Value, opts: LogOptions) -> ApiResult<Body>;
}
