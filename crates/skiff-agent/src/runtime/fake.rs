//! `FakeRuntime`: starts nothing, reports containers running; scriptable for tests, cheap enough for hundreds of pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    labels, ContainerInfo, ContainerSpec, ContainerState, ExecResult, LogOptions, LogStream, ObjectKind, ObjectState,
    Runtime, SandboxSpec,
};
use crate::error::{AgentError, Result};

/// What happens when a fake container with a given name starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeStart {
    /// It runs until stopped (the default).
    Run,
    /// It exits at once with this code.
    Exit(i32),
}

/// What the pod manager asked of a [`FakeRuntime`] so far (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeCalls {
    pub inspects: u64,
    pub state_lists: u64,
    pub generation_reads: u64,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, ContainerInfo>,
    /// By container name (pod spec name).
    on_start: HashMap<String, FakeStart>,
    /// Exec exit codes by container name; 0 when not scripted.
    exec_codes: HashMap<String, i32>,
    missing_images: HashSet<String>,
    /// Fake log lines by container id.
    logs: HashMap<String, Vec<u8>>,
    /// Every `start_container` call, by container name (for tests).
    starts: HashMap<String, u64>,
    /// How many of the next `create_sandbox` calls fail (for tests), and all calls so far.
    failing_sandboxes: usize,
    sandbox_creates: u64,
    /// Calls of `inspect`, `list_states` and `generation`, for tests of what the pod manager asks.
    inspects: u64,
    state_lists: u64,
    generation_reads: u64,
    /// Bumped by every change to `objects` (see [`Runtime::generation`]).
    generation: u64,
}

impl State {
    /// The objects whose labels contain all of `labels`.
    fn matching<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> impl Iterator<Item = &'a ContainerInfo> + 'a {
        self.objects.values().filter(move |i| labels.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
    }

    /// The objects, to change: every change goes through here and moves the generation on.
    fn objects_mut(&mut self) -> &mut HashMap<String, ContainerInfo> {
        self.generation += 1;
        &mut self.objects
    }
}

/// A runtime that only keeps records; one process can host hundreds of fake pods.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Reported as every pod's IP.
    pod_ip: String,
}

