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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_keeps_running_for_the_propagation_delay() {
    init_tracing();
    let rt = Arc::new(FakeRuntime::new());
    let mut config = test_config(&unique("fake-node"));
    config.termination_propagation_delay = Duration::from_millis(600);
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, config).await;
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
