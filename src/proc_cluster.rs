//! A cluster of real `skiff server` processes on loopback, for end-to-end tests and
//! benchmarks: start, SIGKILL, restart, find the leader, and run `skiff agent` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use skiff_proto::Client;

pub struct ProcMember {
    pub id: u64,
    pub grpc: String,
    pub api: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

pub struct ProcCluster {
    bin: PathBuf,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub members: Vec<ProcMember>,
    extra_args: Vec<String>,
}

/// The kubectl the end-to-end tests drive: `$KUBECTL`, else `/usr/bin/kubectl`.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

/// What one kubectl run printed.
pub struct KubectlOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed unless already set) and collects its output, killing it when
/// `timeout` passes: a hung child (a stuck Docker engine, say) fails the caller instead of
/// hanging the test run.
pub fn run_bounded(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> anyhow::Result<std::process::Output> {
    use std::io::{Read, Write};
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let mut input = child.stdin.take().context("piped stdin")?;
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    }
    let out = drain(child.stdout.take().context("piped stdout")?);
    let err = drain(child.stderr.take().context("piped stderr")?);
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(std::process::Output { status, stdout, stderr })
}

/// Runs kubectl with `kubeconfig`, a private discovery `cache` and a 20 s request timeout,
/// feeding `stdin`. The whole run is bounded (kubectl's own `--timeout` flags in tests stay
/// under it); a kubectl that outlives it counts as failed.
pub fn run_kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: &str) -> KubectlOut {
    let mut cmd = Command::new(kubectl_path());
    cmd.arg("--kubeconfig").arg(kubeconfig).arg("--cache-dir").arg(cache).arg("--request-timeout=20s").args(args);
    match run_bounded(&mut cmd, stdin.as_bytes(), Duration::from_secs(180)) {
        Ok(out) => KubectlOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => KubectlOut { ok: false, stdout: String::new(), stderr: format!("{e:#}") },
    }
}

/// Runs `docker ARGS` with a deadline (60 s): stdout on success, an error naming the command
/// otherwise.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = run_bounded(Command::new("docker").args(args), b"", Duration::from_secs(60))?;
    if !out.status.success() {
        bail!("docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a Docker engine answers (within 20 s).
pub fn docker_available() -> bool {
    run_bounded(Command::new("docker").arg("info"), b"", Duration::from_secs(20)).is_ok_and(|o| o.status.success())
}

/// Builds the local images (`deploy/images/build.sh`, idempotent) of the repository at `root`,
/// within 10 minutes.
pub fn build_images(root: &Path) {
    let out = run_bounded(Command::new("bash").arg(root.join("deploy/images/build.sh")), b"", Duration::from_secs(600))
        .expect("run deploy/images/build.sh");
    assert!(
        out.status.success(),
        "deploy/images/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the Docker containers of node `name` (labelled by its agent), within deadlines.
pub fn remove_node_containers(name: &str) {
    let filter = format!("label=io.skiff.node-name={name}");
    if let Ok(out) = docker(&["ps", "-aq", "--filter", &filter]) {
        let ids: Vec<&str> = out.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker(&args);
        }
    }
}

/// How long one end-to-end test may run (see [`test_deadline`]).
pub const E2E_TEST_LIMIT: Duration = Duration::from_secs(600);

/// A deadline for a whole end-to-end test, named after the calling test's thread. If the
/// guard is still alive after [`E2E_TEST_LIMIT`], the test binary prints the test's name and
/// exits with failure after killing the server and agent processes this module spawned, so a
/// hang anywhere (a stuck Docker engine, a lost wake-up) fails the run instead of stalling
/// CI. Dropping the guard disarms it.
pub struct TestDeadline {
    done: Option<std::sync::mpsc::Sender<()>>,
}

/// Polls `f` every 200 ms until it returns a value; fails the test after `timeout`, naming
/// `what` and the last thing `f` wrote into its argument (what it saw instead).
pub fn wait_for_reporting<T>(timeout: Duration, what: &str, mut f: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; last: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`wait_for_reporting`] for conditions with nothing to report.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for_reporting(timeout, what, |_| f())
}

/// One HTTP/1.0 `GET /` to `addr` (connect within 2 s, answer within 5 s): the body of a
/// 200 response, trimmed (the web example's pod name), or what went wrong.
pub fn http_get(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    if !buf.starts_with("HTTP/1.") || !buf.contains(" 200 ") {
        return Err(format!("bad response: {buf:?}"));
    }
    Ok(buf.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string())
}

pub fn test_deadline() -> TestDeadline {
    let limit = E2E_TEST_LIMIT;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let what = std::thread::current().name().unwrap_or("an end-to-end test").to_string();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("TEST DEADLINE: {what} did not finish within {limit:?}; killing its processes and exiting");
            let pids: Vec<String> =
                spawned().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|p| p.to_string()).collect();
            if !pids.is_empty() {
                let _ = run_bounded(Command::new("kill").arg("-9").args(&pids), b"", Duration::from_secs(10));
            }
            std::process::exit(101);
        }
    });
    TestDeadline { done: Some(tx) }
}

