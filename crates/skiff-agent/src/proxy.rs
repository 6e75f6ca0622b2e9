//! The node's service proxy: a TCP listener per NodePort Service port, forwarding each connection to a ready endpoint, round-robin.
//!
//! [`ServiceProxy::sync`] takes the full desired set of `v1 Service` and `v1 Endpoints` objects
//! (JSON) and is idempotent: it opens a listener on `<bind_address>:<nodePort>` for every TCP
//! port with a `nodePort` of every Service of type `NodePort` or `LoadBalancer`, closes the
//! listeners no longer wanted, and publishes each listener's backends (the READY addresses of the
//! Service's Endpoints, with the Endpoints port of the same name) through a `watch` channel, so
//! an unchanged set costs a comparison and the next accepted connection sees a new set at once.
//!
//! Each accepted connection picks the next backend round-robin; a backend that refuses or does
//! not answer within `connect_timeout` is skipped for the next one, so a pod that just died costs
//! latency, not a failed request. Bytes are then copied both ways with
//! `tokio::io::copy_bidirectional` (half-closes propagate). A connection lives in its own task:
//! it survives its backend leaving the Endpoints and its listener being closed, and ends when
//! either side closes. Concurrent connections are bounded (`max_connections`, over all
//! listeners); at the bound a listener keeps at most one accepted client waiting for a free
//! slot and accepts no more, so the kernel's backlog holds the rest (nothing is refused or
//! reset). UDP ports are ignored. Listeners and connections run on the proxy's own
//! single-threaded runtime (its `service-proxy` thread), not on the agent's.
//!
//! With [`ProxyMode::Iptables`] the same wanted set is programmed into netfilter instead (see
//! [`iptables`]): the kernel forwards, no userspace copy; a connection an endpoint refuses is
//! retried by its client's own SYN retransmission, after the agent has deleted its conntrack
//! entry and taken the endpoint out of the rules (one second late rather than failed).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

pub mod iptables;
mod netlink;

/// How node ports are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// A listener per node port in the agent; each connection is copied through it, and an
    /// endpoint that refuses is skipped for the next.
    #[default]
    Userspace,
    /// netfilter DNAT rules loaded with `iptables-restore` (needs root and `iptables`).
    Iptables,
}

impl ProxyMode {
    /// The flag value (`--proxy-mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Userspace => "userspace",
            ProxyMode::Iptables => "iptables",
        }
    }
}

impl std::str::FromStr for ProxyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "userspace" => Ok(ProxyMode::Userspace),
            "iptables" => Ok(ProxyMode::Iptables),
            other => Err(format!("unknown proxy mode {other:?} (expected userspace or iptables)")),
        }
    }
}

/// Tunables of the service proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub mode: ProxyMode,
    /// Names this agent's iptables chains (with the bind address); unused in userspace mode.
    pub node_name: String,
    /// Address the node ports listen on (default `0.0.0.0`, every interface).
    pub bind_address: IpAddr,
    /// How long one connection attempt to a backend may take before the next backend is tried.
    pub connect_timeout: Duration,
    /// Concurrent proxied connections over all listeners.
    pub max_connections: usize,
    /// Iptables mode: the agent's pod bridge and subnet (`("skiff0", "10.222.0.0/16")`);
    /// connections forwarded into it from elsewhere keep their client's address (see
    /// [`iptables::Snat`]). `None`: every forwarded connection is masqueraded.
    pub pod_bridge: Option<(String, String)>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: ProxyMode::Userspace,
            node_name: String::new(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            connect_timeout: Duration::from_secs(1),
            max_connections: 4096,
            pod_bridge: None,
        }
    }
}

/// A node port that could not be opened (retried on the next [`ServiceProxy::sync`]).
#[derive(Debug)]
pub struct BindError {
    pub node_port: u16,
    /// `namespace/name` of the Service.
    pub service: String,
    pub error: io::Error,
}

type Backends = Arc<Vec<SocketAddr>>;

struct Listener {
    service: String,
    backends: watch::Sender<Backends>,
    task: JoinHandle<()>,
}

/// Forwards node ports to Service endpoints. Must be used inside a tokio runtime. Dropping it
/// closes every listener; connections in progress continue until they end.
pub struct ServiceProxy {
    config: ProxyConfig,
    listeners: Mutex<BTreeMap<u16, Listener>>,
    connections: Arc<Semaphore>,
    /// Set in iptables mode, where there are no listeners.
    kernel: Option<iptables::Iptables>,
    /// Userspace mode: the thread whose runtime runs the listeners and connections.
    io: Option<IoThread>,
}

