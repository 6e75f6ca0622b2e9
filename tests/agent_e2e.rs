//! End-to-end: `skiff agent` processes connected to three real `skiff server` processes;
//! pods applied with the real `kubectl` run, report status, serve logs, and survive a
//! SIGKILLed leader untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff::proc_cluster::{
    build_images, docker, docker_available, kubectl_path, run_bounded, run_kubectl, wait_for_reporting, KubectlOut,
    ProcAgent, ProcCluster,
};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// kubectl bound to one kubeconfig and a private discovery cache.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

type Out = KubectlOut;

impl Kubectl {
    fn new(kubeconfig: PathBuf, dir: &Path) -> Self {
        let tag = kubeconfig.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        Kubectl { cache: dir.join(format!("kubectl-cache-{tag}")), kubeconfig }
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run_kubectl(&self.kubeconfig, &self.cache, args, stdin)
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, "")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.ok, "kubectl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }

    fn apply(&self, manifest: &str) {
        let o = self.run_stdin(&["apply", "-f", "-"], manifest);
        assert!(o.ok, "kubectl apply failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    }

    /// The object as JSON, or `None` when the command fails (e.g. not found).
    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let o = self.run(&a);
        if !o.ok {
            return None;
        }
        serde_json::from_str(&o.stdout).ok()
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 100_000)
}

fn pod_manifest(name: &str, node: &str, message: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: skiff/busybox:1
    command: ["sh", "-c", "echo {message}; while true; do sleep 1; done"]
"#
    )
}

fn condition(obj: &Value, ty: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Waits until the Node is Ready and reports capacity.
fn wait_node_ready(k: &Kubectl, agent: &ProcAgent) -> Value {
    wait_for_reporting(Duration::from_secs(60), &format!("node {} Ready", agent.name), |last| {
        let n = k.json(&["node", &agent.name]);
        *last = format!("{n:?}\nagent log:\n{}", agent.log_tail(20));
        let n = n?;
        (condition(&n, "Ready").as_deref() == Some("True")).then_some(n)
    })
}

/// `kubectl wait --for=condition=Ready` (a watch), then the pod as JSON.
fn wait_pod_ready(k: &Kubectl, name: &str, agent: &ProcAgent) -> Value {
    let o = k.run(&["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=90s"]);
    assert!(
        o.ok,
        "pod {name} not Ready: {}{}\npod: {:?}\nagent log:\n{}",
        o.stdout,
        o.stderr,
        k.json(&["pod", name]),
        agent.log_tail(30)
    );
    let p = k.json(&["pod", name]).expect("pod exists");
    assert_eq!(p["status"]["phase"], "Running", "pod {name}: {p}");
    p
}

fn wait_logs(k: &Kubectl, name: &str, want: &str) {
    wait_for_reporting(Duration::from_secs(30), &format!("logs of {name} to show {want:?}"), |last| {
        let o = k.run(&["logs", name]);
        *last = format!("{}{}", o.stdout, o.stderr);
        o.stdout.contains(want).then_some(())
    });
}

fn wait_pod_gone(k: &Kubectl, name: &str) {
    wait_for_reporting(Duration::from_secs(60), &format!("pod {name} deleted"), |last| {
        let o = k.run(&["get", "pod", name, "-o", "name"]);
        *last = format!("{}{}", o.stdout, o.stderr);
        (!o.ok && o.stderr.contains("NotFound")).then_some(())
    });
}

/// Runs a `logs -f` command until its output shows `want` (then kills it).
fn follow_shows(cmd: &mut Command, want: &str) {
    use std::io::BufRead;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn logs -f");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("{cmd:?} did not show {want:?} within 30 s; saw {seen:?}"),
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "{cmd:?} should still be following");
    let _ = child.kill();
    let _ = child.wait();
}

fn container_of(p: &Value) -> (String, i64) {
    let cs = &p["status"]["containerStatuses"][0];
    (cs["containerID"].as_str().unwrap_or_default().to_string(), cs["restartCount"].as_i64().unwrap_or(-1))
}

