//! Request-shape tests: a tiny in-test HTTP server records what the client and the user
//! commands send (method, path, query, Content-Type, Accept, body) and answers scripted
//! responses. They check the wire shape only; end-to-end tests against the real API server
//! and kubectl live elsewhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use skiff_client::commands::{run_with, GlobalOpts, UserCommand};
use skiff_client::{Client, Error};

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    content_type: String,
    accept: String,
    body: String,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Responder = dyn Fn(&Recorded) -> (u16, String) + Send + Sync;

struct TestServer {
    url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    _dir: tempfile::TempDir,
    global: GlobalOpts,
}

impl TestServer {
    async fn start(respond: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static) -> Self {
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let (l, r) = (log.clone(), respond.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, respond) = (l.clone(), r.clone());
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let rec = Recorded {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    query: uri.query().unwrap_or("").to_string(),
                    content_type: h("content-type"),
                    accept: h("accept"),
                    body: String::from_utf8_lossy(&body).to_string(),
                };
                log.lock().unwrap().push(rec.clone());
                let (code, body) = respond(&rec);
                if code == 0 {
                    // Never answer: the client's deadline must fire.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Response::builder()
                    .status(StatusCode::from_u16(code.max(200)).unwrap())
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        skiff_client::write_kubeconfig(&kubeconfig, &url, "test").unwrap();
        let global =
            GlobalOpts { kubeconfig: Some(kubeconfig), request_timeout: Duration::from_secs(5), ..Default::default() };
        TestServer { url, log, _dir: dir, global }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    async fn run(&self, args: &[&str]) -> (Result<(), Error>, String, String) {
        self.run_with(&self.global, args).await
    }

    async fn run_with(&self, global: &GlobalOpts, args: &[&str]) -> (Result<(), Error>, String, String) {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: UserCommand,
        }
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let res = run_with(cli.cmd, global, &mut out, &mut err).await;
        (res, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }
}

fn not_found(plural: &str, name: &str) -> (u16, String) {
    let s = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
        "message": format!("{plural} \"{name}\" not found"), "code": 404});
    (404, s.to_string())
}