/// A single-threaded runtime on its own thread for the userspace proxy's sockets. A proxied
/// request is a handful of tiny socket events; spread over the agent's multi-threaded runtime
/// each one could wake another idle thread (a sixth of the agent's CPU went to sleeping in and
/// waking from `epoll_wait`), while one busy thread collects many ready sockets per wait.
struct IoThread {
    handle: tokio::runtime::Handle,
    /// Dropped to stop the runtime (its tasks: listeners and open connections, are dropped).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoThread {
    fn start() -> io::Result<IoThread> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("service-proxy".into()).spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(IoThread { handle, _stop: stop })
    }
}

/// What one node port should forward to.
struct Wanted {
    service: String,
    backends: Vec<SocketAddr>,
}

fn key_of(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"].as_str().filter(|s| !s.is_empty()).unwrap_or("default").to_string(),
        obj["metadata"]["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn is_tcp(port: &Value) -> bool {
    port["protocol"].as_str().is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
}

/// The ready backends of Service port `svc_port` in `endpoints` (sorted, deduplicated).
fn backends_for(svc_port: &Value, endpoints: Option<&Value>) -> Vec<SocketAddr> {
    let name = svc_port["name"].as_str().unwrap_or("");
    let mut out = Vec::new();
    for subset in endpoints.and_then(|e| e["subsets"].as_array()).into_iter().flatten() {
        let Some(port) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == name && is_tcp(p))
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = addr["ip"].as_str().and_then(|ip| ip.parse::<IpAddr>().ok()) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// nodePort → what it forwards to, for the given objects.
fn wanted(services: &[Value], endpoints: &[Value]) -> BTreeMap<u16, Wanted> {
    let eps: HashMap<(String, String), &Value> = endpoints.iter().map(|e| (key_of(e), e)).collect();
    let mut out = BTreeMap::new();
    for svc in services {
        let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP");
        if ty != "NodePort" && ty != "LoadBalancer" {
            continue;
        }
        let key = key_of(svc);
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let Some(node_port) = port["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
            else {
                continue;
            };
            if !is_tcp(port) {
                continue;
            }
            let backends = backends_for(port, eps.get(&key).copied());
            let service = format!("{}/{}", key.0, key.1);
            if let Some(prev) = out.insert(node_port, Wanted { service: service.clone(), backends }) {
                tracing::warn!(node_port, service, other = prev.service, "node port claimed twice; last one wins");
            }
        }
    }
    out
}

impl ServiceProxy {
    pub fn new(config: ProxyConfig) -> Self {
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let kernel = (config.mode == ProxyMode::Iptables).then(|| {
            iptables::Iptables::start(
                config.bind_address,
                iptables::tag(&config.node_name, config.bind_address),
                config.pod_bridge.clone(),
            )
        });
        let io = match config.mode {
            ProxyMode::Iptables => None,
            ProxyMode::Userspace => IoThread::start()
                .map_err(
                    |e| tracing::warn!(error = %e, "service proxy: no thread of its own; using the agent's runtime"),
                )
                .ok(),
        };
        ServiceProxy { config, listeners: Mutex::default(), connections, kernel, io }
    }

    /// Make the listeners match `services` and their `endpoints` (the full desired set, every
    /// namespace). Idempotent and cheap when nothing changed. Returns the node ports that could
    /// not be opened (e.g. taken by another process); the next call retries them.
    pub fn sync(&self, services: &[Value], endpoints: &[Value]) -> Vec<BindError> {
        let wanted = wanted(services, endpoints);
        if let Some(kernel) = &self.kernel {
            kernel.set(wanted.into_iter().map(|(port, w)| (port, w.backends)).collect());
            return Vec::new();
        }
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|port, l| {
            let keep = wanted.contains_key(port) && !l.task.is_finished();
            if !keep {
                tracing::info!(node_port = port, service = l.service, "closing node port");
                l.task.abort();
            }
            keep
        });
        let mut errors = Vec::new();
        for (port, w) in wanted {
            if let Some(l) = listeners.get_mut(&port) {
                l.service = w.service;
                let backends = w.backends;
                l.backends.send_if_modified(|cur| {
                    if **cur == backends {
                        return false;
                    }
                    tracing::debug!(node_port = port, service = l.service, ?backends, "backends changed");
                    *cur = Arc::new(backends);
                    true
                });
                continue;
            }
            let addr = SocketAddr::new(self.config.bind_address, port);
            let listener = match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(%addr, service = w.service, %error, "cannot open node port");
                    errors.push(BindError { node_port: port, service: w.service, error });
                    continue;
                }
            };
            tracing::info!(%addr, service = w.service, backends = w.backends.len(), "opened node port");
            let (tx, rx) = watch::channel(Arc::new(w.backends));
            let accept =
                accept_loop(listener, rx, self.connections.clone(), self.config.connect_timeout, w.service.clone());
            let task = match &self.io {
                Some(io) => io.handle.spawn(accept),
                None => tokio::spawn(accept),
            };
            listeners.insert(port, Listener { service: w.service, backends: tx, task });
        }
        errors
    }

    /// The node ports currently open, ascending (in iptables mode: those forwarded, i.e. with
    /// ready endpoints).
    pub fn node_ports(&self) -> Vec<u16> {
        if let Some(kernel) = &self.kernel {
            return kernel.table().into_iter().filter(|(_, b)| !b.is_empty()).map(|(p, _)| p).collect();
        }
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Whether forwarding matches the last [`ServiceProxy::sync`]: always in userspace mode
    /// (listeners change within `sync`); in iptables mode once the rules are loaded.
    pub fn is_synced(&self) -> bool {
        self.kernel.as_ref().is_none_or(iptables::Iptables::is_loaded)
    }

    /// The backends a node port currently forwards to.
    pub fn backends(&self, node_port: u16) -> Option<Vec<SocketAddr>> {
        if let Some(kernel) = &self.kernel {
            return kernel.table().remove(&node_port);
        }
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.get(&node_port).map(|l| l.backends.borrow().as_ref().clone())
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        for l in self.listeners.lock().unwrap_or_else(|e| e.into_inner()).values() {
            l.task.abort();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    backends: watch::Receiver<Backends>,
    connections: Arc<Semaphore>,
    connect_timeout: Duration,
    service: String,
) {
    // Registered with the runtime this task runs on.
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(service, error = %e, "service proxy: cannot register the node port's listener");
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // At the bound, this client waits for a slot and the listener accepts no more meanwhile:
        // the kernel backlog holds new clients.
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                tracing::debug!(service, "connection limit reached; waiting for a free slot");
                let Ok(p) = connections.clone().acquire_owned().await else { return };
                p
            }
            Err(TryAcquireError::Closed) => return,
        };
        let set = backends.borrow().clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = permit;
            forward(client, peer, &set, start, connect_timeout, &service).await;
        });
    }
}

