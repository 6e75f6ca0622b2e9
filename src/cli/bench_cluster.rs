//! `skiff bench pods|proxy|rollout`: benchmarks of the whole system (3 replicas of this
//! binary, `skiff agent` processes on Docker). They print figures, never pass/fail.

use std::collections::HashMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde_json::Value;
use skiff_agent::proxy::ProxyMode;

use super::agent::ProxyModeArg;
use skiff_api::registry::{DEPLOYMENTS, NAMESPACES, NODES, PODS, SERVICES};
use skiff_api::PatchType;
use skiff_client::{Client, DeleteParams, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use crate::proc_cluster::{ProcAgent, ProcCluster};

const WEB_YAML: &str = include_str!("../../examples/web.yaml");
const BUILD_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/images/build.sh");

pub(super) fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A 3-replica cluster, a client of the leader's API, and `agents` Docker agents.
struct Setup {
    client: Client,
    // Dropped in this order: the agents (removing their containers), then the replicas.
    agents: Vec<ProcAgent>,
    _cluster: ProcCluster,
}

async fn setup(agents: usize, agent_args: impl Fn(usize) -> Vec<String>) -> anyhow::Result<Setup> {
    let ok = Command::new("bash").arg(BUILD_SH).stdout(Stdio::null()).status().context("run build.sh")?;
    anyhow::ensure!(ok.success(), "{BUILD_SH} failed");
    let bin = std::env::current_exe()?;
    let cluster = ProcCluster::start(&bin, 3, &[])?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let api = &cluster.member(leader).expect("leader").api;
    let client = Client::new(&format!("http://{api}"), Duration::from_secs(10))?;
    wait_until(Duration::from_secs(30), "namespace default", || async {
        client.get(&NAMESPACES, None, "default").await.is_ok().then_some(())
    })
    .await?;
    let tag = std::process::id();
    let mut v = Vec::new();
    for i in 0..agents {
        let args = agent_args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        v.push(cluster.spawn_agent(&format!("bench-{tag}-{i}"), "docker", &args)?);
    }
    wait_until(Duration::from_secs(30), "all nodes Ready", || async {
        let l = client.list(&NODES, None, &ListParams::default()).await.ok()?;
        let ready = l["items"].as_array()?.iter().filter(|n| condition_true(n, "Ready")).count();
        (ready == agents).then_some(())
    })
    .await?;
    Ok(Setup { client, agents: v, _cluster: cluster })
}

pub(super) fn condition_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

pub(super) async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`; `None` where
/// that cannot be read (another OS, a process gone).
pub(super) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The kernel reports clock ticks of USER_HZ, 100 on every Linux target.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time the whole machine has spent busy (every state but idle and iowait) so far, from
/// `/proc/stat`.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let busy: u64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(Duration::from_millis(busy * 10))
}

/// The host's count of retransmitted SYNs and SYN-ACKs (`TcpExt: TCPSynRetrans` in
/// `/proc/net/netstat`): a dropped SYN costs its client a 1 s retransmission timeout.
fn syn_retransmits() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == "TCPSynRetrans")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn containers_of(node: &str) -> usize {
    let filter = format!("label=io.skiff.node-name={node}");
    Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().count())
        .unwrap_or(0)
}

fn load_line() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// pods

pub async fn pods(n: usize, agents: usize, rate: f64) -> anyhow::Result<ExitCode> {
    if !rate.is_finite() || rate < 0.0 {
        anyhow::bail!("--rate must be a non-negative number of pods per second, not {rate}");
    }
    let s = setup(agents, |_| vec!["--proxy-address".into(), "none".into()]).await?;
    let c = &s.client;
    let pacing = if rate > 0.0 { format!("{rate} creates/s") } else { "all at once".to_string() };
    println!(
        "pods bench: 3 replicas, {agents} docker agents, {n} pods created {pacing}; load average before: {}",
        load_line()
    );
    let sel = ListParams { label_selector: Some("app=bench-pods".into()), ..Default::default() };
    let mut watch = c.watch(&PODS, Some("default"), &sel, None, false).await?;
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant, bool)>();
    let watcher = tokio::spawn(async move {
        while let Some(ev) = watch.next().await {
            let Ok(ev) = ev else { break };
            let name = ev.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let running = ev.object.pointer("/status/phase") == Some(&Value::from("Running"));
            let ready = running && condition_true(&ev.object, "Ready");
            let deleted = ev.event_type == "DELETED";
            if (ready || deleted) && tx.send((name, Instant::now(), deleted)).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        }
        let name = format!("bp-{i}");
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench-pods"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "skiff/busybox:1", "imagePullPolicy": "Never",
                                "command": ["sleep", "3600"]}],
            },
        });
        created.lock().unwrap().insert(name, Instant::now());
        c.create(&PODS, Some("default"), &pod).await?;
    }
    let create_secs = t0.elapsed().as_secs_f64();
    let mut h = hist();
    let mut ready = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while ready.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, at, false))) => {
                if let Some(start) = created.lock().unwrap().get(&name) {
                    if ready.insert(name.clone()) {
                        h.record(at.duration_since(*start).as_micros().max(1) as u64)?;
                    }
                }
            }
            Ok(Some(_)) => {}
            _ => anyhow::bail!("only {} of {n} pods Running+Ready within 300 s", ready.len()),
        }
    }
    let all_secs = t0.elapsed().as_secs_f64();
    println!("  {n} creates took {create_secs:.2} s; all Running+Ready after {all_secs:.2} s");
    println!(
        "  create -> Running+Ready (watch): p50={:.0} ms  p99={:.0} ms  max={:.0} ms   (target p99 < 1000 ms)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut max_rss = 0;
    for a in &s.agents {
        let pods_on = containers_of(&a.name);
        let rss = a.pid().and_then(rss_kib).unwrap_or(0);
        max_rss = max_rss.max(rss);
        println!(
            "  agent {}: VmRSS {:.1} MB with {pods_on} containers (sandbox + app per pod)   (target < 30 MB)",
            a.name,
            rss as f64 / 1024.0
        );
    }
    println!(
        "RESULT pods n={n} agents={agents} rate={rate} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} max_agent_rss_mb={:.1}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        max_rss as f64 / 1024.0
    );
    // Delete the pods and wait until the watch saw them go and their containers are gone.
    let t1 = Instant::now();
    for i in 0..n {
        c.delete(&PODS, Some("default"), &format!("bp-{i}"), &DeleteParams::default()).await?;
    }
    let mut gone = 0;
    while gone < n {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Some((_, _, true))) => gone += 1,
            Ok(Some(_)) => {}
            _ => anyhow::bail!("only {gone} of {n} pods deleted within 120 s"),
        }
    }
    wait_until(Duration::from_secs(60), "containers removed", || async {
        s.agents.iter().all(|a| containers_of(&a.name) == 0).then_some(())
    })
    .await?;
    println!("  deleted: all pods and containers gone after {:.1} s", t1.elapsed().as_secs_f64());
    watcher.abort();
    drop(s);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// web deployment helpers

/// Creates examples/web.yaml with `replicas` and node port `port`; waits for the rollout.
async fn create_web(c: &Client, replicas: u64, port: u16) -> anyhow::Result<()> {
    let text = WEB_YAML.replace("nodePort: 30080", &format!("nodePort: {port}"));
    for mut obj in skiff_client::manifest::parse(&text, "examples/web.yaml")? {
        if obj["kind"] == "Deployment" {
            obj["spec"]["replicas"] = replicas.into();
            c.create(&DEPLOYMENTS, Some("default"), &obj).await?;
        } else {
            c.create(&SERVICES, Some("default"), &obj).await?;
        }
    }
    wait_until(Duration::from_secs(180), "web rollout", || async { rolled_out(c).await.then_some(()) }).await
}

/// What `kubectl rollout status` waits for.
async fn rolled_out(c: &Client) -> bool {
    let Ok(d) = c.get(&DEPLOYMENTS, Some("default"), "web").await else { return false };
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    n("/status/observedGeneration") >= n("/metadata/generation")
        && n("/status/updatedReplicas") == n("/spec/replicas")
        && n("/status/replicas") == n("/spec/replicas")
        && n("/status/availableReplicas") == n("/spec/replicas")
}

async fn delete_web(s: &Setup) {
    let p = DeleteParams { propagation_policy: Some("Background".into()), ..Default::default() };
    let _ = s.client.delete(&DEPLOYMENTS, Some("default"), "web", &p).await;
    let _ = s.client.delete(&SERVICES, Some("default"), "web", &p).await;
    let sel = ListParams { label_selector: Some("app=web".into()), ..Default::default() };
    let r = wait_until(Duration::from_secs(60), "web pods gone", || async {
        let l = s.client.list(&PODS, Some("default"), &sel).await.ok()?;
        l["items"].as_array()?.is_empty().then_some(())
    })
    .await;
    if let Err(e) = r {
        eprintln!("cleanup: {e} (the agents' containers are removed when they stop)");
    }
}

/// One HTTP/1.0 GET (busybox httpd closes the connection); Ok(latency µs).
async fn get(addr: &str) -> Result<u64, String> {
    get_from(addr, None).await
}

/// [`get`] from source address `from` (any when `None`).
async fn get_from(addr: &str, from: Option<std::net::IpAddr>) -> Result<u64, String> {
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = match from {
            None => tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
            Some(ip) => {
                let to: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
                let sock = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                    .map_err(|e| e.to_string())?;
                sock.bind(std::net::SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
                sock.connect(to).await.map_err(|e| e.to_string())?
            }
        };
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(512);
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf.starts_with(b"HTTP/1.") && buf.windows(5).any(|w| w == b" 200 ") {
            Ok(())
        } else {
            Err(format!("bad response: {:?}", String::from_utf8_lossy(&buf)))
        }
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(t.elapsed().as_micros().max(1) as u64),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timeout after 5 s".into()),
    }
}

fn unique_port() -> u16 {
    30000 + (std::process::id() % 2000) as u16 + 500
}

// ---------------------------------------------------------------------------------------
// proxy

/// Closed-loop load: `conns` tasks each issue GETs back to back for `dur`.
async fn closed_loop(
    addr: &str,
    from: Option<std::net::IpAddr>,
    conns: usize,
    dur: Duration,
) -> (Histogram<u64>, u64, f64) {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut h, mut errors) = (hist(), 0u64);
            while Instant::now() < deadline {
                match get_from(&addr, from).await {
                    Ok(us) => {
                        let _ = h.record(us);
                    }
                    Err(_) => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let (mut h, mut errors) = (hist(), 0);
    for t in tasks {
        if let Ok((th, e)) = t.await {
            let _ = h.add(th);
            errors += e;
        }
    }
    (h, errors, start.elapsed().as_secs_f64())
}

/// One Docker agent whose proxy serves node ports on this host's address (as clients on other
/// machines reach a node; 127.0.0.1 when the host has no other) in `mode`; also the mode it
/// runs (what `auto` chose, from its start line) and that address.
async fn setup_proxied(mode: ProxyModeArg) -> anyhow::Result<(Setup, &'static str, std::net::IpAddr)> {
    let arg = mode.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    let node_ip = skiff_testkit::host_address().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let s =
        setup(1, |_| vec!["--proxy-address".into(), node_ip.to_string(), "--proxy-mode".into(), arg.clone()]).await?;
    let agent = s.agents.first().context("no agent")?;
    let line = wait_until(Duration::from_secs(10), "the agent's start line", || async {
        agent.log_tail(100).lines().find(|l| l.starts_with(&format!("skiff agent {}:", agent.name))).map(str::to_string)
    })
    .await?;
    let running = [ProxyMode::Iptables, ProxyMode::Userspace]
        .into_iter()
        .find(|m| line.contains(&format!("{} proxy on", m.as_str())))
        .with_context(|| format!("no proxy mode in the agent's start line: {line}"))?;
    Ok((s, running.as_str(), node_ip))
}

/// What one target (the node port or the pod) got over all rounds.
#[derive(Default)]
struct Leg {
    hist: Option<Histogram<u64>>,
    errors: u64,
    secs: f64,
    agent_cpu: Duration,
    machine_cpu: Duration,
    syn_retransmits: u64,
}

impl Leg {
    /// Runs the closed loop against `addr` for `dur`, adding its figures and the CPU the agent
    /// and the whole machine spent meanwhile.
    async fn run(
        &mut self,
        addr: &str,
        from: Option<std::net::IpAddr>,
        conns: usize,
        dur: Duration,
        agent: Option<u32>,
    ) {
        let (a0, m0, s0) = (cpu_time(agent), machine_busy(), syn_retransmits());
        let (h, e, secs) = closed_loop(addr, from, conns, dur).await;
        let (a1, m1, s1) = (cpu_time(agent), machine_busy(), syn_retransmits());
        self.syn_retransmits += s1.zip(s0).map(|(b, a)| b.saturating_sub(a)).unwrap_or_default();
        self.agent_cpu += a1.zip(a0).map(|(b, a)| b.saturating_sub(a)).unwrap_or_default();
        self.machine_cpu += m1.zip(m0).map(|(b, a)| b.saturating_sub(a)).unwrap_or_default();
        match &mut self.hist {
            Some(all) => {
                let _ = all.add(h);
            }
            None => self.hist = Some(h),
        }
        self.errors += e;
        self.secs += secs;
    }

    fn requests(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.len())
    }

    fn rate(&self) -> f64 {
        self.requests() as f64 / self.secs.max(1e-9)
    }

    fn p99_ms(&self) -> f64 {
        self.hist.as_ref().map_or(0.0, |h| ms(h.value_at_quantile(0.99)))
    }

    /// CPU µs per request.
    fn per_request_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.requests().max(1) as f64
    }
}

pub async fn proxy(duration: u64, conns: usize, mode: ProxyModeArg, rounds: usize) -> anyhow::Result<ExitCode> {
    let (s, mode_arg, node_ip) = setup_proxied(mode).await?;
    let port = unique_port();
    create_web(&s.client, 3, port).await?;
    let node_addr = format!("{node_ip}:{port}");
    wait_until(Duration::from_secs(30), "the node port answers", || async { get(&node_addr).await.ok() }).await?;
    let sel = ListParams { label_selector: Some("app=web".into()), ..Default::default() };
    let l = s.client.list(&PODS, Some("default"), &sel).await?;
    let pod_ip = l["items"]
        .as_array()
        .and_then(|v| v.iter().find_map(|p| p.pointer("/status/podIP").and_then(Value::as_str)))
        .context("no pod IP")?
        .to_string();
    let direct_addr = format!("{pod_ip}:8080");
    get(&direct_addr).await.map_err(|e| anyhow::anyhow!("pod {direct_addr} not reachable from the host: {e}"))?;
    let netns = if node_ip.is_loopback() {
        None
    } else {
        crate::proc_cluster::ClientNetns::create()
            .map_err(|e| eprintln!("no client network namespace ({e:#}); the load comes from this host"))
            .ok()
    };
    println!(
        "proxy bench: web (3 replicas) on 1 docker agent, proxy mode {mode_arg}, {conns} connections, {duration} s \
         per target in {rounds} alternating rounds, load from {}; load average before: {}",
        match &netns {
            Some(ns) => format!(
                "network namespace {} ({} to the node port, {} to the pod)",
                ns.name, ns.node_from, ns.direct_from
            ),
            None => "this host".to_string(),
        },
        load_line()
    );
    let agent = s.agents.first().and_then(ProcAgent::pid);
    let m = Measure {
        node_addr: node_addr.clone(),
        direct_addr: direct_addr.clone(),
        node_from: netns.as_ref().map(|n| n.node_from),
        direct_from: netns.as_ref().map(|n| n.direct_from),
        conns,
        duration,
        rounds,
        agent_pid: agent,
        mode: mode_arg.to_string(),
    };
    match &netns {
        // The load generator runs in the namespace: this binary again, measuring and printing.
        Some(ns) => {
            let exe = std::env::current_exe()?;
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", &ns.name]).arg(exe).args(["bench", "proxy-measure"]).args(m.args());
            cmd.kill_on_drop(true);
            let status = tokio::time::timeout(Duration::from_secs(duration * 2 + 120), cmd.status())
                .await
                .context("the load generator in the client namespace did not finish")??;
            anyhow::ensure!(status.success(), "the load generator in the client namespace failed: {status}");
        }
        None => measure(m).await,
    }
    drop(netns);
    delete_web(&s).await;
    Ok(ExitCode::SUCCESS)
}

/// One proxy measurement: alternating rounds of the node port and one pod.
#[derive(Debug, Clone, clap::Args)]
pub struct Measure {
    #[arg(long)]
    pub node_addr: String,
    #[arg(long)]
    pub direct_addr: String,
    /// Source address of the node port's connections (any when absent).
    #[arg(long)]
    pub node_from: Option<std::net::IpAddr>,
    /// Source address of the pod's connections (any when absent).
    #[arg(long)]
    pub direct_from: Option<std::net::IpAddr>,
    #[arg(long)]
    pub conns: usize,
    #[arg(long)]
    pub duration: u64,
    #[arg(long)]
    pub rounds: usize,
    /// The agent whose CPU time is reported.
    #[arg(long)]
    pub agent_pid: Option<u32>,
    #[arg(long)]
    pub mode: String,
}

impl Measure {
    /// The command-line flags that give back this measurement.
    fn args(&self) -> Vec<String> {
        let flags = [
            ("--node-addr", Some(self.node_addr.clone())),
            ("--direct-addr", Some(self.direct_addr.clone())),
            ("--conns", Some(self.conns.to_string())),
            ("--duration", Some(self.duration.to_string())),
            ("--rounds", Some(self.rounds.to_string())),
            ("--mode", Some(self.mode.clone())),
            ("--node-from", self.node_from.map(|ip| ip.to_string())),
            ("--direct-from", self.direct_from.map(|ip| ip.to_string())),
            ("--agent-pid", self.agent_pid.map(|p| p.to_string())),
        ];
        flags.into_iter().filter_map(|(f, v)| Some([f.to_string(), v?])).flatten().collect()
    }
}

/// Runs the rounds of `m` and prints the figures.
pub async fn measure(m: Measure) {
    let Measure { node_addr, direct_addr, node_from, direct_from, conns, duration, rounds, agent_pid, mode } = m;
    let rounds = rounds.max(1);
    // Alternating rounds, so a drift of the machine's speed hits both targets alike.
    let segment = Duration::from_secs_f64(duration as f64 / rounds as f64);
    let (mut node, mut direct) = (Leg::default(), Leg::default());
    for round in 1..=rounds {
        let (n0, d0) = ((node.requests(), node.secs), (direct.requests(), direct.secs));
        node.run(&node_addr, node_from, conns, segment, agent_pid).await;
        direct.run(&direct_addr, direct_from, conns, segment, agent_pid).await;
        let rate = |leg: &Leg, (n, s): (u64, f64)| (leg.requests() - n) as f64 / (leg.secs - s).max(1e-9);
        if rounds > 1 {
            println!("  round {round}: node port {:.0} req/s, one pod {:.0} req/s", rate(&node, n0), rate(&direct, d0));
        }
    }
    let line = |what: &str, leg: &Leg| {
        let Some(h) = leg.hist.as_ref() else { return };
        println!(
            "  {what:<26} {:>7.0} req/s  p50={:.2} ms  p99={:.2} ms  max={:.0} ms  errors={}  SYN retransmits={}  CPU per request: machine {:.0} µs, agent {:.0} µs",
            leg.rate(),
            ms(h.value_at_quantile(0.5)),
            leg.p99_ms(),
            ms(h.max()),
            leg.errors,
            leg.syn_retransmits,
            leg.per_request_us(leg.machine_cpu),
            leg.per_request_us(leg.agent_cpu),
        )
    };
    line(&format!("node port {node_addr}"), &node);
    line(&format!("one pod {direct_addr}"), &direct);
    let ratio = node.rate() / direct.rate();
    let cpu_ratio = node.per_request_us(node.machine_cpu) / direct.per_request_us(direct.machine_cpu);
    println!(
        "  ratio node port / direct: {ratio:.2} req/s   (target >= 0.8); machine CPU per request: {cpu_ratio:.2}x"
    );
    println!(
        "RESULT proxy mode={mode} conns={conns} nodeport_rps={:.0} nodeport_p99_ms={:.2} direct_rps={:.0} direct_p99_ms={:.2} ratio={ratio:.2} \
         nodeport_machine_us_per_req={:.0} direct_machine_us_per_req={:.0} agent_us_per_req={:.0}",
        node.rate(),
        node.p99_ms(),
        direct.rate(),
        direct.p99_ms(),
        node.per_request_us(node.machine_cpu),
        direct.per_request_us(direct.machine_cpu),
        node.per_request_us(node.agent_cpu),
    );
}

// ---------------------------------------------------------------------------------------
// rollout

pub async fn rollout(replicas: u64, rate: u64, mode: ProxyModeArg) -> anyhow::Result<ExitCode> {
    let (s, mode, node_ip) = setup_proxied(mode).await?;
    let port = unique_port();
    create_web(&s.client, replicas, port).await?;
    let addr = format!("{node_ip}:{port}");
    wait_until(Duration::from_secs(30), "the node port answers", || async { get(&addr).await.ok() }).await?;
    println!(
        "rollout bench: web ({replicas} replicas) on 1 docker agent, proxy mode {mode}, {rate} req/s paced through the node port"
    );
    // Paced load: one request per tick, each in its own task (at most 512 in flight).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let load = {
        let (stop, ok, failed, errors, addr) = (stop.clone(), ok.clone(), failed.clone(), errors.clone(), addr.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let permits = Arc::new(tokio::sync::Semaphore::new(512));
            let h = Arc::new(Mutex::new(hist()));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let (ok, failed, errors, addr, h) =
                    (ok.clone(), failed.clone(), errors.clone(), addr.clone(), h.clone());
                tokio::spawn(async move {
                    match get(&addr).await {
                        Ok(us) => {
                            let _ = h.lock().unwrap().record(us);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let mut v = errors.lock().unwrap();
                            if v.len() < 5 {
                                v.push(e);
                            }
                        }
                    }
                    drop(permit);
                });
            }
            let _ = permits.acquire_many(512).await;
            let h = h.lock().unwrap().clone();
            h
        })
    };
    let load_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = s.client.get(&DEPLOYMENTS, Some("default"), "web").await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let patch = skiff_client::rollout::restart_patch(&d, &skiff_client::rollout::format_rfc3339(now))
        .map_err(anyhow::Error::msg)?;
    let t0 = Instant::now();
    s.client.patch(&DEPLOYMENTS, Some("default"), "web", None, PatchType::Merge, &patch).await?;
    // The first poll could see the old status: wait for the new generation to be observed.
    wait_until(Duration::from_secs(600), "rollout restart to complete", || async {
        rolled_out(&s.client).await.then_some(())
    })
    .await?;
    let took = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let h = load.await?;
    let secs = load_start.elapsed().as_secs_f64();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let total = ok + failed;
    println!("  rollout restart completed in {took:.1} s; load average now: {}", load_line());
    println!(
        "  requests: {total} total ({:.0}/s achieved), {failed} failed   (target 0 failed); p50={:.2} ms p99={:.2} ms",
        total as f64 / secs,
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99))
    );
    for e in errors.lock().unwrap().iter() {
        println!("  error: {e}");
    }
    println!(
        "RESULT rollout mode={mode} replicas={replicas} rate={rate} total={total} failed={failed} rollout_s={took:.1} p99_ms={:.2}",
        ms(h.value_at_quantile(0.99))
    );
    delete_web(&s).await;
    Ok(ExitCode::SUCCESS)
}
