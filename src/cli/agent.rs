//! `skiff agent`: the node agent (runs the pods the control plane binds to this node).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use skiff_agent::runtime::podnet::PodNetworkConfig;
use skiff_agent::{
    Agent, AgentConfig, DockerConfig, DockerRuntime, FakeRuntime, ProcessConfig, ProcessRuntime, Runtime,
};

/// `--proxy-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyModeArg {
    /// `iptables` when `iptables -t nat -S` works (root, iptables installed), else `userspace`.
    Auto,
    Userspace,
    Iptables,
}

/// Which network the docker runtime's pods get (`--pod-network`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodNetworkMode {
    /// The agent's bridge when it can set it up (root, `ip`, `nsenter`, `iptables`), else Docker's.
    Auto,
    /// The agent's bridge (`--pod-bridge`, `--pod-cidr`); the agent refuses to start without it.
    Bridge,
    /// Docker's default bridge network.
    Docker,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Docker,
    Process,
    Fake,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The Node's name (default: this machine's hostname).
    #[arg(long, env = "SKIFF_NODE_NAME")]
    node_name: Option<String>,
    /// gRPC addresses of control-plane replicas (any of them; the agent finds the leader).
    #[arg(long, env = "SKIFF_SERVERS", value_delimiter = ',', default_value = "127.0.0.1:7001")]
    servers: Vec<String>,
    /// Container runtime.
    #[arg(long, env = "SKIFF_RUNTIME", value_enum, default_value = "docker")]
    runtime: RuntimeKind,
    /// Address the log endpoint listens on.
    #[arg(long, env = "SKIFF_AGENT_ADDRESS", default_value = "0.0.0.0")]
    address: String,
    /// Port of the log endpoint (`GET /containerLogs/...`); 0 picks a free one.
    #[arg(long, env = "SKIFF_AGENT_PORT", default_value_t = 10250)]
    port: u16,
    /// The IP the control plane reaches this node at (InternalIP); default: --address when
    /// it is not 0.0.0.0, else the local address towards the first server.
    #[arg(long, env = "SKIFF_NODE_IP")]
    node_ip: Option<String>,
    /// Where pod volumes and process logs live.
    #[arg(long, env = "SKIFF_AGENT_DATA_DIR", default_value = "./skiff-agent-data")]
    data_dir: PathBuf,
    /// CPU capacity reported (default: this machine's cpus).
    #[arg(long, env = "SKIFF_CAPACITY_CPU")]
    capacity_cpu: Option<String>,
    /// Memory capacity reported, a quantity like 8Gi (default: this machine's memory).
    #[arg(long, env = "SKIFF_CAPACITY_MEMORY")]
    capacity_memory: Option<String>,
    /// Most pods this node runs.
    #[arg(long, env = "SKIFF_MAX_PODS", default_value_t = 110)]
    max_pods: u32,
    /// Extra Node labels `k=v,...`.
    #[arg(long, env = "SKIFF_NODE_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Fake runtime only: run N agents in this process, named `<node-name>-<i>` (i = 1..N),
    /// log ports --port + i - 1.
    #[arg(long, env = "SKIFF_FAKE_NODES")]
    fake_nodes: Option<u32>,
    /// Heartbeat period.
    #[arg(long, env = "SKIFF_AGENT_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    heartbeat_interval_ms: u64,
    /// Address the service proxy's node ports listen on (default: --address); `none` runs no
    /// proxy. Fake nodes never run one.
    #[arg(long, env = "SKIFF_PROXY_ADDRESS")]
    proxy_address: Option<String>,
    /// How node ports are forwarded: `iptables` (netfilter DNAT rules, as kube-proxy's default
    /// mode: the kernel forwards; needs root and `iptables`; a connection an endpoint refuses
    /// goes to another on its client's SYN retransmission), `userspace` (a listener in the agent copies every connection; an endpoint
    /// that refuses is skipped for the next), or `auto`: `iptables` when the agent can use it,
    /// else `userspace`.
    #[arg(long, env = "SKIFF_PROXY_MODE", value_enum, default_value = "auto")]
    proxy_mode: ProxyModeArg,
    /// Wait between a pod leaving its Services' endpoints and SIGTERM to its containers.
    #[arg(long, env = "SKIFF_TERMINATION_PROPAGATION_DELAY_MS", default_value_t = 2000)]
    termination_propagation_delay_ms: u64,
    /// Docker runtime: the pods' network. `bridge`: the agent's own bridge and addresses (a
    /// sandbox starts without Docker's network hook, much cheaper); `docker`: Docker's
    /// default bridge; `auto`: `bridge` when the agent can set it up, else `docker`.
    #[arg(long, env = "SKIFF_POD_NETWORK", value_enum, default_value = "auto")]
    pod_network: PodNetworkMode,
    /// The pod subnet of `--pod-network bridge` (the bridge takes its first address). Every
    /// agent of a machine must use the same.
    #[arg(long, env = "SKIFF_POD_CIDR", default_value = "10.222.0.0/16")]
    pod_cidr: String,
    /// The Linux bridge of `--pod-network bridge` (created when missing, shared by the
    /// machine's agents).
    #[arg(long, env = "SKIFF_POD_BRIDGE", default_value = "skiff0")]
    pod_bridge: String,
    /// MTU of the pods' interfaces on the bridge (default: the default route's interface's).
    #[arg(long, env = "SKIFF_POD_MTU")]
    pod_mtu: Option<u32>,
}

