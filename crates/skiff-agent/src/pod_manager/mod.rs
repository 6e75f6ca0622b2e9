//! The pod manager (kubelet core): drives the runtime toward the desired pods and reports status changes.
//!
//! [`PodManager::sync`] hands over the full set of pods bound to this node. Each pod gets a
//! worker task that creates its sandbox and containers, restarts them per `restartPolicy`
//! with exponential backoff, runs probes, and tears everything down on deletion. Status
//! changes are coalesced per pod in an outbox and sent in batches on a bounded channel: while
//! the receiver is slow, newer statuses replace older ones, so memory stays bounded by the
//! number of pods.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{mpsc, watch, Notify};

use crate::error::{with_deadline, AgentError, Result};
use crate::runtime::{labels, ContainerInfo, ContainerState, LogOptions, LogStream, ObjectKind, Runtime};

pub mod service_env;
pub mod status;
mod worker;

/// Tunables of the pod manager; `PodManagerConfig::new(node)` gives the Kubernetes defaults.
#[derive(Debug, Clone)]
pub struct PodManagerConfig {
    /// This node's name: the `node-name` label of everything created, and what is adopted.
    pub node_name: String,
    /// Reported as `status.hostIP`.
    pub host_ip: String,
    /// The node's allocatable cpu and memory (Kubernetes quantities), what a container's
    /// `resourceFieldRef` to `limits.cpu` or `limits.memory` gives when it sets no limit.
    pub allocatable_cpu: String,
    pub allocatable_memory: String,
    /// First restart backoff (Kubernetes: 10 s); doubles per crash.
    pub backoff_initial: Duration,
    /// Backoff cap (Kubernetes: 5 min).
    pub backoff_max: Duration,
    /// How often a pod worker that is still getting its containers running (creating them,
    /// waiting for an image, retrying a failed start) looks again when nothing else wakes it.
    pub resync_interval: Duration,
    /// How often the node's containers are listed, in one runtime call, while it has pods; a
    /// pod whose objects there (ids and states) differ from what its worker last saw is woken
    /// (kubelet's PLEG relist). A pod whose containers all run is not looked at otherwise,
    /// except every `steady_resync_interval`.
    pub relist_interval: Duration,
    /// How often a pod whose containers all run (or have finished for good) is inspected
    /// anyway: the safety net under the relist.
    pub steady_resync_interval: Duration,
    /// After a failed pod sandbox creation the next try waits this long, doubling per
    /// failure up to `sandbox_retry_max` (an overloaded runtime is not hammered).
    pub sandbox_retry_initial: Duration,
    pub sandbox_retry_max: Duration,
    /// Deadline of one runtime call (a stop gets its grace period on top).
    pub runtime_timeout: Duration,
    /// Grace period for containers found at start whose pod is not in the first sync.
    pub orphan_grace: Duration,
    /// Capacity of the status channel, in batches.
    pub status_channel_capacity: usize,
    /// The most events in one batch.
    pub max_batch: usize,
    /// Recorded Kubernetes Events waiting to be sent; more are dropped (counted in the log).
    pub max_recorded_events: usize,
    /// The most pods managed at once; pods beyond it are ignored with a warning.
    pub max_pods: usize,
    /// How long a pod with `deletionTimestamp` keeps running before its containers get SIGTERM,
    /// so that its removal from the Endpoints reaches every node's service proxy first and no
    /// new connection is sent to a stopping container. Capped by the pod's grace period (a
    /// grace period of 0 stops at once); the grace period itself starts after this delay.
    pub termination_propagation_delay: Duration,
}

impl PodManagerConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        PodManagerConfig {
            node_name: node_name.into(),
            host_ip: "127.0.0.1".into(),
            allocatable_cpu: crate::connection::machine_cpus().to_string(),
            allocatable_memory: format!("{}Ki", crate::connection::machine_memory_bytes() / 1024),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            resync_interval: Duration::from_secs(1),
            relist_interval: Duration::from_secs(1),
            steady_resync_interval: Duration::from_secs(10),
            sandbox_retry_initial: Duration::from_secs(1),
            sandbox_retry_max: Duration::from_secs(30),
            runtime_timeout: Duration::from_secs(30),
            orphan_grace: Duration::from_secs(30),
            status_channel_capacity: 64,
            max_batch: 256,
            max_recorded_events: 256,
            max_pods: 1000,
            termination_propagation_delay: Duration::from_secs(2),
        }
    }
}

