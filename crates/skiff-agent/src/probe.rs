//! Liveness, readiness and startup probes: Kubernetes defaults, threshold logic, and the httpGet/tcpSocket/exec checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::runtime::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    Exec(Vec<String>),
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// A probe this agent cannot run (gRPC, unresolvable named port): it always fails with the message.
    Unsupported(String),
}

/// A probe with Kubernetes defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// `probe.terminationGracePeriodSeconds`, overriding the pod's on a liveness/startup kill.
    pub termination_grace: Option<Duration>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    let v = v.filter(|v| *v >= min).unwrap_or(default);
    Duration::from_secs(u64::try_from(v).unwrap_or(0))
}

fn count(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v >= 1).unwrap_or(default)
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("named port {name:?} not found in the container's ports")),
        },
    }
}

impl ProbeSettings {
    /// Kubernetes defaults: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
    /// successThreshold 1 (always 1 for liveness and startup), failureThreshold 3.
    pub fn from_k8s(kind: ProbeKind, probe: &Probe, ports: &[ContainerPort]) -> Self {
        let action = if let Some(exec) = &probe.exec {
            ProbeAction::Exec(exec.command.clone().unwrap_or_default())
        } else if let Some(http) = &probe.http_get {
            match resolve_port(&http.port, ports) {
                Ok(port) => ProbeAction::Http {
                    host: http.host.clone().filter(|h| !h.is_empty()),
                    port,
                    path: http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
                    https: http.scheme.as_deref() == Some("HTTPS"),
                    headers: http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
                },
                Err(e) => ProbeAction::Unsupported(e),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            match resolve_port(&tcp.port, ports) {
                Ok(port) => ProbeAction::Tcp { host: tcp.host.clone().filter(|h| !h.is_empty()), port },
                Err(e) => ProbeAction::Unsupported(e),
            }
        } else if probe.grpc.is_some() {
            ProbeAction::Unsupported("gRPC probes are not supported by this agent".into())
        } else {
            ProbeAction::Unsupported("probe has no handler".into())
        };
        let success_threshold = match kind {
            ProbeKind::Readiness => count(probe.success_threshold, 1),
            _ => 1,
        };
        ProbeSettings {
            action,
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold,
            failure_threshold: count(probe.failure_threshold, 3),
            termination_grace: probe
                .termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// The result of a probe after thresholds, as the kubelet's prober worker keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTracker {
    success_threshold: u32,
    failure_threshold: u32,
    /// Current result: `None` until decided (startup probes start undecided).
    result: Option<bool>,
    last_raw: Option<bool>,
    run: u32,
}

impl ProbeTracker {
    /// Liveness starts as success, readiness as failure, startup undecided.
    pub fn new(kind: ProbeKind, settings: &ProbeSettings) -> Self {
        let result = match kind {
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
            ProbeKind::Startup => None,
        };
        ProbeTracker {
            success_threshold: settings.success_threshold,
            failure_threshold: settings.failure_threshold,
            result,
            last_raw: None,
            run: 0,
        }
    }

    /// Record one raw check; the result flips only after `successThreshold` consecutive
    /// successes or `failureThreshold` consecutive failures. Returns the (possibly new) result.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if self.last_raw == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_raw = Some(success);
            self.run = 1;
        }
        let threshold = if success { self.success_threshold } else { self.failure_threshold };
        if self.run >= threshold {
            self.result = Some(success);
        }
        self.result
    }

    pub fn result(&self) -> Option<bool> {
        self.result
    }
}

/// What a prober task publishes to the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    pub result: Option<bool>,
    /// The last check's failure message, if it failed.
    pub message: Option<String>,
    /// The most recent failed check's message, kept after later checks succeed: what an
    /// `Unhealthy` event reports for a failure its owner looks at only after a success.
    pub last_failure: Option<String>,
    /// Checks failed so far.
    pub failures: u64,
}

