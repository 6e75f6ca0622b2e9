//! `skiff bench`: benchmarks that print figures (never pass/fail tests).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use skiff_proto::etcd::kv_client::KvClient as EtcdKv;
use skiff_proto::kv_client::KvClient;
use tonic::transport::Channel;

use super::Endpoints;
use crate::proc_cluster::ProcCluster;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Write throughput and latency against a running 3-replica cluster (Skiff or etcd).
    Store {
        #[command(flatten)]
        ep: Endpoints,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        /// Distinct keys per writer.
        #[arg(long, default_value_t = 100)]
        keys: usize,
        /// HTTP/2 connections, spread over the endpoints.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// `skiff`, or `etcd` to send the same workload over etcd's v3 KV API.
        #[arg(long, default_value = "skiff")]
        target: String,
    },
    /// Start a 3-replica cluster of this binary, kill the leader repeatedly under a steady
    /// writer, and print the time from each kill to the next acknowledged write.
    Failover {
        /// Leader kills.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Extra flags passed to every `skiff server` (e.g. timing flags).
        #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
        server_args: Vec<String>,
    },
    /// Start a 3-replica cluster of this binary and measure Kubernetes API latency (create,
    /// get, list) under a steady background churn of pod creates and deletes.
    Api {
        /// Seconds of measurement.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Background writes per second (pod creates and deletes, half each).
        #[arg(long, default_value_t = 100)]
        churn: u64,
        /// Objects in the namespace that `list` reads.
        #[arg(long, default_value_t = 100)]
        list_size: usize,
        /// Send the measured requests to the `leader` or a `follower`.
        #[arg(long, default_value = "leader")]
        target: String,
    },
    /// 3 replicas and Docker agents: create pods (the scheduler places them), print create →
    /// Running+Ready latency seen through a watch and each agent's resident memory.
    Pods {
        #[arg(long, default_value_t = 50)]
        pods: usize,
        #[arg(long, default_value_t = 2)]
        agents: usize,
        /// Creates per second (0: all at once). Paced, the figure is each pod's startup
        /// latency, as Kubernetes' density test measures its latency pods; at once, it is
        /// mostly the queue in front of Docker.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// examples/web.yaml on one Docker agent: requests/s and p99 through the node port vs
    /// directly to one pod, and the ratio.
    Proxy {
        /// Seconds per target.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Concurrent request loops.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// The agent's `--proxy-mode` (auto, userspace or iptables).
        #[arg(long, value_enum, default_value = "auto")]
        proxy_mode: super::agent::ProxyModeArg,
        /// Alternating rounds (node port, then the pod) the duration is split into.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
    },
    /// Scheduler throughput: the pure core, then end to end (3 replicas, one process of
    /// `fake` agents, pods created through the API → bound through Raft) for each node count.
    Schedule {
        /// Node counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 5000)]
        pods: usize,
        /// Concurrent creating clients (spread over the replicas).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// End-to-end runs per node count, each on a fresh cluster (runs vary by a tenth or
        /// more on a small shared machine): with more than one, their median, spread and mean.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// CPU per second of the leader, the followers and the fake agents with `nodes` idle fake
    /// nodes (3 replicas, no pods): the per-node cost of heartbeats, streams and the node monitor.
    Idle {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        /// Length of the measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Wait after every node is Ready, before measuring.
        #[arg(long, default_value_t = 10)]
        settle: u64,
    },
    /// Kill an agent running `pods` replicas; time until they are all Running elsewhere
    /// (3 replicas, default lease TTL and eviction timeout, two spare agents).
    NodeFailure {
        #[arg(long, default_value_t = 10)]
        trials: usize,
        #[arg(long, default_value_t = 10)]
        pods: usize,
        /// `docker` or `process`.
        #[arg(long, default_value = "docker")]
        runtime: String,
    },
    /// Internal: one measurement of `bench proxy`, which runs it in a client network namespace.
    #[command(hide = true)]
    ProxyMeasure(super::bench_cluster::Measure),
    /// The web Deployment behind its node port under a paced load while `rollout restart`
    /// runs to completion: total and failed requests, rollout duration.
    Rollout {
        #[arg(long, default_value_t = 10)]
        replicas: u64,
        /// Requests per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// The agent's `--proxy-mode` (auto, userspace or iptables).
        #[arg(long, value_enum, default_value = "auto")]
        proxy_mode: super::agent::ProxyModeArg,
    },
}

/// Runs a benchmark. Ctrl-C or SIGTERM drops it midway, which runs its clean-up (the
/// servers and agents it started are killed, their containers removed) before exiting 130.
pub async fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    tokio::select! {
        r = run_bench(cmd) => r,
        _ = super::server::wait_for_signal() => {
            eprintln!("interrupted: stopping the benchmark's servers, agents and containers");
            Ok(ExitCode::from(130))
        }
    }
}

