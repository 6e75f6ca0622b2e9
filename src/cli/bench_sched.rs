//! `skiff bench schedule|idle|node-failure`: scheduler throughput (the pure core, and end to
//! end through Raft with `fake` nodes), what idle fake nodes cost the control plane, and the
//! time to replace the pods of a killed node. They print figures, never pass/fail.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use skiff_api::registry::{DEPLOYMENTS, EVENTS, NAMESPACES, NODES, PODS};
use skiff_api::PatchType;
use skiff_client::{Client, DeleteParams, ListParams};
use skiff_scheduler::harness::{node, pod, Harness};
use skiff_scheduler::{ClusterSnapshot, Scheduler};
use tokio_stream::StreamExt;

use super::bench_cluster::{condition_true, cpu_time, hist, ms, wait_until};
use crate::proc_cluster::{ProcAgent, ProcCluster};

/// CPU time of the leader, the followers (summed), the agent process and this bench process
/// (the creating clients and the watch).
fn cluster_cpu(cluster: &ProcCluster, leader: u64, agent: &ProcAgent) -> [Option<Duration>; 4] {
    let followers: Option<Duration> =
        cluster.members.iter().filter(|m| m.id != leader).map(|m| cpu_time(cluster.member_pid(m.id))).sum();
    [cpu_time(cluster.member_pid(leader)), followers, cpu_time(agent.pid()), cpu_time(Some(std::process::id()))]
}

async fn ready_nodes(c: &Client, prefix: &str) -> Option<usize> {
    let l = c.list(&NODES, None, &ListParams::default()).await.ok()?;
    Some(
        l["items"]
            .as_array()?
            .iter()
            .filter(|n| n.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|s| s.starts_with(prefix)))
            .filter(|n| condition_true(n, "Ready"))
            .count(),
    )
}

// ---------------------------------------------------------------------------------------
// schedule

/// The pure core: `pods` pending pods (replica sets of 10, no requests beyond the defaults
/// of the fake nodes) over `nodes` nodes of the fake runtime's shape, in one pass.
fn pure_core(nodes: usize, pods: usize) -> (Duration, usize) {
    let mut h = Harness::new();
    for i in 0..nodes {
        h.add_node(node(&format!("fake-{}", i + 1)).cpu("2").memory("24Gi").max_pods(110));
    }
    for i in 0..pods {
        h.add_pod(pod(&format!("sp-{i}")).owner(&format!("rs-{}", i / 10)).cpu("10m").memory("16Mi"));
    }
    let scheduler = Scheduler::new(h.config.clone());
    let start = Instant::now();
    let snapshot = ClusterSnapshot::new(&h.nodes, &h.pods);
    let decisions = scheduler.schedule(&snapshot);
    let took = start.elapsed();
    (took, decisions.iter().filter(|d| d.node().is_some()).count())
}

pub async fn schedule(
    node_counts: Vec<usize>,
    pods: usize,
    concurrency: usize,
    runs: usize,
) -> anyhow::Result<ExitCode> {
    let mut results = Vec::new();
    for &nodes in &node_counts {
        let (took, bound) = pure_core(nodes, pods);
        let rate = pods as f64 / took.as_secs_f64();
        println!(
            "pure core: {pods} pending pods over {nodes} nodes in one pass: {:.1} ms ({bound} bound) = {rate:.0} pods/s",
            took.as_secs_f64() * 1e3
        );
        results.push(format!("pure_{nodes}_pods_per_sec={rate:.0}"));
    }
    for &nodes in &node_counts {
        let mut rates = Vec::with_capacity(runs);
        for run in 1..=runs {
            if runs > 1 {
                println!("e2e run {run} of {runs} at {nodes} nodes");
            }
            rates.push(schedule_e2e(nodes, pods, concurrency).await?);
        }
        let s = RateSummary::of(&rates);
        results.push(format!("e2e_{nodes}_pods_per_sec={:.0}", s.median));
        if runs > 1 {
            println!(
                "e2e at {nodes} nodes over {runs} runs: median {:.0} pods/s, min {:.0}, max {:.0}, mean {:.0} (runs: {})",
                s.median,
                s.min,
                s.max,
                s.mean,
                rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
            );
            results.push(format!("e2e_{nodes}_min={:.0} e2e_{nodes}_max={:.0}", s.min, s.max));
        }
    }
    println!("RESULT schedule pods={pods} {}", results.join(" "));
    Ok(ExitCode::SUCCESS)
}