/// A running prober task; dropping it stops the task.
pub struct Prober {
    pub kind: ProbeKind,
    pub settings: ProbeSettings,
    /// `ProbeState::failures` already reported (as `Unhealthy` events) by the owner.
    pub reported_failures: u64,
    state: Arc<Mutex<ProbeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prober {
    /// Start probing container `container_id` at `pod_ip`; `wake` is notified when the result changes.
    pub fn spawn(
        kind: ProbeKind,
        settings: ProbeSettings,
        runtime: Arc<dyn Runtime>,
        container_id: String,
        pod_ip: String,
        wake: Arc<Notify>,
    ) -> Self {
        let mut tracker = ProbeTracker::new(kind, &settings);
        let state = Arc::new(Mutex::new(ProbeState {
            result: tracker.result(),
            message: None,
            last_failure: None,
            failures: 0,
        }));
        let shared = state.clone();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(s.initial_delay).await;
            let mut tick = tokio::time::interval(s.period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let outcome = check(&s.action, runtime.as_ref(), &container_id, &pod_ip, s.timeout).await;
                let result = tracker.record(outcome.is_ok());
                let changed = {
                    let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let failures = st.failures + u64::from(outcome.is_err());
                    let last_failure = outcome.as_ref().err().cloned().or_else(|| st.last_failure.take());
                    let next = ProbeState { result, message: outcome.err(), last_failure, failures };
                    let changed = st.result != next.result;
                    *st = next;
                    changed
                };
                if changed {
                    tracing::debug!(?kind, container_id, ?result, "probe result changed");
                    wake.notify_one();
                }
            }
        });
        Prober { kind, settings, reported_failures: 0, state, task }
    }

    pub fn state(&self) -> ProbeState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Run one check; `Err` carries the failure message.
pub async fn check(
    action: &ProbeAction,
    runtime: &dyn Runtime,
    container_id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::Exec(cmd) => match runtime.exec(container_id, cmd, timeout).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => Err(format!(
                "command {cmd:?} exited with {}: {}",
                r.exit_code,
                String::from_utf8_lossy(&r.output).trim()
            )),
            Err(e) => Err(format!("exec {cmd:?}: {e}")),
        },
        ProbeAction::Tcp { host, port } => {
            let addr = format!("{}:{port}", host.as_deref().unwrap_or(pod_ip));
            match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: timeout after {timeout:?}")),
            }
        }
        ProbeAction::Http { host, port, path, https, headers } => {
            if *https {
                return Err("HTTPS probes are not supported by this agent".into());
            }
            let host = host.as_deref().unwrap_or(pod_ip);
            match tokio::time::timeout(timeout, http_get(host, *port, path, headers)).await {
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
                Ok(Err(e)) => Err(format!("Get \"http://{host}:{port}{path}\": {e}")),
                Err(_) => Err(format!("Get \"http://{host}:{port}{path}\": timeout after {timeout:?}")),
            }
        }
        ProbeAction::Unsupported(msg) => Err(msg.clone()),
    }
}

/// A lifecycle hook (`postStart`, `preStop`) as kubelet runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// `exec` or `httpGet`, run as a probe's check is.
    Check(ProbeAction),
    /// `sleep`.
    Sleep(Duration),
}

/// The hook of handler `h`; `None` for a `tcpSocket` one, which kubelet accepts (for
/// backward compatibility) and does not run, or for an empty one.
pub fn hook_action(h: &LifecycleHandler, ports: &[ContainerPort]) -> Option<HookAction> {
    if let Some(exec) = &h.exec {
        return Some(HookAction::Check(ProbeAction::Exec(exec.command.clone().unwrap_or_default())));
    }
    if let Some(s) = &h.sleep {
        return Some(HookAction::Sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))));
    }
    let http = h.http_get.as_ref()?;
    let probe = Probe { http_get: Some(http.clone()), ..Default::default() };
    Some(HookAction::Check(ProbeSettings::from_k8s(ProbeKind::Liveness, &probe, ports).action))
}

