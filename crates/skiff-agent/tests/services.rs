//! Pod-manager support for Services: service environment variables and the termination propagation delay.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use skiff_agent::{FakeRuntime, ProcessConfig, ProcessRuntime, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_started_after_set_services_get_service_variables() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(ProcessRuntime::new(ProcessConfig::new(dir.path())));
    let mut config = test_config(&unique("svc-node"));
    config.host_ip = "127.0.0.1".into();
    let h = Harness::start(runtime as Arc<dyn Runtime>, config).await;
    h.manager.set_services(vec![
        json!({"metadata": {"name": "web-front", "namespace": "default"}, "spec": {"type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
        json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.9",
            "ports": [{"port": 5432}]}}),
        json!({"metadata": {"name": "other", "namespace": "elsewhere"}, "spec": {"clusterIP": "10.96.0.10",
            "ports": [{"port": 1}]}}),
    ]);
    let script = "echo \"web=$WEB_FRONT_SERVICE_HOST:$WEB_FRONT_SERVICE_PORT http=$WEB_FRONT_SERVICE_PORT_HTTP \
                  db=$DB_SERVICE_HOST:$DB_SERVICE_PORT other=${OTHER_SERVICE_HOST:-unset}\"; \
                  trap 'exit 0' TERM; while :; do sleep 0.1; done";
    h.manager.sync(vec![pod("p", vec![container("app", "ignored", sh(script))])]);
    h.wait_status("p", Duration::from_secs(20), "running", |s| is_running(cstatus(s, "app"))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = h.logs("p", "app", false).await;
        if log.contains("web=") {
            assert_eq!(log.trim(), "web=127.0.0.1:30080 http=30080 db=10.96.0.9:5432 other=unset");
            break;
        }
        assert!(Instant::now() < deadline, "no output: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod manager on the fake runtime with `delay` as its termination propagation delay.
async fn with_propagation_delay(delay: Duration) -> (Arc<FakeRuntime>, Harness) {
    init_tracing();
    let rt = Arc::new(FakeRuntime::new());
    let mut config = test_config(&unique("fake-node"));
    config.termination_propagation_delay = delay;
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, config).await;
    (rt, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_keeps_running_for_the_propagation_delay() {
    let (rt, h) = with_propagation_delay(Duration::from_millis(600)).await;
    let slow = pod("slow", vec![container("c", "img", sh("true"))]);
    let quick = pod("quick", vec![container("c", "img", sh("true"))]);
    h.manager.sync(vec![slow.clone(), quick.clone()]);
    for name in ["slow", "quick"] {
        h.wait_status(name, Duration::from_secs(10), "Ready", is_ready).await;
    }
    assert_eq!(rt.object_count(), 4);

    // Graceful delete: nothing is stopped during the delay, then the pod goes.
    let t0 = Instant::now();
    h.manager.sync(vec![deleted(slow, 30), quick.clone()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.removed("slow"));
    assert_eq!(rt.object_count(), 4, "containers still running during the propagation delay");
    h.wait_removed("slow", Duration::from_secs(10)).await;
    assert!(t0.elapsed() >= Duration::from_millis(600), "{:?}", t0.elapsed());

    // A zero grace period (force delete) skips the delay.
    let t1 = Instant::now();
    h.manager.sync(vec![deleted(quick, 0)]);
    h.wait_removed("quick", Duration::from_secs(10)).await;
    assert!(t1.elapsed() < Duration::from_millis(550), "{:?}", t1.elapsed());
    assert_eq!(rt.object_count(), 0);
}

/// A pod that was never Ready was never a ready endpoint of any Service: its deletion stops it
/// at once instead of waiting out the propagation delay (here 60 s). One selected by a Service
/// that publishes not-ready addresses was an endpoint all along, and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_never_ready_skips_the_propagation_delay() {
    let (rt, h) = with_propagation_delay(Duration::from_secs(60)).await;
    rt.set_image_missing("gone:1", true);
    let mut probed = container("c", "img", sh("true"));
    probed.readiness_probe = Some(exec_probe(sh("check"), 1, 1));
    rt.set_exec_exit_code("c", 1);
    let noimg = pod("noimg", vec![container("c", "gone:1", sh("true"))]);
    let unready = pod("unready", vec![probed]);
    let ready = pod("ready", vec![container("c", "img", sh("true"))]);
    let mut peer = pod("peer", vec![container("c", "gone:1", sh("true"))]);
    peer.metadata.labels = Some([("app".to_string(), "peer".to_string())].into());
    h.manager.set_services(vec![json!({
        "metadata": {"name": "peers", "namespace": "default"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "peer"},
                 "ports": [{"port": 7000}]}
    })]);
    h.manager.sync(vec![noimg.clone(), unready.clone(), ready.clone(), peer.clone()]);
    h.wait_status("noimg", Duration::from_secs(10), "ErrImageNeverPull", |s| {
        waiting_reason(cstatus(s, "c")) == Some("ErrImageNeverPull")
    })
    .await;
    let st = h.wait_status("unready", Duration::from_secs(10), "running", |s| is_running(cstatus(s, "c"))).await;
    assert!(!is_ready(&st));
    h.wait_status("ready", Duration::from_secs(10), "Ready", is_ready).await;

    h.wait_status("peer", Duration::from_secs(10), "ErrImageNeverPull", |s| {
        waiting_reason(cstatus(s, "c")) == Some("ErrImageNeverPull")
    })
    .await;

    h.manager.sync(vec![deleted(noimg, 30), deleted(unready, 30), deleted(ready, 30), deleted(peer, 30)]);
    h.wait_removed("noimg", Duration::from_secs(10)).await;
    h.wait_removed("unready", Duration::from_secs(10)).await;
    assert!(!h.removed("ready"), "a pod that was Ready waits out the delay");
    assert!(!h.removed("peer"), "a pod published while not Ready waits out the delay");
    assert_eq!(rt.object_count(), 3, "the Ready pod's sandbox and container, the peer's sandbox");
}