async fn run_bench(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Store { ep, clients, duration, value_size, keys, connections, target } => {
            store(ep, clients, Duration::from_secs(duration), value_size, keys.max(1), connections.max(1), &target)
                .await
        }
        BenchCmd::Failover { kills, server_args } => failover(kills, server_args).await,
        BenchCmd::Api { duration, churn, list_size, target } => {
            api(Duration::from_secs(duration), churn, list_size, &target).await
        }
        BenchCmd::Pods { pods, agents, rate } => super::bench_cluster::pods(pods, agents, rate).await,
        BenchCmd::Proxy { duration, connections, proxy_mode, rounds } => {
            super::bench_cluster::proxy(duration, connections.max(1), proxy_mode, rounds.max(1)).await
        }
        BenchCmd::ProxyMeasure(m) => {
            super::bench_cluster::measure(m).await;
            Ok(ExitCode::SUCCESS)
        }
        BenchCmd::Rollout { replicas, rate, proxy_mode } => {
            super::bench_cluster::rollout(replicas, rate, proxy_mode).await
        }
        BenchCmd::Schedule { nodes, pods, concurrency, runs } => {
            super::bench_sched::schedule(nodes, pods.max(1), concurrency, runs.max(1)).await
        }
        BenchCmd::Idle { nodes, seconds, settle } => super::bench_sched::idle(nodes.max(1), seconds, settle).await,
        BenchCmd::NodeFailure { trials, pods, runtime } => {
            if runtime != "docker" && runtime != "process" {
                anyhow::bail!("--runtime must be docker or process, not {runtime:?}");
            }
            super::bench_sched::node_failure(trials.max(1), pods.max(1), &runtime).await
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn store(
    ep: Endpoints,
    clients: usize,
    duration: Duration,
    value_size: usize,
    keys: usize,
    connections: usize,
    target: &str,
) -> anyhow::Result<ExitCode> {
    if target != "skiff" && target != "etcd" {
        anyhow::bail!("--target must be skiff or etcd, not {target:?}");
    }
    let channels: Vec<Channel> = (0..connections)
        .map(|i| skiff_proto::client::channel(&ep.endpoints[i % ep.endpoints.len()]))
        .collect::<Result<_, _>>()?;
    let value = vec![b'x'; value_size];
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ch = channels[c % channels.len()].clone();
        let value = value.clone();
        let etcd = target == "etcd";
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = 0u64;
            let mut skiff = KvClient::new(ch.clone());
            let mut etcd_c = EtcdKv::new(ch);
            let mut i = 0usize;
            while Instant::now() < deadline {
                let key = format!("bench/{c}/{}", i % keys);
                i += 1;
                let t0 = Instant::now();
                let ok = if etcd {
                    let req = skiff_proto::etcd::PutRequest {
                        key: key.into_bytes(),
                        value: value.clone(),
                        ..Default::default()
                    };
                    tokio::time::timeout(Duration::from_secs(10), etcd_c.put(req)).await.is_ok_and(|r| r.is_ok())
                } else {
                    let req = skiff_proto::PutRequest { key, value: value.clone(), prev_revision: None };
                    tokio::time::timeout(Duration::from_secs(10), skiff.put(req)).await.is_ok_and(|r| r.is_ok())
                };
                if ok {
                    let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                } else {
                    errors += 1;
                }
            }
            (h, errors)
        }));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (th, e) = t.await?;
        h.add(th)?;
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = h.len() as f64 / secs;
    println!(
        "store bench: target={target} endpoints={} clients={clients} connections={connections} value={value_size}B duration={:.1}s",
        ep.endpoints.join(","),
        secs
    );
    println!("  writes ok={} errors={errors} throughput={rate:.0} writes/s", h.len());
    println!(
        "  latency p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
    println!(
        "RESULT target={target} clients={clients} writes_per_sec={rate:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} errors={errors}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
    );
    Ok(ExitCode::SUCCESS)
}

