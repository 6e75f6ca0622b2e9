//! End-to-end tests of the controllers over `FakeApi`: no cluster, waits with deadlines.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_api::registry::{DEPLOYMENTS, EVENTS, NAMESPACES, NODES, PODS, REPLICASETS};
use skiff_controllers::deployment::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION};
use skiff_controllers::testing::FakeApi;
use skiff_controllers::util::{self, now_string};
use skiff_controllers::{run_all, ApiCallError, ControllerConfig, HeartbeatTable, ObjectApi};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The node the simulated kubelet binds ready pods to.
const WORKER: &str = "worker";
const DEADLINE: Duration = Duration::from_secs(20);

fn cfg() -> ControllerConfig {
    ControllerConfig {
        backoff_base_ms: 10,
        backoff_max_ms: 200,
        resync_period_ms: 2_000,
        lease_ttl_ms: 600,
        eviction_timeout_ms: 400,
        leader_grace_ms: 500,
        node_monitor_period_ms: 50,
        gc_interval_ms: 100,
        ..ControllerConfig::default()
    }
}

struct Harness {
    heartbeats: HeartbeatTable,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    worker_beat: Option<watch::Sender<bool>>,
}

impl Harness {
    /// Controllers plus a live node `worker` (heartbeating) for the simulated kubelet's pods.
    async fn start(api: Arc<FakeApi>) -> Self {
        if api.object(&NODES, None, WORKER).is_none() {
            create_node(&api, WORKER).await;
        }
        let mut h = Self::start_with(api, HeartbeatTable::new(), cfg());
        h.worker_beat = Some(heartbeat(&h.heartbeats, WORKER));
        h
    }

    fn start_with(api: Arc<FakeApi>, heartbeats: HeartbeatTable, cfg: ControllerConfig) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("skiff_controllers=info").try_init();
        let (stop, rx) = watch::channel(false);
        let dyn_api: Arc<dyn ObjectApi> = api.clone();
        let task = tokio::spawn(run_all(dyn_api, cfg, heartbeats.clone(), rx));
        Harness { heartbeats, stop, task, worker_beat: None }
    }

    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), self.task).await.expect("run_all stops promptly").unwrap();
    }
}

/// Poll `f` until it yields `Some`, or fail with `what` and the last observed state.
async fn wait_for<T>(what: &str, api: &FakeApi, mut f: impl FnMut(&FakeApi) -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f(api) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\ndeployments: {:#}\nreplicasets: {:#}\npods: {:#}",
                json!(api.objects(&DEPLOYMENTS)),
                json!(api.objects(&REPLICASETS).iter().map(|r| json!({"name": util::name(r), "spec": r["spec"]["replicas"], "status": r["status"], "ann": r["metadata"]["annotations"]})).collect::<Vec<_>>()),
                json!(api.objects(&PODS).iter().map(|p| json!([util::name(p), util::pod_is_ready(p), p["spec"]["nodeName"]])).collect::<Vec<_>>()),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn retry<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, ApiCallError>>,
{
    for _ in 0..100 {
        match f().await {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("update failed: {e}"),
        }
    }
    panic!("update kept conflicting");
}

/// Read-modify-write with CAS, retried on conflict (the controllers write status concurrently).
async fn update(api: &FakeApi, res: &'static skiff_api::ResourceInfo, name: &str, f: impl Fn(&mut Value)) {
    retry(|| {
        let mut obj = api.object(res, Some("default"), name).expect("object exists");
        f(&mut obj);
        api.update(res, obj)
    })
    .await
}

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn active_pods(api: &FakeApi) -> Vec<Value> {
    api.objects(&PODS).into_iter().filter(util::pod_is_active).collect()
}

fn pods_of(api: &FakeApi, rs: &Value) -> Vec<Value> {
    active_pods(api).into_iter().filter(|p| util::is_controlled_by(p, util::uid(rs))).collect()
}

/// What a kubelet would report: bound, running, ready.
fn make_ready(api: &FakeApi, pod: &Value, node: &str) {
    api.modify(&PODS, util::namespace(pod), util::name(pod), |p| {
        p["spec"]["nodeName"] = json!(node);
        p["status"] = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now_string()}]});
    });
}

fn make_all_ready(api: &FakeApi) {
    for p in active_pods(api) {
        if !util::pod_is_ready(&p) {
            make_ready(api, &p, WORKER);
        }
    }
}

