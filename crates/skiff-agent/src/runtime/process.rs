//! `ProcessRuntime`: each container's command and args run as a host child process (the image is ignored).
//!
//! Sandboxes are bookkeeping only (no namespaces): every pod gets `pod_ip` (127.0.0.1 by
//! default), so containers of one pod reach each other on localhost, as do all pods.
//! `emptyDir` volumes are created under the data dir and exported to the container as the
//! environment variable `SKIFF_VOLUME_<NAME>` (upper-cased, `-` → `_`) since nothing can be
//! mounted; `hostPath` and mount paths are otherwise ignored. Output goes to
//! `<data_dir>/logs/<pod uid>/<container>/<attempt>.log`. State lives in memory: a new
//! `PodManager` over the same `ProcessRuntime` adopts its processes; a new agent process does not.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{
    labels, tail_lines, ContainerInfo, ContainerSpec, ContainerState, ExecResult, LogOptions, LogStream, MountSource,
    ObjectKind, Runtime, SandboxSpec, MAX_EXEC_OUTPUT_BYTES,
};
use crate::error::{AgentError, Result};

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Holds `logs/` and `pods/<uid>/volumes/`.
    pub data_dir: PathBuf,
    /// Reported as every pod's IP.
    pub pod_ip: String,
}

impl ProcessConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ProcessConfig { data_dir: data_dir.into(), pod_ip: "127.0.0.1".into() }
    }
}

struct Proc {
    info: ContainerInfo,
    spec: Option<ContainerSpec>,
    log_path: Option<PathBuf>,
    pid: Option<u32>,
    /// Set by the reaper task when the process exits.
    exited: Arc<tokio::sync::Notify>,
}

/// Runs containers as local processes; for hosts without Docker and for fast tests.
pub struct ProcessRuntime {
    config: ProcessConfig,
    objects: Arc<Mutex<HashMap<String, Proc>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl ProcessRuntime {
    pub fn new(config: ProcessConfig) -> Self {
        ProcessRuntime { config, objects: Arc::default(), next_id: Default::default() }
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    fn volume_dir(&self, uid: &str, name: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid).join("volumes").join(name)
    }

    /// The container's environment plus `SKIFF_VOLUME_<NAME>` for each mounted `emptyDir`.
    fn env_of(&self, spec: &ContainerSpec) -> Vec<(String, String)> {
        let mut env = spec.env.clone();
        for m in &spec.mounts {
            if let MountSource::EmptyDir(v) = &m.source {
                let key = format!("SKIFF_VOLUME_{}", v.to_ascii_uppercase().replace('-', "_"));
                env.push((key, self.volume_dir(&spec.pod.uid, v).display().to_string()));
            }
        }
        env
    }

    fn get<T>(&self, id: &str, f: impl FnOnce(&mut Proc) -> T) -> Result<T> {
        let mut objects = self.objects.lock().expect("poisoned");
        objects.get_mut(id).map(f).ok_or_else(|| AgentError::NotFound { id: id.to_string() })
    }
}

impl Drop for ProcessRuntime {
    /// Processes do not outlive their runtime object: SIGKILL every process group still running.
    fn drop(&mut self) {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        for pid in objects.values().filter_map(|p| p.pid) {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Send `signal` to the process group `pgid` (the child is its own group leader).
async fn signal_group(pgid: u32, signal: &str) {
    // No libc in the dependency set: use kill(1), bounded by a deadline.
    let fut = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(5), fut).await;
}

/// `skiff` turns transparent huge pages off for itself (see its `main`), and children inherit
/// that: gives what `cmd` starts (a container, or a command run in one) the system's setting
/// back.
fn system_huge_pages(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes one prctl system call, which is
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
            Ok(())
        });
    }
}

