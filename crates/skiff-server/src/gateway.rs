//! The agent gateway: the gRPC `AgentGateway` service through which node agents register, heartbeat, receive their pods and report pod status (leader only).
//!
//! One stream per agent. Only the Raft leader serves streams, and only while a quorum
//! acknowledges it ([`StoreNode::serving_leadership`]); a follower answers `NotLeader` with
//! the leader's gRPC address, and a leader that loses leadership, or is cut off from the
//! other voters (so the majority elects another one, whose node monitor would otherwise
//! find every agent silent), says the same, without naming itself, and closes its streams.
//! Heartbeats go to the in-memory [`HeartbeatTable`] only (never a store write). The full
//! set of pods bound to the node is pushed on every change, from the shared
//! [`crate::hub::PodHub`] through a latest-value slot, so a slow agent gets fewer, newer sets
//! and never stalls the leader; Services and Endpoints likewise.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use skiff_apiserver::objects::Propagation;
use skiff_apiserver::{ApiError, DeleteOptions, ObjectStore, Subresource, WriteOptions};
use skiff_controllers::HeartbeatTable;
use skiff_proto::agent::agent_gateway_server::AgentGateway;
use skiff_proto::agent::{
    agent_message, gateway_message, AgentMessage, GatewayMessage, NotLeader, PodEventRecord, PodRemoved, PodStatus,
};
use skiff_store::StoreNode;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// The most statuses accepted in one batch.
pub const MAX_STATUS_BATCH: usize = 1024;
/// The most events accepted in one batch.
pub const MAX_EVENT_BATCH: usize = 1024;
/// Longest event reason and message kept (Kubernetes truncates messages to 1 KiB too).
const MAX_EVENT_REASON: usize = 128;
const MAX_EVENT_MESSAGE: usize = 1024;
/// How long an agent has to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound messages buffered per stream.
const OUTBOUND_CAPACITY: usize = 8;
/// Attempts of one status write that loses compare-and-set races.
const STATUS_RETRIES: usize = 8;
/// Status writes of one batch in flight at once.
const STATUS_WRITE_CONCURRENCY: usize = 32;
/// How long a new stream waits for the service set before sending the pod set anyway.
const SERVICES_FIRST_WAIT: Duration = Duration::from_secs(2);

/// The `AgentGateway` service of one replica.
#[derive(Clone)]
pub struct GatewaySvc {
    pub node: Arc<StoreNode>,
    pub objects: Arc<ObjectStore>,
    pub heartbeats: HeartbeatTable,
    pub pod_hub: Arc<crate::hub::PodHub>,
    pub service_hub: Arc<crate::hub::ServiceHub>,
    /// Writes the agents' events (as `kubelet`, best effort, bounded queue).
    pub events: skiff_controllers::EventRecorder,
}

type OutStream = Pin<Box<dyn Stream<Item = Result<GatewayMessage, Status>> + Send>>;

fn not_leader_msg(node: &StoreNode) -> GatewayMessage {
    let st = node.status();
    // A leader that lost its quorum still names itself: no hint then, the agent tries the next.
    let leader_addr = st
        .leader
        .filter(|l| *l != node.id())
        .and_then(|l| st.members.iter().find(|m| m.id == l).map(|m| m.addr.clone()))
        .unwrap_or_default();
    GatewayMessage { msg: Some(gateway_message::Msg::NotLeader(NotLeader { leader_addr })) }
}

fn pods() -> &'static skiff_api::ResourceInfo {
    skiff_api::lookup("pods").expect("pods are served")
}

fn nodes() -> &'static skiff_api::ResourceInfo {
    skiff_api::lookup("nodes").expect("nodes are served")
}

#[tonic::async_trait]
impl AgentGateway for GatewaySvc {
    type ConnectStream = OutStream;