async fn failover(kills: usize, server_args: Vec<String>) -> anyhow::Result<ExitCode> {
    let bin = std::env::current_exe()?;
    let args: Vec<&str> = server_args.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    let mut cluster = ProcCluster::start(&bin, 3, &args)?;
    cluster.leader(Duration::from_secs(20)).await?;
    let client = Arc::new(cluster.client(Duration::from_secs(10))?);
    // The writer publishes (start, acknowledged) of every acknowledged write.
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<(Instant, Instant)>>(None);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let t0 = Instant::now();
                if client.put(&format!("failover/{}", n % 1000), n.to_string().into_bytes(), None).await.is_ok() {
                    let _ = tx.send(Some((t0, Instant::now())));
                }
            }
        })
    };
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for k in 0..kills {
        let leader = cluster.leader(Duration::from_secs(20)).await?;
        let killed_at = Instant::now();
        cluster.kill(leader)?;
        // When a survivor reports itself leader, and when the next write is acknowledged.
        let elected = async {
            let l = cluster.leader(Duration::from_secs(30)).await;
            (l.ok(), killed_at.elapsed())
        };
        // (Copied out at once: a held watch::Ref would block the writer's send.)
        let acked = async {
            tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|v| v.is_some_and(|(start, _)| start >= killed_at)),
            )
            .await
            .map(|r| r.map(|v| *v))
        };
        let ((new_leader, elected_after), wait) = tokio::join!(elected, acked);
        let acked = match wait {
            Ok(Ok(v)) => v.expect("checked above").1,
            _ => anyhow::bail!("no write acknowledged within 30s of killing leader {leader}"),
        };
        let took = acked.duration_since(killed_at);
        let _ = h.record(took.as_micros().max(1) as u64);
        println!(
            "kill {:>2}: leader {leader} killed, next acknowledged write after {:.0}ms (leader {} reported after {:.0}ms)",
            k + 1,
            took.as_secs_f64() * 1000.0,
            new_leader.map_or("?".to_string(), |l| l.to_string()),
            elected_after.as_secs_f64() * 1000.0
        );
        cluster.restart(leader)?;
        // Let the restarted replica catch up before the next kill.
        let new_leader = cluster.leader(Duration::from_secs(20)).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let target = cluster.status(new_leader).await.map(|s| s.last_applied).unwrap_or(u64::MAX);
            if cluster.status(leader).await.is_ok_and(|s| s.last_applied + 100 >= target && s.role == "follower") {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("restarted member {leader} did not catch up within 30s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(15), writer).await;
    println!(
        "failover bench: kills={kills} kill-to-next-ack p50={:.0}ms p99={:.0}ms max={:.0}ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    println!(
        "RESULT failover kills={kills} p50_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "skiff/busybox:1", "command": ["sleep", "3600"]}]},
    })
}

