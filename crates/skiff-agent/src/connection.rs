//! The agent's connection to the control plane: one gRPC `AgentGateway.Connect` stream to the Raft leader, with reconnects, heartbeats, pods down and statuses up.
//!
//! [`Agent::start`] starts a [`PodManager`], the HTTP log endpoint ([`crate::http`]) and the
//! connection loop. The loop connects to any `--servers` address, follows `NotLeader`
//! hints, and reconnects with capped exponential backoff and jitter. While disconnected it
//! keeps the last desired pod set (running pods are never disturbed by a leader change or a
//! control-plane outage) and remembers each pod's latest status, all of which it sends
//! again after reconnecting.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;
use serde_json::{json, Value};
use skiff_proto::agent::agent_gateway_client::AgentGatewayClient;
use skiff_proto::agent::{
    agent_message, gateway_message, AgentMessage, GatewayMessage, Heartbeat, Hello, PodEventRecord, PodRemoved,
    PodStatus, PodStatusBatch, MAX_AGENT_MESSAGE_BYTES,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use crate::error::{AgentError, Result};
use crate::pod_manager::{PodEvent, PodManager, PodManagerConfig, RecordedEvent};
use crate::runtime::Runtime;

/// The kubelet version the Node reports.
pub const KUBELET_VERSION: &str = "v1.32.0-skiff";

/// What an agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// gRPC addresses (`host:port`) of control-plane replicas; any of them will do.
    pub servers: Vec<String>,
    /// Where the HTTP log endpoint listens (`0.0.0.0:10250`; port 0 picks one).
    pub listen: String,
    /// The address the control plane reaches this node at (`InternalIP`); `None`: the
    /// local address of a socket towards the first server, else the listen host.
    pub node_ip: Option<String>,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with ±50 % jitter.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Deadline of one connection attempt (TCP + HTTP/2).
    pub connect_timeout: Duration,
    /// Reported capacity (and allocatable): cpu (`"4"`), memory (`"8Gi"` or bytes), pods.
    pub capacity_cpu: String,
    pub capacity_memory: String,
    pub max_pods: u32,
    /// Extra Node labels (`kubernetes.io/hostname` etc. are always set).
    pub labels: BTreeMap<String, String>,
    /// `containerRuntimeVersion` (`docker://20.10`, `process://skiff`, `fake://skiff`).
    pub runtime_version: String,
    /// Tunables of the pod manager (its `node_name` and `host_ip` are overwritten).
    pub pod_manager: PodManagerConfig,
    /// The service proxy (node ports of NodePort Services); `None` runs none (fake nodes,
    /// several agents on one host).
    pub proxy: Option<crate::proxy::ProxyConfig>,
}

impl AgentConfig {
    /// Defaults: port 10250 on all interfaces, heartbeats every second, reconnects from
    /// 200 ms to 5 s, this machine's cpus and memory, 110 pods.
    pub fn new(node_name: impl Into<String>, servers: Vec<String>) -> Self {
        let node_name = node_name.into();
        let pod_manager = PodManagerConfig::new(node_name.clone());
        AgentConfig {
            // The machine is read once: what the node reports is what the pods see.
            capacity_cpu: pod_manager.allocatable_cpu.clone(),
            capacity_memory: pod_manager.allocatable_memory.clone(),
            pod_manager,
            proxy: Some(crate::proxy::ProxyConfig::default()),
            node_name,
            servers,
            listen: "0.0.0.0:10250".into(),
            node_ip: None,
            heartbeat_interval: Duration::from_secs(1),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_pods: 110,
            labels: BTreeMap::new(),
            runtime_version: "unknown://".into(),
        }
    }
}

/// Logical cpus of this machine.
pub fn machine_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Total memory of this machine in bytes (`/proc/meminfo`), 0 when unknown.
pub fn machine_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).map(|kb| kb * 1024))
        })
        .unwrap_or(0)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "unknown".into())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The IP this machine uses to reach `server` (no packet is sent).