    async fn connect(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<OutStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<GatewayMessage, Status>>(OUTBOUND_CAPACITY);
        if !self.node.is_serving_leader() {
            let _ = tx.try_send(Ok(not_leader_msg(&self.node)));
            return Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))));
        }
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage { msg: Some(agent_message::Msg::Hello(h)) }))) => h,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message of a stream must be Hello")),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        if hello.node_name.is_empty() {
            return Err(Status::invalid_argument("Hello without a node name"));
        }
        let node_obj: Value = serde_json::from_str(&hello.node_json)
            .map_err(|e| Status::invalid_argument(format!("Hello.node_json is not JSON: {e}")))?;
        let registered = register_node(&self.objects, &hello.node_name, node_obj).await.map_err(|e| {
            if e.code() == 503 || e.code() == 504 {
                Status::unavailable(format!("registering node {}: {e}", hello.node_name))
            } else {
                Status::internal(format!("registering node {}: {e}", hello.node_name))
            }
        })?;
        // What `kubectl describe node` lists under Events, as Kubernetes' node controller and
        // kubelet record them (not on a reconnect of a node that stayed Ready).
        if registered.created {
            self.events.for_component("node-controller").normal(
                nodes(),
                &registered.node,
                "RegisteredNode",
                format!("Node {0} event: Registered Node {0} in Controller", hello.node_name),
            );
        }
        if registered.turned_ready {
            self.events.normal(
                nodes(),
                &registered.node,
                "NodeReady",
                format!("Node {} status is now: NodeReady", hello.node_name),
            );
        }
        self.heartbeats.record(&hello.node_name);
        tracing::info!(node = hello.node_name, "agent connected");
        tokio::spawn(session(self.clone(), hello.node_name, inbound, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// What [`register_node`] did.
pub struct Registered {
    /// The Node as written.
    pub node: Value,
    /// It did not exist before.
    pub created: bool,
    /// Its `Ready` condition is now `True` and was not before (or it is new and Ready).
    pub turned_ready: bool,
}

fn ready_true(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Creates the Node object or brings an existing one up to date with what the agent reports
/// (labels merged, status replaced; spec — taints, unschedulable — left to its owners).
pub async fn register_node(objects: &ObjectStore, name: &str, mut reported: Value) -> Result<Registered, ApiError> {
    let res = nodes();
    let now = skiff_apiserver::meta::rfc3339_in(0);
    if let Some(conds) = reported.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
        for c in conds {
            c["lastHeartbeatTime"] = json!(now);
            c["lastTransitionTime"] = json!(now);
        }
    }
    reported["metadata"]["name"] = json!(name);
    for _ in 0..STATUS_RETRIES {
        let existing = match objects.get(res, None, name, false).await {
            Ok(o) => Some(o),
            Err(e) if e.code() == 404 => None,
            Err(e) => return Err(e),
        };
        let Some(mut cur) = existing else {
            let mut obj = reported.clone();
            obj["apiVersion"] = json!("v1");
            obj["kind"] = json!("Node");
            match objects.create(res, None, obj, &WriteOptions::default()).await {
                Ok(w) => {
                    let turned_ready = ready_true(&w.object);
                    return Ok(Registered { node: w.object, created: true, turned_ready });
                }
                Err(e) if e.code() == 409 => continue,
                Err(e) => return Err(e),
            }
        };
        // Labels: the agent's win, others stay.
        let mut changed = false;
        if let Some(labels) = reported.pointer("/metadata/labels").and_then(Value::as_object) {
            let meta = cur["metadata"].as_object_mut().expect("stored objects have metadata");
            let cur_labels = meta.entry("labels").or_insert_with(|| json!({}));
            for (k, v) in labels {
                if cur_labels.get(k) != Some(v) {
                    cur_labels[k] = v.clone();
                    changed = true;
                }
            }
        }
        if changed {
            match objects.update(res, None, name, cur.clone(), Subresource::Main, &WriteOptions::default()).await {
                Ok(w) => cur = w.object,
                Err(e) if e.code() == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        // Keep the transition time of a condition whose status did not change.
        let mut status = reported.get("status").cloned().unwrap_or_else(|| json!({}));
        if let Some(new_conds) = status.get_mut("conditions").and_then(Value::as_array_mut) {
            let old = cur.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            for c in new_conds {
                if let Some(o) = old.iter().find(|o| o.get("type") == c.get("type")) {
                    if o.get("status") == c.get("status") {
                        if let Some(t) = o.get("lastTransitionTime") {
                            c["lastTransitionTime"] = t.clone();
                        }
                    }
                }
            }
        }
        let was_ready = ready_true(&cur);
        cur["status"] = status;
        match objects.update(res, None, name, cur, Subresource::Status, &WriteOptions::default()).await {
            Ok(w) => {
                let turned_ready = !was_ready && ready_true(&w.object);
                return Ok(Registered { node: w.object, created: false, turned_ready });
            }
            Err(e) if e.code() == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::from(skiff_api::status::conflict_modified(res, name)))
}

/// One agent's stream after Hello: pushes pod sets, applies what the agent reports, and
/// ends with NotLeader when this replica stops leading.
async fn session(
    svc: GatewaySvc,
    node_name: String,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<GatewayMessage, Status>>,
) {
    let mut set_rx = svc.pod_hub.subscribe(&node_name);
    let mut svc_rx = svc.service_hub.subscribe();
    // What the agent sends is applied by its own task, so slow status writes never hold
    // back the pod sets going down.
    let mut reader = {
        let (svc, node_name) = (svc.clone(), node_name.clone());
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => handle(&svc, &node_name, m).await,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(node = node_name, "agent stream ended: {e}");
                        return;
                    }
                }
            }
        })
    };
    // The service set goes first: a pod gets the variables of the Services that exist when it
    // starts, so the agent must know them before it starts the pods of its first set. (The
    // service hub may still be listing: waited for, bounded.)
    let first = tokio::select! {
        r = tokio::time::timeout(SERVICES_FIRST_WAIT, svc_rx.wait_for(Option::is_some)) => match r {
            Ok(Ok(set)) => set.clone(),
            _ => None,
        },
        _ = &mut reader => {
            tracing::info!(node = node_name, "agent disconnected");
            return;
        }
    };
    if let Some(set) = first {
        let msg = GatewayMessage { msg: Some(gateway_message::Msg::Services(set)) };
        if tx.send(Ok(msg)).await.is_err() {
            reader.abort();
            return;
        }
    }
    // Woken only when leadership (with a quorum) flips: no per-stream timer (thousands of agents).
    let mut leading = svc.node.serving_leadership();
    loop {
        tokio::select! {
            changed = set_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let set = set_rx.borrow_and_update().clone();
                if let Some(set) = set {
                    let msg = GatewayMessage { msg: Some(gateway_message::Msg::Pods(set)) };
                    // Waits only for this stream's buffer; newer sets replace this one meanwhile.
                    tokio::select! {
                        sent = tx.send(Ok(msg)) => if sent.is_err() { break },
                        _ = &mut reader => break,
                    }
                }
            }
            changed = svc_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let set = svc_rx.borrow_and_update().clone();
                if let Some(set) = set {
                    let msg = GatewayMessage { msg: Some(gateway_message::Msg::Services(set)) };
                    tokio::select! {
                        sent = tx.send(Ok(msg)) => if sent.is_err() { break },
                        _ = &mut reader => break,
                    }
                }
            }
            _ = &mut reader => break,
            _ = async { leading.wait_for(|l| !*l).await.map(|_| ()) } => {
                let _ = tx.try_send(Ok(not_leader_msg(&svc.node)));
                break;
            }
        }
    }
    reader.abort();
    tracing::info!(node = node_name, "agent disconnected");
}