impl Drop for TestDeadline {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

/// Pids of the server and agent processes spawned here (for the deadline's clean-up).
fn spawned() -> &'static std::sync::Mutex<std::collections::HashSet<u32>> {
    static S: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<u32>>> = std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

fn track(child: &Child) {
    spawned().lock().unwrap_or_else(|e| e.into_inner()).insert(child.id());
}

fn untrack(child: &Child) {
    spawned().lock().unwrap_or_else(|e| e.into_inner()).remove(&child.id());
}

/// Free loopback ports that no outgoing connection takes before the servers bind them
/// (`skiff_testkit::free_ports`: below the kernel's ephemeral range).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    Ok(skiff_testkit::free_ports(n))
}

/// A client on "another machine" for node-port benches and tests: a network namespace of its
/// own, plugged into this host through a veth pair, so its connections reach a node port as a
/// client on another machine's would (the node forwards them without masquerading). Needs root. It has two addresses, one per target, so
/// that a pod never sees one client address with two streams of connections whose TCP
/// timestamps differ (the node port's and the direct one's): it would drop new SYNs meeting
/// TIME_WAIT entries of the other stream. Removed when dropped.
pub struct ClientNetns {
    pub name: String,
    pub node_from: std::net::IpAddr,
    pub direct_from: std::net::IpAddr,
    /// The host's end of the veth pair.
    host_if: String,
}

impl ClientNetns {
    pub fn create() -> anyhow::Result<ClientNetns> {
        let id = std::process::id() % 10_000;
        let (name, host_if, ns_if) = (format!("skiff-bench-{id}"), format!("sbh{id}"), format!("sbc{id}"));
        // 192.168.251.0/29: .1 the host end, .2 and .3 the client.
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let mut cmd = Command::new("ip");
            cmd.args(args);
            let out = run_bounded(&mut cmd, b"", Duration::from_secs(10))?;
            anyhow::ensure!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        };
        run(&["netns", "add", &name])?;
        let ns = ClientNetns {
            name: name.clone(),
            node_from: "192.168.251.2".parse()?,
            direct_from: "192.168.251.3".parse()?,
            host_if: host_if.clone(),
        };
        run(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name])?;
        run(&["addr", "add", "192.168.251.1/29", "dev", &host_if])?;
        run(&["link", "set", &host_if, "up"])?;
        for args in [
            vec!["addr", "add", "192.168.251.2/29", "dev", ns_if.as_str()],
            vec!["addr", "add", "192.168.251.3/29", "dev", ns_if.as_str()],
            vec!["link", "set", ns_if.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", "192.168.251.1"],
        ] {
            let mut full = vec!["-n", name.as_str()];
            full.extend(args);
            run(&full)?;
        }
        // The host forwards the client's traffic to the pod bridge and back.
        for rule in [["-i", host_if.as_str()], ["-o", host_if.as_str()]] {
            let mut cmd = Command::new("iptables");
            cmd.args(["-w", "-I", "FORWARD", "1"]).args(rule).args(["-j", "ACCEPT"]);
            run_bounded(&mut cmd, b"", Duration::from_secs(10))?;
        }
        Ok(ns)
    }
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        for rule in [["-i", self.host_if.as_str()], ["-o", self.host_if.as_str()]] {
            let mut cmd = Command::new("iptables");
            cmd.args(["-w", "-D", "FORWARD"]).args(rule).args(["-j", "ACCEPT"]);
            let _ = run_bounded(&mut cmd, b"", Duration::from_secs(10));
        }
        // Deleting the namespace deletes its veth end, and with it the host's.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "del", &self.name]);
        let _ = run_bounded(&mut cmd, b"", Duration::from_secs(10));
    }
}