/// One pod's new status.
#[derive(Debug, Clone, PartialEq)]
pub struct PodStatusUpdate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
}

/// What the pod manager reports.
// Nearly every event is a `Status`: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PodEvent {
    /// The pod's status changed.
    Status(PodStatusUpdate),
    /// A deleted (or no longer desired) pod's containers and sandbox are gone.
    Removed { namespace: String, name: String, uid: String },
    /// A Kubernetes Event about the pod (never coalesced with the others).
    Recorded(RecordedEvent),
}

impl PodEvent {
    pub fn uid(&self) -> &str {
        match self {
            PodEvent::Status(s) => &s.uid,
            PodEvent::Removed { uid, .. } => uid,
            PodEvent::Recorded(r) => &r.uid,
        }
    }
}

/// A Kubernetes Event the agent records about one of its pods, as kubelet does: what
/// `kubectl describe pod` lists (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`,
/// `Unhealthy`, ...). Best effort: dropped when the outbox already holds
/// `PodManagerConfig::max_recorded_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.containers{NAME}` for a container's event, empty for the pod's own.
    pub field_path: String,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Latest pending status or removal per pod, in first-changed order, and the recorded
/// events not yet taken (bounded).
#[derive(Default)]
struct Outbox {
    order: VecDeque<String>,
    events: HashMap<String, PodEvent>,
    recorded: VecDeque<RecordedEvent>,
    dropped: u64,
}

/// The desired state handed to a pod worker.
#[derive(Clone)]
pub(crate) struct Desired {
    /// Shared with the pod set it came in: an unchanged pod is never copied.
    pub pod: Arc<Pod>,
    /// No longer in the desired set: stop and remove.
    pub removed: bool,
}

/// Container ids of a pod, published by its worker for log lookups.
#[derive(Default, Clone)]
pub(crate) struct Instances {
    /// container name → (current instance, previous instance).
    pub by_name: HashMap<String, (Option<String>, Option<String>)>,
}

/// A pod's objects (id, state; sorted by id) as its worker saw them at the end of its last
/// pass: what the relist compares the runtime with.
pub(crate) type Seen = Arc<Mutex<Vec<(String, ContainerState)>>>;

/// What a pod's worker shares with the relist: the worker publishes `seen`, the relist
/// notifies `wake` when the runtime's objects of the pod differ from it.
#[derive(Clone, Default)]
pub(crate) struct RelistLink {
    pub wake: Arc<Notify>,
    pub seen: Seen,
}

struct PodHandle {
    namespace: String,
    name: String,
    desired: watch::Sender<Desired>,
    relist: RelistLink,
    status: Arc<Mutex<Option<PodStatus>>>,
    instances: Arc<Mutex<Instances>>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Shared {
    pub runtime: Arc<dyn Runtime>,
    pub config: PodManagerConfig,
    pods: Mutex<HashMap<String, PodHandle>>,
    outbox: Mutex<Outbox>,
    outbox_notify: Notify,
    /// Containers found at start, by pod uid; taken by the first sync.
    adopted: Mutex<Option<HashMap<String, Vec<ContainerInfo>>>>,
    /// The cluster's Services (JSON objects), for the environment of pods started from now on.
    services: Mutex<Arc<Vec<serde_json::Value>>>,
}

impl Shared {
    /// Queue `event`, replacing the pod's pending one (a recorded event is appended instead).
    pub(crate) fn publish(&self, event: PodEvent) {
        let mut out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if let PodEvent::Recorded(r) = event {
            if out.recorded.len() >= self.config.max_recorded_events {
                out.dropped += 1;
                if out.dropped.is_power_of_two() {
                    tracing::warn!(dropped = out.dropped, reason = r.reason, "event outbox full; events dropped");
                }
                return;
            }
            out.recorded.push_back(r);
            drop(out);
            self.outbox_notify.notify_one();
            return;
        }
        let uid = event.uid().to_string();
        if out.events.insert(uid.clone(), event).is_none() {
            out.order.push_back(uid);
        }
        drop(out);
        self.outbox_notify.notify_one();
    }