async fn handle(svc: &GatewaySvc, node_name: &str, m: AgentMessage) {
    // Whatever the agent sends shows it alive, as a heartbeat does (a busy agent sends status
    // batches instead of heartbeats).
    if m.msg.is_some() {
        svc.heartbeats.record(node_name);
    }
    match m.msg {
        Some(agent_message::Msg::Heartbeat(_)) => {}
        Some(agent_message::Msg::Statuses(batch)) => {
            // The events recorded with these statuses go to the recorder's queue (never waits).
            for e in batch.events.into_iter().take(MAX_EVENT_BATCH) {
                record_agent_event(&svc.events, node_name, e);
            }
            // One status per pod (the latest wins), written concurrently: the store's group
            // commit turns them into a few Raft entries instead of one round trip each.
            let mut latest: std::collections::HashMap<(String, String), PodStatus> = std::collections::HashMap::new();
            for s in batch.statuses.into_iter().take(MAX_STATUS_BATCH) {
                latest.insert((s.namespace.clone(), s.name.clone()), s);
            }
            futures::stream::iter(latest.into_values())
                .for_each_concurrent(STATUS_WRITE_CONCURRENCY, |s| async move {
                    if let Err(e) = write_pod_status(&svc.objects, node_name, &s).await {
                        tracing::warn!(node = node_name, pod = s.name, ns = s.namespace, "pod status not written: {e}");
                    }
                })
                .await;
        }
        // Agents from before events rode with the statuses send them alone.
        Some(agent_message::Msg::Events(batch)) => {
            for e in batch.events.into_iter().take(MAX_EVENT_BATCH) {
                record_agent_event(&svc.events, node_name, e);
            }
        }
        Some(agent_message::Msg::Removed(r)) => {
            if let Err(e) = remove_pod(&svc.objects, node_name, &r).await {
                tracing::warn!(node = node_name, pod = r.name, ns = r.namespace, "removed pod not deleted: {e}");
            }
        }
        Some(agent_message::Msg::Hello(_)) | None => {}
    }
}

fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Hands one event an agent reported about a pod to the recorder, as `kubelet` on `node_name`.
/// An event without a pod name or reason is dropped; long reasons and messages are cut.
pub fn record_agent_event(events: &skiff_controllers::EventRecorder, node_name: &str, e: PodEventRecord) {
    if e.name.is_empty() || e.reason.is_empty() {
        tracing::debug!(node = node_name, "agent event without pod name or reason dropped");
        return;
    }
    let involved = skiff_controllers::InvolvedObject {
        api_version: "v1".to_string(),
        kind: "Pod".to_string(),
        namespace: Some(if e.namespace.is_empty() { "default".to_string() } else { e.namespace }),
        name: e.name,
        uid: e.uid,
        resource_version: None,
        field_path: Some(e.field_path).filter(|f| !f.is_empty()).map(|f| truncated(f, MAX_EVENT_REASON + 64)),
    };
    let kind = if e.warning { skiff_controllers::EventKind::Warning } else { skiff_controllers::EventKind::Normal };
    events.record_involved(
        involved,
        kind,
        &truncated(e.reason, MAX_EVENT_REASON),
        truncated(e.message, MAX_EVENT_MESSAGE),
        node_name,
    );
}

/// Writes the agent's status of one pod through the status subresource, keeping the
/// conditions the agent does not own (e.g. `PodScheduled`) and the control plane's
/// `qosClass` and `nominatedNodeName`. Retries lost races.
pub async fn write_pod_status(objects: &ObjectStore, node_name: &str, s: &PodStatus) -> Result<(), ApiError> {
    let res = pods();
    let status: Value = serde_json::from_str(&s.status_json)
        .map_err(|e| ApiError::bad_request(format!("status of pod {}/{} is not JSON: {e}", s.namespace, s.name)))?;
    if !status.is_object() {
        return Err(ApiError::bad_request("a pod status must be an object"));
    }
    // The first attempt takes the parsed status; a retry after a lost race parses it again
    // (it parsed once already, so it does again) instead of every write copying it.
    let mut parsed = Some(status);
    let merged = |cur: &Value| {
        if skiff_apiserver::meta::uid_of(cur) != s.uid
            || cur.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node_name)
        {
            return None; // another pod of that name, or no longer ours
        }
        let mut new_status = parsed.take().or_else(|| serde_json::from_str(&s.status_json).ok())?;
        let kept: Vec<Value> = {
            let agent_types: Vec<&Value> = new_status
                .get("conditions")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(|c| c.get("type")).collect())
                .unwrap_or_default();
            cur.pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter().filter(|c| c.get("type").is_none_or(|t| !agent_types.contains(&t))).cloned().collect()
                })
                .unwrap_or_default()
        };
        if !kept.is_empty() {
            let conds = new_status["conditions"].as_array_mut().map(std::mem::take).unwrap_or_default();
            new_status["conditions"] = Value::Array(kept.into_iter().chain(conds).collect());
        }
        // Fields set by the control plane, not the agent.
        for field in ["qosClass", "nominatedNodeName"] {
            if new_status.get(field).is_none() {
                if let Some(v) = cur.get("status").and_then(|st| st.get(field)) {
                    new_status[field] = v.clone();
                }
            }
        }
        Some(new_status)
    };
    // The status is built here from the agent's typed report: an internal write.
    let opts = WriteOptions { internal: true, ..Default::default() };
    match objects.update_status_with(res, Some(&s.namespace), &s.name, &opts, merged).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The agent removed a pod's containers: delete it now (grace 0, only that uid, only when
/// the pod is bound to the agent's node).
pub async fn remove_pod(objects: &Arc<ObjectStore>, node_name: &str, r: &PodRemoved) -> Result<(), ApiError> {
    match objects.get(pods(), Some(&r.namespace), &r.name, false).await {
        Ok(p) if p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node_name) => {}
        Ok(_) => return Ok(()),
        Err(e) if e.code() == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let opts = DeleteOptions {
        grace_period_seconds: Some(0),
        propagation: Some(Propagation::Background),
        precondition_uid: Some(r.uid.clone()),
        ..Default::default()
    };
    match objects.delete(pods(), Some(&r.namespace), &r.name, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == 404 || e.code() == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
