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

    // Nothing listens on this port.
    let port = skiff_testkit::free_port();
    let client = Client::new(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    let e = client.get(&skiff_api::registry::PODS, Some("default"), "web").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("The connection to the server 127.0.0.1:{port} was refused - did you specify the right host or port?")
    );
}

fn deployment(gen: i64, observed: i64, replicas: i64, updated: i64, available: i64) -> Value {
    json!({"kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": gen, "resourceVersion": "5",
            "annotations": {"deployment.kubernetes.io/revision": "2", "team": "a"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
        "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
            "availableReplicas": available}})
}

fn replicaset(name: &str, rev: &str, image: &str, owner: &str) -> Value {
    json!({"kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default",
            "annotations": {"deployment.kubernetes.io/revision": rev, "kubernetes.io/change-cause": format!("image {image}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner, "controller": true}]},
        "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
            "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

#[tokio::test]
async fn request_shape_rollout_status_watches_until_done() {
    let srv = TestServer::start(|r| {
        if r.query.contains("watch=true") {
            let ev = |d: Value| json!({"type": "MODIFIED", "object": d}).to_string();
            let lines = [
                ev(deployment(2, 2, 4, 1, 3)),
                ev(deployment(2, 2, 4, 3, 3)),
                ev(deployment(2, 2, 3, 3, 2)),
                ev(deployment(2, 2, 3, 3, 2)),
                ev(deployment(2, 2, 3, 3, 3)),
            ];
            (200, lines.join("\n") + "\n")
        } else {
            (200, deployment(2, 1, 3, 3, 3).to_string())
        }
    })
    .await;
    let (res, out, err) = srv.run(&["rollout", "status", "deployment/web", "--timeout", "10s"]).await;
    res.unwrap();
    assert_eq!(
        out,
        "Waiting for deployment spec update to be observed...\n\
         Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n\
         Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n\
         Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n\
         deployment \"web\" successfully rolled out\n"
    );
    assert_eq!(err, "", "no progress bar when stderr is not a terminal");
    let reqs = srv.requests();
    assert_eq!(reqs[0].path, "/apis/apps/v1/namespaces/default/deployments/web");
    assert_eq!(reqs[1].path, "/apis/apps/v1/namespaces/default/deployments");
    assert_eq!(reqs[1].query, "fieldSelector=metadata.name%3Dweb&watch=true&resourceVersion=5");

    // -w=false prints the current state once and succeeds.
    let (res, out, _) = srv.run(&["rollout", "status", "deploy", "web", "-w=false"]).await;
    res.unwrap();
    assert_eq!(out, "Waiting for deployment spec update to be observed...\n");
    assert_eq!(srv.requests().len(), 3);
}

#[tokio::test]
async fn request_shape_rollout_status_fails_on_progress_deadline_and_timeout() {
    let srv = TestServer::start(|r| {
        if r.path.ends_with("/stuck") {
            let mut d = deployment(2, 2, 3, 1, 0);
            d["metadata"]["name"] = json!("stuck");
            d["status"]["conditions"] =
                json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
            (200, d.to_string())
        } else if r.query.contains("watch=true") {
            (0, String::new())
        } else if r.path.ends_with("/gone") {
            not_found("deployments.apps", "gone")
        } else {
            (200, deployment(2, 2, 3, 1, 1).to_string())
        }
    })
    .await;
    let (res, out, _) = srv.run(&["rollout", "status", "deploy/stuck"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: deployment \"stuck\" exceeded its progress deadline");
    assert_eq!(out, "");
    let started = std::time::Instant::now();
    let (res, out, _) = srv.run(&["rollout", "status", "deploy/web", "--timeout", "1s"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: timed out waiting for the condition");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(out, "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n");
    let (res, _, _) = srv.run(&["rollout", "status", "deploy/gone"]).await;
    assert_eq!(res.unwrap_err().to_string(), "Error from server (NotFound): deployments.apps \"gone\" not found");
    let (res, _, _) = srv.run(&["rollout", "status", "pod/web"]).await;
    assert!(res.unwrap_err().to_string().contains("deployments only"));
}

#[tokio::test]
async fn request_shape_rollout_history_and_undo() {
    let patched: Arc<Mutex<Vec<Value>>> = Arc::default();
    let p = patched.clone();
    let srv = TestServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/apps/v1/namespaces/default/deployments/web") => (200, deployment(2, 2, 3, 3, 3).to_string()),
        ("GET", "/apis/apps/v1/namespaces/default/replicasets") => (
            200,
            json!({"kind": "ReplicaSetList", "items": [
                replicaset("web-b", "2", "nginx:2", "d1"),
                replicaset("web-a", "1", "nginx:1", "d1"),
                replicaset("other", "7", "nginx:7", "someone-else")]})
            .to_string(),
        ),
        ("PATCH", _) => {
            p.lock().unwrap().push(r.json());
            (200, deployment(3, 2, 3, 3, 3).to_string())
        }
        _ => (500, "unexpected".into()),
    })
    .await;
    let (res, out, _) = srv.run(&["rollout", "history", "deployment/web"]).await;
    res.unwrap();
    assert_eq!(
        out,
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         image nginx:1\n2         image nginx:2\n\n"
    );
    let list = &srv.requests()[1];
    assert_eq!(list.query, "labelSelector=app%3Dweb");

    let (res, out, _) = srv.run(&["rollout", "history", "deploy/web", "--revision", "1"]).await;
    res.unwrap();
    assert!(out.starts_with("deployment.apps/web with revision #1\nPod Template:\n"), "{out}");
    assert!(out.contains("nginx:1") && out.contains("kubernetes.io/change-cause: image nginx:1"), "{out}");
    let (res, _, _) = srv.run(&["rollout", "history", "deploy/web", "--revision", "7"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: unable to find the specified revision");

    let (res, out, _) = srv.run(&["rollout", "undo", "deployment/web"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web rolled back\n");
    let patch = srv.requests().last().unwrap().clone();
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web")
    );
    assert_eq!(patch.content_type, "application/json-patch+json");
    assert_eq!(
        patch.json(),
        json!([
            {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
            {"op": "replace", "path": "/metadata/annotations", "value": {
                "deployment.kubernetes.io/revision": "2", "kubernetes.io/change-cause": "image nginx:1"}}
        ])
    );

    let n = srv.requests().len();
    let (res, out, _) = srv.run(&["rollout", "undo", "deployment/web", "--to-revision", "2"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web skipped rollback (current template already matches revision 2)\n");
    assert_eq!(srv.requests().len(), n + 2, "no patch when skipping");
    let (res, _, _) = srv.run(&["rollout", "undo", "deployment/web", "--to-revision", "7"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: unable to find specified revision 7 in history");
    assert_eq!(patched.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn request_shape_rollout_restart_pause_resume() {
    let srv = TestServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis/apps/v1/namespaces/default/deployments/held") => {
            let mut d = deployment(1, 1, 3, 3, 3);
            d["spec"]["paused"] = json!(true);
            (200, d.to_string())
        }
        ("GET", _) => (200, deployment(1, 1, 3, 3, 3).to_string()),
        ("PATCH", _) => (200, deployment(2, 1, 3, 3, 3).to_string()),
        _ => (500, "unexpected".into()),
    })
    .await;
    let (res, out, _) = srv.run(&["rollout", "restart", "deployment/web"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web restarted\n");
    let p = srv.requests().last().unwrap().clone();
    assert_eq!(p.content_type, "application/merge-patch+json");
    let at = p.json()["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(skiff_client::describe::parse_rfc3339(&at).is_some(), "{at}");

    let (res, out, _) = srv.run(&["rollout", "pause", "deployment/web"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/web paused\n");
    assert_eq!(srv.requests().last().unwrap().json(), json!({"spec": {"paused": true}}));
    let (res, out, _) = srv.run(&["rollout", "resume", "deployment/held"]).await;
    res.unwrap();
    assert_eq!(out, "deployment.apps/held resumed\n");
    assert_eq!(srv.requests().last().unwrap().json(), json!({"spec": {"paused": false}}));

    let n = srv.requests().len();
    let (res, _, _) = srv.run(&["rollout", "pause", "deployment/held"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: deployments.apps \"held\" is already paused");
    let (res, _, _) = srv.run(&["rollout", "resume", "deployment/web"]).await;
    assert_eq!(res.unwrap_err().to_string(), "error: deployments.apps \"web\" is not paused");
    let (res, _, _) = srv.run(&["rollout", "restart", "deployment/held"]).await;
    assert_eq!(
        res.unwrap_err().to_string(),
        "error: deployments.apps \"held\" can't restart paused deployment (run rollout resume first)"
    );
    assert!(srv.requests()[n..].iter().all(|r| r.method == "GET"), "refusals send no patch");
}

#[tokio::test]
async fn request_shape_cordon_uncordon_drain() {
    let state: Arc<Mutex<(bool, Vec<String>)>> = Arc::default();
    let st = state.clone();
    let srv = TestServer::start(move |r| {
        let mut st = st.lock().unwrap();
        let pod = |ns: &str, name: &str, managed: bool| {
            let mut p = json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": format!("u-{name}")},
                "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
            if managed {
                p["metadata"]["ownerReferences"] =
                    json!([{"kind": "ReplicaSet", "name": "web-1", "uid": "r", "controller": true}]);
            }
            p
        };
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/api/v1/nodes/n1") => {
                (200, json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"unschedulable": st.0}}).to_string())
            }
            ("PATCH", "/api/v1/nodes/n1") => {
                st.0 = r.json()["spec"]["unschedulable"] == json!(true);
                (200, json!({"kind": "Node", "metadata": {"name": "n1"}}).to_string())
            }
            ("GET", "/api/v1/pods") => (
                200,
                json!({"kind": "PodList", "items": [pod("default", "web-1", true), pod("team", "bare", false),
                    pod("default", "gone", true)]})
                .to_string(),
            ),
            // Gone before its eviction: counts as evicted at once.
            ("POST", "/api/v1/namespaces/default/pods/gone/eviction") => not_found("pods", "gone"),
            ("POST", p) if p.ends_with("/eviction") => {
                st.1.push(p.to_string());
                (201, json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}).to_string())
            }
            ("GET", "/api/v1/namespaces/default/pods/web-1") => not_found("pods", "web-1"),
            ("GET", "/api/v1/namespaces/team/pods/bare") => {
                // Recreated under the same name: a different uid counts as gone.
                let mut p = pod("team", "bare", false);
                p["metadata"]["uid"] = json!("new");
                (200, p.to_string())
            }
            _ => (500, "unexpected".into()),
        }
    })
    .await;
    let (res, out, _) = srv.run(&["cordon", "n1"]).await;
    res.unwrap();
    assert_eq!(out, "node/n1 cordoned\n");
    let p = srv.requests()[1].clone();
    assert_eq!((p.method.as_str(), p.content_type.as_str()), ("PATCH", "application/merge-patch+json"));
    assert_eq!(p.json(), json!({"spec": {"unschedulable": true}}));
    let (res, out, _) = srv.run(&["cordon", "node/n1"]).await;
    res.unwrap();
    assert_eq!(out, "node/n1 already cordoned\n");
    let (res, out, _) = srv.run(&["uncordon", "n1"]).await;
    res.unwrap();
    assert_eq!(out, "node/n1 uncordoned\n");
    assert_eq!(srv.requests().last().unwrap().json(), json!({"spec": {"unschedulable": false}}));

    // An unmanaged pod stops the drain unless --force; the node stays cordoned.
    let (res, out, _) = srv.run(&["drain", "n1"]).await;
    assert_eq!(
        res.unwrap_err().to_string(),
        "error: unable to drain node \"n1\" due to error: cannot delete Pods that declare no controller (use --force to override): team/bare"
    );
    assert_eq!(out, "node/n1 cordoned\n");
    assert!(state.lock().unwrap().1.is_empty());
    let list = srv.requests().iter().find(|r| r.path == "/api/v1/pods").unwrap().clone();
    assert_eq!(list.query, "fieldSelector=spec.nodeName%3Dn1");

    let (res, out, err) = srv.run(&["drain", "n1", "--force", "--grace-period", "5", "--timeout", "5s"]).await;
    res.unwrap();
    assert_eq!(
        out,
        "node/n1 already cordoned\npod/gone evicted\npod/web-1 evicted\npod/bare evicted\nnode/n1 drained\n"
    );
    assert_eq!(
        err,
        "Warning: deleting Pods that declare no controller: team/bare\nevicting pod default/web-1\nevicting pod team/bare\nevicting pod default/gone\n"
    );
    assert_eq!(
        state.lock().unwrap().1,
        ["/api/v1/namespaces/default/pods/web-1/eviction", "/api/v1/namespaces/team/pods/bare/eviction"]
    );
    assert!(srv.requests().iter().all(|r| r.method != "DELETE"), "drain evicts, it does not delete");
    let ev = srv.requests().into_iter().find(|r| r.path.ends_with("/eviction")).unwrap();
    assert_eq!(ev.content_type, "application/json");
    assert_eq!(
        ev.json(),
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 5}})
    );
}