impl FakeRuntime {
    pub fn new() -> Self {
        FakeRuntime { pod_ip: "127.0.0.1".into(), ..Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` sandbox creations fail (a runtime error, as an overloaded Docker).
    pub fn fail_next_sandboxes(&self, n: usize) {
        self.lock().failing_sandboxes = n;
    }

    /// How many sandbox creations were attempted, failed ones included.
    pub fn sandbox_creates(&self) -> u64 {
        self.lock().sandbox_creates
    }

    /// Script what containers named `container` do when (re)started.
    pub fn set_on_start(&self, container: &str, behaviour: FakeStart) {
        self.lock().on_start.insert(container.to_string(), behaviour);
    }

    /// Script the exit code of exec (probe) commands in containers named `container`.
    pub fn set_exec_exit_code(&self, container: &str, code: i32) {
        self.lock().exec_codes.insert(container.to_string(), code);
    }

    /// Make `image` absent (or present again).
    pub fn set_image_missing(&self, image: &str, missing: bool) {
        let mut s = self.lock();
        if missing {
            s.missing_images.insert(image.to_string());
        } else {
            s.missing_images.remove(image);
        }
    }

    /// Make every running container named `container` (of pod `pod_uid`, or any pod) exit with `code`.
    pub fn exit_container(&self, pod_uid: Option<&str>, container: &str, code: i32) -> usize {
        let mut s = self.lock();
        let mut n = 0;
        for info in s.objects_mut().values_mut() {
            let matches = info.label(labels::CONTAINER_NAME) == Some(container)
                && pod_uid.is_none_or(|u| info.pod_uid() == Some(u))
                && info.state == ContainerState::Running;
            if matches {
                info.state = ContainerState::Exited;
                info.exit_code = Some(code);
                info.finished_at = Some(SystemTime::now());
                n += 1;
            }
        }
        n
    }

    /// Append to a fake container's log.
    pub fn append_log(&self, id: &str, data: &[u8]) {
        self.lock().logs.entry(id.to_string()).or_default().extend_from_slice(data);
    }

    /// How many times containers named `container` were started.
    pub fn start_count(&self, container: &str) -> u64 {
        self.lock().starts.get(container).copied().unwrap_or(0)
    }

    /// How many times `inspect`, `list_states` and `generation` were called so far.
    pub fn calls(&self) -> RuntimeCalls {
        let s = self.lock();
        RuntimeCalls { inspects: s.inspects, state_lists: s.state_lists, generation_reads: s.generation_reads }
    }

    /// Number of objects (sandboxes and containers) currently known.
    pub fn object_count(&self) -> usize {
        self.lock().objects.len()
    }

    fn new_id(&self) -> String {
        format!("fake-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn blank(&self, kind: ObjectKind, labels: BTreeMap<String, String>, image: &str) -> ContainerInfo {
        ContainerInfo {
            id: self.new_id(),
            kind,
            labels: labels.into(),
            state: ContainerState::Created,
            exit_code: None,
            reason: None,
            message: None,
            created_at: Some(SystemTime::now()),
            started_at: None,
            finished_at: None,
            image: image.to_string(),
            image_id: format!("fake-image:{image}"),
            ip: None,
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<ContainerInfo> {
        {
            let mut st = self.lock();
            st.sandbox_creates += 1;
            if st.failing_sandboxes > 0 {
                st.failing_sandboxes -= 1;
                return Err(AgentError::InvalidSpec("fake: sandbox creation failed as scripted".into()));
            }
        }
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "sandbox".into());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        let mut info = self.blank(ObjectKind::Sandbox, labels, "");
        info.state = ContainerState::Running;
        info.started_at = info.created_at;
        info.ip = Some(self.pod_ip.clone());
        self.lock().objects_mut().insert(info.id.clone(), info.clone());
        Ok(info)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.lock().objects_mut().remove(id);
        Ok(())
    }

    async fn create_container(&self, _sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        if self.lock().missing_images.contains(&spec.image) {
            return Err(AgentError::ImageNotPresent { image: spec.image.clone() });
        }
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "container".into());
        labels.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        labels.insert(labels::SPEC_HASH.into(), spec.spec_hash.clone());
        let info = self.blank(ObjectKind::Container, labels, &spec.image);
        let id = info.id.clone();
        self.lock().objects_mut().insert(id.clone(), info);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        let name = s.objects.get(id).and_then(|i| i.label(labels::CONTAINER_NAME)).unwrap_or_default().to_string();
        let behaviour = s.on_start.get(&name).copied().unwrap_or(FakeStart::Run);
        *s.starts.entry(name).or_default() += 1;
        let info = s.objects_mut().get_mut(id).ok_or_else(|| AgentError::NotFound { id: id.into() })?;
        let now = SystemTime::now();
        info.started_at = Some(now);
        match behaviour {
            FakeStart::Run => info.state = ContainerState::Running,
            FakeStart::Exit(code) => {
                info.state = ContainerState::Exited;
                info.exit_code = Some(code);
                info.finished_at = Some(now);
            }
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let mut s = self.lock();
        let info = s.objects_mut().get_mut(id).ok_or_else(|| AgentError::NotFound { id: id.into() })?;
        if info.state == ContainerState::Running {
            info.state = ContainerState::Exited;
            info.exit_code = Some(0);
            info.finished_at = Some(SystemTime::now());
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        s.objects_mut().remove(id);
        s.logs.remove(id);
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let mut s = self.lock();
        s.inspects += 1;
        s.objects.get(id).cloned().ok_or_else(|| AgentError::NotFound { id: id.into() })
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        Ok(self.lock().matching(labels).cloned().collect())
    }

    async fn list_states(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ObjectState>> {
        let mut s = self.lock();
        s.state_lists += 1;
        Ok(s.matching(labels).map(ObjectState::of).collect())
    }

    /// Every object changes through this runtime's own methods (or a test's script), so it
    /// always knows: the relist of a node whose fake objects did not change lists nothing.
    fn generation(&self) -> Option<u64> {
        let mut s = self.lock();
        s.generation_reads += 1;
        Some(s.generation)
    }

    async fn exec(&self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecResult> {
        let s = self.lock();
        let info = s.objects.get(id).ok_or_else(|| AgentError::NotFound { id: id.into() })?;
        let name = info.label(labels::CONTAINER_NAME).unwrap_or_default();
        Ok(ExecResult { exit_code: s.exec_codes.get(name).copied().unwrap_or(0), output: Vec::new() })
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream> {
        let s = self.lock();
        if !s.objects.contains_key(id) {
            return Err(AgentError::NotFound { id: id.into() });
        }
        let data = s.logs.get(id).cloned().unwrap_or_default();
        let data = match opts.tail_lines {
            Some(n) => super::tail_lines(&data, n).to_vec(),
            None => data,
        };
        Ok(Box::pin(futures::stream::iter((!data.is_empty()).then_some(Ok(data)))))
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        Ok(!self.lock().missing_images.contains(image))
    }
}
