//! In-process 3-replica clusters over the fault-injecting transport.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{fast_config, wait_for, TestCluster};
use skiff_store::{Compare, EventKind, Op, OpResult, StoreConfig, StoreError, Txn, MAX_VALUE_BYTES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_replica_replicate_everywhere() {
    let c = TestCluster::start(3, fast_config()).await;
    let leader = c.leader().await;
    for (i, n) in c.nodes.values().enumerate() {
        let rev = n.put(format!("k{i}"), format!("v{i}")).await.unwrap();
        assert!(rev > i as u64);
    }
    c.converged().await;
    for n in c.nodes.values() {
        for i in 0..3 {
            let (kv, _) = n.get(&format!("k{i}"), false).await.unwrap();
            assert_eq!(kv.unwrap().value, format!("v{i}").into_bytes(), "linearizable read on {}", n.id());
        }
    }
    // Revisions are identical on every replica and strictly increasing per write.
    let revs: Vec<u64> = c.nodes.values().map(|n| n.revision()).collect();
    assert_eq!(revs, vec![3, 3, 3], "leader was {leader}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, fast_config()).await;
    let first = c.leader().await;
    let mut acked = BTreeMap::new();
    let mut i = 0u64;
    // Write through a follower so the writer survives the leader's death.
    let follower = *c.nodes.keys().find(|id| **id != first).unwrap();
    while i < 30 {
        let n = c.node(follower);
        if n.put(format!("w/{i}"), i.to_string()).await.is_ok() {
            acked.insert(i, i.to_string());
        }
        i += 1;
    }
    c.kill(first).await;
    while i < 60 {
        if c.node(follower).put(format!("w/{i}"), i.to_string()).await.is_ok() {
            acked.insert(i, i.to_string());
        }
        i += 1;
    }
    let second = c.leader().await;
    assert_ne!(second, first, "a new leader must be elected");
    assert!(acked.len() >= 55, "writes must resume after the election, acked {}", acked.len());
    for n in c.nodes.values() {
        for (k, v) in &acked {
            let (kv, _) = n.get(&format!("w/{k}"), false).await.unwrap();
            assert_eq!(kv.map(|kv| kv.value), Some(v.clone().into_bytes()), "acked write w/{k} lost on {}", n.id());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_cannot_commit_and_heals() {
    let cfg = StoreConfig { request_timeout_ms: 1_000, ..fast_config() };
    let mut c = TestCluster::start(3, cfg).await;
    let old = c.leader().await;
    c.node(old).put("before", "1").await.unwrap();
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != old).collect();
    c.router.partition(&[&[old], &others]);

    // The isolated old leader cannot commit.
    let err = c.node(old).put("minority", "x").await.unwrap_err();
    assert!(err.is_retryable(), "minority write must fail retryably, got {err}");

    // The majority elects a leader and keeps going.
    let new = c.leader_among(&others).await;
    for k in 0..10 {
        c.node(new).put(format!("majority/{k}"), "y").await.unwrap();
    }
    let (kv, _) = c.node(others[0]).get("majority/9", false).await.unwrap();
    assert!(kv.is_some());

    c.router.heal();
    c.converged().await;
    let (kv, _) = c.node(old).get("minority", true).await.unwrap();
    assert!(kv.is_none(), "the minority's write must never appear");
    let (kv, _) = c.node(old).get("majority/9", true).await.unwrap();
    assert!(kv.is_some(), "the old leader catches up after healing");
    c.kill(1).await; // make sure shutdown paths work with a healed router
}

/// A leader cut off from the other voters keeps calling itself leader (Raft steps down only
/// on hearing a newer term), but stops serving as one once no quorum has acknowledged it for
/// the quorum-loss timeout; the majority's new leader serves. What follows
/// `serving_leadership` (the agent gateway) thus leaves the stale leader for the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_stops_serving() {
    let cfg = fast_config();
    let mut c = TestCluster::start(3, cfg.clone()).await;
    let old = c.leader().await;
    let stale = c.node(old);
    wait_for(Duration::from_secs(5), "the leader serving", || async { stale.is_serving_leader().then_some(()) }).await;
    for n in c.nodes.values().filter(|n| n.id() != old) {
        assert!(!n.is_serving_leader(), "a follower never serves");
    }
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != old).collect();
    let mut serving = stale.serving_leadership();
    c.router.partition(&[&[old], &others]);
    let cut = std::time::Instant::now();
    let limit = skiff_store::quorum_loss_timeout(cfg.election_timeout_max_ms) + Duration::from_secs(2);
    tokio::time::timeout(limit, serving.wait_for(|s| !*s)).await.expect("stops serving in time").unwrap();
    let took = cut.elapsed();
    assert!(
        took >= skiff_store::quorum_loss_timeout(cfg.election_timeout_max_ms) - Duration::from_millis(600),
        "not before the quorum-loss timeout (less the last acknowledgement's age): {took:?}"
    );
    let new = c.leader_among(&others).await;
    let live = c.node(new);
    wait_for(Duration::from_secs(5), "the new leader serving", || async { live.is_serving_leader().then_some(()) })
        .await;
    assert!(!stale.is_serving_leader(), "the cut-off leader still does not serve");
    c.router.heal();
    wait_for(Duration::from_secs(10), "one serving leader after healing", || async {
        let serving: Vec<u64> = c.nodes.values().filter(|n| n.is_serving_leader()).map(|n| n.id()).collect();
        (serving.len() == 1).then_some(())
    })
    .await;
    c.kill(old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_dropped_and_delayed_messages() {
    let c = TestCluster::start(3, StoreConfig { request_timeout_ms: 10_000, ..fast_config() }).await;
    c.leader().await;
    c.router.set_drop_percent(10);
    c.router.set_delay_ms(3);
    let n = c.node(1);
    for k in 0..20 {
        n.put(format!("lossy/{k}"), "v").await.unwrap();
    }
    c.router.heal();
    c.converged().await;
    let (kvs, _, _) = c.node(3).range("lossy/", None, 0, false).await.unwrap();
    assert_eq!(kvs.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_detects_conflicts() {
    let c = TestCluster::start(3, fast_config()).await;
    c.leader().await;
    let n = c.node(2);
    let r1 = n.put("cas", "a").await.unwrap();
    let r2 = n.put("cas", "b").await.unwrap();
    // A writer that read revision r1 loses.
    let stale = Txn {
        compare: vec![Compare::mod_revision("cas", r1)],
        success: vec![Op::put("cas", "c")],
        failure: vec![Op::get("cas")],
    };
    let resp = n.txn(stale).await.unwrap();
    assert!(!resp.succeeded);
    match &resp.results[0] {
        OpResult::Get { kv: Some(kv) } => assert_eq!((kv.mod_revision, kv.value.as_slice()), (r2, &b"b"[..])),
        other => panic!("expected the current value, got {other:?}"),
    }
    // One that read r2 wins.
    let fresh =
        Txn { compare: vec![Compare::mod_revision("cas", r2)], success: vec![Op::put("cas", "c")], failure: vec![] };
    assert!(n.txn(fresh).await.unwrap().succeeded);
    // Create-only semantics.
    let create = Txn { compare: vec![Compare::missing("cas")], success: vec![Op::put("cas", "d")], failure: vec![] };
    assert!(!n.txn(create).await.unwrap().succeeded);
    let (kv, _) = n.get("cas", false).await.unwrap();
    let kv = kv.unwrap();
    assert_eq!((kv.value.as_slice(), kv.version, kv.create_revision), (&b"c"[..], 3, r1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applies_independent_transactions_with_their_own_revisions() {
    let c = TestCluster::start(3, fast_config()).await;
    c.leader().await;
    let n = c.node(3);
    let r0 = n.put("b/stale", "x").await.unwrap();
    let r1 = n.put("b/stale", "y").await.unwrap();
    // From the next revision, not "from now": this replica may not have applied r1 yet.
    let mut w = n.watch("b/", r1 + 1).unwrap();
    let txns = vec![
        Txn { compare: vec![Compare::missing("b/1")], success: vec![Op::put("b/1", "one")], failure: vec![] },
        // This one's compare fails; the others still apply.
        Txn {
            compare: vec![Compare::mod_revision("b/stale", r0)],
            success: vec![Op::put("b/stale", "z")],
            failure: vec![Op::get("b/stale")],
        },
        Txn { compare: vec![], success: vec![Op::put("b/2", "two"), Op::delete("b/stale")], failure: vec![] },
    ];
    let resps = n.batch(txns).await.unwrap();
    assert_eq!(resps.iter().map(|r| r.succeeded).collect::<Vec<_>>(), vec![true, false, true]);
    // Each writing transaction has its own revision; the failed one wrote nothing.
    assert_eq!(resps[0].revision, r0 + 2);
    assert_eq!(resps[1].revision, r0 + 2);
    assert_eq!(resps[2].revision, r0 + 3);
    assert!(matches!(&resps[1].results[0], OpResult::Get { kv: Some(kv) } if kv.value == b"y"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let evs = tokio::time::timeout(Duration::from_secs(5), w.next_batch(10)).await.expect("events").unwrap();
        seen.extend(evs.iter().map(|e| (e.kv.key.clone(), e.revision, e.kind)));
    }
    assert_eq!(
        seen,
        vec![
            ("b/1".to_string(), r0 + 2, EventKind::Put),
            ("b/2".to_string(), r0 + 3, EventKind::Put),
            ("b/stale".to_string(), r0 + 3, EventKind::Delete),
        ]
    );
    c.converged().await;
    for m in c.nodes.values() {
        assert_eq!(m.revision(), r0 + 3, "replica {}", m.id());
    }
    // Limits: too many transactions, or one invalid transaction, refuse the whole batch.
    let many = vec![Txn { compare: vec![], success: vec![Op::put("b/x", "x")], failure: vec![] }; 2000];
    let err = n.batch(many).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("too many transactions")), "{err}");
    let bad = vec![Txn { compare: vec![], success: vec![Op::put("", "x")], failure: vec![] }];
    let err = n.batch(bad).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("batch transaction 0")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_with_clear_errors() {
    let c = TestCluster::start(1, fast_config()).await;
    c.leader().await;
    let n = c.node(1);
    let err = n.put("big", vec![0u8; MAX_VALUE_BYTES + 1]).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("value is")), "{err}");
    let err = n.put("k".repeat(4000), "v").await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidArgument(m) if m.contains("key is")), "{err}");
    let err = n.put("", "v").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)));
    // The largest allowed value is accepted.
    n.put("max", vec![7u8; MAX_VALUE_BYTES]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_event_once_in_order_across_a_leader_change() {
    let mut c = TestCluster::start(3, fast_config()).await;
    let first = c.leader().await;
    let follower = *c.nodes.keys().find(|id| **id != first).unwrap();
    let other = *c.nodes.keys().find(|id| **id != first && **id != follower).unwrap();
    let mut w = c.node(follower).watch("w/", 1).unwrap();
    for i in 0..10 {
        c.node(follower).put(format!("w/{i}"), "a").await.unwrap();
    }
    c.node(follower).put("unwatched", "x").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        for e in tokio::time::timeout(Duration::from_secs(5), w.next_batch(100)).await.unwrap().unwrap() {
            seen.push((e.kv.key.clone(), e.revision, e.kind));
        }
    }
    c.kill(first).await;
    c.leader().await;
    for i in 10..15 {
        c.node(follower).put(format!("w/{i}"), "b").await.unwrap();
    }
    c.node(other).delete("w/0").await.unwrap();
    // Reconnect to another replica, resuming after the last revision seen.
    let resume = seen.last().unwrap().1 + 1;
    let mut w2 = c.node(other).watch("w/", resume).unwrap();
    while seen.len() < 16 {
        for e in tokio::time::timeout(Duration::from_secs(5), w2.next_batch(100)).await.unwrap().unwrap() {
            seen.push((e.kv.key.clone(), e.revision, e.kind));
        }
    }
    let revs: Vec<u64> = seen.iter().map(|s| s.1).collect();
    let mut sorted = revs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(revs, sorted, "events in strictly increasing revision order, none repeated");
    let keys: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    let mut expected: Vec<String> = (0..15).map(|i| format!("w/{i}")).collect();
    expected.push("w/0".into());
    assert_eq!(keys, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(seen.last().unwrap().2, EventKind::Delete);
    // Nothing more arrives: the unwatched key never shows up and nothing is repeated.
    assert!(tokio::time::timeout(Duration::from_millis(300), w2.next_batch(10)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_makes_old_watches_fail_with_compacted() {
    let c = TestCluster::start(3, StoreConfig { history_revisions: 50, ..fast_config() }).await;
    c.leader().await;
    let n = c.node(1);
    for i in 0..20 {
        n.put(format!("c/{i}"), "v").await.unwrap();
    }
    n.write(skiff_store::Request::Compact { revision: 15 }).await.unwrap();
    c.converged().await;
    match c.node(2).watch("c/", 5) {
        Err(StoreError::Compacted { requested, oldest }) => assert_eq!((requested, oldest), (5, 15)),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a watcher"),
    }
    let mut w = c.node(2).watch("c/", 15).unwrap();
    let evs = w.next_batch(100).await.unwrap();
    assert_eq!(evs.first().unwrap().revision, 15);
    // The bounded history window compacts by itself.
    for i in 0..60 {
        n.put(format!("c/{i}"), "w").await.unwrap();
    }
    assert!(matches!(n.watch("c/", 16), Err(StoreError::Compacted { .. })));
    let err = n.write(skiff_store::Request::Compact { revision: 10_000 }).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_recovers_from_rocksdb() {
    let mut c = TestCluster::start(3, fast_config()).await;
    c.leader().await;
    let mut rev = 0;
    for i in 0..25 {
        rev = c.node(1).put(format!("d/{i}"), i.to_string()).await.unwrap();
    }
    c.converged().await;
    for id in 1..=3 {
        c.kill(id).await;
    }
    // Restart without bootstrap membership: it comes from disk.
    for id in 1..=3 {
        c.start_node(id, None).await;
    }
    c.leader().await;
    for id in 1..=3 {
        let n = c.node(id);
        let (kvs, r, _) = n.range("d/", None, 0, false).await.unwrap();
        assert_eq!((kvs.len(), r), (25, rev), "replica {id}");
    }
    assert_eq!(c.node(2).put("after", "restart").await.unwrap(), rev + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_joins_by_installing_a_snapshot() {
    let cfg = StoreConfig { snapshot_every_entries: 50, keep_logs_after_snapshot: 0, ..fast_config() };
    let mut c = TestCluster::start(3, cfg).await;
    c.leader().await;
    for i in 0..200 {
        c.node(1).put(format!("s/{i}"), i.to_string()).await.unwrap();
    }
    // The leader has purged its log: a new member can only catch up by snapshot.
    let leader = c.node(c.leader().await);
    wait_for(Duration::from_secs(10), "log purge on the leader", || async {
        leader.raft().metrics().borrow().purged.is_some().then_some(())
    })
    .await;
    let four = c.start_node(4, None).await;
    c.node(2).add_member(4, "mem-4".into()).await.unwrap();
    wait_for(Duration::from_secs(15), "member 4 to catch up", || async {
        (four.range("s/", None, 0, true).await.ok()?.0.len() == 200).then_some(())
    })
    .await;
    assert!(four.raft().metrics().borrow().snapshot.is_some(), "member 4 must have installed a snapshot");
    let st = four.status();
    assert_eq!(st.role, "follower");
    assert!(st.members.iter().any(|m| m.id == 4 && m.voter));
    // Writes continue with four voters, then member 4 is removed online.
    c.node(4).put("with-four", "1").await.unwrap();
    c.node(1).remove_member(4).await.unwrap();
    // Committed on a majority; replica 1 may apply it a moment later.
    wait_for(Duration::from_secs(10), "replica 1 to apply the removal", || async {
        (!c.node(1).status().members.iter().any(|m| m.id == 4)).then_some(())
    })
    .await;
    c.node(1).put("without-four", "1").await.unwrap();
}

/// Concurrent transactions share Raft entries on the leader (batcher.rs) without changing
/// any outcome: each gets its own revision, and of many compare-and-sets on one revision
/// exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_share_entries_with_their_own_outcomes() {
    let c = TestCluster::start(3, fast_config()).await;
    let leader = c.leader().await;
    let before = c.node(leader).status().last_log_index;
    let mut puts = Vec::new();
    for i in 0..300u64 {
        let n = c.node(i % 3 + 1);
        puts.push(tokio::spawn(async move { n.put(format!("cc/{i}"), i.to_string()).await }));
    }
    let mut revs = Vec::new();
    for p in puts {
        revs.push(p.await.unwrap().unwrap());
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 300, "every write has its own revision");
    let used = c.node(leader).status().last_log_index - before;
    assert!(used < 300, "300 concurrent writes took {used} log entries: nothing was batched");

    let base = c.node(1).put("cc/cas", "0").await.unwrap();
    let mut cas = Vec::new();
    for i in 0..50u64 {
        let n = c.node(i % 3 + 1);
        cas.push(tokio::spawn(async move {
            let t = Txn {
                compare: vec![Compare::mod_revision("cc/cas", base)],
                success: vec![Op::put("cc/cas", i.to_string())],
                failure: vec![],
            };
            n.txn(t).await.map(|r| r.succeeded)
        }));
    }
    let mut won = 0;
    for t in cas {
        won += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(won, 1, "exactly one compare-and-set on revision {base} wins");
    let (kv, _) = c.node(2).get("cc/cas", false).await.unwrap();
    assert_eq!(kv.unwrap().version, 2);
    let (kvs, _, _) = c.node(3).range("cc/", None, 0, false).await.unwrap();
    assert_eq!(kvs.len(), 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leadership_watch_follows_who_leads() {
    let mut c = TestCluster::start(3, fast_config()).await;
    let old = c.leader().await;
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != old).collect();
    let mut old_watch = c.node(old).leadership();
    tokio::time::timeout(Duration::from_secs(5), old_watch.wait_for(|l| *l))
        .await
        .expect("the leader's watch says it leads")
        .unwrap();
    for id in &others {
        assert!(!*c.node(*id).leadership().borrow(), "follower {id} must not say it leads");
    }

    // Leadership moves to the majority side; the old leader's watch flips once it hears of it.
    c.router.partition(&[&[old], &others]);
    let new = c.leader_among(&others).await;
    let mut new_watch = c.node(new).leadership();
    tokio::time::timeout(Duration::from_secs(5), new_watch.wait_for(|l| *l))
        .await
        .expect("the new leader's watch says it leads")
        .unwrap();
    c.router.heal();
    tokio::time::timeout(Duration::from_secs(10), old_watch.wait_for(|l| !*l))
        .await
        .expect("the deposed leader's watch flips to false")
        .unwrap();
    assert!(!c.node(old).is_leader());

    // The watch ends with the replica.
    c.kill(old).await;
    tokio::time::timeout(Duration::from_secs(10), old_watch.changed())
        .await
        .expect("the watch ends when Raft stops")
        .unwrap_err();
}

/// openraft gives each AppendEntries the heartbeat interval and drops the call when it
/// passes; over gRPC that cancels the follower's handler. Such a call from the current
/// leader still counts as contact (the follower must not campaign against a live leader it
/// hears from); one carrying a deposed leader's vote does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_entries_the_leader_gave_up_on_still_counts_as_contact() {
    use futures::FutureExt;
    use openraft::raft::AppendEntriesRequest;

    // Election timeouts well beyond what the test needs, so the cut-off follower does not
    // campaign meanwhile.
    let cfg = StoreConfig { election_timeout_min_ms: 2_000, election_timeout_max_ms: 4_000, ..fast_config() };
    let c = TestCluster::start(3, cfg).await;
    // Every replica follows one leader (a replica that campaigned at bootstrap and lost may
    // hold its own vote for a retry interval, and its higher leader id can still depose the
    // first winner).
    let vote = wait_for(Duration::from_secs(20), "every replica to follow one leader", || {
        let votes: Vec<_> = c.nodes.values().map(|n| n.raft().metrics().borrow().vote).collect();
        let one = votes[0].is_committed() && votes.iter().all(|v| *v == votes[0]);
        async move { one.then_some(votes[0]) }
    })
    .await;
    let leader = c.leader().await;
    c.node(leader).put("k", "v").await.unwrap();
    assert_eq!(c.node(leader).raft().metrics().borrow().vote, vote);
    let f = *c.nodes.keys().find(|id| **id != leader).unwrap();
    let follower = c.node(f);
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != f).collect();
    // From now on only the calls made below reach the follower.
    c.router.partition(&[&others, &[f]]);
    let quiet = Duration::from_millis(200);
    wait_for(Duration::from_secs(5), "the follower not to hear from the leader", || {
        let since = follower.last_leader_contact().elapsed();
        async move { (since >= quiet).then_some(()) }
    })
    .await;
    assert_eq!(follower.raft().metrics().borrow().vote, vote, "the follower has not campaigned");
    let heartbeat = |vote| AppendEntriesRequest { vote, prev_log_id: None, leader_commit: None, entries: vec![] };

    // Polled once and dropped, as the transport drops a call the leader gave up on.
    let before = follower.last_leader_contact();
    let stale = skiff_store::Vote::new_committed(vote.leader_id().term - 1, leader);
    let _ = follower.handle_append_entries(heartbeat(stale)).now_or_never();
    assert_eq!(follower.last_leader_contact(), before, "a deposed leader's call is no contact");
    let _ = follower.handle_append_entries(heartbeat(vote)).now_or_never();
    assert!(follower.last_leader_contact() > before, "the current leader's call is contact on arrival");
}