/// The docker runtime's pod network for `mode` (`None`: Docker's own network).
pub async fn pod_network(
    mode: PodNetworkMode,
    cfg: PodNetworkConfig,
) -> anyhow::Result<Option<Arc<skiff_agent::runtime::podnet::PodNetwork>>> {
    if mode == PodNetworkMode::Docker {
        return Ok(None);
    }
    match skiff_agent::runtime::podnet::PodNetwork::setup(cfg.clone()).await {
        Ok(net) => Ok(Some(Arc::new(net))),
        Err(e) if mode == PodNetworkMode::Bridge => {
            bail!("--pod-network bridge: setting up bridge {} for {} failed: {e}", cfg.bridge, cfg.cidr)
        }
        Err(e) => {
            eprintln!(
                "skiff agent: pods use Docker's bridge network: the agent's pod network ({} on {}) could not be set up: {e}",
                cfg.cidr, cfg.bridge
            );
            Ok(None)
        }
    }
}

/// The proxy configuration for `--proxy-address` (`None`: no proxy).
fn proxy_config(
    a: &AgentArgs,
    node_name: &str,
    net: Option<&skiff_agent::runtime::podnet::PodNetwork>,
) -> anyhow::Result<Option<skiff_agent::proxy::ProxyConfig>> {
    if a.runtime == RuntimeKind::Fake {
        return Ok(None);
    }
    let addr = a.proxy_address.clone().unwrap_or_else(|| a.address.clone());
    if addr == "none" {
        return Ok(None);
    }
    let ip = addr.parse().with_context(|| format!("--proxy-address {addr:?} is not an IP address"))?;
    use skiff_agent::proxy::ProxyMode;
    let mode = match a.proxy_mode {
        ProxyModeArg::Userspace => ProxyMode::Userspace,
        // Fail at start, not with a warning per second later.
        ProxyModeArg::Iptables => match iptables_usable() {
            Ok(()) => ProxyMode::Iptables,
            Err(e) => bail!("--proxy-mode iptables: {e}; run the agent as root or use --proxy-mode userspace"),
        },
        ProxyModeArg::Auto => match iptables_usable() {
            Ok(()) => ProxyMode::Iptables,
            Err(e) => {
                eprintln!("skiff agent {node_name}: node ports use the userspace proxy: {e}");
                ProxyMode::Userspace
            }
        },
    };
    Ok(Some(skiff_agent::proxy::ProxyConfig {
        mode,
        node_name: node_name.to_string(),
        bind_address: ip,
        pod_bridge: net.map(pod_bridge),
        ..Default::default()
    }))
}

/// The pod bridge and subnet the service proxy forwards into without masquerading.
fn pod_bridge(net: &skiff_agent::runtime::podnet::PodNetwork) -> (String, String) {
    (net.config().bridge.clone(), net.config().cidr.to_string())
}