/// Run a hook within `timeout`; `Err` carries why it failed.
pub async fn run_hook(
    hook: &HookAction,
    runtime: &dyn Runtime,
    container_id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    match hook {
        HookAction::Sleep(d) => {
            tokio::time::sleep((*d).min(timeout)).await;
            Ok(())
        }
        HookAction::Check(action) => {
            match tokio::time::timeout(timeout, check(action, runtime, container_id, pod_ip, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {timeout:?}")),
            }
        }
    }
}

/// A minimal HTTP/1.1 GET returning the status code.
async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((host, port)).await?;
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("user-agent")) {
        req.push_str("User-Agent: kube-probe/1.32\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Accept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    // Only the status line is needed.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response"))?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};

    fn probe() -> Probe {
        Probe { exec: Some(ExecAction { command: Some(vec!["true".into()]) }), ..Default::default() }
    }

    #[test]
    fn defaults() {
        let s = ProbeSettings::from_k8s(ProbeKind::Readiness, &probe(), &[]);
        assert_eq!(s.initial_delay, Duration::ZERO);
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.success_threshold, 1);
        assert_eq!(s.failure_threshold, 3);
        let p = Probe { success_threshold: Some(3), period_seconds: Some(0), ..probe() };
        let live = ProbeSettings::from_k8s(ProbeKind::Liveness, &p, &[]);
        assert_eq!(live.success_threshold, 1, "liveness successThreshold is always 1");
        assert_eq!(live.period, Duration::from_secs(10));
        assert_eq!(ProbeSettings::from_k8s(ProbeKind::Readiness, &p, &[]).success_threshold, 3);
    }

    #[test]
    fn named_port() {
        let p = Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::String("web".into()), host: None }),
            ..Default::default()
        };
        let ports = [ContainerPort { name: Some("web".into()), container_port: 8080, ..Default::default() }];
        let s = ProbeSettings::from_k8s(ProbeKind::Liveness, &p, &ports);
        assert_eq!(s.action, ProbeAction::Tcp { host: None, port: 8080 });
        let s = ProbeSettings::from_k8s(ProbeKind::Liveness, &p, &[]);
        assert!(matches!(s.action, ProbeAction::Unsupported(_)));
    }

    #[test]
    fn liveness_thresholds() {
        let s = ProbeSettings::from_k8s(ProbeKind::Liveness, &probe(), &[]);
        let mut t = ProbeTracker::new(ProbeKind::Liveness, &s);
        assert_eq!(t.result(), Some(true));
        assert_eq!(t.record(false), Some(true));
        assert_eq!(t.record(false), Some(true));
        assert_eq!(t.record(true), Some(true), "a success breaks the failure run");
        assert_eq!(t.record(false), Some(true));
        assert_eq!(t.record(false), Some(true));
        assert_eq!(t.record(false), Some(false), "third consecutive failure");
        assert_eq!(t.record(true), Some(true));
    }

    #[test]
    fn readiness_thresholds() {
        let p = Probe { success_threshold: Some(2), failure_threshold: Some(1), ..probe() };
        let s = ProbeSettings::from_k8s(ProbeKind::Readiness, &p, &[]);
        let mut t = ProbeTracker::new(ProbeKind::Readiness, &s);
        assert_eq!(t.result(), Some(false));
        assert_eq!(t.record(true), Some(false));
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), Some(false), "failureThreshold 1");
        assert_eq!(t.record(true), Some(false));
    }

    #[test]
    fn startup_undecided_until_threshold() {
        let p = Probe { failure_threshold: Some(2), ..probe() };
        let s = ProbeSettings::from_k8s(ProbeKind::Startup, &p, &[]);
        let mut t = ProbeTracker::new(ProbeKind::Startup, &s);
        assert_eq!(t.result(), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        let mut t = ProbeTracker::new(ProbeKind::Startup, &s);
        assert_eq!(t.record(true), Some(true));
    }

    /// An HTTP server on a loopback port that answers its first request with `first` and every
    /// later one with `then` (status lines such as `200 OK`); returns the port.
    async fn http_server(first: &'static str, then: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut code = first;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
                code = then;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_and_tcp_checks() {
        let port = http_server("200 OK", "500 Internal Server Error").await;
        let rt = crate::runtime::FakeRuntime::new();
        let http = ProbeAction::Http { host: None, port, path: "/".into(), https: false, headers: vec![] };
        let t = Duration::from_secs(2);
        assert_eq!(check(&http, &rt, "x", "127.0.0.1", t).await, Ok(()));
        let err = check(&http, &rt, "x", "127.0.0.1", t).await.unwrap_err();
        assert!(err.contains("500"), "{err}");
        assert_eq!(check(&ProbeAction::Tcp { host: None, port }, &rt, "x", "127.0.0.1", t).await, Ok(()));
        // A port nobody listens on (bound then dropped).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(check(&ProbeAction::Tcp { host: None, port: closed }, &rt, "x", "127.0.0.1", t).await.is_err());
    }

    /// A check that failed and was followed by a success before anyone looked still says why
    /// it failed (the `Unhealthy` event's message), while `message` is the last check's.
    #[tokio::test]
    async fn a_failure_keeps_its_message_after_a_success() {
        let port = http_server("503 Service Unavailable", "200 OK").await;
        let settings = ProbeSettings {
            action: ProbeAction::Http { host: None, port, path: "/".into(), https: false, headers: vec![] },
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 1,
            termination_grace: None,
        };
        let rt: Arc<dyn Runtime> = Arc::new(crate::runtime::FakeRuntime::new());
        let prober =
            Prober::spawn(ProbeKind::Readiness, settings, rt, "x".into(), "127.0.0.1".into(), Arc::new(Notify::new()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = prober.state();
            if st.failures == 1 && st.result == Some(true) {
                break st;
            }
            assert!(std::time::Instant::now() < deadline, "no failure then success: {st:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(st.message, None, "the last check succeeded");
        assert_eq!(st.last_failure.as_deref(), Some("HTTP probe failed with statuscode: 503"));
    }
}
