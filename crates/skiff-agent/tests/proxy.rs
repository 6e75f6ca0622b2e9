//! The service proxy against real loopback TCP backends that answer with their name, then echo.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_agent::proxy::{ProxyConfig, ProxyMode, ServiceProxy};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A backend: greets every connection with `<name>\n`, then echoes lines until EOF.
struct Backend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (r, mut w) = sock.split();
                if w.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend { addr, task }
}

/// A loopback port nobody listens on (connections are refused).
async fn dead_port() -> u16 {
    skiff_testkit::free_port()
}

fn service(name: &str, node_port: u16) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": node_port}]}})
}

/// Endpoints of `name` with `ready` and `not_ready` loopback ports (each address is 127.0.0.1 on its
/// own port, so every backend gets its own subset).
fn endpoints(name: &str, ready: &[u16], not_ready: &[u16]) -> Value {
    let mut subsets = Vec::new();
    for p in ready {
        subsets.push(json!({"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": p}]}));
    }
    for p in not_ready {
        subsets.push(json!({"notReadyAddresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": p}]}));
    }
    json!({"metadata": {"name": name, "namespace": "default"}, "subsets": subsets})
}

fn proxy() -> ServiceProxy {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("skiff_agent=debug").try_init();
    ServiceProxy::new(ProxyConfig {
        bind_address: LOCALHOST,
        connect_timeout: Duration::from_millis(500),
        ..ProxyConfig::default()
    })
}

/// A free loopback port for a node port (the proxy binds it right after; no other test's
/// connection takes it meanwhile).
async fn free_port() -> u16 {
    skiff_testkit::free_port()
}

/// One open connection through the proxy, with the greeting already read.
struct Conn {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
    greeting: String,
}

async fn connect(port: u16) -> std::io::Result<Conn> {
    connect_at(LOCALHOST, port).await
}

async fn connect_at(ip: IpAddr, port: u16) -> std::io::Result<Conn> {
    let sock = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((ip, port))).await??;
    let (r, w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await??
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before greeting"))?;
    Ok(Conn { lines, w, greeting })
}

impl Conn {
    async fn echo(&mut self, msg: &str) -> String {
        self.w.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await.unwrap().unwrap().unwrap()
    }
}

async fn who(port: u16) -> String {
    connect(port).await.expect("request through the proxy").greeting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_reaches_every_ready_backend() {
    let (a, b, c, unready) = (backend("a").await, backend("b").await, backend("c").await, backend("unready").await);
    let p = proxy();
    let port = free_port().await;
    let svcs = [service("web", port)];
    let eps = [endpoints("web", &[a.addr.port(), b.addr.port(), c.addr.port()], &[unready.addr.port()])];
    assert!(p.sync(&svcs, &eps).is_empty());
    assert_eq!(p.node_ports(), [port]);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(who(port).await);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "a", "b", "b", "c", "c"], "round-robin over ready backends only: {seen:?}");
    // Syncing the same set again changes nothing and keeps serving.
    assert!(p.sync(&svcs, &eps).is_empty());
    assert_eq!(who(port).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_skipped_without_failing_requests() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dead = dead_port().await;
    let p = proxy();
    let port = free_port().await;
    assert!(p
        .sync(&[service("web", port)], &[endpoints("web", &[a.addr.port(), dead, b.addr.port()], &[])])
        .is_empty());
    for i in 0..12 {
        let name = who(port).await;
        assert!(name == "a" || name == "b", "request {i} answered by {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_are_followed_and_old_connections_survive() {
    let (a, b) = (backend("a").await, backend("b").await);
    let p = proxy();
    let port = free_port().await;
    let svcs = [service("web", port)];
    p.sync(&svcs, &[endpoints("web", &[a.addr.port()], &[])]);
    let mut long_lived = connect(port).await.unwrap();
    assert_eq!(long_lived.greeting, "a");

    // a leaves the endpoints (e.g. its pod is terminating), b joins.
    p.sync(&svcs, &[endpoints("web", &[b.addr.port()], &[])]);
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(who(port).await, "b", "new connections go to the new set");
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The established connection to a is kept until it finishes.
    assert_eq!(long_lived.echo("still there").await, "still there");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(long_lived.echo("and later").await, "and later");

    // No ready endpoints: connections are accepted and closed, never hang.
    p.sync(&svcs, &[endpoints("web", &[], &[a.addr.port()])]);
    assert!(connect(port).await.is_err());
    assert_eq!(long_lived.echo("still").await, "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_is_closed_when_the_service_goes() {
    let a = backend("a").await;
    let p = proxy();
    let (port1, port2) = (free_port().await, free_port().await);
    let mut svc = service("web", port1);
    svc["spec"]["ports"].as_array_mut().unwrap().push(json!({"name": "alt", "port": 81, "nodePort": port2}));
    let ep = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
        "ports": [{"name": "http", "port": a.addr.port()}, {"name": "alt", "port": a.addr.port()}]}]});
    assert!(p.sync(std::slice::from_ref(&svc), std::slice::from_ref(&ep)).is_empty());
    let mut open = connect(port1).await.unwrap();
    assert_eq!(who(port2).await, "a");

    // The second port is removed from the Service, then the whole Service.
    let mut one_port = svc.clone();
    one_port["spec"]["ports"].as_array_mut().unwrap().pop();
    p.sync(&[one_port], std::slice::from_ref(&ep));
    assert_eq!(p.node_ports(), [port1]);
    wait_refused(port2).await;
    assert_eq!(who(port1).await, "a");
    p.sync(&[], &[ep]);
    assert!(p.node_ports().is_empty());
    wait_refused(port1).await;
    assert_eq!(open.echo("bye").await, "bye", "connections in progress outlive their listener");
}

