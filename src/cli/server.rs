//! `skiff server`: one control-plane replica.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use skiff_server::{parse_initial_cluster, Server, ServerConfig};
use skiff_store::StoreConfig;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// This replica's member id (a positive integer, unique in the cluster).
    #[arg(long, env = "SKIFF_ID")]
    id: u64,
    /// Where the replica keeps its Raft log and state (RocksDB).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// gRPC address for peers and clients (listened on, and advertised to peers).
    #[arg(long, env = "SKIFF_GRPC_ADDR", default_value = "127.0.0.1:7001")]
    grpc_addr: String,
    /// HTTP address for the API (/healthz, /readyz).
    #[arg(long, env = "SKIFF_API_ADDR", default_value = "127.0.0.1:6441")]
    api_addr: String,
    /// Bootstrap membership `ID=HOST:PORT,...`; used only when the data dir is empty.
    #[arg(long, env = "SKIFF_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    #[arg(long, env = "SKIFF_HEARTBEAT_INTERVAL_MS", default_value_t = StoreConfig::default().heartbeat_interval_ms)]
    heartbeat_interval_ms: u64,
    #[arg(long, env = "SKIFF_ELECTION_TIMEOUT_MIN_MS", default_value_t = StoreConfig::default().election_timeout_min_ms)]
    election_timeout_min_ms: u64,
    #[arg(long, env = "SKIFF_ELECTION_TIMEOUT_MAX_MS", default_value_t = StoreConfig::default().election_timeout_max_ms)]
    election_timeout_max_ms: u64,
    /// Take a snapshot and purge the log every this many entries.
    #[arg(long, env = "SKIFF_SNAPSHOT_EVERY_ENTRIES", default_value_t = StoreConfig::default().snapshot_every_entries)]
    snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot for slightly lagging followers.
    #[arg(long, env = "SKIFF_KEEP_LOGS_AFTER_SNAPSHOT", default_value_t = StoreConfig::default().keep_logs_after_snapshot)]
    keep_logs_after_snapshot: u64,
    /// Revisions of change history kept for watches.
    #[arg(long, env = "SKIFF_HISTORY_REVISIONS", default_value_t = StoreConfig::default().history_revisions)]
    history_revisions: u64,
    /// Deadline of one client request inside the server.
    #[arg(long, env = "SKIFF_REQUEST_TIMEOUT_MS", default_value_t = StoreConfig::default().request_timeout_ms)]
    request_timeout_ms: u64,
    /// Requests admitted at once; more fail fast as overloaded.
    #[arg(long, env = "SKIFF_MAX_INFLIGHT_REQUESTS", default_value_t = StoreConfig::default().max_inflight_requests)]
    max_inflight_requests: usize,
    /// A node whose agent sends no heartbeat for this long becomes Ready=Unknown (unreachable).
    #[arg(long, env = "SKIFF_NODE_LEASE_TTL_MS", default_value_t = 4_000)]
    node_lease_ttl_ms: u64,
    /// Further time before the pods of an unreachable node are deleted (and recreated elsewhere).
    #[arg(long, env = "SKIFF_POD_EVICTION_TIMEOUT_MS", default_value_t = 2_000)]
    pod_eviction_timeout_ms: u64,
    /// A new leader adds this to the lease of every node it has not heard from yet (its agent
    /// may still be streaming to the old leader).
    #[arg(long, env = "SKIFF_NODE_LEADER_GRACE_MS", default_value_t = 10_000)]
    node_leader_grace_ms: u64,
    /// Fraction of a zone's nodes from which, when more than two are silent at once, their pods
    /// are held instead of evicted (as when every node is silent): the leader is then the likelier
    /// one cut off. At 1 only a zone whose nodes (more than two) are all silent is held.
    #[arg(long, env = "SKIFF_NODE_UNHEALTHY_ZONE_THRESHOLD", default_value_t = 0.55, value_parser = parse_zone_threshold)]
    node_unhealthy_zone_threshold: f64,
    /// A zone of more nodes than this, partially disrupted, is not held but slowed: its silent
    /// nodes lose their pods one node at a time, at the secondary eviction rate.
    #[arg(long, env = "SKIFF_NODE_LARGE_ZONE_THRESHOLD", default_value_t = 50)]
    node_large_zone_threshold: usize,
    /// Nodes per second a slowed zone evicts (0: large zones are held as well).
    #[arg(long, env = "SKIFF_NODE_SECONDARY_EVICTION_RATE", default_value_t = 0.01, value_parser = parse_eviction_rate)]
    node_secondary_eviction_rate: f64,
    /// Ports NodePort Services are given, FIRST-LAST.
    #[arg(long, env = "SKIFF_SERVICE_NODE_PORT_RANGE", default_value = "30000-32767", value_parser = skiff_server::parse_port_range)]
    service_node_port_range: std::ops::RangeInclusive<i64>,
}