fn local_ip_towards(server: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let target = server.to_socket_addrs().ok()?.next()?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

/// The v1 Node this agent reports in Hello.
pub fn node_object(cfg: &AgentConfig, node_ip: &str, port: u16) -> Value {
    let mut labels: BTreeMap<String, String> = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        ),
    ]);
    labels.extend(cfg.labels.clone());
    let resources = json!({
        "cpu": cfg.capacity_cpu,
        "memory": cfg.capacity_memory,
        "pods": cfg.max_pods.to_string(),
    });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": labels},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": node_ip},
                {"type": "Hostname", "address": cfg.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "containerRuntimeVersion": cfg.runtime_version,
                "osImage": os_image(),
                "kernelVersion": kernel_version(),
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "machineID": "", "systemUUID": "", "bootID": "",
            },
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "skiff agent is posting ready status",
            }],
        },
    })
}

/// A running agent: pod manager, log endpoint and control-plane connection.
pub struct Agent {
    /// Where the HTTP log endpoint listens.
    pub http_addr: SocketAddr,
    pub manager: Arc<PodManager>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Starts the pod manager (adopting containers this node already runs), binds the log
    /// endpoint (failing fast when the port is taken) and starts connecting.
    pub async fn start(cfg: AgentConfig, runtime: Arc<dyn Runtime>) -> Result<Agent> {
        if cfg.servers.is_empty() {
            return Err(AgentError::InvalidSpec("no control-plane servers given".into()));
        }
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| AgentError::io(format!("cannot listen on {}", cfg.listen), e))?;
        let http_addr = listener.local_addr().map_err(|e| AgentError::io("listener address", e))?;
        let node_ip = cfg
            .node_ip
            .clone()
            .or_else(|| Some(http_addr.ip()).filter(|ip| !ip.is_unspecified()).map(|ip| ip.to_string()))
            .or_else(|| local_ip_towards(&cfg.servers[0]))
            .unwrap_or_else(|| "127.0.0.1".into());
        let mut pm = cfg.pod_manager.clone();
        pm.node_name = cfg.node_name.clone();
        pm.host_ip = node_ip.clone();
        pm.allocatable_cpu = cfg.capacity_cpu.clone();
        pm.allocatable_memory = cfg.capacity_memory.clone();
        let (manager, events) = PodManager::start(runtime, pm).await?;
        let manager = Arc::new(manager);
        let (stop, stop_rx) = watch::channel(false);
        let mut rx = stop_rx.clone();
        let app = crate::http::router(manager.clone());
        let http = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!("agent HTTP server: {e}");
            }
        });
        let node_json = node_object(&cfg, &node_ip, http_addr.port()).to_string();
        let proxy = cfg.proxy.clone().map(|p| Arc::new(crate::proxy::ServiceProxy::new(p)));
        let conn = tokio::spawn(connection_loop(cfg, manager.clone(), proxy, events, node_json, stop_rx));
        Ok(Agent { http_addr, manager, stop, tasks: vec![http, conn] })
    }

    /// Stops the connection and the log endpoint. Containers keep running (a new agent
    /// adopts them).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Runs an agent until `stop` turns true.
pub async fn run_agent(cfg: AgentConfig, runtime: Arc<dyn Runtime>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let agent = Agent::start(cfg, runtime).await?;
    let _ = stop.wait_for(|s| *s).await;
    agent.shutdown().await;
    Ok(())
}

/// Decodes the pod sets the gateway sends. A set holds every pod bound to the node and comes
/// again whenever one of them changes, so the pods whose JSON is unchanged since the last set
/// are taken from it instead of being parsed again (memory: one set).
#[derive(Default)]
struct PodSetDecoder {
    last: HashMap<String, Arc<Pod>>,
}

impl PodSetDecoder {
    fn decode(&mut self, pods_json: Vec<String>) -> Vec<Arc<Pod>> {
        let mut pods = Vec::with_capacity(pods_json.len());
        let mut next = HashMap::with_capacity(pods_json.len());
        for json in pods_json {
            let pod = match self.last.remove(&json) {
                Some(pod) => pod,
                None => match serde_json::from_str::<Pod>(&json) {
                    Ok(pod) => Arc::new(pod),
                    Err(e) => {
                        tracing::warn!("pod from the control plane does not parse: {e}");
                        continue;
                    }
                },
            };
            pods.push(pod.clone());
            next.insert(json, pod);
        }
        self.last = next;
        pods
    }
}