/// Poll until connecting to `port` is refused (the listener task is aborted asynchronously).
async fn wait_refused(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect((LOCALHOST, port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => {
                assert!(Instant::now() < deadline, "port {port} still open: {other:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_port_is_reported_and_retried() {
    let a = backend("a").await;
    let squatter = std::net::TcpListener::bind((LOCALHOST, free_port().await)).unwrap();
    let port = squatter.local_addr().unwrap().port();
    let p = proxy();
    let svcs = [service("web", port)];
    let eps = [endpoints("web", &[a.addr.port()], &[])];
    let errors = p.sync(&svcs, &eps);
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].node_port, errors[0].service.as_str()), (port, "default/web"));
    drop(squatter);
    assert!(p.sync(&svcs, &eps).is_empty());
    assert_eq!(who(port).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_are_bounded() {
    let a = backend("a").await;
    let p = ServiceProxy::new(ProxyConfig { bind_address: LOCALHOST, max_connections: 2, ..ProxyConfig::default() });
    let port = free_port().await;
    p.sync(&[service("web", port)], &[endpoints("web", &[a.addr.port()], &[])]);
    let first = connect(port).await.unwrap();
    let _second = connect(port).await.unwrap();
    // The third client waits in the backlog (not refused, not reset) until a slot frees up.
    let third = TcpStream::connect((LOCALHOST, port)).await.unwrap();
    let mut lines = BufReader::new(third).lines();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await.is_err(),
        "third connection served beyond the bound"
    );
    drop(first);
    let greeting = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await.unwrap().unwrap();
    assert_eq!(greeting.as_deref(), Some("a"));
}

/// The iptables mode needs root and `iptables`; CI has both. Elsewhere set
/// `SKIFF_SKIP_IPTABLES_TESTS=1` to skip, rather than have the test pass vacuously.
fn iptables_available() -> bool {
    if std::env::var("SKIFF_SKIP_IPTABLES_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIFF_SKIP_IPTABLES_TESTS=1: skipping the iptables proxy test");
        return false;
    }
    let out = std::process::Command::new("iptables").args(["-t", "nat", "-S"]).output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "iptables -t nat -S failed ({out:?}): the iptables proxy test needs root and iptables \
         (set SKIFF_SKIP_IPTABLES_TESTS=1 to skip it)"
    );
    true
}

