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

/// Runs kubectl with `kubeconfig`, a private discovery `cache` and a 20 s request timeout,
/// feeding `stdin`.
pub fn run_kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: &str) -> KubectlOut {
    use std::io::Write;
    let mut child = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("write kubectl stdin");
    let out = child.wait_with_output().expect("wait for kubectl");
    KubectlOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether a Docker engine answers.
pub fn docker_available() -> bool {
    Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Builds the local images (`deploy/images/build.sh`, idempotent) of the repository at `root`.
pub fn build_images(root: &Path) {
    let st =
        Command::new("bash").arg(root.join("deploy/images/build.sh")).status().expect("run deploy/images/build.sh");
    assert!(st.success(), "deploy/images/build.sh failed");
}

/// Free loopback ports (bound then released; the OS does not hand them out again soon).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
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
        self.members[i].child = Some(child);
        Ok(())
    }

    /// SIGKILLs member `id` (no clean shutdown).
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self.index(id)?;
        if let Some(mut c) = self.members[i].child.take() {
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
}

impl ProcAgent {
    /// SIGKILLs the agent (its containers keep running).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
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
        let _ = self.kill();
        if self.runtime == "docker" {
            let filter = format!("label=io.skiff.node-name={}", self.name);
            if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() {
                let ids: Vec<String> =
                    String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
                if !ids.is_empty() {
                    let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).status();
                }
            }
        }
    }
}

impl ProcCluster {
    /// Starts `skiff agent --node-name NAME --runtime RUNTIME` against every member, its log
    /// endpoint on a free 127.0.0.1 port, its data and log under the cluster directory.
    pub fn spawn_agent(&self, name: &str, runtime: &str, extra_args: &[&str]) -> anyhow::Result<ProcAgent> {
        // `--port` among `extra_args` (e.g. 0 for many fake nodes) replaces the free port.
        let own_port = extra_args.contains(&"--port");
        let port = if own_port { 0 } else { free_ports(1)?[0] };
        let data_dir = self.dir.join(format!("agent-{name}"));
        let log_path = self.dir.join(format!("agent-{name}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = Command::new(&self.bin)
            .arg("agent")
            .args(["--node-name", name, "--runtime", runtime, "--address", "127.0.0.1"])
            .args(if own_port { vec![] } else { vec!["--port".to_string(), port.to_string()] })
            .args(["--servers", &self.endpoints().join(",")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} agent", self.bin.display()))?;
        Ok(ProcAgent {
            name: name.to_string(),
            runtime: runtime.to_string(),
            port,
            data_dir,
            log: log_path,
            child: Some(child),
        })
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