/// Recorded events held while the stream is slow or down; more are dropped.
const MAX_PENDING_RECORDS: usize = 1024;

/// The latest unsent report per pod, in first-changed order (memory bounded by pod count),
/// and the recorded events not yet sent (bounded; sent once, not again after a reconnect).
#[derive(Default)]
struct Reporter {
    latest: HashMap<String, PodEvent>,
    order: VecDeque<String>,
    dirty: HashSet<String>,
    records: VecDeque<RecordedEvent>,
    /// Events dropped so far because `records` was full.
    records_dropped: u64,
}

impl Reporter {
    fn absorb(&mut self, batch: Vec<PodEvent>) {
        for ev in batch {
            if let PodEvent::Recorded(r) = ev {
                if self.records.len() < MAX_PENDING_RECORDS {
                    self.records.push_back(r);
                } else {
                    // Told at the first and at every 1,024th: visible, never a log flood.
                    self.records_dropped += 1;
                    let n = self.records_dropped;
                    if n == 1 || n.is_multiple_of(1024) {
                        tracing::warn!(
                            dropped = n,
                            "{MAX_PENDING_RECORDS} events already wait for the control plane: events are being dropped"
                        );
                    }
                }
                continue;
            }
            let uid = ev.uid().to_string();
            self.latest.insert(uid.clone(), ev);
            if self.dirty.insert(uid.clone()) {
                self.order.push_back(uid);
            }
        }
    }

    /// After a reconnect: everything known is sent again.
    fn mark_all_dirty(&mut self) {
        for uid in self.latest.keys() {
            if self.dirty.insert(uid.clone()) {
                self.order.push_back(uid.clone());
            }
        }
    }

    fn has_pending(&self) -> bool {
        !self.dirty.is_empty() || !self.records.is_empty()
    }

    /// The next message: one removal, or a batch of up to `max` statuses together with up to
    /// `max` of the events recorded meanwhile (a pod's start, its events and its status, is one
    /// message to the gateway, not two).
    fn next_message(&mut self, max: usize) -> Option<AgentMessage> {
        let max = max.max(1);
        let mut statuses = Vec::new();
        while let Some(uid) = self.order.front().cloned() {
            if !self.dirty.contains(&uid) {
                self.order.pop_front();
                continue;
            }
            match self.latest.get(&uid) {
                Some(PodEvent::Removed { namespace, name, uid: u }) => {
                    if !statuses.is_empty() {
                        break;
                    }
                    let msg = PodRemoved { namespace: namespace.clone(), name: name.clone(), uid: u.clone() };
                    self.order.pop_front();
                    self.dirty.remove(&uid);
                    // Sent once: a pod that is still listed after a lost removal gets a new
                    // worker, which removes nothing and reports it again.
                    self.latest.remove(&uid);
                    return Some(AgentMessage { msg: Some(agent_message::Msg::Removed(msg)) });
                }
                Some(PodEvent::Status(s)) => {
                    statuses.push(PodStatus {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                        uid: s.uid.clone(),
                        status_json: serde_json::to_string(&s.status).unwrap_or_else(|_| "{}".into()),
                    });
                    self.order.pop_front();
                    self.dirty.remove(&uid);
                    if statuses.len() >= max {
                        break;
                    }
                }
                Some(PodEvent::Recorded(_)) | None => {
                    self.order.pop_front();
                    self.dirty.remove(&uid);
                }
            }
        }
        let n = self.records.len().min(max);
        let events: Vec<PodEventRecord> = self
            .records
            .drain(..n)
            .map(|r| PodEventRecord {
                namespace: r.namespace,
                name: r.name,
                uid: r.uid,
                field_path: r.field_path,
                warning: r.warning,
                reason: r.reason,
                message: r.message,
            })
            .collect();
        if statuses.is_empty() && events.is_empty() {
            return None;
        }
        Some(AgentMessage { msg: Some(agent_message::Msg::Statuses(PodStatusBatch { statuses, events })) })
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How a session with one replica ended.
enum SessionEnd {
    Stopped,
    NotLeader(String),
    /// `true` when the session got as far as receiving pods (a healthy connection).
    Failed(String, bool),
}

/// When the next heartbeat is due: one period after the last message the gateway took as a
/// sign of life. A busy agent's status batches stand in for its heartbeats (a node running
/// thousands of pod changes sends few of them), an idle agent's heartbeats keep the period.
struct HeartbeatClock {
    interval: tokio::time::Interval,
}

impl HeartbeatClock {
    fn new(period: Duration) -> HeartbeatClock {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        HeartbeatClock { interval }
    }

    /// Completes when a heartbeat is due (at once for the first one).
    async fn due(&mut self) {
        self.interval.tick().await;
    }

    /// A message that counts as a heartbeat went out: the next one is due a period from now.
    fn spoke(&mut self) {
        self.interval.reset();
    }
}

/// Whether every gateway records `m` as a sign of life, as it does a heartbeat: status batches,
/// which carry the events too (gateways from before events were sent alone count only those
/// and heartbeats, so nothing else replaces one).
fn counts_as_heartbeat(m: &AgentMessage) -> bool {
    matches!(m.msg, Some(agent_message::Msg::Statuses(_)))
}

const OUTBOUND_CAPACITY: usize = 16;
const STATUS_BATCH: usize = 256;

/// The server to try next from the list, in turn, skipping `avoid` (the one the last session
/// failed on) when another is left.
fn next_server<'a>(servers: &'a [String], next: &mut usize, avoid: Option<&str>) -> &'a str {
    let mut a = &servers[*next % servers.len()];
    *next += 1;
    if servers.len() > 1 && Some(a.as_str()) == avoid {
        a = &servers[*next % servers.len()];
        *next += 1;
    }
    a
}

