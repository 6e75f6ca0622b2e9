//! The object-store access trait the controllers run against (implemented by the composition root).

use futures::stream::BoxStream;
use serde_json::Value;

use crate::events::NewEvent;
use skiff_api::ResourceInfo;

/// Kind of change carried by a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One watch event: the object after the change (for `Deleted`, its last state).
#[derive(Debug, Clone)]
pub struct ObjEvent {
    pub kind: EventType,
    /// Shared with the other watches of the replica that delivered the same version.
    pub object: std::sync::Arc<Value>,
}

/// A failed API call, shaped like a Kubernetes `Status`: 404 NotFound, 409 Conflict/AlreadyExists,
/// 410 Expired/Gone, 503 Unavailable, …
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiCallError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiCallError {
    pub fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        ApiCallError { code, reason: reason.into(), message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "AlreadyExists", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }
    pub fn is_already_exists(&self) -> bool {
        self.code == 409 && self.reason == "AlreadyExists"
    }
    pub fn is_gone(&self) -> bool {
        self.code == 410
    }
}

/// Access to the replicated object store, as the controllers need it. Every write is a
/// compare-and-swap through Raft, so a deposed leader cannot make a decision stick.
#[async_trait::async_trait]
pub trait ObjectApi: Send + Sync + 'static {
    /// All objects of `res` (in `ns`, or all namespaces) and the store revision of the list.
    async fn list(&self, res: &'static ResourceInfo, ns: Option<&str>) -> Result<(Vec<Value>, u64), ApiCallError>;
    /// Changes after `after_revision`, in order; the stream ends with Err(code 410) if compacted.
    async fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        after_revision: u64,
    ) -> Result<BoxStream<'static, Result<ObjEvent, ApiCallError>>, ApiCallError>;
    async fn get(&self, res: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, ApiCallError>;
    /// Create (server fills uid, creationTimestamp, resourceVersion, defaults; generateName works).
    async fn create(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError>;
    /// Replace; `metadata.resourceVersion` in `obj` is a precondition (409 when stale). Status is
    /// ignored for resources with a status subresource.
    async fn update(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError>;
    /// Replace only `.status` (same precondition).
    async fn update_status(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError>;
    /// Delete; `precondition_uid` guards against deleting a same-named successor. `grace_seconds`
    /// Some(0) = immediately.
    async fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        precondition_uid: Option<&str>,
        grace_seconds: Option<i64>,
    ) -> Result<(), ApiCallError>;

    /// Binds `pod` (as read, its resourceVersion a precondition) to `node`: sets
    /// `spec.nodeName` and the `PodScheduled=True` condition. The store does both in one write;
    /// this default (for test doubles) does an update then a status update.
    async fn bind(&self, pod: Value, node: &str) -> Result<Value, ApiCallError> {
        let mut obj = pod;
        obj["spec"]["nodeName"] = Value::String(node.to_string());
        let mut bound = self.update(&skiff_api::registry::PODS, obj).await?;
        crate::scheduling::set_pod_scheduled(&mut bound, "True", None, None);
        self.update_status(&skiff_api::registry::PODS, bound).await
    }

    /// Creates an Event the event sink built ([`NewEvent`]): the store fills in
    /// `metadata.uid` and `creationTimestamp` and writes it as encoded, without a `Value` tree
    /// or the defaulting a client's object needs. This default (for test doubles) converts it
    /// and calls [`ObjectApi::create`].
    async fn create_event(&self, event: NewEvent) -> Result<(), ApiCallError> {
        let obj = serde_json::to_value(&event)
            .map_err(|e| ApiCallError::new(500, "InternalError", format!("event not encoded: {e}")))?;
        self.create(&skiff_api::registry::EVENTS, obj).await.map(|_| ())
    }

    /// Creates many Events the sink built, as [`ObjectApi::create_event`] creates one: one
    /// result per event, in order. The store writes them together, in one Raft entry; this
    /// default (for test doubles) writes them one by one.
    async fn create_events(&self, events: Vec<NewEvent>) -> Result<Vec<Result<(), ApiCallError>>, ApiCallError> {
        Ok(create_events_one_by_one(self, events).await)
    }

    /// Binds many pods at once (each as read, with its node); one result per pod, in order:
    /// the revision its binding was written at. The store writes them in one Raft entry,
    /// without copying the pods; this default binds them one by one.
    async fn bind_many(
        &self,
        pods: &[(std::sync::Arc<Value>, String)],
    ) -> Result<Vec<Result<u64, ApiCallError>>, ApiCallError> {
        let mut out = Vec::with_capacity(pods.len());
        for (pod, node) in pods {
            let bound = self.bind(Value::clone(pod), node).await;
            out.push(bound.map(|b| {
                b.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|r| r.parse().ok()).unwrap_or(0)
            }));
        }
        Ok(out)
    }
}

/// [`ObjectApi::create_event`] for each of `events`, in order: one result per event.
pub async fn create_events_one_by_one<A: ObjectApi + ?Sized>(
    api: &A,
    events: Vec<NewEvent>,
) -> Vec<Result<(), ApiCallError>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        out.push(api.create_event(event).await);
    }
    out
}
