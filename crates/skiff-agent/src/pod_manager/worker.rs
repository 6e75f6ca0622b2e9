//! One task per pod: sandbox, containers, restarts with backoff, probes, status, and teardown.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, HostIP, Pod,
    PodIP, PodStatus,
};
use tokio::sync::{watch, Notify};

use super::status::{condition, pod_phase, terminated, to_time};
use super::{remove_objects, Desired, Instances, PodEvent, PodStatusUpdate, RecordedEvent, RelistLink, Seen, Shared};
use crate::backoff::Backoff;
use crate::error::AgentError;
use crate::probe::{self, ProbeKind, ProbeSettings, Prober};
use crate::runtime::{labels, ContainerInfo, ContainerState, ObjectKind, PodRef};
use crate::spec;

/// Runtime state of one container of the pod.
struct CState {
    /// The latest instance (running or exited).
    current: Option<ContainerInfo>,
    /// The instance before it (kept for `logs --previous` and `lastState`).
    previous: Option<ContainerInfo>,
    restart_count: u32,
    backoff: Backoff,
    /// When the exited current instance may be restarted.
    restart_at: Option<Instant>,
    /// The delay that `restart_at` came from (for the CrashLoopBackOff message).
    backoff_delay: Duration,
    /// The `BackOff` event of the current wait was recorded.
    backoff_reported: bool,
    /// A (re)start is due and being retried (create failed, e.g. missing image).
    start_pending: bool,
    /// Why the container is waiting (create errors).
    waiting: Option<(String, String)>,
    /// Startup probe passed (or there is none) for the current instance.
    started: bool,
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
    /// The instance the probers belong to.
    probes_for: Option<String>,
    /// A stop of the current instance (probe failure, spec change) is in flight.
    killing: bool,
    kill_task: Option<tokio::task::JoinHandle<()>>,
    /// The container exited and the restart policy says it stays so.
    done: bool,
    /// The current instance failed to start: its (synthesized) exited state is final, the
    /// runtime's view ("created") is not consulted again.
    start_failed: bool,
}

impl CState {
    fn new(shared: &Shared) -> Self {
        CState {
            current: None,
            previous: None,
            restart_count: 0,
            backoff: Backoff::new(shared.config.backoff_initial, shared.config.backoff_max),
            restart_at: None,
            backoff_delay: Duration::ZERO,
            backoff_reported: false,
            start_pending: false,
            waiting: None,
            started: false,
            startup: None,
            liveness: None,
            readiness: None,
            probes_for: None,
            killing: false,
            kill_task: None,
            done: false,
            start_failed: false,
        }
    }

    fn drop_probers(&mut self) {
        self.startup = None;
        self.liveness = None;
        self.readiness = None;
    }

    /// Finished for good, or running with its probes set up and no start, restart or stop
    /// pending: only a change in the runtime or a probe result can move it on.
    fn settled(&self) -> bool {
        let running_probed = self.current.as_ref().is_some_and(|cur| {
            cur.state == ContainerState::Running && self.probes_for.as_deref() == Some(cur.id.as_str())
        });
        self.done
            || (running_probed
                && !self.start_pending
                && self.waiting.is_none()
                && !self.killing
                && self.restart_at.is_none())
    }

    fn ready(&self) -> bool {
        let running = self.current.as_ref().is_some_and(|c| c.state == ContainerState::Running);
        running
            && self.started
            && !self.killing
            && self.readiness.as_ref().is_none_or(|r| r.state().result == Some(true))
            && self.probes_for.is_some()
    }
}