/// Whether this agent can program netfilter: `iptables -t nat -S` works.
fn iptables_usable() -> anyhow::Result<()> {
    let mut probe = std::process::Command::new("iptables");
    probe.args(["-t", "nat", "-S"]);
    match crate::proc_cluster::run_bounded(&mut probe, b"", Duration::from_secs(10)) {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!("`iptables -t nat -S` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => bail!("cannot run iptables ({e:#})"),
    }
}

/// This machine's hostname, lower-cased (a valid node name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
        .to_ascii_lowercase()
}

fn parse_labels(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (k, v) = l.split_once('=').with_context(|| format!("label {l:?} is not KEY=VALUE"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Connects the runtime and returns it with its `containerRuntimeVersion`.
pub async fn runtime(
    kind: RuntimeKind,
    data_dir: &Path,
    pod_network: Option<Arc<skiff_agent::runtime::podnet::PodNetwork>>,
) -> anyhow::Result<(Arc<dyn Runtime>, String)> {
    Ok(match kind {
        RuntimeKind::Docker => {
            let mut config = DockerConfig::new(data_dir);
            config.pod_network = pod_network;
            let d = DockerRuntime::connect(config)
                .await
                .context("connecting to Docker (is it running? try --runtime process)")?;
            let v = d.server_version().await.unwrap_or_default();
            (Arc::new(d), format!("docker://{v}"))
        }
        RuntimeKind::Process => {
            (Arc::new(ProcessRuntime::new(ProcessConfig::new(data_dir))), "process://skiff".to_string())
        }
        RuntimeKind::Fake => (Arc::new(FakeRuntime::new()), "fake://skiff".to_string()),
    })
}

/// Starts one agent in this process.
pub async fn start(
    kind: RuntimeKind,
    name: &str,
    servers: Vec<String>,
    listen: String,
    data_dir: &Path,
) -> anyhow::Result<Agent> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let net = match kind {
        RuntimeKind::Docker => pod_network(PodNetworkMode::Auto, PodNetworkConfig::default()).await?,
        _ => None,
    };
    let bridge = net.as_deref().map(pod_bridge);
    let (rt, version) = runtime(kind, data_dir, net).await?;
    let mut cfg = AgentConfig::new(name, servers);
    cfg.listen = listen;
    cfg.runtime_version = version;
    // As `skiff agent`'s `--proxy-mode auto`: node ports on every address, forwarded by the
    // kernel when the agent can program it.
    let mode = match iptables_usable() {
        Ok(()) => skiff_agent::proxy::ProxyMode::Iptables,
        Err(_) => skiff_agent::proxy::ProxyMode::Userspace,
    };
    cfg.proxy = Some(skiff_agent::proxy::ProxyConfig {
        mode,
        node_name: name.to_string(),
        pod_bridge: bridge,
        ..Default::default()
    });
    Ok(Agent::start(cfg, rt).await?)
}

pub async fn run(a: AgentArgs) -> anyhow::Result<ExitCode> {
    let base = a.node_name.clone().unwrap_or_else(hostname);
    let labels = parse_labels(&a.labels)?;
    let count = match a.fake_nodes {
        Some(_) if a.runtime != RuntimeKind::Fake => bail!("--fake-nodes needs --runtime fake"),
        Some(0) => bail!("--fake-nodes must be at least 1"),
        Some(n) => n,
        None => 1,
    };
    let net = match a.runtime {
        RuntimeKind::Docker => {
            let cidr = a.pod_cidr.parse().map_err(|e: String| anyhow::anyhow!("--pod-cidr: {e}"))?;
            let cfg = PodNetworkConfig { bridge: a.pod_bridge.clone(), cidr, mtu: a.pod_mtu, ..Default::default() };
            pod_network(a.pod_network, cfg).await?
        }
        _ => None,
    };
    let mut agents = Vec::new();
    for i in 0..count {
        let (name, port, dir) = match a.fake_nodes {
            Some(_) => (
                format!("{base}-{}", i + 1),
                if a.port == 0 { 0 } else { a.port.checked_add(i as u16).context("--port + --fake-nodes > 65535")? },
                a.data_dir.join(format!("node-{}", i + 1)),
            ),
            None => (base.clone(), a.port, a.data_dir.clone()),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (rt, version) = runtime(a.runtime, &dir, net.clone()).await?;
        let mut cfg = AgentConfig::new(&name, a.servers.clone());
        cfg.listen =
            if a.address.contains(':') { format!("[{}]:{port}", a.address) } else { format!("{}:{port}", a.address) };
        cfg.node_ip = a.node_ip.clone();
        cfg.heartbeat_interval = Duration::from_millis(a.heartbeat_interval_ms.max(10));
        if let Some(c) = &a.capacity_cpu {
            cfg.capacity_cpu = c.clone();
        }
        if let Some(m) = &a.capacity_memory {
            cfg.capacity_memory = m.clone();
        }
        cfg.max_pods = a.max_pods;
        cfg.pod_manager.max_pods = a.max_pods as usize;
        cfg.labels = labels.clone();
        cfg.runtime_version = version;
        cfg.proxy = proxy_config(&a, &name, net.as_deref())?;
        cfg.pod_manager.termination_propagation_delay = Duration::from_millis(a.termination_propagation_delay_ms);
        let proxy = match &cfg.proxy {
            Some(p) => format!("{} proxy on {}", p.mode.as_str(), p.bind_address),
            None => "no service proxy".to_string(),
        };
        let network = match (&net, a.runtime) {
            (Some(n), _) => format!("pod network {} on {}", n.config().cidr, n.config().bridge),
            (None, RuntimeKind::Docker) => "Docker's pod network".to_string(),
            (None, RuntimeKind::Process) => "host network".to_string(),
            (None, RuntimeKind::Fake) => "fake pods".to_string(),
        };
        let agent = Agent::start(cfg, rt).await.with_context(|| format!("starting agent {name}"))?;
        eprintln!(
            "skiff agent {name}: runtime {:?}, {network}, {proxy}, logs on http://{}, control plane {}",
            a.runtime,
            agent.http_addr,
            a.servers.join(",")
        );
        agents.push(agent);
    }
    super::server::wait_for_signal().await;
    eprintln!("shutting down (containers keep running)");
    for agent in agents {
        agent.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
