//! Shared watches for the agent gateway: one watch over all pods, split by node, and one over
//! Services and Endpoints, whatever the number of connected agents.
//!
//! Without them every agent stream would run its own watch, and every pod event would be
//! decoded and filtered once per connected node: thousands of nodes times thousands of
//! writes per second. Here each event is decoded once and only the sets of the nodes it
//! touches are rebuilt and published, through latest-value slots (a slow agent gets fewer,
//! newer sets and never holds up the others).
//!
//! The pod hub watches only while an agent is subscribed: agents stream to the leader alone,
//! and on a follower the watch would decode and serialize every pod change for nobody (it
//! took a quarter of each follower's CPU while pods were created). The first subscriber
//! starts it (the set comes once the hub has listed); it stops [`POD_HUB_IDLE`] after the
//! last one left.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use skiff_apiserver::objects::WatchEvent;
use skiff_apiserver::{ApiError, ListOptions, ObjectStore};
use skiff_proto::agent::{PodSet, ServiceSet};
use tokio::sync::watch;

/// How long the pod hub keeps watching with no agent subscribed (a leader's agents reconnect
/// within this after a blip, and find the hub still listed).
pub const POD_HUB_IDLE: Duration = Duration::from_secs(30);

/// When a hub with no subscriber has been so for its idle time (checked on a tick of a sixth
/// of it).
struct IdleTimer {
    idle: Duration,
    since: Option<tokio::time::Instant>,
    tick: tokio::time::Interval,
}

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        IdleTimer { idle, since: None, tick: tokio::time::interval((idle / 6).max(Duration::from_millis(10))) }
    }

    /// Waits for the next check.
    async fn tick(&mut self) {
        self.tick.tick().await;
    }

    /// Whether the hub has been without subscribers for the idle time, given whether it has
    /// any now.
    fn expired(&mut self, subscribed: bool) -> bool {
        if subscribed {
            self.since = None;
            return false;
        }
        self.since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= self.idle
    }
}

/// The largest set sent to one agent (under the gRPC message limit, with room for framing).
pub const MAX_SET_BYTES: usize = skiff_proto::agent::MAX_AGENT_MESSAGE_BYTES - 64 * 1024;

fn pods() -> &'static skiff_api::ResourceInfo {
    &skiff_api::registry::PODS
}

/// A pod as its agent gets it: everything but `status`, which the agent writes and never reads
/// back, and `metadata.resourceVersion`, which every write changes. A change of status alone
/// (most pod writes: the agent's own reports, conditions set by the control plane) therefore
/// sends no new set and wakes no pod worker.
fn pod_json(pod: &Value) -> String {
    skiff_apiserver::objects::json_without_status(pod)
}

/// Whether `a` and `b` are the same pod as agents get it ([`pod_json`]): equal but for
/// `status` and `metadata.resourceVersion`. Compared in place, nothing serialized or copied.
fn same_agent_view(a: &Value, b: &Value) -> bool {
    skiff_apiserver::objects::same_but_rv_and(a, b, Some("status"))
}

