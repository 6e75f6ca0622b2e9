//! One control-plane replica: opens the replicated store, serves the gRPC services
//! (Raft peers, Kv, Cluster, the agent gateway) and the HTTP endpoints, and stops them cleanly.

mod convert;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod leader;
pub mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use skiff_proto::agent::agent_gateway_server::AgentGatewayServer;
use skiff_proto::cluster_server::ClusterServer;
use skiff_proto::kv_server::KvServer;
use skiff_proto::raft_server::RaftServer;
use skiff_store::{NodeId, StoreConfig, StoreError, StoreNode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Streams a client may reset before this server accepted them, per gRPC connection, before
/// the server closes the connection (h2's rapid-reset guard; its default is 20).
const GRPC_MAX_PENDING_ACCEPT_RESETS: usize = 1024;

pub use transport::GrpcTransport;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid --initial-cluster: {0}")]
    InitialCluster(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one replica needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub store: StoreConfig,
    /// Where the gRPC services listen (peers and clients).
    pub grpc_listen: String,
    /// Where the HTTP API listens.
    pub api_listen: String,
    /// Bootstrap membership, used only when the data directory is empty.
    pub initial_cluster: Option<BTreeMap<NodeId, String>>,
    /// Tunables of the leader-only controllers (lease TTL, eviction timeout, ...).
    pub controllers: skiff_controllers::ControllerConfig,
    /// Node ports Services are given (`--service-node-port-range`).
    pub node_port_range: std::ops::RangeInclusive<i64>,
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<i64>, String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not FIRST-LAST"))?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| format!("{a:?} is not a port"))?,
        b.trim().parse().map_err(|_| format!("{b:?} is not a port"))?,
    );
    if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) || a > b {
        return Err(format!("{s:?} is not a range of ports within 1-65535"));
    }
    Ok(a..=b)
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, ServerError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| ServerError::InitialCluster(format!("{part:?} is not ID=HOST:PORT")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| ServerError::InitialCluster(format!("member id {id:?} is not a positive integer")))?;
        if addr.trim().parse::<SocketAddr>().is_err() && !addr.contains(':') {
            return Err(ServerError::InitialCluster(format!("member {id}: address {addr:?} is not HOST:PORT")));
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(ServerError::InitialCluster(format!("member id {id} appears twice")));
        }
    }
    if out.is_empty() {
        return Err(ServerError::InitialCluster("no members".into()));
    }
    Ok(out)
}

/// A running replica.
pub struct Server {
    pub node: Arc<StoreNode>,
    /// The Kubernetes object layer over `node` (what the API serves and controllers use).
    pub objects: Arc<skiff_apiserver::ObjectStore>,
    pub grpc_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// Node heartbeats received by the agent gateway (in memory; for the node lifecycle controller).
    pub heartbeats: skiff_controllers::HeartbeatTable,
    /// The pods of each node, as the agent gateway streams them (watching while agents are
    /// connected).
    pub pod_hub: Arc<hub::PodHub>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Creates the initial namespaces once a leader can take writes (every replica tries; the
/// create is a compare-and-set, so only the first succeeds). Retries until it works or the
/// replica stops.
async fn bootstrap(objects: Arc<skiff_apiserver::ObjectStore>, mut stop: watch::Receiver<bool>) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match objects.ensure_initial_namespaces().await {
            Ok(()) => return,
            Err(e) => tracing::debug!("initial namespaces not written yet: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(2));
    }
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr: addr.to_string(), source })
}

