//! End-to-end: the README's quickstart. `skiff up` with its default, relative data directory
//! brings up a cluster whose agent runs `examples/web.yaml` on Docker, reachable on its node
//! port; Ctrl-C (SIGINT) stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skiff::proc_cluster::{build_images, docker_available, http_get, run_kubectl, wait_for};

/// Kills `skiff up` if the test ends early, and removes the containers of its node.
struct Up {
    child: Child,
    node: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let filter = format!("label={}={}", skiff_agent::runtime::labels::NODE_NAME, self.node);
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

#[test]
fn skiff_up_runs_the_example_web_app_and_stops_on_ctrl_c() {
    let _deadline = skiff::proc_cluster::test_deadline();
    if !docker_available() {
        eprintln!("skipping: no Docker engine answers");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    build_images(root);
    let dir = tempfile::tempdir().unwrap();
    let ports = skiff_testkit::free_ports(3);
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("up")
        .args(["--grpc-port", &ports[0].to_string(), "--api-port", &ports[1].to_string()])
        .args(["--agent-port", &ports[2].to_string()])
        .current_dir(dir.path())
        .env_remove("SKIFF_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // `skiff up` names its node after this host.
    let node = skiff::cli::agent::hostname();
    let mut up = Up { child, node };
    // Its output, line by line, from a thread (reads block).
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.last().is_some_and(|l: &String| l.starts_with("Press Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("skiff up did not come up ({e}); it printed:\n{}", printed.join("\n")),
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("agent with the docker runtime"), "{text}");
    let kubeconfig =
        PathBuf::from(printed.iter().find_map(|l| l.strip_prefix("export KUBECONFIG=")).expect("a KUBECONFIG line"));
    // The default data directory, relative to where `skiff up` runs.
    assert_eq!(kubeconfig, dir.path().join("skiff-data/kubeconfig"), "{text}");
    let cache = dir.path().join("kcache");
    let k = |args: &[&str], stdin: &str| run_kubectl(&kubeconfig, &cache, args, stdin);

    let port = 30000 + (std::process::id() % 2000) as u16 + 1;
    let manifest = std::fs::read_to_string(root.join("examples/web.yaml"))
        .unwrap()
        .replace("nodePort: 30080", &format!("nodePort: {port}"));
    let out = k(&["apply", "-f", "-"], &manifest);
    assert!(out.ok, "{}", out.stderr);
    let out = k(&["rollout", "status", "deployment/web", "--timeout=90s"], "");
    assert!(out.ok, "rollout: {}{}", out.stdout, out.stderr);
    let pods = k(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"], "").stdout;
    let addr = format!("127.0.0.1:{port}");
    let seen = wait_for(Duration::from_secs(30), "answers from 2 pods through the node port", || {
        let names: std::collections::BTreeSet<String> = (0..12).filter_map(|_| http_get(&addr).ok()).collect();
        (names.len() >= 2).then_some(names)
    });
    for n in &seen {
        assert!(pods.split_whitespace().any(|p| p == n), "{n} is not one of the pods {pods}");
    }

    let out = k(&["delete", "-f", "-"], &manifest);
    assert!(out.ok, "{}", out.stderr);
    wait_for(Duration::from_secs(60), "the pods gone", || {
        k(&["get", "pods", "--no-headers"], "").stdout.trim().is_empty().then_some(())
    });

    // Ctrl-C: a clean stop.
    let sent = Command::new("kill").args(["-INT", &up.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_for(Duration::from_secs(30), "skiff up to exit after SIGINT", || up.child.try_wait().unwrap());
    assert!(status.success(), "skiff up exited with {status}");
}

/// `n` consecutive free ports (`skiff up` gives replica N the first port + N - 1).
fn consecutive_free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = skiff_testkit::free_port();
        if (1..n).all(|i| std::net::TcpListener::bind(("0.0.0.0", first + i)).is_ok()) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Three replicas come up, elect and take a write without election noise in the log: the last
/// replica bootstraps once the others listen (no vote request to a replica not yet started),
/// and openraft's late-vote warning is dropped.
#[test]
fn three_replicas_come_up_without_election_noise() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let dir = tempfile::tempdir().unwrap();
    let grpc = consecutive_free_ports(6);
    let api = grpc + 3;
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("up")
        .args(["--replicas", "3", "--no-agent"])
        .args(["--grpc-port", &grpc.to_string(), "--api-port", &api.to_string()])
        .current_dir(dir.path())
        .env_remove("SKIFF_DATA_DIR")
        .env_remove("SKIFF_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut up = Up { child, node: format!("none-{}", std::process::id()) };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("Press Ctrl-C") => break,
            Ok(_) => {}
            Err(e) => panic!("skiff up did not come up ({e}): {}", std::fs::read_to_string(&log).unwrap_or_default()),
        }
    }
    let kubeconfig = dir.path().join("skiff-data/kubeconfig");
    let cache = dir.path().join("kcache");
    wait_for(Duration::from_secs(30), "a namespace created through replica 1", || {
        run_kubectl(&kubeconfig, &cache, &["create", "namespace", "up-check"], "").ok.then_some(())
    });
    // What every fresh start used to log: vote requests to replicas not yet listening, and late
    // vote answers. (A re-election on a loaded machine may log other warnings; not this test's
    // concern.)
    let text = std::fs::read_to_string(&log).unwrap();
    let noise = ["while requesting vote", "vote changed"];
    let noisy: Vec<&str> = text.lines().filter(|l| noise.iter().any(|n| l.contains(n))).collect();
    assert!(noisy.is_empty(), "startup logged election noise:\n{}", noisy.join("\n"));
    let sent = Command::new("kill").args(["-INT", &up.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_for(Duration::from_secs(30), "skiff up to exit after SIGINT", || up.child.try_wait().unwrap());
    assert!(status.success(), "skiff up exited with {status}");
}
