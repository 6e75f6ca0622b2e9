//! Pod manager semantics on the fake runtime: scale, scripted exits, batching and coalescing of status events.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use skiff_agent::{FakeRuntime, FakeStart, PodEvent, PodManager, Runtime};

fn fake() -> Arc<FakeRuntime> {
    init_tracing();
    Arc::new(FakeRuntime::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_fake_pods() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let pods: Vec<_> = (0..300).map(|i| pod(&format!("p{i}"), vec![container("c", "img", sh("true"))])).collect();
    h.manager.sync(pods.clone());
    wait_until(Duration::from_secs(30), "300 pods Ready", || {
        (0..300).all(|i| h.manager.status("default", &format!("p{i}")).is_some_and(|s| is_ready(&s)))
    })
    .await;
    assert_eq!(rt.object_count(), 600, "one sandbox and one container per pod");
    assert_eq!(h.manager.pod_count(), 300);
    h.manager.sync(pods.into_iter().map(|p| deleted(p, 0)).collect());
    wait_until(Duration::from_secs(30), "300 pods removed", || (0..300).all(|i| h.removed(&format!("p{i}")))).await;
    assert_eq!(rt.object_count(), 0);
    assert_eq!(h.manager.pod_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_exit_restarts_with_backoff() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let p = pod("p", vec![container("app", "img", sh("true")), container("side", "img", sh("true"))]);
    let uid = p.metadata.uid.clone().unwrap();
    h.manager.sync(vec![p]);
    h.wait_status("p", Duration::from_secs(10), "Ready", is_ready).await;
    assert_eq!(rt.exit_container(Some(&uid), "app", 7), 1);
    // First restart is immediate; script the next starts to crash at once.
    rt.set_on_start("app", FakeStart::Exit(7));
    let st = h
        .wait_event("p", Duration::from_secs(10), "CrashLoopBackOff", |s| {
            waiting_reason(cstatus(s, "app")) == Some("CrashLoopBackOff")
        })
        .await;
    assert_eq!(cstatus(&st, "app").last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 7);
    assert!(!is_ready(&st));
    assert!(is_running(cstatus(&st, "side")) && cstatus(&st, "side").restart_count == 0);
    rt.set_on_start("app", FakeStart::Run);
    let st = h
        .wait_status("p", Duration::from_secs(10), "recovered", |s| is_ready(s) && cstatus(s, "app").restart_count >= 2)
        .await;
    assert_eq!(st.phase.as_deref(), Some("Running"));
}

/// Running pods cost one relist per node per period, not two inspects each: once every pod
/// is Ready and nothing changes, relists go on with no inspect in between (with a per-pod
/// resync of 100 ms there would be dozens); a container that exits is noticed by the next
/// relist, which wakes its pod to restart it (the steady resync is a minute away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pods_are_woken_by_the_relist_not_a_resync() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let pods: Vec<_> = (0..5).map(|i| pod(&format!("p{i}"), vec![container("c", "img", sh("true"))])).collect();
    h.manager.sync(pods);
    wait_until(Duration::from_secs(10), "5 pods Ready", || {
        (0..5).all(|i| h.manager.status("default", &format!("p{i}")).is_some_and(|s| is_ready(&s)))
    })
    .await;
    // The relist that first sees the new containers wakes their pods once; after that, five
    // consecutive relists (500 ms) pass without a single inspect, and without a list either:
    // the fake runtime's generation tells the relist nothing changed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let before = rt.calls();
        wait_until(Duration::from_secs(5), "five more relists", || {
            rt.calls().generation_reads >= before.generation_reads + 5
        })
        .await;
        let after = rt.calls();
        if after.inspects == before.inspects && after.state_lists == before.state_lists {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "running pods are still inspected or listed: {after:?}");
    }
    assert_eq!(rt.exit_container(None, "c", 3), 5);
    wait_until(Duration::from_secs(10), "every pod restarted and Ready", || {
        (0..5).all(|i| {
            h.manager
                .status("default", &format!("p{i}"))
                .is_some_and(|s| is_ready(&s) && cstatus(&s, "c").restart_count == 1)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_missing_image_and_exec_probe_script() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    rt.set_image_missing("gone:1", true);
    let mut probed = container("c", "img", sh("true"));
    probed.readiness_probe = Some(exec_probe(sh("check"), 1, 1));
    rt.set_exec_exit_code("c", 1);
    h.manager.sync(vec![pod("noimg", vec![container("c2", "gone:1", sh("true"))]), pod("probed", vec![probed])]);
    h.wait_status("noimg", Duration::from_secs(10), "ErrImageNeverPull", |s| {
        waiting_reason(cstatus(s, "c2")) == Some("ErrImageNeverPull")
    })
    .await;
    let st = h.wait_status("probed", Duration::from_secs(10), "running", |s| is_running(cstatus(s, "c"))).await;
    assert!(!is_ready(&st));
    // The image appears: the container starts without any resync from outside.
    rt.set_image_missing("gone:1", false);
    h.wait_status("noimg", Duration::from_secs(10), "Ready", is_ready).await;
    rt.set_exec_exit_code("c", 0);
    h.wait_status("probed", Duration::from_secs(10), "Ready", is_ready).await;
}

/// A started container is Ready as soon as it runs (no probe) or its readiness probe
/// passes, never only at the next resync: here a resync is 60 s away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_pods_are_ready_without_waiting_for_a_resync() {
    let rt = fake();
    let mut cfg = test_config(&unique("fake-node"));
    cfg.resync_interval = Duration::from_secs(60);
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, cfg).await;
    let mut probed = container("c", "img", sh("true"));
    probed.readiness_probe = Some(exec_probe(sh("check"), 1, 1));
    rt.set_exec_exit_code("c", 0);
    h.manager.sync(vec![pod("plain", vec![container("c", "img", sh("true"))]), pod("probed", vec![probed])]);
    h.wait_status("plain", Duration::from_secs(5), "Ready", is_ready).await;
    h.wait_status("probed", Duration::from_secs(5), "Ready", is_ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_channel_is_bounded_and_coalesces() {
    let rt = fake();
    let mut config = test_config(&unique("fake-node"));
    config.status_channel_capacity = 1;
    config.max_batch = 8;
    let (manager, mut rx) = PodManager::start(rt.clone() as Arc<dyn Runtime>, config).await.unwrap();
    let pods: Vec<_> = (0..50).map(|i| pod(&format!("p{i}"), vec![container("c", "img", sh("true"))])).collect();
    manager.sync(pods.clone());
    // Nobody reads for now: the pods still progress to Ready.
    wait_until(Duration::from_secs(20), "all Ready", || {
        (0..50).all(|i| manager.status("default", &format!("p{i}")).is_some_and(|s| is_ready(&s)))
    })
    .await;
    // Drain: at most `max_batch` per batch, and the last event per pod is its current status.
    let mut last: HashMap<String, PodEvent> = HashMap::new();
    let mut total = 0;
    while last.len() < 50 || !last.values().all(|e| matches!(e, PodEvent::Status(s) if is_ready(&s.status))) {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("batch").expect("open");
        assert!(batch.len() <= 8, "batch of {}", batch.len());
        for e in batch.into_iter().filter(|e| !matches!(e, PodEvent::Recorded(_))) {
            total += 1;
            last.insert(e.uid().to_string(), e);
        }
    }
    assert!(total < 50 * 3, "statuses coalesced while the receiver was slow: {total} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_never_and_on_failure() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    rt.set_on_start("fails", FakeStart::Exit(1));
    rt.set_on_start("works", FakeStart::Exit(0));
    let mut never = pod("never", vec![container("fails", "img", sh("x"))]);
    never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let mut onf = pod("onf", vec![container("works", "img", sh("x"))]);
    onf.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let mut onf_fail = pod("onf-fail", vec![container("fails", "img", sh("x"))]);
    onf_fail.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    h.manager.sync(vec![never, onf, onf_fail]);
    h.wait_status("never", Duration::from_secs(10), "Failed", |s| s.phase.as_deref() == Some("Failed")).await;
    h.wait_status("onf", Duration::from_secs(10), "Succeeded", |s| s.phase.as_deref() == Some("Succeeded")).await;
    let st = h
        .wait_status("onf-fail", Duration::from_secs(10), "restarting", |s| cstatus(s, "fails").restart_count >= 2)
        .await;
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let st = h.manager.status("default", "never").unwrap();
    assert_eq!(cstatus(&st, "fails").restart_count, 0);
    assert_eq!(condition(&st, "Ready").as_deref(), Some("False"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_probe_gates_liveness_and_restarts_on_failure() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let mut slow = container("slow", "img", sh("x"));
    slow.startup_probe = Some(exec_probe(sh("check"), 1, 2));
    // Would kill at once if it ran before the startup probe passed.
    slow.liveness_probe = Some(exec_probe(sh("check-live"), 1, 1));
    rt.set_exec_exit_code("slow", 1);
    h.manager.sync(vec![pod("startup", vec![slow])]);
    let st = h.wait_status("startup", Duration::from_secs(10), "running", |s| is_running(cstatus(s, "slow"))).await;
    assert_eq!(cstatus(&st, "slow").started, Some(false));
    h.wait_status("startup", Duration::from_secs(15), "restarted by the startup probe", |s| {
        cstatus(s, "slow").restart_count >= 1
    })
    .await;
    rt.set_exec_exit_code("slow", 0);
    let st = h
        .wait_status("startup", Duration::from_secs(15), "started and ready", |s| {
            cstatus(s, "slow").started == Some(true) && is_ready(s)
        })
        .await;
    let restarts = cstatus(&st, "slow").restart_count;
    assert!(restarts >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_container_spec_restarts_container() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let mut p = pod("upd", vec![container("c", "img:1", sh("x"))]);
    h.manager.sync(vec![p.clone()]);
    let before = h.wait_status("upd", Duration::from_secs(10), "Ready", is_ready).await;
    p.spec.as_mut().unwrap().containers[0].image = Some("img:2".into());
    h.manager.sync(vec![p]);
    let after = h
        .wait_status("upd", Duration::from_secs(10), "running img:2", |s| {
            let c = cstatus(s, "c");
            c.image == "img:2" && is_running(c) && c.container_id != cstatus(&before, "c").container_id
        })
        .await;
    assert_eq!(cstatus(&after, "c").restart_count, 1);
    assert_eq!(rt.start_count("c"), 2);
}

/// A runtime that keeps failing to create the pod sandbox (an overloaded Docker) is retried
/// with a doubling backoff, not at every pass, and the pod starts once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sandbox_creation_backs_off() {
    let rt = fake();
    let mut cfg = test_config(&unique("fake-node"));
    cfg.sandbox_retry_initial = Duration::from_millis(300);
    cfg.sandbox_retry_max = Duration::from_millis(600);
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, cfg).await;
    rt.fail_next_sandboxes(4);
    let started = std::time::Instant::now();
    h.manager.sync(vec![pod("p", vec![container("c", "img", sh("true"))])]);
    h.wait_status("p", Duration::from_secs(10), "Ready after the failures", is_ready).await;
    // Tries: fail, fail at the next pass, then waits of 300, 600 and 600 ms (the cap).
    let took = started.elapsed();
    assert_eq!(rt.sandbox_creates(), 5, "four failures, then success");
    assert!(took >= Duration::from_millis(1_400), "retries were not spaced out: Ready after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_kubelet_events_for_starts_probes_backoff_and_stops() {
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    rt.set_image_missing("gone:1", true);
    let mut probed = container("web", "img", sh("true"));
    probed.readiness_probe = Some(exec_probe(sh("check"), 1, 1));
    rt.set_exec_exit_code("web", 1);
    rt.set_on_start("crash", FakeStart::Exit(3));
    let p = pod("p", vec![probed, container("crash", "img", sh("exit 3"))]);
    let uid = p.metadata.uid.clone().unwrap();
    h.manager.sync(vec![p.clone(), pod("noimg", vec![container("c", "gone:1", sh("true"))])]);
    let has = |evs: &[(String, bool, String, String)], reason: &str, warning: bool, path: &str, msg: &str| {
        evs.iter().any(|e| e.0 == reason && e.1 == warning && e.2 == path && e.3.starts_with(msg))
    };
    wait_until(Duration::from_secs(10), "start, probe and back-off events", || {
        let evs = recorded(&h, "p");
        has(&evs, "Pulled", false, "spec.containers{web}", "Container image \"img\" already present on machine")
            && has(&evs, "Created", false, "spec.containers{web}", "Created container: web")
            && has(&evs, "Started", false, "spec.containers{web}", "Started container web")
            && has(&evs, "Unhealthy", true, "spec.containers{web}", "Readiness probe failed: ")
            && has(
                &evs,
                "BackOff",
                true,
                "spec.containers{crash}",
                &format!("Back-off restarting failed container crash in pod p_default({uid})"),
            )
    })
    .await;
    // A missing image is reported once, not at every pass.
    wait_until(Duration::from_secs(10), "ErrImageNeverPull event", || {
        has(&recorded(&h, "noimg"), "ErrImageNeverPull", true, "spec.containers{c}", "Container image \"gone:1\"")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // several resync passes (100 ms)
    let never_pull = recorded(&h, "noimg").iter().filter(|e| e.0 == "ErrImageNeverPull").count();
    assert_eq!(never_pull, 1, "{:?}", recorded(&h, "noimg"));
    // Deleting the pod: Killing for the running container.
    h.manager.sync(vec![deleted(p, 1)]);
    wait_until(Duration::from_secs(10), "Killing event", || {
        has(&recorded(&h, "p"), "Killing", false, "spec.containers{web}", "Stopping container web")
    })
    .await;
    wait_until(Duration::from_secs(10), "pod removed", || h.removed("p")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_are_bounded_and_never_replace_statuses() {
    let rt = fake();
    let mut config = test_config(&unique("fake-node"));
    config.status_channel_capacity = 1;
    config.max_batch = 8;
    config.max_recorded_events = 5;
    let (manager, mut rx) = PodManager::start(rt.clone() as Arc<dyn Runtime>, config).await.unwrap();
    let pods: Vec<_> = (0..20).map(|i| pod(&format!("p{i}"), vec![container("c", "img", sh("true"))])).collect();
    manager.sync(pods);
    wait_until(Duration::from_secs(20), "all Ready", || {
        (0..20).all(|i| manager.status("default", &format!("p{i}")).is_some_and(|s| is_ready(&s)))
    })
    .await;
    // Nobody read meanwhile: at most 5 events waited in the outbox (plus one batch in the
    // channel and one taken by the dispatcher), and every pod's status still arrives.
    let (mut recorded, mut ready) = (0, std::collections::HashSet::new());
    while ready.len() < 20 {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("batch").expect("open");
        assert!(batch.len() <= 8, "batch of {}", batch.len());
        for e in batch {
            match e {
                PodEvent::Recorded(_) => recorded += 1,
                PodEvent::Status(s) if is_ready(&s.status) => {
                    ready.insert(s.name);
                }
                _ => {}
            }
        }
    }
    assert!(recorded <= 5 + 8 + 8, "{recorded} events delivered with room for 5");
}

/// A container that needs what Skiff cannot provide (a ConfigMap volume, a Secret's value) is
/// not started without it: it waits with `CreateContainerConfigError`, told once by a `Failed`
/// event, while the pod's other containers run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_needing_what_skiff_cannot_provide_wait_with_a_config_error() {
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EnvVar, EnvVarSource, SecretKeySelector, Volume, VolumeMount,
    };
    let rt = fake();
    let h = Harness::start(rt.clone() as Arc<dyn Runtime>, test_config(&unique("fake-node"))).await;
    let mut cfg = container("cfg", "img", sh("true"));
    cfg.volume_mounts =
        Some(vec![VolumeMount { name: "settings".into(), mount_path: "/etc/app".into(), ..Default::default() }]);
    let mut secret = container("secret", "img", sh("true"));
    secret.env = Some(vec![EnvVar {
        name: "PASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: "db".into(), key: "password".into(), optional: None }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let mut p = pod("p", vec![cfg, secret, container("plain", "img", sh("true"))]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "settings".into(),
        config_map: Some(ConfigMapVolumeSource { name: "app".into(), ..Default::default() }),
        ..Default::default()
    }]);
    h.manager.sync(vec![p]);
    let st = h
        .wait_status("p", Duration::from_secs(10), "config errors", |s| {
            waiting_reason(cstatus(s, "cfg")) == Some("CreateContainerConfigError")
                && waiting_reason(cstatus(s, "secret")) == Some("CreateContainerConfigError")
                && is_running(cstatus(s, "plain"))
        })
        .await;
    let message = |name: &str| {
        cstatus(&st, name).state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.message.clone()).unwrap()
    };
    assert_eq!(
        message("cfg"),
        r#"volume "settings": configMap volumes are not supported by Skiff (emptyDir and hostPath are)"#
    );
    assert_eq!(message("secret"), r#"secret "db" not found (Skiff serves no Secrets)"#);
    assert!(!is_ready(&st));
    wait_until(Duration::from_secs(10), "Failed events", || {
        let evs = recorded(&h, "p");
        evs.iter().any(|e| {
            e.0 == "Failed" && e.1 && e.2 == "spec.containers{cfg}" && e.3.starts_with("Error: volume \"settings\"")
        }) && evs.iter().any(|e| {
            e.0 == "Failed"
                && e.1
                && e.2 == "spec.containers{secret}"
                && e.3 == "Error: secret \"db\" not found (Skiff serves no Secrets)"
        })
    })
    .await;
    // Later passes keep the container waiting without telling it again.
    let passes = rt.calls().generation_reads;
    wait_until(Duration::from_secs(10), "five more relists", || rt.calls().generation_reads >= passes + 5).await;
    let failed = recorded(&h, "p").iter().filter(|e| e.0 == "Failed").count();
    assert_eq!(failed, 2, "{:?}", recorded(&h, "p"));
    assert_eq!(rt.object_count(), 2, "the sandbox and the one container that could start");
}
