//! Whole-pass behaviour: spreading, resource scores, batch accounting, queue order, determinism.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use skiff_scheduler::harness::{node, pod, Harness};
use skiff_scheduler::plugins::{BalancedAllocation, LeastAllocated, NodeResourcesFit, ReplicaSpread};
use skiff_scheduler::{ClusterSnapshot, Profile, Scheduler, SchedulerConfig};

fn distinct_nodes(placements: &BTreeMap<String, String>) -> usize {
    placements.values().collect::<BTreeSet<_>>().len()
}

#[test]
fn three_replicas_land_on_three_nodes_for_every_seed() {
    for seed in 0..50 {
        let mut h = Harness::new();
        h.seed(seed).add_nodes("n", 3, |n| n).add_replicas("web", 3, |p| p.cpu("100m").memory("128Mi"));
        let out = h.schedule();
        assert_eq!(distinct_nodes(&out.placements()), 3, "seed {seed}: {:?}", out.placements());
    }
}

#[test]
fn replicas_spread_over_unequal_nodes() {
    // Least-allocated alone would put every replica on the big node.
    let mut h = Harness::new();
    h.add_node(node("big").cpu("64").memory("256Gi"))
        .add_node(node("small-1").cpu("2").memory("4Gi"))
        .add_node(node("small-2").cpu("2").memory("4Gi"))
        .add_replicas("web", 3, |p| p.cpu("100m").memory("128Mi"));
    assert_eq!(distinct_nodes(&h.schedule().placements()), 3);

    let only_least_allocated = Scheduler::with_profile(
        SchedulerConfig::default(),
        Profile::empty().with_filter(NodeResourcesFit).with_score(LeastAllocated, 1),
    );
    assert_eq!(h.schedule_with(&only_least_allocated).per_node().get("big"), Some(&3));
}

#[test]
fn six_replicas_two_per_node() {
    let mut h = Harness::new();
    h.add_nodes("n", 3, |n| n).add_replicas("web", 6, |p| p.cpu("100m"));
    let counts: Vec<usize> = h.schedule().per_node().into_values().collect();
    assert_eq!(counts, vec![2, 2, 2]);
}

#[test]
fn spreading_counts_replicas_already_running() {
    let mut h = Harness::new();
    h.add_nodes("n", 3, |n| n)
        .add_pod(pod("web-old-0").owner("web").on_node("n-0"))
        .add_pod(pod("web-old-1").owner("web").on_node("n-2"))
        .add_pod(pod("other-0").owner("other").on_node("n-1"))
        .add_pod(pod("other-1").owner("other").on_node("n-1"))
        .add_pod(pod("web-new").owner("web"));
    assert_eq!(h.schedule().node_of("web-new"), Some("n-1"), "another owner's pods do not count");
}

#[test]
fn pods_without_owner_spread_by_identical_labels() {
    let mut h = Harness::new();
    h.add_nodes("n", 2, |n| n)
        .add_pod(pod("a-running").label("app", "a").on_node("n-0"))
        .add_pod(pod("a-new").label("app", "a"));
    assert_eq!(h.schedule().node_of("a-new"), Some("n-1"));

    // Same labels in another namespace are another group; with the spread score alone the
    // new pod sees no siblings anywhere and both nodes tie.
    let mut seen = BTreeSet::new();
    for seed in 0..20 {
        let mut h = Harness::new();
        h.seed(seed)
            .add_nodes("n", 2, |n| n)
            .add_pod(pod("a-running").label("app", "a").on_node("n-0"))
            .add_pod(pod("a-new").namespace("other").label("app", "a"));
        let s = Scheduler::with_profile(h.config.clone(), Profile::empty().with_score(ReplicaSpread, 1));
        seen.extend(h.schedule_with(&s).node_of("a-new").map(String::from));
    }
    assert_eq!(seen.len(), 2, "no preference across namespaces: {seen:?}");
}

