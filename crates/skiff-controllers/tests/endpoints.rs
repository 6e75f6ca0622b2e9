//! The Endpoints controller over `FakeApi`, started by `run_all` like in production.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_api::registry::{ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES};
use skiff_controllers::endpoints::{
    MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, SLICE_MANAGED_BY_VALUE,
};
use skiff_controllers::testing::FakeApi;
use skiff_controllers::{run_all, ControllerConfig, HeartbeatTable, ObjectApi};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    api: Arc<FakeApi>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start() -> Self {
        Self::start_with(Arc::new(FakeApi::new()))
    }

    fn start_with(api: Arc<FakeApi>) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("skiff_controllers=info").try_init();
        let (stop, rx) = watch::channel(false);
        let dyn_api: Arc<dyn ObjectApi> = api.clone();
        let cfg = ControllerConfig {
            backoff_base_ms: 10,
            backoff_max_ms: 200,
            resync_period_ms: 100, // resyncs must not cause writes either
            ..ControllerConfig::default()
        };
        let task = tokio::spawn(run_all(dyn_api, cfg, HeartbeatTable::new(), rx));
        Harness { api, stop, task }
    }

    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), self.task).await.expect("run_all stops").unwrap();
    }

    fn endpoints(&self, name: &str) -> Option<Value> {
        self.api.object(&ENDPOINTS, Some("default"), name)
    }

    /// Wait until the Endpoints `name` satisfy `f`; fail with their last state after `within`.
    async fn wait_endpoints(&self, what: &str, name: &str, within: Duration, f: impl Fn(Option<&Value>) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let ep = self.endpoints(name);
            if f(ep.as_ref()) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; endpoints: {:#}", json!(ep));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn service(name: &str, target_port: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "type": "NodePort",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_port, "nodePort": 30080}]}})
}

fn pod(name: &str, ip: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "web", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn set_ready(api: &FakeApi, name: &str, ready: bool) {
    api.modify(&PODS, Some("default"), name, |p| {
        p["status"]["conditions"] = json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
    })
    .expect("pod exists");
}

/// (ready IPs, not-ready IPs) over all subsets.
fn ips(ep: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.and_then(|e| e["subsets"].as_array()).into_iter().flatten() {
        for (key, out) in [("addresses", &mut ready), ("notReadyAddresses", &mut not_ready)] {
            for a in s[key].as_array().into_iter().flatten() {
                out.push(a["ip"].as_str().unwrap().to_string());
            }
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness_with_named_target_port() {
    let h = Harness::start();
    h.api.create(&PODS, pod("a", "10.0.0.1", true)).await.unwrap();
    h.api.create(&PODS, pod("b", "10.0.0.2", false)).await.unwrap();
    let mut other = pod("x", "10.0.0.9", true);
    other["metadata"]["labels"]["app"] = json!("db");
    h.api.create(&PODS, other).await.unwrap();
    h.api.create(&SERVICES, service("web", json!("web"))).await.unwrap();

    h.wait_endpoints("ready/not-ready split", "web", DEADLINE, |ep| {
        ips(ep) == (strs(&["10.0.0.1"]), strs(&["10.0.0.2"]))
    })
    .await;
    let ep = h.endpoints("web").unwrap();
    assert_eq!(ep["metadata"]["labels"][MANAGED_BY_LABEL], "endpoints-controller");
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    let target = &subset["addresses"][0]["targetRef"];
    assert_eq!((target["kind"].as_str(), target["name"].as_str()), (Some("Pod"), Some("a")));
    let pod_a = h.api.object(&PODS, Some("default"), "a").unwrap();
    assert_eq!(target["uid"], pod_a["metadata"]["uid"]);

    // Readiness changes are reflected within a second, both ways.
    set_ready(&h.api, "b", true);
    h.wait_endpoints("b becomes ready", "web", Duration::from_secs(1), |ep| {
        ips(ep) == (strs(&["10.0.0.1", "10.0.0.2"]), vec![])
    })
    .await;
    set_ready(&h.api, "a", false);
    h.wait_endpoints("a becomes unready", "web", Duration::from_secs(1), |ep| {
        ips(ep) == (strs(&["10.0.0.2"]), strs(&["10.0.0.1"]))
    })
    .await;
    // A new pod is picked up; a pod whose labels stop matching leaves.
    h.api.create(&PODS, pod("c", "10.0.0.3", true)).await.unwrap();
    h.api.modify(&PODS, Some("default"), "b", |p| p["metadata"]["labels"]["app"] = json!("other")).unwrap();
    h.wait_endpoints("c in, b out", "web", Duration::from_secs(1), |ep| {
        ips(ep) == (strs(&["10.0.0.3"]), strs(&["10.0.0.1"]))
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_pod_is_removed_at_once() {
    let h = Harness::start();
    h.api.create(&SERVICES, service("web", json!(8080))).await.unwrap();
    h.api.create(&PODS, pod("a", "10.0.0.1", true)).await.unwrap();
    h.api.create(&PODS, pod("b", "10.0.0.2", true)).await.unwrap();
    h.wait_endpoints("both ready", "web", DEADLINE, |ep| ips(ep).0.len() == 2).await;
    // Still Ready and Running, but being deleted (graceful deletion in progress).
    h.api
        .modify(&PODS, Some("default"), "a", |p| {
            p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
            p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        })
        .unwrap();
    h.wait_endpoints("terminating pod removed", "web", Duration::from_secs(1), |ep| {
        ips(ep) == (strs(&["10.0.0.2"]), vec![])
    })
    .await;
    // A terminal pod is removed too.
    h.api.modify(&PODS, Some("default"), "b", |p| p["status"]["phase"] = json!("Failed")).unwrap();
    h.wait_endpoints("terminal pod removed", "web", Duration::from_secs(1), |ep| {
        ep.is_some_and(|e| ips(Some(e)) == (vec![], vec![]))
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_deletion_removes_only_managed_endpoints() {
    let h = Harness::start();
    h.api.create(&PODS, pod("a", "10.0.0.1", true)).await.unwrap();
    h.api.create(&SERVICES, service("web", json!(8080))).await.unwrap();
    // A selector-less Service whose Endpoints the user writes by hand, and a stray user Endpoints.
    let mut manual = service("manual", json!(8080));
    manual["spec"].as_object_mut().unwrap().remove("selector");
    h.api.create(&SERVICES, manual).await.unwrap();
    let user_ep = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.168.1.1"}], "ports": [{"port": 5432}]}]})
    };
    h.api.create(&ENDPOINTS, user_ep("manual")).await.unwrap();
    h.api.create(&ENDPOINTS, user_ep("stray")).await.unwrap();
    h.wait_endpoints("web endpoints", "web", DEADLINE, |ep| ips(ep).0.len() == 1).await;

    h.api.delete(&SERVICES, Some("default"), "web", None, None).await.unwrap();
    h.wait_endpoints("web endpoints deleted", "web", Duration::from_secs(2), |ep| ep.is_none()).await;
    h.api.delete(&SERVICES, Some("default"), "manual", None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.endpoints("manual").is_some(), "user-managed endpoints are left alone");
    assert!(h.endpoints("stray").is_some(), "unmarked endpoints are left alone");
    assert_eq!(ips(h.endpoints("manual").as_ref()).0, strs(&["192.168.1.1"]));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writes_when_nothing_changes() {
    let h = Harness::start();
    for (i, ready) in [true, false, true].into_iter().enumerate() {
        h.api.create(&PODS, pod(&format!("p{i}"), &format!("10.0.0.{i}"), ready)).await.unwrap();
    }
    h.api.create(&SERVICES, service("web", json!("web"))).await.unwrap();
    h.wait_endpoints("endpoints", "web", DEADLINE, |ep| ips(ep).0.len() == 2 && ips(ep).1.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = h.api.writes();
    // Several resync periods (100 ms) and an unrelated pod change: nothing to write.
    h.api.modify(&PODS, Some("default"), "p0", |p| p["metadata"]["annotations"] = json!({"k": "v"})).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(h.api.writes(), writes + 1, "only the test's own pod change was written");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_endpoints_left_by_a_service_deleted_earlier_are_removed_at_start() {
    let api = Arc::new(FakeApi::new());
    let ep = |name: &str, managed: bool| {
        let mut e = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        if managed {
            e["metadata"]["labels"] = json!({MANAGED_BY_LABEL: "endpoints-controller"});
        }
        e
    };
    api.create(&ENDPOINTS, ep("ghost", true)).await.unwrap();
    api.create(&ENDPOINTS, ep("mine", false)).await.unwrap();
    let h = Harness::start_with(api);
    h.wait_endpoints("ghost endpoints deleted", "ghost", DEADLINE, |ep| ep.is_none()).await;
    assert!(h.endpoints("mine").is_some());
    h.shutdown().await;
}

/// The EndpointSlices labelled for Service `service`.
fn slices_of(api: &FakeApi, service: &str) -> Vec<Value> {
    api.objects(&ENDPOINTSLICES)
        .into_iter()
        .filter(|s| s["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() == Some(service))
        .collect()
}

/// (address, ready) of every endpoint of `slices`, sorted.
fn slice_endpoints(slices: &[Value]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| (e["addresses"][0].as_str().unwrap().to_string(), e["conditions"]["ready"].as_bool().unwrap()))
        .collect();
    out.sort();
    out
}

async fn wait_slices(api: &FakeApi, what: &str, service: &str, f: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let slices = slices_of(api, service);
        if f(&slices) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; slices: {:#}", json!(slices));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// kubectl (1.28 and later) reads a Service's endpoints from its EndpointSlices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_follow_the_endpoints() {
    let h = Harness::start();
    h.api.create(&PODS, pod("a", "10.0.0.1", true)).await.unwrap();
    h.api.create(&PODS, pod("b", "10.0.0.2", false)).await.unwrap();
    let svc = h.api.create(&SERVICES, service("web", json!("web"))).await.unwrap();
    // A slice someone else manages for the same Service is left alone.
    let foreign = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-manual", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.168.1.1"]}]});
    h.api.create(&ENDPOINTSLICES, foreign).await.unwrap();

    let ours = |slices: &[Value]| -> Vec<Value> {
        slices
            .iter()
            .filter(|s| s["metadata"]["labels"][SLICE_MANAGED_BY_LABEL] == SLICE_MANAGED_BY_VALUE)
            .cloned()
            .collect()
    };
    wait_slices(&h.api, "a ready, b not ready", "web", |s| {
        slice_endpoints(&ours(s)) == [("10.0.0.1".to_string(), true), ("10.0.0.2".to_string(), false)]
    })
    .await;
    let slice = ours(&slices_of(&h.api, "web")).pop().unwrap();
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("Service"), svc["metadata"]["uid"].as_str()));
    let target = &slice["endpoints"][0]["targetRef"];
    assert_eq!((target["kind"].as_str(), target["name"].as_str()), (Some("Pod"), Some("a")));

    set_ready(&h.api, "b", true);
    wait_slices(&h.api, "b ready", "web", |s| slice_endpoints(&ours(s)).iter().all(|(_, ready)| *ready)).await;
    // The slice is updated in place: one slice of ours, same name.
    assert_eq!(ours(&slices_of(&h.api, "web")).len(), 1);
    assert_eq!(ours(&slices_of(&h.api, "web"))[0]["metadata"]["name"], slice["metadata"]["name"]);

    h.api.delete(&SERVICES, Some("default"), "web", None, None).await.unwrap();
    wait_slices(&h.api, "our slices deleted with the Service", "web", |s| ours(s).is_empty()).await;
    assert_eq!(slices_of(&h.api, "web").len(), 1, "the foreign slice stays");
    h.shutdown().await;
}
