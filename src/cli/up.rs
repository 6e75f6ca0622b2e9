//! `skiff up`: an all-in-one local cluster in one process, for development and demos.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use skiff_server::{Server, ServerConfig};
use skiff_store::StoreConfig;

use super::agent::RuntimeKind;

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the cluster keeps its state; a second `skiff up` on it resumes the cluster.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "./skiff-data")]
    data_dir: PathBuf,
    /// Control-plane replicas: 1, 3 or 5.
    #[arg(long, default_value_t = 1)]
    replicas: u64,
    /// Host the cluster listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// gRPC port of replica 1; replica N uses this + N - 1.
    #[arg(long, default_value_t = 7001)]
    grpc_port: u16,
    /// HTTP API port of replica 1; replica N uses this + N - 1.
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Port of the in-process node agent's log endpoint.
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,
    /// Start no node agent (control plane only).
    #[arg(long)]
    no_agent: bool,
}

pub async fn run(a: UpArgs) -> anyhow::Result<ExitCode> {
    if ![1, 3, 5].contains(&a.replicas) {
        anyhow::bail!("--replicas must be 1, 3 or 5, not {}", a.replicas);
    }
    let grpc = |i: u64| format!("{}:{}", a.host, a.grpc_port as u64 + i - 1);
    let api = |i: u64| format!("{}:{}", a.host, a.api_port as u64 + i - 1);
    let members: BTreeMap<u64, String> = (1..=a.replicas).map(|i| (i, grpc(i))).collect();
    let mut servers = Vec::new();
    for i in 1..=a.replicas {
        let store = StoreConfig {
            id: i,
            addr: grpc(i),
            data_dir: a.data_dir.join(format!("replica-{i}")),
            ..StoreConfig::default()
        };
        let cfg = ServerConfig {
            store,
            grpc_listen: grpc(i),
            api_listen: api(i),
            // The last replica bootstraps the cluster, once every other one listens: bootstrapping
            // campaigns at once, and a vote request to a replica not yet started is logged by
            // openraft as an error. The others join when it reaches them.
            initial_cluster: (i == a.replicas).then(|| members.clone()),
            controllers: Default::default(),
            node_port_range: 30000..=32767,
        };
        servers.push(Server::start(cfg).await.with_context(|| format!("starting replica {i}"))?);
    }
    let endpoints: Vec<String> = members.values().cloned().collect();
    let kubeconfig = std::path::absolute(a.data_dir.join("kubeconfig")).context("resolving the data directory")?;
    skiff_client::write_kubeconfig(&kubeconfig, &format!("http://{}", servers[0].api_addr), "skiff")
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    println!("skiff: {} control-plane replica(s) up, state in {}", a.replicas, a.data_dir.display());
    for s in &servers {
        println!("  replica {}: gRPC {}  Kubernetes API http://{}", s.node.id(), s.grpc_addr, s.api_addr);
    }
    let mut agent = None;
    if !a.no_agent {
        let name = super::agent::hostname();
        let dir = a.data_dir.join("agent");
        let listen = format!("{}:{}", a.host, a.agent_port);
        let docker = super::agent::start(RuntimeKind::Docker, &name, endpoints.clone(), listen.clone(), &dir).await;
        let (kind, started) = match docker {
            Ok(ag) => ("docker", ag),
            Err(e) => {
                tracing::info!("Docker is not usable ({e:#}); the agent runs pods as processes");
                let ag = super::agent::start(RuntimeKind::Process, &name, endpoints.clone(), listen, &dir)
                    .await
                    .context("starting the node agent")?;
                ("process", ag)
            }
        };
        println!("  node {name}: agent with the {kind} runtime, logs on http://{}", started.http_addr);
        agent = Some(started);
    }
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("export SKIFF_ENDPOINTS={}", endpoints.join(","));
    println!("Press Ctrl-C to stop.");
    super::server::wait_for_signal().await;
    println!("stopping");
    if let Some(ag) = agent {
        ag.shutdown().await;
    }
    for s in servers {
        s.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