#[test]
fn least_allocated_prefers_the_emptier_node() {
    let mut h = Harness::new();
    h.add_nodes("n", 2, |n| n).add_pod(pod("busy").on_node("n-0").cpu("3").memory("6Gi")).add_pod(pod("p").cpu("100m"));
    assert_eq!(h.schedule().node_of("p"), Some("n-1"));
}

#[test]
fn balanced_allocation_prefers_even_usage() {
    // Both nodes are half used on average (least-allocated ties), but n-even uses cpu and
    // memory equally.
    let mut h = Harness::new();
    h.add_node(node("n-even").cpu("4").memory("4Gi"))
        .add_node(node("n-skewed").cpu("4").memory("4Gi"))
        .add_pod(pod("x").on_node("n-even").cpu("2").memory("2Gi"))
        .add_pod(pod("y").on_node("n-skewed").cpu("1").memory("3Gi"))
        .add_pod(pod("p").cpu("1m").memory("1Mi"));
    let balanced =
        Scheduler::with_profile(SchedulerConfig::default(), Profile::empty().with_score(BalancedAllocation, 1));
    for seed in 0..10 {
        h.seed(seed);
        assert_eq!(h.schedule_with(&balanced).node_of("p"), Some("n-even"));
        assert_eq!(h.schedule().node_of("p"), Some("n-even"));
    }
}

#[test]
fn batch_accounts_for_earlier_placements() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"));
    for i in 0..4 {
        h.add_pod(pod(&format!("p{i}")).cpu("300m").created(i));
    }
    let out = h.schedule();
    assert_eq!(out.bound_count(), 3);
    assert_eq!(out.message_of("p3"), "0/1 nodes are available: 1 Insufficient cpu.");

    let mut h = Harness::new();
    h.add_node(node("a").max_pods(2))
        .add_pod(pod("p0").created(0))
        .add_pod(pod("p1").created(1))
        .add_pod(pod("p2").created(2));
    assert_eq!(h.schedule().message_of("p2"), "0/1 nodes are available: 1 Too many pods.");

    let mut h = Harness::new();
    h.add_nodes("n", 2, |n| n);
    for i in 0..3 {
        h.add_pod(pod(&format!("p{i}")).host_port(443).created(i));
    }
    let out = h.schedule();
    assert_eq!(distinct_nodes(&out.placements()), 2);
    assert_eq!(
        out.message_of("p2"),
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    );
}

#[test]
fn queue_order_priority_then_age_then_name() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("old-low").cpu("1").created(1))
        .add_pod(pod("new-high").cpu("1").created(5).priority(1000))
        .add_pod(pod("b-no-time").cpu("1"))
        .add_pod(pod("a-no-time").cpu("1"));
    let out = h.schedule();
    let order: Vec<&str> = out.decisions.iter().map(|d| d.pod().name.as_str()).collect();
    assert_eq!(order, ["new-high", "old-low", "a-no-time", "b-no-time"]);
    assert_eq!(out.node_of("new-high"), Some("a"));
}

#[test]
fn other_schedulers_pods_and_deleted_pods_are_skipped() {
    let mut h = Harness::new();
    h.add_node(node("a"))
        .add_pod(pod("mine"))
        .add_pod(pod("explicit").scheduler_name("default-scheduler"))
        .add_pod(pod("theirs").scheduler_name("gpu-scheduler"))
        .add_pod(pod("going").deleting());
    let names: Vec<String> = h.schedule().decisions.iter().map(|d| d.pod().name.clone()).collect();
    assert_eq!(names, ["explicit", "mine"]);

    let gpu = Scheduler::new(SchedulerConfig { scheduler_name: "gpu-scheduler".into(), ..Default::default() });
    let names: Vec<String> = h.schedule_with(&gpu).decisions.iter().map(|d| d.pod().name.clone()).collect();
    assert_eq!(names, ["theirs"]);
}