fn nat_rules() -> String {
    let out = std::process::Command::new("iptables").args(["-t", "nat", "-S"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An iptables-mode proxy on `ip` for a node named after `node` and this process, and its
/// chain tag.
fn iptables_proxy(node: &str, ip: IpAddr) -> (ServiceProxy, String) {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("skiff_agent=debug").try_init();
    let node = format!("{node}-{}", std::process::id());
    let tag = skiff_agent::proxy::iptables::tag(&node, ip);
    let p = ServiceProxy::new(ProxyConfig {
        mode: ProxyMode::Iptables,
        node_name: node,
        bind_address: ip,
        ..ProxyConfig::default()
    });
    (p, tag)
}

/// Rules load asynchronously: wait until the kernel has the last synced set.
async fn wait_loaded(p: &ServiceProxy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.is_synced() {
        assert!(Instant::now() < deadline, "iptables rules not loaded within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_forwards_round_robin_follows_changes_and_cleans_up() {
    if !iptables_available() {
        return;
    }
    let (a, b, c, unready) = (backend("a").await, backend("b").await, backend("c").await, backend("unready").await);
    // A loopback address of its own: the rules match it, and nothing listens there.
    let ip: IpAddr = "127.0.0.77".parse().unwrap();
    let (p, tag) = iptables_proxy("iptables-test", ip);
    let port = free_port().await;
    let svcs = [service("web", port)];
    let eps = [endpoints("web", &[a.addr.port(), b.addr.port(), c.addr.port()], &[unready.addr.port()])];
    assert!(p.sync(&svcs, &eps).is_empty());
    assert_eq!(p.node_ports(), [port]);
    wait_loaded(&p).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(connect_at(ip, port).await.expect("request through the node port").greeting);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "a", "b", "b", "c", "c"], "round-robin over ready backends only: {seen:?}");

    // a leaves, b stays: new connections follow; the established one to a is kept (conntrack).
    let mut long_lived = loop {
        let conn = connect_at(ip, port).await.unwrap();
        if conn.greeting == "a" {
            break conn;
        }
    };
    p.sync(&svcs, &[endpoints("web", &[b.addr.port()], &[a.addr.port()])]);
    wait_loaded(&p).await;
    for _ in 0..5 {
        assert_eq!(connect_at(ip, port).await.unwrap().greeting, "b");
    }
    assert_eq!(long_lived.echo("still there").await, "still there");

    // No ready endpoints: the port is not forwarded, so connections are refused.
    p.sync(&svcs, &[endpoints("web", &[], &[b.addr.port()])]);
    wait_loaded(&p).await;
    let refused = TcpStream::connect((ip, port)).await;
    assert!(refused.is_err(), "{ip}:{port} still forwarded without ready endpoints");
    assert_eq!(long_lived.echo("and later").await, "and later");

    // Dropping the proxy removes every chain of this agent and the jumps to them.
    assert!(nat_rules().contains(&format!("SKIFF-NP-{tag}")));
    drop(p);
    let rules = nat_rules();
    assert!(!rules.contains(&tag), "rules left behind:\n{rules}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_sends_a_refused_connection_to_another_endpoint() {
    if !iptables_available() {
        return;
    }
    let (a, b) = (backend("a").await, backend("b").await);
    let dead = dead_port().await;
    let ip: IpAddr = "127.0.0.78".parse().unwrap();
    let (p, tag) = iptables_proxy("iptables-refusals", ip);
    let port = free_port().await;
    let svcs = [service("web", port)];
    assert!(p.sync(&svcs, &[endpoints("web", &[a.addr.port(), dead, b.addr.port()], &[])]).is_empty());
    wait_loaded(&p).await;
    // Every connection is answered: the one the kernel sends to the refusing endpoint is
    // retried (its client retransmits its SYN a second later) and goes elsewhere.
    let started = Instant::now();
    let mut seen = Vec::new();
    for i in 0..9 {
        let name =
            connect_at(ip, port).await.unwrap_or_else(|e| panic!("connection {i} through the node port: {e}")).greeting;
        assert!(name == "a" || name == "b", "connection {i} answered by {name}");
        seen.push(name);
    }
    assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()), "{seen:?}");
    // The refusing endpoint left the rules after its first refusal: at most one connection
    // waited for a retransmission (generous bound: 2 of them).
    assert!(started.elapsed() < Duration::from_millis(2500), "9 connections took {:?}", started.elapsed());

    // Once it accepts connections it is back in the rules (the agent connects every second).
    let late = TcpListener::bind((LOCALHOST, dead)).await.unwrap();
    let late_task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = late.accept().await {
            let _ = sock.write_all(b"late\n").await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if connect_at(ip, port).await.expect("connection through the node port").greeting == "late" {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint that accepts again never got a connection");
    }
    late_task.abort();
    let _ = late_task.await;

    // The only endpoint refuses: nothing to retry, so its client is refused at once.
    p.sync(&svcs, &[endpoints("web", &[dead], &[])]);
    wait_loaded(&p).await;
    let t = Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((ip, port))).await.unwrap();
    assert_eq!(refused.map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(t.elapsed() < Duration::from_millis(900), "refusal took {:?}", t.elapsed());

    drop(p);
    let mangle = String::from_utf8_lossy(
        &std::process::Command::new("iptables").args(["-t", "mangle", "-S"]).output().unwrap().stdout,
    )
    .into_owned();
    assert!(!mangle.contains(&tag), "mangle rules left behind:\n{mangle}");
}
