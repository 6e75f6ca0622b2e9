//! Pod lifecycle against the real Docker engine (images from `deploy/images/build.sh`).
//!
//! Skipped, with a message, when no Docker engine answers. Every container is labelled with a
//! per-test node name and removed at the end, even when the test fails.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{
    HTTPGetAction, HostPathVolumeSource, Probe, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_agent::runtime::podnet::{PodNetwork, PodNetworkConfig};
use skiff_agent::{DockerConfig, DockerRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    // Field order is drop order: stop the manager, then remove containers, then the data dir.
    h: Harness,
    _cleanup: DockerCleanup,
    dir: tempfile::TempDir,
}

/// The agent's pod network (the default bridge and subnet, shared with every agent of this
/// machine). Required as root, which can set it up (CI runs as root); elsewhere the pods use
/// Docker's network, with a message.
async fn pod_network() -> Option<Arc<PodNetwork>> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    match PodNetwork::setup(PodNetworkConfig::default()).await {
        Ok(net) => Some(Arc::new(net)),
        Err(e) if root => panic!("setting up the pod network as root failed: {e}"),
        Err(e) => {
            eprintln!("NOTE: no pod network ({e}); pods use Docker's bridge network");
            None
        }
    }
}

/// The runtime configuration the agent uses: its pod network when it can have one.
async fn docker_config(dir: &std::path::Path) -> DockerConfig {
    let mut cfg = DockerConfig::new(dir);
    cfg.pod_network = pod_network().await;
    cfg
}

async fn setup() -> Option<Setup> {
    init_tracing();
    if !docker_available() {
        eprintln!("SKIPPED: no Docker engine reachable (set DOCKER_HOST or start dockerd)");
        return None;
    }
    ensure_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = unique("docker-node");
    let cleanup = DockerCleanup { node: node.clone() };
    // A relative data directory, as `skiff up` gives its agent (`./skiff-data/agent`): Docker
    // takes only absolute host paths for the bind mounts made under it.
    let rt =
        DockerRuntime::connect(docker_config(&relative_to_cwd(dir.path())).await).await.expect("connect to docker");
    let h = Harness::start(Arc::new(rt), test_config(&node)).await;
    Some(Setup { h, _cleanup: cleanup, dir })
}

/// `path` (absolute) as a path relative to the current directory.
fn relative_to_cwd(path: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().count() - 1;
    let rel: std::path::PathBuf =
        std::iter::repeat_n("..", up).collect::<std::path::PathBuf>().join(path.strip_prefix("/").unwrap());
    assert!(rel.is_relative() && rel.canonicalize().unwrap() == path.canonicalize().unwrap());
    rel
}

fn docker_id(container_id: &Option<String>) -> String {
    container_id.as_deref().and_then(|c| c.strip_prefix("docker://")).expect("docker container id").to_string()
}