    fn take_batch(&self) -> Vec<PodEvent> {
        let mut out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let n = out.order.len().min(self.config.max_batch.max(1));
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let uid = out.order.pop_front().expect("counted");
            if let Some(ev) = out.events.remove(&uid) {
                batch.push(ev);
            }
        }
        let room = self.config.max_batch.max(1).saturating_sub(batch.len());
        let n = out.recorded.len().min(room);
        batch.extend(out.recorded.drain(..n).map(PodEvent::Recorded));
        batch
    }

    /// The service variables for a pod starting now in `namespace`.
    pub(crate) fn service_env(&self, namespace: &str) -> Vec<(String, String)> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner()).clone();
        service_env::service_env(&services, namespace, &self.config.host_ip)
    }

    /// Whether a Service that publishes not-ready addresses selects `pod` (see
    /// [`service_env::publishes_unready`]).
    pub(crate) fn publishes_unready(&self, pod: &Pod) -> bool {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        pod.metadata.labels.as_ref().is_some_and(|l| service_env::publishes_unready(&services, ns, l))
    }

    /// Called by a worker once its pod is fully removed.
    pub(crate) fn forget(&self, uid: &str) {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    pub(crate) async fn call<T>(&self, op: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        with_deadline(op, self.config.runtime_timeout, fut).await
    }
}

/// Runs the pods bound to this node on a [`Runtime`]. Dropping it stops its tasks but leaves
/// containers running, so a new manager can adopt them.
pub struct PodManager {
    shared: Arc<Shared>,
    dispatcher: tokio::task::JoinHandle<()>,
    relister: tokio::task::JoinHandle<()>,
}

