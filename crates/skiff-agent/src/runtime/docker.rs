//! `DockerRuntime`: pods as a pause-like sandbox container plus app containers sharing its network namespace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, HostConfig,
    PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;

use super::podnet::{self, PodNetwork};
use super::{
    labels, parse_rfc3339, ContainerInfo, ContainerSpec, ContainerState, ExecResult, LogOptions, LogStream,
    MountSource, ObjectKind, ObjectState, Runtime, SandboxSpec, MAX_EXEC_OUTPUT_BYTES,
};
use crate::error::{with_deadline, AgentError, Result};

/// How to reach Docker and where to keep pod volumes.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Holds `pods/<uid>/volumes/<name>` for `emptyDir` volumes (a relative path is taken
    /// from the agent's working directory when it connects).
    pub data_dir: PathBuf,
    /// The image of sandbox containers; must sleep until SIGTERM.
    pub sandbox_image: String,
    /// Deadline of one Docker API call that is not a stop (stops get grace + this).
    pub api_timeout: Duration,
    /// The agent's own pod network ([`podnet`]); `None`: Docker's default bridge network for
    /// every pod. Pods with `hostPort`s always use Docker's, which publishes the ports.
    pub pod_network: Option<Arc<PodNetwork>>,
}

impl DockerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DockerConfig {
            data_dir: data_dir.into(),
            sandbox_image: "skiff/pause:1".into(),
            api_timeout: Duration::from_secs(30),
            pod_network: None,
        }
    }
}

/// Runs pods on the Docker Engine through its API (never pulls images).
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    /// Sandbox container id → (its address on the pod network, its name: the reservation's owner).
    addresses: Mutex<HashMap<String, (Ipv4Addr, String)>>,
}

impl DockerRuntime {
    /// Connect through `DOCKER_HOST` (or the default unix socket) and negotiate the API version.
    pub async fn connect(mut config: DockerConfig) -> Result<Self> {
        // Docker takes only absolute host paths for bind mounts (a relative one is read as a
        // volume name), and `emptyDir`s and pod-network files are bind-mounted from under here.
        config.data_dir = std::path::absolute(&config.data_dir).map_err(|source| AgentError::Io {
            context: format!("resolving the data directory {}", config.data_dir.display()),
            source,
        })?;
        let docker = Docker::connect_with_defaults()?.with_timeout(Duration::from_secs(600));
        let docker = with_deadline("docker version negotiation", config.api_timeout, async {
            Ok(docker.negotiate_version().await?)
        })
        .await?;
        let rt = DockerRuntime { docker, config, addresses: Mutex::default() };
        rt.collect_address_garbage().await;
        Ok(rt)
    }