/// A fraction in (0, 1].
fn parse_zone_threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a fraction in (0, 1]"))
    }
}

/// A number of nodes per second, 0 or more.
fn parse_eviction_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a rate of nodes per second (0 or more)"))
    }
}

pub async fn run(a: ServerArgs) -> anyhow::Result<ExitCode> {
    if a.id == 0 {
        anyhow::bail!("--id must be a positive integer");
    }
    let initial_cluster = a.initial_cluster.as_deref().map(parse_initial_cluster).transpose()?;
    let store = StoreConfig {
        id: a.id,
        addr: a.grpc_addr.clone(),
        data_dir: a.data_dir,
        heartbeat_interval_ms: a.heartbeat_interval_ms,
        election_timeout_min_ms: a.election_timeout_min_ms,
        election_timeout_max_ms: a.election_timeout_max_ms,
        snapshot_every_entries: a.snapshot_every_entries,
        keep_logs_after_snapshot: a.keep_logs_after_snapshot,
        history_revisions: a.history_revisions,
        request_timeout_ms: a.request_timeout_ms,
        max_inflight_requests: a.max_inflight_requests,
    };
    let controllers = skiff_controllers::ControllerConfig {
        lease_ttl_ms: a.node_lease_ttl_ms,
        eviction_timeout_ms: a.pod_eviction_timeout_ms,
        leader_grace_ms: a.node_leader_grace_ms,
        unhealthy_zone_threshold: a.node_unhealthy_zone_threshold,
        large_zone_threshold: a.node_large_zone_threshold,
        secondary_eviction_rate: a.node_secondary_eviction_rate,
        ..Default::default()
    };
    let cfg = ServerConfig {
        store,
        grpc_listen: a.grpc_addr,
        api_listen: a.api_addr,
        initial_cluster,
        controllers,
        node_port_range: a.service_node_port_range,
    };
    let server = Server::start(cfg).await.context("starting the replica")?;
    eprintln!("skiff server {} serving gRPC on {} and HTTP on {}", server.node.id(), server.grpc_addr, server.api_addr);
    wait_for_signal().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zone_thresholds_and_eviction_rates_are_checked() {
        assert_eq!(super::parse_zone_threshold("0.55"), Ok(0.55));
        assert_eq!(super::parse_zone_threshold("1"), Ok(1.0));
        assert_eq!(super::parse_zone_threshold("1.5"), Err("1.5 is not a fraction in (0, 1]".into()));
        assert_eq!(super::parse_zone_threshold("0"), Err("0 is not a fraction in (0, 1]".into()));
        assert_eq!(super::parse_eviction_rate("0.01"), Ok(0.01));
        assert_eq!(super::parse_eviction_rate("0"), Ok(0.0));
        assert_eq!(super::parse_eviction_rate("-1"), Err("-1 is not a rate of nodes per second (0 or more)".into()));
        assert_eq!(super::parse_eviction_rate("inf"), Err("inf is not a rate of nodes per second (0 or more)".into()));
        assert_eq!(super::parse_eviction_rate("fast"), Err("\"fast\" is not a number".into()));
    }
}
