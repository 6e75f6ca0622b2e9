//! End-to-end: a Deployment behind a NodePort Service on real Docker containers, two agents,
//! three `skiff server` replicas. Requests reach several pods; deleting a pod and a rolling
//! update under continuous requests fail none.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff::proc_cluster::{build_images, docker_available, http_get, run_kubectl, wait_for, ProcCluster};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let o = run_kubectl(kubeconfig, cache, args, stdin);
    (o.ok, o.stdout, o.stderr)
}

/// Continuous requests in the background; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: String) -> Load {
        let (stop, ok, failed) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, o, f, e) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match http_get(&addr) {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        e.lock().unwrap().push(err);
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Load { stop, ok, failed, errors, handle: Some(handle) }
    }

    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed), self.errors.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeport_service_balances_and_rolling_update_drops_no_request() {
    let _deadline = skiff::proc_cluster::test_deadline();
    if !docker_available() {
        eprintln!("skipping: no Docker engine answers");
        return;
    }
    build_images(Path::new(env!("CARGO_MANIFEST_DIR")));
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let kc = c.kubeconfig(leader).unwrap();
    let cache = c.dir().join("kcache");
    let k = |args: &[&str], stdin: &str| kubectl(&kc, &cache, args, stdin);
    // Two agents on this machine: node ports on 127.0.0.1 (userspace proxy) and on this host's
    // address (127.0.0.2 if it has none) with the default `auto`, which is the iptables proxy as
    // root (netfilter rules), so both modes serve the same Service. Clients on this host are
    // masqueraded; a client on "another machine" (a network namespace) is not.
    let node_a = format!("svc-a-{}", std::process::id());
    let node_b = format!("svc-b-{}", std::process::id());
    let fast = ["--termination-propagation-delay-ms", "1500"];
    let userspace = ["--proxy-address", "127.0.0.1", "--proxy-mode", "userspace"];
    let _a = c.spawn_agent(&node_a, "docker", &[&userspace[..], &fast[..]].concat()).unwrap();
    let b_ip = skiff_testkit::host_address().map_or("127.0.0.2".to_string(), |ip| ip.to_string());
    let iptables = ["--proxy-address", b_ip.as_str(), "--proxy-mode", "auto"];
    let mut b = c.spawn_agent(&node_b, "docker", &[&iptables[..], &fast[..]].concat()).unwrap();
    wait_for(Duration::from_secs(30), "two Ready nodes", || {
        let (_, out, _) = k(&["get", "nodes", "--no-headers"], "");
        (out.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(())
    });
    // As root (CI), `auto` is the kernel's forwarding and the agent's own pod network.
    let started = wait_for(Duration::from_secs(10), "agent b's start line", || {
        b.log_tail(50).lines().find(|l| l.starts_with(&format!("skiff agent {node_b}:"))).map(str::to_string)
    });
    assert!(
        started.contains(&format!("iptables proxy on {b_ip}"))
            && started.contains("pod network 10.222.0.0/16 on skiff0"),
        "{started}"
    );

    // A unique node port so a cluster left running on this machine does not collide.
    let port = 30000 + (std::process::id() % 2000) as u16;
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web.yaml"))
        .unwrap()
        .replace("nodePort: 30080", &format!("nodePort: {port}"));
    let (ok, _, err) = k(&["apply", "-f", "-"], &manifest);
    assert!(ok, "{err}");
    let (ok, _, err) = k(&["rollout", "status", "deployment/web", "--timeout=90s"], "");
    assert!(ok, "first rollout: {err}");
    let addrs = [format!("127.0.0.1:{port}"), format!("{b_ip}:{port}")];
    let seen = wait_for(Duration::from_secs(30), "responses from 2 distinct pods through the node port", || {
        let mut names = std::collections::BTreeSet::new();
        for i in 0..30 {
            if let Ok(n) = http_get(&addrs[i % 2]) {
                names.insert(n);
            }
        }
        (names.len() >= 2).then_some(names)
    });
    let (_, pods, _) = k(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"], "");
    for n in &seen {
        assert!(pods.contains(n.as_str()), "{n} is not one of the pods: {pods}");
    }
    // kubectl shows the node port and the ready endpoints (`describe svc` reads EndpointSlices).
    let (_, ips, _) = k(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"], "");
    let (ok, described, err) = k(&["describe", "svc", "web"], "");
    assert!(ok, "{err}");
    assert!(described.contains(&format!("{port}/TCP")), "{described}");
    let endpoints_line = described.lines().find(|l| l.starts_with("Endpoints:")).unwrap_or_default().to_string();
    for ip in ips.split_whitespace() {
        assert!(endpoints_line.contains(&format!("{ip}:8080")), "{ip} missing from {endpoints_line:?}:\n{described}");
    }
    let (ok, slices, err) = k(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"], "");
    assert!(ok && slices.contains("IPv4") && slices.contains("8080"), "{slices}{err}");

    // Deleting a pod under load fails no request.
    let load = Load::start(addrs[0].clone());
    std::thread::sleep(Duration::from_millis(500));
    let victim = seen.iter().next().unwrap().clone();
    let (ok, _, err) = k(&["delete", "pod", &victim], "");
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_secs(1));
    let (served, failed, errors) = load.finish();
    assert!(served > 20, "too few requests served: {served}");
    assert_eq!(failed, 0, "requests failed while a pod was deleted: {errors:?}");

    // A rolling update under load, through the iptables proxy, fails no request.
    let load = Load::start(addrs[1].clone());
    let (ok, _, err) = k(&["rollout", "restart", "deployment/web"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = k(&["rollout", "status", "deployment/web", "--timeout=120s"], "");
    assert!(ok, "rolling update: {err}");
    std::thread::sleep(Duration::from_secs(2));
    let (served, failed, errors) = load.finish();
    assert!(served > 50, "too few requests served: {served}");
    assert_eq!(failed, 0, "requests failed during the rolling update: {errors:?}");
    let (_, rs, _) = k(&["get", "rs", "-l", "app=web", "--no-headers"], "");
    assert_eq!(rs.lines().count(), 2, "old and new ReplicaSet: {rs}");

    // A pod that is Ready but refuses connections (its server is not running: no readiness
    // probe tells): through either proxy no request fails, the iptables one retrying it too.
    let refuser = "apiVersion: v1\nkind: Pod\nmetadata: {name: refuser, labels: {app: web}}\nspec:\n  \
                   terminationGracePeriodSeconds: 1\n  containers:\n  - name: idle\n    image: skiff/busybox:1\n    \
                   imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n";
    let (ok, _, err) = k(&["apply", "-f", "-"], refuser);
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(60), "the refusing pod among the ready endpoints", || {
        let (_, ip, _) = k(&["get", "pod", "refuser", "-o", "jsonpath={.status.podIP}"], "");
        let (_, ready, _) = k(&["get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].ip}"], "");
        (!ip.is_empty() && ready.split_whitespace().any(|r| r == ip)).then_some(())
    });
    for addr in &addrs {
        for i in 0..12 {
            let name = http_get(addr).unwrap_or_else(|e| panic!("request {i} to {addr} with a refusing endpoint: {e}"));
            assert!(name.starts_with("web-"), "request {i} to {addr} answered by {name}");
        }
    }
    assert!(
        b.log_tail(1_000_000).contains("endpoint refused a connection"),
        "agent {node_b} never saw the refusal:\n{}",
        b.log_tail(100)
    );
    let (ok, _, err) = k(&["delete", "pod", "refuser", "--wait=false"], "");
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "the refusing pod gone", || {
        let (_, names, _) = k(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"], "");
        (!names.split_whitespace().any(|n| n == "refuser")).then_some(())
    });

    // A client on another machine (a network namespace of its own) through the iptables node
    // port, which forwards it unmasqueraded, and to a pod directly: no request fails.
    if !b_ip.starts_with("127.") {
        let ns =
            skiff::proc_cluster::ClientNetns::create().expect("a client network namespace (the test runs as root)");
        let (_, pod_ips, _) = k(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"], "");
        let pod_ip = pod_ips.split_whitespace().next().expect("a pod IP").to_string();
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).arg(bin()).args(["bench", "proxy-measure", "--mode", "iptables"]);
        cmd.args(["--node-addr", &addrs[1], "--direct-addr", &format!("{pod_ip}:8080"), "--conns", "4"]);
        cmd.args(["--duration", "2", "--rounds", "1"]);
        cmd.args(["--node-from", &ns.node_from.to_string(), "--direct-from", &ns.direct_from.to_string()]);
        let out = skiff::proc_cluster::run_bounded(&mut cmd, b"", Duration::from_secs(60)).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        let rps = |key: &str| -> f64 {
            let field = text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap_or("0");
            field.parse().unwrap_or(0.0)
        };
        assert!(rps("nodeport_rps") > 10.0 && rps("direct_rps") > 10.0, "{text}");
        assert!(text.matches("errors=0").count() == 2, "requests failed from the client namespace:\n{text}");
    }

    // Clean up the containers: delete the Deployment and wait for its pods to go.
    k(&["delete", "-f", "-"], &manifest);
    wait_for(Duration::from_secs(60), "pods gone", || {
        let (_, out, _) = k(&["get", "pods", "--no-headers"], "");
        out.trim().is_empty().then_some(())
    });
    // A cleanly stopped agent removes its iptables rules.
    b.stop().unwrap();
    let tag = skiff_agent::proxy::iptables::tag(&node_b, b_ip.parse().unwrap());
    let rules = skiff::proc_cluster::run_bounded(
        std::process::Command::new("iptables").args(["-t", "nat", "-S"]),
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&tag), "agent {node_b} left iptables rules behind:\n{rules}");
}
