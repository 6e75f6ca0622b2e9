//! The agent gateway in-process: one replica, a raw gRPC agent stream (Hello, pod sets,
//! status writes that keep foreign conditions, in-memory heartbeats, PodRemoved).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_apiserver::{Subresource, WriteOptions};
use skiff_proto::agent::agent_gateway_client::AgentGatewayClient;
use skiff_proto::agent::{
    agent_message, gateway_message, AgentMessage, GatewayMessage, Heartbeat, Hello, PodEventBatch, PodEventRecord,
    PodRemoved, PodSet, PodStatus, PodStatusBatch,
};
use skiff_server::{Server, ServerConfig};
use skiff_store::StoreConfig;
use tokio::sync::mpsc;
use tonic::Streaming;

async fn one_replica(dir: &std::path::Path) -> Server {
    let port = skiff_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let store = StoreConfig { id: 1, addr: addr.clone(), data_dir: dir.join("r1"), ..StoreConfig::default() };
    let cfg = ServerConfig {
        store,
        grpc_listen: addr.clone(),
        api_listen: "127.0.0.1:0".into(),
        initial_cluster: Some(BTreeMap::from([(1, addr)])),
        controllers: Default::default(),
        node_port_range: 30000..=32767,
    };
    Server::start(cfg).await.unwrap()
}

/// The next pod set (service sets, which the gateway also streams, are skipped).
async fn next_set(inbound: &mut Streaming<GatewayMessage>) -> Vec<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a message within 10 s")
            .expect("no stream error")
            .expect("stream open");
        match m.msg {
            Some(gateway_message::Msg::Pods(PodSet { pods_json, .. })) => {
                return pods_json.iter().map(|p| serde_json::from_str(p).unwrap()).collect()
            }
            Some(gateway_message::Msg::Services(_)) => continue,
            other => panic!("expected a pod set, got {other:?}"),
        }
    }
}

fn msg(m: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(m) }
}

