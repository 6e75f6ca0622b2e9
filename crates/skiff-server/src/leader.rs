//! Leader-only loops: while this replica is the Raft leader, the controllers and the scheduler
//! run over a fenced view of the object store; they stop the moment leadership is lost.
//!
//! On becoming leader the replica writes a fencing key through Raft and every controller write
//! compares it, so a deposed leader whose loops have not noticed yet cannot make a write stick
//! after the next leader has taken over.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use openraft::ServerState;
use serde_json::Value;
use skiff_api::registry::{ResourceInfo, EVENTS};
use skiff_api::{FieldSelector, LabelSelector};
use skiff_apiserver::objects::{DeleteOptions, FieldValidation, ListOptions, Subresource, WriteOptions};
use skiff_apiserver::{ApiError, ObjectStore};
use skiff_controllers::{ApiCallError, ControllerConfig, EventType, HeartbeatTable, NewEvent, ObjEvent, ObjectApi};
use skiff_store::{ForwardRequest, ForwardResponse, Op, Request, StoreNode, Txn};
use tokio::sync::watch;

/// The fencing key the leader rewrites on taking office.
pub const FENCE_KEY: &str = "/skiff/leader-fence";
/// How often a leader checks that the fence is still its own.
const FENCE_CHECK: Duration = Duration::from_millis(500);

fn call_err(e: ApiError) -> ApiCallError {
    let s = e.status();
    ApiCallError::new(s.code, format!("{:?}", s.reason), s.message.clone())
}

fn ns_name(obj: &Value) -> (Option<String>, String) {
    let m = obj.get("metadata");
    let ns = m.and_then(|m| m.get("namespace")).and_then(Value::as_str).map(str::to_string);
    let name = m.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
    (ns, name)
}

/// [`ObjectApi`] over this replica's object store (writes go through Raft, fenced).
pub struct StoreApi(pub Arc<ObjectStore>);

/// Controllers' writes: objects they built, admitted as [`WriteOptions::internal`].
const CONTROLLER_WRITE: WriteOptions =
    WriteOptions { dry_run: false, field_validation: FieldValidation::Ignore, internal: true, managed_fields: None };

#[async_trait::async_trait]
impl ObjectApi for StoreApi {
    async fn list(&self, res: &'static ResourceInfo, ns: Option<&str>) -> Result<(Vec<Value>, u64), ApiCallError> {
        let l = self.0.list(res, ns, &ListOptions::default()).await.map_err(call_err)?;
        Ok((l.items, l.resource_version))
    }