/// What of a container's security settings a host process can honour: its user, groups and
/// `no_new_privs` (switching users only when the agent is root), and `runAsNonRoot`. The
/// rest (capabilities, a read-only root, seccomp, AppArmor, SELinux, privileged mode) needs a
/// container; such a container is refused (`CreateContainerConfigError`), not run unconfined.
fn check_security(spec: &ContainerSpec) -> Result<()> {
    let sec = &spec.security;
    let refuse = |what: &str| {
        Err(AgentError::ContainerConfig(format!(
            "container {:?}: the process runtime cannot honour {what} (it runs host processes; use the docker runtime)",
            spec.name
        )))
    };
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid != 0 {
        if sec.run_as_user.is_some_and(|u| u != uid) || sec.run_as_group.is_some_and(|g| g != gid) {
            return refuse(&format!(
                "runAsUser/runAsGroup other than the agent's own ({uid}:{gid}) unless the agent runs as root"
            ));
        }
        if !sec.supplemental_groups.is_empty() {
            return refuse("supplementalGroups or fsGroup unless the agent runs as root");
        }
    }
    if sec.run_as_non_root && sec.run_as_user.unwrap_or(uid) == 0 {
        return Err(super::root_user_refused(spec));
    }
    let confined = |p: &Option<super::Profile>| p.as_ref().is_some_and(|p| *p != super::Profile::Unconfined);
    let unsupported = [
        (sec.privileged, "privileged"),
        (!sec.capabilities_add.is_empty() || !sec.capabilities_drop.is_empty(), "capabilities"),
        (sec.read_only_root_filesystem, "readOnlyRootFilesystem"),
        (confined(&sec.seccomp), "seccompProfile"),
        (confined(&sec.apparmor), "appArmorProfile"),
        (!sec.selinux.is_empty(), "seLinuxOptions"),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, what)) => refuse(&format!("securityContext.{what}")),
        None => Ok(()),
    }
}