/// Opens an agent stream for `node` (Hello sent); the sender keeps it open.
async fn connect_agent(server: &Server, node: &str) -> (mpsc::Sender<AgentMessage>, Streaming<GatewayMessage>) {
    let addr = format!("http://{}", server.grpc_addr);
    let channel = tonic::transport::Endpoint::from_shared(addr).unwrap().connect().await.unwrap();
    let mut client = AgentGatewayClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    let node_json = json!({"metadata": {"name": node}, "status": {}}).to_string();
    tx.send(msg(agent_message::Msg::Hello(Hello { node_name: node.into(), node_json }))).await.unwrap();
    let inbound = client.connect(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    (tx, inbound)
}

/// Creates `obj` (in `default` when namespaced) once the replica leads and has its namespaces
/// (retried for up to 20 s).
async fn create_when_ready(server: &Server, res: &'static skiff_api::ResourceInfo, obj: Value) {
    let ns = res.namespaced.then_some("default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.objects.create(res, ns, obj.clone(), &WriteOptions::default()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no leader / namespace: {obj} not created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates Node `name` once a leader is up. Tests create it before the pods bound to it: the
/// garbage collector deletes pods bound to a node missing from the store (Kubernetes' PodGC),
/// and its sweep could otherwise come between such a pod's creation and its agent's Hello.
async fn create_node(server: &Server, name: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    create_when_ready(server, skiff_api::lookup("nodes").unwrap(), node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_registers_pushes_pods_and_writes_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = one_replica(dir.path()).await;
    let pods = skiff_api::lookup("pods").unwrap();
    let nodes = skiff_api::lookup("nodes").unwrap();
    create_node(&server, "n1").await;

    // Wait for the default namespace (bootstrap) by creating the pod.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "skiff/busybox:1"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let created = loop {
        match server.objects.create(pods, Some("default"), pod.clone(), &WriteOptions::default()).await {
            Ok(w) => break w.object,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("pod not created: {e}"),
        }
    };
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    // The API server does not take status on create: set PodScheduled as the scheduler would.
    let mut scheduled = created.clone();
    scheduled["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
    server
        .objects
        .update(pods, Some("default"), "p", scheduled, Subresource::Status, &WriteOptions::default())
        .await
        .unwrap();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentGatewayClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    let node_json = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
    .to_string();
    tx.send(msg(agent_message::Msg::Hello(Hello { node_name: "n1".into(), node_json }))).await.unwrap();
    let mut inbound = client.connect(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();

    // Registered, heard from, and the bound pod comes down.
    let node = server.objects.get(nodes, None, "n1", false).await.unwrap();
    assert_eq!(node["metadata"]["labels"]["zone"], "a");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert!(node["status"]["conditions"][0]["lastHeartbeatTime"].is_string());
    assert!(server.heartbeats.last_seen("n1").is_some());
    // The hub lists when the first agent subscribes: the first set already holds the pod.
    let set = next_set(&mut inbound).await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["metadata"]["uid"], uid.as_str());

    // Heartbeats are in memory only: no store revision is spent on them.
    let before = server.node.revision();
    let seen = server.heartbeats.last_seen("n1").unwrap();
    tx.send(msg(agent_message::Msg::Heartbeat(Heartbeat { seq: 1 }))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.heartbeats.last_seen("n1").unwrap() <= seen {
        assert!(tokio::time::Instant::now() < deadline, "heartbeat not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.node.revision(), before);

    // A status from the agent: written, PodScheduled kept. Of two statuses of one pod in a
    // batch only the later is written. Sets carry no status, so this one sends none.
    let status = |s: Value| PodStatus {
        namespace: "default".into(),
        name: "p".into(),
        uid: uid.clone(),
        status_json: s.to_string(),
    };
    let batch = PodStatusBatch {
        statuses: vec![
            status(json!({"phase": "Pending"})),
            status(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})),
        ],
        events: vec![],
    };
    tx.send(msg(agent_message::Msg::Statuses(batch))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let written = loop {
        let p = server.objects.get(pods, Some("default"), "p", false).await.unwrap();
        if p["status"]["phase"] == "Running" {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "status not written: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let types: Vec<&str> =
        written["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["PodScheduled", "Ready"]);
    // A change of the pod itself does come down, without status.
    let mut labelled = written.clone();
    labelled["metadata"]["labels"] = json!({"v": "2"});
    server
        .objects
        .update(pods, Some("default"), "p", labelled, Subresource::Main, &WriteOptions::default())
        .await
        .unwrap();
    let set = next_set(&mut inbound).await;
    assert_eq!(set[0]["metadata"]["labels"]["v"], "2", "the status write sent no set of its own");
    assert!(set[0].get("status").is_none(), "{}", set[0]);
    assert!(set[0]["metadata"].get("resourceVersion").is_none(), "{}", set[0]);

    // Events the agent records become v1 Events from kubelet on n1; a repeat raises the
    // count of the same Event; one without a reason is dropped; a long message is cut.
    let event = |reason: &str, message: &str| PodEventRecord {
        namespace: "default".into(),
        name: "p".into(),
        uid: uid.clone(),
        field_path: "spec.containers{c}".into(),
        warning: reason == "Unhealthy",
        reason: reason.into(),
        message: message.into(),
    };
    let seen_before_events = server.heartbeats.last_seen("n1").unwrap();
    let long = "x".repeat(5000);
    let events = vec![
        event("Started", "Started container c"),
        event("Unhealthy", "Readiness probe failed: no"),
        event("", "no reason"),
        event("Failed", &long),
    ];
    // As agents send them, with the statuses (here none); the repeat as agents from before
    // that sent events, alone.
    tx.send(msg(agent_message::Msg::Statuses(PodStatusBatch { statuses: vec![], events }))).await.unwrap();
    tx.send(msg(agent_message::Msg::Events(PodEventBatch {
        events: vec![event("Unhealthy", "Readiness probe failed: no")],
    })))
    .await
    .unwrap();
    let event_res = skiff_api::lookup("events").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (evs, node_evs) = loop {
        let l = server.objects.list(event_res, Some("default"), &Default::default()).await.unwrap();
        let (pod_evs, node_evs): (Vec<Value>, Vec<Value>) =
            l.items.into_iter().partition(|e| e["involvedObject"]["kind"] == "Pod");
        let unhealthy_twice = pod_evs.iter().any(|e| e["reason"] == "Unhealthy" && e["count"] == 2);
        if pod_evs.len() >= 3 && unhealthy_twice && !node_evs.is_empty() {
            break (pod_evs, node_evs);
        }
        assert!(tokio::time::Instant::now() < deadline, "events: {pod_evs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(evs.len(), 3, "{evs:?}");
    // The Node existed (no RegisteredNode) and the Hello made it Ready: one NodeReady.
    let reasons: Vec<&str> = node_evs.iter().map(|e| e["reason"].as_str().unwrap_or("")).collect();
    assert_eq!(reasons, ["NodeReady"], "{node_evs:?}");
    assert_eq!(node_evs[0]["message"], "Node n1 status is now: NodeReady");
    assert_eq!(node_evs[0]["involvedObject"]["kind"], "Node");
    assert!(
        server.heartbeats.last_seen("n1").unwrap() > seen_before_events,
        "any message from the agent shows it alive, as a heartbeat does"
    );
    for e in &evs {
        assert_eq!(e["source"]["component"], "kubelet", "{e}");
        assert_eq!(e["source"]["host"], "n1", "{e}");
        assert_eq!(e["reportingInstance"], "n1", "{e}");
        assert_eq!(e["involvedObject"]["kind"], "Pod", "{e}");
        assert_eq!(e["involvedObject"]["uid"], uid.as_str(), "{e}");
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{c}", "{e}");
        assert_eq!(e["involvedObject"]["namespace"], "default", "{e}");
        assert_eq!(e["apiVersion"], "v1", "{e}");
        assert_eq!(e["kind"], "Event", "{e}");
        // Written from its typed form: the store filled in what a create fills in.
        let m = &e["metadata"];
        assert!(m["name"].as_str().unwrap().starts_with("p."), "{e}");
        assert_eq!(m["uid"].as_str().map(str::len), Some(36), "{e}");
        assert!(m["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert!(m["resourceVersion"].as_str().is_some_and(|rv| rv.parse::<u64>().is_ok()), "{e}");
        assert!(e["firstTimestamp"].as_str().is_some() && e["lastTimestamp"].as_str().is_some(), "{e}");
        assert_eq!(e["reportingComponent"], "kubelet", "{e}");
    }
    let by = |r: &str| evs.iter().find(|e| e["reason"] == r).unwrap_or_else(|| panic!("no {r}: {evs:?}"));
    assert_eq!(by("Started")["type"], "Normal");
    assert_eq!(by("Unhealthy")["type"], "Warning");
    assert_eq!(by("Failed")["message"].as_str().unwrap().len(), 1024);

    // PodRemoved with a stale uid deletes nothing; with the right uid the pod goes.
    let removed = |uid: &str| {
        msg(agent_message::Msg::Removed(PodRemoved { namespace: "default".into(), name: "p".into(), uid: uid.into() }))
    };
    tx.send(removed("not-the-uid")).await.unwrap();
    tx.send(removed(&uid)).await.unwrap();
    let set = next_set(&mut inbound).await;
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(server.objects.get(pods, Some("default"), "p", false).await.unwrap_err().code(), 404);

    drop(tx);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_reads_does_not_stall_writes_or_other_agents() {
    let dir = tempfile::tempdir().unwrap();
    let server = one_replica(dir.path()).await;
    let pods = skiff_api::lookup("pods").unwrap();
    let pod = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "skiff/busybox:1",
                     "env": [{"name": "PAD", "value": "x".repeat(4096)}]}]}})
    };
    create_node(&server, "slow").await;
    create_node(&server, "fast").await;
    create_when_ready(&server, pods, pod("first", "slow")).await;
    let connect = |node: &'static str| connect_agent(&server, node);
    // The slow agent never reads: its pod sets (each ~4 KiB per pod) pile up nowhere.
    let (_slow_tx, _slow_inbound) = connect("slow").await;
    let (_fast_tx, mut fast) = connect("fast").await;
    assert!(next_set(&mut fast).await.is_empty());
    let started = std::time::Instant::now();
    for i in 0..150 {
        server
            .objects
            .create(pods, Some("default"), pod(&format!("s{i}"), "slow"), &WriteOptions::default())
            .await
            .unwrap();
    }
    server.objects.create(pods, Some("default"), pod("f", "fast"), &WriteOptions::default()).await.unwrap();
    let set = next_set(&mut fast).await;
    assert_eq!(set.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(30), "writes stalled: {:?}", started.elapsed());
    server.shutdown().await;
}

/// The pod hub watches only while agents are subscribed: a replica no agent streams to (a
/// follower) does not decode every pod change; the first subscriber gets the listed set, and
/// after the idle time without subscribers the hub stops until the next one, which again gets
/// a full, current set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_hub_watches_only_while_agents_are_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let server = one_replica(dir.path()).await;
    let pods = skiff_api::lookup("pods").unwrap();
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "skiff/busybox:1"}]}})
    };
    create_node(&server, "n1").await;
    create_when_ready(&server, pods, pod("a")).await;
    assert!(!server.pod_hub.is_watching(), "no agent connected: the gateway's hub must not watch");

    let hub = skiff_server::hub::PodHub::start_with_idle(server.objects.clone(), Duration::from_millis(300));
    let wait = |what: &'static str, want: bool| {
        let hub = hub.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while hub.is_watching() != want {
                assert!(tokio::time::Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let names = |set: &PodSet| {
        let mut n: Vec<String> = set
            .pods_json
            .iter()
            .map(|p| serde_json::from_str::<Value>(p).unwrap()["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let next = |rx: &mut tokio::sync::watch::Receiver<Option<PodSet>>| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some)).await.expect("a set").unwrap();
            let set = rx.borrow_and_update().clone().unwrap();
            set
        }
    };
    assert!(!hub.is_watching());
    let mut rx = hub.subscribe("n1");
    assert_eq!(names(&next(&mut rx).await), ["a"]);
    assert!(hub.is_watching());
    drop(rx);
    wait("the hub still watches with nobody subscribed", false).await;

    // Changes while idle are in the next subscriber's first set.
    server.objects.create(pods, Some("default"), pod("b"), &WriteOptions::default()).await.unwrap();
    let mut rx = hub.subscribe("n1");
    assert_eq!(names(&next(&mut rx).await), ["a", "b"]);
    // And changes while subscribed come as new sets.
    rx.mark_unchanged();
    server.objects.create(pods, Some("default"), pod("c"), &WriteOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::timeout_at(deadline, rx.changed()).await.expect("a set with pod c").unwrap();
        let set = rx.borrow_and_update().clone().unwrap();
        if names(&set) == ["a", "b", "c"] {
            break;
        }
    }
    assert!(hub.is_watching());
    server.shutdown().await;
}

/// A new agent stream gets the service set before its first pod set (pods take the variables
/// of the Services that exist when they start), and the service hub, like the pod hub, lists
/// only once an agent subscribes and stops after the idle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_come_before_the_first_pod_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = one_replica(dir.path()).await;
    let services = skiff_api::lookup("services").unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    create_when_ready(&server, services, svc).await;
    for _ in 0..3 {
        let (tx, mut inbound) = connect_agent(&server, "n1").await;
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        match first.msg {
            Some(gateway_message::Msg::Services(set)) => {
                assert_eq!(set.services_json.len(), 1, "{:?}", set.services_json);
                assert!(set.services_json[0].contains("\"web\""));
            }
            other => panic!("expected the service set first, got {other:?}"),
        }
        assert!(next_set(&mut inbound).await.is_empty());
        drop(tx);
    }

    let hub = skiff_server::hub::ServiceHub::start_with_idle(server.objects.clone(), Duration::from_millis(300));
    assert!(!hub.is_watching(), "no subscriber yet");
    let mut rx = hub.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some)).await.expect("a set").unwrap();
    assert!(hub.is_watching());
    drop(rx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.is_watching() {
        assert!(tokio::time::Instant::now() < deadline, "the service hub still watches with nobody subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

/// openraft 0.9 drops an AppendEntries that outlives the heartbeat interval, which resets its
/// HTTP/2 stream; on a saturated machine the server has often not accepted the stream yet. h2
/// closes a connection after 20 such resets by default (GOAWAY), which took every Raft RPC on
/// it down with it and set off elections. The cluster's gRPC port allows many more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connection_survives_streams_reset_before_the_server_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = one_replica(dir.path()).await;
    let tcp = tokio::net::TcpStream::connect(server.grpc_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = || {
        http::Request::post(format!("http://{}/skiff.v1.Cluster/Status", server.grpc_addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    // Opened and reset without yielding: the frames leave together, so the server reads all
    // of them before it accepts any of the streams.
    for _ in 0..100 {
        let (_response, mut body) = client.send_request(request(), false).unwrap();
        body.send_reset(h2::Reason::CANCEL);
    }
    // The same connection still answers: a StatusRequest with no fields is 5 bytes of gRPC
    // framing (not compressed, length 0).
    let mut client = tokio::time::timeout(Duration::from_secs(10), client.ready())
        .await
        .expect("the connection is ready again within 10 s")
        .expect("the server kept the connection open");
    let (response, mut body) = client.send_request(request(), false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer within 10 s")
        .expect("the server kept the connection open");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
    assert!(!connection.is_finished(), "the connection is still open");
}