impl PodManager {
    /// Lists the runtime's containers of this node (to adopt them on the first [`sync`](Self::sync))
    /// and starts the status dispatcher. Returns the manager and the receiving end of the status
    /// channel (batches of events; bounded by `status_channel_capacity`).
    pub async fn start(
        runtime: Arc<dyn Runtime>,
        config: PodManagerConfig,
    ) -> Result<(PodManager, mpsc::Receiver<Vec<PodEvent>>)> {
        let selector = BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::NODE_NAME.to_string(), config.node_name.clone()),
        ]);
        let existing = with_deadline("list containers", config.runtime_timeout, runtime.list(&selector)).await?;
        let mut adopted: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        for info in existing {
            match info.pod_uid() {
                Some(uid) => adopted.entry(uid.to_string()).or_default().push(info),
                None => tracing::warn!(id = info.id, "managed container without a pod uid label; ignored"),
            }
        }
        tracing::info!(pods = adopted.len(), node = config.node_name, "found existing pods to adopt");
        let (tx, rx) = mpsc::channel(config.status_channel_capacity.max(1));
        let shared = Arc::new(Shared {
            runtime,
            config,
            pods: Mutex::default(),
            outbox: Mutex::default(),
            outbox_notify: Notify::new(),
            adopted: Mutex::new(Some(adopted)),
            services: Mutex::default(),
        });
        let dispatcher = tokio::spawn(dispatch(shared.clone(), tx));
        let relister = tokio::spawn(relist(shared.clone(), selector));
        Ok((PodManager { shared, dispatcher, relister }, rx))
    }

    /// Set the full desired set of pods bound to this node. Idempotent; call it on every change
    /// (or periodically). Pods with `metadata.deletionTimestamp` are terminated gracefully; pods
    /// missing from the set are stopped and removed.
    pub fn sync(&self, pods: Vec<Pod>) {
        self.sync_shared(pods.into_iter().map(Arc::new).collect());
    }

    /// [`PodManager::sync`] with pods shared with their source (the agent's pod-set decoder
    /// keeps the pods it already knows, so an unchanged pod is neither copied nor compared).
    pub fn sync_shared(&self, pods: Vec<Arc<Pod>>) {
        let shared = &self.shared;
        let node = shared.config.node_name.clone();
        let adopted = shared.adopted.lock().unwrap_or_else(|e| e.into_inner()).take();
        let first_sync = adopted.is_some();
        let mut adopted = adopted.unwrap_or_default();
        let mut map = shared.pods.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        for pod in pods {
            let pod_ref = crate::spec::pod_ref(&pod, &node);
            if !seen.insert(pod_ref.uid.clone()) {
                continue;
            }
            if let Some(h) = map.get(&pod_ref.uid) {
                h.desired.send_if_modified(|d| {
                    let changed = d.removed || !(Arc::ptr_eq(&d.pod, &pod) || *d.pod == *pod);
                    d.pod = pod;
                    d.removed = false;
                    changed
                });
                continue;
            }
            if map.len() >= shared.config.max_pods {
                tracing::warn!(pod = pod_ref.name, max = shared.config.max_pods, "too many pods; ignoring");
                continue;
            }
            let (desired, desired_rx) = watch::channel(Desired { pod, removed: false });
            let status = Arc::new(Mutex::new(None));
            let instances = Arc::new(Mutex::new(Instances::default()));
            let relist = RelistLink::default();
            let task = tokio::spawn(worker::run(
                shared.clone(),
                pod_ref.clone(),
                desired_rx,
                relist.clone(),
                adopted.remove(&pod_ref.uid).unwrap_or_default(),
                status.clone(),
                instances.clone(),
            ));
            map.insert(
                pod_ref.uid.clone(),
                PodHandle {
                    namespace: pod_ref.namespace,
                    name: pod_ref.name,
                    desired,
                    relist,
                    status,
                    instances,
                    task,
                },
            );
        }
        for (uid, h) in map.iter() {
            if !seen.contains(uid) {
                h.desired.send_if_modified(|d| !std::mem::replace(&mut d.removed, true));
            }
        }
        drop(map);
        if first_sync && !adopted.is_empty() {
            let runtime = shared.runtime.clone();
            let grace = shared.config.orphan_grace;
            let timeout = shared.config.runtime_timeout;
            tokio::spawn(async move {
                for (uid, objects) in adopted {
                    tracing::info!(uid, "removing containers of a pod no longer bound to this node");
                    remove_objects(runtime.as_ref(), objects, grace, timeout).await;
                }
            });
        }
    }

    /// Set the cluster's Services (full set, JSON `v1 Service` objects). Containers of pods
    /// started afterwards get `<NAME>_SERVICE_HOST` / `<NAME>_SERVICE_PORT` /
    /// `<NAME>_SERVICE_PORT_<PORTNAME>` for the Services of their namespace (see
    /// [`service_env`]); like in Kubernetes, running pods keep the variables they started with.
    pub fn set_services(&self, services: Vec<serde_json::Value>) {
        *self.shared.services.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(services);
    }

    /// The last status computed for a pod (also sent on the channel when it changed).
    pub fn status(&self, namespace: &str, name: &str) -> Option<PodStatus> {
        let map = self.shared.pods.lock().unwrap_or_else(|e| e.into_inner());
        let h = find_pod(&map, namespace, name)?;
        let s = h.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s
    }

    /// Number of pods being managed (including ones being torn down).
    pub fn pod_count(&self) -> usize {
        self.shared.pods.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The log of a container (`kubectl logs`): the current instance, or with `previous` the
    /// one before it. `follow` keeps the stream open while the container runs.
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        follow: bool,
        tail_lines: Option<u64>,
        previous: bool,
    ) -> Result<LogStream> {
        let id = {
            let map = self.shared.pods.lock().unwrap_or_else(|e| e.into_inner());
            let h = find_pod(&map, namespace, pod)
                .ok_or_else(|| AgentError::NoSuchObject { what: format!("pod {namespace}/{pod}") })?;
            let inst = h.instances.lock().unwrap_or_else(|e| e.into_inner());
            let (current, prev) = inst.by_name.get(container).cloned().ok_or_else(|| AgentError::NoSuchObject {
                what: format!("container {container:?} in pod {namespace}/{pod}"),
            })?;
            let id = if previous { prev } else { current };
            id.ok_or_else(|| AgentError::NoSuchObject {
                what: format!(
                    "{} container {container:?} in pod {namespace}/{pod}",
                    if previous { "previous terminated" } else { "started" }
                ),
            })?
        };
        let opts = LogOptions { follow, tail_lines };
        self.shared.call("logs", self.shared.runtime.logs(&id, &opts)).await
    }

    /// The runtime this manager drives.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.shared.runtime
    }
}