fn rs_of(api: &FakeApi, deploy: &str) -> Vec<Value> {
    let d = api.object(&DEPLOYMENTS, Some("default"), deploy);
    let uid = d.as_ref().map(|d| util::uid(d).to_string()).unwrap_or_default();
    let mut v: Vec<Value> = api.objects(&REPLICASETS).into_iter().filter(|r| util::is_controlled_by(r, &uid)).collect();
    v.sort_by_key(|r| util::annotation(r, REVISION_ANNOTATION).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    v
}

fn condition(obj: &Value, ty: &str) -> Option<(String, String)> {
    util::condition(obj, ty)
        .map(|c| (c["status"].as_str().unwrap_or("").to_string(), c["reason"].as_str().unwrap_or("").to_string()))
}

/// The deployment finished its rollout as `kubectl rollout status` judges it.
fn rolled_out(api: &FakeApi, name: &str) -> Option<Value> {
    let d = api.object(&DEPLOYMENTS, Some("default"), name)?;
    let s = &d["status"];
    let n = d["spec"]["replicas"].as_i64()?;
    let ok = s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
        && s["updatedReplicas"].as_i64() == Some(n)
        && s["replicas"].as_i64() == Some(n)
        && s["availableReplicas"].as_i64() == Some(n)
        && condition(&d, "Progressing") == Some(("True".into(), "NewReplicaSetAvailable".into()))
        && condition(&d, "Available") == Some(("True".into(), "MinimumReplicasAvailable".into()));
    ok.then_some(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_deletes_and_adopts() {
    let api = Arc::new(FakeApi::new());
    // An orphan that matches the selector is adopted instead of creating a third pod.
    api.create(&PODS, json!({"metadata": {"name": "orphan", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
        .await
        .unwrap();
    let h = Harness::start(api.clone()).await;
    let rs = api
        .create(&REPLICASETS, json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
        .await
        .unwrap();
    let pods = wait_for("3 pods", &api, |a| Some(pods_of(a, &rs)).filter(|p| p.len() == 3)).await;
    assert!(pods.iter().any(|p| util::name(p) == "orphan"), "orphan adopted");
    for p in &pods {
        assert_eq!(util::controller_ref(p).unwrap()["kind"], "ReplicaSet");
        if util::name(p) != "orphan" {
            assert!(util::name(p).starts_with("web-"), "generateName <rs>-: {}", util::name(p));
        }
    }
    assert_eq!(active_pods(&api).len(), 3);

    // A pod being deleted no longer counts: a replacement is created.
    let doomed = pods[0].clone();
    api.modify(&PODS, Some("default"), util::name(&doomed), |p| {
        p["metadata"]["deletionTimestamp"] = json!(now_string())
    });
    wait_for("replacement", &api, |a| Some(()).filter(|_| pods_of(a, &rs).len() == 3 && a.objects(&PODS).len() == 4))
        .await;
    api.delete(&PODS, Some("default"), util::name(&doomed), None, Some(0)).await.unwrap();

    // Ready pods are kept on scale-down; the unready ones go first.
    let current = pods_of(&api, &rs);
    make_ready(&api, &current[0], WORKER);
    let keep = util::name(&current[0]).to_string();
    update(&api, &REPLICASETS, "web", |r| r["spec"]["replicas"] = json!(1)).await;
    let left = wait_for("1 pod", &api, |a| Some(pods_of(a, &rs)).filter(|p| p.len() == 1)).await;
    assert_eq!(util::name(&left[0]), keep);
    let rs_now = wait_for("status", &api, |a| {
        a.object(&REPLICASETS, Some("default"), "web").filter(|r| {
            r["status"]["replicas"] == 1
                && r["status"]["readyReplicas"] == 1
                && r["status"]["availableReplicas"] == 1
                && r["status"]["fullyLabeledReplicas"] == 1
                && r["status"]["observedGeneration"] == r["metadata"]["generation"]
        })
    })
    .await;
    assert_eq!(rs_now["metadata"]["generation"], 2);
    wait_for("events", &api, |a| {
        let evs = a.objects(&EVENTS);
        let has = |r: &str| evs.iter().any(|e| e["reason"] == r && e["involvedObject"]["name"] == "web");
        Some(()).filter(|_| has("SuccessfulCreate") && has("SuccessfulDelete"))
    })
    .await;

    // Steady state makes no writes.
    let writes = api.writes();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.writes(), writes, "an idle controller must not write");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_errors_are_retried() {
    let api = Arc::new(FakeApi::new());
    api.fail_next("create", Some(&PODS), ApiCallError::unavailable("raft: no leader"), 3);
    let h = Harness::start(api.clone()).await;
    let rs = api
        .create(&REPLICASETS, json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
        .await
        .unwrap();
    wait_for("2 pods despite failures", &api, |a| Some(()).filter(|_| pods_of(a, &rs).len() == 2)).await;
    wait_for("FailedCreate event", &api, |a| a.objects(&EVENTS).into_iter().find(|e| e["reason"] == "FailedCreate"))
        .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_hashed_replicaset_with_revision_and_scales() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    api.create(&DEPLOYMENTS, deployment("web", 3, "app:1")).await.unwrap();
    let rs = wait_for("rs", &api, |a| rs_of(a, "web").pop()).await;
    let hash = rs["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL].as_str().unwrap().to_string();
    assert_eq!(util::name(&rs), format!("web-{hash}"));
    assert_eq!(rs["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH_LABEL], hash.as_str());
    assert_eq!(rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL], hash.as_str());
    assert_eq!(util::annotation(&rs, REVISION_ANNOTATION), Some("1"));
    wait_for("3 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 3)).await;
    make_all_ready(&api);
    let d = wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;
    assert_eq!(util::annotation(&d, REVISION_ANNOTATION), Some("1"));
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["unavailableReplicas"], 0);

    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["replicas"] = json!(5)).await;
    wait_for("5 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 5)).await;
    make_all_ready(&api);
    wait_for("rolled out at 5", &api, |a| rolled_out(a, "web")).await;
    assert_eq!(rs_of(&api, "web").len(), 1, "scaling does not create a replica set");
    assert_eq!(util::annotation(&rs_of(&api, "web")[0], "deployment.kubernetes.io/desired-replicas"), Some("5"));
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["replicas"] = json!(2)).await;
    wait_for("2 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 2)).await;
    wait_for("rolled out at 2", &api, |a| rolled_out(a, "web")).await;
    wait_for("2 pods left", &api, |a| Some(()).filter(|_| a.objects(&PODS).len() == 2)).await;
    make_all_ready(&api);
    wait_for("settled", &api, |a| rolled_out(a, "web")).await;
    let writes = api.writes();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = api.objects(&EVENTS).len() as u64;
    assert!(api.writes() <= writes + events, "an idle deployment controller must not write");
    wait_for("ScalingReplicaSet event", &api, |a| {
        a.objects(&EVENTS).into_iter().find(|e| {
            e["reason"] == "ScalingReplicaSet"
                && e["message"].as_str().unwrap_or("").starts_with("Scaled down replica set web-")
        })
    })
    .await;
    h.shutdown().await;
}

/// Drive a rollout by readying one pod at a time, checking maxSurge/maxUnavailable on every
/// observed state, until the deployment is rolled out.
async fn drive_rollout(api: &FakeApi, name: &str, replicas: i64, surge: i64, unavailable: i64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rss = rs_of(api, name);
        let spec_total: i64 = rss.iter().map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0)).sum();
        assert!(spec_total <= replicas + surge, "maxSurge violated: {spec_total} > {replicas}+{surge}");
        let ready = active_pods(api).iter().filter(|p| util::pod_is_ready(p)).count() as i64;
        assert!(ready >= replicas - unavailable, "maxUnavailable violated: {ready} ready < {replicas}-{unavailable}");
        if let Some(d) = rolled_out(api, name) {
            if rss.len() > 1 && rss[..rss.len() - 1].iter().all(|r| r["spec"]["replicas"] == 0) {
                return d;
            }
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {rss:#?}");
        if let Some(p) = active_pods(api).into_iter().find(|p| !util::pod_is_ready(p)) {
            make_ready(api, &p, WORKER);
        }
        tokio::time::sleep(Duration::from_millis(25)).await; // kubelet pacing, not synchronization
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_honours_surge_and_unavailable() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    let mut d = deployment("web", 4, "app:1");
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    api.create(&DEPLOYMENTS, d).await.unwrap();
    wait_for("4 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 4)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;

    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"))
        .await;
    let d = drive_rollout(&api, "web", 4, 1, 1).await;
    let rss = rs_of(&api, "web");
    assert_eq!(rss.len(), 2);
    assert_eq!(util::annotation(&rss[1], REVISION_ANNOTATION), Some("2"));
    assert_eq!(util::annotation(&d, REVISION_ANNOTATION), Some("2"));
    assert!(active_pods(&api).iter().all(|p| util::is_controlled_by(p, util::uid(&rss[1]))));

    // Percentages: 25% of 4 → surge 1 (rounded up), unavailable 1 (rounded down).
    update(&api, &DEPLOYMENTS, "web", |d| {
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": "25%"});
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:3");
    })
    .await;
    drive_rollout(&api, "web", 4, 1, 1).await;

    // maxUnavailable 0: never below 4 ready.
    update(&api, &DEPLOYMENTS, "web", |d| {
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 2, "maxUnavailable": 0});
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:4");
    })
    .await;
    drive_rollout(&api, "web", 4, 2, 0).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_waits_for_min_ready_seconds() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    let mut d = deployment("web", 1, "app:1");
    d["spec"]["minReadySeconds"] = json!(1);
    api.create(&DEPLOYMENTS, d).await.unwrap();
    let pod = wait_for("pod", &api, |a| active_pods(a).pop()).await;
    let started = Instant::now();
    make_ready(&api, &pod, WORKER);
    let d = wait_for("available after minReadySeconds", &api, |a| rolled_out(a, "web")).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "available too early");
    assert_eq!(rs_of(&api, "web")[0]["spec"]["minReadySeconds"], 1);
    assert_eq!(d["status"]["readyReplicas"], 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_overlaps_versions() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    let mut d = deployment("web", 2, "app:1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    api.create(&DEPLOYMENTS, d).await.unwrap();
    wait_for("2 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 2)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"))
        .await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rss = rs_of(&api, "web");
        let versions: std::collections::HashSet<String> = api
            .objects(&PODS)
            .iter()
            .map(|p| p["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL].as_str().unwrap_or("").to_string())
            .collect();
        assert!(versions.len() <= 1, "old and new pods at the same time: {versions:?}");
        if rss.len() == 2 && rolled_out(&api, "web").is_some() && rss[0]["spec"]["replicas"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "recreate did not finish: {rss:#?}");
        make_all_ready(&api);
        tokio::time::sleep(Duration::from_millis(20)).await; // kubelet pacing
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_does_not_roll_out_until_resumed() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    api.create(&DEPLOYMENTS, deployment("web", 2, "app:1")).await.unwrap();
    wait_for("2 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 2)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;

    update(&api, &DEPLOYMENTS, "web", |d| {
        d["spec"]["paused"] = json!(true);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    })
    .await;
    wait_for("paused condition observed", &api, |a| {
        let d = a.object(&DEPLOYMENTS, Some("default"), "web")?;
        (condition(&d, "Progressing") == Some(("Unknown".into(), "DeploymentPaused".into()))
            && d["status"]["observedGeneration"] == d["metadata"]["generation"])
            .then_some(())
    })
    .await;
    assert_eq!(rs_of(&api, "web").len(), 1, "a paused deployment creates no new replica set");
    // Scaling still works while paused.
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["replicas"] = json!(3)).await;
    wait_for("3 pods while paused", &api, |a| Some(()).filter(|_| active_pods(a).len() == 3)).await;
    assert_eq!(rs_of(&api, "web").len(), 1);
    make_all_ready(&api);

    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["paused"] = json!(false)).await;
    drive_rollout(&api, "web", 3, 1, 0).await;
    assert_eq!(rs_of(&api, "web").len(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded_halts_with_old_pods_serving() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    let mut d = deployment("web", 3, "app:1");
    d["spec"]["progressDeadlineSeconds"] = json!(1);
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    api.create(&DEPLOYMENTS, d).await.unwrap();
    wait_for("3 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 3)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;

    // The new version never becomes ready.
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("broken:2"))
        .await;
    let d = wait_for("ProgressDeadlineExceeded", &api, |a| {
        let d = a.object(&DEPLOYMENTS, Some("default"), "web")?;
        (condition(&d, "Progressing") == Some(("False".into(), "ProgressDeadlineExceeded".into()))).then_some(d)
    })
    .await;
    let msg = util::condition(&d, "Progressing").unwrap()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("has timed out progressing"), "{msg}");
    let rss = rs_of(&api, "web");
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0]["spec"]["replicas"], 3, "old replica set keeps serving");
    assert_eq!(rss[1]["spec"]["replicas"], 1, "new replica set stuck at maxSurge");
    assert_eq!(pods_of(&api, &rss[0]).iter().filter(|p| util::pod_is_ready(p)).count(), 3);
    assert_eq!(condition(&d, "Available"), Some(("True".into(), "MinimumReplicasAvailable".into())));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reuses_old_replicaset_with_new_revision() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    api.create(&DEPLOYMENTS, deployment("web", 2, "app:1")).await.unwrap();
    wait_for("2 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 2)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;
    let v1 = rs_of(&api, "web")[0].clone();
    let v1_template = api.object(&DEPLOYMENTS, Some("default"), "web").unwrap()["spec"]["template"].clone();

    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2"))
        .await;
    drive_rollout(&api, "web", 2, 1, 0).await;

    // `kubectl rollout undo`: the template goes back to revision 1's.
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"] = v1_template.clone()).await;
    drive_rollout(&api, "web", 2, 1, 0).await;
    let rss = rs_of(&api, "web");
    assert_eq!(rss.len(), 2, "no new replica set on rollback");
    let newest = rss.last().unwrap();
    assert_eq!(util::uid(newest), util::uid(&v1), "revision 1's replica set is reused");
    assert_eq!(util::annotation(newest, REVISION_ANNOTATION), Some("3"));
    let d = api.object(&DEPLOYMENTS, Some("default"), "web").unwrap();
    assert_eq!(util::annotation(&d, REVISION_ANNOTATION), Some("3"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_cleans_old_replicasets() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    let mut d = deployment("web", 1, "app:1");
    d["spec"]["revisionHistoryLimit"] = json!(1);
    api.create(&DEPLOYMENTS, d).await.unwrap();
    wait_for("pod", &api, |a| Some(()).filter(|_| active_pods(a).len() == 1)).await;
    make_all_ready(&api);
    wait_for("rolled out", &api, |a| rolled_out(a, "web")).await;
    for image in ["app:2", "app:3", "app:4"] {
        update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image))
            .await;
        drive_rollout(&api, "web", 1, 1, 0).await;
    }
    let rss = wait_for("history trimmed to 1 old", &api, |a| Some(rs_of(a, "web")).filter(|r| r.len() == 2)).await;
    let revs: Vec<&str> = rss.iter().map(|r| util::annotation(r, REVISION_ANNOTATION).unwrap()).collect();
    assert_eq!(revs, ["3", "4"]);
    h.shutdown().await;
}

async fn create_node(api: &FakeApi, name: &str) {
    api.create(
        &NODES,
        json!({"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": now_string()}]}}),
    )
    .await
    .unwrap();
}

fn node_state(api: &FakeApi, name: &str) -> (String, bool) {
    let n = api.object(&NODES, None, name).unwrap();
    let ready = condition(&n, "Ready").map(|c| c.0).unwrap_or_default();
    let tainted = n["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
    });
    (ready, tainted)
}

/// Heartbeats for `node` every 50 ms until the returned sender is dropped or set.
fn heartbeat(table: &HeartbeatTable, node: &'static str) -> watch::Sender<bool> {
    let (tx, mut rx) = watch::channel(false);
    let table = table.clone();
    tokio::spawn(async move {
        loop {
            table.record(node);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = rx.wait_for(|s| *s) => return,
            }
        }
    });
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_tainted_then_evicted_and_recovers() {
    let api = Arc::new(FakeApi::new());
    create_node(&api, "n1").await;
    create_node(&api, "n2").await;
    let h = Harness::start(api.clone()).await;
    let beat1 = heartbeat(&h.heartbeats, "n1");
    let _beat2 = heartbeat(&h.heartbeats, "n2");
    let rs = api
        .create(&REPLICASETS, json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
        .await
        .unwrap();
    let pods = wait_for("2 pods", &api, |a| Some(pods_of(a, &rs)).filter(|p| p.len() == 2)).await;
    for p in &pods {
        make_ready(&api, p, "n1");
    }
    let doomed: Vec<String> = pods.iter().map(|p| util::uid(p).to_string()).collect();

    beat1.send(true).unwrap();
    let silent_at = Instant::now();
    wait_for("n1 unknown + tainted", &api, |a| Some(()).filter(|_| node_state(a, "n1") == ("Unknown".into(), true)))
        .await;
    let marked_after = silent_at.elapsed();
    assert!(marked_after >= Duration::from_millis(500), "judged before the lease TTL: {marked_after:?}");
    let n1 = api.object(&NODES, None, "n1").unwrap();
    assert_eq!(util::condition(&n1, "Ready").unwrap()["reason"], "NodeStatusUnknown");
    assert_eq!(node_state(&api, "n2"), ("True".into(), false), "n2 keeps beating");

    wait_for("pods evicted and replaced", &api, |a| {
        let now = pods_of(a, &rs);
        (now.len() == 2 && now.iter().all(|p| !doomed.contains(&util::uid(p).to_string()))).then_some(())
    })
    .await;
    assert!(silent_at.elapsed() >= Duration::from_millis(900), "evicted before TTL + eviction timeout");
    wait_for("NodeNotReady event", &api, |a| a.objects(&EVENTS).into_iter().find(|e| e["reason"] == "NodeNotReady"))
        .await;

    let _beat1 = heartbeat(&h.heartbeats, "n1");
    wait_for("n1 ready again", &api, |a| Some(()).filter(|_| node_state(a, "n1") == ("True".into(), false))).await;

    // n2 was healthy at every pass: a version someone else marks Unknown and taints while it
    // keeps beating is put right all the same.
    let mut n2 = api.object(&NODES, None, "n2").unwrap();
    for c in n2["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" {
            c["status"] = json!("Unknown");
        }
    }
    let mut n2 = api.update_status(&NODES, n2).await.unwrap();
    n2["spec"]["taints"] = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
    api.update(&NODES, n2).await.unwrap();
    wait_for("n2 ready again", &api, |a| Some(()).filter(|_| node_state(a, "n2") == ("True".into(), false))).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_gives_every_node_a_fresh_grace_period() {
    let api = Arc::new(FakeApi::new());
    create_node(&api, "n1").await;
    // The old leader heard n1 long ago (its table is gone with it); the new one starts empty.
    let old = Harness::start(api.clone()).await;
    wait_for("first leader synced", &api, |_| Some(())).await;
    old.shutdown().await;

    let started = Instant::now();
    let new = Harness::start(api.clone()).await;
    wait_for("n1 judged unreachable", &api, |a| Some(()).filter(|_| node_state(a, "n1") == ("Unknown".into(), true)))
        .await;
    // Not before the lease (600 ms) and the new leader's grace (500 ms) have both run out:
    // n1's agent may still be streaming to a frozen old leader.
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(1_100), "no grace period: judged after {after:?}");
    new.shutdown().await;

    // A third leader that hears n1 brings it back.
    let third = Harness::start(api.clone()).await;
    let _beat = heartbeat(&third.heartbeats, "n1");
    wait_for("n1 ready", &api, |a| Some(()).filter(|_| node_state(a, "n1") == ("True".into(), false))).await;
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_removes_orphans() {
    let api = Arc::new(FakeApi::new());
    let owner = api
        .create(
            &REPLICASETS,
            json!({"metadata": {"name": "live"}, "spec": {"replicas": 0,
        "selector": {"matchLabels": {"app": "live"}},
        "template": {"metadata": {"labels": {"app": "live"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        )
        .await
        .unwrap();
    let dangling = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone", "uid": "no-such-uid", "controller": true});
    api.create(
        &PODS,
        json!({"metadata": {"name": "orphan", "labels": {"x": "1"}, "ownerReferences": [dangling]}, "spec": {}}),
    )
    .await
    .unwrap();
    let live_ref = util::controller_owner_ref(&REPLICASETS, &owner);
    api.create(
        &PODS,
        json!({"metadata": {"name": "owned", "labels": {"x": "1"}, "ownerReferences": [live_ref]}, "spec": {}}),
    )
    .await
    .unwrap();
    create_node(&api, "n1").await;
    api.create(&PODS, json!({"metadata": {"name": "on-ghost"}, "spec": {"nodeName": "ghost"}})).await.unwrap();
    api.create(&PODS, json!({"metadata": {"name": "on-n1"}, "spec": {"nodeName": "n1"}})).await.unwrap();
    // A namespace left Terminating (its replica died mid-deletion) is deleted again, which
    // makes the real API server resume emptying it; the fake removes it at once.
    api.create(&NAMESPACES, json!({"metadata": {"name": "left"}})).await.unwrap();
    api.modify(&NAMESPACES, None, "left", |n| n["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
    api.create(&NAMESPACES, json!({"metadata": {"name": "kept"}})).await.unwrap();
    let h = Harness::start(api.clone()).await;
    wait_for("terminating namespace deleted again", &api, |a| {
        a.object(&NAMESPACES, None, "left").is_none().then_some(())
    })
    .await;
    assert!(api.object(&NAMESPACES, None, "kept").is_some());
    wait_for("orphan deleted", &api, |a| a.object(&PODS, Some("default"), "orphan").is_none().then_some(())).await;
    wait_for("pod on missing node deleted", &api, |a| {
        a.object(&PODS, Some("default"), "on-ghost").is_none().then_some(())
    })
    .await;
    assert!(api.object(&PODS, Some("default"), "owned").is_some());
    assert!(api.object(&PODS, Some("default"), "on-n1").is_some());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_halts_run_all_promptly_and_nothing_writes_after() {
    let api = Arc::new(FakeApi::new());
    let h = Harness::start(api.clone()).await;
    api.create(&DEPLOYMENTS, deployment("web", 2, "app:1")).await.unwrap();
    wait_for("2 pods", &api, |a| Some(()).filter(|_| active_pods(a).len() == 2)).await;
    let started = Instant::now();
    h.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    // A deposed leader's controllers are gone: nobody reacts to changes any more.
    update(&api, &DEPLOYMENTS, "web", |d| d["spec"]["replicas"] = json!(5)).await;
    let writes = api.writes();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.writes(), writes);
    assert_eq!(active_pods(&api).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_eviction_run_out_on_time_whatever_the_monitor_period() {
    let api = Arc::new(FakeApi::new());
    create_node(&api, "n1").await;
    api.create(
        &PODS,
        json!({"metadata": {"name": "p1", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}}),
    )
    .await
    .unwrap();
    // A monitor period far beyond the lease (600 ms) and eviction timeout (400 ms): the
    // controller must wake when they run out, not a period later.
    // A second node keeps beating: with n1 alone silent, the only node, evictions would be held.
    create_node(&api, WORKER).await;
    let slow = ControllerConfig { node_monitor_period_ms: 10_000, ..cfg() };
    let started = Instant::now();
    let h = Harness::start_with(api.clone(), HeartbeatTable::new(), slow);
    let _beat = heartbeat(&h.heartbeats, WORKER);
    wait_for("n1 unknown + tainted", &api, |a| Some(()).filter(|_| node_state(a, "n1") == ("Unknown".into(), true)))
        .await;
    let marked = started.elapsed();
    assert!(marked >= Duration::from_millis(550), "judged before the lease TTL: {marked:?}");
    assert!(marked < Duration::from_secs(3), "judged a monitor period late: {marked:?}");
    wait_for("p1 evicted", &api, |a| a.object(&PODS, Some("default"), "p1").is_none().then_some(())).await;
    let evicted = started.elapsed();
    assert!(evicted >= Duration::from_millis(950), "evicted before TTL + eviction timeout: {evicted:?}");
    assert!(evicted < Duration::from_secs(3), "evicted a monitor period late: {evicted:?}");
    h.shutdown().await;
}

async fn create_zoned_node(api: &FakeApi, name: &str, zone: &str) {
    api.create(
        &NODES,
        json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": now_string()}]}}),
    )
    .await
    .unwrap();
}

async fn create_bound_pod(api: &FakeApi, name: &str, node: &str) {
    api.create(
        &PODS,
        json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}),
    )
    .await
    .unwrap();
}

fn pod_exists(api: &FakeApi, name: &str) -> bool {
    api.object(&PODS, Some("default"), name).is_some()
}

/// Waits `window` (a bounded observation, not a wait for a condition) and fails as soon as
/// `what` no longer holds.
async fn holds_for(what: &str, window: Duration, api: &FakeApi, f: impl Fn(&FakeApi) -> bool) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        assert!(f(api), "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_held_while_every_node_is_silent_and_resume_late_when_one_returns() {
    let api = Arc::new(FakeApi::new());
    create_node(&api, "n1").await;
    create_node(&api, "n2").await;
    create_bound_pod(&api, "p1", "n1").await;
    create_bound_pod(&api, "p2", "n2").await;
    // No node beats: to this leader the whole cluster is silent, as when it is the one cut off.
    let h = Harness::start_with(api.clone(), HeartbeatTable::new(), cfg());
    wait_for("both nodes unknown + tainted", &api, |a| {
        (node_state(a, "n1") == ("Unknown".into(), true) && node_state(a, "n2") == ("Unknown".into(), true))
            .then_some(())
    })
    .await;
    // Four eviction timeouts (400 ms each) later, nothing is evicted.
    holds_for("both pods kept", Duration::from_millis(1_600), &api, |a| pod_exists(a, "p1") && pod_exists(a, "p2"))
        .await;

    // n2 comes back: one of two silent is no disruption, and n1's pods go, but only a fresh
    // eviction timeout after the hold ended (n1 may be a moment behind n2 in coming back).
    let back = Instant::now();
    let _beat = heartbeat(&h.heartbeats, "n2");
    wait_for("p1 evicted", &api, |a| (!pod_exists(a, "p1")).then_some(())).await;
    let evicted_after = back.elapsed();
    assert!(evicted_after >= Duration::from_millis(400), "evicted {evicted_after:?} after the hold ended");
    assert!(pod_exists(&api, "p2"), "n2's pod stays");
    wait_for("n2 ready", &api, |a| Some(()).filter(|_| node_state(a, "n2") == ("True".into(), false))).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_silent_zone_holds_its_evictions_and_a_wholly_silent_one_among_live_zones_does_not() {
    let api = Arc::new(FakeApi::new());
    // Zone a: three of four nodes silent (75 % >= 55 %, more than two): partial disruption.
    // Zone b: every node silent while zone c lives: the zone is down, its pods move.
    for (node, zone) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("a4", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c")] {
        create_zoned_node(&api, node, zone).await;
    }
    create_bound_pod(&api, "on-a1", "a1").await;
    create_bound_pod(&api, "on-b1", "b1").await;
    let h = Harness::start_with(api.clone(), HeartbeatTable::new(), cfg());
    let _a4 = heartbeat(&h.heartbeats, "a4");
    let _c1 = heartbeat(&h.heartbeats, "c1");
    wait_for("on-b1 evicted", &api, |a| (!pod_exists(a, "on-b1")).then_some(())).await;
    assert_eq!(node_state(&api, "a1"), ("Unknown".into(), true), "a1 is still marked and tainted");
    // a1 turned silent with b1: its pod would have gone in the same pass.
    holds_for("on-a1 kept", Duration::from_millis(1_200), &api, |a| pod_exists(a, "on-a1")).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partly_silent_zone_loses_its_pods_one_node_at_a_time() {
    let api = Arc::new(FakeApi::new());
    // Zone a: four of five nodes silent, and five is above the large-zone threshold (4): the
    // zone is slowed, one node's pods every 500 ms. Zone b: a small zone with the same share
    // silent (three of four) is held as before.
    let silent = ["a1", "a2", "a3", "a4"];
    for node in silent.iter().chain(&["a5"]) {
        create_zoned_node(&api, node, "a").await;
        create_bound_pod(&api, &format!("on-{node}"), node).await;
    }
    for node in ["b1", "b2", "b3", "b4"] {
        create_zoned_node(&api, node, "b").await;
    }
    create_bound_pod(&api, "on-b1", "b1").await;
    let interval = Duration::from_millis(500);
    let h = Harness::start_with(
        api.clone(),
        HeartbeatTable::new(),
        ControllerConfig { large_zone_threshold: 4, secondary_eviction_rate: 1.0 / interval.as_secs_f64(), ..cfg() },
    );
    let _a5 = heartbeat(&h.heartbeats, "a5");
    let _b4 = heartbeat(&h.heartbeats, "b4");
    // When each silent node's pod went, in order.
    let mut gone: Vec<(&str, Instant)> = Vec::new();
    while gone.len() < silent.len() {
        let node = wait_for("the next node's pod evicted", &api, |a| {
            silent.iter().find(|n| !gone.iter().any(|(g, _)| g == *n) && !pod_exists(a, &format!("on-{n}")))
        })
        .await;
        gone.push((node, Instant::now()));
    }
    for pair in gone.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        // The turns are 500 ms apart; polling every 10 ms can see two of them up to ~20 ms closer.
        assert!(
            gap >= interval - Duration::from_millis(60),
            "{} lost its pod {gap:?} after {}: a slowed zone evicts one node per {interval:?}",
            pair[1].0,
            pair[0].0
        );
    }
    assert!(pod_exists(&api, "on-a5"), "the live node keeps its pod");
    assert!(pod_exists(&api, "on-b1"), "the small zone is held");
    assert_eq!(node_state(&api, "b1"), ("Unknown".into(), true), "b1 is marked and tainted all the same");
    h.shutdown().await;
}
