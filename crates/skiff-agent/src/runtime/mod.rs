//! The container runtime abstraction (one object-safe trait) and its docker, process and fake implementations.
//!
//! Modelled after Nomad's driver plugins: the pod manager decides *what* should run and drives
//! a [`Runtime`] through small, idempotent-ish calls. A pod is a *sandbox* (holding the shared
//! network namespace and the pod's volumes) plus app containers that join it. Every container
//! a runtime creates carries the [`labels`] below, so a restarted agent can list and adopt them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::Stream;

use crate::error::{AgentError, Result};

pub mod docker;
pub mod fake;
pub mod podnet;
pub mod process;

pub use docker::{DockerConfig, DockerRuntime};
pub use fake::{FakeRuntime, FakeStart, RuntimeCalls};
pub use process::{ProcessConfig, ProcessRuntime};

/// Label keys put on every runtime object (sandboxes and app containers).
pub mod labels {
    /// Always `"true"`: the object belongs to a Skiff agent.
    pub const MANAGED: &str = "io.skiff.managed";
    pub const NODE_NAME: &str = "io.skiff.node-name";
    pub const POD_UID: &str = "io.skiff.pod-uid";
    pub const POD_NAMESPACE: &str = "io.skiff.pod-namespace";
    pub const POD_NAME: &str = "io.skiff.pod-name";
    /// The container's name in the pod spec; absent on sandboxes.
    pub const CONTAINER_NAME: &str = "io.skiff.container-name";
    /// `"sandbox"` or `"container"`.
    pub const KIND: &str = "io.skiff.kind";
    /// The restart count this instance was created with (0 for the first).
    pub const ATTEMPT: &str = "io.skiff.attempt";
    /// Hash-free fingerprint of the container spec, to notice spec changes on adoption.
    pub const SPEC_HASH: &str = "io.skiff.spec-hash";
    /// On sandboxes plugged into the agent's pod network: the pod's address.
    pub const POD_IP: &str = "io.skiff.pod-ip";
}

/// Identifies the pod an object belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
}

impl PodRef {
    /// The labels common to every object of this pod.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::NODE_NAME.to_string(), self.node_name.clone()),
            (labels::POD_UID.to_string(), self.uid.clone()),
            (labels::POD_NAMESPACE.to_string(), self.namespace.clone()),
            (labels::POD_NAME.to_string(), self.name.clone()),
        ])
    }

    /// kubelet's `format.Pod`, how its messages name a pod: `name_namespace(uid)`.
    pub fn kubelet_format(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }
}

/// kubelet's refusal of a container whose `runAsUser` is 0 under `runAsNonRoot`.
pub(crate) fn root_user_refused(spec: &ContainerSpec) -> AgentError {
    AgentError::ContainerConfig(format!(
        "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
        spec.pod.kubelet_format(),
        spec.name
    ))
}

/// A port published on the sandbox (`hostPort` in the pod spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    /// `"tcp"`, `"udp"` or `"sctp"`.
    pub protocol: String,
    pub host_ip: Option<String>,
}

/// What a pod sandbox is made of.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub pod: PodRef,
    /// Restart count of the sandbox (0 for the first one of the pod).
    pub attempt: u32,
    pub hostname: String,
    pub ports: Vec<PortMapping>,
    /// Names of the pod's `emptyDir` volumes, created with the sandbox and removed with it.
    pub empty_dirs: Vec<String>,
    /// `spec.hostAliases`: `(ip, hostnames)` lines for the pod's `/etc/hosts`.
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// `spec.dnsPolicy` and `spec.dnsConfig`.
    pub dns: podnet::DnsSettings,
    /// `spec.hostNetwork`: the sandbox, so the pod, uses the node's network namespace.
    pub host_network: bool,
    /// `spec.hostIPC`: the node's IPC namespace.
    pub host_ipc: bool,
    /// `spec.securityContext.sysctls`, set in the sandbox's namespaces.
    pub sysctls: Vec<(String, String)>,
    /// `spec.securityContext.fsGroup`: owns the pod's `emptyDir` volumes (setgid, group-writable).
    pub fs_group: Option<u32>,
}

/// A seccomp or AppArmor profile (`seccompProfile`, `appArmorProfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    RuntimeDefault,
    Unconfined,
    /// A profile on the node: for seccomp a file under `<data dir>/seccomp/`, for AppArmor a
    /// loaded profile's name.
    Localhost(String),
}