    /// Frees the pod-network reservations whose sandbox container no longer exists.
    async fn collect_address_garbage(&self) {
        let Some(net) = &self.config.pod_network else { return };
        let filters = HashMap::from([("label".to_string(), vec![format!("{}=sandbox", labels::KIND)])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        match self.call("list sandboxes", async { Ok(self.docker.list_containers(Some(opts)).await?) }).await {
            Ok(list) => {
                let names: HashSet<String> = list
                    .into_iter()
                    .flat_map(|c| c.names.unwrap_or_default())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect();
                net.collect_garbage(&names);
            }
            Err(e) => tracing::warn!(error = %e, "listing sandboxes for the pod network's garbage collection failed"),
        }
    }

    /// Reserves a pod-network address for the sandbox `name` (collecting garbage once when the
    /// subnet looks full).
    async fn reserve_address(&self, net: &PodNetwork, name: &str) -> Result<Ipv4Addr> {
        match net.allocate(name) {
            Ok(ip) => Ok(ip),
            Err(_) => {
                self.collect_address_garbage().await;
                net.allocate(name).map_err(AgentError::Network)
            }
        }
    }

    /// Remembers the address of a sandbox plugged into the pod network (freed on removal).
    fn note_address(&self, info: &ContainerInfo) {
        let (Some(net), Some(ip)) = (&self.config.pod_network, info.label(labels::POD_IP)) else { return };
        let Ok(ip) = ip.parse::<Ipv4Addr>() else { return };
        if net.config().cidr.contains(ip) && info.kind == ObjectKind::Sandbox {
            let name = sandbox_name(
                info.label(labels::POD_NAME).unwrap_or_default(),
                info.label(labels::POD_NAMESPACE).unwrap_or_default(),
                info.pod_uid().unwrap_or_default(),
                info.attempt(),
            );
            self.addresses.lock().unwrap_or_else(|e| e.into_inner()).insert(info.id.clone(), (ip, name));
        }
    }

    /// Frees the address of a removed sandbox.
    fn free_address(&self, id: &str) {
        let held = self.addresses.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        if let (Some(net), Some((ip, owner))) = (&self.config.pod_network, held) {
            net.release(ip, &owner);
        }
    }

    /// The engine's version (`20.10.24`), for the Node's `containerRuntimeVersion`.
    pub async fn server_version(&self) -> Option<String> {
        with_deadline("docker version", self.config.api_timeout, async { Ok(self.docker.version().await?) })
            .await
            .ok()
            .and_then(|v| v.version)
    }

    /// The underlying client (for tests and tooling).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid)
    }

    fn empty_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(volume)
    }

    /// Writes the pod's `/etc/hosts` and `/etc/resolv.conf` (for a sandbox with address `ip`).
    fn write_pod_files(&self, spec: &SandboxSpec, ip: Ipv4Addr) -> Result<()> {
        let dir = self.pod_dir(&spec.pod.uid);
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
        let (hosts, resolv) = podnet::pod_files(&dir);
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| AgentError::io(format!("write {}", path.display()), e))
        };
        write(&hosts, podnet::hosts_file(ip, &spec.hostname, &spec.host_aliases))?;
        write(&resolv, podnet::resolv_conf(&podnet::host_resolv_conf(), &spec.dns))
    }

    /// Every container (any state) whose labels contain all of `labels`, as Docker's list
    /// summarizes them.
    async fn summaries(&self, labels: &BTreeMap<String, String>) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect())]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.call("list containers", async { Ok(self.docker.list_containers(Some(opts)).await?) }).await
    }

    async fn call<T>(&self, op: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        with_deadline(op, self.config.api_timeout, fut).await
    }

    /// Create a container, replacing a leftover one with the same name.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        for _ in 0..2 {
            let opts = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
            match self.docker.create_container(Some(opts), body.clone()).await {
                Ok(r) => return Ok(r.id),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                    tracing::warn!(name, "removing a leftover container with the same name");
                    self.remove_container(name).await?;
                }
                // Docker never pulls on create: a missing image is a 404 "No such image" (other
                // 404s, e.g. a sandbox gone meanwhile, stay errors of their own).
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message })
                    if message.contains("No such image") =>
                {
                    return Err(AgentError::ImageNotPresent { image: body.image.clone().unwrap_or_default() })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AgentError::InvalidSpec(format!("container name {name} stays in use")))
    }
}