#[test]
fn pods_on_unknown_nodes_are_ignored_and_bad_bound_quantities_count_zero() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("ghost").on_node("gone").cpu("1"))
        .add_pod(pod("odd").on_node("a").cpu("garbage"))
        .add_pod(pod("p").cpu("1"));
    assert_eq!(h.schedule().node_of("p"), Some("a"));
}

fn shuffled_harness(seed: u64, reverse: bool) -> Harness {
    let mut h = Harness::new();
    h.seed(seed).add_nodes("n", 10, |n| n).add_replicas("web", 25, |p| p.cpu("100m")).add_replicas("db", 5, |p| p);
    for i in 0..10 {
        h.add_pod(pod(&format!("solo-{i}")));
    }
    if reverse {
        h.nodes.reverse();
        h.pods.reverse();
    }
    h
}

#[test]
fn deterministic_for_a_seed_and_independent_of_input_order() {
    let a = shuffled_harness(7, false).schedule();
    let b = shuffled_harness(7, false).schedule();
    let c = shuffled_harness(7, true).schedule();
    assert_eq!(a.decisions, b.decisions);
    assert_eq!(a.placements(), c.placements());

    // Scheduling does not modify the snapshot: a second pass over it decides identically.
    let h = shuffled_harness(7, false);
    let snapshot = ClusterSnapshot::new(&h.nodes, &h.pods);
    let s = Scheduler::new(h.config.clone());
    assert_eq!(s.schedule(&snapshot), s.schedule(&snapshot));
}

#[test]
fn seeds_change_tie_breaks_but_not_the_spread() {
    let placements: BTreeSet<BTreeMap<String, String>> =
        (0..10).map(|seed| shuffled_harness(seed, false).schedule().placements()).collect();
    assert!(placements.len() > 1, "different seeds should break ties differently");
    for p in &placements {
        assert_eq!(p.len(), 40);
    }

    // Unrelated pods with equal scores do not all pick the same node.
    let mut h = Harness::new();
    h.add_nodes("n", 4, |n| n);
    for i in 0..4 {
        h.add_pod(pod(&format!("p{i}")).label("i", &i.to_string()));
    }
    let out = h.schedule();
    assert!(distinct_nodes(&out.placements()) > 1, "{:?}", out.placements());
}

#[test]
fn thousand_pods_over_hundred_nodes_respect_capacity_and_spread() {
    let mut h = Harness::new();
    h.add_nodes("n", 100, |n| n.cpu("4").memory("8Gi"));
    for g in 0..100 {
        h.add_replicas(&format!("rs{g:02}"), 10, |p| p.cpu("300m").memory("512Mi"));
    }
    let out = h.schedule();
    assert_eq!(out.bound_count(), 1000);
    // 4 cpu / 300m = 13 pods per node at most; 10 per node on average.
    assert!(out.per_node().values().all(|&n| n <= 13), "{:?}", out.per_node());
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (pod, node) in out.placements() {
        groups.entry(pod.split('-').next().unwrap().to_string()).or_default().insert(node);
    }
    for (g, nodes) in groups {
        assert_eq!(nodes.len(), 10, "replicas of {g} share a node");
    }
}

#[test]
fn large_clusters_score_a_sample_of_feasible_nodes_as_kube_scheduler() {
    use skiff_scheduler::scheduler::feasible_nodes_to_find;
    assert_eq!(feasible_nodes_to_find(3), 3);
    assert_eq!(feasible_nodes_to_find(100), 100);
    assert_eq!(feasible_nodes_to_find(150), 100);
    assert_eq!(feasible_nodes_to_find(1_000), 420);
    assert_eq!(feasible_nodes_to_find(5_000), 500);
    assert_eq!(feasible_nodes_to_find(20_000), 1_000);

    // 1,000 nodes, 1,000 replicas: each pod scores only 420 nodes, but the search start
    // rotates, so the replicas still spread: never more than two on a node, and nearly
    // every node gets one (full scoring would give exactly one each).
    let mut h = Harness::new();
    h.add_nodes("n", 1_000, |n| n).add_replicas("web", 1_000, |p| p.cpu("100m"));
    let out = h.schedule();
    assert_eq!(out.placements().len(), 1_000);
    let per_node = out.per_node();
    assert!(per_node.values().all(|&c| c <= 2), "{:?}", per_node.values().max());
    assert!(per_node.len() >= 900, "only {} nodes used", per_node.len());

    // A pod that fits nowhere is still checked against every node.
    let mut h = Harness::new();
    h.add_nodes("n", 1_000, |n| n.cpu("1")).add_pod(pod("huge").cpu("2"));
    let reason = h.schedule().message_of("huge");
    assert!(reason.starts_with("0/1000 nodes are available: 1000 Insufficient cpu"), "{reason}");
}