impl ProcCluster {
    /// Starts `n` replicas of `bin` in a fresh temporary directory.
    pub fn start(bin: &Path, n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("skiff-cluster-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        let ports = free_ports(2 * n)?;
        let members: Vec<ProcMember> = (0..n)
            .map(|i| ProcMember {
                id: i as u64 + 1,
                grpc: format!("127.0.0.1:{}", ports[2 * i]),
                api: format!("127.0.0.1:{}", ports[2 * i + 1]),
                data_dir: dir.join(format!("m{}", i + 1)),
                child: None,
            })
            .collect();
        let mut c = ProcCluster {
            bin: bin.to_path_buf(),
            dir,
            _tmp: Some(tmp),
            members,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        // SKIFF_KEEP_CLUSTER_DIR=1 keeps data and member logs for debugging a failure.
        if std::env::var_os("SKIFF_KEEP_CLUSTER_DIR").is_some() {
            eprintln!("cluster dir kept: {}", c.keep_dir().display());
        }
        let initial = c.initial_cluster();
        for i in 0..n {
            c.spawn(i, Some(&initial))?;
        }
        Ok(c)
    }

    /// Keeps the data directory after the cluster is dropped (for debugging).
    pub fn keep_dir(&mut self) -> PathBuf {
        if let Some(t) = self._tmp.take() {
            let _ = t.keep();
        }
        self.dir.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.id, m.grpc)).collect::<Vec<_>>().join(",")
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.grpc.clone()).collect()
    }

    pub fn client(&self, timeout: Duration) -> anyhow::Result<Client> {
        Ok(Client::new(&self.endpoints(), timeout)?)
    }

    fn index(&self, id: u64) -> anyhow::Result<usize> {
        self.members.iter().position(|m| m.id == id).with_context(|| format!("no member {id}"))
    }

    fn spawn(&mut self, i: usize, initial_cluster: Option<&str>) -> anyhow::Result<()> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("member-{}.log", m.id)))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .args(["--id", &m.id.to_string()])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--grpc-addr", &m.grpc, "--api-addr", &m.api])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(ic) = initial_cluster {
            cmd.args(["--initial-cluster", ic]);
        }
        let child = cmd.spawn().with_context(|| format!("spawn {}", self.bin.display()))?;
        track(&child);
        self.members[i].child = Some(child);
        Ok(())
    }

    /// SIGKILLs member `id` (no clean shutdown).
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self.index(id)?;
        if let Some(mut c) = self.members[i].child.take() {
            untrack(&c);
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Restarts member `id` from its data directory (membership comes from disk).
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self.index(id)?;
        if self.members[i].child.is_some() {
            bail!("member {id} is running");
        }
        self.spawn(i, None)
    }

    /// Adds a new, empty member process (it joins only after `cluster add-member`).
    pub fn spawn_new_member(&mut self) -> anyhow::Result<u64> {
        let ports = free_ports(2)?;
        let id = self.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        self.members.push(ProcMember {
            id,
            grpc: format!("127.0.0.1:{}", ports[0]),
            api: format!("127.0.0.1:{}", ports[1]),
            data_dir: self.dir.join(format!("m{id}")),
            child: None,
        });
        let i = self.members.len() - 1;
        self.spawn(i, None)?;
        Ok(id)
    }

    pub fn member(&self, id: u64) -> Option<&ProcMember> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The process id of member `id`, while it runs.
    pub fn member_pid(&self, id: u64) -> Option<u32> {
        self.member(id).and_then(|m| m.child.as_ref()).map(Child::id)
    }

    /// Waits until a running member reports itself leader and returns its id.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                let c = Client::new(std::slice::from_ref(&m.grpc), Duration::from_millis(500))?;
                match c.status_of(0, Duration::from_millis(500)).await {
                    Ok(s) if s.role == "leader" => return Ok(s.id),
                    Ok(s) => last = format!("member {} is {} (leader {:?})", s.id, s.role, s.leader),
                    Err(e) => last = format!("member {}: {e}", m.id),
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no leader within {timeout:?}; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status member `id` reports.
    pub async fn status(&self, id: u64) -> anyhow::Result<skiff_proto::StatusResponse> {
        let m = self.member(id).with_context(|| format!("no member {id}"))?;
        let c = Client::new(std::slice::from_ref(&m.grpc), Duration::from_millis(1000))?;
        Ok(c.status_of(0, Duration::from_millis(1000)).await?)
    }

    /// Writes a kubeconfig whose one context points at member `id`'s Kubernetes API and
    /// returns its path.
    pub fn kubeconfig(&self, id: u64) -> anyhow::Result<PathBuf> {
        let m = self.member(id).with_context(|| format!("no member {id}"))?;
        let path = self.dir.join(format!("kubeconfig-{id}"));
        skiff_client::write_kubeconfig(&path, &format!("http://{}", m.api), "skiff")?;
        Ok(path)
    }

    /// The tail of member `id`'s log file, for failure messages.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let s = std::fs::read_to_string(self.dir.join(format!("member-{id}.log"))).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

/// A `skiff agent` process started by [`ProcCluster::spawn_agent`]. Dropping it SIGKILLs the
/// agent and, for the docker runtime, removes the containers labelled with its node name.
pub struct ProcAgent {
    pub name: String,
    pub runtime: String,
    /// Port of its log endpoint on 127.0.0.1.
    pub port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Started with `--proxy-mode iptables`: dropping it stops it cleanly (SIGTERM first).
    iptables_proxy: bool,
}

impl ProcAgent {
    /// SIGKILLs the agent (its containers keep running).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            untrack(&c);
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, so the agent shuts down cleanly (an iptables proxy removes its rules); SIGKILL
    /// if it has not exited within 10 s.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(c) = &mut self.child {
            let pid = c.id().to_string();
            let _ = run_bounded(Command::new("kill").args(["-TERM", &pid]), b"", Duration::from_secs(5));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if c.try_wait()?.is_some() {
                    untrack(c);
                    self.child = None;
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The tail of the agent's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ProcAgent {
    fn drop(&mut self) {
        // An iptables proxy removes its rules only on a clean stop.
        let _ = if self.iptables_proxy { self.stop() } else { self.kill() };
        if self.runtime == "docker" {
            remove_node_containers(&self.name);
        }
    }
}

impl ProcCluster {
    /// Starts `skiff agent --node-name NAME --runtime RUNTIME` against every member, its log
    /// endpoint on a free 127.0.0.1 port, its data and log under the cluster directory. Its
    /// service proxy is the userspace one on 127.0.0.1 unless `extra_args` say otherwise
    /// (`--proxy-mode`, `--proxy-address`): netfilter rules of an agent that a test SIGKILLs
    /// would stay and take that node port from later tests.
    pub fn spawn_agent(&self, name: &str, runtime: &str, extra_args: &[&str]) -> anyhow::Result<ProcAgent> {
        // `--port` among `extra_args` (e.g. 0 for many fake nodes) replaces the free port.
        let own_port = extra_args.contains(&"--port");
        let mode = extra_args.windows(2).find(|w| w[0] == "--proxy-mode").map_or("userspace", |w| w[1]);
        let port = if own_port { 0 } else { free_ports(1)?[0] };
        let data_dir = self.dir.join(format!("agent-{name}"));
        let log_path = self.dir.join(format!("agent-{name}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = Command::new(&self.bin)
            .arg("agent")
            .args(["--node-name", name, "--runtime", runtime, "--address", "127.0.0.1"])
            .args(if own_port { vec![] } else { vec!["--port".to_string(), port.to_string()] })
            .args(["--servers", &self.endpoints().join(",")])
            .args(if extra_args.contains(&"--proxy-mode") { vec![] } else { vec!["--proxy-mode", "userspace"] })
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} agent", self.bin.display()))?;
        track(&child);
        Ok(ProcAgent {
            name: name.to_string(),
            runtime: runtime.to_string(),
            port,
            data_dir,
            log: log_path,
            child: Some(child),
            // `auto` may have chosen iptables.
            iptables_proxy: mode != "userspace",
        })
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                untrack(&c);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_collects_output_and_kills_what_overruns() {
        let out =
            run_bounded(Command::new("sh").args(["-c", "cat; echo err >&2"]), b"in", Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"in"[..], &b"err\n"[..]));

        let started = std::time::Instant::now();
        let err = run_bounded(Command::new("sleep").arg("30"), b"", Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "killed promptly, not waited out");
    }
}