impl DockerRuntime {
    /// Docker's `User` for the container: `runAsUser[:runAsGroup]`, or the image's user with
    /// `runAsGroup`; `runAsNonRoot` is checked against it as kubelet checks it.
    async fn user(&self, spec: &ContainerSpec) -> Result<Option<String>> {
        let sec = &spec.security;
        if let Some(uid) = sec.run_as_user {
            if uid == 0 && sec.run_as_non_root {
                return Err(super::root_user_refused(spec));
            }
            return Ok(Some(match sec.run_as_group {
                Some(gid) => format!("{uid}:{gid}"),
                None => uid.to_string(),
            }));
        }
        if !sec.run_as_non_root && sec.run_as_group.is_none() {
            return Ok(None);
        }
        // The image's user decides: one inspection, only for these settings.
        let image = match self.call("inspect image", async { Ok(self.docker.inspect_image(&spec.image).await?) }).await
        {
            Ok(image) => image,
            Err(e) if e.is_not_found() => return Err(AgentError::ImageNotPresent { image: spec.image.clone() }),
            Err(e) => return Err(e),
        };
        let image_user = image.config.and_then(|c| c.user).unwrap_or_default();
        let user = image_user.split(':').next().unwrap_or("").to_string();
        if sec.run_as_non_root {
            let uid = if user.is_empty() { Some(0) } else { user.parse::<u32>().ok() };
            let refusal = match uid {
                Some(0) => Some("container has runAsNonRoot and image will run as root".to_string()),
                None => Some(format!(
                    "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root"
                )),
                Some(_) => None,
            };
            if let Some(why) = refusal {
                return Err(AgentError::ContainerConfig(format!(
                    "{why} (pod: {:?}, container: {})",
                    spec.pod.kubelet_format(),
                    spec.name
                )));
            }
        }
        Ok(match sec.run_as_group {
            Some(gid) => Some(format!("{}:{gid}", if user.is_empty() { "0" } else { &user })),
            None => (!image_user.is_empty()).then_some(image_user),
        })
    }

    /// Docker's `SecurityOpt` for the container's seccomp, AppArmor, SELinux and
    /// `no_new_privs` settings.
    fn security_options(&self, sec: &super::Security) -> Result<Vec<String>> {
        use super::Profile;
        let mut opts = Vec::new();
        if sec.no_new_privileges {
            opts.push("no-new-privileges".to_string());
        }
        match &sec.seccomp {
            None | Some(Profile::RuntimeDefault) => {}
            Some(Profile::Unconfined) => opts.push("seccomp=unconfined".into()),
            Some(Profile::Localhost(name)) => {
                // As kubelet: `<root dir>/seccomp/<localhostProfile>`, its JSON given to Docker.
                let path = self.config.data_dir.join("seccomp").join(name);
                let profile = std::fs::read_to_string(&path).map_err(|e| {
                    AgentError::ContainerConfig(format!("cannot load seccomp profile {:?}: {e}", path.display()))
                })?;
                opts.push(format!("seccomp={profile}"));
            }
        }
        match &sec.apparmor {
            None => {}
            // (Without AppArmor on the node every container is unconfined already.)
            Some(Profile::Unconfined) if !host_has_apparmor() => {}
            Some(_) if !host_has_apparmor() => {
                return Err(AgentError::ContainerConfig(
                    "Cannot enforce AppArmor: AppArmor is not enabled on the host".into(),
                ))
            }
            Some(Profile::RuntimeDefault) => {}
            Some(Profile::Unconfined) => opts.push("apparmor=unconfined".into()),
            Some(Profile::Localhost(name)) => opts.push(format!("apparmor={name}")),
        }
        opts.extend(sec.selinux.iter().map(|l| format!("label={l}")));
        Ok(opts)
    }
}

fn host_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

fn to_info(r: ContainerInspectResponse) -> ContainerInfo {
    let labels: BTreeMap<String, String> =
        r.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default().into_iter().collect();
    let kind = match labels.get(labels::KIND).map(String::as_str) {
        Some("sandbox") => ObjectKind::Sandbox,
        _ => ObjectKind::Container,
    };
    let st = r.state.unwrap_or_default();
    let state = match st.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING)
        | Some(ContainerStateStatusEnum::PAUSED)
        | Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    };
    let exited = state == ContainerState::Exited;
    let ip = r
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|nets| nets.into_values().find_map(|e| e.ip_address.filter(|ip| !ip.is_empty())));
    ContainerInfo {
        id: r.id.unwrap_or_default(),
        kind,
        state,
        exit_code: if exited { st.exit_code.map(|c| c as i32) } else { None },
        reason: if exited && st.oom_killed == Some(true) { Some("OOMKilled".into()) } else { None },
        message: st.error.filter(|e| !e.is_empty()),
        created_at: r.created.as_deref().and_then(parse_rfc3339),
        started_at: st.started_at.as_deref().and_then(parse_rfc3339),
        finished_at: if exited { st.finished_at.as_deref().and_then(parse_rfc3339) } else { None },
        image: r.config.and_then(|c| c.image).unwrap_or_default(),
        image_id: r.image.unwrap_or_default(),
        // A sandbox on the agent's pod network has its address in a label, not in Docker's view.
        ip: if kind == ObjectKind::Sandbox { ip.or_else(|| labels.get(labels::POD_IP).cloned()) } else { None },
        labels: labels.into(),
    }
}

