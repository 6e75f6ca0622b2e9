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
    objects: Arc<ObjectStore>,
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
    let app = router(Arc::new(ApiServer { store: objects.clone(), logs: None }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api { base: format!("http://{addr}"), http: reqwest::Client::new(), node, objects, _dir: dir }
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
    async fn send_bytes(&self, method: reqwest::Method, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", ct)
            .body(body)
            .send()
            .await;
        let resp = resp.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
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
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// A request body kubectl v1.32.4 sent (see `src/protobuf/tests.rs`).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A length-delimited protobuf field.
fn pb_field(num: u8, bytes: &[u8]) -> Vec<u8> {
    assert!(num < 16 && bytes.len() < 128, "a one-byte key and length keep this helper simple");
    let mut v = vec![(num << 3) | 2, bytes.len() as u8];
    v.extend_from_slice(bytes);
    v
}

/// A varint protobuf field (small non-negative values).
fn pb_varint(num: u8, v: u8) -> Vec<u8> {
    assert!(v < 128);
    vec![num << 3, v]
}

/// A whole Kubernetes protobuf body: magic + `runtime.Unknown{typeMeta, raw}`.
fn pb_body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [pb_field(1, api_version.as_bytes()), pb_field(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), pb_field(1, &type_meta), pb_field(2, raw)].concat()
}

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

/// The names (and `app` labels) on one page, and its continue token.
async fn page(api: &Api, query: &str) -> (Vec<String>, String, Option<String>) {
    let (code, list) = api.get(&format!("{PODS}?{query}")).await;
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    let names = items
        .iter()
        .map(|p| {
            format!("{}:{}", p["metadata"]["name"].as_str().unwrap(), p["metadata"]["labels"]["app"].as_str().unwrap())
        })
        .collect();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    (names, rv, list["metadata"]["continue"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continued_pages_show_the_first_pages_snapshot() {
    let api = start().await;
    for i in 0..6 {
        assert_eq!(api.post(PODS, pod(&format!("p{i}"))).await.0, 201);
    }
    let (first, rv, cont) = page(&api, "limit=2").await;
    assert_eq!(first, ["p0:x", "p1:x"]);
    let cont = cont.expect("more pages");

    // Changes after the first page: a delete, a create in the middle and at the end, an
    // update, and a delete-then-recreate. None of them shows on the later pages.
    assert_eq!(api.delete(&format!("{PODS}/p3"), None).await.0, 200);
    assert_eq!(api.post(PODS, pod("p2a")).await.0, 201);
    assert_eq!(api.post(PODS, pod("p9")).await.0, 201);
    let patch = json!({"metadata": {"labels": {"app": "changed"}}});
    let (code, _) =
        api.send(reqwest::Method::PATCH, &format!("{PODS}/p4"), "application/merge-patch+json", Some(patch)).await;
    assert_eq!(code, 200);
    assert_eq!(api.delete(&format!("{PODS}/p5"), None).await.0, 200);
    let mut p5 = pod("p5");
    p5["metadata"]["labels"]["app"] = json!("new");
    assert_eq!(api.post(PODS, p5).await.0, 201);

    let (second, rv2, cont2) = page(&api, &format!("limit=2&continue={cont}")).await;
    assert_eq!(second, ["p2:x", "p3:x"]);
    assert_eq!(rv2, rv, "every page carries the first page's resourceVersion");
    let (third, rv3, cont3) = page(&api, &format!("limit=2&continue={}", cont2.unwrap())).await;
    assert_eq!(third, ["p4:x", "p5:x"]);
    assert_eq!(rv3, rv);
    assert_eq!(cont3, None, "the snapshot had six pods");

    // A fresh list sees the present.
    let (now, _, _) = page(&api, "").await;
    assert_eq!(now, ["p0:x", "p1:x", "p2:x", "p2a:x", "p4:changed", "p5:new", "p9:x"]);

    // Once the snapshot's revision is compacted, the token has expired (410, as Kubernetes).
    api.node.write(Request::Compact { revision: api.node.revision() }).await.unwrap();
    let (code, e) = api.get(&format!("{PODS}?limit=2&continue={cont}")).await;
    assert_eq!((code, e["reason"].as_str()), (410, Some("Expired")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("continue parameter is too old"), "{e}");
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
async fn a_watch_that_allows_bookmarks_ends_with_one_at_its_timeout() {
    let api = start().await;
    let rev = api.node.revision();
    let resp = api
        .http
        .get(format!("{}{PODS}?watch=true&resourceVersion={rev}&allowWatchBookmarks=true&timeoutSeconds=1", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, created) = api.post(PODS, pod("bm")).await;
    let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes()).await.expect("the watch ends").unwrap();
    let lines: Vec<Value> =
        body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.first().map(|l| l["type"].clone()), Some(json!("ADDED")), "{lines:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK", "{lines:?}");
    assert_eq!(last["object"]["kind"], "Pod");
    let bm: u64 = last["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let created_rv: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(bm >= created_rv, "the bookmark ({bm}) covers the delivered event ({created_rv})");
    // Without allowWatchBookmarks there is none.
    let resp = api
        .http
        .get(format!("{}{PODS}?watch=true&resourceVersion={bm}&timeoutSeconds=1", api.base))
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes()).await.expect("the watch ends").unwrap();
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
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

    // A protobuf body must start with the Kubernetes magic.
    let (code, e) = api.send_bytes(reqwest::Method::POST, PODS, PROTOBUF, vec![0u8; 4]).await;
    assert_eq!((code, e["reason"].as_str()), (400, Some("BadRequest")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("magic"), "{e}");
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

/// Server-side apply as `kubectl apply --server-side` sends it: creates, merges, removes what
/// the manager stopped applying, refuses another manager's field (409) unless forced, keeps
/// ownership across other writes, writes nothing when nothing changes, and takes YAML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_merges_and_conflicts() {
    let api = start().await;
    const APPLY: &str = "application/apply-patch+yaml";
    let path = |q: &str| format!("{PODS}/s?{q}");
    let applied = |labels: Value, env: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s", "labels": labels},
               "spec": {"containers": [{"name": "c", "image": "skiff/busybox:1", "env": env}]}})
    };
    let first =
        applied(json!({"app": "x", "tier": "a"}), json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    let (code, e) = api.send(reqwest::Method::PATCH, &path(""), APPLY, Some(first.clone())).await;
    assert_eq!(
        (code, e["message"].as_str()),
        (400, Some("fieldManager is required for apply requests (e.g. ?fieldManager=kubectl)"))
    );
    let (code, p) = api.send(reqwest::Method::PATCH, &path("fieldManager=ci"), APPLY, Some(first.clone())).await;
    assert_eq!(code, 201, "the first apply creates: {p}");
    assert_eq!(p["metadata"]["managedFields"][0]["manager"], "ci");
    assert_eq!(p["metadata"]["managedFields"][0]["operation"], "Apply");
    let rv = p["metadata"]["resourceVersion"].clone();
    // The same again: 200, nothing written.
    let (code, p) = api.send(reqwest::Method::PATCH, &path("fieldManager=ci"), APPLY, Some(first.clone())).await;
    assert_eq!((code, &p["metadata"]["resourceVersion"]), (200, &rv), "an apply that changes nothing writes nothing");
    // Another client's merge patch adds a label; the next apply drops `tier` and env B only.
    let patch = json!({"metadata": {"labels": {"team": "t"}}});
    let (code, p) =
        api.send(reqwest::Method::PATCH, &format!("{PODS}/s"), "application/merge-patch+json", Some(patch)).await;
    assert_eq!(code, 200);
    assert_eq!(p["metadata"]["managedFields"][0]["manager"], "ci", "other writes keep the apply's ownership");
    let second = applied(json!({"app": "x"}), json!([{"name": "A", "value": "1"}]));
    let (code, p) = api.send(reqwest::Method::PATCH, &path("fieldManager=ci"), APPLY, Some(second)).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["metadata"]["labels"], json!({"app": "x", "team": "t"}));
    assert_eq!(p["spec"]["containers"][0]["env"], json!([{"name": "A", "value": "1"}]));
    // Another manager setting the label differently conflicts; forced, it takes the field over.
    let ops = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s", "labels": {"app": "y"}}});
    let (code, e) = api.send(reqwest::Method::PATCH, &path("fieldManager=ops"), APPLY, Some(ops.clone())).await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["message"], r#"Apply failed with 1 conflict: conflict with "ci": .metadata.labels.app"#);
    assert_eq!(e["details"]["causes"][0]["field"], ".metadata.labels.app");
    let (code, p) = api.send(reqwest::Method::PATCH, &path("fieldManager=ops&force=true"), APPLY, Some(ops)).await;
    assert_eq!((code, &p["metadata"]["labels"]["app"]), (200, &json!("y")), "{p}");
    let managers: Vec<&str> =
        p["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert_eq!(managers, ["ci", "ops"]);
    assert!(p["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"].get("f:app").is_none());
    // YAML bodies, dry runs, and a subresource refused.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\n  labels:\n    extra: \"1\"\n";
    let (code, p) =
        api.send_bytes(reqwest::Method::PATCH, &path("fieldManager=y&dryRun=All"), APPLY, yaml.into()).await;
    assert_eq!((code, &p["metadata"]["labels"]["extra"]), (200, &json!("1")), "{p}");
    let (_, p) = api.get(&format!("{PODS}/s")).await;
    assert!(p["metadata"]["labels"].get("extra").is_none(), "a dry run writes nothing");
    let (code, _) =
        api.send(reqwest::Method::PATCH, &format!("{PODS}/s/status?fieldManager=ci"), APPLY, Some(json!({}))).await;
    assert_eq!(code, 400);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_as_kubectl_sends_them() {
    let api = start().await;
    // `kubectl create namespace foo`, byte for byte.
    let (code, ns) = api
        .send_bytes(
            reqwest::Method::POST,
            "/api/v1/namespaces?fieldValidation=Strict",
            PROTOBUF,
            fixture("kubectl-create-namespace.pb"),
        )
        .await;
    assert_eq!(code, 201, "{ns}");
    assert_eq!(ns["metadata"]["name"], "foo");
    assert_eq!(api.get("/api/v1/namespaces/foo").await.1["status"]["phase"], "Active");

    // `kubectl create deployment web --image=skiff/busybox:1 --replicas=2`: stored with the
    // server's defaults filled in where kubectl's zero values were on the wire.
    const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";
    let (code, d) = api
        .send_bytes(
            reqwest::Method::POST,
            &format!("{DEPLOY}?fieldValidation=Strict"),
            PROTOBUF,
            fixture("kubectl-create-deployment.pb"),
        )
        .await;
    assert_eq!(code, 201, "{d}");
    let (_, d) = api.get(&format!("{DEPLOY}/web")).await;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "defaulted: {d}");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((c["name"].as_str(), c["image"].as_str()), (Some("busybox"), Some("skiff/busybox:1")));
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log", "defaulted, not left empty: {c}");
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    // `--replicas=0` is kept as 0 (not defaulted to 1).
    let (code, d) = api
        .send_bytes(
            reqwest::Method::POST,
            DEPLOY,
            PROTOBUF,
            fixture("kubectl-create-deployment-replicas0-port-command.pb"),
        )
        .await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["spec"]["replicas"], 0);

    // `kubectl create service nodeport web --tcp=80:8080`: nodePort 0 on the wire means "allocate".
    let (code, svc) = api
        .send_bytes(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/services",
            PROTOBUF,
            fixture("kubectl-create-service-nodeport.pb"),
        )
        .await;
    assert_eq!(code, 201, "{svc}");
    let port = &svc["spec"]["ports"][0];
    assert_eq!((port["port"].as_i64(), port["targetPort"].as_i64()), (Some(80), Some(8080)), "{svc}");
    assert!((30000..=32767).contains(&port["nodePort"].as_i64().unwrap()), "{svc}");

    // Kinds and fields the decoder does not know are refused, never dropped.
    let (code, e) = api.send_bytes(reqwest::Method::POST, PODS, PROTOBUF, pb_body("v1", "ConfigMap", &[])).await;
    assert_eq!((code, e["reason"].as_str()), (415, Some("UnsupportedMediaType")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("v1 ConfigMap"), "{e}");
    // metadata{name: p}, spec{field 111 (not in PodSpec): varint 1}.
    let pod_with_unknown_field = [pb_field(1, &pb_field(1, b"p")), vec![0x12, 0x03, 0xf8, 0x06, 0x01]].concat();
    let (code, e) =
        api.send_bytes(reqwest::Method::POST, PODS, PROTOBUF, pb_body("v1", "Pod", &pod_with_unknown_field)).await;
    assert_eq!((code, e["reason"].as_str()), (415, Some("UnsupportedMediaType")), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("field number 111")
            && e["message"].as_str().unwrap().contains("PodSpec"),
        "{e}"
    );
    assert_eq!(api.get(&format!("{PODS}/p")).await.0, 404);
    let (code, e) =
        api.send_bytes(reqwest::Method::POST, PODS, PROTOBUF, pb_body("v1", "Pod", &[0x0a, 0x05, 0x0a])).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("truncated"), "{e}");
    // The body size limit applies before decoding.
    let huge = pb_body("v1", "Pod", &[]).into_iter().chain(std::iter::repeat_n(0u8, 2 << 20)).collect();
    let (code, _) = api.send_bytes(reqwest::Method::POST, PODS, PROTOBUF, huge).await;
    assert_eq!(code, 413);

    // A DELETE with a protobuf DeleteOptions body (how client-go's typed clients delete).
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("n1");
    api.post(PODS, bound).await;
    let grace0 = pb_body("v1", "DeleteOptions", &pb_varint(1, 0));
    let (code, _) = api.send_bytes(reqwest::Method::DELETE, &format!("{PODS}/bound"), PROTOBUF, grace0).await;
    assert_eq!(code, 200);
    assert_eq!(api.get(&format!("{PODS}/bound")).await.0, 404, "grace period 0 from the protobuf body applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_deletes_gracefully_with_delete_options() {
    let api = start().await;
    let (_, disc) = api.get("/api/v1").await;
    let ev = disc["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").cloned();
    assert_eq!(
        ev,
        Some(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy",
            "version": "v1", "kind": "Eviction", "verbs": ["create"]}))
    );
    let eviction = |name: &str, opts: Value| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"},
            "deleteOptions": opts})
    };
    let mut bound = pod("web-0");
    bound["spec"]["nodeName"] = json!("n1");
    let (_, created) = api.post(PODS, bound).await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();

    // Preconditions are honoured: a wrong uid is a conflict and changes nothing.
    let (code, e) = api
        .post(&format!("{PODS}/web-0/eviction"), eviction("web-0", json!({"preconditions": {"uid": "other"}})))
        .await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")), "{e}");
    // A dry run answers as a real eviction would and changes nothing.
    let (code, _) = api.post(&format!("{PODS}/web-0/eviction?dryRun=All"), eviction("web-0", json!({}))).await;
    assert_eq!(code, 201);
    assert!(api.get(&format!("{PODS}/web-0")).await.1["metadata"]["deletionTimestamp"].is_null());

    // A bound pod is deleted gracefully, as a DELETE would: its agent finishes the deletion.
    let (code, status) = api
        .post(
            &format!("{PODS}/web-0/eviction"),
            eviction("web-0", json!({"gracePeriodSeconds": 7, "preconditions": {"uid": uid}})),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    assert_eq!(status, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
    let (_, p) = api.get(&format!("{PODS}/web-0")).await;
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 7);
    // Evicting it again with grace 0 (what the agent's confirmation amounts to) removes it.
    let (code, _) =
        api.post(&format!("{PODS}/web-0/eviction"), eviction("web-0", json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(code, 201);
    assert_eq!(api.get(&format!("{PODS}/web-0")).await.0, 404);

    // A missing pod is 404; a body naming another pod, or not an Eviction, is 400.
    let (code, e) = api.post(&format!("{PODS}/nope/eviction"), eviction("nope", json!({}))).await;
    assert_eq!((code, e["message"].as_str()), (404, Some("pods \"nope\" not found")), "{e}");
    api.post(PODS, pod("other")).await;
    let (code, e) = api.post(&format!("{PODS}/other/eviction"), eviction("web-0", json!({}))).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("name in URL does not match name in Eviction object"), "{e}");
    let (code, e) = api.post(&format!("{PODS}/other/eviction"), json!({"apiVersion": "v1", "kind": "Pod"})).await;
    assert_eq!(code, 400, "{e}");
    let (code, e) =
        api.post(&format!("{PODS}/other/eviction"), eviction("other", json!({"gracePeriodSeconds": "soon"}))).await;
    assert_eq!(code, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("deleteOptions.gracePeriodSeconds must be an integer"), "{e}");
    assert_eq!(api.get(&format!("{PODS}/other")).await.0, 200, "refused evictions delete nothing");

    // A protobuf Eviction (metadata + deleteOptions{gracePeriodSeconds: 0}); an unbound pod goes at once.
    let raw = [pb_field(1, &[pb_field(1, b"other"), pb_field(3, b"default")].concat()), pb_field(2, &pb_varint(1, 0))]
        .concat();
    let (code, status) = api
        .send_bytes(
            reqwest::Method::POST,
            &format!("{PODS}/other/eviction"),
            PROTOBUF,
            pb_body("policy/v1", "Eviction", &raw),
        )
        .await;
    assert_eq!((code, status["status"].as_str()), (201, Some("Success")), "{status}");
    assert_eq!(api.get(&format!("{PODS}/other")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_resources_are_not_found_for_every_verb() {
    let api = start().await;
    for path in ["/api/v1/namespaces/default/widgets", "/apis/apps/v1/namespaces/default/widgets", "/api/v1/widgets"] {
        let (code, e) = api.post(path, pod("w")).await;
        assert_eq!((code, e["reason"].as_str()), (404, Some("NotFound")), "POST {path}: {e}");
        let (code, e) = api.get(path).await;
        assert_eq!((code, e["reason"].as_str()), (404, Some("NotFound")), "GET {path}: {e}");
    }
    // The namespace status subresource is still served under the same path shape.
    let (code, ns) = api.get("/api/v1/namespaces/default/status").await;
    assert_eq!((code, ns["kind"].as_str()), (200, Some("Namespace")), "{ns}");
    // A verb a served resource does not support is 405.
    let (code, e) = api
        .send(reqwest::Method::POST, "/api/v1/namespaces/default/pods/x/status", "application/json", Some(pod("x")))
        .await;
    assert_eq!((code, e["reason"].as_str()), (405, Some("MethodNotAllowed")), "{e}");
    // kubectl exec, attach and port-forward are told what is not served, whatever the verb.
    for (method, sub) in [
        (reqwest::Method::POST, "exec"),
        (reqwest::Method::GET, "exec"),
        (reqwest::Method::POST, "attach"),
        (reqwest::Method::POST, "portforward"),
    ] {
        let (code, e) = api
            .send(
                method.clone(),
                &format!("/api/v1/namespaces/default/pods/x/{sub}?command=ls"),
                "application/json",
                None,
            )
            .await;
        assert_eq!((code, e["reason"].as_str()), (405, Some("MethodNotAllowed")), "{method} {sub}: {e}");
        assert!(e["message"].as_str().unwrap().starts_with(&format!("pods/{sub} is not served by Skiff")), "{e}");
    }
}

/// A replica that marked a namespace Terminating and died before emptying it leaves the
/// namespace and its contents behind; deleting it again (what the leader's garbage
/// collector does for every Terminating namespace it finds) finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_terminating_namespace_again_resumes_emptying_it() {
    let api = start().await;
    assert_eq!(api.post("/api/v1/namespaces", json!({"metadata": {"name": "left"}})).await.0, 201);
    assert_eq!(api.post("/api/v1/namespaces/left/pods", pod("p")).await.0, 201);
    // What the crashed replica wrote: Terminating, nothing deleted yet.
    let (_, mut ns) = api.get("/api/v1/namespaces/left").await;
    ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    ns["status"] = json!({"phase": "Terminating"});
    ns["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    api.node.put("/registry/namespaces/left", serde_json::to_vec(&ns).unwrap()).await.unwrap();
    assert_eq!(api.get("/api/v1/namespaces/left/pods/p").await.0, 200, "nothing empties it by itself here");
    // Nothing new goes into a Terminating namespace.
    let (code, e) = api.post("/api/v1/namespaces/left/pods", pod("q")).await;
    assert_eq!((code, e["reason"].as_str()), (403, Some("Forbidden")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("because it is being terminated"), "{e}");

    let (code, ns) = api.delete("/api/v1/namespaces/left", None).await;
    assert_eq!(code, 200, "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating");
    wait_for("the pod and then the namespace gone", || async {
        let pod = api.get("/api/v1/namespaces/left/pods/p").await.0;
        let ns = api.get("/api/v1/namespaces/left").await.0;
        (pod == 404 && ns == 404).then_some(())
    })
    .await;
}

/// Reads watch events from `resp` until `done` says the list is complete (10 s deadline).
async fn watch_events(resp: reqwest::Response, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    use futures::StreamExt;
    let mut stream = resp.bytes_stream();
    let (mut buf, mut events) = (Vec::new(), Vec::new());
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done(&events) {
            let chunk = stream.next().await.expect("watch ended").unwrap();
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                events.push(serde_json::from_slice::<Value>(&line).unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watch events so far: {events:?}"));
    events
}

/// Event types as a selector sees them: without one every change is ADDED/MODIFIED/DELETED
/// of the object; with a label selector an object entering the selection is ADDED and one
/// leaving it is DELETED; a delete carries the last version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_event_types_with_and_without_a_label_selector() {
    let api = start().await;
    let rev = api.node.revision();
    let open = |query: String| {
        let req = api.http.get(format!("{}{PODS}?watch=true&resourceVersion={rev}&timeoutSeconds=20{query}", api.base));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp
        }
    };
    let all = open(String::new()).await;
    let web = open("&labelSelector=app%3Dweb".into()).await;
    let path = format!("{PODS}/w");
    let patch = |body: Value| api.send(reqwest::Method::PATCH, &path, "application/merge-patch+json", Some(body));
    assert_eq!(api.post(PODS, pod("w")).await.0, 201);
    assert_eq!(patch(json!({"metadata": {"labels": {"app": "web"}}})).await.0, 200);
    assert_eq!(patch(json!({"metadata": {"annotations": {"a": "1"}}})).await.0, 200);
    assert_eq!(patch(json!({"metadata": {"labels": {"app": "x"}}})).await.0, 200);
    assert_eq!(patch(json!({"metadata": {"labels": {"app": "web"}}})).await.0, 200);
    let (code, _) = api.delete(&format!("{PODS}/w"), Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(code, 200);
    let deleted = |n: usize| move |evs: &[Value]| evs.iter().filter(|e| e["type"] == "DELETED").count() >= n;
    let types = |evs: &[Value]| evs.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    let evs = watch_events(all, deleted(1)).await;
    let t = types(&evs);
    assert_eq!(t[..5], ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "MODIFIED"], "{t:?}");
    assert!(t[5..].iter().all(|k| k == "MODIFIED" || k == "DELETED"), "{t:?}");
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "DELETED");
    assert_eq!(last["object"]["metadata"]["labels"]["app"], "web");
    assert_eq!(last["object"]["metadata"]["annotations"]["a"], "1");

    let evs = watch_events(web, deleted(2)).await;
    let t = types(&evs);
    assert_eq!(t[..4], ["ADDED", "MODIFIED", "DELETED", "ADDED"], "{t:?}");
    assert_eq!(evs[2]["object"]["metadata"]["labels"]["app"], "x", "leaving the selection: the new version");
    assert_eq!(evs.last().unwrap()["type"], "DELETED");
    assert_eq!(evs.last().unwrap()["object"]["metadata"]["labels"]["app"], "web");
}

/// A watch from an old resourceVersion replays every change in order, each one whole line,
/// and the lines of one batch travel together (far fewer HTTP chunks than events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_a_batch_in_order_in_few_chunks() {
    use futures::StreamExt;
    let api = start().await;
    let rev = api.node.revision();
    const N: usize = 300;
    for i in 0..N {
        assert_eq!(api.post(PODS, pod(&format!("r{i}"))).await.0, 201);
    }
    let url = format!("{}{PODS}?watch=true&resourceVersion={rev}&timeoutSeconds=20", api.base);
    let resp = api.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    let (mut buf, mut names, mut chunks) = (Vec::new(), Vec::new(), 0);
    tokio::time::timeout(Duration::from_secs(10), async {
        while names.len() < N {
            let chunk = stream.next().await.expect("watch ended").unwrap();
            chunks += 1;
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let ev: Value = serde_json::from_slice(&line).unwrap();
                assert_eq!(ev["type"], "ADDED");
                names.push(ev["object"]["metadata"]["name"].as_str().unwrap().to_string());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {N} events in {chunks} chunks", names.len()));
    assert_eq!(names, (0..N).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert!(chunks < N / 2, "{N} events came in {chunks} chunks");
}

/// Gets, lists and watch lines are written from the stored bytes (`skiff_apiserver::served`):
/// byte for byte what serializing the decoded objects gives, for whole lists, pages,
/// selectors, and every kind of watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_lists_and_watch_lines_are_the_stored_objects_byte_for_byte() {
    use futures::StreamExt;
    let api = start().await;
    let pods = skiff_api::lookup("pods").unwrap();
    let rev = api.node.revision();
    let url = format!("{}{PODS}?watch=true&resourceVersion={rev}&timeoutSeconds=20", api.base);
    let resp = api.http.get(url).send().await.unwrap();
    for i in 0..5 {
        let mut p = pod(&format!("b{i}"));
        p["metadata"]["labels"]["tier"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        p["metadata"]["annotations"] = json!({"note": "line\nbreak \"quoted\" ü \\", "n": "1"});
        assert_eq!(api.post(PODS, p).await.0, 201);
    }
    let patch = json!({"metadata": {"labels": {"tier": "patched"}}});
    let r = api
        .http
        .patch(format!("{}{PODS}/b1", api.base))
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(api.delete(&format!("{PODS}/b2"), Some(json!({"gracePeriodSeconds": 0}))).await.0, 200);

    // Lists: the body is exactly the decode path's list, serialized.
    for query in ["", "?labelSelector=tier%3Deven", "?limit=2", "?fieldSelector=metadata.name%3Db3"] {
        let body = api.http.get(format!("{}{PODS}{query}", api.base)).send().await.unwrap().bytes().await.unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let mut opts = skiff_apiserver::objects::ListOptions {
            labels: skiff_api::LabelSelector::parse(if query.contains("tier") { "tier=even" } else { "" }).unwrap(),
            limit: if query.contains("limit") { 2 } else { 0 },
            ..Default::default()
        };
        if query.contains("fieldSelector") {
            opts.fields = skiff_api::FieldSelector::parse("metadata.name=b3").unwrap();
        }
        let list = api.objects.list(pods, Some("default"), &opts).await.unwrap();
        let mut meta = json!({"resourceVersion": got["metadata"]["resourceVersion"]});
        if let Some(c) = got["metadata"].get("continue") {
            meta["continue"] = c.clone();
        }
        let want = json!({"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": list.items});
        assert!(!list.items.is_empty(), "{query}");
        assert_eq!(String::from_utf8(body.to_vec()).unwrap(), want.to_string(), "{query}");
    }

    // A get: exactly the decoded object, serialized.
    let body = api.http.get(format!("{}{PODS}/b1", api.base)).send().await.unwrap().bytes().await.unwrap();
    let want = api.objects.get(pods, Some("default"), "b1", false).await.unwrap();
    assert_eq!(want["metadata"]["labels"]["tier"], "patched");
    assert_eq!(String::from_utf8(body.to_vec()).unwrap(), want.to_string());

    // Watch lines: 5 ADDED, 1 MODIFIED, 1 DELETED, each the serialized decoded object.
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while lines.len() < 7 {
            buf.extend_from_slice(&stream.next().await.expect("watch ended").unwrap());
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                lines.push(buf.drain(..=i).collect());
            }
        }
    })
    .await
    .expect("seven watch lines");
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            let ev: Value = serde_json::from_slice(l).unwrap();
            let want = format!("{{\"type\":{},\"object\":{}}}\n", ev["type"], ev["object"]);
            assert_eq!(String::from_utf8(l.clone()).unwrap(), want);
            assert!(ev["object"]["metadata"]["resourceVersion"].as_str().is_some_and(|r| r.parse::<u64>().is_ok()));
            ev["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "ADDED", "ADDED", "ADDED", "MODIFIED", "DELETED"]);
}

/// A watch served from the stored bytes decodes a version only for a selector: without one,
/// its events carry the stored versions alone (a delete's the last one, at the delete's
/// revision); the JSON written from them is the decoded object's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_watches_decode_only_for_selectors() {
    let api = start().await;
    let pods = skiff_api::lookup("pods").unwrap();
    let rev = api.node.revision().to_string();
    let all = (skiff_api::LabelSelector::default(), skiff_api::FieldSelector::default());
    let mut plain = api.objects.watch(pods, Some("default"), Some(&rev), all.0, all.1).await.unwrap();
    let sel = skiff_api::LabelSelector::parse("app=x").unwrap();
    let mut selecting =
        api.objects.watch(pods, None, Some(&rev), sel, skiff_api::FieldSelector::default()).await.unwrap();
    let (code, created) = api.post(PODS, pod("lazy")).await;
    assert_eq!(code, 201);
    assert_eq!(api.delete(&format!("{PODS}/lazy"), Some(json!({"gracePeriodSeconds": 0}))).await.0, 200);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let evs = tokio::time::timeout(Duration::from_secs(10), plain.next_served()).await.expect("no event").unwrap();
        seen.extend(evs);
    }
    let mut selected = Vec::new();
    while selected.len() < 2 {
        let evs =
            tokio::time::timeout(Duration::from_secs(10), selecting.next_served()).await.expect("no event").unwrap();
        selected.extend(evs);
    }
    for (events, decoded) in [(&seen, false), (&selected, true)] {
        assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), ["ADDED", "DELETED"]);
        assert!(events.iter().all(|e| e.object.is_some() == decoded), "decoded: {decoded}");
        let mut added = Vec::new();
        events[0].write_object(pods, &mut added).unwrap();
        assert_eq!(String::from_utf8(added).unwrap(), created.to_string());
        let mut deleted = Vec::new();
        events[1].write_object(pods, &mut deleted).unwrap();
        let deleted: Value = serde_json::from_slice(&deleted).unwrap();
        assert_eq!(deleted["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(deleted["metadata"]["resourceVersion"], events[1].stored.1.to_string());
        assert_ne!(deleted["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    }
}

/// Watches of one replica share one decoded value per delivered version (the pod hub, the
/// informers and client watches would otherwise each parse every change), and what they
/// share is the stored version: with its resourceVersion, for a selector too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_share_the_decoded_version_they_deliver() {
    let api = start().await;
    let pods = skiff_api::lookup("pods").unwrap();
    let rev = api.node.revision().to_string();
    let everything = || (skiff_api::LabelSelector::default(), skiff_api::FieldSelector::default());
    let (l, f) = everything();
    let mut a = api.objects.watch(pods, Some("default"), Some(&rev), l, f).await.unwrap();
    let (l, f) = everything();
    let mut b = api.objects.watch(pods, None, Some(&rev), l, f).await.unwrap();
    let sel = skiff_api::LabelSelector::parse("app=x").unwrap();
    let mut c = api.objects.watch(pods, None, Some(&rev), sel, skiff_api::FieldSelector::default()).await.unwrap();
    let (code, created) = api.post(PODS, pod("shared")).await;
    assert_eq!(code, 201);
    async fn next(w: &mut skiff_apiserver::objects::ObjectWatch) -> Vec<skiff_apiserver::objects::WatchEvent> {
        tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("no event").unwrap()
    }
    let (ea, eb, ec) = (next(&mut a).await, next(&mut b).await, next(&mut c).await);
    assert_eq!((ea.len(), eb.len(), ec.len()), (1, 1, 1));
    assert_eq!((ea[0].kind, eb[0].kind, ec[0].kind), ("ADDED", "ADDED", "ADDED"));
    assert!(Arc::ptr_eq(&ea[0].object, &eb[0].object) && Arc::ptr_eq(&ea[0].object, &ec[0].object));
    assert_eq!(*ea[0].object, created, "the decoded version is the created object, resourceVersion included");

    // A delete delivers the last version, shared as well, at the delete's revision.
    let (code, _) = api.delete(&format!("{PODS}/shared"), Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(code, 200);
    let (ea, eb) = (next(&mut a).await, next(&mut b).await);
    assert_eq!((ea[0].kind, eb[0].kind), ("DELETED", "DELETED"));
    assert!(Arc::ptr_eq(&ea[0].object, &eb[0].object));
    assert_eq!(ea[0].object["metadata"]["uid"], created["metadata"]["uid"]);
    assert_ne!(ea[0].object["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
}

/// `update_status_with` (the agents' status write path): one read-modify-write of the status
/// only, a no-op when nothing changes, nothing when the closure declines or the object is
/// gone, and admitted like any status write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_through_a_closure() {
    use skiff_apiserver::objects::{FieldValidation, WriteOptions};
    let api = start().await;
    let pods = skiff_api::lookup("pods").unwrap();
    let (code, created) = api.post(PODS, pod("s")).await;
    assert_eq!(code, 201);
    let opts = WriteOptions::default();
    let running = json!({"phase": "Running", "podIP": "10.0.0.9", "qosClass": "BestEffort"});
    let mut seen = None;
    let w = api
        .objects
        .update_status_with(pods, Some("default"), "s", &opts, |cur| {
            seen = Some(cur.clone());
            Some(running.clone())
        })
        .await
        .unwrap()
        .expect("written");
    assert_eq!(seen.unwrap(), created, "the closure sees the current object");
    assert!(w.changed);
    let (_, got) = api.get(&format!("{PODS}/s")).await;
    assert_eq!(got["status"], running);
    let mut rest = got.clone();
    rest["status"] = created["status"].clone();
    rest["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    assert_eq!(rest, created, "all but the status and the resourceVersion as it was");
    let rv = got["metadata"]["resourceVersion"].clone();
    assert_eq!(rv, w.revision.to_string());
    assert_ne!(rv, created["metadata"]["resourceVersion"]);

    // The same status again is no write.
    let again =
        api.objects.update_status_with(pods, Some("default"), "s", &opts, |_| Some(running.clone())).await.unwrap();
    let again = again.unwrap();
    assert!(!again.changed);
    assert_eq!(again.revision.to_string(), rv);
    // Declined, or no such pod: nothing happens.
    let before = api.node.revision();
    assert!(api.objects.update_status_with(pods, Some("default"), "s", &opts, |_| None).await.unwrap().is_none());
    let gone = api.objects.update_status_with(pods, Some("default"), "nope", &opts, |_| Some(json!({}))).await;
    assert!(gone.unwrap().is_none());
    assert_eq!(api.node.revision(), before);
    // Admission applies: an unknown status field is refused under strict validation, named.
    let strict = WriteOptions { field_validation: FieldValidation::Strict, ..Default::default() };
    let bad = json!({"phase": "Running", "bogus": 1});
    let err = api.objects.update_status_with(pods, Some("default"), "s", &strict, |_| Some(bad.clone())).await;
    let err = err.expect_err("refused");
    assert_eq!(err.code(), 400);
    assert!(err.to_string().contains("status.bogus"), "{err}");
    assert_eq!(api.node.revision(), before);

    // Only the status is new: a stored spec that validation would now refuse (written here
    // straight into the store) takes a status all the same, neither defaulted nor checked.
    let odd = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "odd", "namespace": "default", "uid": "u-odd"},
        "spec": {"containers": [{"name": "Not_A_Name", "image": ""}]}});
    api.node.put("/registry/pods/default/odd", serde_json::to_vec(&odd).unwrap()).await.unwrap();
    let w = api.objects.update_status_with(pods, Some("default"), "odd", &opts, |_| Some(running.clone())).await;
    let w = w.unwrap().expect("written");
    assert!(w.changed);
    let (_, got) = api.get(&format!("{PODS}/odd")).await;
    assert_eq!(got["spec"], odd["spec"], "the spec is as stored: {got}");
    assert_eq!(got["status"], running);
    assert_eq!(got["metadata"]["resourceVersion"], w.revision.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_the_server_built_are_written_as_encoded_with_their_names_checked() {
    let api = start().await;
    let events = skiff_api::lookup("events").unwrap();
    let event = |name: &str, ns: &str| {
        serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": "0b0e7a4e-0000-4000-8000-000000000001",
                         "creationTimestamp": "2026-12-07T00:00:00Z"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": ns, "uid": "u"},
            "reason": "Started", "message": "Started container c", "type": "Normal", "count": 1,
            "source": {"component": "kubelet", "host": "n1"},
        }))
        .unwrap()
    };
    let rev = api.objects.create_built(events, Some("default"), "p.1", event("p.1", "default")).await.unwrap();
    let (code, got) = api.get("/api/v1/namespaces/default/events/p.1").await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["metadata"]["resourceVersion"], rev.to_string(), "{got}");
    assert_eq!(got["metadata"]["uid"], "0b0e7a4e-0000-4000-8000-000000000001");
    assert_eq!(got["involvedObject"]["name"], "p");
    assert_eq!(got["source"]["host"], "n1");

    // A name taken, a name Kubernetes refuses, a namespace that does not exist: nothing written.
    let before = api.node.revision();
    let taken = api.objects.create_built(events, Some("default"), "p.1", event("p.1", "default")).await.unwrap_err();
    assert_eq!(taken.code(), 409, "{taken}");
    let long = format!("{}.1", "p".repeat(253));
    let bad = api.objects.create_built(events, Some("default"), &long, event(&long, "default")).await.unwrap_err();
    assert_eq!(bad.code(), 422, "{bad}");
    assert!(bad.to_string().contains("metadata.name"), "{bad}");
    let upper = api.objects.create_built(events, Some("default"), "P.1", event("P.1", "default")).await.unwrap_err();
    assert_eq!(upper.code(), 422, "{upper}");
    let missing = api.objects.create_built(events, Some("nowhere"), "p.2", event("p.2", "nowhere")).await.unwrap_err();
    assert_eq!(missing.code(), 404, "{missing}");
    assert!(missing.to_string().contains("nowhere"), "{missing}");
    let huge = vec![b' '; 2 * 1024 * 1024];
    let too_big = api.objects.create_built(events, Some("default"), "p.3", huge).await.unwrap_err();
    assert_eq!(too_big.code(), 413, "{too_big}");
    assert_eq!(api.node.revision(), before);

    // Many at once: one result per object, in order; the refused ones (same checks) leave the
    // others written, in one batch (consecutive revisions: a failed compare writes nothing).
    let many = vec![
        (Some("default".to_string()), "p.4".to_string(), event("p.4", "default")),
        (Some("default".to_string()), "p.1".to_string(), event("p.1", "default")),
        (Some("default".to_string()), "P.5".to_string(), event("P.5", "default")),
        (Some("nowhere".to_string()), "p.6".to_string(), event("p.6", "nowhere")),
        (Some("default".to_string()), "p.7".to_string(), vec![b' '; 2 * 1024 * 1024]),
        (Some("default".to_string()), "p.8".to_string(), event("p.8", "default")),
    ];
    let rs = api.objects.create_many_built(events, many).await.unwrap();
    let codes: Vec<u16> = rs.iter().map(|r| r.as_ref().map_or_else(|e| e.code(), |_| 201)).collect();
    assert_eq!(codes, [201, 409, 422, 404, 413, 201], "{rs:?}");
    assert!(rs[3].as_ref().unwrap_err().to_string().contains("nowhere"), "{rs:?}");
    let (r4, r8) = (*rs[0].as_ref().unwrap(), *rs[5].as_ref().unwrap());
    assert_eq!((r4, r8), (before + 1, before + 2), "{rs:?}");
    for (name, rev) in [("p.4", r4), ("p.8", r8)] {
        let (code, got) = api.get(&format!("/api/v1/namespaces/default/events/{name}")).await;
        assert_eq!(code, 200, "{got}");
        assert_eq!(got["metadata"]["resourceVersion"], rev.to_string(), "{got}");
    }
    assert_eq!(api.objects.create_many_built(events, vec![]).await.unwrap().len(), 0);
}
