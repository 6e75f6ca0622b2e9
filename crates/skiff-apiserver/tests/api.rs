//! The API server's HTTP semantics against a real (single-replica, in-process) store:
//! pagination, watch from a compacted revision, dry run, graceful pod deletion, owner
//! propagation, field validation, size limits, patches, deletecollection, conflicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_apiserver::{router, ApiServer, ObjectStore};
use skiff_store::mem_network::MemRouter;
use skiff_store::{Request, StoreConfig, StoreNode};

struct Api {
    base: String,
    http: reqwest::Client,
    node: Arc<StoreNode>,
    _dir: tempfile::TempDir,
}

async fn wait_for<T, Fut: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> Fut) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let router_net = MemRouter::new();
    let cfg = StoreConfig {
        id: 1,
        addr: "mem-1".into(),
        data_dir: dir.path().join("n1"),
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        ..StoreConfig::default()
    };
    let members: BTreeMap<u64, String> = [(1, "mem-1".to_string())].into();
    let node = StoreNode::start(cfg, router_net.transport(1), Some(members)).await.unwrap();
    router_net.register(node.clone());
    let objects = Arc::new(ObjectStore::new(node.clone()));
    wait_for("a leader and the initial namespaces", || {
        let o = objects.clone();
        async move { o.ensure_initial_namespaces().await.ok() }
    })
    .await;
    let app = router(Arc::new(ApiServer { store: objects, logs: None }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api { base: format!("http://{addr}"), http: reqwest::Client::new(), node, _dir: dir }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "skiff/busybox:1"}]}})
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, ct: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.header("content-type", ct).body(serde_json::to_vec(&b).unwrap());
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        (code, v)
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, "application/json", Some(body)).await
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, "", None).await
    }
    async fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, "application/json", body).await
    }
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_limit_and_continue() {
    let api = start().await;
    for i in 0..5 {
        assert_eq!(api.post(PODS, pod(&format!("p{i}"))).await.0, 201);
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    for page in 0.. {
        let (code, list) = api.get(&format!("{PODS}?limit=2&continue={cont}")).await;
        assert_eq!(code, 200, "{list}");
        assert!(list["items"].as_array().unwrap().len() <= 2);
        names.extend(
            list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match list["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_string(),
            None => break,
        }
        assert!(page < 5, "pagination does not end");
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    let (code, e) = api.get(&format!("{PODS}?limit=2&continue=garbage")).await;
    assert_eq!((code, e["reason"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_is_gone() {
    let api = start().await;
    for i in 0..3 {
        api.post(PODS, pod(&format!("w{i}"))).await;
    }
    let rev = api.node.revision();
    api.node.write(Request::Compact { revision: rev }).await.unwrap();
    let (code, e) = api.get(&format!("{PODS}?watch=true&resourceVersion=1")).await;
    assert_eq!(code, 410, "{e}");
    assert_eq!(e["reason"], "Expired");
    assert!(e["message"].as_str().unwrap().contains("too old resource version"), "{e}");

    // A watch from the current revision streams the next change.
    let resp = api
        .http
        .get(format!("{}{PODS}?watch=true&resourceVersion={rev}&timeoutSeconds=10", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    api.post(PODS, pod("after")).await;
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    let mut buf = Vec::new();
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.unwrap());
            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                return serde_json::from_slice::<Value>(&buf[..i]).unwrap();
            }
        }
        panic!("watch ended")
    })
    .await
    .expect("an event within 10 s");
    assert_eq!(line["type"], "ADDED");
    assert_eq!(line["object"]["metadata"]["name"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validation_and_limits() {
    let api = start().await;
    let (code, p) = api.post(&format!("{PODS}?dryRun=All"), pod("dry")).await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["restartPolicy"], "Always", "defaults are applied in a dry run");
    assert_eq!(api.get(&format!("{PODS}/dry")).await.0, 404, "a dry run persists nothing");

    let mut bad = pod("bad");
    bad["spec"]["containers"][0]["imagee"] = json!("x");
    let (code, e) = api.post(&format!("{PODS}?fieldValidation=Strict"), bad.clone()).await;
    assert_eq!(code, 400);
    assert!(e["message"].as_str().unwrap().contains("unknown field \"spec.containers[0].imagee\""), "{e}");
    let resp = api.http.post(format!("{}{PODS}?fieldValidation=Warn", api.base)).json(&bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers().get("warning").unwrap().to_str().unwrap().contains("imagee"));

    let mut invalid = pod("Invalid_Name");
    invalid["spec"]["containers"][0]["ports"] = json!([{"containerPort": 70000}]);
    let (code, e) = api.post(PODS, invalid).await;
    assert_eq!(code, 422, "{e}");
    let fields: Vec<&str> =
        e["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"metadata.name") && fields.contains(&"spec.containers[0].ports[0].containerPort"), "{e}");

    let mut huge = pod("huge");
    huge["metadata"]["labels"] = json!({});
    huge["spec"]["containers"][0]["env"] = json!([{"name": "BIG", "value": "x".repeat(1_700_000)}]);
    let (code, e) = api.post(PODS, huge).await;
    assert_eq!(code, 413, "{e}");

    let resp = api
        .http
        .post(format!("{}{PODS}", api.base))
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(vec![0u8; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_conflict_and_patches() {
    let api = start().await;
    let (_, p) = api.post(PODS, pod("u")).await;
    let rv = p["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut changed = p.clone();
    changed["metadata"]["labels"]["v"] = json!("1");
    let (code, _) =
        api.send(reqwest::Method::PUT, &format!("{PODS}/u"), "application/json", Some(changed.clone())).await;
    assert_eq!(code, 200);
    changed["metadata"]["resourceVersion"] = json!(rv);
    let (code, e) = api.send(reqwest::Method::PUT, &format!("{PODS}/u"), "application/json", Some(changed)).await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")), "{e}");

    let patch = json!([{"op": "test", "path": "/metadata/labels/v", "value": "2"}]);
    let (code, _) =
        api.send(reqwest::Method::PATCH, &format!("{PODS}/u"), "application/json-patch+json", Some(patch)).await;
    assert!(code == 422 || code == 400, "a failed JSON-patch test is refused, got {code}");
    let patch = json!({"metadata": {"labels": {"v": null, "w": "2"}}});
    let (code, p) =
        api.send(reqwest::Method::PATCH, &format!("{PODS}/u"), "application/merge-patch+json", Some(patch)).await;
    assert_eq!(code, 200);
    assert_eq!(p["metadata"]["labels"], json!({"app": "x", "w": "2"}));
    let (code, _) = api.send(reqwest::Method::PATCH, &format!("{PODS}/u"), "text/plain", Some(json!({}))).await;
    assert_eq!(code, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_pod_deletion_and_owner_propagation() {
    let api = start().await;
    // A pod bound to a node is only marked; its agent (here: us) finishes with grace 0.
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("n1");
    api.post(PODS, bound).await;
    let (code, p) = api.delete(&format!("{PODS}/bound"), None).await;
    assert_eq!(code, 200);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(api.get(&format!("{PODS}/bound")).await.0, 200);
    api.delete(&format!("{PODS}/bound"), Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(api.get(&format!("{PODS}/bound")).await.0, 404);

    // Owners: Orphan keeps the dependent (without the reference), Background deletes it.
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";
    for (policy, survives) in [("Orphan", true), ("Background", false)] {
        let (code, owner) = api.post(RS, rs.clone()).await;
        assert_eq!(code, 201, "{owner}");
        let mut dep = pod("dep");
        dep["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
            "uid": owner["metadata"]["uid"], "controller": true}]);
        assert_eq!(api.post(PODS, dep).await.0, 201);
        api.delete(&format!("{RS}/rs"), Some(json!({"propagationPolicy": policy}))).await;
        wait_for(policy, || async {
            let (code, p) = api.get(&format!("{PODS}/dep")).await;
            let done = if survives {
                code == 200 && p["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty())
            } else {
                code == 404
            };
            done.then_some(())
        })
        .await;
        api.delete(&format!("{PODS}/dep"), None).await;
    }

    // deletecollection with a label selector.
    for n in ["a", "b"] {
        api.post(PODS, pod(n)).await;
    }
    let mut other = pod("c");
    other["metadata"]["labels"] = json!({"app": "y"});
    api.post(PODS, other).await;
    let (code, gone) = api.delete(&format!("{PODS}?labelSelector=app%3Dx"), None).await;
    assert_eq!(code, 200);
    assert_eq!(gone["items"].as_array().unwrap().len(), 2);
    let (_, left) = api.get(PODS).await;
    let names: Vec<&str> =
        left["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c"]);
}