/// GET http://ip:port/ and return the body.
async fn http_get(ip: &str, port: u16) -> String {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), fut).await.expect("http deadline").expect("http get");
    resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_ready_serves_and_is_deleted() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let mut web = container("web", BUSYBOX, vec!["serve-hostname".into()]);
    web.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction { port: IntOrString::Int(8080), path: Some("/".into()), ..Default::default() }),
        period_seconds: Some(1),
        ..Default::default()
    });
    web.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        ..Default::default()
    });
    let host_port = skiff_testkit::free_port();
    web.ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
        container_port: 8080,
        host_port: Some(host_port.into()),
        ..Default::default()
    }]);
    let mut p = pod("web-1", vec![web]);
    p.spec.as_mut().unwrap().volumes =
        Some(vec![Volume { name: "scratch".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    let uid = p.metadata.uid.clone().unwrap();
    h.manager.sync(vec![p.clone()]);

    let st = h
        .wait_status("web-1", Duration::from_secs(30), "Running and Ready", |s| {
            s.phase.as_deref() == Some("Running") && is_ready(s)
        })
        .await;
    for cond in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&st, cond).as_deref(), Some("True"), "{cond}");
    }
    let c = cstatus(&st, "web");
    assert!(c.ready && c.started == Some(true) && c.restart_count == 0 && is_running(c));
    assert_eq!(c.image, BUSYBOX);
    assert!(c.image_id.starts_with("sha256:"), "{}", c.image_id);
    assert!(st.start_time.is_some() && st.host_ip.is_some());
    let ip = st.pod_ip.clone().expect("pod ip");
    assert_eq!(st.pod_ips.as_ref().unwrap()[0].ip, ip);
    let on_pod_network = PodNetworkConfig::default().cidr.contains(ip.parse().unwrap());
    assert!(!on_pod_network, "a pod with host ports is on Docker's network, which publishes them: {ip}");
    assert_eq!(http_get(&ip, 8080).await.trim(), "web-1", "the index is the pod's hostname");
    assert_eq!(http_get("127.0.0.1", host_port).await.trim(), "web-1", "hostPort published on the sandbox");

    // Limits reach Docker.
    let id = docker_id(&c.container_id);
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", &id])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("500000000 {}", 64 * 1024 * 1024));

    // Stable: syncing the same pod again emits nothing new.
    let before = h.statuses_of("web-1").len();
    h.manager.sync(vec![p.clone()]);
    tokio::time::sleep(Duration::from_millis(500)).await; // observation window, not synchronization
    assert_eq!(h.statuses_of("web-1").len(), before, "status is sent only on change");

    let volume_dir = s.dir.path().join("pods").join(&uid);
    assert!(volume_dir.join("volumes/scratch").is_dir());
    h.manager.sync(vec![deleted(p, 2)]);
    h.wait_removed("web-1", Duration::from_secs(30)).await;
    assert_eq!(h.pod_objects(&uid).await, 0, "sandbox and containers removed");
    assert!(!volume_dir.exists(), "emptyDir removed with the pod");
    assert!(h.manager.status("default", "web-1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_localhost_and_empty_dir() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let mount = |read_only: bool| {
        Some(vec![VolumeMount {
            name: "shared".into(),
            mount_path: "/shared".into(),
            read_only: Some(read_only),
            ..Default::default()
        }])
    };
    let mut server =
        container("server", BUSYBOX, sh("echo hello-from-server > /shared/server.txt; exec serve-hostname"));
    server.volume_mounts = mount(false);
    // Ready once the client has fetched the page over localhost and stored it in the emptyDir.
    server.readiness_probe = Some(exec_probe(sh("grep -q duo /shared/client.txt"), 1, 1));
    let mut client = container(
        "client",
        BUSYBOX,
        sh("trap 'exit 0' TERM; echo client-started; \
            while :; do wget -qO /shared/client.txt http://127.0.0.1:8080/ 2>/dev/null && break; sleep 1; done; \
            echo fetched $(cat /shared/client.txt); while :; do sleep 1; done"),
    );
    client.volume_mounts = mount(false);
    client.readiness_probe = Some(exec_probe(sh("grep -q hello-from-server /shared/server.txt"), 1, 1));
    let mut reader = container(
        "reader",
        BUSYBOX,
        sh("if touch /shared/x 2>/dev/null; then echo writable; else echo read-only; fi; exec pause"),
    );
    reader.volume_mounts = mount(true);
    let mut p = pod("duo", vec![server, client, reader]);
    p.spec.as_mut().unwrap().volumes =
        Some(vec![Volume { name: "shared".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    h.manager.sync(vec![p.clone()]);

    h.wait_status("duo", Duration::from_secs(30), "all three containers ready", is_ready).await;
    let logs = h.logs("duo", "client", false).await;
    assert!(logs.contains("fetched duo"), "client log: {logs:?}");
    let logs = h.logs_with_lines("duo", "reader", 1).await;
    assert_eq!(logs.trim(), "read-only", "readOnly mount honoured");
    // Tail.
    let mut stream = h.manager.logs("default", "duo", "client", false, Some(1), false).await.unwrap();
    let mut tail = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        tail.extend(chunk.unwrap());
    }
    assert_eq!(String::from_utf8_lossy(&tail).trim(), "fetched duo");
    h.manager.sync(vec![]);
    h.wait_removed("duo", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_backs_off_and_restart_policies() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let crash = pod("crash", vec![container("c", BUSYBOX, sh("echo attempt; exit 3"))]);
    let mut never = pod("never", vec![container("c", BUSYBOX, sh("exit 3"))]);
    never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let mut ok = pod("onfailure-ok", vec![container("c", BUSYBOX, sh("exit 0"))]);
    ok.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    h.manager.sync(vec![crash, never, ok]);

    let st = h
        .wait_event("crash", Duration::from_secs(30), "CrashLoopBackOff", |s| {
            waiting_reason(cstatus(s, "c")) == Some("CrashLoopBackOff")
        })
        .await;
    let c = cstatus(&st, "c");
    let last = c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).expect("lastState.terminated");
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(st.phase.as_deref(), Some("Running"), "a crash-looping pod with restartPolicy Always is Running");
    assert!(!is_ready(&st), "not Ready while backing off");
    h.wait_status("crash", Duration::from_secs(30), "restartCount >= 3", |s| cstatus(s, "c").restart_count >= 3).await;
    // The crash loop goes on meanwhile: an instance may be replaced while its logs are read.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut previous = h.logs("crash", "c", true).await;
    while previous.trim() != "attempt" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        previous = h.logs("crash", "c", true).await;
    }
    assert_eq!(previous.trim(), "attempt", "logs of the previous instance");

    let st = h.wait_status("never", Duration::from_secs(30), "Failed", |s| s.phase.as_deref() == Some("Failed")).await;
    let c = cstatus(&st, "c");
    assert_eq!(c.restart_count, 0);
    assert_eq!(c.state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);
    h.wait_status("onfailure-ok", Duration::from_secs(30), "Succeeded", |s| s.phase.as_deref() == Some("Succeeded"))
        .await;
    let st = h.manager.status("default", "onfailure-ok").unwrap();
    assert_eq!(cstatus(&st, "c").restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_probe_restarts_container() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let mut c = container("app", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"));
    c.liveness_probe = Some(exec_probe(sh("test -f /tmp/never-there"), 1, 2));
    h.manager.sync(vec![pod("live", vec![c])]);
    let first = h.wait_status("live", Duration::from_secs(30), "running", |s| is_running(cstatus(s, "app"))).await;
    let first_id = cstatus(&first, "app").container_id.clone();
    let st = h
        .wait_status("live", Duration::from_secs(30), "restarted after liveness failures", |s| {
            let c = cstatus(s, "app");
            c.restart_count >= 1 && is_running(c)
        })
        .await;
    let c = cstatus(&st, "app");
    assert_ne!(c.container_id, first_id, "a new container instance");
    let last = c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).expect("lastState.terminated");
    assert_eq!(last.exit_code, 0, "the trapped SIGTERM made it exit 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_readiness_probe_makes_pod_not_ready() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let mut c = container("app", BUSYBOX, sh("touch /tmp/ready; trap 'exit 0' TERM; while :; do sleep 1; done"));
    c.readiness_probe = Some(exec_probe(sh("test -f /tmp/ready"), 1, 1));
    h.manager.sync(vec![pod("ready", vec![c])]);
    let st = h.wait_status("ready", Duration::from_secs(30), "Ready", is_ready).await;
    let id = docker_id(&cstatus(&st, "app").container_id);
    let r = h.runtime.exec(&id, &["rm".into(), "/tmp/ready".into()], Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.exit_code, 0);
    let st = h.wait_status("ready", Duration::from_secs(30), "not Ready", |s| !is_ready(s)).await;
    assert_eq!(condition(&st, "ContainersReady").as_deref(), Some("False"));
    let c = cstatus(&st, "app");
    assert!(!c.ready && is_running(c) && c.restart_count == 0, "readiness never restarts: {c:?}");
    assert_eq!(st.phase.as_deref(), Some("Running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_honours_grace_period() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    // sh as PID 1 ignores SIGTERM unless it traps it.
    let polite = pod("polite", vec![container("c", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"))]);
    let stubborn = pod("stubborn", vec![container("c", BUSYBOX, sh("while :; do sleep 1; done"))]);
    h.manager.sync(vec![polite.clone(), stubborn.clone()]);
    for name in ["polite", "stubborn"] {
        h.wait_status(name, Duration::from_secs(30), "running", |s| is_running(cstatus(s, "c"))).await;
    }
    let t0 = Instant::now();
    h.manager.sync(vec![deleted(polite, 30), deleted(stubborn, 3)]);
    let (mut polite_done, mut stubborn_done) = (None, None);
    let deadline = t0 + Duration::from_secs(30);
    while polite_done.is_none() || stubborn_done.is_none() {
        assert!(Instant::now() < deadline, "pods not removed in time");
        if polite_done.is_none() && h.removed("polite") {
            polite_done = Some(t0.elapsed());
        }
        if stubborn_done.is_none() && h.removed("stubborn") {
            stubborn_done = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (polite_done, stubborn_done) = (polite_done.unwrap(), stubborn_done.unwrap());
    assert!(polite_done < Duration::from_secs(8), "SIGTERM-trapping container exits promptly: {polite_done:?}");
    assert!(stubborn_done >= Duration::from_millis(2900), "killed only after the grace period: {stubborn_done:?}");
    assert!(stubborn_done < Duration::from_secs(15), "killed after the grace period: {stubborn_done:?}");
    assert_eq!(h.node_objects().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_manager_adopts_running_containers() {
    let Some(s) = setup().await else { return };
    let mut keep = container("app", BUSYBOX, vec!["serve-hostname".into()]);
    keep.readiness_probe = Some(Probe {
        tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction { port: IntOrString::Int(8080), host: None }),
        period_seconds: Some(1),
        ..Default::default()
    });
    let keep = pod("keep", vec![keep]);
    let orphan = pod("orphan", vec![container("app", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"))]);
    let orphan_uid = orphan.metadata.uid.clone().unwrap();
    s.h.manager.sync(vec![keep.clone(), orphan]);
    let before = s.h.wait_status("keep", Duration::from_secs(30), "Ready", is_ready).await;
    s.h.wait_status("orphan", Duration::from_secs(30), "running", |s| is_running(cstatus(s, "app"))).await;

    // "Restart the agent": drop the manager and the docker connection, start anew on the same node.
    let Setup { h, _cleanup, dir } = s;
    let node = h.node.clone();
    drop(h);
    let rt = DockerRuntime::connect(docker_config(dir.path()).await).await.unwrap();
    let h = Harness::start(Arc::new(rt), test_config(&node)).await;
    h.manager.sync(vec![keep.clone()]);
    let after = h.wait_status("keep", Duration::from_secs(30), "Ready again", is_ready).await;
    let (b, a) = (cstatus(&before, "app"), cstatus(&after, "app"));
    assert_eq!(a.container_id, b.container_id, "same container, not a new one");
    assert_eq!(a.restart_count, 0);
    let started = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        c.state.as_ref().unwrap().running.as_ref().unwrap().started_at.clone()
    };
    assert_eq!(started(a), started(b), "not restarted");
    assert_eq!(after.pod_ip, before.pod_ip);
    let sel = BTreeMap::from([(skiff_agent::runtime::labels::POD_UID.to_string(), keep.metadata.uid.clone().unwrap())]);
    assert_eq!(h.runtime.list(&sel).await.unwrap().len(), 2, "one sandbox and one container: no duplicates");
    wait_until(Duration::from_secs(30), "orphan pod removed", || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=io.skiff.pod-uid={orphan_uid}")])
            .output()
            .unwrap();
        out.stdout.is_empty()
    })
    .await;
    drop(h);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_err_image_never_pull() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let p = pod("noimage", vec![container("c", "skiff/not-built-anywhere:0", sh("true"))]);
    h.manager.sync(vec![p.clone()]);
    let st = h
        .wait_status("noimage", Duration::from_secs(15), "ErrImageNeverPull", |s| {
            waiting_reason(cstatus(s, "c")) == Some("ErrImageNeverPull")
        })
        .await;
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let msg = cstatus(&st, "c").state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(msg.contains("skiff/not-built-anywhere:0"), "{msg}");
    h.manager.sync(vec![deleted(p, 0)]);
    h.wait_removed("noimage", Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_path_volume_is_mounted() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let host = s.dir.path().join("host-data");
    std::fs::create_dir_all(&host).unwrap();
    let mut c = container("c", BUSYBOX, sh("echo from-container > /data/out.txt; exec pause"));
    c.volume_mounts = Some(vec![VolumeMount { name: "data".into(), mount_path: "/data".into(), ..Default::default() }]);
    let mut p = pod("hostpath", vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "data".into(),
        host_path: Some(HostPathVolumeSource { path: host.display().to_string(), type_: None }),
        ..Default::default()
    }]);
    h.manager.sync(vec![p]);
    let file = host.join("out.txt");
    // The shell creates the file before it writes to it: wait for its content, not for the file
    // (it was read empty once, between the two).
    let read = || std::fs::read_to_string(&file).unwrap_or_default();
    wait_until(Duration::from_secs(30), "file written through hostPath", || !read().trim().is_empty()).await;
    assert_eq!(read().trim(), "from-container");
}

/// `docker kill` the sandbox of pod `uid` behind the agent's back; returns the selector of
/// the pod's sandboxes.
async fn kill_sandbox(h: &Harness, uid: &str) -> BTreeMap<String, String> {
    let sel = BTreeMap::from([
        (skiff_agent::runtime::labels::POD_UID.to_string(), uid.to_string()),
        (skiff_agent::runtime::labels::KIND.to_string(), "sandbox".to_string()),
    ]);
    let sandbox = h.runtime.list(&sel).await.unwrap().pop().expect("sandbox");
    let out = std::process::Command::new("docker").args(["kill", &sandbox.id]).output().unwrap();
    assert!(out.status.success(), "docker kill: {}", String::from_utf8_lossy(&out.stderr));
    sel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sandbox_is_recreated_with_its_containers() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let mut c = container("app", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"));
    c.volume_mounts = Some(vec![VolumeMount { name: "keep".into(), mount_path: "/keep".into(), ..Default::default() }]);
    let mut p = pod("phoenix", vec![c]);
    p.spec.as_mut().unwrap().volumes =
        Some(vec![Volume { name: "keep".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    let uid = p.metadata.uid.clone().unwrap();
    h.manager.sync(vec![p]);
    let st = h.wait_status("phoenix", Duration::from_secs(30), "Ready", is_ready).await;
    let marker = s.dir.path().join("pods").join(&uid).join("volumes/keep/marker");
    std::fs::write(&marker, "still here").unwrap();
    let first = cstatus(&st, "app").container_id.clone();
    // Kill the sandbox behind the agent's back.
    let sel = kill_sandbox(h, &uid).await;
    let st = h
        .wait_status("phoenix", Duration::from_secs(30), "running again in a new sandbox", |s| {
            let c = cstatus(s, "app");
            is_ready(s) && c.container_id != first && c.restart_count >= 1
        })
        .await;
    assert!(st.pod_ip.is_some());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "still here", "emptyDir survives a sandbox restart");
    assert_eq!(h.runtime.list(&sel).await.unwrap().len(), 1, "the dead sandbox was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sandbox_image_is_reported_as_not_present() {
    use skiff_agent::runtime::{PodRef, Runtime, SandboxSpec};
    init_tracing();
    if !docker_available() {
        eprintln!("SKIPPED: no Docker engine reachable (set DOCKER_HOST or start dockerd)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = DockerConfig::new(dir.path());
    cfg.sandbox_image = "skiff/no-such-pause:1".into();
    let rt = DockerRuntime::connect(cfg).await.expect("connect to docker");
    let node = unique("docker-node");
    let _cleanup = DockerCleanup { node: node.clone() };
    let pod = PodRef { uid: unique("uid"), namespace: "default".into(), name: "p".into(), node_name: node };
    let spec = SandboxSpec {
        pod,
        attempt: 0,
        hostname: "p".into(),
        ports: vec![],
        empty_dirs: vec![],
        host_aliases: vec![],
        dns: Default::default(),
        host_network: false,
        host_ipc: false,
        sysctls: vec![],
        fs_group: None,
    };
    match rt.create_sandbox(&spec).await {
        Err(skiff_agent::AgentError::ImageNotPresent { image }) => assert_eq!(image, "skiff/no-such-pause:1"),
        other => panic!("expected ImageNotPresent, got {other:?}"),
    }
}

/// `docker exec ID sh -c SCRIPT`, its stdout.
fn docker_exec(id: &str, script: &str) -> String {
    let out = std::process::Command::new("docker").args(["exec", id, "sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "docker exec {script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_the_agent_network_get_addresses_hosts_and_resolver() {
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig};
    let Some(s) = setup().await else { return };
    if pod_network().await.is_none() {
        eprintln!("SKIPPED: no pod network here (not root)");
        return;
    }
    let cidr = PodNetworkConfig::default().cidr;
    let h = &s.h;
    let a = pod("net-a", vec![container("web", BUSYBOX, vec!["serve-hostname".into()])]);
    let mut b = pod("net-b", vec![container("c", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"))]);
    let spec = b.spec.as_mut().unwrap();
    spec.host_aliases = Some(vec![HostAlias { ip: "10.1.2.3".into(), hostnames: Some(vec!["db.example".into()]) }]);
    spec.dns_config = Some(PodDNSConfig {
        nameservers: Some(vec!["198.51.100.7".into()]),
        searches: Some(vec!["svc.example".into()]),
        ..Default::default()
    });
    h.manager.sync(vec![a.clone(), b.clone()]);
    let sa = h.wait_status("net-a", Duration::from_secs(30), "Ready", is_ready).await;
    let sb = h.wait_status("net-b", Duration::from_secs(30), "Ready", is_ready).await;
    let (ip_a, ip_b) = (sa.pod_ip.clone().unwrap(), sb.pod_ip.clone().unwrap());
    for ip in [&ip_a, &ip_b] {
        assert!(cidr.contains(ip.parse().unwrap()), "{ip} is not in the pod network {cidr}");
    }
    assert_ne!(ip_a, ip_b);
    // The host reaches a pod; a pod reaches another over the bridge.
    wait_until(Duration::from_secs(10), "net-a serving", || {
        std::net::TcpStream::connect((ip_a.as_str(), 8080)).is_ok()
    })
    .await;
    assert_eq!(http_get(&ip_a, 8080).await.trim(), "net-a");
    let id_b = docker_id(&cstatus(&sb, "c").container_id);
    assert_eq!(docker_exec(&id_b, &format!("wget -q -O- http://{ip_a}:8080/")).trim(), "net-a");
    // The files kubelet would write, and the hostname.
    let hosts = docker_exec(&id_b, "cat /etc/hosts");
    assert!(hosts.contains(&format!("\n{ip_b}\tnet-b\n")), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tdb.example"), "{hosts}");
    let resolv = docker_exec(&id_b, "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 198.51.100.7") && resolv.contains("svc.example"), "{resolv}");
    assert!(!resolv.contains("nameserver 127."), "loopback resolvers are unreachable from a pod: {resolv}");
    assert_eq!(docker_exec(&id_b, "hostname").trim(), "net-b");
    let route = docker_exec(&id_b, "ip route");
    assert!(route.contains(&format!("default via {}", cidr.gateway())), "{route}");

    // Deleting the pods frees their addresses.
    let reservation = |ip: &str| PodNetworkConfig::default().state_dir.join("skiff0").join(ip);
    assert!(reservation(&ip_a).exists() && reservation(&ip_b).exists());
    h.manager.sync(vec![deleted(a, 0), deleted(b, 0)]);
    h.wait_removed("net-a", Duration::from_secs(30)).await;
    h.wait_removed("net-b", Duration::from_secs(30)).await;
    assert!(!reservation(&ip_a).exists() && !reservation(&ip_b).exists(), "addresses freed with the pods");
}

/// A `/proc/<pid>/status` value of a process started in the container (by `docker exec`, which
/// gets the container's user, capabilities, seccomp filter and `no_new_privs`).
fn proc_status(id: &str, key: &str) -> String {
    let out = docker_exec(id, &format!("grep '^{key}:' /proc/self/status"));
    out.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_is_enforced() {
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext, Sysctl};
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let idle = "trap 'exit 0' TERM; while :; do sleep 1; done";
    // A confined user: ids and groups, a read-only root, no capabilities, no privilege escalation.
    let mut confined = container("app", BUSYBOX, sh(&format!("touch /data/made-here; {idle}")));
    confined.volume_mounts =
        Some(vec![VolumeMount { name: "data".into(), mount_path: "/data".into(), ..Default::default() }]);
    confined.security_context = Some(SecurityContext {
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        ..Default::default()
    });
    // Its neighbour: the pod's user overridden, seccomp off, one capability added back.
    let mut loose = container("loose", BUSYBOX, sh(idle));
    loose.security_context = Some(SecurityContext {
        run_as_user: Some(0),
        seccomp_profile: Some(SeccompProfile { type_: "Unconfined".into(), localhost_profile: None }),
        capabilities: Some(Capabilities { add: Some(vec!["NET_ADMIN".into()]), ..Default::default() }),
        ..Default::default()
    });
    let mut p = pod("secure", vec![confined, loose]);
    let spec = p.spec.as_mut().unwrap();
    spec.volumes =
        Some(vec![Volume { name: "data".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    spec.share_process_namespace = Some(true);
    spec.security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        fs_group: Some(2000),
        supplemental_groups: Some(vec![4000]),
        sysctls: Some(vec![
            Sysctl { name: "net.ipv4.ping_group_range".into(), value: "0 4000".into() },
            Sysctl { name: "kernel.shm_rmid_forced".into(), value: "1".into() },
        ]),
        ..Default::default()
    });
    h.manager.sync(vec![p.clone()]);
    let st = h.wait_status("secure", Duration::from_secs(30), "Ready", is_ready).await;
    let app = docker_id(&cstatus(&st, "app").container_id);
    let loose = docker_id(&cstatus(&st, "loose").container_id);

    assert_eq!(docker_exec(&app, "id -u; id -g").split_whitespace().collect::<Vec<_>>(), ["1000", "3000"]);
    let groups: Vec<String> = docker_exec(&app, "id -G").split_whitespace().map(str::to_string).collect();
    assert!(
        groups.contains(&"2000".into()) && groups.contains(&"4000".into()),
        "fsGroup and supplementalGroups: {groups:?}"
    );
    let out = std::process::Command::new("docker").args(["exec", &app, "touch", "/root-write"]).output().unwrap();
    assert!(!out.status.success(), "the root filesystem is read-only");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
    // The emptyDir belongs to the fsGroup (setgid): what the container writes there too.
    let ls = docker_exec(&app, "stat -c '%g %A' /data /data/made-here");
    let mut lines = ls.lines();
    assert_eq!(lines.next().map(|l| l.split(' ').next().unwrap()), Some("2000"), "{ls}");
    assert!(ls.lines().next().unwrap().contains("drwxrwsrwx"), "setgid, group-writable: {ls}");
    assert_eq!(lines.next().map(|l| l.split(' ').next().unwrap()), Some("2000"), "{ls}");
    assert_eq!(proc_status(&app, "CapEff"), "0000000000000000", "capabilities dropped");
    assert_eq!(proc_status(&app, "NoNewPrivs"), "1");
    assert_eq!(proc_status(&app, "Seccomp"), "2", "the runtime's default seccomp filter");

    assert_eq!(docker_exec(&loose, "id -u").trim(), "0", "the container's runAsUser wins over the pod's");
    assert_eq!(proc_status(&loose, "Seccomp"), "0", "seccompProfile Unconfined");
    let cap_eff = u64::from_str_radix(&proc_status(&loose, "CapEff"), 16).unwrap();
    assert!(cap_eff & (1 << 12) != 0, "CAP_NET_ADMIN added: {cap_eff:x}");
    assert_eq!(proc_status(&loose, "NoNewPrivs"), "0");
    // The pod's sysctls, set in the sandbox's network and IPC namespaces that both share.
    let sysctls = docker_exec(&app, "cat /proc/sys/net/ipv4/ping_group_range /proc/sys/kernel/shm_rmid_forced");
    assert_eq!(sysctls.split_whitespace().collect::<Vec<_>>(), ["0", "4000", "1"], "{sysctls}");
    // One PID namespace for the pod: the sandbox's pause is PID 1 for both containers.
    assert!(docker_exec(&loose, "cat /proc/1/cmdline").contains("pause"), "shareProcessNamespace");

    h.manager.sync(vec![deleted(p, 0)]);
    h.wait_removed("secure", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_refuses_a_root_image_and_host_network_pods_share_the_node() {
    use k8s_openapi::api::core::v1::SecurityContext;
    let Some(s) = setup().await else { return };
    let h = &s.h;
    // runAsNonRoot with an image that runs as root: kubelet's CreateContainerConfigError.
    let mut c = container("c", BUSYBOX, sh("true"));
    c.security_context = Some(SecurityContext { run_as_non_root: Some(true), ..Default::default() });
    let mut ok = container("ok", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"));
    ok.security_context =
        Some(SecurityContext { run_as_non_root: Some(true), run_as_user: Some(65534), ..Default::default() });
    let p = pod("nonroot", vec![c, ok]);
    h.manager.sync(vec![p.clone()]);
    let st = h
        .wait_status("nonroot", Duration::from_secs(30), "CreateContainerConfigError, the other running", |s| {
            waiting_reason(cstatus(s, "c")) == Some("CreateContainerConfigError") && is_running(cstatus(s, "ok"))
        })
        .await;
    let msg = cstatus(&st, "c").state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(msg.starts_with("container has runAsNonRoot and image will run as root (pod: \"nonroot_default("), "{msg}");
    assert!(msg.ends_with("container: c)"), "{msg}");

    // A pod on the node's network: the node's interfaces and address.
    let mut host = pod("hostnet", vec![container("c", BUSYBOX, sh("trap 'exit 0' TERM; while :; do sleep 1; done"))]);
    host.spec.as_mut().unwrap().host_network = Some(true);
    h.manager.sync(vec![p.clone(), host.clone()]);
    let st = h.wait_status("hostnet", Duration::from_secs(30), "Ready", is_ready).await;
    assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"), "the node's address (the test node's host IP)");
    let id = docker_id(&cstatus(&st, "c").container_id);
    let names = |t: &str| -> Vec<String> {
        t.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect()
    };
    let pod_links = names(&docker_exec(&id, "cat /proc/net/dev"));
    // (Other tests' pods come and go with their veths meanwhile; the rest is the node's own.)
    let node_links: Vec<String> = names(&std::fs::read_to_string("/proc/net/dev").unwrap())
        .into_iter()
        .filter(|n| !n.starts_with("veth"))
        .collect();
    assert!(node_links.len() > 1, "{node_links:?}");
    for link in &node_links {
        assert!(pod_links.contains(link), "the pod sees the node's {link}: {pod_links:?}");
    }

    h.manager.sync(vec![deleted(p, 0), deleted(host, 0)]);
    h.wait_removed("nonroot", Duration::from_secs(30)).await;
    h.wait_removed("hostnet", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_prepare_the_pod_before_its_containers_start() {
    let Some(s) = setup().await else { return };
    let h = &s.h;
    let work = || Some(vec![VolumeMount { name: "work".into(), mount_path: "/work".into(), ..Default::default() }]);
    let mut prep = container("prep", BUSYBOX, sh("sleep 0.5; echo prepared-by-$(hostname) >> /work/msg"));
    prep.volume_mounts = work();
    let mut app = container("app", BUSYBOX, sh("cat /work/msg; trap 'exit 0' TERM; while :; do sleep 1; done"));
    app.volume_mounts = work();
    let mut p = pod("init-docker", vec![app]);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![prep]);
    spec.volumes =
        Some(vec![Volume { name: "work".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    h.manager.sync(vec![p.clone()]);
    let pending = h
        .wait_event("init-docker", Duration::from_secs(30), "the init container running", |s| {
            s.init_container_statuses.as_ref().is_some_and(|i| is_running(&i[0]))
        })
        .await;
    assert_eq!(pending.phase.as_deref(), Some("Pending"));
    assert_eq!(waiting_reason(cstatus(&pending, "app")), Some("PodInitializing"));
    let st = h.wait_status("init-docker", Duration::from_secs(30), "Ready", is_ready).await;
    let init = &st.init_container_statuses.as_ref().unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().expect("the init container finished");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let logs = h.logs_with_lines("init-docker", "app", 1).await;
    assert_eq!(logs.trim(), "prepared-by-init-docker", "the app saw what its init container left");

    // A recreated sandbox runs the init containers again before the app, as kubelet does.
    let first_app = cstatus(&st, "app").container_id.clone();
    kill_sandbox(h, p.metadata.uid.as_deref().unwrap()).await;
    let st = h
        .wait_status("init-docker", Duration::from_secs(30), "Ready in a new sandbox", |s| {
            is_ready(s) && cstatus(s, "app").container_id != first_app
        })
        .await;
    let init = &st.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(init.restart_count, 1, "the init container ran again: {init:?}");
    let t = init.state.as_ref().unwrap().terminated.as_ref().expect("the init container finished again");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let logs = h.logs_with_lines("init-docker", "app", 2).await;
    assert_eq!(logs.lines().collect::<Vec<_>>(), ["prepared-by-init-docker"; 2], "it ran before the new app");
    h.manager.sync(vec![deleted(p, 0)]);
    h.wait_removed("init-docker", Duration::from_secs(30)).await;
}
