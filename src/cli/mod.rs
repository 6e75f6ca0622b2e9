//! The `skiff` command line.

pub mod agent;
mod bench;
mod bench_cluster;
mod bench_sched;
mod cluster;
mod kv;
mod logs;
mod server;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use skiff_proto::Client;

#[derive(Parser, Debug)]
#[command(name = "skiff", version, about = "Skiff: a container orchestrator with a Raft-replicated control plane")]
pub struct Cli {
    /// kubeconfig, server and namespace for the Kubernetes-style user commands.
    #[command(flatten)]
    kube: skiff_client::GlobalOpts,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one control-plane replica.
    Server(server::ServerArgs),
    /// Run a node agent: runs the pods the control plane binds to this node.
    Agent(agent::AgentArgs),
    /// Bring up an all-in-one local cluster (Ctrl-C stops it; running it again resumes it).
    Up(up::UpArgs),
    /// Inspect and change control-plane membership.
    Cluster {
        #[command(subcommand)]
        cmd: cluster::ClusterCmd,
    },
    /// Read and write the replicated store directly (etcdctl-style operator tool).
    Kv {
        #[command(subcommand)]
        cmd: kv::KvCmd,
    },
    /// Benchmarks that print figures (store throughput, leader failover, API latency).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Everyday commands against the Kubernetes API (apply, get, describe, delete, scale, logs, rollout, cordon, drain).
    #[command(flatten)]
    User(skiff_client::UserCommand),
}

/// How to reach the control plane over gRPC.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoints {
    /// Comma-separated gRPC addresses of control-plane replicas (host:port).
    #[arg(long, env = "SKIFF_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:7001")]
    pub endpoints: Vec<String>,
    /// Deadline of one request, retries across endpoints included.
    #[arg(long, env = "SKIFF_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl Endpoints {
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.endpoints, Duration::from_millis(self.timeout_ms))?)
    }
}

fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,skiff=info,skiff_server=info,skiff_store=info,skiff_agent=info")
    });
    // Colour only on a terminal: logs redirected to files (`skiff up`'s members, the benches'
    // clusters) stay plain text that grep and the benches' log readers match as written.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let openraft = logs::OpenraftLogs::new(logs::OPENRAFT_REPEAT_INTERVAL);
    let _ = tracing_subscriber::registry().with(filter).with(openraft).with(fmt).try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.cmd {
            Cmd::Server(a) => server::run(a).await,
            Cmd::Up(a) => up::run(a).await,
            Cmd::Agent(a) => agent::run(a).await,
            Cmd::Cluster { cmd } => cluster::run(cmd).await,
            Cmd::Kv { cmd } => kv::run(cmd).await,
            Cmd::Bench { cmd } => bench::run(cmd).await,
            Cmd::User(cmd) => {
                let mut out = std::io::stdout();
                match skiff_client::run(cmd, &cli.kube, &mut out).await {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(e) => {
                        eprintln!("{e}");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