struct Worker {
    shared: Arc<Shared>,
    pod_ref: PodRef,
    pod: Arc<Pod>,
    wake: Arc<Notify>,
    /// What this worker saw of its objects at the end of its last pass, for the relist.
    seen: Seen,
    sandbox: Option<ContainerInfo>,
    sandbox_attempt: u32,
    sandbox_error: Option<(String, String)>,
    /// Backoff of sandbox creation after failures, and when the next try may start.
    sandbox_backoff: Backoff,
    sandbox_retry_at: Option<Instant>,
    pod_ip: Option<String>,
    containers: HashMap<String, CState>,
    /// When the pod started on this node (its status's `startTime`; to the nanosecond for
    /// `activeDeadlineSeconds`).
    started_at: SystemTime,
    status: Option<PodStatus>,
    terminal: bool,
    /// `spec.activeDeadlineSeconds` ran out: the pod is failed (kubelet's `DeadlineExceeded`).
    deadline_exceeded: bool,
    /// Whether a proxy may have routed to the pod: this worker published it Ready, or adopted
    /// it from an earlier agent run whose statuses it does not know. A pod never Ready was
    /// never among its Services' ready endpoints (unless one publishes not-ready addresses),
    /// so its deletion skips the propagation delay.
    maybe_routed: bool,
    status_slot: Arc<Mutex<Option<PodStatus>>>,
    instances: Arc<Mutex<Instances>>,
    /// Service variables, fixed when the pod (worker) started.
    service_env: Vec<(String, String)>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    pod_ref: PodRef,
    mut desired: watch::Receiver<Desired>,
    RelistLink { wake, seen }: RelistLink,
    adopted: Vec<ContainerInfo>,
    status_slot: Arc<Mutex<Option<PodStatus>>>,
    instances: Arc<Mutex<Instances>>,
) {
    let pod = desired.borrow_and_update().pod.clone();
    let mut w = Worker {
        shared: shared.clone(),
        pod_ref: pod_ref.clone(),
        pod,
        wake,
        seen,
        sandbox: None,
        sandbox_attempt: 0,
        sandbox_error: None,
        sandbox_backoff: Backoff::new(shared.config.sandbox_retry_initial, shared.config.sandbox_retry_max),
        sandbox_retry_at: None,
        pod_ip: None,
        containers: HashMap::new(),
        started_at: SystemTime::now(),
        status: None,
        terminal: false,
        deadline_exceeded: false,
        maybe_routed: false,
        status_slot,
        instances,
        service_env: shared.service_env(&pod_ref.namespace),
    };
    w.adopt(adopted).await;
    loop {
        let d = desired.borrow_and_update().clone();
        if d.removed || d.pod.metadata.deletion_timestamp.is_some() {
            w.pod = d.pod;
            if !d.removed && (w.maybe_routed || shared.publishes_unready(&w.pod)) {
                // Let the Endpoints change reach every proxy before the containers stop
                // accepting connections; a later "removed" (force delete) cuts it short.
                let delay = shared.config.termination_propagation_delay.min(w.grace());
                if !delay.is_zero() {
                    tracing::debug!(pod = pod_ref.name, ?delay, "waiting for endpoint removal to propagate");
                    let _ = tokio::time::timeout(delay, desired.wait_for(|d| d.removed)).await;
                }
            }
            w.terminate().await;
            shared.forget(&pod_ref.uid);
            shared.publish(PodEvent::Removed {
                namespace: pod_ref.namespace.clone(),
                name: pod_ref.name.clone(),
                uid: pod_ref.uid.clone(),
            });
            return;
        }
        w.pod = d.pod;
        let next = w.reconcile().await;
        w.publish_status();
        w.publish_seen();
        let wake = w.wake.clone();
        tokio::select! {
            r = desired.changed() => if r.is_err() { return },
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

/// How long a `postStart` hook may take (kubelet sets none; every wait here has one).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// What a container gets for its stop after its `preStop` hook at the least, as in kubelet.
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// A container's `preStop` hook, with what it needs to run in a task of its own.
struct PreStop {
    action: probe::HookAction,
    shared: Arc<Shared>,
    pod_ref: PodRef,
    container: String,
    id: String,
    pod_ip: String,
}

impl PreStop {
    /// Run within `grace`; returns what is left of it for the stop (at least 2 s of it). A
    /// failure is told (`FailedPreStopHook`) and the stop goes on. A stop without grace (a
    /// forced deletion) runs no hook, as in kubelet.
    async fn run(self, grace: Duration) -> Duration {
        if grace.is_zero() {
            return grace;
        }
        let started = Instant::now();
        let rt = self.shared.runtime.clone();
        if let Err(e) = probe::run_hook(&self.action, rt.as_ref(), &self.id, &self.pod_ip, grace).await {
            tracing::info!(pod = self.pod_ref.name, container = self.container, error = e, "preStop hook failed");
            record(
                &self.shared,
                &self.pod_ref,
                Some(&self.container),
                true,
                "FailedPreStopHook",
                format!("PreStopHook failed: {e}"),
            );
        }
        grace.saturating_sub(started.elapsed()).max(MIN_GRACE_AFTER_HOOK.min(grace))
    }
}

/// Publish an event about the pod (or one of its containers) for the control plane.
fn record(shared: &Shared, pod_ref: &PodRef, container: Option<&str>, warning: bool, reason: &str, message: String) {
    shared.publish(PodEvent::Recorded(RecordedEvent {
        namespace: pod_ref.namespace.clone(),
        name: pod_ref.name.clone(),
        uid: pod_ref.uid.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")).unwrap_or_default(),
        warning,
        reason: reason.to_string(),
        message,
    }));
}

/// kubelet's words for a pod failed by its `activeDeadlineSeconds`.
const DEADLINE_EXCEEDED_MSG: &str = "Pod was active on the node longer than the specified deadline";

/// The instance ran to success (exit code 0, not a failed start).
fn succeeded(c: &ContainerInfo) -> bool {
    c.state == ContainerState::Exited && c.exit_code == Some(0) && c.reason.as_deref() != Some("StartError")
}

fn instant_of(t: Option<SystemTime>) -> Instant {
    let now = Instant::now();
    let ago = t.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

impl Worker {
    fn grace(&self) -> Duration {
        Duration::from_secs(spec::grace_seconds(&self.pod))
    }

    /// Record a Kubernetes Event about this pod (`container`: about one of its containers).
    fn event(&self, container: Option<&str>, warning: bool, reason: &str, message: String) {
        record(&self.shared, &self.pod_ref, container, warning, reason, message);
    }

    fn container_id(&self, id: &str) -> String {
        format!("{}://{id}", self.shared.runtime.name())
    }

    /// Take over containers found in the runtime at agent start.
    async fn adopt(&mut self, objects: Vec<ContainerInfo>) {
        if objects.is_empty() {
            return;
        }
        self.maybe_routed = true;
        let mut stale = Vec::new();
        let (mut sandboxes, apps): (Vec<_>, Vec<_>) = objects.into_iter().partition(|o| o.kind == ObjectKind::Sandbox);
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.attempt()));
        let mut sandboxes = sandboxes.into_iter();
        if let Some(sb) = sandboxes.next() {
            self.sandbox_attempt = sb.attempt();
            self.pod_ip = self.address(&sb);
            self.started_at = sb.started_at.or(sb.created_at).unwrap_or_else(SystemTime::now);
            self.sandbox = Some(sb);
        }
        stale.extend(sandboxes);
        let names: Vec<String> = spec::all_containers(&self.pod).map(|c| c.name.clone()).collect();
        let mut by_name: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for a in apps {
            let name = a.label(labels::CONTAINER_NAME).unwrap_or_default().to_string();
            if names.contains(&name) {
                by_name.entry(name).or_default().push(a);
            } else {
                stale.push(a);
            }
        }
        for (name, mut list) in by_name {
            list.sort_by_key(|c| std::cmp::Reverse(c.attempt()));
            let mut it = list.into_iter();
            let mut st = CState::new(&self.shared);
            st.current = it.next();
            st.previous = it.next();
            st.restart_count = st.current.as_ref().map(ContainerInfo::attempt).unwrap_or(0);
            stale.extend(it);
            tracing::info!(pod = self.pod_ref.name, container = name, restarts = st.restart_count, "adopted container");
            self.containers.insert(name, st);
        }
        self.publish_instances();
        for s in stale {
            // Plain container removal: never `remove_sandbox`, which would delete the pod's volumes.
            let _ = self.shared.call("remove container", self.shared.runtime.remove_container(&s.id)).await;
        }
    }

    /// One pass toward the desired state; returns when to look again: soon while something
    /// is pending, else (see [`Worker::steady`]) at the steady resync, the node's relist
    /// waking the pod earlier when its containers change in the runtime.
    async fn reconcile(&mut self) -> Instant {
        let start = Instant::now();
        let mut next = start + self.shared.config.resync_interval;
        if self.terminal || self.deadline_exceeded {
            return start + self.shared.config.steady_resync_interval;
        }
        let deadline = self.active_deadline();
        if deadline.is_some_and(|at| at <= start) {
            self.exceed_deadline().await;
            return start + self.shared.config.steady_resync_interval;
        }
        self.ensure_sandbox().await;
        let Some(sandbox) = self.sandbox.clone().filter(|s| s.state == ContainerState::Running) else {
            return next;
        };
        let pod = self.pod.clone();
        // Init containers one at a time, each to success, before the pod's containers.
        let init_policy = spec::init_restart_policy(&pod);
        for c in spec::init_containers(&pod) {
            if self.init_completed(&c.name) {
                continue;
            }
            self.rerun_in_new_sandbox(&c.name);
            self.reconcile_container(c, &sandbox, &mut next, init_policy).await;
            if !self.init_completed(&c.name) {
                return deadline.map_or(next, |at| next.min(at));
            }
        }
        let policy = spec::restart_policy(&pod);
        for c in spec::containers(&pod) {
            self.reconcile_container(c, &sandbox, &mut next, policy).await;
        }
        if self.steady() {
            next = start + self.shared.config.steady_resync_interval;
        }
        deadline.map_or(next, |at| next.min(at))
    }

    /// (container name, instance id) of the running instances, by name.
    fn running_instances(&self) -> Vec<(String, String)> {
        let mut running: Vec<(String, String)> = self
            .containers
            .iter()
            .filter_map(|(n, st)| {
                Some((n.clone(), st.current.as_ref().filter(|c| c.state == ContainerState::Running)?.id.clone()))
            })
            .collect();
        running.sort();
        running
    }

    /// Init container `name` ran to success in the current sandbox (it never runs again there).
    fn init_completed(&self, name: &str) -> bool {
        self.containers
            .get(name)
            .and_then(|st| st.current.as_ref())
            .is_some_and(|c| succeeded(c) && !self.before_sandbox(c))
    }

    /// `instance` was created before the current sandbox (in one that died since), or there is
    /// no sandbox now. Creation times tell it, so this holds across agent restarts too.
    fn before_sandbox(&self, instance: &ContainerInfo) -> bool {
        match self.sandbox.as_ref().map(|sb| sb.created_at) {
            None => true,
            Some(sandbox) => matches!((instance.created_at, sandbox), (Some(c), Some(s)) if c < s),
        }
    }

    /// As kubelet, a recreated sandbox runs the init containers again: an instance of init
    /// container `name` that finished in an earlier sandbox is due to start afresh now,
    /// whatever the restart policy (its restart count goes on).
    fn rerun_in_new_sandbox(&mut self, name: &str) {
        let stale = self.containers.get(name).and_then(|st| st.current.as_ref()).is_some_and(|c| {
            matches!(c.state, ContainerState::Exited | ContainerState::Unknown) && self.before_sandbox(c)
        });
        if let Some(st) = self.containers.get_mut(name).filter(|_| stale) {
            st.done = false;
            st.start_pending = true;
            st.restart_at = None;
            st.backoff.reset();
        }
    }

    /// When `spec.activeDeadlineSeconds` runs out, counted from the pod's start on this node.
    fn active_deadline(&self) -> Option<Instant> {
        let secs = u64::try_from(self.pod.spec.as_ref()?.active_deadline_seconds?).ok()?;
        Some(instant_of(Some(self.started_at)) + Duration::from_secs(secs))
    }

    /// The pod outlived its `activeDeadlineSeconds`: as kubelet, tell it, stop its containers
    /// within the grace period and fail it (its status then stops the sandbox).
    async fn exceed_deadline(&mut self) {
        tracing::info!(pod = self.pod_ref.name, "active deadline exceeded; stopping the pod");
        self.event(None, true, "DeadlineExceeded", DEADLINE_EXCEEDED_MSG.into());
        let rt = self.shared.runtime.clone();
        let (running, grace) = self.begin_stop().await;
        for (name, id) in running {
            let _ = self.shared.call("stop container", rt.stop_container(&id, grace)).await;
            let info = self.shared.call("inspect container", rt.inspect(&id)).await;
            if let (Some(st), Ok(info)) = (self.containers.get_mut(&name), info) {
                st.current = Some(info);
            }
        }
        self.deadline_exceeded = true;
    }

    /// The sandbox and every container run (or have finished for good), their probes are set
    /// up, and no start, restart or stop is pending: nothing changes until the runtime does
    /// (the relist's wake), a probe result does (the prober's wake) or the spec does.
    fn steady(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.state == ContainerState::Running)
            && spec::containers(&self.pod).iter().all(|c| self.containers.get(&c.name).is_some_and(CState::settled))
    }

    /// The pod's address: its sandbox's, or the node's for a pod on the node's network.
    fn address(&self, sandbox: &ContainerInfo) -> Option<String> {
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        sandbox.ip.clone().or_else(|| host_network.then(|| self.shared.config.host_ip.clone()))
    }

    async fn ensure_sandbox(&mut self) {
        let rt = self.shared.runtime.clone();
        if let Some(sb) = &self.sandbox {
            match self.shared.call("inspect sandbox", rt.inspect(&sb.id)).await {
                Ok(info) => self.sandbox = Some(info),
                Err(e) if e.is_not_found() => {
                    if let Some(sb) = self.sandbox.as_mut() {
                        sb.state = ContainerState::Exited;
                    }
                }
                Err(e) => tracing::warn!(pod = self.pod_ref.name, error = %e, "inspecting sandbox failed"),
            }
            let sb = self.sandbox.clone().expect("checked");
            if sb.state == ContainerState::Running {
                if let Some(ip) = self.address(&sb) {
                    self.pod_ip = Some(ip);
                }
                return;
            }
            // The sandbox died: its namespace is gone, so every container goes with it.
            tracing::warn!(pod = self.pod_ref.name, "pod sandbox is not running; recreating the pod's containers");
            self.event(None, false, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.".into());
            let grace = self.grace();
            for st in self.containers.values_mut() {
                st.drop_probers();
                if let Some(cur) = st.current.as_ref().filter(|c| c.state == ContainerState::Running) {
                    let _ = self.shared.call("stop container", async { rt.stop_container(&cur.id, grace).await }).await;
                }
            }
            let _ = self.shared.call("remove sandbox", rt.remove_container(&sb.id)).await;
            self.sandbox = None;
            self.sandbox_attempt += 1;
        }
        if self.sandbox_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let spec = spec::sandbox_spec(&self.pod, &self.pod_ref, self.sandbox_attempt);
        match self.shared.call("create sandbox", rt.create_sandbox(&spec)).await {
            Ok(info) => {
                tracing::debug!(pod = self.pod_ref.name, id = info.id, ip = ?info.ip, "sandbox started");
                self.pod_ip = self.address(&info);
                self.sandbox = Some(info);
                self.sandbox_error = None;
                self.sandbox_backoff.reset();
                self.sandbox_retry_at = None;
            }
            Err(AgentError::ImageNotPresent { image }) => {
                let err = (
                    "ErrImageNeverPull".to_string(),
                    format!("pod sandbox image {image:?} is not present with pull policy of Never"),
                );
                if self.sandbox_error.as_ref() != Some(&err) {
                    self.event(
                        None,
                        true,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {}", err.1),
                    );
                }
                self.sandbox_error = Some(err);
            }
            Err(e) => {
                // The first failure retries at the next pass; then 1 s, 2 s, … up to the cap.
                let wait = self.sandbox_backoff.next_delay(Duration::ZERO);
                tracing::warn!(pod = self.pod_ref.name, error = %e, retry_in = ?wait, "creating the pod sandbox failed");
                self.event(None, true, "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e}"));
                self.sandbox_retry_at = Some(Instant::now() + wait);
                self.sandbox_error = Some(("ContainerCreating".into(), format!("failed to create pod sandbox: {e}")));
            }
        }
    }

    /// Drive container `c` towards running (or finished, per `policy`, the restart policy that
    /// applies to it).
    async fn reconcile_container(&mut self, c: &Container, sandbox: &ContainerInfo, next: &mut Instant, policy: &str) {
        let rt = self.shared.runtime.clone();
        let mut st = self.containers.remove(&c.name).unwrap_or_else(|| CState::new(&self.shared));
        // Refresh the current instance.
        if let Some(cur) = st.current.clone().filter(|_| !st.start_failed) {
            match self.shared.call("inspect container", rt.inspect(&cur.id)).await {
                Ok(info) => st.current = Some(info),
                Err(e) if e.is_not_found() => {
                    if cur.state != ContainerState::Exited {
                        let mut gone = cur;
                        gone.state = ContainerState::Exited;
                        gone.exit_code = Some(137);
                        gone.reason = Some("ContainerStatusUnknown".into());
                        gone.message = Some("The container could not be located".into());
                        gone.finished_at = Some(SystemTime::now());
                        st.current = Some(gone);
                    }
                }
                Err(e) => tracing::warn!(pod = self.pod_ref.name, container = c.name, error = %e, "inspect failed"),
            }
        }
        let state = st.current.as_ref().map(|c| c.state);
        match state {
            None => {
                if !st.done {
                    self.start_instance(&mut st, c, sandbox, 0).await;
                }
            }
            Some(ContainerState::Running) => {
                st.waiting = None;
                if st.killing && st.kill_task.as_ref().is_none_or(|t| t.is_finished()) {
                    // The stop finished (or failed) yet the instance still runs: probe it afresh.
                    tracing::warn!(pod = self.pod_ref.name, container = c.name, "container survived a stop");
                    st.killing = false;
                    st.kill_task = None;
                    st.probes_for = None;
                }
                let hash = spec::container_spec_hash(c);
                let cur = st.current.clone().expect("running");
                if cur.label(labels::SPEC_HASH).is_some_and(|h| h != hash) && !st.killing {
                    tracing::info!(pod = self.pod_ref.name, container = c.name, "container spec changed; restarting");
                    let msg = format!("Container {} definition changed, will be restarted", c.name);
                    self.event(Some(&c.name), false, "Killing", msg);
                    self.kill(&mut st, c, &cur.id, self.grace());
                    st.backoff.reset();
                }
                self.manage_probes(&mut st, c, &cur);
            }
            Some(ContainerState::Created) => {
                // Created but never started (e.g. the agent stopped in between): start it now.
                let cur = st.current.clone().expect("created");
                self.start_created(&mut st, c, &cur.id).await;
            }
            Some(ContainerState::Exited) | Some(ContainerState::Unknown) => {
                st.drop_probers();
                st.probes_for = None;
                st.killing = false;
                st.kill_task = None;
                st.started = false;
                let cur = st.current.clone().expect("exited");
                let code = cur.exit_code.unwrap_or(-1);
                // A restart already due (a create to retry, an init container to run again
                // in a new sandbox) stands whatever the policy says of this exit.
                let restart = st.start_pending
                    || match policy {
                        "Never" => false,
                        "OnFailure" => code != 0,
                        _ => true,
                    };
                if !restart {
                    st.done = true;
                } else {
                    let now = Instant::now();
                    if !st.start_pending {
                        let restart_at = *st.restart_at.get_or_insert_with(|| {
                            let ran_for = match (cur.started_at, cur.finished_at) {
                                (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
                                _ => Duration::ZERO,
                            };
                            let delay = st.backoff.next_delay(ran_for);
                            st.backoff_delay = delay;
                            instant_of(cur.finished_at) + delay
                        });
                        if now < restart_at && !st.backoff_reported {
                            st.backoff_reported = true;
                            let msg = format!(
                                "Back-off restarting failed container {} in pod {}",
                                c.name,
                                self.pod_ref.kubelet_format()
                            );
                            self.event(Some(&c.name), true, "BackOff", msg);
                        }
                        if now >= restart_at {
                            st.backoff_reported = false;
                            st.restart_at = None;
                            st.start_pending = true;
                        } else {
                            *next = (*next).min(restart_at);
                        }
                    }
                    if st.start_pending {
                        let attempt = st.restart_count + 1;
                        self.start_instance(&mut st, c, sandbox, attempt).await;
                    }
                }
            }
        }
        // An instance started in this pass gets its probes (and, without a startup or
        // readiness probe, its readiness) now, not at the next pass a resync later.
        let unprobed = st
            .current
            .as_ref()
            .filter(|cur| cur.state == ContainerState::Running)
            .is_some_and(|cur| st.probes_for.as_deref() != Some(cur.id.as_str()) && !st.killing);
        if unprobed {
            let cur = st.current.clone().expect("checked");
            self.manage_probes(&mut st, c, &cur);
        }
        self.containers.insert(c.name.clone(), st);
    }

    /// Create and start instance `attempt` of container `c`.
    async fn start_instance(&mut self, st: &mut CState, c: &Container, sandbox: &ContainerInfo, attempt: u32) {
        let rt = self.shared.runtime.clone();
        let host_ip = self.shared.config.host_ip.clone();
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        let config = &self.shared.config;
        let fields = spec::FieldValues {
            pod: &self.pod,
            pod_ref: &self.pod_ref,
            pod_ip: &pod_ip,
            host_ip: &host_ip,
            allocatable_cpu: &config.allocatable_cpu,
            allocatable_memory: &config.allocatable_memory,
        };
        let mut cspec = match spec::container_spec(&self.pod, c, &self.pod_ref, attempt, &fields) {
            Ok(cspec) => cspec,
            Err(msg) => {
                // Kubelet's `CreateContainerConfigError`, told by a `Failed` event.
                st.start_pending = true;
                let event = ("Failed", format!("Error: {msg}"));
                self.wait(st, c, ("CreateContainerConfigError".to_string(), msg), event);
                return;
            }
        };
        cspec.env = super::service_env::merge(&self.service_env, std::mem::take(&mut cspec.env));
        st.start_pending = true;
        // No image check first: every runtime's create reports a missing image
        // (`ImageNotPresent`), which saves one runtime call per container start.
        let id = match self.shared.call("create container", rt.create_container(&sandbox.id, &cspec)).await {
            Ok(id) => id,
            Err(AgentError::ImageNotPresent { image }) => {
                let msg = format!("Container image {image:?} is not present with pull policy of Never");
                self.wait(st, c, ("ErrImageNeverPull".to_string(), msg.clone()), ("ErrImageNeverPull", msg));
                return;
            }
            Err(AgentError::ContainerConfig(msg)) => {
                st.start_pending = true;
                let event = ("Failed", format!("Error: {msg}"));
                self.wait(st, c, ("CreateContainerConfigError".to_string(), msg), event);
                return;
            }
            Err(e) => {
                tracing::warn!(pod = self.pod_ref.name, container = c.name, error = %e, "create container failed");
                self.event(Some(&c.name), true, "Failed", format!("Error: {e}"));
                st.waiting = Some(("CreateContainerError".into(), e.to_string()));
                return;
            }
        };
        // Images are never pulled: kubelet's event for a present image under IfNotPresent.
        self.event(
            Some(&c.name),
            false,
            "Pulled",
            format!("Container image {:?} already present on machine", cspec.image),
        );
        self.event(Some(&c.name), false, "Created", format!("Created container: {}", c.name));
        // The new instance replaces the current one; the one before that is removed.
        if let Some(old) = st.previous.take() {
            let _ = self.shared.call("remove container", rt.remove_container(&old.id)).await;
        }
        st.previous = st.current.take();
        st.restart_count = attempt;
        st.start_pending = false;
        st.waiting = None;
        st.started = false;
        st.killing = false;
        st.kill_task = None;
        st.start_failed = false;
        st.drop_probers();
        st.probes_for = None;
        st.current = Some(ContainerInfo {
            id: id.clone(),
            kind: ObjectKind::Container,
            labels: Default::default(),
            state: ContainerState::Created,
            exit_code: None,
            reason: None,
            message: None,
            created_at: Some(SystemTime::now()),
            started_at: None,
            finished_at: None,
            image: cspec.image.clone(),
            image_id: String::new(),
            ip: None,
        });
        self.publish_instances_with(&c.name, st);
        self.start_created(st, c, &id).await;
    }

    /// The container waits with `waiting` (reason, message); `event` (a Warning's reason and
    /// message) tells it when the wait starts or its reason changes, not at every pass.
    fn wait(&self, st: &mut CState, c: &Container, waiting: (String, String), event: (&str, String)) {
        if st.waiting.as_ref() != Some(&waiting) {
            self.event(Some(&c.name), true, event.0, event.1);
        }
        st.waiting = Some(waiting);
    }

    /// Start a created instance; a failed start becomes an exited instance (`StartError`).
    async fn start_created(&mut self, st: &mut CState, c: &Container, id: &str) {
        let name = c.name.as_str();
        let rt = self.shared.runtime.clone();
        let started = self.shared.call("start container", rt.start_container(id)).await;
        let info = self.shared.call("inspect container", rt.inspect(id)).await;
        if let Err(e) = &started {
            self.event(Some(name), true, "Failed", format!("Error: {e}"));
        } else {
            self.event(Some(name), false, "Started", format!("Started container {name}"));
        }
        match (started, info) {
            (Ok(()), Ok(info)) => {
                let running = info.state == ContainerState::Running;
                st.current = Some(info);
                if running {
                    self.post_start(st, c, id).await;
                }
            }
            (Ok(()), Err(e)) => {
                tracing::warn!(pod = self.pod_ref.name, id, error = %e, "inspect after start failed");
                if let Some(cur) = st.current.as_mut() {
                    cur.state = ContainerState::Running;
                    cur.started_at = Some(SystemTime::now());
                }
            }
            (Err(e), info) => {
                tracing::warn!(pod = self.pod_ref.name, id, error = %e, "start container failed");
                let mut cur = info.ok().or_else(|| st.current.clone()).expect("current instance");
                if cur.state != ContainerState::Exited {
                    cur.state = ContainerState::Exited;
                    cur.exit_code = Some(cur.exit_code.filter(|c| *c != 0).unwrap_or(128));
                    cur.finished_at = Some(SystemTime::now());
                    cur.started_at = cur.started_at.or(cur.finished_at);
                }
                cur.reason = Some("StartError".into());
                cur.message = Some(e.to_string());
                st.current = Some(cur);
                st.start_failed = true;
                self.wake.notify_one();
            }
        }
    }

    fn spawn_prober(&self, kind: ProbeKind, c: &Container, id: &str) -> Option<Prober> {
        let probe = match kind {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }?;
        let settings = ProbeSettings::from_k8s(kind, probe, c.ports.as_deref().unwrap_or_default());
        let ip = self.pod_ip.clone().unwrap_or_else(|| self.shared.config.host_ip.clone());
        Some(Prober::spawn(kind, settings, self.shared.runtime.clone(), id.to_string(), ip, self.wake.clone()))
    }

    fn manage_probes(&mut self, st: &mut CState, c: &Container, cur: &ContainerInfo) {
        if st.probes_for.as_deref() != Some(cur.id.as_str()) {
            st.drop_probers();
            st.probes_for = Some(cur.id.clone());
            st.started = c.startup_probe.is_none();
            if st.started {
                st.liveness = self.spawn_prober(ProbeKind::Liveness, c, &cur.id);
                st.readiness = self.spawn_prober(ProbeKind::Readiness, c, &cur.id);
            } else {
                st.startup = self.spawn_prober(ProbeKind::Startup, c, &cur.id);
            }
        }
        self.report_probe_failures(st, c);
        if st.killing {
            return;
        }
        if let Some(p) = &st.startup {
            let state = p.state();
            let grace = p.settings.termination_grace.unwrap_or_else(|| self.grace());
            match state.result {
                Some(true) => {
                    st.started = true;
                    st.startup = None;
                    st.liveness = self.spawn_prober(ProbeKind::Liveness, c, &cur.id);
                    st.readiness = self.spawn_prober(ProbeKind::Readiness, c, &cur.id);
                }
                Some(false) => {
                    tracing::info!(pod = self.pod_ref.name, container = c.name, msg = ?state.message, "startup probe failed; restarting");
                    let msg = format!("Container {} failed startup probe, will be restarted", c.name);
                    self.event(Some(&c.name), false, "Killing", msg);
                    self.kill(st, c, &cur.id, grace);
                    return;
                }
                None => {}
            }
        }
        if let Some(p) = &st.liveness {
            let state = p.state();
            if state.result == Some(false) {
                let grace = p.settings.termination_grace.unwrap_or_else(|| self.grace());
                tracing::info!(pod = self.pod_ref.name, container = c.name, msg = ?state.message, "liveness probe failed; restarting");
                let msg = format!("Container {} failed liveness probe, will be restarted", c.name);
                self.event(Some(&c.name), false, "Killing", msg);
                self.kill(st, c, &cur.id, grace);
            }
        }
    }

    /// One `Unhealthy` Warning per probe that failed since the last look (repeats of the same
    /// message become one Event's count on the control plane).
    fn report_probe_failures(&self, st: &mut CState, c: &Container) {
        for p in [st.startup.as_mut(), st.liveness.as_mut(), st.readiness.as_mut()].into_iter().flatten() {
            let state = p.state();
            if state.failures > p.reported_failures {
                p.reported_failures = state.failures;
                let what = match p.kind {
                    ProbeKind::Startup => "Startup",
                    ProbeKind::Liveness => "Liveness",
                    ProbeKind::Readiness => "Readiness",
                };
                let detail = state.last_failure.unwrap_or_default();
                self.event(Some(&c.name), true, "Unhealthy", format!("{what} probe failed: {detail}"));
            }
        }
    }

    /// Stop the current instance of `c` in the background, its `preStop` hook first; the exit
    /// is then handled like any other.
    fn kill(&self, st: &mut CState, c: &Container, id: &str, grace: Duration) {
        st.killing = true;
        st.drop_probers();
        let rt = self.shared.runtime.clone();
        let wake = self.wake.clone();
        let id = id.to_string();
        let hook = self.pre_stop(c, &id);
        let deadline = grace + self.shared.config.runtime_timeout;
        tokio::spawn(async move {
            let grace = match hook {
                Some(hook) => hook.run(grace).await,
                None => grace,
            };
            if let Err(e) = crate::error::with_deadline("stop container", deadline, rt.stop_container(&id, grace)).await
            {
                tracing::warn!(id, error = %e, "stopping container failed");
            }
            wake.notify_one();
        });
    }

    /// The `preStop` hook of container `c`'s instance `id`, ready to run on its own.
    fn pre_stop(&self, c: &Container, id: &str) -> Option<PreStop> {
        let handler = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
        let action = probe::hook_action(handler, c.ports.as_deref().unwrap_or_default())?;
        Some(PreStop {
            action,
            shared: self.shared.clone(),
            pod_ref: self.pod_ref.clone(),
            container: c.name.clone(),
            id: id.to_string(),
            pod_ip: self.hook_ip(),
        })
    }

    /// Where a hook's `httpGet` goes by default: the pod's address (the node's until it has one).
    fn hook_ip(&self) -> String {
        self.pod_ip.clone().unwrap_or_else(|| self.shared.config.host_ip.clone())
    }

    /// The `preStop` hooks of the running instances `running` (container name, id), all at
    /// once; returns what is left of `grace` for the stops.
    async fn run_pre_stops(&self, running: &[(String, String)], grace: Duration) -> Duration {
        let hooks: Vec<PreStop> = running
            .iter()
            .filter_map(|(name, id)| self.pre_stop(spec::all_containers(&self.pod).find(|c| &c.name == name)?, id))
            .collect();
        if hooks.is_empty() {
            return grace;
        }
        let left = futures::future::join_all(hooks.into_iter().map(|h| h.run(grace))).await;
        left.into_iter().min().unwrap_or(grace)
    }

    /// Run container `c`'s `postStart` hook on its just started instance `id`; a failure is
    /// told (`FailedPostStartHook`) and the instance killed, as kubelet does.
    async fn post_start(&self, st: &mut CState, c: &Container, id: &str) {
        let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else { return };
        let Some(action) = probe::hook_action(handler, c.ports.as_deref().unwrap_or_default()) else { return };
        let rt = self.shared.runtime.clone();
        if let Err(e) = probe::run_hook(&action, rt.as_ref(), id, &self.hook_ip(), POST_START_TIMEOUT).await {
            tracing::info!(pod = self.pod_ref.name, container = c.name, error = e, "postStart hook failed; killing");
            self.event(Some(&c.name), true, "FailedPostStartHook", format!("PostStartHook failed: {e}"));
            self.kill(st, c, id, self.grace());
        }
    }

    /// The first half of stopping the whole pod: a `Killing` event per running container,
    /// their `preStop` hooks within the grace period, no more probes. Returns the running
    /// instances (name, id) and the grace left for their stop.
    async fn begin_stop(&mut self) -> (Vec<(String, String)>, Duration) {
        let running = self.running_instances();
        for (name, _) in &running {
            self.event(Some(name), false, "Killing", format!("Stopping container {name}"));
        }
        let grace = self.run_pre_stops(&running, self.grace()).await;
        for st in self.containers.values_mut() {
            st.drop_probers();
        }
        (running, grace)
    }

    /// Stop everything of the pod within its grace period and remove it.
    async fn terminate(&mut self) {
        tracing::info!(pod = self.pod_ref.name, grace = ?self.grace(), "terminating pod");
        let mut objects: HashMap<String, ContainerInfo> = HashMap::new();
        let (_, grace) = self.begin_stop().await;
        for st in self.containers.values() {
            for c in st.current.iter().chain(st.previous.iter()) {
                objects.insert(c.id.clone(), c.clone());
            }
        }
        if let Some(sb) = &self.sandbox {
            objects.insert(sb.id.clone(), sb.clone());
        }
        // Anything else of this pod the runtime knows (e.g. created while a call timed out).
        let selector = BTreeMap::from([
            (labels::POD_UID.to_string(), self.pod_ref.uid.clone()),
            (labels::NODE_NAME.to_string(), self.pod_ref.node_name.clone()),
        ]);
        if let Ok(list) = self.shared.call("list containers", self.shared.runtime.list(&selector)).await {
            for o in list {
                objects.insert(o.id.clone(), o);
            }
        }
        let timeout = self.shared.config.runtime_timeout;
        remove_objects(self.shared.runtime.as_ref(), objects.into_values().collect(), grace, timeout).await;
    }

    fn publish_instances_with(&self, name: &str, st: &CState) {
        let mut inst = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        inst.by_name.insert(
            name.to_string(),
            (st.current.as_ref().map(|c| c.id.clone()), st.previous.as_ref().map(|c| c.id.clone())),
        );
    }

    /// Hands the relist the ids and states of the sandbox and of every container's current and
    /// previous instance, as this pass left them.
    fn publish_seen(&self) {
        let instances = self.containers.values().flat_map(|st| st.current.iter().chain(st.previous.iter()));
        let mut seen: Vec<(String, ContainerState)> =
            self.sandbox.iter().chain(instances).map(|o| (o.id.clone(), o.state)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
    }

    fn publish_instances(&self) {
        for (name, st) in &self.containers {
            self.publish_instances_with(name, st);
        }
    }

    /// Container `c`'s status; `idle` is the waiting reason of one with no instance yet and
    /// nothing else to tell.
    fn container_status(&self, c: &Container, idle: &str) -> ContainerStatus {
        let st = self.containers.get(&c.name);
        let image = c.image.clone().unwrap_or_default();
        let waiting = |reason: &str, message: Option<String>| K8sState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.to_string()), message }),
            ..Default::default()
        };
        let term_of = |info: &ContainerInfo| K8sState {
            terminated: Some(terminated(info, self.container_id(&info.id))),
            ..Default::default()
        };
        let Some(st) = st else {
            let (reason, message) = self.sandbox_error.clone().unwrap_or_else(|| (idle.into(), String::new()));
            return ContainerStatus {
                name: c.name.clone(),
                image,
                state: Some(waiting(&reason, Some(message).filter(|m| !m.is_empty()))),
                started: Some(false),
                ..Default::default()
            };
        };
        let previous_term = st.previous.as_ref().filter(|p| p.state == ContainerState::Exited).map(term_of);
        let (state, last_state) = match &st.current {
            None => {
                let (reason, message) = st
                    .waiting
                    .clone()
                    .or_else(|| self.sandbox_error.clone())
                    .unwrap_or_else(|| (idle.into(), String::new()));
                (waiting(&reason, Some(message).filter(|m| !m.is_empty())), previous_term)
            }
            Some(cur) => match cur.state {
                ContainerState::Running => (
                    K8sState {
                        running: Some(ContainerStateRunning { started_at: cur.started_at.map(to_time) }),
                        ..Default::default()
                    },
                    previous_term,
                ),
                ContainerState::Created => (waiting("ContainerCreating", None), previous_term),
                ContainerState::Exited | ContainerState::Unknown => {
                    if st.done {
                        (term_of(cur), previous_term)
                    } else if let Some((reason, message)) = &st.waiting {
                        (waiting(reason, Some(message.clone())), Some(term_of(cur)))
                    } else if st.restart_at.is_some_and(|t| t > Instant::now()) {
                        let msg = format!(
                            "back-off {:?} restarting failed container={} pod={}",
                            st.backoff_delay,
                            c.name,
                            self.pod_ref.kubelet_format()
                        );
                        (waiting("CrashLoopBackOff", Some(msg)), Some(term_of(cur)))
                    } else {
                        (term_of(cur), previous_term)
                    }
                }
            },
        };
        let current = st.current.as_ref();
        ContainerStatus {
            name: c.name.clone(),
            image,
            image_id: current.map(|c| c.image_id.clone()).unwrap_or_default(),
            container_id: current.map(|c| self.container_id(&c.id)),
            ready: st.ready(),
            started: Some(st.started && current.is_some_and(|c| c.state == ContainerState::Running)),
            restart_count: i32::try_from(st.restart_count).unwrap_or(i32::MAX),
            state: Some(state),
            last_state,
            ..Default::default()
        }
    }

    fn compute_status(&self) -> PodStatus {
        let inits = spec::init_containers(&self.pod);
        let incomplete: Vec<&str> =
            inits.iter().filter(|c| !self.init_completed(&c.name)).map(|c| c.name.as_str()).collect();
        let initialized = incomplete.is_empty();
        // kubelet's word for a container not created yet while the init containers run.
        let idle = if initialized { "ContainerCreating" } else { "PodInitializing" };
        let init_statuses: Vec<ContainerStatus> = inits.iter().map(|c| self.container_status(c, idle)).collect();
        let statuses: Vec<ContainerStatus> =
            spec::containers(&self.pod).iter().map(|c| self.container_status(c, idle)).collect();
        let previous = self.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let init_failed = || {
            inits.iter().any(|c| {
                self.containers.get(&c.name).is_some_and(|st| st.done && !st.current.as_ref().is_some_and(succeeded))
            })
        };
        let mut phase = if initialized {
            pod_phase(&statuses, spec::restart_policy(&self.pod)).to_string()
        } else if init_failed() {
            "Failed".to_string()
        } else {
            "Pending".to_string()
        };
        if self.deadline_exceeded {
            phase = "Failed".into();
        } else if self.terminal {
            if let Some(p) = self.status.as_ref().and_then(|s| s.phase.clone()) {
                phase = p;
            }
        }
        let completed = phase == "Succeeded" || phase == "Failed";
        let unready: Vec<&str> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
        let all_ready = unready.is_empty() && !statuses.is_empty() && !completed;
        let (reason, message) = if completed {
            (Some("PodCompleted"), None)
        } else if all_ready {
            (None, None)
        } else {
            (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
        };
        let (init_reason, init_message) = if initialized {
            (None, None)
        } else {
            let message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
            (Some("ContainersNotInitialized"), Some(message))
        };
        let conditions = vec![
            condition(&previous, "PodScheduled", true, None, None),
            condition(&previous, "Initialized", initialized, init_reason, init_message),
            condition(&previous, "ContainersReady", all_ready, reason, message.clone()),
            condition(&previous, "Ready", all_ready, reason, message),
        ];
        let host_ip = self.shared.config.host_ip.clone();
        PodStatus {
            phase: Some(phase),
            conditions: Some(conditions),
            container_statuses: Some(statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ip: self.pod_ip.clone(),
            pod_ips: self.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            start_time: Some(to_time(self.started_at)),
            reason: self.deadline_exceeded.then(|| "DeadlineExceeded".into()),
            message: self.deadline_exceeded.then(|| DEADLINE_EXCEEDED_MSG.into()),
            ..Default::default()
        }
    }

    /// Compute the status; send it only if it changed.
    fn publish_status(&mut self) {
        let status = self.compute_status();
        let phase = status.phase.clone().unwrap_or_default();
        if !self.terminal && (phase == "Succeeded" || phase == "Failed") {
            self.terminal = true;
            // Nothing will run again: release the sandbox's namespace (volumes stay until deletion).
            if let Some(sb) = self.sandbox.clone() {
                let rt = self.shared.runtime.clone();
                tokio::spawn(async move {
                    let _ = crate::error::with_deadline(
                        "stop sandbox",
                        Duration::from_secs(15),
                        rt.stop_container(&sb.id, Duration::from_secs(2)),
                    )
                    .await;
                });
            }
        }
        if self.status.as_ref() == Some(&status) {
            return;
        }
        self.maybe_routed |= status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        self.status = Some(status.clone());
        *self.status_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.clone());
        self.publish_instances();
        self.shared.publish(PodEvent::Status(PodStatusUpdate {
            namespace: self.pod_ref.namespace.clone(),
            name: self.pod_ref.name.clone(),
            uid: self.pod_ref.uid.clone(),
            status,
        }));
    }
}