fn print_hist(what: &str, h: &Histogram<u64>) {
    println!(
        "{what:<8} n={:<6} p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.90) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
}

/// API latency under churn: one client issues create, get and list in turn while another
/// writes `churn` pods per second (creates and deletes) through a different replica.
async fn api(duration: Duration, churn: u64, list_size: usize, target: &str) -> anyhow::Result<ExitCode> {
    use skiff_api::registry::{NAMESPACES, PODS};
    use skiff_client::Client;
    let bin = std::env::current_exe()?;
    let c = ProcCluster::start(&bin, 3, &[])?;
    let leader = c.leader(Duration::from_secs(30)).await?;
    let follower = c.members.iter().map(|m| m.id).find(|id| *id != leader).expect("3 members");
    let measured = if target == "follower" { follower } else { leader };
    let other = c.members.iter().map(|m| m.id).find(|id| *id != measured).expect("3 members");
    let url = |id: u64| format!("http://{}", c.member(id).expect("member").api);
    let client = Client::new(&url(measured), Duration::from_secs(10))?;
    let churner = Client::new(&url(other), Duration::from_secs(10))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(&NAMESPACES, None, "default").await.is_ok() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "namespace default did not appear within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for ns in ["bench", "bench-list", "bench-churn"] {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        client.create(&NAMESPACES, None, &obj).await?;
    }
    for i in 0..list_size {
        client.create(&PODS, Some("bench-list"), &bench_pod(&format!("l-{i}"))).await?;
    }
    println!(
        "cluster: 3 replicas, measured replica {measured} ({target}), churn {churn} writes/s through replica {other}, \
         list of {list_size} pods"
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn_task = {
        let stop = stop.clone();
        let churner = Arc::new(churner);
        tokio::spawn(async move {
            // Writes are issued on a fixed schedule, each in its own task (at most 64 in flight),
            // so slow writes do not lower the offered rate.
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / churn.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let permits = Arc::new(tokio::sync::Semaphore::new(64));
            let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
            let (mut created, mut deleted) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let (c, errors, first_error) = (churner.clone(), errors.clone(), first_error.clone());
                let op = if created <= deleted + 50 {
                    created += 1;
                    Some(created)
                } else {
                    deleted += 1;
                    None
                };
                let del = deleted;
                tokio::spawn(async move {
                    let r = match op {
                        Some(n) => {
                            c.create(&PODS, Some("bench-churn"), &bench_pod(&format!("c-{n}"))).await.map(|_| ())
                        }
                        None => {
                            let p = skiff_client::client::DeleteParams::default();
                            c.delete(&PODS, Some("bench-churn"), &format!("c-{del}"), &p).await.map(|_| ())
                        }
                    };
                    if let Err(e) = r {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e.to_string());
                    }
                    drop(permit);
                });
            }
            let _ = permits.acquire_many(64).await;
            let first = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
            (created + deleted, errors.load(std::sync::atomic::Ordering::Relaxed), first)
        })
    };
    let mut create = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut get = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut list = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let params = skiff_client::client::ListParams::default();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < duration {
        i += 1;
        let name = format!("m-{i}");
        let t = Instant::now();
        client.create(&PODS, Some("bench"), &bench_pod(&name)).await?;
        create.record(t.elapsed().as_micros() as u64)?;
        let t = Instant::now();
        client.get(&PODS, Some("bench"), &name).await?;
        get.record(t.elapsed().as_micros() as u64)?;
        let t = Instant::now();
        let l = client.list(&PODS, Some("bench-list"), &params).await?;
        list.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(l["items"].as_array().map_or(0, Vec::len) == list_size, "list returned the wrong count");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (writes, errors, first_error) = churn_task.await?;
    let secs = start.elapsed().as_secs_f64();
    println!("background churn: {writes} writes in {secs:.1} s ({:.0}/s), {errors} errors", writes as f64 / secs);
    if let Some(e) = first_error {
        println!("first churn error: {e}");
    }
    print_hist("create", &create);
    print_hist("get", &get);
    print_hist("list", &list);
    Ok(ExitCode::SUCCESS)
}
