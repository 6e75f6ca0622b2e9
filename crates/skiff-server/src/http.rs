//! HTTP endpoints on `--api-addr` besides the Kubernetes API: liveness and readiness.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use skiff_store::StoreNode;

pub fn router(node: Arc<StoreNode>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(node)
}

/// Ready = a leader is known and this replica has applied what it had committed.
async fn readyz(State(node): State<Arc<StoreNode>>) -> (StatusCode, String) {
    match node.ready().await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}