/// Connect to the first backend that answers, starting at `start` (round-robin), and copy.
async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    backends: &[SocketAddr],
    start: usize,
    connect_timeout: Duration,
    service: &str,
) {
    if backends.is_empty() {
        tracing::debug!(service, %peer, "no ready endpoints; closing connection");
        return;
    }
    let _ = client.set_nodelay(true);
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => tracing::trace!(service, %peer, %backend, up, down, "connection done"),
                    Err(e) => tracing::debug!(service, %peer, %backend, error = %e, "connection ended with error"),
                }
                return;
            }
            Ok(Err(e)) => tracing::debug!(service, %backend, error = %e, "backend refused; trying the next"),
            Err(_) => tracing::debug!(service, %backend, "backend connect timed out; trying the next"),
        }
    }
    tracing::warn!(service, %peer, backends = backends.len(), "no endpoint accepted the connection");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wanted_uses_ready_addresses_of_the_named_port() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "nodePort": 30080},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
            {"name": "none", "port": 81}]}});
        let clusterip = json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"ports": [
            {"port": 5432, "nodePort": 30432}]}});
        let ep = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.3"}],
             "ports": [{"name": "http", "port": 8080}, {"name": "other", "port": 9}]}]});
        let w = wanted(&[svc, clusterip], &[ep]);
        assert_eq!(w.keys().copied().collect::<Vec<_>>(), [30080]);
        let b: Vec<String> = w[&30080].backends.iter().map(|a| a.to_string()).collect();
        assert_eq!(b, ["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert_eq!(w[&30080].service, "default/web");
    }
}