/// A sandbox's container name, `k8s_POD_<pod>_<namespace>_<uid>_<attempt>` as kubelet's
/// dockershim named them; it also owns the sandbox's pod-network address.
fn sandbox_name(pod: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    docker_name(&["k8s", "POD", pod, namespace, uid, &attempt.to_string()])
}

fn docker_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect())
        .collect::<Vec<String>>()
        .join("_")
}

fn grace_secs(grace: Duration) -> i32 {
    i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<ContainerInfo> {
        let image = self.config.sandbox_image.clone();
        for name in &spec.empty_dirs {
            let dir = self.empty_dir(&spec.pod.uid, name);
            std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
            set_mode_777(&dir)?;
            if let Some(gid) = spec.fs_group {
                // kubelet's volume ownership: the fsGroup's, setgid so new files are too.
                std::os::unix::fs::chown(&dir, None, Some(gid))
                    .map_err(|e| AgentError::io(format!("chown {} to group {gid}", dir.display()), e))?;
                set_mode(&dir, 0o2777)?;
            }
        }
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "sandbox".into());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        // (On the node's network its ports are the pod's: nothing to publish.)
        let published = if spec.host_network { &[][..] } else { &spec.ports[..] };
        for p in published {
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding { host_ip: p.host_ip.clone(), host_port: Some(p.host_port.to_string()) });
        }
        let name = sandbox_name(&spec.pod.name, &spec.pod.namespace, &spec.pod.uid, spec.attempt);
        // The agent's pod network, unless the pod publishes host ports (Docker's network does)
        // or uses the node's.
        let net = self.config.pod_network.clone().filter(|_| spec.ports.is_empty() && !spec.host_network);
        let ip = match &net {
            Some(net) => {
                let ip = self.reserve_address(net, &name).await?;
                if let Err(e) = self.write_pod_files(spec, ip) {
                    net.release(ip, &name);
                    return Err(e);
                }
                labels.insert(labels::POD_IP.into(), ip.to_string());
                Some(ip)
            }
            None => None,
        };
        let body = ContainerCreateBody {
            image: Some(image),
            // (On the node's network the pod has the node's hostname, as in Kubernetes.)
            hostname: (!spec.host_network).then(|| spec.hostname.clone()),
            labels: Some(labels.into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            // A namespace with only `lo`, plugged in below: no `dockerd` re-executed as a hook.
            network_disabled: ip.map(|_| true),
            host_config: Some(HostConfig {
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                network_mode: spec.host_network.then(|| "host".into()),
                ipc_mode: Some(if spec.host_ipc { "host" } else { "shareable" }.into()),
                sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.iter().cloned().collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let started = async {
            let id = self.call("create sandbox", self.create(&name, body)).await?;
            let plugged = async {
                self.start_container(&id).await?;
                let raw =
                    self.call("inspect sandbox", async { Ok(self.docker.inspect_container(&id, None).await?) }).await?;
                if let (Some(net), Some(ip)) = (&net, ip) {
                    let pid = raw.state.as_ref().and_then(|s| s.pid).filter(|p| *p > 0).ok_or_else(|| {
                        AgentError::Network(format!("sandbox {name} has no process to plug into the pod network"))
                    })?;
                    net.attach(pid as u32, ip, &name).await.map_err(AgentError::Network)?;
                }
                Ok(to_info(raw))
            };
            match plugged.await {
                Ok(info) => Ok(info),
                Err(e) => {
                    let _ = self.remove_container(&id).await;
                    Err(e)
                }
            }
        };
        match started.await {
            Ok(info) => {
                self.note_address(&info);
                Ok(info)
            }
            Err(e) => {
                if let (Some(net), Some(ip)) = (&net, ip) {
                    net.release(ip, &name);
                }
                Err(e)
            }
        }
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        // (The inspect below also notes the sandbox's pod-network address, which the removal frees.)
        let uid = match self.inspect(id).await {
            Ok(info) => info.pod_uid().map(str::to_string),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        self.remove_container(id).await?;
        if let Some(uid) = uid.filter(|u| !u.is_empty() && !u.contains('/') && u != "..") {
            let dir = self.pod_dir(&uid);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(AgentError::io(format!("remove {}", dir.display()), e));
                }
            }
        }
        Ok(())
    }

    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        // No image check first: a missing image is the create's "No such image" (one Docker
        // call per container less on the pod start path).
        let mut labels = spec.pod.labels();
        labels.insert(labels::KIND.into(), "container".into());
        labels.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
        labels.insert(labels::ATTEMPT.into(), spec.attempt.to_string());
        labels.insert(labels::SPEC_HASH.into(), spec.spec_hash.clone());
        let mut binds = Vec::new();
        for m in &spec.mounts {
            let host = match &m.source {
                MountSource::EmptyDir(v) => {
                    let dir = self.empty_dir(&spec.pod.uid, v);
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
                    dir
                }
                MountSource::HostPath(p) => p.clone(),
            };
            let mode = if m.read_only { "ro" } else { "rw" };
            binds.push(format!("{}:{}:{mode}", host.display(), m.container_path));
        }
        // A pod on the agent's pod network gets the hosts and resolver files written for it
        // (Docker writes them only for containers on its own networks).
        let (hosts, resolv) = podnet::pod_files(&self.pod_dir(&spec.pod.uid));
        if hosts.is_file() && resolv.is_file() {
            binds.push(format!("{}:/etc/hosts:rw", hosts.display()));
            binds.push(format!("{}:/etc/resolv.conf:rw", resolv.display()));
        }
        let sec = &spec.security;
        let pid_mode = if sec.host_pid {
            Some("host".to_string())
        } else {
            sec.share_process_namespace.then(|| format!("container:{sandbox_id}"))
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: spec.working_dir.clone(),
            labels: Some(labels.into_iter().collect()),
            user: self.user(spec).await?,
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{sandbox_id}")),
                ipc_mode: Some(if sec.host_ipc { "host".to_string() } else { format!("container:{sandbox_id}") }),
                pid_mode,
                binds: (!binds.is_empty()).then_some(binds),
                nano_cpus: spec.nano_cpus,
                memory: spec.memory_bytes,
                group_add: (!sec.supplemental_groups.is_empty())
                    .then(|| sec.supplemental_groups.iter().map(u32::to_string).collect()),
                privileged: sec.privileged.then_some(true),
                cap_add: (!sec.capabilities_add.is_empty()).then(|| sec.capabilities_add.clone()),
                cap_drop: (!sec.capabilities_drop.is_empty()).then(|| sec.capabilities_drop.clone()),
                readonly_rootfs: sec.read_only_root_filesystem.then_some(true),
                security_opt: Some(self.security_options(sec)?).filter(|o| !o.is_empty()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = docker_name(&[
            "k8s",
            &spec.name,
            &spec.pod.name,
            &spec.pod.namespace,
            &spec.pod.uid,
            &spec.attempt.to_string(),
        ]);
        self.call("create container", self.create(&name, body)).await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.call("start container", async { Ok(self.docker.start_container(id, None).await?) }).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let opts = StopContainerOptions { t: Some(grace_secs(grace)), signal: None };
        let deadline = grace + self.config.api_timeout;
        let r =
            with_deadline("stop container", deadline, async { Ok(self.docker.stop_container(id, Some(opts)).await?) })
                .await;
        match r {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(AgentError::Docker(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. })) => {
                Ok(())
            }
            Err(AgentError::Timeout { .. }) => {
                let kill = KillContainerOptions { signal: "KILL".into() };
                self.call("kill container", async { Ok(self.docker.kill_container(id, Some(kill)).await?) }).await
            }
            Err(e) => Err(e),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let r = match self
            .call("remove container", async { Ok(self.docker.remove_container(id, Some(opts)).await?) })
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            // 409: removal already in progress.
            Err(AgentError::Docker(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })) => {
                Ok(())
            }
            r => r,
        };
        if r.is_ok() {
            self.free_address(id);
        }
        r
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let r = self.call("inspect container", async { Ok(self.docker.inspect_container(id, None).await?) }).await;
        match r {
            Ok(r) => {
                let info = to_info(r);
                self.note_address(&info);
                Ok(info)
            }
            Err(e) if e.is_not_found() => Err(AgentError::NotFound { id: id.to_string() }),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerInfo>> {
        let summaries = self.summaries(labels).await?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id).await {
                Ok(info) => out.push(info),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One `GET /containers/json`: the summaries carry the id, labels and state, so no
    /// container is inspected.
    async fn list_states(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ObjectState>> {
        Ok(self
            .summaries(labels)
            .await?
            .into_iter()
            .filter_map(|s| {
                let state = match s.state {
                    Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
                    Some(ContainerSummaryStateEnum::RUNNING)
                    | Some(ContainerSummaryStateEnum::PAUSED)
                    | Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Running,
                    Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::DEAD) => {
                        ContainerState::Exited
                    }
                    _ => ContainerState::Unknown,
                };
                let pod_uid = s.labels.as_ref().and_then(|l| l.get(labels::POD_UID)).cloned();
                Some(ObjectState { id: s.id?, pod_uid, state })
            })
            .collect())
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        let fut = async {
            let opts = CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.docker.create_exec(id, opts).await?;
            let mut output = Vec::new();
            if let StartExecResults::Attached { output: mut stream, .. } =
                self.docker.start_exec(&exec.id, Some(StartExecOptions::default())).await?
            {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    let bytes = chunk.into_bytes();
                    let room = MAX_EXEC_OUTPUT_BYTES.saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            let inspect = self.docker.inspect_exec(&exec.id).await?;
            Ok(ExecResult { exit_code: inspect.exit_code.unwrap_or(-1) as i32, output })
        };
        // The exec'd process is not killed on timeout (Docker has no API for it); the probe fails.
        with_deadline("exec", timeout, fut).await
    }

    async fn logs(&self, id: &str, opts: &LogOptions) -> Result<LogStream> {
        // Fail fast on a missing container rather than with an error inside the stream.
        self.inspect(id).await?;
        let opts = LogsOptions {
            follow: opts.follow,
            stdout: true,
            stderr: true,
            tail: opts.tail_lines.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
            ..Default::default()
        };
        let stream = self.docker.logs(id, Some(opts)).map(|r| match r {
            Ok(out) => Ok(match out {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => message.to_vec(),
            }),
            Err(e) => Err(AgentError::from(e)),
        });
        Ok(Box::pin(stream))
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.call("inspect image", async { Ok(self.docker.inspect_image(image).await?) }).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn set_mode_777(dir: &Path) -> Result<()> {
    set_mode(dir, 0o777)
}

fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| AgentError::io(format!("chmod {}", dir.display()), e))
}
