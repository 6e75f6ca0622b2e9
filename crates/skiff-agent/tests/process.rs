//! Pod lifecycle on the process runtime: containers are host processes (`sh` scripts), pod IP 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EnvVar, Probe, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_agent::{ProcessConfig, ProcessRuntime, Runtime};

struct Setup {
    h: Harness,
    runtime: Arc<ProcessRuntime>,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(ProcessRuntime::new(ProcessConfig::new(dir.path())));
    let h = Harness::start(runtime.clone() as Arc<dyn Runtime>, test_config(&unique("proc-node"))).await;
    Setup { h, runtime, dir }
}

/// A loop that exits 0 on SIGTERM.
const POLITE: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pod_runs_with_env_workdir_and_logs() {
    let s = setup().await;
    let h = &s.h;
    let mut c = container(
        "app",
        "ignored",
        sh(&format!("echo \"hello $GREETING from $(pwd) in $POD with ${{CPU}}m\"; {POLITE}")),
    );
    c.env = Some(vec![
        EnvVar { name: "GREETING".into(), value: Some("world".into()), ..Default::default() },
        EnvVar {
            name: "POD".into(),
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        // The downward API's container resources, in millicores.
        EnvVar {
            name: "CPU".into(),
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                resource_field_ref: Some(k8s_openapi::api::core::v1::ResourceFieldSelector {
                    resource: "requests.cpu".into(),
                    divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("1m".into())),
                    container_name: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some(
            [("cpu".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("250m".into()))].into(),
        ),
        ..Default::default()
    });
    c.working_dir = Some("/tmp".into());
    c.readiness_probe = Some(exec_probe(vec!["true".into()], 1, 1));
    let p = pod("proc-1", vec![c]);
    h.manager.sync(vec![p.clone()]);
    let st = h.wait_status("proc-1", Duration::from_secs(20), "Ready", is_ready).await;
    assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"));
    assert!(cstatus(&st, "app").container_id.as_deref().unwrap().starts_with("process://"));

    // Follow the log: the first chunk arrives, and the stream ends once the pod is gone.
    let mut follow = h.manager.logs("default", "proc-1", "app", true, None, false).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("first chunk").unwrap();
    assert_eq!(String::from_utf8_lossy(&first.unwrap()).trim(), "hello world from /tmp in proc-1 with 250m");
    h.manager.sync(vec![deleted(p, 5)]);
    h.wait_removed("proc-1", Duration::from_secs(20)).await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = follow.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "a followed log ends when the container stops");
    assert_eq!(h.node_objects().await, 0);
}

/// `skiff` turns transparent huge pages off for itself, which children inherit: the process
/// runtime gives its containers the system's setting back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_containers_do_not_inherit_the_agents_huge_page_setting() {
    // What `skiff`'s main does (the test binary is not `skiff`).
    // SAFETY: prctl with integer arguments only changes this process's THP flag.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) }, 0);
    let s = setup().await;
    let h = &s.h;
    let c = container("app", "ignored", sh(&format!("grep THP_enabled /proc/self/status; {POLITE}")));
    let p = pod("proc-thp", vec![c]);
    h.manager.sync(vec![p.clone()]);
    let st = h.wait_status("proc-thp", Duration::from_secs(20), "Ready", is_ready).await;
    let mut follow = h.manager.logs("default", "proc-thp", "app", true, None, false).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("first chunk").unwrap();
    let line = String::from_utf8_lossy(&first.unwrap()).trim().to_string();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["THP_enabled:", "1"], "{line}");
    // And a command run in the container (an exec probe, `kubectl exec`) the same.
    let id = cstatus(&st, "app").container_id.clone().unwrap();
    let id = id.strip_prefix("process://").expect("process container id");
    let cmd = ["grep".to_string(), "THP_enabled".into(), "/proc/self/status".into()];
    let r = s.runtime.exec(id, &cmd, Duration::from_secs(10)).await.unwrap();
    let out = String::from_utf8_lossy(&r.output).trim().to_string();
    assert_eq!((r.exit_code, out.split_whitespace().collect::<Vec<_>>()), (0, vec!["THP_enabled:", "1"]), "{out}");
    h.manager.sync(vec![deleted(p, 5)]);
    h.wait_removed("proc-thp", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_containers_share_localhost_and_empty_dir() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: /usr/bin/python3 (the test's HTTP server) is missing");
        return;
    }
    let s = setup().await;
    let h = &s.h;
    let port = skiff_testkit::free_port();
    let mount = Some(vec![VolumeMount { name: "shared".into(), mount_path: "/shared".into(), ..Default::default() }]);
    let mut server = container(
        "server",
        "ignored",
        sh(&format!(
            "echo from-server > \"$SKIFF_VOLUME_SHARED/a.txt\"; \
             exec /usr/bin/python3 -m http.server {port} --bind 127.0.0.1 --directory \"$SKIFF_VOLUME_SHARED\""
        )),
    );
    server.volume_mounts = mount.clone();
    server.readiness_probe = Some(Probe {
        tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
            port: IntOrString::Int(port.into()),
            host: None,
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    let mut client = container(
        "client",
        "ignored",
        sh(&format!(
            "until curl -sf http://127.0.0.1:{port}/a.txt > \"$SKIFF_VOLUME_SHARED/b.txt\"; do sleep 0.2; done; {POLITE}"
        )),
    );
    client.volume_mounts = mount;
    client.readiness_probe = Some(exec_probe(sh("grep -q from-server \"$SKIFF_VOLUME_SHARED/b.txt\""), 1, 1));
    let mut p = pod("proc-duo", vec![server, client]);
    p.spec.as_mut().unwrap().volumes =
        Some(vec![Volume { name: "shared".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    let uid = p.metadata.uid.clone().unwrap();
    h.manager.sync(vec![p]);
    h.wait_status("proc-duo", Duration::from_secs(30), "both ready", is_ready).await;
    let b = s.dir.path().join("pods").join(&uid).join("volumes/shared/b.txt");
    assert_eq!(std::fs::read_to_string(b).unwrap().trim(), "from-server");
    h.manager.sync(vec![]);
    h.wait_removed("proc-duo", Duration::from_secs(20)).await;
    assert!(!s.dir.path().join("pods").join(&uid).exists(), "emptyDir removed with the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_crash_loop_backoff() {
    let s = setup().await;
    let h = &s.h;
    h.manager.sync(vec![pod("crash", vec![container("c", "ignored", sh("echo attempt; exit 3"))])]);
    let st = h
        .wait_event("crash", Duration::from_secs(20), "CrashLoopBackOff", |s| {
            waiting_reason(cstatus(s, "c")) == Some("CrashLoopBackOff")
        })
        .await;
    let c = cstatus(&st, "c");
    assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);
    h.wait_status("crash", Duration::from_secs(20), "restartCount >= 3", |s| cstatus(s, "c").restart_count >= 3).await;
    // Restart counts grow with backoff: at least the doubling delays passed between them.
    assert_eq!(h.logs("crash", "c", true).await.trim(), "attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_liveness_failure_restarts() {
    let s = setup().await;
    let h = &s.h;
    let mut c = container("app", "ignored", sh(POLITE));
    c.liveness_probe = Some(exec_probe(vec!["false".into()], 1, 1));
    h.manager.sync(vec![pod("live", vec![c])]);
    let st = h
        .wait_status("live", Duration::from_secs(20), "restarted", |s| {
            let c = cstatus(s, "app");
            c.restart_count >= 1 && is_running(c)
        })
        .await;
    let last = cstatus(&st, "app").last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 0, "SIGTERM trapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_readiness_failure_not_ready() {
    let s = setup().await;
    let h = &s.h;
    let flag = s.dir.path().join("ready-flag");
    std::fs::write(&flag, "").unwrap();
    let mut c = container("app", "ignored", sh(POLITE));
    c.readiness_probe = Some(exec_probe(vec!["test".into(), "-f".into(), flag.display().to_string()], 1, 1));
    h.manager.sync(vec![pod("ready", vec![c])]);
    h.wait_status("ready", Duration::from_secs(20), "Ready", is_ready).await;
    std::fs::remove_file(&flag).unwrap();
    let st = h.wait_status("ready", Duration::from_secs(20), "not Ready", |s| !is_ready(s)).await;
    let c = cstatus(&st, "app");
    assert!(is_running(c) && c.restart_count == 0 && !c.ready);
    std::fs::write(&flag, "").unwrap();
    h.wait_status("ready", Duration::from_secs(20), "Ready again", is_ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_deletion_honours_grace_period() {
    let s = setup().await;
    let h = &s.h;
    let polite = pod("polite", vec![container("c", "ignored", sh(POLITE))]);
    // Ignored signals stay ignored in children, so the whole group shrugs SIGTERM off.
    let stubborn = pod("stubborn", vec![container("c", "ignored", sh("trap '' TERM; while :; do sleep 0.1; done"))]);
    h.manager.sync(vec![polite.clone(), stubborn.clone()]);
    for name in ["polite", "stubborn"] {
        h.wait_status(name, Duration::from_secs(20), "running", |s| is_running(cstatus(s, "c"))).await;
    }
    let t0 = Instant::now();
    h.manager.sync(vec![deleted(polite, 30), deleted(stubborn, 2)]);
    let (mut polite_done, mut stubborn_done) = (None, None);
    while polite_done.is_none() || stubborn_done.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "pods not removed in time");
        if polite_done.is_none() && h.removed("polite") {
            polite_done = Some(t0.elapsed());
        }
        if stubborn_done.is_none() && h.removed("stubborn") {
            stubborn_done = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (polite_done, stubborn_done) = (polite_done.unwrap(), stubborn_done.unwrap());
    assert!(polite_done < Duration::from_secs(5), "{polite_done:?}");
    assert!(stubborn_done >= Duration::from_millis(1900), "{stubborn_done:?}");
    assert!(stubborn_done < Duration::from_secs(10), "{stubborn_done:?}");
    assert_eq!(h.node_objects().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_new_manager_adopts() {
    let s = setup().await;
    let keep = pod("keep", vec![container("c", "ignored", sh(POLITE))]);
    let orphan = pod("orphan", vec![container("c", "ignored", sh(POLITE))]);
    let orphan_uid = orphan.metadata.uid.clone().unwrap();
    s.h.manager.sync(vec![keep.clone(), orphan]);
    let before = s.h.wait_status("keep", Duration::from_secs(20), "Ready", is_ready).await;
    s.h.wait_status("orphan", Duration::from_secs(20), "Ready", is_ready).await;
    let Setup { h, runtime, dir: _dir } = s;
    let node = h.node.clone();
    drop(h);
    let h = Harness::start(runtime.clone() as Arc<dyn Runtime>, test_config(&node)).await;
    h.manager.sync(vec![keep]);
    let after = h.wait_status("keep", Duration::from_secs(20), "Ready again", is_ready).await;
    assert_eq!(cstatus(&after, "c").container_id, cstatus(&before, "c").container_id);
    assert_eq!(cstatus(&after, "c").restart_count, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.pod_objects(&orphan_uid).await > 0 {
        assert!(Instant::now() < deadline, "orphan not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_containers_run_as_their_user_and_refuse_what_needs_a_container() {
    use k8s_openapi::api::core::v1::SecurityContext;
    let s = setup().await;
    let h = &s.h;
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let mut user =
        container("user", "ignored", sh(&format!("id -u; id -g; grep NoNewPrivs /proc/self/status; {POLITE}")));
    user.security_context = Some(SecurityContext {
        run_as_user: Some(65534),
        run_as_group: Some(65534),
        allow_privilege_escalation: Some(false),
        ..Default::default()
    });
    let mut confined = container("confined", "ignored", sh(POLITE));
    confined.security_context = Some(SecurityContext { read_only_root_filesystem: Some(true), ..Default::default() });
    let p = pod("proc-sec", vec![user, confined]);
    h.manager.sync(vec![p.clone()]);
    let config_error = |s: &k8s_openapi::api::core::v1::PodStatus, c: &str| {
        waiting_reason(cstatus(s, c)) == Some("CreateContainerConfigError")
    };
    let st = h
        .wait_status("proc-sec", Duration::from_secs(20), "user settled, confined refused", |s| {
            config_error(s, "confined") && (is_running(cstatus(s, "user")) || (!root && config_error(s, "user")))
        })
        .await;
    let msg = cstatus(&st, "confined").state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
    assert!(msg.contains("cannot honour securityContext.readOnlyRootFilesystem"), "{msg}");
    if root {
        let logs = h.logs_with_lines("proc-sec", "user", 3).await;
        let words: Vec<&str> = logs.split_whitespace().collect();
        assert_eq!(words, ["65534", "65534", "NoNewPrivs:", "1"], "{logs}");
        // A command run in the container (an exec probe, `kubectl exec`) runs as its user too.
        let id = cstatus(&st, "user").container_id.clone().unwrap();
        let id = id.strip_prefix("process://").expect("process container id").to_string();
        let r = s.runtime.exec(&id, &["id".into(), "-u".into()], Duration::from_secs(10)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&r.output).trim(), "65534");
    } else {
        eprintln!("NOTE: not root: checked only that another user is refused");
    }
    h.manager.sync(vec![deleted(p, 5)]);
    h.wait_removed("proc-sec", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pod_past_its_active_deadline_is_stopped_and_failed() {
    let s = setup().await;
    let h = &s.h;
    let mut p = pod("proc-deadline", vec![container("app", "ignored", sh(POLITE))]);
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    h.manager.sync(vec![p.clone()]);
    let started = Instant::now();
    h.wait_status("proc-deadline", Duration::from_secs(20), "Running", |s| s.phase.as_deref() == Some("Running")).await;
    let st = h
        .wait_status("proc-deadline", Duration::from_secs(20), "Failed", |s| s.phase.as_deref() == Some("Failed"))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900), "not before its deadline: {:?}", started.elapsed());
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(st.message.as_deref(), Some("Pod was active on the node longer than the specified deadline"));
    let c = cstatus(&st, "app");
    assert!(c.state.as_ref().unwrap().terminated.is_some(), "the container was stopped: {c:?}");
    assert!(!c.ready);
    let events: Vec<(String, bool)> = recorded(h, "proc-deadline").into_iter().map(|e| (e.0, e.1)).collect();
    assert!(events.contains(&("DeadlineExceeded".to_string(), true)), "{events:?}");
    // Failed for good: the policy Always does not bring it back.
    tokio::time::sleep(Duration::from_millis(600)).await; // observation window, not synchronization
    let last = h.statuses_of("proc-deadline").pop().unwrap();
    assert_eq!(last.phase.as_deref(), Some("Failed"));
    assert!(cstatus(&last, "app").state.as_ref().unwrap().terminated.is_some());
    h.manager.sync(vec![deleted(p, 5)]);
    h.wait_removed("proc-deadline", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_init_containers_run_in_order_to_success_before_the_containers() {
    let s = setup().await;
    let h = &s.h;
    let mount = || Some(vec![VolumeMount { name: "work".into(), mount_path: "/work".into(), ..Default::default() }]);
    let step = |name: &str, script: &str| {
        let mut c = container(name, "ignored", sh(script));
        c.volume_mounts = mount();
        c
    };
    let mut p = pod("proc-init", vec![step("app", &format!("cat $SKIFF_VOLUME_WORK/log; {POLITE}"))]);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![
        step("first", "sleep 0.3; echo one >> $SKIFF_VOLUME_WORK/log"),
        step("second", "echo two | tee -a $SKIFF_VOLUME_WORK/log"),
    ]);
    spec.volumes =
        Some(vec![Volume { name: "work".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
    // An init container that fails, under the policies Never and Always.
    let failing = |name: &str, policy: &str| {
        let mut p = pod(name, vec![container("app", "ignored", sh(POLITE))]);
        let spec = p.spec.as_mut().unwrap();
        spec.restart_policy = Some(policy.into());
        spec.init_containers = Some(vec![container("bad", "ignored", sh("exit 3"))]);
        p
    };
    let (never, always) = (failing("proc-init-never", "Never"), failing("proc-init-always", "Always"));
    h.manager.sync(vec![p.clone(), never.clone(), always.clone()]);

    let first_running = h
        .wait_event("proc-init", Duration::from_secs(20), "the first init container running", |s| {
            s.init_container_statuses.as_ref().is_some_and(|i| is_running(&i[0]))
        })
        .await;
    assert_eq!(first_running.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&first_running, "Initialized").as_deref(), Some("False"));
    let inits = first_running.init_container_statuses.as_ref().unwrap();
    assert_eq!(waiting_reason(&inits[1]), Some("PodInitializing"), "the second waits for the first");
    assert_eq!(waiting_reason(cstatus(&first_running, "app")), Some("PodInitializing"));

    let st = h.wait_status("proc-init", Duration::from_secs(20), "Running and Ready", is_ready).await;
    assert_eq!(condition(&st, "Initialized").as_deref(), Some("True"));
    for c in st.init_container_statuses.as_ref().unwrap() {
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap_or_else(|| panic!("{c:?}"));
        assert_eq!((t.exit_code, t.reason.as_deref(), c.restart_count), (0, Some("Completed"), 0), "{}", c.name);
    }
    let logs = h.logs_with_lines("proc-init", "app", 2).await;
    assert_eq!(logs.lines().collect::<Vec<_>>(), ["one", "two"], "in order, both before the app");
    assert_eq!(h.logs("proc-init", "second", false).await.trim(), "two", "an init container's logs are kept");

    // Never: the pod fails and its container never starts.
    let st = h
        .wait_status("proc-init-never", Duration::from_secs(20), "Failed", |s| s.phase.as_deref() == Some("Failed"))
        .await;
    assert!(cstatus(&st, "app").container_id.is_none(), "{st:?}");
    let bad = &st.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(bad.state.as_ref().unwrap().terminated.as_ref().map(|t| t.exit_code), Some(3));
    // Always: the init container is retried with backoff; the pod stays Pending meanwhile.
    let st = h
        .wait_status("proc-init-always", Duration::from_secs(20), "the init container restarted", |s| {
            s.init_container_statuses.as_ref().is_some_and(|i| i[0].restart_count >= 1)
        })
        .await;
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    assert!(cstatus(&st, "app").container_id.is_none());

    h.manager.sync(vec![deleted(p, 5), deleted(never, 5), deleted(always, 5)]);
    for name in ["proc-init", "proc-init-never", "proc-init-always"] {
        h.wait_removed(name, Duration::from_secs(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_lifecycle_hooks_run_after_start_and_before_the_stop() {
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler};
    let s = setup().await;
    let h = &s.h;
    let dir = s.dir.path().display().to_string();
    let exec = |script: String| LifecycleHandler {
        exec: Some(ExecAction { command: Some(vec!["sh".into(), "-c".into(), script]) }),
        ..Default::default()
    };
    // The stop's SIGTERM handler writes down what the preStop hook left: proof of the order.
    let mut app = container(
        "app",
        "ignored",
        sh(&format!("trap 'cat {dir}/prestop > {dir}/seen-at-term; exit 0' TERM; while :; do sleep 0.1; done")),
    );
    app.lifecycle = Some(Lifecycle {
        post_start: Some(exec(format!("echo started > {dir}/poststart"))),
        pre_stop: Some(exec(format!("sleep 0.3; echo stopping > {dir}/prestop"))),
    });
    let mut bad = container("bad", "ignored", sh(POLITE));
    bad.lifecycle = Some(Lifecycle { post_start: Some(exec("exit 7".into())), ..Default::default() });
    let mut p = pod("proc-hooks", vec![app, bad]);
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(10);
    h.manager.sync(vec![p.clone()]);

    let st = h
        .wait_status("proc-hooks", Duration::from_secs(20), "app running, bad restarted", |s| {
            is_running(cstatus(s, "app")) && cstatus(s, "bad").restart_count >= 1
        })
        .await;
    assert_eq!(std::fs::read_to_string(s.dir.path().join("poststart")).unwrap().trim(), "started");
    let failed: Vec<String> = recorded(h, "proc-hooks")
        .into_iter()
        .filter(|e| e.0 == "FailedPostStartHook")
        .map(|e| format!("{} {}", e.2, e.3))
        .collect();
    assert!(!failed.is_empty() && failed[0].starts_with("spec.containers{bad} PostStartHook failed"), "{failed:?}");
    assert_eq!(cstatus(&st, "app").restart_count, 0);

    h.manager.sync(vec![deleted(p, 10)]);
    h.wait_removed("proc-hooks", Duration::from_secs(30)).await;
    let seen = std::fs::read_to_string(s.dir.path().join("seen-at-term")).unwrap();
    assert_eq!(seen.trim(), "stopping", "the preStop hook ran to its end before SIGTERM");

    // A forced deletion (no grace) runs no hook and tells of no failure.
    let mut quick = container("quick", "ignored", sh(POLITE));
    quick.lifecycle =
        Some(Lifecycle { pre_stop: Some(exec(format!("echo ran > {dir}/forced-prestop"))), ..Default::default() });
    let q = pod("proc-hooks-forced", vec![quick]);
    h.manager.sync(vec![q.clone()]);
    h.wait_status("proc-hooks-forced", Duration::from_secs(20), "Ready", is_ready).await;
    h.manager.sync(vec![deleted(q, 0)]);
    h.wait_removed("proc-hooks-forced", Duration::from_secs(20)).await;
    assert!(!s.dir.path().join("forced-prestop").exists(), "no preStop hook on a forced deletion");
    let failed_stops =
        ["proc-hooks", "proc-hooks-forced"].iter().flat_map(|p| recorded(h, p)).any(|e| e.0 == "FailedPreStopHook");
    assert!(!failed_stops);
}
