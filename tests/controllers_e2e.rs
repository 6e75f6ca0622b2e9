//! End-to-end: the leader's scheduler and controllers with real `skiff agent` processes.
//! A Deployment spreads over three nodes; a dead node's pods are recreated on the others; an
//! update to a missing image halts at its progress deadline and `rollout undo` restores it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use skiff::proc_cluster::{build_images, docker_available, run_kubectl, wait_for_reporting, ProcAgent, ProcCluster};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

struct Kube {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kube {
    fn run(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let o = run_kubectl(&self.kubeconfig, &self.cache, args, stdin);
        (o.ok, o.stdout, o.stderr)
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        let out = self.ok(&["get", "pods", "-l", selector, "-o", "json"], "");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

fn deployment(name: &str, replicas: u32, image: &str, deadline_s: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: {deadline_s}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn running_on(pods: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut per = std::collections::BTreeMap::new();
    for p in pods {
        if p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null() {
            *per.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_spreads_over_nodes_and_a_dead_nodes_pods_move() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let k = Kube { kubeconfig: c.kubeconfig(leader).unwrap(), cache: c.dir().join("kcache") };
    // Three nodes, each its own agent process with the fake runtime (containers "run" at once).
    let tag = std::process::id();
    let names: Vec<String> = (1..=3).map(|i| format!("fake{i}-{tag}")).collect();
    let mut agents: Vec<_> = names.iter().map(|n| c.spawn_agent(n, "fake", &[]).unwrap()).collect();
    wait_for_reporting(Duration::from_secs(30), "3 Ready nodes", |last| {
        *last = k.run(&["get", "nodes", "--no-headers"], "").1;
        (last.lines().filter(|l| l.contains(" Ready ")).count() == 3).then_some(())
    });

    k.ok(&["apply", "-f", "-"], &deployment("spread", 6, "skiff/busybox:1", 600));
    let per = wait_for_reporting(Duration::from_secs(30), "6 running pods", |last| {
        let per = running_on(&k.pods("app=spread"));
        *last = format!("{per:?}");
        (per.values().sum::<usize>() == 6).then_some(per)
    });
    assert_eq!(per.len(), 3, "replicas spread over all three nodes: {per:?}");
    assert!(per.values().all(|n| *n == 2), "2 per node: {per:?}");

    // Kill one agent: after the lease TTL (4 s) and the eviction timeout (2 s) its pods are
    // deleted and recreated on the two live nodes.
    let dead = names[0].clone();
    agents[0].kill().unwrap();
    wait_for_reporting(Duration::from_secs(60), "the dead node's pods recreated elsewhere", |last| {
        let pods = k.pods("app=spread");
        let per = running_on(&pods);
        *last = format!("{per:?} ({} pods)", pods.len());
        (per.values().sum::<usize>() == 6 && !per.contains_key(&dead) && pods.len() == 6).then_some(())
    });
    let node = k.ok(&["get", "node", &dead, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], "");
    assert_eq!(node, "Unknown");
    let taints = k.ok(&["get", "node", &dead, "-o", "jsonpath={.spec.taints[*].key}"], "");
    assert!(taints.contains("node.kubernetes.io/unreachable"), "{taints}");
    drop(agents);
}

/// What the leader-failure tests start from: a 3-replica cluster driven through a follower, two
/// fake-runtime agents Ready, and a Deployment rolled out. Bound in field order, the agents
/// (last) are dropped, and stop, before the cluster.
struct RolledOut {
    c: ProcCluster,
    leader: u64,
    k: Kube,
    _agents: Vec<ProcAgent>,
}

/// Starts [`RolledOut`] with Deployment `name` of `replicas` on `skiff/busybox:1`; nodes are
/// named after it.
async fn rolled_out_behind_a_follower(name: &str, replicas: u32) -> RolledOut {
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let follower = c.members.iter().map(|m| m.id).find(|id| *id != leader).unwrap();
    let k = Kube { kubeconfig: c.kubeconfig(follower).unwrap(), cache: c.dir().join("kcache") };
    let tag = std::process::id();
    let agents = (1..=2).map(|i| c.spawn_agent(&format!("{name}{i}-{tag}"), "fake", &[]).unwrap()).collect();
    wait_for_reporting(Duration::from_secs(30), "2 Ready nodes", |last| {
        *last = k.run(&["get", "nodes", "--no-headers"], "").1;
        (last.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(())
    });
    k.ok(&["apply", "-f", "-"], &deployment(name, replicas, "skiff/busybox:1", 600));
    k.ok(&["rollout", "status", &format!("deployment/{name}"), "--timeout=60s"], "");
    RolledOut { c, leader, k, _agents: agents }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_rollout_still_completes_it() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let RolledOut { mut c, leader, k, _agents } = rolled_out_behind_a_follower("roll", 6).await;

    // Start a rolling update, then SIGKILL the leader while it runs.
    k.ok(&["apply", "-f", "-"], &deployment("roll", 6, "skiff/busybox:2", 600));
    c.kill(leader).unwrap();
    let new_leader = c.leader(Duration::from_secs(30)).await.unwrap();
    assert_ne!(new_leader, leader);
    let k2 = Kube { kubeconfig: c.kubeconfig(new_leader).unwrap(), cache: c.dir().join("kcache2") };
    wait_for_reporting(Duration::from_secs(60), "the rollout to finish under the new leader", |last| {
        let (ok, out, err) = k2.run(&["rollout", "status", "deployment/roll", "--timeout=5s"], "");
        *last = format!("{out}{err}");
        ok.then_some(())
    });
    wait_for_reporting(Duration::from_secs(30), "exactly 6 pods, all on the new image", |last| {
        let pods = k2.pods("app=roll");
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        *last = format!("{} pods, {} live", pods.len(), live.len());
        (pods.len() == 6 && live.iter().all(|p| p["spec"]["containers"][0]["image"] == "skiff/busybox:2")).then_some(())
    });
}

/// The uids of `pods`.
fn uids(pods: &[Value]) -> std::collections::BTreeSet<String> {
    pods.iter().filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string)).collect()
}

/// `pods` are the pods of `before`, none of them being deleted (`when` names the moment).
fn assert_kept(pods: &[Value], before: &std::collections::BTreeSet<String>, when: &str) {
    let live = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
    assert_eq!(&uids(pods), before, "pods replaced {when}");
    assert_eq!(live, before.len(), "pods being deleted {when}");
}

/// Processes of this test stopped with SIGSTOP, continued however the test ends.
struct Frozen(Vec<libc::pid_t>);

impl Frozen {
    fn stop(pids: &[u32]) -> Frozen {
        let pids: Vec<libc::pid_t> = pids.iter().map(|p| *p as libc::pid_t).collect();
        for pid in &pids {
            // SAFETY: a signal to a child process of this test.
            assert_eq!(unsafe { libc::kill(*pid, libc::SIGSTOP) }, 0);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: as above.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
    }
}

/// A frozen leader (SIGSTOP) keeps its agents' streams open until their HTTP/2 keepalive gives
/// up (5–10 s); the leader elected meanwhile hears no node until then. It must not judge them
/// by the plain lease (4 s + 2 s eviction): with `--node-leader-grace-ms 0` every pod here is
/// deleted and recreated about 7 s into the freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_costs_no_pod_its_place() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let RolledOut { c, leader, k, _agents } = rolled_out_behind_a_follower("frz", 4).await;
    let before = uids(&k.pods("app=frz"));
    assert_eq!(before.len(), 4);

    let thaw = Frozen::stop(&[c.member_pid(leader).unwrap()]);
    // Watch for 14 s, past the agents' keepalive (at most 10 s) and past where the plain lease
    // and eviction timeout ran out (6 s after the new leader started): the same four pods all
    // along. A read may fail while the followers elect a leader; those are retried.
    let watched = std::time::Instant::now();
    let mut reads = 0;
    while watched.elapsed() < Duration::from_secs(14) {
        let (ok, out, _) = k.run(&["get", "pods", "-l", "app=frz", "-o", "json", "--request-timeout=3s"], "");
        if ok {
            let v: Value = serde_json::from_str(&out).unwrap();
            let now = v["items"].as_array().cloned().unwrap_or_default();
            assert_kept(&now, &before, &format!("{:?} into the freeze", watched.elapsed()));
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(reads >= 10, "only {reads} reads answered during the freeze");
    drop(thaw);
    let nodes = k.ok(&["get", "nodes", "--no-headers"], "");
    assert_eq!(nodes.lines().filter(|l| l.contains(" Ready ")).count(), 2, "{nodes}");
}

/// Every agent silent at once (frozen here; a leader cut off from all its agents sees the
/// same): the nodes turn NotReady and tainted, but their pods stay, since there is nowhere
/// healthier to move them and the silence is likelier the leader's own. The agents come back
/// to the same pods. Without the hold, the pods are deleted 6 s in (lease 4 s + eviction 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_silent_at_once_costs_no_pod_its_place() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let RolledOut { c, k, _agents: agents, .. } = rolled_out_behind_a_follower("hush", 4).await;
    let before = uids(&k.pods("app=hush"));
    assert_eq!(before.len(), 4);

    let frozen = Frozen::stop(&agents.iter().map(|a| a.pid().unwrap()).collect::<Vec<_>>());
    // Watch for 11 s, well past the plain lease and eviction timeout (6 s).
    let watched = std::time::Instant::now();
    let mut silent_seen = None;
    while watched.elapsed() < Duration::from_secs(11) {
        assert_kept(&k.pods("app=hush"), &before, &format!("{:?} into the silence", watched.elapsed()));
        let nodes = k.ok(&["get", "nodes", "--no-headers"], "");
        if silent_seen.is_none() && nodes.lines().filter(|l| l.contains(" NotReady ")).count() == 2 {
            silent_seen = Some(watched.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let silent_seen = silent_seen.expect("both nodes were judged NotReady during the silence");
    assert!(silent_seen < Duration::from_secs(8), "nodes judged NotReady only {silent_seen:?} in");
    drop(frozen);
    wait_for_reporting(Duration::from_secs(30), "both nodes Ready again", |last| {
        *last = k.run(&["get", "nodes", "--no-headers"], "").1;
        (last.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(())
    });
    assert_eq!(uids(&k.pods("app=hush")), before, "the agents came back to the same pods");
    drop(agents);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_halts_at_the_deadline_and_undo_restores() {
    let _deadline = skiff::proc_cluster::test_deadline();
    if !docker_available() {
        eprintln!("skipping: no Docker engine answers");
        return;
    }
    build_images(Path::new(env!("CARGO_MANIFEST_DIR")));
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let k = Kube { kubeconfig: c.kubeconfig(leader).unwrap(), cache: c.dir().join("kcache") };
    let node = format!("undo-{}", std::process::id());
    let _agent = c.spawn_agent(&node, "docker", &["--proxy-address", "none"]).unwrap();
    wait_for_reporting(Duration::from_secs(30), "a Ready node", |last| {
        *last = k.run(&["get", "nodes", "--no-headers"], "").1;
        last.contains(" Ready ").then_some(())
    });

    k.ok(&["apply", "-f", "-"], &deployment("app", 2, "skiff/busybox:1", 8));
    k.ok(&["rollout", "status", "deployment/app", "--timeout=60s"], "");
    let old: Vec<String> =
        k.pods("app=app").iter().map(|p| p["metadata"]["uid"].as_str().unwrap().to_string()).collect();

    // An image that does not exist: the new pod waits with ErrImageNeverPull, the rollout halts
    // at the deadline, and the old pods keep running.
    k.ok(&["apply", "-f", "-"], &deployment("app", 2, "skiff/missing:1", 8));
    let (ok, _, err) = k.run(&["rollout", "status", "deployment/app", "--timeout=60s"], "");
    assert!(!ok && err.contains("exceeded its progress deadline"), "{err}");
    let pods = k.pods("app=app");
    let waiting: Vec<&Value> = pods
        .iter()
        .filter(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull")
        .collect();
    assert!(!waiting.is_empty(), "a pod waits with ErrImageNeverPull: {pods:?}");
    let still: usize = pods
        .iter()
        .filter(|p| {
            old.contains(&p["metadata"]["uid"].as_str().unwrap().to_string()) && p["status"]["phase"] == "Running"
        })
        .count();
    assert_eq!(still, 2, "the old pods keep serving");

    // Undo: back to the previous template; the rollout completes.
    let out = k.ok(&["rollout", "undo", "deployment/app"], "");
    assert!(out.contains("rolled back"), "{out}");
    k.ok(&["rollout", "status", "deployment/app", "--timeout=60s"], "");
    let image = k.ok(&["get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[0].image}"], "");
    assert_eq!(image, "skiff/busybox:1");
    wait_for_reporting(Duration::from_secs(30), "only the 2 working pods left", |last| {
        let pods = k.pods("app=app");
        *last = format!("{} pods", pods.len());
        (pods.len() == 2 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "skiff/busybox:1")).then_some(())
    });
    // The template is revision 1's again (as kubectl sends it back, with the empty objects
    // its Go types add), so revision 1's ReplicaSet is the new one, now revision 3, and its
    // pods, which never stopped serving, stay: none is replaced.
    let history = k.ok(&["rollout", "history", "deployment/app"], "");
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let mut kept: Vec<String> =
        k.pods("app=app").iter().map(|p| p["metadata"]["uid"].as_str().unwrap().to_string()).collect();
    kept.sort();
    let mut old = old;
    old.sort();
    assert_eq!(kept, old, "the undo kept revision 1's pods");
    k.ok(&["delete", "deployment", "app"], "");
    wait_for_reporting(Duration::from_secs(60), "pods gone", |last| {
        *last = k.run(&["get", "pods", "--no-headers"], "").1;
        last.trim().is_empty().then_some(())
    });
}