/// A container's effective security settings: its `securityContext` over the pod's, as
/// kubelet merges them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// `runAsNonRoot`: the runtime refuses to start the container as uid 0.
    pub run_as_non_root: bool,
    /// `fsGroup`, then `supplementalGroups`.
    pub supplemental_groups: Vec<u32>,
    pub privileged: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false`: the `no_new_privs` bit.
    pub no_new_privileges: bool,
    /// None: the runtime's default profile (`RuntimeDefault`).
    pub seccomp: Option<Profile>,
    /// None: the runtime's default. Any profile but `Unconfined` needs AppArmor on the node.
    pub apparmor: Option<Profile>,
    /// `seLinuxOptions` as `user:…`, `role:…`, `type:…`, `level:…`.
    pub selinux: Vec<String>,
    /// `spec.hostPID`.
    pub host_pid: bool,
    /// `spec.shareProcessNamespace`: the pod's containers share the sandbox's PID namespace.
    pub share_process_namespace: bool,
    /// `spec.hostIPC`.
    pub host_ipc: bool,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// The pod's `emptyDir` volume of this name.
    EmptyDir(String),
    /// A path on the host (`hostPath`).
    HostPath(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub container_path: String,
    pub read_only: bool,
}

/// An app container, resolved from the pod spec (env expanded, volumes resolved).
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub pod: PodRef,
    pub name: String,
    /// Restart count this instance is created with.
    pub attempt: u32,
    pub image: String,
    /// Overrides the image entrypoint when non-empty (Kubernetes `command`).
    pub command: Vec<String>,
    /// Overrides the image cmd when non-empty (Kubernetes `args`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    /// `resources.limits.cpu` in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// `resources.limits.memory` in bytes.
    pub memory_bytes: Option<i64>,
    /// A fingerprint of the spec, stored as a label.
    pub spec_hash: String,
    pub security: Security,
}

/// Coarse state of a runtime object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// `"sandbox"` or `"container"`, from the [`labels::KIND`] label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Sandbox,
    Container,
}

/// What a runtime knows about one of its objects.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub kind: ObjectKind,
    /// Shared: an inspected or listed container is cloned often (a worker keeps its current
    /// and previous instances), its labels never change.
    pub labels: std::sync::Arc<BTreeMap<String, String>>,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    /// Runtime-specific termination reason (`OOMKilled`, …), if any.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub created_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub image: String,
    /// The runtime's image id (`docker-pullable://…`-style in Kubernetes; empty when unknown).
    pub image_id: String,
    /// The IP of the sandbox (for sandboxes) or `None`.
    pub ip: Option<String>,
}

impl ContainerInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The restart count the instance was created with.
    pub fn attempt(&self) -> u32 {
        self.label(labels::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0)
    }

    pub fn pod_uid(&self) -> Option<&str> {
        self.label(labels::POD_UID)
    }
}

/// One object's state as a listing gives it, for the pod manager's relist: enough to see
/// that something changed (a new, exited or vanished container), not what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    pub id: String,
    /// The [`labels::POD_UID`] label (`None` without one).
    pub pod_uid: Option<String>,
    pub state: ContainerState,
}

impl ObjectState {
    pub fn of(info: &ContainerInfo) -> ObjectState {
        ObjectState { id: info.id.clone(), pod_uid: info.pod_uid().map(str::to_string), state: info.state }
    }
}

/// Result of running a command in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    /// Combined stdout and stderr, truncated to a bounded size.
    pub output: Vec<u8>,
}

/// How to read a container's log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep the stream open and deliver new output until the container stops.
    pub follow: bool,
    /// Only the last N lines (all when `None`).
    pub tail_lines: Option<u64>,
}

/// A stream of log chunks (raw bytes, stdout and stderr interleaved).
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>>> + Send>>;

/// The most exec output kept.
pub const MAX_EXEC_OUTPUT_BYTES: usize = 64 * 1024;

/// A container runtime: what the pod manager needs from Docker (or processes, or nothing).
///
/// Calls are expected to return promptly; the pod manager still puts a deadline on each.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short name (`docker`, `process`, `fake`), used as the `containerID` scheme.
    fn name(&self) -> &'static str;

    /// Create and start a pod sandbox; returns its info (with the pod IP).
    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<ContainerInfo>;

    /// Stop and remove a sandbox and the pod's `emptyDir` volumes. Missing is not an error.
    async fn remove_sandbox(&self, id: &str) -> Result<()>;

    /// Create (not start) an app container inside `sandbox_id`'s namespaces.
    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String>;

    async fn start_container(&self, id: &str) -> Result<()>;

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns once the container has stopped.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;

    /// Remove a (stopped) container, killing it if needed. Missing is not an error.
    async fn remove_container(&self, id: &str) -> Result<()>;

    async fn inspect(&self, id: &str) -> Result<ContainerInfo>;

    /// Every object (sandboxes included) whose labels contain all of `labels`, any state.
    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>>;

    /// The id, pod and state of every object whose labels contain all of `labels`, from one
    /// call where the runtime allows (Docker's list, without inspecting each container):
    /// what the pod manager's relist compares every second.
    async fn list_states(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ObjectState>> {
        Ok(self.list(labels).await?.iter().map(ObjectState::of).collect())
    }

    /// A number that moves on whenever any object's state may have changed, for a runtime
    /// that sees every change (the fake runtime changes only through its own calls); `None`
    /// (the default: Docker's and the process runtime's containers exit by themselves) when
    /// it cannot tell. While it stays the same, the relist does not list the runtime again.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// Run `cmd` inside a running container, killing it after `timeout`.
    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult>;

    /// The container's log output.
    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream>;

    /// Whether `image` is present locally (images are never pulled).
    async fn image_present(&self, image: &str) -> Result<bool>;
}

/// An RFC 3339 timestamp (as Docker reports them) → `SystemTime`; Docker's zero time → `None`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let ts: k8s_openapi::jiff::Timestamp = s.parse().ok()?;
    // Docker reports "0001-01-01T00:00:00Z" for never.
    if ts.as_second() <= 0 {
        return None;
    }
    let nanos = ts.as_nanosecond();
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// Keep only the last `n` lines of `data`.
pub(crate) fn tail_lines(data: &[u8], n: u64) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(tail_lines(b"a\n", 0), b"");
    }

    #[test]
    fn rfc3339() {
        assert!(parse_rfc3339("0001-01-01T00:00:00Z").is_none());
        let t = parse_rfc3339("2024-05-01T10:00:00.123456789Z").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1714557600);
    }
}