    async fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        after_revision: u64,
    ) -> Result<BoxStream<'static, Result<ObjEvent, ApiCallError>>, ApiCallError> {
        let from = if after_revision == 0 { self.0.node().revision() } else { after_revision };
        let w = self
            .0
            .watch(res, ns, Some(&from.to_string()), LabelSelector::everything(), FieldSelector::everything())
            .await
            .map_err(call_err)?;
        let s = stream::unfold(Some(w), |w| async move {
            let mut w = w?;
            match w.next().await {
                Ok(events) => {
                    let items: Vec<Result<ObjEvent, ApiCallError>> = events
                        .into_iter()
                        .map(|e| {
                            let kind = match e.kind {
                                "ADDED" => EventType::Added,
                                "DELETED" => EventType::Deleted,
                                _ => EventType::Modified,
                            };
                            Ok(ObjEvent { kind, object: e.object })
                        })
                        .collect();
                    Some((stream::iter(items), Some(w)))
                }
                Err(e) => Some((stream::iter(vec![Err(call_err(e))]), None)),
            }
        })
        .flatten();
        Ok(s.boxed())
    }

    async fn get(&self, res: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, ApiCallError> {
        self.0.get(res, ns, name, false).await.map_err(call_err)
    }

    async fn create(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError> {
        let (ns, _) = ns_name(&obj);
        self.0.create(res, ns.as_deref(), obj, &CONTROLLER_WRITE).await.map(|w| w.object).map_err(call_err)
    }

    async fn create_event(&self, event: NewEvent) -> Result<(), ApiCallError> {
        self.create_events(vec![event])
            .await?
            .pop()
            .unwrap_or_else(|| Err(ApiCallError::new(500, "InternalError", "an event without an answer")))
    }

    async fn create_events(&self, events: Vec<NewEvent>) -> Result<Vec<Result<(), ApiCallError>>, ApiCallError> {
        // One slot per event: an encoding error at once, the others from the store, in order.
        let mut out: Vec<Option<Result<(), ApiCallError>>> = Vec::with_capacity(events.len());
        let mut built = Vec::with_capacity(events.len());
        for mut event in events {
            event.metadata.uid = skiff_apiserver::meta::new_uid();
            event.metadata.creation_timestamp = skiff_apiserver::meta::now_rfc3339();
            match serde_json::to_vec(&event) {
                Ok(json) => {
                    built.push((Some(event.metadata.namespace), event.metadata.name, json));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(ApiCallError::new(500, "InternalError", e.to_string())))),
            }
        }
        let mut written = self.0.create_many_built(&EVENTS, built).await.map_err(call_err)?.into_iter();
        Ok(out
            .into_iter()
            .map(|slot| {
                slot.or_else(|| written.next().map(|r| r.map(|_| ()).map_err(call_err)))
                    .unwrap_or_else(|| Err(ApiCallError::new(500, "InternalError", "an event without an answer")))
            })
            .collect())
    }

    async fn update(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError> {
        let (ns, name) = ns_name(&obj);
        self.0
            .update(res, ns.as_deref(), &name, obj, Subresource::Main, &CONTROLLER_WRITE)
            .await
            .map(|w| w.object)
            .map_err(call_err)
    }

    async fn update_status(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError> {
        let (ns, name) = ns_name(&obj);
        self.0
            .update(res, ns.as_deref(), &name, obj, Subresource::Status, &CONTROLLER_WRITE)
            .await
            .map(|w| w.object)
            .map_err(call_err)
    }

    async fn bind(&self, pod: Value, node: &str) -> Result<Value, ApiCallError> {
        let (ns, name) = ns_name(&pod);
        let m = pod.get("metadata");
        let uid = m.and_then(|m| m.get("uid")).and_then(Value::as_str);
        let rv = m.and_then(|m| m.get("resourceVersion")).and_then(Value::as_str);
        self.0.bind(ns.as_deref().unwrap_or("default"), &name, uid, rv, node).await.map_err(call_err)
    }

    async fn bind_many(&self, pods: &[(Arc<Value>, String)]) -> Result<Vec<Result<u64, ApiCallError>>, ApiCallError> {
        let rs = self.0.bind_many(pods).await.map_err(call_err)?;
        Ok(rs.into_iter().map(|r| r.map_err(call_err)).collect())
    }

    async fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        precondition_uid: Option<&str>,
        grace_seconds: Option<i64>,
    ) -> Result<(), ApiCallError> {
        let opts = DeleteOptions {
            grace_period_seconds: grace_seconds,
            precondition_uid: precondition_uid.map(str::to_string),
            ..Default::default()
        };
        self.0.delete(res, ns, name, &opts).await.map(|_| ()).map_err(call_err)
    }
}

fn leading(node: &StoreNode) -> Option<u64> {
    let m = node.raft().metrics().borrow().clone();
    (m.state == ServerState::Leader).then_some(m.current_term)
}

/// Runs the controllers and the scheduler whenever this replica leads, until `stop`.
pub async fn run(
    node: Arc<StoreNode>,
    objects: Arc<ObjectStore>,
    heartbeats: HeartbeatTable,
    cfg: ControllerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = node.raft().metrics();
    loop {
        // Wait for leadership (or the end).
        let term = loop {
            if *stop.borrow() {
                return;
            }
            if let Some(t) = leading(&node) {
                break t;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
        };
        // Take the fence: controllers' writes only land while it is ours. The write is executed
        // here, never forwarded: a replica that has just lost leadership must not take the
        // fence from the real leader.
        let fence = format!("{{\"leader\":{},\"term\":{term}}}", node.id());
        let txn = Txn { success: vec![Op::put(FENCE_KEY, fence.into_bytes())], ..Default::default() };
        let rev = match node.execute_local(ForwardRequest::Write(Request::Txn(txn))).await {
            Ok(ForwardResponse::Write(r)) => r.revision,
            Ok(other) => {
                tracing::warn!("unexpected answer to the fence write: {other:?}");
                continue;
            }
            Err(e) => {
                tracing::warn!("leader {} could not take the controller fence: {e}", node.id());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tracing::info!(term, fence_revision = rev, "leader: starting controllers and scheduler");
        let api: Arc<dyn ObjectApi> = Arc::new(StoreApi(Arc::new(objects.fenced(FENCE_KEY, rev))));
        let (tx, rx) = watch::channel(false);
        let mut task = tokio::spawn(skiff_controllers::run_all_with(
            api,
            cfg.clone(),
            heartbeats.clone(),
            rx,
            vec![skiff_controllers::scheduling::scheduler_task(Default::default())],
        ));
        // Run until leadership (or the term) changes, the fence is taken by someone else, or
        // the replica stops.
        let mut fence_check = tokio::time::interval(FENCE_CHECK);
        loop {
            if *stop.borrow() || leading(&node) != Some(term) {
                break;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { break },
                _ = stop.changed() => {}
                _ = &mut task => break,
                _ = fence_check.tick() => {
                    let held = node.get(FENCE_KEY, true).await.ok().and_then(|(kv, _)| kv).map(|kv| kv.mod_revision);
                    if held != Some(rev) {
                        tracing::warn!(term, "the controller fence moved to revision {held:?}; taking it again");
                        break;
                    }
                }
            }
        }
        let _ = tx.send(true);
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            tracing::warn!("controllers did not stop within 5 s; aborting them");
            task.abort();
        }
        tracing::info!(term, "leadership ended: controllers stopped");
    }
}
