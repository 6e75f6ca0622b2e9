//! The agent's HTTP endpoint: `GET /containerLogs/{ns}/{pod}/{container}` (what the API server's `pods/log` streams from) and `/healthz`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;

use crate::pod_manager::PodManager;

/// Query of `/containerLogs/...` (the kubelet's names).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    #[serde(default)]
    pub follow: Option<String>,
    #[serde(default)]
    pub tail_lines: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true") | Some("1"))
}

/// The agent's routes over its pod manager.
pub fn router(mgr: Arc<PodManager>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .with_state(mgr)
}

async fn container_logs(
    State(mgr): State<Arc<PodManager>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let tail = match q.tail_lines.as_deref().filter(|t| !t.is_empty()).map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n.max(0) as u64),
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "tailLines must be an integer\n").into_response(),
    };
    match mgr.logs(&ns, &pod, &container, truthy(&q.follow), tail, truthy(&q.previous)).await {
        Ok(stream) => {
            let body = Body::from_stream(stream.map(|chunk| chunk.map(bytes::Bytes::from)));
            let mut r = Response::new(body);
            r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("text/plain"));
            r
        }
        Err(e) if e.is_not_found() => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