/// Entries kept across passes (one `SpreadGroups`, entries extracted in another order, some
/// from an earlier pass) decide exactly as a snapshot built from the objects.
#[test]
fn snapshots_from_kept_entries_decide_as_from_objects() {
    use skiff_scheduler::{NodeInfo, PodEntry, SpreadGroups};
    let h = shuffled_harness(3, false);
    let s = Scheduler::new(h.config.clone());
    let direct = s.schedule(&ClusterSnapshot::new(&h.nodes, &h.pods));
    let mut groups = SpreadGroups::default();
    // An earlier pass saw unrelated owners first: group ids differ from a fresh snapshot's.
    for p in shuffled_harness(9, true).pods.iter().rev() {
        PodEntry::new(p, &mut groups);
    }
    let nodes: Vec<NodeInfo> = h.nodes.iter().map(NodeInfo::new).collect();
    let entries: Vec<Arc<PodEntry>> = h.pods.iter().rev().map(|p| Arc::new(PodEntry::new(p, &mut groups))).collect();
    let kept = s.schedule(&ClusterSnapshot::from_entries(&nodes, &entries));
    assert_eq!(direct, kept);
    assert!(!direct.is_empty());
}

/// Node infos and pod entries kept across passes are shared, not copied, by the snapshots built
/// from them, and what a snapshot or a pass places on a node never shows in the kept infos.
#[test]
fn kept_node_infos_are_shared_and_never_charged() {
    use skiff_scheduler::{NodeInfo, PodEntry, SpreadGroups};
    let mut h = Harness::new();
    h.add_nodes("n", 3, |n| n.cpu("4")).add_pod(pod("bound").cpu("1").on_node("n-1")).add_pod(pod("new").cpu("1"));
    let nodes: Vec<NodeInfo> = h.nodes.iter().map(NodeInfo::new).collect();
    let mut groups = SpreadGroups::default();
    let entries: Vec<Arc<PodEntry>> = h.pods.iter().map(|p| Arc::new(PodEntry::new(p, &mut groups))).collect();
    let snapshot = ClusterSnapshot::from_entries(&nodes, &entries);
    for n in snapshot.nodes() {
        let kept = nodes.iter().find(|k| k.name == n.name).unwrap();
        assert!(n.same_facts(kept), "{} was copied", n.name);
    }
    // The pending pod is the kept entry itself, not a copy of its facts.
    assert_eq!(snapshot.pending().len(), 1);
    assert!(std::ptr::eq::<PodEntry>(&*snapshot.pending()[0], &*entries[1]), "the pending entry was copied");
    let on_n1 = snapshot.nodes().iter().find(|n| n.name == "n-1").unwrap();
    assert_eq!(on_n1.pod_count, 1);
    let decisions = Scheduler::new(h.config.clone()).schedule(&snapshot);
    assert_eq!(decisions.len(), 1);
    assert!(nodes.iter().all(|n| n.pod_count == 0 && n.requested.cpu_millis == 0), "kept infos were charged");
    assert_eq!(snapshot.nodes().iter().map(|n| n.pod_count).sum::<i64>(), 1, "the pass charged the snapshot");
}