/// Three replicas; returns the cluster, the leader and a follower (to point kubectl at).
async fn cluster() -> (ProcCluster, u64, u64) {
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let follower = c.members.iter().map(|m| m.id).find(|id| *id != leader).unwrap();
    (c, leader, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_agent_runs_pods_and_survives_leader_kill() {
    let _deadline = skiff::proc_cluster::test_deadline();
    if !docker_available() {
        eprintln!("skipping: no Docker engine answers");
        return;
    }
    build_images(Path::new(env!("CARGO_MANIFEST_DIR")));
    let (mut c, _leader, follower) = cluster().await;
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir());
    let node = unique("gw-docker");
    let agent = c.spawn_agent(&node, "docker", &[]).unwrap();

    // The Node registers itself Ready, with capacity and the agent's endpoint.
    let n = wait_node_ready(&k, &agent);
    assert_eq!(n["status"]["capacity"]["pods"], "110", "{n}");
    assert!(n["status"]["capacity"]["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{n}");
    assert_eq!(n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], agent.port as i64);
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], node.as_str());
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0-skiff");
    assert!(n["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().starts_with("docker://"));

    // A pod bound by hand runs, becomes Ready (observed by a watch) and serves its log.
    k.apply(&pod_manifest("web", &node, "hello-from-web"));
    let p = wait_pod_ready(&k, "web", &agent);
    assert_eq!(condition(&p, "PodScheduled").as_deref(), Some("True"), "PodScheduled kept: {p}");
    assert_eq!(p["status"]["qosClass"], "BestEffort", "qosClass kept: {p}");
    let (cid, restarts) = container_of(&p);
    assert!(cid.starts_with("docker://"), "{p}");
    assert_eq!(restarts, 0);
    wait_logs(&k, "web", "hello-from-web");

    // SIGKILL the leader: the container is untouched and the agent follows the new leader.
    // (Leadership may have moved since the start: kill whoever leads now, talk to another.)
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let survivor = c.members.iter().map(|m| m.id).find(|id| *id != leader).unwrap();
    let k = Kubectl::new(c.kubeconfig(survivor).unwrap(), c.dir());
    c.kill(leader).unwrap();
    let new_leader = c.leader(Duration::from_secs(30)).await.unwrap();
    assert_ne!(new_leader, leader);
    k.apply(&pod_manifest("second", &node, "hello-from-second"));
    wait_pod_ready(&k, "second", &agent);
    wait_logs(&k, "second", "hello-from-second");
    let p = k.json(&["pod", "web"]).unwrap();
    assert_eq!(container_of(&p), (cid.clone(), 0), "the running container was not disturbed: {p}");
    assert_eq!(p["status"]["phase"], "Running");
    let docker_id = cid.trim_start_matches("docker://");
    let running = docker(&["inspect", "-f", "{{.State.Running}}", docker_id]).unwrap();
    assert_eq!(running.trim(), "true");

    // SIGKILL the agent and start a new one for the same node: it adopts the running
    // containers (no restart) and re-registers its new log port.
    let mut old_agent = agent;
    old_agent.kill().unwrap();
    let agent = c.spawn_agent(&node, "docker", &[]).unwrap();
    wait_for_reporting(Duration::from_secs(60), "the Node to report the new agent's port", |last| {
        let n = k.json(&["node", &node]);
        *last = format!("{n:?}\nagent log:\n{}", agent.log_tail(20));
        (n?["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.port as i64).then_some(())
    });
    wait_logs(&k, "web", "hello-from-web");
    let p = k.json(&["pod", "web"]).unwrap();
    assert_eq!(container_of(&p), (cid.clone(), 0), "the new agent adopted the container: {p}");
    // The old handle must not remove the node's containers when dropped.
    old_agent.runtime = String::new();
    drop(old_agent);

    // Deletions still flow through the new leader: the agent stops the pods, then they go.
    k.ok(&["delete", "pod", "web", "--wait=false"]);
    k.ok(&["delete", "pod", "second", "--wait=false"]);
    wait_pod_gone(&k, "web");
    wait_pod_gone(&k, "second");
    wait_for_reporting(Duration::from_secs(30), "the pod's containers removed", |last| {
        *last = docker(&["ps", "-aq", "--filter", &format!("label=io.skiff.node-name={node}")]).unwrap();
        last.trim().is_empty().then_some(())
    });
    // The heartbeat keeps going to the new leader; the Node is still Ready.
    let n = k.json(&["node", &node]).unwrap();
    assert_eq!(condition(&n, "Ready").as_deref(), Some("True"));
}

/// Opens `AgentGateway.Connect` on `addr` with a Hello and returns the first answer other than
/// a service set (a leader sends the service set first, then the pod set).
async fn first_gateway_message(addr: &str, node: &str) -> skiff_proto::agent::GatewayMessage {
    use skiff_proto::agent::{agent_gateway_client::AgentGatewayClient, agent_message, AgentMessage, Hello};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = AgentGatewayClient::new(channel);
    let node_json = serde_json::json!({"metadata": {"name": node}, "status": {}}).to_string();
    let hello = AgentMessage { msg: Some(agent_message::Msg::Hello(Hello { node_name: node.into(), node_json })) };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello).await.unwrap();
    let mut inbound = client.connect(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), inbound.message()).await;
        let m = next.expect("an answer within 10 s").expect("no stream error").expect("a message");
        if !matches!(m.msg, Some(skiff_proto::agent::gateway_message::Msg::Services(_))) {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_agent_runs_pods_with_logs() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (mut c, _leader, follower) = cluster().await;

    // The gateway: a follower points at the leader; the leader sends the (empty) pod set.
    // (Right after an election a follower may not know the leader yet, and startup elections
    // can move leadership: retry the round until both answers agree with one leader.)
    use skiff_proto::agent::gateway_message::Msg;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        assert!(Instant::now() < deadline, "gateway answers never settled; last: {last}");
        let leader = c.leader(Duration::from_secs(10)).await.unwrap();
        let leader_addr = c.member(leader).unwrap().grpc.clone();
        let other = c.members.iter().find(|m| m.id != leader).unwrap().grpc.clone();
        let from_follower = first_gateway_message(&other, "probe").await.msg;
        let from_leader = first_gateway_message(&leader_addr, "probe").await.msg;
        match (&from_follower, &from_leader) {
            (Some(Msg::NotLeader(nl)), Some(Msg::Pods(set))) if nl.leader_addr == leader_addr => {
                assert!(set.pods_json.is_empty());
                break;
            }
            _ => last = format!("follower: {from_follower:?}, leader {leader_addr}: {from_leader:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir());
    let node = unique("gw-proc");
    let agent = c.spawn_agent(&node, "process", &["--labels", "zone=a,tier=test"]).unwrap();
    let n = wait_node_ready(&k, &agent);
    assert_eq!(n["metadata"]["labels"]["zone"], "a");
    // Heartbeats (every second) are never written to the store: the Node does not change.
    let rv = n["metadata"]["resourceVersion"].clone();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let n = k.json(&["node", &node]).unwrap();
        assert_eq!(n["metadata"]["resourceVersion"], rv, "heartbeats must not write the Node");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(n["status"]["nodeInfo"]["containerRuntimeVersion"], "process://skiff");

    k.apply(&pod_manifest("proc", &node, "hello-from-process"));
    let p = wait_pod_ready(&k, "proc", &agent);
    assert_eq!(container_of(&p).1, 0);
    wait_logs(&k, "proc", "hello-from-process");

    // `skiff logs` goes through the same API.
    let out = run_bounded(
        Command::new(bin()).args(["--kubeconfig"]).arg(c.kubeconfig(follower).unwrap()).args(["logs", "proc"]),
        b"",
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello-from-process"), "{out:?}");

    // `-f` streams: the first line arrives while the container keeps running.
    for mut cmd in [
        {
            let mut c = Command::new(kubectl_path());
            c.arg("--kubeconfig").arg(&k.kubeconfig).args(["logs", "-f", "proc"]);
            c
        },
        {
            let mut c = Command::new(bin());
            c.arg("--kubeconfig").arg(&k.kubeconfig).args(["logs", "-f", "proc"]);
            c
        },
    ] {
        follow_shows(&mut cmd, "hello-from-process");
    }

    // A pod bound to a node nobody runs gets a clear 503 for its logs (unless the leader's
    // garbage collector, which deletes pods bound to nodes that do not exist, was faster).
    k.apply(&pod_manifest("orphan", "no-such-node", "x"));
    let o = k.run(&["logs", "orphan"]);
    assert!(!o.ok && (o.stderr.contains("not registered") || o.stderr.contains("NotFound")), "{}", o.stderr);
    k.ok(&["delete", "pod", "orphan", "--grace-period=0", "--force", "--ignore-not-found"]);

    // A whole-control-plane outage: the agent keeps the pod running and reconnects after.
    let before = container_of(&k.json(&["pod", "proc"]).unwrap());
    let ids: Vec<u64> = c.members.iter().map(|m| m.id).collect();
    for id in &ids {
        c.kill(*id).unwrap();
    }
    wait_for_reporting(Duration::from_secs(30), "the agent to notice the outage", |last| {
        *last = agent.log_tail(5);
        last.contains("control-plane connection").then_some(())
    });
    for id in &ids {
        c.restart(*id).unwrap();
    }
    c.leader(Duration::from_secs(30)).await.unwrap();
    wait_logs(&k, "proc", "hello-from-process");
    let after = container_of(&k.json(&["pod", "proc"]).unwrap());
    assert_eq!(after, before, "the pod was not restarted by the outage");

    k.ok(&["delete", "pod", "proc", "--wait=false"]);
    wait_pod_gone(&k, "proc");

    // `--fake-nodes 3`: three fake agents in one process, each its own Ready node.
    let fake = unique("gw-fake");
    let fakes = c.spawn_agent(&fake, "fake", &["--fake-nodes", "3"]).unwrap();
    for i in 1..=3 {
        let name = format!("{fake}-{i}");
        wait_for_reporting(Duration::from_secs(60), &format!("fake node {name} Ready"), |last| {
            let n = k.json(&["node", &name]);
            *last = format!("{n:?}\nagent log:\n{}", fakes.log_tail(20));
            (condition(&n?, "Ready").as_deref() == Some("True")).then_some(())
        });
    }
    k.apply(&pod_manifest("on-fake", &format!("{fake}-2"), "x"));
    wait_pod_ready(&k, "on-fake", &fakes);
}

/// The events of pod `name` as (reason, type, message, fieldPath, source.host) tuples.
fn pod_events(k: &Kubectl, name: &str) -> Vec<(String, String, String, String, String)> {
    let selector = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    let Some(l) = k.json(&["events", "--field-selector", &selector]) else { return Vec::new() };
    let s = |e: &Value, p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    l["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (s(e, "/reason"), s(e, "/type"), s(e, "/message"), s(e, "/involvedObject/fieldPath"), s(e, "/source/host"))
        })
        .collect()
}

/// What `kubectl describe pod` lists under Events comes from the agent (as kubelet on its
/// node) and the scheduler: a started container, a failing readiness probe, a crash loop's
/// back-off, and the stop when the pod is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_agent_records_pod_events_for_kubectl_describe() {
    let _deadline = skiff::proc_cluster::test_deadline();
    if !docker_available() {
        eprintln!("skipping: no Docker engine answers");
        return;
    }
    build_images(Path::new(env!("CARGO_MANIFEST_DIR")));
    let (c, _leader, follower) = cluster().await;
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir());
    let node = unique("ev-docker");
    let agent = c.spawn_agent(&node, "docker", &[]).unwrap();
    wait_node_ready(&k, &agent);
    // No nodeName: the scheduler places it on the only node.
    k.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: noisy
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: skiff/busybox:1
    command: ["sh", "-c", "while true; do sleep 1; done"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
  - name: crash
    image: skiff/busybox:1
    command: ["sh", "-c", "exit 3"]
"#,
    );
    let want = [
        ("Scheduled", "Normal", "", ""),
        ("Pulled", "Normal", "spec.containers{main}", "Container image \"skiff/busybox:1\" already present on machine"),
        ("Created", "Normal", "spec.containers{main}", "Created container: main"),
        ("Started", "Normal", "spec.containers{main}", "Started container main"),
        ("Unhealthy", "Warning", "spec.containers{main}", "Readiness probe failed: "),
        (
            "BackOff",
            "Warning",
            "spec.containers{crash}",
            "Back-off restarting failed container crash in pod noisy_default(",
        ),
    ];
    let events = wait_for_reporting(Duration::from_secs(60), "the pod's events", |last| {
        let evs = pod_events(&k, "noisy");
        *last = format!("{evs:#?}\nagent log:\n{}", agent.log_tail(20));
        want.iter()
            .all(|(reason, ty, path, msg)| {
                evs.iter().any(|e| &e.0 == reason && &e.1 == ty && &e.3 == path && e.2.starts_with(msg))
            })
            .then_some(evs)
    });
    for e in events.iter().filter(|e| e.0 != "Scheduled") {
        assert_eq!(e.4, node, "agent events come from the pod's node: {e:?}");
    }
    // kubectl describe shows them, from kubelet (and the scheduler's as default-scheduler).
    let d = k.ok(&["describe", "pod", "noisy"]);
    for needle in [
        "Started container main",
        "Readiness probe failed:",
        "Back-off restarting failed container crash",
        "kubelet",
        "default-scheduler",
    ] {
        assert!(d.contains(needle), "describe lacks {needle:?}:\n{d}");
    }
    // Repeats are counted in one Event, not one per failure.
    wait_for_reporting(Duration::from_secs(30), "the readiness failures counted in one Event", |last| {
        let selector = "involvedObject.name=noisy,reason=Unhealthy";
        let l = k.json(&["events", "--field-selector", selector])?;
        *last = l.to_string();
        let items = l["items"].as_array()?;
        assert!(items.len() <= 1, "one Event per repeated failure: {l}");
        (items.first()?["count"].as_i64()? >= 2).then_some(())
    });

    // Deleting the pod stops its running container: Killing.
    k.ok(&["delete", "pod", "noisy", "--wait=false"]);
    wait_for_reporting(Duration::from_secs(60), "the Killing event", |last| {
        let evs = pod_events(&k, "noisy");
        *last = format!("{evs:#?}");
        evs.iter()
            .any(|e| {
                e.0 == "Killing"
                    && e.1 == "Normal"
                    && e.2 == "Stopping container main"
                    && e.3 == "spec.containers{main}"
            })
            .then_some(())
    });
    wait_pod_gone(&k, "noisy");
}