fn write_manifest(dir: &std::path::Path, image: &str) -> String {
    let path = dir.join("web.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn request_shape_apply_creates_then_patches_then_is_unchanged() {
    let stored: Arc<Mutex<Option<Value>>> = Arc::default();
    let st = stored.clone();
    let srv = TestServer::start(move |r| {
        let mut st = st.lock().unwrap();
        match (r.method.as_str(), st.as_ref()) {
            ("GET", None) => not_found("deployments.apps", "web"),
            ("GET", Some(o)) => (200, o.to_string()),
            ("POST", _) => {
                let mut o = r.json();
                o["metadata"]["uid"] = json!("u1");
                o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
                *st = Some(o.clone());
                (201, o.to_string())
            }
            ("PATCH", Some(o)) => {
                let patched = skiff_api::patch::merge::apply(o, &r.json());
                *st = Some(patched.clone());
                (200, patched.to_string())
            }
            _ => (500, "unexpected".into()),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_manifest(dir.path(), "busybox");

    let (res, out, _) = srv.run(&["apply", "-f", &file]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web created\n");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/apis/apps/v1/namespaces/default/deployments/web")
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("POST", "/apis/apps/v1/namespaces/default/deployments")
    );
    assert!(reqs[1].content_type.starts_with("application/json"), "{}", reqs[1].content_type);
    let body = reqs[1].json();
    assert_eq!(body["metadata"]["namespace"], "default");
    let last: Value = serde_json::from_str(
        body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(last["spec"]["replicas"], 2);

    let (res, out, _) = srv.run(&["apply", "-f", &file]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web unchanged\n");
    assert_eq!(srv.requests().len(), 3, "unchanged sends no patch");

    let file = write_manifest(dir.path(), "busybox:2");
    let (res, out, _) = srv.run(&["apply", "-f", &file]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web configured\n");
    let reqs = srv.requests();
    let patch = &reqs[4];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web")
    );
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.json()["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:2");
    assert!(patch.json()["spec"].get("replicas").is_none());
}

#[tokio::test]
async fn request_shape_get_table_and_errors() {
    let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "5"},
        "columnDefinitions": [{"name": "Name", "type": "string", "priority": 0}, {"name": "Age", "type": "string", "priority": 0},
                              {"name": "Node", "type": "string", "priority": 1}],
        "rows": [{"cells": ["web", "1m", "n1"], "object": {"metadata": {"name": "web", "namespace": "prod"}}}]});
    let t = table.clone();
    let srv = TestServer::start(move |r| match r.path.as_str() {
        "/api/v1/namespaces/default/pods" | "/api/v1/pods" => (200, t.to_string()),
        "/api/v1/namespaces/default/services" => {
            (200, json!({"kind": "Table", "columnDefinitions": [{"name": "Name"}], "rows": []}).to_string())
        }
        "/api/v1/namespaces/default/pods/nope" => not_found("pods", "nope"),
        _ => (404, "404 page not found".into()),
    })
    .await;
    let (res, out, _) = srv.run(&["get", "pods", "-l", "app=web", "--field-selector", "status.phase=Running"]).await;
    res.unwrap();
    assert_eq!(out, "NAME   AGE\nweb    1m\n");
    let r = &srv.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.accept, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assert_eq!(r.query, "labelSelector=app%3Dweb&fieldSelector=status.phase%3DRunning");

    let (res, out, _) = srv.run(&["get", "po", "-A", "-o", "wide"]).await;
    res.unwrap();
    assert_eq!(out, "NAMESPACE   NAME   AGE   NODE\nprod        web    1m    n1\n");
    assert_eq!(srv.requests()[1].path, "/api/v1/pods");

    let (res, out, err) = srv.run(&["get", "svc"]).await;
    res.unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("", "No resources found in default namespace.\n"));

    let (res, _, _) = srv.run(&["get", "pod", "nope"]).await;
    assert_eq!(res.unwrap_err().to_string(), "Error from server (NotFound): pods \"nope\" not found");
    let (res, _, _) = srv.run(&["get", "nodes", "n1"]).await;
    assert_eq!(
        res.unwrap_err().to_string(),
        "Error from server (NotFound): the server could not find the requested resource"
    );
    let (res, _, _) = srv.run(&["get", "configmaps"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: the server doesn't have a resource type \"configmaps\"");
}

#[tokio::test]
async fn request_shape_get_watch_prints_rows_of_events() {
    let cols =
        json!([{"name": "Name", "type": "string", "priority": 0}, {"name": "Status", "type": "string", "priority": 0}]);
    let c = cols.clone();
    let srv = TestServer::start(move |r| {
        if r.query.contains("watch=true") {
            let ev = |name: &str, status: &str| {
                json!({"type": "MODIFIED", "object": {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                    "columnDefinitions": c, "rows": [{"cells": [name, status]}]}})
                .to_string()
            };
            (200, format!("{}\n{}\n", ev("web", "Running"), ev("web-longer-name", "Pending")))
        } else {
            let t = json!({"kind": "Table", "metadata": {"resourceVersion": "41"}, "columnDefinitions": c,
                "rows": [{"cells": ["web", "Pending"]}]});
            (200, t.to_string())
        }
    })
    .await;
    let (res, out, _) = srv.run(&["get", "pods", "web", "-w"]).await;
    res.unwrap();
    assert_eq!(out, "NAME   STATUS\nweb    Pending\nweb    Running\nweb-longer-name   Pending\n");
    let w = &srv.requests()[1];
    assert_eq!(w.path, "/api/v1/namespaces/default/pods");
    assert_eq!(w.query, "fieldSelector=metadata.name%3Dweb&watch=true&resourceVersion=41");
    assert!(w.accept.starts_with("application/json;as=Table"));
}

#[tokio::test]
async fn request_shape_delete_scale_logs() {
    let srv = TestServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("DELETE", "/api/v1/namespaces/team/pods/gone") => not_found("pods", "gone"),
        ("DELETE", _) => (200, json!({"kind": "Pod", "metadata": {"name": "x"}}).to_string()),
        ("PATCH", _) => (200, json!({"kind": "Scale", "spec": {"replicas": 3}}).to_string()),
        ("GET", "/api/v1/namespaces/team/pods/web/log") => (200, "line 1\nline 2\n".into()),
        _ => (500, "unexpected".into()),
    })
    .await;
    let global = GlobalOpts { namespace: Some("team".into()), ..srv.global.clone() };

    let (res, out, _) = srv.run_with(&global, &["delete", "pod", "x", "gone", "--grace-period", "0"]).await;
    assert_eq!(out, "pod \"x\" deleted\n");
    assert_eq!(res.unwrap_err().to_string(), "Error from server (NotFound): pods \"gone\" not found");
    let d = &srv.requests()[0];
    assert_eq!((d.method.as_str(), d.path.as_str()), ("DELETE", "/api/v1/namespaces/team/pods/x"));
    assert_eq!(
        d.json(),
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background", "gracePeriodSeconds": 0})
    );
    let (res, out, _) = srv.run_with(&global, &["delete", "pod/gone", "--ignore-not-found"]).await;
    res.unwrap();
    assert_eq!(out, "");

    let (res, out, _) = srv.run_with(&global, &["scale", "deployment/web", "--replicas", "3"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web scaled\n");
    let s = srv.requests().last().unwrap().clone();
    assert_eq!((s.method.as_str(), s.path.as_str()), ("PATCH", "/apis/apps/v1/namespaces/team/deployments/web/scale"));
    assert_eq!(s.content_type, "application/merge-patch+json");
    assert_eq!(s.json(), json!({"spec": {"replicas": 3}}));
    let (res, _, _) = srv.run_with(&global, &["scale", "pods", "x", "--replicas", "1"]).await;
    assert!(res.unwrap_err().to_string().contains("cannot scale pods"));

    let (res, out, _) = srv.run_with(&global, &["logs", "web", "-c", "app", "--tail", "2", "--previous"]).await;
    res.unwrap();
    assert_eq!(out, "line 1\nline 2\n");
    let l = srv.requests().last().unwrap().clone();
    assert_eq!(l.query, "container=app&tailLines=2&previous=true");
}

#[tokio::test]
async fn request_shape_describe_fetches_events() {
    let srv = TestServer::start(|r| match r.path.as_str() {
        "/api/v1/namespaces/default/pods/web" => (
            200,
            json!({"kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]}, "status": {"phase": "Running"}})
            .to_string(),
        ),
        "/api/v1/namespaces/default/events" => (
            200,
            json!({"kind": "EventList", "items": [
                {"type": "Normal", "reason": "Scheduled", "message": "assigned", "involvedObject": {"kind": "Pod", "name": "web"}},
                {"type": "Normal", "reason": "ScalingReplicaSet", "message": "other", "involvedObject": {"kind": "Deployment", "name": "web"}}]})
            .to_string(),
        ),
        _ => (500, "unexpected".into()),
    })
    .await;
    let (res, out, _) = srv.run(&["describe", "pod", "web"]).await;
    res.unwrap();
    assert!(out.starts_with("Name:         web\nNamespace:    default\n"), "{out}");
    assert!(out.contains("Scheduled") && !out.contains("ScalingReplicaSet"), "{out}");
    let ev = &srv.requests()[1];
    assert_eq!(ev.query, "fieldSelector=involvedObject.name%3Dweb%2CinvolvedObject.namespace%3Ddefault");
}

#[tokio::test]
async fn request_shape_deadlines_and_unreachable_servers() {
    let srv = TestServer::start(|_| (0, String::new())).await;
    let client = Client::new(&srv.url, Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let e = client.get(&skiff_api::registry::PODS, Some("default"), "web").await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A watch also has a deadline until the server answers.
    let e = client
        .watch(&skiff_api::registry::PODS, None, &Default::default(), None, false)
        .await
        .err()
        .expect("watch must time out");
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");

    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client::new(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    let e = client.get(&skiff_api::registry::PODS, Some("default"), "web").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("The connection to the server 127.0.0.1:{port} was refused - did you specify the right host or port?")
    );
}