/// The median (of an even count, the mean of the middle two), least, greatest and mean of some
/// runs' rates.
#[derive(Debug, PartialEq)]
struct RateSummary {
    median: f64,
    min: f64,
    max: f64,
    mean: f64,
}

impl RateSummary {
    fn of(rates: &[f64]) -> RateSummary {
        let mut sorted = rates.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return RateSummary { median: 0.0, min: 0.0, max: 0.0, mean: 0.0 };
        }
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        RateSummary { median, min: sorted[0], max: sorted[n - 1], mean: sorted.iter().sum::<f64>() / n as f64 }
    }
}

/// 3 replicas and one `skiff agent --runtime fake --fake-nodes N` process, every node Ready:
/// the cluster, its leader, a client of the leader, the agent and how long the nodes took.
async fn fake_cluster(nodes: usize) -> anyhow::Result<(ProcCluster, u64, Client, ProcAgent, Duration)> {
    let bin = std::env::current_exe()?;
    let cluster = ProcCluster::start(&bin, 3, &[])?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let lc = Client::new(&format!("http://{}", cluster.member(leader).expect("leader").api), Duration::from_secs(30))?;
    wait_until(Duration::from_secs(30), "namespace default", || async {
        lc.get(&NAMESPACES, None, "default").await.is_ok().then_some(())
    })
    .await?;
    let started = Instant::now();
    let agent = cluster.spawn_agent("fake", "fake", &["--fake-nodes", &nodes.to_string(), "--port", "0"])?;
    let timeout = Duration::from_secs(60 + nodes as u64 / 20);
    let mut last = 0;
    let deadline = Instant::now() + timeout;
    loop {
        let n = ready_nodes(&lc, "fake-").await.unwrap_or(0);
        if n >= nodes {
            break;
        }
        if n != last {
            last = n;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {last} of {nodes} fake nodes Ready after {timeout:?}; agent log:\n{}",
            agent.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((cluster, leader, lc, agent, started.elapsed()))
}

/// What `nodes` idle fake nodes cost: once they are all Ready and `settle` has passed, the CPU
/// time per second of the leader, the followers and the fake agents' process over `seconds`
/// (heartbeats, gateway streams, the node monitor; no pods).
pub async fn idle(nodes: usize, seconds: u64, settle: u64) -> anyhow::Result<ExitCode> {
    let (cluster, leader, _lc, agent, ready_after) = fake_cluster(nodes).await?;
    println!(
        "idle: 3 replicas, {nodes} fake nodes Ready after {:.1} s; measuring {seconds} s after {settle} s more",
        ready_after.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let cpu0 = cluster_cpu(&cluster, leader, &agent);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
    let cpu1 = cluster_cpu(&cluster, leader, &agent);
    let secs = t0.elapsed().as_secs_f64();
    if cluster.leader(Duration::from_secs(5)).await.ok() != Some(leader) {
        println!("  note: leadership moved from replica {leader} during the run (an election)");
    }
    let per_sec = |i: usize| match (cpu0[i], cpu1[i]) {
        (Some(a), Some(b)) => format!("{:.0}", b.saturating_sub(a).as_secs_f64() * 1e3 / secs),
        _ => "?".into(),
    };
    println!(
        "  CPU ms per second: leader {}  followers (together) {}  fake agents {}",
        per_sec(0),
        per_sec(1),
        per_sec(2)
    );
    println!(
        "RESULT idle nodes={nodes} leader_ms_per_s={} followers_ms_per_s={} agents_ms_per_s={}",
        per_sec(0),
        per_sec(1),
        per_sec(2)
    );
    drop(agent);
    Ok(ExitCode::SUCCESS)
}

/// What the e2e bench reads of a watched pod.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Placement {
    metadata: PlacementMeta,
    spec: PlacementSpec,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PlacementMeta {
    name: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PlacementSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

/// 3 replicas, one `skiff agent --runtime fake --fake-nodes N` process; `pods` pods created
/// as fast as `concurrency` clients spread over the replicas can; returns pods/s from the
/// first create to the last binding.
async fn schedule_e2e(nodes: usize, pods: usize, concurrency: usize) -> anyhow::Result<f64> {
    let (cluster, leader, lc, agent, ready_after) = fake_cluster(nodes).await?;
    let clients: Vec<Client> = cluster
        .members
        .iter()
        .map(|m| Client::new(&format!("http://{}", m.api), Duration::from_secs(30)))
        .collect::<Result<_, _>>()?;
    println!(
        "e2e: 3 replicas, {nodes} fake nodes Ready after {:.1} s; creating {pods} pods with {concurrency} clients",
        ready_after.as_secs_f64()
    );
    let ns = "sched-bench";
    lc.create(&NAMESPACES, None, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;

    // Binding times, from a watch on the leader.
    // Each event decoded into the two fields read (no `Value` tree): the bench's own CPU is
    // the cluster's too on one machine.
    let mut watch = lc.watch_as::<Placement>(&PODS, Some(ns), &ListParams::default(), None).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    // Every change of a pod (create, binding, the agents' statuses): writes per pod.
    let pod_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = pod_changes.clone();
    let watcher = tokio::spawn(async move {
        while let Some(ev) = watch.next().await {
            let Ok(ev) = ev else { break };
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bound = ev.object.spec.node_name.is_some_and(|n| !n.is_empty());
            if bound && tx.send((ev.object.metadata.name, Instant::now())).is_err() {
                break;
            }
        }
    });

    let created: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let rev0 = store_revision(&lc).await?;
    let cpu0 = cluster_cpu(&cluster, leader, &agent);
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let c = clients[w % clients.len()].clone();
        let (next, created) = (next.clone(), created.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pods {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("sp-{i}");
                let body = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "sched-bench", "rs": (i / 10).to_string()}},
                    "spec": {"containers": [{"name": "c", "image": "skiff/busybox:1",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                });
                created.lock().unwrap_or_else(|p| p.into_inner()).insert(name, Instant::now());
                // The created pod is not read: skipped, not decoded.
                c.create_as::<serde::de::IgnoredAny>(&PODS, Some(ns), &body)
                    .await
                    .with_context(|| format!("creating pod sp-{i}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let create_secs = t0.elapsed().as_secs_f64();
    let mut latency = hist();
    let mut bound: HashSet<String> = HashSet::new();
    let mut first_bound: Option<Instant> = None;
    let mut last_bound = t0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120 + pods as u64 / 50);
    while bound.len() < pods {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, at))) => {
                if bound.insert(name.clone()) {
                    first_bound.get_or_insert(at);
                    last_bound = last_bound.max(at);
                    if let Some(c) = created.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
                        latency.record(at.saturating_duration_since(*c).as_micros().max(1) as u64)?;
                    }
                }
            }
            _ => anyhow::bail!("only {} of {pods} pods bound in time", bound.len()),
        }
    }
    let cpu1 = cluster_cpu(&cluster, leader, &agent);
    let rev1 = store_revision(&lc).await?;
    watcher.abort();
    // An election during the run (a replica starved of CPU long enough to miss the leader's
    // heartbeats) moves the scheduler and controllers: say so, the CPU split is then mixed.
    if let Ok(now) = cluster.leader(Duration::from_secs(5)).await {
        if now != leader {
            println!("  note: leadership moved from replica {leader} to {now} during the run (an election under load)");
        }
    }
    let total = last_bound.duration_since(t0).as_secs_f64();
    let sched_window = last_bound.duration_since(first_bound.unwrap_or(t0)).as_secs_f64();
    let rate = pods as f64 / total;
    println!(
        "  {pods} creates took {create_secs:.2} s ({:.0} creates/s); all bound {total:.2} s after the first create",
        pods as f64 / create_secs
    );
    println!(
        "  create -> bound throughput: {rate:.0} pods/s   (binding window first->last bound {sched_window:.2} s: {:.0} pods/s)",
        pods as f64 / sched_window.max(1e-3)
    );
    println!(
        "  create -> bound latency: p50={:.0} ms  p99={:.0} ms  max={:.0} ms",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    // CPU per pod (the machine's cores are what limits the rate on a small machine): it
    // compares builds more steadily than the rate, which also moves with scheduling noise.
    let per_pod = |i: usize| match (cpu0[i], cpu1[i]) {
        (Some(a), Some(b)) => format!("{:.2}", b.saturating_sub(a).as_secs_f64() * 1e3 / pods as f64),
        _ => "?".into(),
    };
    println!(
        "  CPU ms per pod, first create -> last bound: leader {}  followers (together) {}  fake agents {}  \
         bench clients {}",
        per_pod(0),
        per_pod(1),
        per_pod(2),
        per_pod(3)
    );
    // What the cluster wrote meanwhile (each transaction is one revision): the pods' own
    // changes, and everything else (events above all; events are best effort, and a full
    // recorder queue drops them).
    let writes = rev1.saturating_sub(rev0) as f64 / pods as f64;
    let pod_writes = pod_changes.load(std::sync::atomic::Ordering::Relaxed) as f64 / pods as f64;
    println!(
        "  store transactions per pod, first create -> last bound: {writes:.2} ({pod_writes:.2} of them changes of \
         the pod)"
    );
    // Counting is reporting only: a failed list (a very large run) does not fail the bench.
    match event_reasons(&lc, ns, pods).await {
        Ok(just_after) => {
            println!("  events per pod in the namespace just after: {}", just_after.0);
            // The agents' last events are still on their way: count again once no more
            // arrive (the count stays the same for a second), within 10 s.
            let mut last = just_after;
            let settle_by = Instant::now() + Duration::from_secs(10);
            while Instant::now() < settle_by {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Ok(now) = event_reasons(&lc, ns, pods).await else { break };
                let settled = now.1 == last.1;
                last = now;
                if settled {
                    break;
                }
            }
            println!("  events per pod once settled: {} ({} in all)", last.0, last.1);
        }
        Err(e) => println!("  events not counted: {e:#}"),
    }
    // A count short of 4 per pod is a loss only if a queue overflowed or a write failed, which
    // both sides log (at the first, then every 1,024th).
    let (leader_log, agent_log) = (cluster.log_tail(leader, usize::MAX), agent.log_tail(usize::MAX));
    let logged = [
        ("leader queue dropped", logged_count(&leader_log, "events are being dropped", "dropped=")),
        ("leader writes failed", logged_count(&leader_log, "events not recorded", "failed=")),
        ("fake agents dropped", logged_count(&agent_log, "events are being dropped", "dropped=")),
    ];
    let lost: Vec<String> = logged.iter().filter_map(|(what, n)| n.map(|n| format!("{what} {n}"))).collect();
    if lost.is_empty() {
        println!("  events lost: none logged");
    } else {
        println!("  events lost, as logged (a lower bound): {}", lost.join(", "));
    }
    drop(agent);
    Ok(rate)
}

/// The largest `KEY=N` (`key` is `"KEY="`) of the lines of `log` saying `marker`, if any. The
/// members log without colour codes: their stderr is a file.
fn logged_count(log: &str, marker: &str, key: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let at = l.find(key)? + key.len();
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .max()
}

/// The Events in `ns` per pod by reason (`"Created 0.94, Pulled 0.94, ..."`), and how many.
async fn event_reasons(c: &Client, ns: &str, pods: usize) -> anyhow::Result<(String, usize)> {
    let events = c.list(&EVENTS, Some(ns), &ListParams::default()).await?;
    let items = events["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in items {
        *reasons.entry(e["reason"].as_str().unwrap_or("")).or_default() += 1;
    }
    let per_pod: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {:.2}", *n as f64 / pods as f64)).collect();
    Ok((per_pod.join(", "), items.len()))
}

/// The store's revision (a list's `resourceVersion`): it grows by one per transaction.
async fn store_revision(c: &Client) -> anyhow::Result<u64> {
    let list = c.list(&NAMESPACES, None, &ListParams::default()).await?;
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .context("a list without a numeric resourceVersion")
}

// ---------------------------------------------------------------------------------------
// node-failure

/// Per trial: a victim agent runs `pods` replicas (the two spare nodes cordoned meanwhile),
/// the spares are uncordoned, the victim is SIGKILLed, and the time until `pods` replicas are
/// Running and Ready on other nodes is recorded.
pub async fn node_failure(trials: usize, pods: usize, runtime: &str) -> anyhow::Result<ExitCode> {
    if runtime == "docker" {
        let ok = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/images/build.sh"))
            .stdout(std::process::Stdio::null())
            .status()
            .context("run build.sh")?;
        anyhow::ensure!(ok.success(), "deploy/images/build.sh failed");
    }
    let bin = std::env::current_exe()?;
    let cluster = ProcCluster::start(&bin, 3, &[])?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let c = Client::new(&format!("http://{}", cluster.member(leader).expect("leader").api), Duration::from_secs(10))?;
    wait_until(Duration::from_secs(30), "namespace default", || async {
        c.get(&NAMESPACES, None, "default").await.is_ok().then_some(())
    })
    .await?;
    let tag = std::process::id();
    let no_proxy = ["--proxy-address", "none"];
    let spares: Vec<ProcAgent> = (1..=2)
        .map(|i| cluster.spawn_agent(&format!("nf-{tag}-spare-{i}"), runtime, &no_proxy))
        .collect::<Result<_, _>>()?;
    let spare_prefix = format!("nf-{tag}-spare-");
    wait_until(Duration::from_secs(30), "spare nodes Ready", || async {
        (ready_nodes(&c, &spare_prefix).await? == 2).then_some(())
    })
    .await?;
    println!(
        "node-failure bench: 3 replicas (default lease TTL 4 s, eviction timeout 2 s), {runtime} runtime, \
         {pods} pods on the killed node, {trials} trials"
    );
    let mut h = hist();
    for t in 0..trials {
        let cordon = |on: bool| {
            let c = &c;
            let names: Vec<String> = spares.iter().map(|a| a.name.clone()).collect();
            async move {
                for n in names {
                    let patch = json!({"spec": {"unschedulable": on}});
                    c.patch(&NODES, None, &n, None, PatchType::Merge, &patch).await?;
                }
                Ok::<_, anyhow::Error>(())
            }
        };
        cordon(true).await?;
        let victim_name = format!("nf-{tag}-victim-{t}");
        let mut victim = cluster.spawn_agent(&victim_name, runtime, &no_proxy)?;
        wait_until(Duration::from_secs(30), "victim Ready", || async {
            (ready_nodes(&c, &victim_name).await? == 1).then_some(())
        })
        .await?;
        let app = format!("nf-{t}");
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app},
            "spec": {
                "replicas": pods,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "skiff/busybox:1", "imagePullPolicy": "Never",
                                        "command": ["sleep", "3600"]}],
                    },
                },
            },
        });
        c.create(&DEPLOYMENTS, Some("default"), &deploy).await?;
        let sel = ListParams { label_selector: Some(format!("app={app}")), ..Default::default() };
        let running_on = |pred: Box<dyn Fn(&str) -> bool + Send>| {
            let (c, sel) = (&c, sel.clone());
            async move {
                let l = c.list(&PODS, Some("default"), &sel).await.ok()?;
                let n = l["items"]
                    .as_array()?
                    .iter()
                    .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
                    .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
                    .filter(|p| condition_true(p, "Ready"))
                    .filter(|p| pred(p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("")))
                    .count();
                Some(n)
            }
        };
        let v = victim_name.clone();
        wait_until(Duration::from_secs(120), "pods Running on the victim", || {
            let v = v.clone();
            let f = running_on(Box::new(move |n| n == v));
            async move { (f.await? == pods).then_some(()) }
        })
        .await?;
        cordon(false).await?;
        let killed = Instant::now();
        victim.kill()?;
        // Milestones: the victim's pods deleted and replacements created, all bound, all
        // Running+Ready.
        let (mut created_at, mut bound_at) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let l = c.list(&PODS, Some("default"), &sel).await?;
            let live: Vec<&Value> = l["items"]
                .as_array()
                .map(|v| v.iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).collect())
                .unwrap_or_default();
            let node_of = |p: &Value| p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
            let fresh: Vec<&&Value> = live.iter().filter(|p| node_of(p) != victim_name).collect();
            if created_at.is_none() && fresh.len() >= pods {
                created_at = Some(killed.elapsed());
            }
            if bound_at.is_none() && fresh.iter().filter(|p| !node_of(p).is_empty()).count() >= pods {
                bound_at = Some(killed.elapsed());
            }
            let running = fresh
                .iter()
                .filter(|p| !node_of(p).is_empty())
                .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
                .filter(|p| condition_true(p, "Ready"))
                .count();
            if running >= pods {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "replacements not Running within 120 s ({running}/{pods})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        let (created_s, bound_s) = (secs(created_at), secs(bound_at));
        let took = killed.elapsed();
        h.record(took.as_micros().max(1) as u64)?;
        println!(
            "  trial {:>2}: all {pods} replacements Running+Ready {:.2} s after the kill \
             (replacements created at {created_s:.2} s, all bound at {bound_s:.2} s)",
            t + 1,
            took.as_secs_f64()
        );
        c.delete(&DEPLOYMENTS, Some("default"), &app, &DeleteParams::default()).await?;
        c.delete(&NODES, None, &victim_name, &DeleteParams::default()).await?;
        drop(victim);
        wait_until(Duration::from_secs(60), "trial pods gone", || {
            let f = running_on(Box::new(|_| true));
            async move { (f.await? == 0).then_some(()) }
        })
        .await?;
    }
    println!(
        "  kill -> {pods} replacements Running+Ready: p50={:.2} s  p99={:.2} s  max={:.2} s   (target p99 < 8 s)",
        ms(h.value_at_quantile(0.5)) / 1e3,
        ms(h.value_at_quantile(0.99)) / 1e3,
        ms(h.max()) / 1e3
    );
    println!(
        "RESULT node-failure runtime={runtime} pods={pods} trials={trials} p50_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    drop(spares);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_losses_are_read_from_the_log() {
        let log = "2026  WARN skiff_controllers::events: event queue full (4096 pending): events are \
                   being dropped dropped=1024\nother dropped=99999\n\
                   WARN x: events are being dropped dropped=1\n";
        assert_eq!(super::logged_count(log, "events are being dropped", "dropped="), Some(1024));
        assert_eq!(super::logged_count("nothing here", "events are being dropped", "dropped="), None);
        let log =
            "WARN skiff_controllers::events: event writes failing: events not recorded failed=3 error=no leader\n";
        assert_eq!(super::logged_count(log, "events not recorded", "failed="), Some(3));
    }

    #[test]
    fn rates_summarised() {
        use super::RateSummary;
        let one = RateSummary::of(&[2100.0]);
        assert_eq!(one, RateSummary { median: 2100.0, min: 2100.0, max: 2100.0, mean: 2100.0 });
        let odd = RateSummary::of(&[2300.0, 1900.0, 2100.0]);
        assert_eq!((odd.median, odd.min, odd.max, odd.mean), (2100.0, 1900.0, 2300.0, 2100.0));
        let even = RateSummary::of(&[2400.0, 2000.0, 2200.0, 1800.0]);
        assert_eq!((even.median, even.min, even.max, even.mean), (2100.0, 1800.0, 2400.0, 2100.0));
        assert_eq!(RateSummary::of(&[]).median, 0.0);
    }
}