impl Drop for PodManager {
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.relister.abort();
        let map = self.shared.pods.lock().unwrap_or_else(|e| e.into_inner());
        for h in map.values() {
            h.task.abort();
        }
    }
}

/// The pod named `namespace/name`, preferring a live one over one being torn down (a pod
/// deleted and recreated under the same name has two uids for a while).
fn find_pod<'a>(map: &'a HashMap<String, PodHandle>, namespace: &str, name: &str) -> Option<&'a PodHandle> {
    let mut found = None;
    for h in map.values().filter(|h| h.namespace == namespace && h.name == name) {
        let d = h.desired.borrow();
        if !d.removed && d.pod.metadata.deletion_timestamp.is_none() {
            return Some(h);
        }
        found = Some(h);
    }
    found
}

/// Move batches from the outbox to the bounded channel until the receiver is gone.
async fn dispatch(shared: Arc<Shared>, tx: mpsc::Sender<Vec<PodEvent>>) {
    loop {
        let batch = shared.take_batch();
        if batch.is_empty() {
            shared.outbox_notify.notified().await;
            continue;
        }
        // Waits while the channel is full; meanwhile newer statuses coalesce in the outbox.
        if tx.send(batch).await.is_err() {
            tracing::debug!("status receiver dropped; dispatcher stops");
            return;
        }
    }
}

/// Lists the node's objects every `relist_interval` while it has pods and wakes the worker of
/// every pod whose objects in the runtime (ids and states) differ from what the worker saw at
/// the end of its last pass: one runtime call per node per period instead of two inspects per
/// pod, and no wake for what a worker did itself (kubelet's PLEG, compared with the workers'
/// own view rather than with the previous list). A failed list is logged and retried at the
/// next period. A runtime that tells when nothing changed ([`Runtime::generation`]) is not
/// listed again until something did: a worker's own changes cost one list at the next
/// period, which wakes nobody whose published view already matches.
async fn relist(shared: Arc<Shared>, selector: BTreeMap<String, String>) {
    let mut tick = tokio::time::interval(shared.config.relist_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The runtime's generation at the start of the last successful list.
    let mut listed_at: Option<u64> = None;
    loop {
        tick.tick().await;
        if shared.pods.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            continue;
        }
        // Read before listing: a change during the list moves it on, and the next period lists.
        let generation = shared.runtime.generation();
        if generation.is_some() && generation == listed_at {
            continue;
        }
        let listed = match shared.call("list containers", shared.runtime.list_states(&selector)).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "relisting the node's containers failed");
                continue;
            }
        };
        listed_at = generation;
        let mut by_pod: HashMap<String, Vec<(String, ContainerState)>> = HashMap::new();
        for o in listed {
            if let Some(uid) = o.pod_uid {
                by_pod.entry(uid).or_default().push((o.id, o.state));
            }
        }
        let pods = shared.pods.lock().unwrap_or_else(|e| e.into_inner());
        for (uid, h) in pods.iter() {
            let mut now = by_pod.remove(uid).unwrap_or_default();
            now.sort_by(|a, b| a.0.cmp(&b.0));
            if *h.relist.seen.lock().unwrap_or_else(|e| e.into_inner()) != now {
                h.relist.wake.notify_one();
            }
        }
    }
}

/// Stop (with `grace`) and remove runtime objects: app containers first, then sandboxes.
pub(crate) async fn remove_objects(
    runtime: &dyn Runtime,
    objects: Vec<ContainerInfo>,
    grace: Duration,
    timeout: Duration,
) {
    let (sandboxes, containers): (Vec<_>, Vec<_>) = objects.into_iter().partition(|o| o.kind == ObjectKind::Sandbox);
    let stops = containers.iter().map(|c| async move {
        let _ = with_deadline("stop container", grace + timeout, runtime.stop_container(&c.id, grace)).await;
        if let Err(e) = with_deadline("remove container", timeout, runtime.remove_container(&c.id)).await {
            tracing::warn!(id = c.id, error = %e, "removing container failed");
        }
    });
    futures::future::join_all(stops).await;
    for s in sandboxes {
        if let Err(e) = with_deadline("remove sandbox", grace + timeout, runtime.remove_sandbox(&s.id)).await {
            tracing::warn!(id = s.id, error = %e, "removing sandbox failed");
        }
    }
}