async fn connection_loop(
    cfg: AgentConfig,
    mgr: Arc<PodManager>,
    proxy: Option<Arc<crate::proxy::ServiceProxy>>,
    mut events: mpsc::Receiver<Vec<PodEvent>>,
    node_json: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut reporter = Reporter::default();
    let mut delay = cfg.reconnect_initial;
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut redirects = 0u32;
    // The server the last session failed on (a frozen leader still accepts connections, and
    // trying it again costs the connect and Hello timeouts: 12 s in which the new leader
    // hears nothing from this node).
    let mut last_failed: Option<String> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        // Avoided for one attempt only: a redirect from the server tried instead may name it.
        let avoid = last_failed.take();
        let addr = match hint.take().filter(|h| Some(h) != avoid.as_ref()) {
            Some(a) => a,
            None => next_server(&cfg.servers, &mut next, avoid.as_deref()).to_string(),
        };
        let end = session(&cfg, &addr, &mgr, proxy.as_deref(), &mut events, &mut reporter, &node_json, &mut stop).await;
        let wait = match end {
            SessionEnd::Stopped => return,
            SessionEnd::NotLeader(leader) => {
                redirects += 1;
                tracing::info!(server = addr, leader, "not the leader; following");
                if !leader.is_empty() && leader != addr && redirects <= 3 {
                    hint = Some(leader);
                    continue;
                }
                true
            }
            SessionEnd::Failed(e, healthy) => {
                tracing::warn!(server = addr, "control-plane connection: {e}");
                last_failed = Some(addr.clone());
                if healthy {
                    delay = cfg.reconnect_initial;
                }
                true
            }
        };
        if wait {
            redirects = 0;
            let jitter = rand::rng().random_range(0.5..1.5);
            let pause = delay.mul_f64(jitter);
            delay = (delay * 2).min(cfg.reconnect_max);
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stopped(&mut stop) => return,
                    ev = events.recv() => match ev {
                        Some(b) => reporter.absorb(b),
                        None => return,
                    },
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &AgentConfig,
    addr: &str,
    mgr: &PodManager,
    proxy: Option<&crate::proxy::ServiceProxy>,
    events: &mut mpsc::Receiver<Vec<PodEvent>>,
    reporter: &mut Reporter,
    node_json: &str,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let endpoint = match Endpoint::from_shared(uri) {
        Ok(e) => e
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true),
        Err(e) => return SessionEnd::Failed(format!("bad server address {addr:?}: {e}"), false),
    };
    let channel = tokio::select! {
        c = endpoint.connect() => match c {
            Ok(c) => c,
            Err(e) => return SessionEnd::Failed(format!("connect {addr}: {e}"), false),
        },
        _ = stopped(stop) => return SessionEnd::Stopped,
    };
    let mut decoder = PodSetDecoder::default();
    let mut client = AgentGatewayClient::new(channel)
        .max_decoding_message_size(MAX_AGENT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_AGENT_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<AgentMessage>(OUTBOUND_CAPACITY);
    let hello = Hello { node_name: cfg.node_name.clone(), node_json: node_json.to_string() };
    let _ = tx.try_send(AgentMessage { msg: Some(agent_message::Msg::Hello(hello)) });
    let open = tokio::time::timeout(
        cfg.connect_timeout + Duration::from_secs(10),
        client.connect(tokio_stream::wrappers::ReceiverStream::new(rx)),
    );
    let mut inbound = tokio::select! {
        r = open => match r {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(s)) => return SessionEnd::Failed(format!("{addr}: {}: {}", s.code(), s.message()), false),
            Err(_) => return SessionEnd::Failed(format!("{addr}: no answer to Hello"), false),
        },
        _ = stopped(stop) => return SessionEnd::Stopped,
    };
    reporter.mark_all_dirty();
    let mut healthy = false;
    let mut seq = 0u64;
    let mut beat = HeartbeatClock::new(cfg.heartbeat_interval);
    loop {
        tokio::select! {
            _ = stopped(stop) => return SessionEnd::Stopped,
            _ = beat.due() => {
                seq += 1;
                // A full buffer already tells the gateway we are alive: skip this beat.
                let _ = tx.try_send(AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq })) });
            }
            ev = events.recv() => match ev {
                Some(b) => reporter.absorb(b),
                None => return SessionEnd::Failed("the pod manager stopped".into(), healthy),
            },
            permit = tx.reserve(), if reporter.has_pending() => match permit {
                Ok(p) => {
                    if let Some(m) = reporter.next_message(STATUS_BATCH) {
                        let alive = counts_as_heartbeat(&m);
                        p.send(m);
                        if alive {
                            beat.spoke();
                        }
                    }
                }
                Err(_) => {
                    // The gateway dropped our stream: its last word may be a NotLeader.
                    let last = tokio::time::timeout(Duration::from_secs(1), inbound.message()).await;
                    if let Ok(Ok(Some(GatewayMessage { msg: Some(gateway_message::Msg::NotLeader(nl)) }))) = last {
                        return SessionEnd::NotLeader(nl.leader_addr);
                    }
                    return SessionEnd::Failed(format!("{addr} closed the stream"), healthy);
                }
            },
            msg = inbound.message() => match msg {
                Ok(Some(m)) => match m.msg {
                    Some(gateway_message::Msg::Pods(set)) => {
                        let pods = decoder.decode(set.pods_json);
                        if !healthy {
                            tracing::info!(server = addr, pods = pods.len(), "connected to the control plane");
                        }
                        healthy = true;
                        mgr.sync_shared(pods);
                    }
                    Some(gateway_message::Msg::Services(set)) => {
                        let parse = |items: &[String]| -> Vec<serde_json::Value> {
                            items.iter().filter_map(|j| serde_json::from_str(j).ok()).collect()
                        };
                        let (services, endpoints) = (parse(&set.services_json), parse(&set.endpoints_json));
                        if let Some(proxy) = proxy {
                            for e in proxy.sync(&services, &endpoints) {
                                tracing::warn!("service proxy: node port {} of {}: {}", e.node_port, e.service, e.error);
                            }
                        }
                        mgr.set_services(services);
                    }
                    Some(gateway_message::Msg::NotLeader(nl)) => return SessionEnd::NotLeader(nl.leader_addr),
                    None => {}
                },
                Ok(None) => return SessionEnd::Failed(format!("{addr} closed the stream"), healthy),
                Err(s) => return SessionEnd::Failed(format!("{addr}: {}: {}", s.code(), s.message()), healthy),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a session fails on a server, the next attempt goes elsewhere: a frozen leader,
    /// which still accepts connections, is not tried again at once (the agent lost 12 s to it
    /// when the round-robin turn came back to it).
    #[test]
    fn the_server_a_session_failed_on_is_not_tried_next() {
        let servers: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut next = 1;
        assert_eq!(next_server(&servers, &mut next, Some("b")), "c");
        assert_eq!(next_server(&servers, &mut next, None), "a");
        assert_eq!(next_server(&servers, &mut next, Some("c")), "b");
        assert_eq!(next_server(&servers, &mut next, Some("c")), "a", "c skipped");
        let one = vec!["only".to_string()];
        assert_eq!(next_server(&one, &mut next, Some("only")), "only", "a lone server is tried again");
    }
    use crate::pod_manager::PodStatusUpdate;

    fn status(uid: &str, phase: &str) -> PodEvent {
        PodEvent::Status(PodStatusUpdate {
            namespace: "default".into(),
            name: format!("p-{uid}"),
            uid: uid.into(),
            status: k8s_openapi::api::core::v1::PodStatus { phase: Some(phase.into()), ..Default::default() },
        })
    }

    /// While status batches go out more often than the period no heartbeat is due; once they
    /// stop, heartbeats come every period again, the first one period after the last batch.
    #[tokio::test(start_paused = true)]
    async fn status_batches_stand_in_for_heartbeats() {
        let period = Duration::from_secs(1);
        let mut clock = HeartbeatClock::new(period);
        let start = tokio::time::Instant::now();
        clock.due().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the first heartbeat goes at once");
        let mut beats = 0;
        let mut last_status = start;
        for _ in 0..10 {
            // A status batch every 600 ms: the clock must not fire in between.
            tokio::select! {
                _ = clock.due() => beats += 1,
                _ = tokio::time::sleep(Duration::from_millis(600)) => {
                    let batch = AgentMessage { msg: Some(agent_message::Msg::Statuses(PodStatusBatch::default())) };
                    assert!(counts_as_heartbeat(&batch));
                    clock.spoke();
                    last_status = tokio::time::Instant::now();
                }
            }
        }
        assert_eq!(beats, 0, "status batches every 600 ms left no heartbeat due");
        clock.due().await;
        assert_eq!(last_status.elapsed(), period, "the next heartbeat is due a period after the last batch");
        let before = tokio::time::Instant::now();
        clock.due().await;
        assert_eq!(before.elapsed(), period, "an idle agent beats every period");
        assert!(!counts_as_heartbeat(&AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq: 1 })) }));
    }

    #[test]
    fn pod_sets_reuse_unchanged_pods_and_track_changes() {
        let pod = |name: &str, rv: &str| {
            format!(
                r#"{{"metadata":{{"name":"{name}","uid":"u-{name}","resourceVersion":"{rv}"}},"spec":{{"containers":[]}}}}"#
            )
        };
        let mut d = PodSetDecoder::default();
        let names = |pods: &[Arc<Pod>]| -> Vec<(String, String)> {
            pods.iter()
                .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()))
                .collect()
        };
        let first = d.decode(vec![pod("a", "1"), pod("b", "1"), "not json".into()]);
        assert_eq!(names(&first), [("a".into(), "1".into()), ("b".into(), "1".into())]);
        assert_eq!(d.last.len(), 2, "the undecodable pod is skipped");
        // b changed, c is new, a is unchanged (reused), and a pod left out is forgotten.
        let second = d.decode(vec![pod("a", "1"), pod("b", "2"), pod("c", "1")]);
        assert_eq!(names(&second), [("a".into(), "1".into()), ("b".into(), "2".into()), ("c".into(), "1".into())]);
        assert!(Arc::ptr_eq(&first[0], &second[0]), "the unchanged pod is shared, not copied");
        let third = d.decode(vec![pod("c", "1")]);
        assert_eq!(names(&third), [("c".into(), "1".into())]);
        assert_eq!(d.last.len(), 1);
    }

    #[test]
    fn reporter_coalesces_and_resends_after_reconnect() {
        let mut r = Reporter::default();
        r.absorb(vec![status("a", "Pending"), status("b", "Pending")]);
        r.absorb(vec![status("a", "Running")]);
        let Some(AgentMessage { msg: Some(agent_message::Msg::Statuses(b)) }) = r.next_message(10) else {
            panic!("expected statuses")
        };
        assert_eq!(b.statuses.len(), 2);
        assert!(b.statuses[0].status_json.contains("Running"));
        assert!(!r.has_pending());
        r.mark_all_dirty();
        assert!(r.has_pending());
        r.absorb(vec![PodEvent::Removed { namespace: "default".into(), name: "p-a".into(), uid: "a".into() }]);
        let mut removed = 0;
        let mut statuses = 0;
        while let Some(m) = r.next_message(10) {
            match m.msg {
                Some(agent_message::Msg::Removed(_)) => removed += 1,
                Some(agent_message::Msg::Statuses(b)) => statuses += b.statuses.len(),
                _ => {}
            }
        }
        assert_eq!((removed, statuses), (1, 1));
        r.mark_all_dirty();
        let Some(AgentMessage { msg: Some(agent_message::Msg::Statuses(b)) }) = r.next_message(10) else {
            panic!("expected statuses")
        };
        assert_eq!(b.statuses.len(), 1, "a removed pod is not reported again");
    }

    fn recorded(uid: &str, reason: &str) -> PodEvent {
        PodEvent::Recorded(RecordedEvent {
            namespace: "default".into(),
            name: format!("p-{uid}"),
            uid: uid.into(),
            field_path: "spec.containers{c}".into(),
            warning: false,
            reason: reason.into(),
            message: format!("{reason} container c"),
        })
    }

    #[test]
    fn reporter_sends_events_once_with_the_statuses() {
        let mut r = Reporter::default();
        // Events of one pod are kept apart (never coalesced) and in order, and go in the same
        // message as the statuses, each list bounded by the batch size.
        r.absorb(vec![recorded("a", "Created"), status("a", "Pending"), recorded("a", "Started")]);
        r.absorb(vec![status("b", "Running")]);
        let mut seen = Vec::new();
        while let Some(m) = r.next_message(1) {
            let Some(agent_message::Msg::Statuses(b)) = m.msg else { panic!("unexpected {m:?}") };
            assert!(b.statuses.len() <= 1 && b.events.len() <= 1, "{b:?}");
            let mut parts: Vec<String> = b.statuses.iter().map(|s| format!("status {}", s.uid)).collect();
            for e in &b.events {
                assert_eq!(e.field_path, "spec.containers{c}");
                parts.push(format!("event {}", e.reason));
            }
            seen.push(parts.join(" + "));
        }
        assert_eq!(seen, ["status a + event Created", "status b + event Started"]);
        // Events alone (no status changed) still go out.
        r.absorb(vec![recorded("a", "Killing")]);
        let Some(AgentMessage { msg: Some(agent_message::Msg::Statuses(b)) }) = r.next_message(10) else {
            panic!("expected a batch")
        };
        assert_eq!((b.statuses.len(), b.events.len()), (0, 1));
        assert!(r.next_message(10).is_none());
        // A reconnect resends statuses, never events.
        r.absorb(vec![recorded("b", "Pulled")]);
        let _ = r.next_message(10);
        r.mark_all_dirty();
        let mut again = 0;
        while let Some(m) = r.next_message(10) {
            let Some(agent_message::Msg::Statuses(b)) = m.msg else { panic!("unexpected {m:?}") };
            assert!(b.events.is_empty(), "{b:?}");
            again += b.statuses.len();
        }
        assert_eq!(again, 2);
        // Bounded: beyond MAX_PENDING_RECORDS events are dropped.
        r.absorb((0..MAX_PENDING_RECORDS + 10).map(|i| recorded(&i.to_string(), "Started")).collect());
        assert_eq!(r.records.len(), MAX_PENDING_RECORDS);
        assert_eq!(r.records_dropped, 10, "the dropped ones are counted");
    }

    #[test]
    fn node_object_has_capacity_addresses_and_endpoint() {
        let mut cfg = AgentConfig::new("n1", vec!["127.0.0.1:7001".into()]);
        cfg.labels.insert("zone".into(), "a".into());
        let n = node_object(&cfg, "10.0.0.5", 10250);
        assert_eq!(n["status"]["capacity"]["pods"], "110");
        assert_eq!(n["status"]["addresses"][0]["address"], "10.0.0.5");
        assert_eq!(n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(n["metadata"]["labels"]["zone"], "a");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
    }
}