fn node_of(p: &Value) -> Option<&str> {
    p.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

#[derive(Default)]
struct PodState {
    /// Whether `by_node` reflects a list (sets are published only then).
    synced: bool,
    revision: u64,
    /// Bound pods by node, then uid, serialized once when they change (a node's set is sent
    /// whole on every change of one of its pods: re-serializing all of them each time made
    /// the leader's cost per pod event grow with the pods per node).
    by_node: HashMap<String, BTreeMap<String, String>>,
    /// The node each bound pod (by uid) is in `by_node` under, and the version it was
    /// serialized from (a change of that version's status alone is seen without serializing).
    node_of_uid: HashMap<String, (String, Arc<Value>)>,
    /// One latest-value slot per node with a connected agent.
    subscribers: HashMap<String, watch::Sender<Option<PodSet>>>,
}

impl PodState {
    fn set_for(&self, node: &str) -> Option<PodSet> {
        let pods_json: Vec<String> = self.by_node.get(node).map(|m| m.values().cloned().collect()).unwrap_or_default();
        let bytes: usize = pods_json.iter().map(|p| p.len() + 8).sum();
        if bytes > MAX_SET_BYTES {
            // Never send a partial set (the agent would stop the pods left out): keep the
            // agent on its last set until this node's pods fit again.
            tracing::error!(node, bytes, max = MAX_SET_BYTES, "pods bound to the node exceed the message limit");
            return None;
        }
        Some(PodSet { pods_json, revision: self.revision })
    }

    fn publish(&mut self, node: &str) {
        if !self.synced {
            return;
        }
        let Some(tx) = self.subscribers.get(node) else { return };
        if tx.receiver_count() == 0 {
            self.subscribers.remove(node);
            return;
        }
        if let Some(set) = self.set_for(node) {
            tx.send_replace(Some(set));
        }
    }

    /// Whether an agent is subscribed (forgetting the slots nobody reads any more).
    fn has_subscribers(&mut self) -> bool {
        self.subscribers.retain(|_, tx| tx.receiver_count() > 0);
        !self.subscribers.is_empty()
    }

    /// Back to not listed: what was kept is dropped until the next subscriber.
    fn reset(&mut self) {
        self.synced = false;
        self.by_node = HashMap::new();
        self.node_of_uid = HashMap::new();
    }

    fn remove_uid(&mut self, uid: &str) -> Option<String> {
        let (node, _) = self.node_of_uid.remove(uid)?;
        if let Some(m) = self.by_node.get_mut(&node) {
            m.remove(uid);
            if m.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    fn insert(&mut self, uid: String, node: String, pod: Arc<Value>, pod_json: String) {
        self.node_of_uid.insert(uid.clone(), (node.clone(), pod));
        self.by_node.entry(node).or_default().insert(uid, pod_json);
    }

    /// Whether `pod` (bound to `node`) is what `uid` is kept as but for its status: then it
    /// becomes the version kept, and its set stays as it is.
    fn same_but_status(&mut self, uid: &str, node: &str, pod: &Arc<Value>) -> bool {
        match self.node_of_uid.get_mut(uid) {
            Some((n, kept)) if n == node && same_agent_view(kept, pod) => {
                *kept = pod.clone();
                true
            }
            _ => false,
        }
    }
}

/// The pods bound to each node, kept from one watch over all pods.
pub struct PodHub {
    state: Mutex<PodState>,
    /// Signalled by each subscription (wakes an idle hub).
    subscribed: Arc<tokio::sync::Notify>,
}

impl PodHub {
    /// Starts the hub's task (it runs as long as the hub; it watches while agents subscribe,
    /// and [`POD_HUB_IDLE`] after).
    pub fn start(objects: Arc<ObjectStore>) -> Arc<PodHub> {
        Self::start_with_idle(objects, POD_HUB_IDLE)
    }

    /// [`PodHub::start`], watching `idle` after the last subscriber left.
    pub fn start_with_idle(objects: Arc<ObjectStore>, idle: Duration) -> Arc<PodHub> {
        let subscribed = Arc::new(tokio::sync::Notify::new());
        let hub = Arc::new(PodHub { state: Mutex::new(PodState::default()), subscribed: subscribed.clone() });
        tokio::spawn(run_pods(objects, Arc::downgrade(&hub), subscribed, idle));
        hub
    }

    /// Whether the hub has listed the pods and follows their changes.
    pub fn is_watching(&self) -> bool {
        self.state.lock().synced
    }

    /// The latest full set of pods bound to `node`; the receiver sees the current set as a
    /// change (once the hub has listed).
    pub fn subscribe(&self, node: &str) -> watch::Receiver<Option<PodSet>> {
        let mut st = self.state.lock();
        let current = if st.synced { st.set_for(node) } else { None };
        let tx = st.subscribers.entry(node.to_string()).or_insert_with(|| watch::channel(None).0);
        if current.is_some() {
            tx.send_replace(current);
        }
        let mut rx = tx.subscribe();
        if rx.borrow().is_some() {
            rx.mark_changed();
        }
        drop(st);
        self.subscribed.notify_one();
        rx
    }
}

async fn run_pods(
    objects: Arc<ObjectStore>,
    hub: std::sync::Weak<PodHub>,
    subscribed: Arc<tokio::sync::Notify>,
    idle: Duration,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        // Idle until an agent subscribes.
        loop {
            let wanted = subscribed.notified();
            {
                let Some(hub) = hub.upgrade() else { return };
                if hub.state.lock().has_subscribers() {
                    break;
                }
            }
            // Re-checked now and then: the hub may be gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), wanted).await;
        }
        let started = async {
            let list = objects.list(pods(), None, &ListOptions::default()).await?;
            let rv = list.resource_version.to_string();
            let everything = (skiff_api::LabelSelector::default(), skiff_api::FieldSelector::default());
            let w = objects.watch(pods(), None, Some(&rv), everything.0, everything.1).await?;
            Ok::<_, ApiError>((list, w))
        }
        .await;
        let (list, mut w) = match started {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("pod hub: watch not started: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        {
            let Some(hub) = hub.upgrade() else { return };
            let mut st = hub.state.lock();
            st.by_node.clear();
            st.node_of_uid.clear();
            for p in list.items {
                if let Some(node) = node_of(&p).map(str::to_string) {
                    let json = pod_json(&p);
                    st.insert(skiff_apiserver::meta::uid_of(&p).to_string(), node, Arc::new(p), json);
                }
            }
            st.revision = list.resource_version;
            st.synced = true;
            let nodes: Vec<String> = st.subscribers.keys().cloned().collect();
            for n in nodes {
                st.publish(&n);
            }
        }
        let mut timer = IdleTimer::new(idle);
        loop {
            let next = tokio::select! {
                n = w.next() => n,
                _ = timer.tick() => {
                    let Some(hub) = hub.upgrade() else { return };
                    let mut st = hub.state.lock();
                    let subscribed = st.has_subscribers();
                    if timer.expired(subscribed) {
                        tracing::debug!("pod hub: no agent subscribed for {idle:?}; not watching");
                        st.reset();
                        break;
                    }
                    continue;
                }
            };
            let events: Vec<WatchEvent> = match next {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!("pod hub: watch ended, relisting: {e}");
                    break;
                }
            };
            let Some(hub) = hub.upgrade() else { return };
            let mut st = hub.state.lock();
            let mut touched: Vec<String> = Vec::new();
            for ev in events {
                let uid = skiff_apiserver::meta::uid_of(&ev.object).to_string();
                let node = if ev.kind == "DELETED" { None } else { node_of(&ev.object) };
                if let Some(node) = node {
                    // Only its status changed (most pod writes): the agent's set stays as it is.
                    if st.same_but_status(&uid, node, &ev.object) {
                        continue;
                    }
                }
                let now = node.map(|n| (n.to_string(), pod_json(&ev.object)));
                if let Some(old) = st.remove_uid(&uid) {
                    touched.push(old);
                }
                if let Some((node, json)) = now {
                    touched.push(node.clone());
                    st.insert(uid, node, ev.object.clone(), json);
                }
            }
            st.revision = w.bookmark_revision();
            touched.sort();
            touched.dedup();
            for n in touched {
                st.publish(&n);
            }
        }
    }
}

/// The latest full set of Services and Endpoints, kept from one pair of watches.
/// Like the pod hub, it watches only while agents are subscribed (and [`POD_HUB_IDLE`] after).
pub struct ServiceHub {
    tx: watch::Sender<Option<ServiceSet>>,
    subscribed: Arc<tokio::sync::Notify>,
}

impl ServiceHub {
    /// Starts the hub's task (it runs as long as the process; it watches while agents
    /// subscribe, and [`POD_HUB_IDLE`] after).
    pub fn start(objects: Arc<ObjectStore>) -> Arc<ServiceHub> {
        Self::start_with_idle(objects, POD_HUB_IDLE)
    }

    /// [`ServiceHub::start`], watching `idle` after the last subscriber left.
    pub fn start_with_idle(objects: Arc<ObjectStore>, idle: Duration) -> Arc<ServiceHub> {
        let (tx, _) = watch::channel(None);
        let subscribed = Arc::new(tokio::sync::Notify::new());
        let hub = Arc::new(ServiceHub { tx: tx.clone(), subscribed: subscribed.clone() });
        tokio::spawn(run_services(objects, tx, subscribed, idle));
        hub
    }

    /// Whether the hub has listed Services and Endpoints and follows their changes.
    pub fn is_watching(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// The latest set; the receiver sees the current set as a change (once the hub has listed).
    pub fn subscribe(&self) -> watch::Receiver<Option<ServiceSet>> {
        let mut rx = self.tx.subscribe();
        if rx.borrow().is_some() {
            rx.mark_changed();
        }
        self.subscribed.notify_one();
        rx
    }
}

/// Keeps `out` holding the latest full set of Services and Endpoints while it has receivers
/// (list, then watch both; relist when a watch ends; `None` while idle).
async fn run_services(
    objects: Arc<ObjectStore>,
    out: watch::Sender<Option<ServiceSet>>,
    subscribed: Arc<tokio::sync::Notify>,
    idle: Duration,
) {
    let (svcs_res, eps_res) = (&skiff_api::registry::SERVICES, &skiff_api::registry::ENDPOINTS);
    let mut delay = Duration::from_millis(100);
    loop {
        // Idle until an agent subscribes.
        loop {
            let wanted = subscribed.notified();
            if out.receiver_count() > 0 {
                break;
            }
            wanted.await;
        }
        let started = async {
            let s = objects.list(svcs_res, None, &ListOptions::default()).await?;
            let e = objects.list(eps_res, None, &ListOptions::default()).await?;
            let everything = || (skiff_api::LabelSelector::default(), skiff_api::FieldSelector::default());
            let (l, f) = everything();
            let sw = objects.watch(svcs_res, None, Some(&s.resource_version.to_string()), l, f).await?;
            let (l, f) = everything();
            let ew = objects.watch(eps_res, None, Some(&e.resource_version.to_string()), l, f).await?;
            Ok::<_, ApiError>((s, e, sw, ew))
        }
        .await;
        let (s, e, mut sw, mut ew) = match started {
            Ok(x) => x,
            Err(err) => {
                tracing::debug!("service hub: watch not started: {err}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        let key = |o: &Value| {
            format!(
                "{}/{}",
                o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
                skiff_apiserver::meta::name_of(o)
            )
        };
        let mut services: BTreeMap<String, Value> = s.items.into_iter().map(|o| (key(&o), o)).collect();
        let mut endpoints: BTreeMap<String, Value> = e.items.into_iter().map(|o| (key(&o), o)).collect();
        let mut revision = s.resource_version.max(e.resource_version);
        let mut timer = IdleTimer::new(idle);
        loop {
            let set = ServiceSet {
                services_json: services.values().map(Value::to_string).collect(),
                endpoints_json: endpoints.values().map(Value::to_string).collect(),
                revision,
            };
            let bytes: usize = set.services_json.iter().chain(&set.endpoints_json).map(|j| j.len() + 8).sum();
            if bytes > MAX_SET_BYTES {
                tracing::error!(bytes, max = MAX_SET_BYTES, "services and endpoints exceed the message limit");
            } else {
                out.send_replace(Some(set));
            }
            let next = loop {
                tokio::select! {
                    r = sw.next() => break Some((r, &mut services)),
                    r = ew.next() => break Some((r, &mut endpoints)),
                    _ = timer.tick() => {
                        if timer.expired(out.receiver_count() > 0) {
                            break None;
                        }
                    }
                }
            };
            let Some((events, target)) = next else {
                tracing::debug!("service hub: no agent subscribed for {idle:?}; not watching");
                out.send_replace(None);
                break;
            };
            let events: Vec<WatchEvent> = match events {
                Ok(ev) => ev,
                Err(err) => {
                    tracing::debug!("service hub: watch ended, relisting: {err}");
                    break;
                }
            };
            for ev in events {
                if let Some(rv) =
                    ev.object.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|r| r.parse().ok())
                {
                    revision = revision.max(rv);
                }
                if ev.kind == "DELETED" {
                    target.remove(&key(&ev.object));
                } else {
                    target.insert(key(&ev.object), Arc::unwrap_or_clone(ev.object));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Two versions are the same to the agent exactly when their agent JSON is the same.
    #[test]
    fn a_change_of_status_or_resource_version_alone_is_the_same_agent_view() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "resourceVersion": "5", "labels": {"a": "1"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"}});
        let mut variants = Vec::new();
        let mut v = pod.clone();
        v["status"] = json!({"phase": "Running"});
        v["metadata"]["resourceVersion"] = json!("6");
        variants.push((v, true));
        let mut v = pod.clone();
        v.as_object_mut().unwrap().remove("status");
        variants.push((v, true));
        let mut v = pod.clone();
        v["metadata"]["labels"]["a"] = json!("2");
        variants.push((v, false));
        let mut v = pod.clone();
        v["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        v["metadata"]["annotations"] = json!({});
        variants.push((v, false));
        let mut v = pod.clone();
        v["spec"]["containers"][0]["image"] = json!("j");
        variants.push((v, false));
        let mut v = pod.clone();
        v["zeta"] = json!(1);
        variants.push((v, false));
        for (v, same) in variants {
            assert_eq!(same_agent_view(&pod, &v), same, "{v}");
            assert_eq!(same_agent_view(&v, &pod), same, "{v}");
            assert_eq!(pod_json(&pod) == pod_json(&v), same, "{v}");
        }
    }
}