/// Starts the process as the container's user and groups (checked by [`check_security`]),
/// with `no_new_privs` when privilege escalation is not allowed.
fn run_as(cmd: &mut Command, sec: &super::Security) {
    let (uid, gid, no_new_privs) = (sec.run_as_user, sec.run_as_group, sec.no_new_privileges);
    let groups: Vec<libc::gid_t> = sec.supplemental_groups.clone();
    if uid.is_none() && gid.is_none() && groups.is_empty() && !no_new_privs {
        return;
    }
    // SAFETY: runs between fork and exec; each call is one system call (async-signal-safe) on
    // memory allocated before the fork; nothing here allocates or locks. The order is the
    // only one that works: groups and group while still privileged, the user last.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            if libc::getuid() == 0 && (uid.is_some() || gid.is_some() || !groups.is_empty()) {
                // Only the container's groups: none of the agent's supplementary groups.
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            }
            if let Some(gid) = gid {
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = uid {
                check(libc::setuid(uid))?;
            }
            if no_new_privs {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            Ok(())
        });
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<ContainerInfo> {
        for name in &spec.empty_dirs {
            let dir = self.volume_dir(&spec.pod.uid, name);
            std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
        }
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "sandbox".into());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        let now = SystemTime::now();
        let info = ContainerInfo {
            id: self.new_id("sandbox"),
            kind: ObjectKind::Sandbox,
            labels: labels.into(),
            state: ContainerState::Running,
            exit_code: None,
            reason: None,
            message: None,
            created_at: Some(now),
            started_at: Some(now),
            finished_at: None,
            image: String::new(),
            image_id: String::new(),
            ip: Some(self.config.pod_ip.clone()),
        };
        let proc = Proc { info: info.clone(), spec: None, log_path: None, pid: None, exited: Arc::default() };
        self.objects.lock().expect("poisoned").insert(info.id.clone(), proc);
        Ok(info)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let removed = self.objects.lock().expect("poisoned").remove(id);
        if let Some(uid) = removed.as_ref().and_then(|p| p.info.pod_uid().map(str::to_string)) {
            let pod_dir = self.config.data_dir.join("pods").join(&uid);
            let _ = std::fs::remove_dir_all(pod_dir);
            let _ = std::fs::remove_dir_all(self.config.data_dir.join("logs").join(&uid));
        }
        Ok(())
    }

    async fn create_container(&self, _sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        if spec.command.is_empty() && spec.args.is_empty() {
            return Err(AgentError::InvalidSpec(format!(
                "container {:?}: the process runtime needs a command (the image is ignored)",
                spec.name
            )));
        }
        check_security(spec)?;
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "container".into());
        labels.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        labels.insert(labels::SPEC_HASH.into(), spec.spec_hash.clone());
        let log_dir = self.config.data_dir.join("logs").join(&spec.pod.uid).join(&spec.name);
        std::fs::create_dir_all(&log_dir).map_err(|e| AgentError::io(format!("create {}", log_dir.display()), e))?;
        let id = self.new_id("proc");
        let info = ContainerInfo {
            id: id.clone(),
            kind: ObjectKind::Container,
            labels: labels.into(),
            state: ContainerState::Created,
            exit_code: None,
            reason: None,
            message: None,
            created_at: Some(SystemTime::now()),
            started_at: None,
            finished_at: None,
            image: spec.image.clone(),
            image_id: String::new(),
            ip: None,
        };
        let proc = Proc {
            info,
            spec: Some(spec.clone()),
            log_path: Some(log_dir.join(format!("{}.log", spec.attempt))),
            pid: None,
            exited: Arc::default(),
        };
        self.objects.lock().expect("poisoned").insert(id.clone(), proc);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let (spec, log_path, exited) = self.get(id, |p| (p.spec.clone(), p.log_path.clone(), p.exited.clone()))?;
        let (Some(spec), Some(log_path)) = (spec, log_path) else {
            return Err(AgentError::InvalidSpec(format!("{id} is not a container")));
        };
        let mut argv: Vec<String> = spec.command.iter().chain(spec.args.iter()).cloned().collect();
        let program = argv.remove(0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| AgentError::io(format!("open {}", log_path.display()), e))?;
        let log_err = log.try_clone().map_err(|e| AgentError::io("dup log file", e))?;
        let mut cmd = Command::new(&program);
        cmd.args(&argv)
            .envs(self.env_of(&spec))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(wd) = &spec.working_dir {
            cmd.current_dir(wd);
        }
        system_huge_pages(&mut cmd);
        run_as(&mut cmd, &spec.security);
        let spawned = cmd.spawn();
        let now = SystemTime::now();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                // Like a container whose entrypoint cannot be executed: it exits at once.
                let msg = format!("failed to start {program:?}: {e}");
                self.get(id, |p| {
                    p.info.state = ContainerState::Exited;
                    p.info.exit_code = Some(128);
                    p.info.reason = Some("StartError".into());
                    p.info.message = Some(msg.clone());
                    p.info.started_at = Some(now);
                    p.info.finished_at = Some(now);
                })?;
                exited.notify_waiters();
                return Err(AgentError::InvalidSpec(msg));
            }
        };
        let pid = child.id();
        self.get(id, |p| {
            p.info.state = ContainerState::Running;
            p.info.started_at = Some(now);
            p.pid = pid;
        })?;
        let objects = self.objects.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            let code = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                }
                Err(_) => -1,
            };
            if let Some(p) = objects.lock().expect("poisoned").get_mut(&id) {
                p.info.state = ContainerState::Exited;
                p.info.exit_code = Some(code);
                p.info.finished_at = Some(SystemTime::now());
                p.pid = None;
            }
            exited.notify_waiters();
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let (pid, exited) = self.get(id, |p| (p.pid, p.exited.clone()))?;
        let Some(pid) = pid else { return Ok(()) };
        let running = || self.get(id, |p| p.info.state == ContainerState::Running).unwrap_or(false);
        let notified = exited.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !running() {
            return Ok(());
        }
        signal_group(pid, "TERM").await;
        let deadline = Instant::now() + grace;
        if tokio::time::timeout_at(deadline.into(), &mut notified).await.is_ok() || !running() {
            // The group leader is gone; take down anything it left behind.
            signal_group(pid, "KILL").await;
            return Ok(());
        }
        signal_group(pid, "KILL").await;
        // SIGKILL cannot be ignored; give the reaper a bounded moment.
        let until = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let running = self.get(id, |p| p.info.state == ContainerState::Running).unwrap_or(false);
        if running {
            self.stop_container(id, Duration::ZERO).await?;
        }
        self.objects.lock().expect("poisoned").remove(id);
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        self.get(id, |p| p.info.clone())
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let objects = self.objects.lock().expect("poisoned");
        Ok(objects
            .values()
            .filter(|p| labels.iter().all(|(k, v)| p.info.labels.get(k) == Some(v)))
            .map(|p| p.info.clone())
            .collect())
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        let spec = self.get(id, |p| p.spec.clone())?;
        let Some((program, args)) = cmd.split_first() else {
            return Err(AgentError::InvalidSpec("empty exec command".into()));
        };
        let mut c = Command::new(program);
        c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        if let Some(spec) = &spec {
            c.envs(self.env_of(spec));
            if let Some(wd) = &spec.working_dir {
                c.current_dir(wd);
            }
        }
        system_huge_pages(&mut c);
        if let Some(spec) = &spec {
            // A command run in the container runs as the container does.
            run_as(&mut c, &spec.security);
        }
        let mut child = c.spawn().map_err(|e| AgentError::io(format!("exec {program:?}"), e))?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let fut = async {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let (_, _, status) = tokio::join!(out.read_to_end(&mut a), err.read_to_end(&mut b), child.wait());
            a.extend_from_slice(&b);
            a.truncate(MAX_EXEC_OUTPUT_BYTES);
            let code = status.map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
            ExecResult { exit_code: code, output: a }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => Ok(r),
            Err(_) => Err(AgentError::Timeout { op: "exec".into(), after: timeout }),
        }
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream> {
        let path = self.get(id, |p| p.log_path.clone())?.ok_or_else(|| AgentError::NotFound { id: id.into() })?;
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AgentError::io(format!("read {}", path.display()), e)),
        };
        let first = match opts.tail_lines {
            Some(n) => tail_lines(&data, n).to_vec(),
            None => data.clone(),
        };
        let initial = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        if !opts.follow {
            return Ok(Box::pin(initial));
        }
        // Follow: poll the file for growth until the container has exited (or is removed).
        let objects = self.objects.clone();
        let id = id.to_string();
        let offset = data.len() as u64;
        let rest = futures::stream::unfold((path, offset, false), move |(path, offset, done)| {
            let objects = objects.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let stopped = objects
                        .lock()
                        .expect("poisoned")
                        .get(&id)
                        .is_none_or(|p| p.info.state != ContainerState::Running);
                    let chunk = read_from(&path, offset).await;
                    match chunk {
                        Ok(c) if !c.is_empty() => {
                            let next = offset + c.len() as u64;
                            return Some((Ok(c), (path, next, false)));
                        }
                        Ok(_) if stopped => return None,
                        Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        Err(e) => return Some((Err(e), (path, offset, true))),
                    }
                }
            }
        });
        Ok(Box::pin(futures::StreamExt::chain(initial, rest)))
    }

    async fn image_present(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }
}

/// Up to 64 KiB of `path` from `offset`.
async fn read_from(path: &std::path::Path, offset: u64) -> Result<Vec<u8>> {
    use tokio::io::AsyncSeekExt;
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AgentError::io(format!("open {}", path.display()), e)),
    };
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| AgentError::io("seek log", e))?;
    let mut buf = Vec::new();
    f.take(64 * 1024).read_to_end(&mut buf).await.map_err(|e| AgentError::io("read log", e))?;
    Ok(buf)
}
