//! End-to-end: the real `kubectl` against three real `skiff server` processes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use skiff::proc_cluster::{kubectl_path, run_kubectl, wait_for, KubectlOut, ProcCluster};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// kubectl bound to one kubeconfig and a private discovery cache.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

type Out = KubectlOut;

impl Kubectl {
    fn new(kubeconfig: PathBuf, dir: &Path, tag: &str) -> Self {
        Kubectl { kubeconfig, cache: dir.join(format!("kubectl-cache-{tag}")) }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(&self.cache).arg("--request-timeout=20s");
        c.args(args);
        c
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run_kubectl(&self.kubeconfig, &self.cache, args, stdin)
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, "")
    }

    /// Runs and asserts success, returning stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.ok, "kubectl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }

    fn apply(&self, manifest: &str) -> String {
        let o = self.run_stdin(&["apply", "-f", "-"], manifest);
        assert!(o.ok, "kubectl apply failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }

    fn fails(&self, args: &[&str], stdin: &str) -> String {
        let o = self.run_stdin(args, stdin);
        assert!(!o.ok, "kubectl {args:?} should have failed:\nstdout: {}", o.stdout);
        o.stderr
    }
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: skiff/busybox:1
        command: ["httpd", "-f", "-p", "8080"]
        env:
        - {name: A, value: "1"}
        ports:
        - containerPort: 8080
      - name: sidecar
        image: skiff/busybox:1
        command: ["sleep", "3600"]
"#;

async fn cluster() -> (ProcCluster, u64) {
    let c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    (c, leader)
}

/// A 3-replica cluster, its leader and one of its followers.
async fn cluster_with_follower() -> (ProcCluster, u64, u64) {
    let (c, leader) = cluster().await;
    let follower = c.members.iter().map(|m| m.id).find(|id| *id != leader).unwrap();
    (c, leader, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_apply_get_scale_patch_delete() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, leader, follower) = cluster_with_follower().await;
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir(), "f");
    let kl = Kubectl::new(c.kubeconfig(leader).unwrap(), c.dir(), "l");

    // The initial namespaces appear once a leader takes the bootstrap write.
    wait_for(Duration::from_secs(20), "namespace default", || k.run(&["get", "namespace", "default"]).ok.then_some(()));
    let ns = k.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    assert!(k.ok(&["version", "-o", "json"]).contains("\"minor\": \"32\""));
    assert!(k.ok(&["api-resources"]).contains("deployments"));

    // create through a follower (writes are forwarded to the leader), read from the leader.
    let out = k.run_stdin(&["create", "-f", "-"], DEPLOYMENT);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deployment.apps/web created");
    let table = kl.ok(&["get", "deployments"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = kl.ok(&["get", "deploy", "-o", "wide"]);
    assert!(wide.contains("skiff/busybox:1,skiff/busybox:1") && wide.contains("app=web"), "{wide}");
    let yaml = kl.ok(&["get", "deployment", "web", "-o", "yaml"]);
    for want in [
        "replicas: 2",
        "resourceVersion:",
        "uid:",
        "creationTimestamp:",
        "generation: 1",
        "maxSurge: 25%",
        "progressDeadlineSeconds: 600",
        "revisionHistoryLimit: 10",
        "terminationGracePeriodSeconds: 30",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }
    // A second create is refused with AlreadyExists.
    let err = k.fails(&["create", "-f", "-"], DEPLOYMENT);
    assert!(err.contains("AlreadyExists") && err.contains("deployments.apps \"web\" already exists"), "{err}");

    // apply: create, re-apply unchanged, change (strategic merge by container name).
    let applied = DEPLOYMENT.replace("name: web\n  labels", "name: api\n  labels");
    assert_eq!(k.apply(&applied).trim(), "deployment.apps/api created");
    assert_eq!(k.apply(&applied).trim(), "deployment.apps/api unchanged");
    let changed =
        applied.replace("- {name: A, value: \"1\"}", "- {name: A, value: \"2\"}\n        - {name: B, value: \"3\"}");
    assert_eq!(k.apply(&changed).trim(), "deployment.apps/api configured");
    let env = k.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.template.spec.containers[0].env}"]);
    assert!(env.contains("\"value\":\"2\"") && env.contains("\"name\":\"B\""), "{env}");
    let gen = k.ok(&["get", "deploy", "api", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(gen, "2");

    // scale through the scale subresource.
    assert_eq!(k.ok(&["scale", "deployment", "web", "--replicas=5"]).trim(), "deployment.apps/web scaled");
    assert_eq!(kl.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "5");

    // patch: strategic (merge key = container name), merge and JSON patch.
    let p = r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"skiff/busybox:2"}]}}}}"#;
    assert_eq!(k.ok(&["patch", "deployment", "web", "-p", p]).trim(), "deployment.apps/web patched");
    let images = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].image}"]);
    assert_eq!(images, "skiff/busybox:1 skiff/busybox:2", "strategic merge kept the other container");
    k.ok(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":"front"}}}"#]);
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert_eq!(k.ok(&["get", "deploy", "-l", "tier=front", "-o", "name"]).trim(), "deployment.apps/web");
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");

    // Invalid objects are rejected, naming the field.
    let bad = DEPLOYMENT.replace("replicas: 2", "replicas: -1").replace("name: web\n  labels", "name: bad\n  labels");
    let err = k.fails(&["create", "-f", "-"], &bad);
    // kubectl prints each cause as `field: message`: the message must not name the field again.
    assert!(err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"), "{err}");
    assert!(!err.contains("spec.replicas: spec.replicas"), "{err}");
    // Fenceposts that would stall every rollout are refused when written, not found at the
    // first rollout.
    let bad = DEPLOYMENT
        .replace("name: web\n  labels", "name: bad\n  labels")
        .replace("replicas: 2\n", "replicas: 2\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n");
    let err = k.fails(&["create", "-f", "-"], &bad);
    assert!(
        err.contains("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"),
        "{err}"
    );
    // A kind the server does not serve: kubectl's own answer (it once failed fetching the
    // OpenAPI v2 document its validation falls back to).
    let err = k.fails(&["apply", "-f", "-"], "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n");
    assert!(err.contains(r#"no matches for kind "Widget" in version "v1""#), "{err}");
    // A value of the wrong type is refused naming its field.
    let err = k.fails(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"replicas":"many"}}"#], "");
    assert!(err.contains(r#"spec.replicas: invalid type: string "many", expected i32"#), "{err}");
    let bad = DEPLOYMENT
        .replace("image: skiff/busybox:1\n        command: [\"sleep\"", "imagee: x\n        command: [\"sleep\"");
    let err = k.fails(&["create", "-f", "-"], &bad);
    assert!(err.contains("unknown field") && err.contains("imagee"), "{err}");
    let bad_name = DEPLOYMENT.replace("name: web\n  labels", "name: Web_1\n  labels");
    let err = k.fails(&["create", "-f", "-"], &bad_name);
    assert!(err.contains("metadata.name") && err.contains("RFC 1123"), "{err}");

    // A stale update gets 409 Conflict.
    let old = k.ok(&["get", "deploy", "web", "-o", "json"]);
    k.ok(&["label", "deploy", "web", "touched=yes"]);
    let err = k.fails(&["replace", "-f", "-"], &old);
    assert!(err.contains("Conflict") && err.contains("the object has been modified"), "{err}");

    // delete; the deployment's pods-to-be are gone, NotFound afterwards.
    assert_eq!(k.ok(&["delete", "deployment", "web"]).trim(), "deployment.apps \"web\" deleted");
    let err = kl.fails(&["get", "deployment", "web"], "");
    assert!(err.contains("NotFound") && err.contains("\"web\" not found"), "{err}");
}

/// `kubectl apply --server-side`: creates, removes what the manager stopped applying, refuses
/// another manager's field with kubectl's conflict advice unless `--force-conflicts`, and
/// `kubectl diff --server-side` shows what an apply would change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, _leader, follower) = cluster_with_follower().await;
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir(), "ssa");
    wait_for(Duration::from_secs(20), "namespace default", || k.run(&["get", "namespace", "default"]).ok.then_some(()));
    let ssa = |args: &[&str], manifest: &str| {
        let mut all = vec!["apply", "--server-side", "-f", "-"];
        all.extend_from_slice(args);
        k.run_stdin(&all, manifest)
    };
    let out = ssa(&[], DEPLOYMENT);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deployment.apps/web serverside-applied");
    let managed = k.ok(&["get", "deploy", "web", "-o", "yaml", "--show-managed-fields"]);
    assert!(managed.contains("manager: kubectl") && managed.contains("operation: Apply"), "{managed}");
    assert!(managed.contains(r#"k:{"name":"sidecar"}"#), "{managed}");

    // The sidecar and the env var dropped from the manifest are removed from the object.
    let trimmed = DEPLOYMENT
        .split("      - name: sidecar")
        .next()
        .unwrap()
        .replace("        env:\n        - {name: A, value: \"1\"}\n", "");
    let diff = k.run_stdin(&["diff", "--server-side", "-f", "-"], &trimmed);
    assert!(
        diff.stdout.contains("-      - command:") || diff.stdout.contains("-        name: sidecar"),
        "{}",
        diff.stdout
    );
    let out = ssa(&[], &trimmed);
    assert!(out.ok, "{}", out.stderr);
    let names = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].env}",
    ]);
    assert_eq!(names.trim(), "web", "the sidecar and env A are gone");

    // Another manager's different replicas: refused with kubectl's advice, then forced.
    let scaled = trimmed.replace("replicas: 2", "replicas: 3");
    let out = ssa(&["--field-manager=ops"], &scaled);
    assert!(!out.ok);
    assert!(
        out.stderr.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--force-conflicts"), "{}", out.stderr);
    let out = ssa(&["--field-manager=ops", "--force-conflicts"], &scaled);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    // kubectl's own apply of the old value now conflicts with ops.
    let out = ssa(&[], &trimmed);
    assert!(!out.ok && out.stderr.contains(r#"conflict with "ops": .spec.replicas"#), "{}", out.stderr);

    // `skiff apply --server-side` applies as field manager `skiff`, with the same conflicts.
    let kubeconfig = c.kubeconfig(follower).unwrap();
    let labelled = trimmed.replace("labels: {app: web}\nspec:", "labels: {app: web, by: skiff}\nspec:");
    let out = skiff_cli(&kubeconfig, &["apply", "--server-side", "-f", "-"], &labelled);
    assert!(!out.ok && out.stderr.contains(r#"conflict with "ops""#), "{}", out.stderr);
    let out = skiff_cli(&kubeconfig, &["apply", "--server-side", "--force-conflicts", "-f", "-"], &labelled);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "deployment.apps/web serverside-applied");
    let managed = k.ok(&["get", "deploy", "web", "-o", "yaml", "--show-managed-fields"]);
    assert!(managed.contains("manager: skiff") && managed.contains("f:by: {}"), "{managed}");
    // `skiff get -o yaml` leaves the ownership records out unless asked, as kubectl does.
    let plain = skiff_cli(&kubeconfig, &["get", "deploy", "web", "-o", "yaml"], "");
    assert!(
        plain.ok && plain.stdout.contains("by: skiff") && !plain.stdout.contains("managedFields"),
        "{}",
        plain.stdout
    );
    let shown = skiff_cli(&kubeconfig, &["get", "deploy", "-o", "json", "--show-managed-fields"], "");
    assert!(shown.ok && shown.stdout.contains("\"manager\": \"skiff\""), "{}", shown.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_pods_namespaces_and_selectors() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, leader) = cluster().await;
    let k = Kubectl::new(c.kubeconfig(leader).unwrap(), c.dir(), "w");
    wait_for(Duration::from_secs(20), "namespace default", || k.run(&["get", "ns", "default"]).ok.then_some(()));
    assert_eq!(k.ok(&["create", "namespace", "team"]).trim(), "namespace/team created");
    let pod = |name: &str, ns: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: x}}}}\n\
             spec:\n  containers:\n  - {{name: c, image: skiff/busybox:1, command: [sleep, '3600']}}\n"
        )
    };
    assert_eq!(k.apply(&pod("p1", "team")).trim(), "pod/p1 created");

    // kubectl get -w prints the table, then a row per change.
    let mut child =
        k.cmd(&["get", "pods", "-n", "team", "-w"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("table header");
    assert!(first.starts_with("NAME") && first.contains("STATUS"), "{first}");
    let row = rx.recv_timeout(Duration::from_secs(20)).expect("p1 row");
    assert!(row.starts_with("p1 ") && row.contains("Pending"), "{row}");
    let o = k.run_stdin(&["create", "-f", "-"], &pod("p2", "team"));
    assert!(o.ok, "{}", o.stderr);
    let row = rx.recv_timeout(Duration::from_secs(20)).expect("p2 row from the watch");
    assert!(row.starts_with("p2 "), "{row}");
    let _ = child.kill();
    let _ = child.wait();

    // Selectors and all-namespaces listing.
    k.run_stdin(&["create", "-f", "-"], &pod("q1", "default"));
    let all = k.ok(&["get", "pods", "-A"]);
    assert!(all.lines().next().unwrap().starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("team") && all.contains("q1"), "{all}");
    assert_eq!(
        k.ok(&["get", "pods", "-n", "team", "--field-selector", "metadata.name=p2", "-o", "name"]).trim(),
        "pod/p2"
    );
    assert_eq!(k.ok(&["get", "pods", "-n", "team", "-l", "app=x", "-o", "name"]).lines().count(), 2);
    let empty = k.run(&["get", "pods", "-n", "team", "-l", "app=none"]);
    assert!(empty.stderr.contains("No resources found in team namespace."), "{}", empty.stderr);

    // NodePort Services get a unique port from 30000-32767; a taken port is refused; a deleted
    // Service frees its port.
    let svc = |name: &str, port: Option<u16>| {
        let np = port.map(|p| format!(", nodePort: {p}")).unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  selector: {{app: x}}\n  \
             ports:\n  - {{port: 80, targetPort: 8080{np}}}\n"
        )
    };
    k.apply(&svc("s1", None));
    let p1: u16 = k.ok(&["get", "svc", "s1", "-o", "jsonpath={.spec.ports[0].nodePort}"]).parse().unwrap();
    assert!((30000..=32767).contains(&p1), "{p1}");
    assert_eq!(k.apply(&svc("s1", None)).trim(), "service/s1 unchanged", "re-apply keeps the allocated port");
    let err = k.fails(&["apply", "-f", "-"], &svc("s2", Some(p1)));
    assert!(err.contains("spec.ports[0].nodePort") && err.contains("provided port is already allocated"), "{err}");
    assert!(k.ok(&["get", "svc"]).contains(&format!("80:{p1}/TCP")));
    k.ok(&["delete", "svc", "s1"]);
    assert_eq!(k.apply(&svc("s2", Some(p1))).trim(), "service/s2 created");
    // The leader's endpoints controller gives the Service its Endpoints object.
    wait_for(Duration::from_secs(20), "endpoints of s2", || k.run(&["get", "endpoints", "s2"]).ok.then_some(()));

    // Unscheduled pods are deleted at once; deleting a namespace empties it.
    assert_eq!(k.ok(&["delete", "pod", "p1", "-n", "team"]).trim(), "pod \"p1\" deleted");
    k.ok(&["delete", "namespace", "team"]);
    wait_for(Duration::from_secs(20), "namespace team gone", || {
        let o = k.run(&["get", "namespace", "team"]);
        (!o.ok && o.stderr.contains("NotFound")).then_some(())
    });
    let err = k.fails(&["get", "pod", "p2", "-n", "team"], "");
    assert!(err.contains("NotFound"), "{err}");
}

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/hostname: n1}
status:
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: ready}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_runs_controllers_and_scheduler_and_hands_them_over() {
    let _deadline = skiff::proc_cluster::test_deadline();
    // No agent heartbeats in this test: a long lease keeps the hand-made node Ready.
    let mut c = ProcCluster::start(&bin(), 3, &["--node-lease-ttl-ms", "600000"]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let follower = c.members.iter().map(|m| m.id).find(|id| *id != leader).unwrap();
    let k = Kubectl::new(c.kubeconfig(follower).unwrap(), c.dir(), "c");
    wait_for(Duration::from_secs(20), "namespace default", || k.run(&["get", "ns", "default"]).ok.then_some(()));
    k.apply(NODE);
    k.apply(&DEPLOYMENT.replace("replicas: 2", "replicas: 3"));

    // The Deployment controller makes a ReplicaSet <name>-<hash>, which makes 3 pods; the
    // scheduler binds them to the one Ready node.
    let bound = |want: usize| {
        let out =
            k.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
        (out.ok && out.stdout.lines().filter(|l| *l == "n1").count() == want).then_some(())
    };
    wait_for(Duration::from_secs(30), "3 pods bound to n1", || bound(3));
    let rs = k.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name} {.items[0].metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert!(rs.starts_with("web-") && rs.ends_with(" 1"), "{rs}");
    let owners = k.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.ownerReferences[0].kind}"]);
    assert_eq!(owners, "ReplicaSet");
    let cond = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].status.conditions[?(@.type==\"PodScheduled\")].status}",
    ]);
    assert_eq!(cond, "True");

    // A pod that fits nowhere says why.
    let stuck = "apiVersion: v1\nkind: Pod\nmetadata: {name: stuck}\nspec:\n  nodeSelector: {disk: ssd}\n  containers:\n  - {name: c, image: skiff/busybox:1}\n";
    k.apply(stuck);
    wait_for(Duration::from_secs(20), "FailedScheduling message", || {
        let m =
            k.run(&["get", "pod", "stuck", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"]);
        m.stdout.contains("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.").then_some(())
    });

    // Kill the leader: the next leader takes the controllers over and scaling still works.
    c.kill(leader).unwrap();
    let new_leader = c.leader(Duration::from_secs(30)).await.unwrap();
    assert_ne!(new_leader, leader);
    let k2 = Kubectl::new(c.kubeconfig(new_leader).unwrap(), c.dir(), "c2");
    wait_for(Duration::from_secs(30), "scale through the new leader", || {
        k2.run(&["scale", "deploy", "web", "--replicas=5"]).ok.then_some(())
    });
    let bound5 = || {
        let out =
            k2.run(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
        (out.ok && out.stdout.lines().filter(|l| *l == "n1").count() == 5).then_some(())
    };
    wait_for(Duration::from_secs(30), "5 pods bound after the leader change", bound5);
    // Nothing was created twice: exactly 5 pods exist.
    let names = k2.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(names.lines().count(), 5, "{names}");
}

/// `skiff` user commands against the real API server, configured like kubectl (KUBECONFIG).
fn skiff_cli(kubeconfig: &Path, args: &[&str], stdin: &str) -> Out {
    let mut child = Command::new(bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skiff");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_cli_apply_get_describe_scale_delete() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, leader) = cluster().await;
    let kc = c.kubeconfig(leader).unwrap();
    let run = |args: &[&str], stdin: &str| skiff_cli(&kc, args, stdin);
    wait_for(Duration::from_secs(20), "namespace default", || run(&["get", "ns", "default"], "").ok.then_some(()));

    let o = run(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "deployment.apps/web created");
    assert_eq!(run(&["apply", "-f", "-"], DEPLOYMENT).stdout.trim(), "deployment.apps/web unchanged");
    let o = run(&["apply", "-f", "-"], &DEPLOYMENT.replace("value: \"1\"", "value: \"9\""));
    assert_eq!(o.stdout.trim(), "deployment.apps/web configured", "{}", o.stderr);

    let table = run(&["get", "deployments"], "");
    assert!(table.ok, "{}", table.stderr);
    assert!(table.stdout.lines().next().unwrap().starts_with("NAME"), "{}", table.stdout);
    assert!(table.stdout.contains("web"), "{}", table.stdout);
    let yaml = run(&["get", "deploy", "web", "-o", "yaml"], "");
    assert!(yaml.stdout.contains("value: \"9\"") || yaml.stdout.contains("value: '9'"), "{}", yaml.stdout);
    let json = run(&["get", "deploy", "web", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("-o json is JSON");
    assert_eq!(v["spec"]["replicas"], 2);

    let o = run(&["scale", "deployment/web", "--replicas", "4"], "");
    assert_eq!(o.stdout.trim(), "deployment.apps/web scaled", "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&run(&["get", "deploy", "web", "-o", "json"], "").stdout).unwrap();
    assert_eq!(v["spec"]["replicas"], 4);

    let d = run(&["describe", "deployment", "web"], "");
    assert!(d.ok && d.stdout.contains("web") && d.stdout.contains("skiff/busybox:1"), "{}{}", d.stdout, d.stderr);

    let missing = run(&["get", "pod", "nope"], "");
    assert!(!missing.ok);
    assert!(missing.stderr.contains("Error from server (NotFound): pods \"nope\" not found"), "{}", missing.stderr);
    let bad = run(&["apply", "-f", "-"], &DEPLOYMENT.replace("replicas: 2", "replicas: -3"));
    assert!(!bad.ok && bad.stderr.contains("spec.replicas"), "{}", bad.stderr);

    let o = run(&["delete", "deployment", "web"], "");
    assert!(o.ok && o.stdout.contains("deleted"), "{}{}", o.stdout, o.stderr);
    assert!(!run(&["get", "deploy", "web"], "").ok);
}

/// Parses `kubectl get -o json` output.
fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// kubectl's typed-client commands send protobuf bodies: `create namespace|deployment|service`
/// are decoded into the same objects a YAML manifest gives, and `kubectl drain` evicts a node's
/// pods through `pods/eviction` (a `skiff agent` on the process runtime finishes each deletion).
/// `skiff drain` evicts the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_creates_and_drain_evict() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, leader) = cluster().await;
    let k = Kubectl::new(c.kubeconfig(leader).unwrap(), c.dir(), "t");
    wait_for(Duration::from_secs(20), "namespace default", || k.run(&["get", "ns", "default"]).ok.then_some(()));

    // The request really is protobuf, and kubectl takes the JSON answer.
    let o = k.run(&["create", "namespace", "shop", "-v=8"]);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "namespace/shop created");
    assert!(o.stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"), "{}", o.stderr);
    assert!(o.stderr.contains("Content-Type: application/json") && o.stderr.contains("Response Body"), "{}", o.stderr);
    let ns = json_of(&k.ok(&["get", "namespace", "shop", "-o", "json"]));
    assert_eq!(ns["status"]["phase"], "Active", "{ns}");
    let err = k.fails(&["create", "namespace", "shop"], "");
    assert!(err.contains("AlreadyExists"), "{err}");

    let node = format!("drain-{}", std::process::id());
    let agent = c.spawn_agent(&node, "process", &["--proxy-address", "none"]).unwrap();
    wait_for(Duration::from_secs(60), "the agent's node Ready", || {
        let o = k.run(&["get", "node", &node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        (o.stdout == "True").then_some(())
    });
    // `kubectl describe node` lists its registration and readiness, from their components.
    wait_for(Duration::from_secs(20), "the node's events", || {
        let d = k.run(&["describe", "node", &node]).stdout;
        let events = d.split("Events:").nth(1).unwrap_or("").to_string();
        let listed = |words: &[&str], message: &str| {
            events.lines().any(|l| words.iter().all(|w| l.split_whitespace().any(|x| x == *w)) && l.ends_with(message))
        };
        let registered = listed(
            &["Normal", "RegisteredNode", "node-controller"],
            &format!("Node {node} event: Registered Node {node} in Controller"),
        );
        let ready = listed(&["Normal", "NodeReady", "kubelet"], &format!("Node {node} status is now: NodeReady"));
        (registered && ready).then_some(())
    });

    // `kubectl create deployment`: replicas, selector, template, command from protobuf; the
    // server's defaults where kubectl left zero values.
    let out = k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "shop",
        "--image=skiff/busybox:1",
        "--replicas=2",
        "--port=8080",
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d = json_of(&k.ok(&["get", "deployment", "web", "-n", "shop", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    assert_eq!(d["spec"]["selector"], serde_json::json!({"matchLabels": {"app": "web"}}), "{d}");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"], serde_json::json!({"app": "web"}), "{d}");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "{d}");
    let ctr = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["image"], "skiff/busybox:1", "{d}");
    assert_eq!(ctr["command"], serde_json::json!(["sleep", "3600"]), "{d}");
    assert_eq!(ctr["ports"], serde_json::json!([{"containerPort": 8080, "protocol": "TCP"}]), "{d}");
    assert_eq!(ctr["imagePullPolicy"], "IfNotPresent", "defaulted, not empty: {d}");

    // `kubectl create service nodeport`: IntOrString targetPort, an allocated nodePort.
    assert_eq!(
        k.ok(&["create", "service", "nodeport", "web", "-n", "shop", "--tcp=80:8080"]).trim(),
        "service/web created"
    );
    let svc = json_of(&k.ok(&["get", "service", "web", "-n", "shop", "-o", "json"]));
    assert_eq!(svc["spec"]["type"], "NodePort", "{svc}");
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "web"}), "{svc}");
    let port = &svc["spec"]["ports"][0];
    assert_eq!((port["port"].as_i64(), port["targetPort"].as_i64()), (Some(80), Some(8080)), "{svc}");
    assert_eq!((port["name"].as_str(), port["protocol"].as_str()), (Some("80-8080"), Some("TCP")), "{svc}");
    assert!((30000..=32767).contains(&port["nodePort"].as_i64().unwrap_or(0)), "{svc}");

    // Both replicas and a bare pod run on the node.
    k.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bare, namespace: shop}}\nspec:\n  nodeName: {node}\n  \
         containers:\n  - {{name: c, image: skiff/busybox:1, command: [sleep, '3600']}}\n"
    ));
    let running_on_node = |want: usize| {
        let o = k.run(&[
            "get",
            "pods",
            "-n",
            "shop",
            "--field-selector",
            &format!("spec.nodeName={node},status.phase=Running"),
            "-o",
            "name",
        ]);
        (o.ok && o.stdout.lines().count() == want).then(|| o.stdout.lines().map(str::to_string).collect::<Vec<_>>())
    };
    let before = wait_for(Duration::from_secs(60), "3 pods running on the node", || running_on_node(3));

    // kubectl drain finds pods/eviction in discovery and evicts (a bare pod needs --force).
    let o = k.run(&["drain", &node, "--ignore-daemonsets", "--force", "--timeout=120s", "-v=6"]);
    assert!(o.ok, "drain failed:\nstdout: {}\nstderr: {}\nagent log:\n{}", o.stdout, o.stderr, agent.log_tail(30));
    assert!(o.stdout.contains(&format!("node/{node} cordoned")), "{}", o.stdout);
    assert!(o.stdout.contains(&format!("node/{node} drained")), "{}", o.stdout);
    for pod in &before {
        let name = pod.trim_start_matches("pod/");
        assert!(o.stdout.contains(&format!("pod/{name} evicted")), "{name}: {}", o.stdout);
        let evicted = o.stderr.lines().any(|l| {
            l.contains("POST http")
                && l.contains(&format!("/api/v1/namespaces/shop/pods/{name}/eviction"))
                && l.contains(" 201 Created")
        });
        assert!(evicted, "{name} was not evicted through pods/eviction:\n{}", o.stderr);
        let gone = k.run(&["get", "pod", name, "-n", "shop"]);
        assert!(!gone.ok && gone.stderr.contains("NotFound"), "{name}: {}", gone.stderr);
    }
    assert!(!o.stderr.contains("DELETE http"), "drain deleted instead of evicting:\n{}", o.stderr);
    // The node is cordoned and empty; the Deployment's replacements wait unscheduled.
    assert_eq!(k.ok(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]), "true");
    let left = k.ok(&["get", "pods", "-A", "--field-selector", &format!("spec.nodeName={node}"), "-o", "name"]);
    assert!(left.trim().is_empty(), "pods left on the drained node: {left}");
    wait_for(Duration::from_secs(30), "2 unscheduled replacement pods", || {
        let o = k.run(&[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}:{.spec.nodeName}{\"\\n\"}{end}",
        ]);
        let lines: Vec<&str> = o.stdout.lines().collect();
        (lines.len() == 2 && lines.iter().all(|l| l.ends_with(':'))).then_some(())
    });

    // `skiff drain` evicts the same way once the node takes pods again.
    k.ok(&["uncordon", &node]);
    let again = wait_for(Duration::from_secs(60), "the replacements running on the node", || running_on_node(2));
    let o = skiff_cli(&c.kubeconfig(leader).unwrap(), &["drain", &node, "--timeout", "120s"], "");
    assert!(o.ok, "skiff drain failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    for pod in &again {
        let name = pod.trim_start_matches("pod/");
        assert!(o.stdout.contains(&format!("pod/{name} evicted")), "{name}: {}", o.stdout);
        assert!(o.stderr.contains(&format!("evicting pod shop/{name}")), "{}", o.stderr);
    }
    assert!(o.stdout.trim_end().ends_with(&format!("node/{node} drained")), "{}", o.stdout);
    let left = k.ok(&["get", "pods", "-A", "--field-selector", &format!("spec.nodeName={node}"), "-o", "name"]);
    assert!(left.trim().is_empty(), "pods left on the node after skiff drain: {left}");
}

/// What a replica acknowledged is usable through every replica at once: a follower that has
/// not applied a namespace (or a pod) yet must not answer a create in it (an update of it)
/// with NotFound or a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_are_usable_at_once_through_the_other_replicas() {
    use serde_json::json;
    use skiff_api::registry::{NAMESPACES, PODS};
    use skiff_client::Client;
    let _deadline = skiff::proc_cluster::test_deadline();
    let (c, leader) = cluster().await;
    let client = |id: u64| {
        let m = c.members.iter().find(|m| m.id == id).unwrap();
        Client::new(&format!("http://{}", m.api), Duration::from_secs(10)).unwrap()
    };
    let lc = client(leader);
    let followers: Vec<Client> = c.members.iter().filter(|m| m.id != leader).map(|m| client(m.id)).collect();
    wait_for(Duration::from_secs(20), "namespace default", || {
        let out = Kubectl::new(c.kubeconfig(leader).unwrap(), c.dir(), "l").run(&["get", "namespace", "default"]);
        out.ok.then_some(())
    });
    for i in 0..30 {
        let ns = format!("fresh-{i}");
        lc.create(&NAMESPACES, None, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .await
            .unwrap();
        // Bound to a node that does not exist, so no scheduler or agent writes it meanwhile.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "skiff/busybox:1"}]}});
        let f = &followers[i % followers.len()];
        let mut created = match f.create(&PODS, Some(&ns), &pod).await {
            Ok(p) => p,
            Err(e) => panic!("creating a pod in namespace {ns} through a follower right after the namespace: {e}"),
        };
        // Replaced at once through the other follower, with the resourceVersion just returned.
        created["metadata"]["labels"] = json!({"round": i.to_string()});
        let other = &followers[(i + 1) % followers.len()];
        if let Err(e) = other.replace(&PODS, Some(&ns), "p", &created).await {
            panic!("replacing pod {ns}/p through the other follower right after its create: {e}");
        }
    }
    // A namespace that does not exist is still refused, naming it.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "skiff/busybox:1"}]}});
    let err = followers[0].create(&PODS, Some("never-made"), &pod).await.unwrap_err().to_string();
    assert!(err.contains("namespaces \"never-made\" not found"), "{err}");
}
