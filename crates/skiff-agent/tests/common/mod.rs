//! Shared helpers for the agent's integration tests: pod builders, a harness that records status events, deadline waits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_agent::runtime::labels;
use skiff_agent::{PodEvent, PodManager, PodManagerConfig, Runtime};

pub const BUSYBOX: &str = "skiff/busybox:1";

/// A unique name per test run (node names, pod uids).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    format!("{prefix}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "skiff_agent=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

pub fn container(name: &str, image: &str, command: Vec<String>) -> Container {
    Container { name: name.into(), image: Some(image.into()), command: Some(command), ..Default::default() }
}

pub fn pod(name: &str, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(unique("uid")),
            ..Default::default()
        },
        spec: Some(PodSpec { containers, termination_grace_period_seconds: Some(2), ..Default::default() }),
        ..Default::default()
    }
}

pub fn exec_probe(cmd: Vec<String>, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction { command: Some(cmd) }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// Mark `pod` deleted now, as the API server does on a graceful delete.
pub fn deleted(mut pod: Pod, grace_seconds: i64) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()));
    pod.metadata.deletion_grace_period_seconds = Some(grace_seconds);
    pod
}

/// Fast timings for tests.
pub fn test_config(node: &str) -> PodManagerConfig {
    let mut c = PodManagerConfig::new(node);
    c.backoff_initial = Duration::from_millis(200);
    c.backoff_max = Duration::from_millis(800);
    c.resync_interval = Duration::from_millis(100);
    // A running pod is looked at again only when the relist sees its containers change: the
    // tests of exits and restarts go through the relist.
    c.relist_interval = Duration::from_millis(100);
    c.steady_resync_interval = Duration::from_secs(60);
    c.orphan_grace = Duration::from_secs(1);
    c.runtime_timeout = Duration::from_secs(20);
    c.termination_propagation_delay = Duration::ZERO;
    c
}

/// A pod manager plus every event it sent, in order.
pub struct Harness {
    pub manager: PodManager,
    pub events: Arc<Mutex<Vec<PodEvent>>>,
    pub runtime: Arc<dyn Runtime>,
    pub node: String,
    collector: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

impl Harness {
    pub async fn start(runtime: Arc<dyn Runtime>, config: PodManagerConfig) -> Harness {
        let node = config.node_name.clone();
        let (manager, mut rx) = PodManager::start(runtime.clone(), config).await.expect("start pod manager");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let collector = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().unwrap().extend(batch);
            }
        });
        Harness { manager, events, runtime, node, collector }
    }

    pub fn statuses_of(&self, name: &str) -> Vec<PodStatus> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                PodEvent::Status(s) if s.name == name => Some(s.status.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn removed(&self, name: &str) -> bool {
        self.events.lock().unwrap().iter().any(|e| matches!(e, PodEvent::Removed { name: n, .. } if n == name))
    }

    /// Wait until the pod's current status satisfies `cond`; fail with the last status seen.
    pub async fn wait_status(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        cond: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let deadline = Instant::now() + within;
        loop {
            let s = self.manager.status("default", name);
            if let Some(s) = &s {
                if cond(s) {
                    return s.clone();
                }
            }
            if Instant::now() > deadline {
                panic!("timed out after {within:?} waiting for pod {name}: {what}; last status: {s:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until some emitted status of the pod satisfies `cond`.
    pub async fn wait_event(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        cond: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.statuses_of(name).into_iter().find(|s| cond(s)) {
                return s;
            }
            if Instant::now() > deadline {
                let last = self.statuses_of(name).pop();
                panic!("timed out after {within:?} waiting for an event of pod {name}: {what}; last: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_removed(&self, name: &str, within: Duration) {
        wait_until(within, &format!("pod {name} removed"), || self.removed(name)).await;
    }

    /// All objects of this node still in the runtime.
    pub async fn node_objects(&self) -> usize {
        let sel = BTreeMap::from([(labels::NODE_NAME.to_string(), self.node.clone())]);
        self.runtime.list(&sel).await.expect("list").len()
    }

    pub async fn pod_objects(&self, uid: &str) -> usize {
        let sel = BTreeMap::from([(labels::POD_UID.to_string(), uid.to_string())]);
        self.runtime.list(&sel).await.expect("list").len()
    }

    /// The whole log of a container, or an error message (also when the stream breaks: an
    /// instance of a crash-looping container may be removed while it is read).
    pub async fn logs(&self, pod: &str, container: &str, previous: bool) -> String {
        match self.manager.logs("default", pod, container, false, None, previous).await {
            Ok(mut s) => {
                let mut out = Vec::new();
                while let Some(chunk) =
                    tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("log stream deadline")
                {
                    match chunk {
                        Ok(chunk) => out.extend(chunk),
                        Err(e) => return format!("<error: {e}>"),
                    }
                }
                String::from_utf8_lossy(&out).into_owned()
            }
            Err(e) => format!("<error: {e}>"),
        }
    }

    /// The container's log once it holds `lines` lines, or as it stands after 10 s.
    pub async fn logs_with_lines(&self, pod: &str, container: &str, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut logs = self.logs(pod, container, false).await;
        while logs.lines().count() < lines && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            logs = self.logs(pod, container, false).await;
        }
        logs
    }
}

/// (reason, warning, fieldPath, message) of the events recorded about pod `name`.
pub fn recorded(h: &Harness, name: &str) -> Vec<(String, bool, String, String)> {
    h.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            PodEvent::Recorded(r) if r.name == name => {
                Some((r.reason.clone(), r.warning, r.field_path.clone(), r.message.clone()))
            }
            _ => None,
        })
        .collect()
}

pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn cstatus<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses.as_ref().and_then(|cs| cs.iter().find(|c| c.name == name)).expect("container status")
}

pub fn condition(s: &PodStatus, type_: &str) -> Option<String> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

pub fn is_ready(s: &PodStatus) -> bool {
    condition(s, "Ready").as_deref() == Some("True")
}

pub fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

pub fn is_running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn repo_root() -> PathBuf {
    crate_dir().join("../..").canonicalize().expect("repo root")
}

/// Whether the Docker engine answers (`docker info`).
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Build the local images once per test binary (no-op when they exist).
pub fn ensure_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("deploy/images/build.sh");
        let out = std::process::Command::new("bash").arg(&script).output().expect("run deploy/images/build.sh");
        assert!(
            out.status.success(),
            "deploy/images/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Removes every docker container labelled with `node` when dropped (even on panic).
pub struct DockerCleanup {
    pub node: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::NODE_NAME, self.node);
        let Ok(out) = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
        }
    }
}
