//! End-to-end: three real `skiff server` processes on loopback, driven through the gRPC
//! client and the `skiff` CLI.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use skiff::proc_cluster::ProcCluster;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// Polls `f` until it yields `Some`, failing with `what` after `timeout`.
async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn skiff(args: &[&str]) -> (bool, String, String) {
    let out = skiff::proc_cluster::run_bounded(Command::new(bin()).args(args), b"", Duration::from_secs(120))
        .expect("run skiff");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf)).await.ok()?.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leader_under_writes_loses_no_acknowledged_write() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let mut c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    let leader = c.leader(Duration::from_secs(30)).await.unwrap();
    let client = Arc::new(c.client(Duration::from_secs(10)).unwrap());
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("value-{n}");
                if client.put(&format!("e2e/{n:06}"), v.clone().into_bytes(), None).await.is_ok() {
                    acked.lock().insert(n, v);
                }
                n += 1;
            }
        })
    };
    wait_for(Duration::from_secs(20), "50 writes before the kill", || async {
        (acked.lock().len() >= 50).then_some(())
    })
    .await;
    c.kill(leader).unwrap();
    let at_kill = acked.lock().len();
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        while acked.lock().len() < at_kill + 50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if resumed.is_err() {
        let logs: Vec<String> =
            c.members.iter().map(|m| format!("--- member {}:\n{}", m.id, c.log_tail(m.id, 40))).collect();
        panic!(
            "writes did not resume within 20s of killing leader {leader} ({} acked after the kill)\n{}",
            acked.lock().len() - at_kill,
            logs.join("\n")
        );
    }
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(15), writer).await.unwrap().unwrap();
    let new_leader = c.leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(new_leader, leader);

    // Every acknowledged write is readable (linearizable reads through the survivors).
    let acked = acked.lock().clone();
    for (n, v) in &acked {
        let (kv, _) = client.get(&format!("e2e/{n:06}"), false).await.unwrap();
        assert_eq!(kv.map(|k| k.value), Some(v.clone().into_bytes()), "acknowledged write {n} lost");
    }

    // The killed replica restarts from its data dir and catches up.
    c.restart(leader).unwrap();
    let (last_n, last_v) = acked.iter().next_back().map(|(n, v)| (*n, v.clone())).unwrap();
    let addr = c.member(leader).unwrap().grpc.clone();
    wait_for(Duration::from_secs(30), "the restarted replica to catch up", || {
        let addr = addr.clone();
        let key = format!("e2e/{last_n:06}");
        let last_v = last_v.clone();
        async move {
            let (ok, out, _) =
                skiff(&["kv", "get", "--endpoints", &addr, "--serializable", &key, "--timeout-ms", "1000"]);
            (ok && out.lines().next() == Some(last_v.as_str())).then_some(())
        }
    })
    .await;
    let s = c.status(leader).await.unwrap();
    assert_eq!(s.role, "follower");
    assert_eq!(s.members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_kv_cluster_and_health_endpoints() {
    let _deadline = skiff::proc_cluster::test_deadline();
    let mut c = ProcCluster::start(&bin(), 3, &[]).unwrap();
    c.leader(Duration::from_secs(30)).await.unwrap();
    let eps = c.endpoints().join(",");
    let ep = ["--endpoints", eps.as_str()];

    // put / get / conflict / missing key.
    let (ok, out, err) = skiff(&[&["kv", "put"][..], &ep, &["greeting", "hello"]].concat());
    assert!(ok, "put failed: {err}");
    let rev: u64 = out.trim().parse().expect("put prints the revision");
    let (ok, out, _) = skiff(&[&["kv", "get"][..], &ep, &["greeting"]].concat());
    assert!(ok);
    assert_eq!(out.lines().next(), Some("hello"));
    assert!(out.contains(&format!("revision={rev}")), "{out}");
    let stale = (rev - 1).to_string();
    let (ok, _, err) = skiff(&[&["kv", "put"][..], &ep, &["greeting", "bye", "--prev-revision", &stale]].concat());
    assert!(!ok, "a stale compare-and-set must fail");
    assert!(err.contains("conflict"), "{err}");
    let cur = rev.to_string();
    let (ok, _, err) = skiff(&[&["kv", "put"][..], &ep, &["greeting", "bye", "--prev-revision", &cur]].concat());
    assert!(ok, "{err}");
    let (ok, _, err) = skiff(&[&["kv", "get"][..], &ep, &["nope"]].concat());
    assert!(!ok && err.contains("not found"), "{err}");
    let big = "x".repeat(4000);
    let (ok, _, err) = skiff(&[&["kv", "put"][..], &ep, &[big.as_str(), "v"]].concat());
    assert!(!ok && err.contains("key is 4000 bytes"), "{err}");

    // range with limit, delete.
    for i in 0..5 {
        let k = format!("r/{i}");
        assert!(skiff(&[&["kv", "put"][..], &ep, &[k.as_str(), "v"]].concat()).0);
    }
    let (ok, out, _) = skiff(&[&["kv", "range"][..], &ep, &["r/", "--limit", "3"]].concat());
    assert!(ok);
    assert_eq!(out.lines().map(|l| l.split('\t').next().unwrap()).collect::<Vec<_>>(), ["r/0", "r/1", "r/2"]);
    let (ok, out, _) = skiff(&[&["kv", "del"][..], &ep, &["r/", "--prefix"]].concat());
    assert!(ok && out.contains("deleted=5"), "{out}");

    // watch prints PUT/DELETE lines from a revision.
    let from = (rev).to_string();
    let mut watch = tokio::process::Command::new(bin())
        .args([&["kv", "watch"][..], &ep, &["greeting", "--from-revision", &from]].concat())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(skiff(&[&["kv", "del"][..], &ep, &["greeting"]].concat()).0);
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    while got.len() < 3 {
        let l = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        got.push(l);
    }
    assert!(
        got[0].starts_with("PUT greeting ")
            && got[1].starts_with("PUT greeting ")
            && got[2].starts_with("DELETE greeting "),
        "{got:?}"
    );
    watch.kill().await.unwrap();

    // cluster status as JSON.
    let (ok, out, err) = skiff(&[&["cluster", "status"][..], &ep, &["-o", "json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["leader"].as_u64().is_some());
    assert!(v["term"].as_u64().unwrap() >= 1);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    assert!(members.iter().all(|m| m["last_applied"].as_u64().is_some() && m["addr"].is_string() && m["id"].is_u64()));

    // healthz / readyz on every replica.
    for m in &c.members {
        let (code, _) = http_get(&m.api, "/healthz").await.unwrap();
        assert_eq!(code, 200);
        let api = m.api.clone();
        wait_for(Duration::from_secs(10), "readyz", || {
            let api = api.clone();
            async move { (http_get(&api, "/readyz").await?.0 == 200).then_some(()) }
        })
        .await;
    }

    // add-member (learner → voter) and remove-member, online.
    let four = c.spawn_new_member().unwrap();
    let four_addr = c.member(four).unwrap().grpc.clone();
    let spec = format!("{four}={four_addr}");
    let (ok, _, err) = skiff(&[&["cluster", "add-member"][..], &ep, &[spec.as_str()]].concat());
    assert!(ok, "add-member: {err}");
    // add-member returns once a majority committed the change; member 4 applies it shortly after.
    wait_for(Duration::from_secs(10), "member 4 to see itself as a voter", || async {
        let s = c.status(four).await.ok()?;
        (s.role == "follower" && s.members.iter().any(|m| m.id == four && m.voter)).then_some(())
    })
    .await;
    assert!(skiff(&[&["kv", "put"][..], &ep, &["with-four", "1"]].concat()).0);
    let id = four.to_string();
    let (ok, _, err) = skiff(&[&["cluster", "remove-member"][..], &ep, &[id.as_str()]].concat());
    assert!(ok, "remove-member: {err}");
    let (ok, out, _) = skiff(&[&["cluster", "status"][..], &ep, &["-o", "json"]].concat());
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{out}");
}
