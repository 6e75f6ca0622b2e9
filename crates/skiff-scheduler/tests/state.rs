//! The scheduler's kept cluster state: after any sequence of node and pod changes, in any
//! order, it holds exactly what a snapshot built from scratch of the same objects holds, and
//! a pass over it decides the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_scheduler::harness::{node, pod};
use skiff_scheduler::{ClusterSnapshot, ClusterState, NodeInfo, PodEntry, Scheduler, SchedulerConfig, SpreadGroups};

/// xorshift64*: a small deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Version `v` of node `i`: capacity, readiness and cordoning vary with the version.
fn node_version(i: usize, v: usize) -> Node {
    let n = node(&format!("n-{i}")).cpu(["2", "4", "8"][v % 3]).memory("8Gi").max_pods(5 + (v % 4) as i64);
    match v % 5 {
        0 => n.not_ready().build(),
        1 => n.unschedulable().build(),
        _ => n.build(),
    }
}

/// Version `v` of pod `i`: bound or pending, on one of `nodes + 2` node names (two never
/// exist), sometimes terminated or being deleted, with host ports and owners that spread.
fn pod_version(i: usize, v: usize, nodes: usize) -> Pod {
    let mut p = pod(&format!("p-{i}")).cpu(["100m", "250m", "1"][v % 3]).memory("64Mi").created(i as i64);
    if i.is_multiple_of(3) {
        p = p.owner(&format!("rs-{}", i % 4));
    }
    if v % 4 == 1 {
        p = p.host_port(8000 + (i % 3) as i32);
    }
    match v % 7 {
        0 | 1 => p.build(),
        2 => p.deleting().build(),
        3 => p.on_node(&format!("n-{}", v % (nodes + 2))).phase("Succeeded").build(),
        _ => p.on_node(&format!("n-{}", (i + v) % (nodes + 2))).phase("Running").build(),
    }
}

/// Name, requested and scoring cpu/memory, pod count, host ports, pods per spread group.
type Held = (String, i64, i64, i64, i64, i64, Vec<(String, String, i32)>, BTreeMap<u32, u32>);

/// What a node holds, in a form that compares (host ports sorted: their order means nothing).
fn held(n: &NodeInfo) -> Held {
    let mut ports: Vec<(String, String, i32)> =
        n.used_ports.iter().map(|p| (p.ip.clone(), p.protocol.clone(), p.port)).collect();
    ports.sort();
    (
        n.name.clone(),
        n.requested.cpu_millis,
        n.requested.memory_bytes,
        n.scoring_requested.cpu_millis,
        n.scoring_requested.memory_bytes,
        n.pod_count,
        ports,
        n.group_counts.iter().map(|(g, c)| (g.0, *c)).collect(),
    )
}

fn assert_same(kept: &ClusterSnapshot, fresh: &ClusterSnapshot, step: usize) {
    let a: Vec<_> = kept.nodes().iter().map(held).collect();
    let b: Vec<_> = fresh.nodes().iter().map(held).collect();
    assert_eq!(a, b, "nodes differ after step {step}");
    let pa: Vec<_> = kept.pending().iter().map(|p| p.info.pod.clone()).collect();
    let pb: Vec<_> = fresh.pending().iter().map(|p| p.info.pod.clone()).collect();
    assert_eq!(pa, pb, "pending pods differ after step {step}");
    let s = Scheduler::new(SchedulerConfig { seed: step as u64, ..SchedulerConfig::default() });
    assert_eq!(s.schedule(kept), s.schedule(fresh), "decisions differ after step {step}");
}

#[test]
fn kept_state_equals_a_fresh_snapshot_after_any_changes() {
    const NODES: usize = 6;
    const PODS: usize = 40;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut groups = SpreadGroups::default();
    let mut state: ClusterState<String> = ClusterState::default();
    // The objects as they are now, to build the fresh snapshot from.
    let mut nodes: BTreeMap<usize, NodeInfo> = BTreeMap::new();
    let mut pods: HashMap<String, Arc<PodEntry>> = HashMap::new();
    for step in 0..600 {
        let v = rng.below(1000);
        match rng.below(10) {
            0 | 1 => {
                let i = rng.below(NODES);
                let info = NodeInfo::new(&node_version(i, v));
                nodes.insert(i, info.clone());
                state.set_node(info);
            }
            2 => {
                let i = rng.below(NODES);
                nodes.remove(&i);
                state.remove_node(&format!("n-{i}"));
            }
            3 => {
                let key = format!("p-{}", rng.below(PODS));
                pods.remove(&key);
                state.remove_pod(&key);
            }
            _ => {
                let i = rng.below(PODS);
                let entry = Arc::new(PodEntry::new(&pod_version(i, v, NODES), &mut groups));
                pods.insert(format!("p-{i}"), entry.clone());
                state.set_pod(format!("p-{i}"), entry);
            }
        }
        let fresh = ClusterSnapshot::from_entries(nodes.values(), pods.values());
        let kept = state.snapshot();
        assert_same(&kept, &fresh, step);
        assert_eq!(state.has_pending(), !fresh.pending().is_empty());
        assert_eq!(state.pod_count(), pods.len());
        // A state built in one go from the same objects is the same too.
        let rebuilt =
            ClusterState::from_entries(nodes.values().cloned(), pods.iter().map(|(k, e)| (k.clone(), e.clone())));
        assert_same(&rebuilt.snapshot(), &fresh, step);
    }
    assert!(!nodes.is_empty() && !pods.is_empty());
}

/// A snapshot shares the state's nodes; changing the state afterwards copies them, so the
/// snapshot a pass is working on never changes under it, and a pass never charges the state.
#[test]
fn snapshots_share_nodes_until_the_state_changes() {
    let mut groups = SpreadGroups::default();
    let mut state: ClusterState<&str> = ClusterState::default();
    for i in 0..3 {
        state.set_node(NodeInfo::new(&node(&format!("n-{i}")).cpu("4").build()));
    }
    let bound = pod("bound").cpu("1").on_node("n-1").phase("Running").build();
    state.set_pod("bound", Arc::new(PodEntry::new(&bound, &mut groups)));
    state.set_pod("new", Arc::new(PodEntry::new(&pod("new").cpu("1").build(), &mut groups)));
    let snapshot = state.snapshot();
    assert!(std::ptr::eq(snapshot.nodes(), state.nodes()), "the snapshot copied the nodes");
    let decisions = Scheduler::new(SchedulerConfig::default()).schedule(&snapshot);
    assert_eq!(decisions.len(), 1);
    let total = |nodes: &[NodeInfo]| nodes.iter().map(|n| n.requested.cpu_millis).sum::<i64>();
    assert_eq!(total(state.nodes()), 1000, "the pass charged the state");
    state.remove_pod(&"bound");
    assert_eq!(total(state.nodes()), 0);
    assert_eq!(total(snapshot.nodes()), 1000, "the state changed a snapshot already taken");
}