impl Server {
    /// Binds both listeners (failing fast when a port is taken), starts the store and serves.
    pub async fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        let grpc_listener = bind(&cfg.grpc_listen).await?;
        let api_listener = bind(&cfg.api_listen).await?;
        let grpc_addr =
            grpc_listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.grpc_listen.clone(), source })?;
        let api_addr =
            api_listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.api_listen.clone(), source })?;
        let transport = Arc::new(GrpcTransport::default());
        let node = StoreNode::start(cfg.store.clone(), transport, cfg.initial_cluster.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let objects =
            Arc::new(skiff_apiserver::ObjectStore::new(node.clone()).with_node_port_range(cfg.node_port_range.clone()));
        let heartbeats = skiff_controllers::HeartbeatTable::new();
        // Agents' events (Pulled, Started, Unhealthy, ...): written as `kubelet`, unfenced
        // (they are observations, not decisions), by one task per replica.
        let (agent_events, agent_events_sink) = skiff_controllers::EventRecorder::new(
            Arc::new(leader::StoreApi(objects.clone())) as Arc<dyn skiff_controllers::ObjectApi>,
            stop_rx.clone(),
        );
        let agent_events_task = tokio::spawn(agent_events_sink);
        let agent_max = skiff_proto::agent::MAX_AGENT_MESSAGE_BYTES;

        let max = transport::MAX_RAFT_MESSAGE_BYTES;
        let client_max = skiff_proto::client::MAX_MESSAGE_BYTES;
        let pod_hub = hub::PodHub::start(objects.clone());
        let grpc = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(1024)
            .tcp_nodelay(true)
            // openraft 0.9 gives each AppendEntries the heartbeat interval (`StoreConfig`) to
            // answer and cancels it after that: under a saturated CPU, cancelled RPCs queue up as
            // streams reset before this server accepted them. At h2's default limit of 20 the
            // server closes the whole connection (GOAWAY), every RPC on it fails, the leader
            // backs off and the followers elect: a storm of elections under load (terms past
            // 50 in one `bench schedule` run). The port is the cluster's own (replicas and
            // agents), so the limit is raised, not removed.
            .http2_max_pending_accept_reset_streams(Some(GRPC_MAX_PENDING_ACCEPT_RESETS))
            .add_service(
                RaftServer::new(grpc::RaftSvc(node.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                KvServer::new(grpc::KvSvc(node.clone()))
                    .max_decoding_message_size(client_max)
                    .max_encoding_message_size(client_max),
            )
            .add_service(ClusterServer::new(grpc::ClusterSvc(node.clone())))
            .add_service(
                AgentGatewayServer::new(gateway::GatewaySvc {
                    node: node.clone(),
                    objects: objects.clone(),
                    heartbeats: heartbeats.clone(),
                    pod_hub: pod_hub.clone(),
                    service_hub: hub::ServiceHub::start(objects.clone()),
                    events: agent_events.for_component("kubelet"),
                })
                .max_decoding_message_size(agent_max)
                .max_encoding_message_size(agent_max),
            );
        let mut rx = stop_rx.clone();
        let grpc_task = tokio::spawn(async move {
            // With a caller-supplied listener the builder's tcp_nodelay is not applied: without
            // it Nagle and delayed ACKs add ~40 ms to every forwarded request.
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            if let Err(e) = grpc
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::error!("gRPC server: {e}");
            }
        });
        let logs = Arc::new(skiff_apiserver::AgentLogs::new(objects.clone()));
        let api = Arc::new(skiff_apiserver::ApiServer { store: objects.clone(), logs: Some(logs) });
        let app = http::router(node.clone()).merge(skiff_apiserver::router(api));
        let mut rx = stop_rx.clone();
        let http_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(api_listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!("HTTP server: {e}");
            }
        });
        let bootstrap_task = tokio::spawn(bootstrap(objects.clone(), stop_rx.clone()));
        let leader_task = tokio::spawn(leader::run(
            node.clone(),
            objects.clone(),
            heartbeats.clone(),
            cfg.controllers.clone(),
            stop_rx.clone(),
        ));
        tracing::info!(id = cfg.store.id, %grpc_addr, %api_addr, "replica serving");
        Ok(Server {
            node,
            objects,
            heartbeats,
            pod_hub,
            grpc_addr,
            api_addr,
            stop,
            tasks: vec![grpc_task, http_task, bootstrap_task, leader_task, agent_events_task],
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Let the leader loops notice before Raft goes away under them.
        tokio::task::yield_now().await;
        self.node.shutdown().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }
}
