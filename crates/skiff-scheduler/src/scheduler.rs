//! The scheduling loop: for each pending pod in queue order, filter every node, score the feasible ones, pick the best.

use std::collections::BTreeMap;

use crate::decision::{Binding, Decision, Unschedulable};
use crate::framework::{Code, FilterPlugin, ScorePlugin};
use crate::plugins::{
    BalancedAllocation, LeastAllocated, NodeAffinity, NodePorts, NodeReady, NodeResourcesFit, NodeUnschedulable,
    ReplicaSpread, TaintToleration,
};
use crate::snapshot::{mix, ClusterSnapshot, NodeInfo, PendingPod, PodInfo};

/// `spec.schedulerName` of pods this scheduler takes by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Chooses among equally scored nodes: the same seed and input give the same bindings.
    pub seed: u64,
    /// Only pending pods whose `spec.schedulerName` equals this are scheduled; others are skipped.
    pub scheduler_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { seed: 0, scheduler_name: DEFAULT_SCHEDULER_NAME.to_string() }
    }
}

/// The plugins a scheduler runs: filters in order, and weighted scores.
pub struct Profile {
    filters: Vec<Box<dyn FilterPlugin>>,
    scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

impl Profile {
    /// A profile without plugins: every node fits and every score ties.
    pub fn empty() -> Profile {
        Profile { filters: Vec::new(), scores: Vec::new() }
    }

    /// The default plugins, with Kubernetes' default score weights: filters NodeUnschedulable,
    /// NodeReady, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit (cheapest and
    /// unresolvable first); scores TaintToleration ×3, NodeAffinity ×2, ReplicaSpread ×2,
    /// LeastAllocated ×1, BalancedAllocation ×1.
    pub fn default_plugins() -> Profile {
        Profile::empty()
            .with_filter(NodeUnschedulable)
            .with_filter(NodeReady)
            .with_filter(TaintToleration)
            .with_filter(NodeAffinity)
            .with_filter(NodePorts)
            .with_filter(NodeResourcesFit)
            .with_score(TaintToleration, 3)
            .with_score(NodeAffinity, 2)
            .with_score(ReplicaSpread, 2)
            .with_score(LeastAllocated, 1)
            .with_score(BalancedAllocation, 1)
    }

    pub fn with_filter(mut self, plugin: impl FilterPlugin + 'static) -> Profile {
        self.filters.push(Box::new(plugin));
        self
    }

    pub fn with_score(mut self, plugin: impl ScorePlugin + 'static, weight: i64) -> Profile {
        self.scores.push((Box::new(plugin), weight));
        self
    }

    pub fn filter_names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    pub fn score_names(&self) -> Vec<(&'static str, i64)> {
        self.scores.iter().map(|(s, w)| (s.name(), *w)).collect()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::default_plugins()
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile").field("filters", &self.filter_names()).field("scores", &self.score_names()).finish()
    }
}

/// Schedules a snapshot's pending pods with the default plugins. See [`Scheduler::schedule`].
pub fn schedule(snapshot: &ClusterSnapshot, config: &SchedulerConfig) -> Vec<Decision> {
    Scheduler::new(config.clone()).schedule(snapshot)
}

/// A configured scheduler. It holds no cluster state: every call works on the snapshot it is given.
#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    profile: Profile,
}

/// Reused buffers for one scheduling pass.
#[derive(Default)]
struct Scratch {
    feasible: Vec<usize>,
    totals: Vec<i64>,
    scores: Vec<i64>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler { config, profile: Profile::default_plugins() }
    }

    pub fn with_profile(config: SchedulerConfig, profile: Profile) -> Scheduler {
        Scheduler { config, profile }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Decides every pending pod of the snapshot (those for this scheduler's name), in queue
    /// order (priority, then age), returning one decision per pod in that order. Each binding
    /// is accounted on its node before the next pod is considered, so a batch never
    /// overcommits a node or piles replicas onto one. The snapshot itself is not modified.
    ///
    /// Among the best-scored nodes the choice is a hash of (seed, pod identity, node name):
    /// deterministic, yet different pods do not all break ties toward the same node.
    pub fn schedule(&self, snapshot: &ClusterSnapshot) -> Vec<Decision> {
        let mut nodes = Placed::new(snapshot.nodes());
        let mut scratch = Scratch::default();
        let mut decisions = Vec::with_capacity(snapshot.pending().len());
        // Where the next pod's node search starts: rotates over the pass, as kube-scheduler's
        // nextStartNodeIndex, so a partial search does not favour the first nodes.
        let mut start = snapshot
            .pending()
            .first()
            .map_or(0, |p| (mix(self.config.seed ^ p.info.identity_hash) % nodes.len().max(1) as u64) as usize);
        for pending in snapshot.pending() {
            if pending.scheduler_name != self.config.scheduler_name {
                continue;
            }
            let (decision, evaluated) = self.schedule_one(pending, &nodes, start, &mut scratch);
            start = (start + evaluated) % nodes.len().max(1);
            if let Decision::Bind(b) = &decision {
                if let Ok(i) = nodes.base.binary_search_by(|n| n.name.as_str().cmp(&b.node)) {
                    nodes.add_pod(i, &pending.info);
                }
            }
            decisions.push(decision);
        }
        decisions
    }

    /// Decides one pod, searching nodes from `start` (wrapping) until enough feasible ones
    /// are found (see [`feasible_nodes_to_find`]); returns the decision and how many nodes
    /// were evaluated.
    fn schedule_one(
        &self,
        pending: &PendingPod,
        nodes: &Placed<'_>,
        start: usize,
        scratch: &mut Scratch,
    ) -> (Decision, usize) {
        let pod = &pending.info;
        let mut unschedulable = Unschedulable {
            pod: pod.pod.clone(),
            num_nodes: nodes.len(),
            reasons: BTreeMap::new(),
            unresolvable_nodes: 0,
            error: pending.error.clone(),
        };
        if pending.error.is_some() {
            return (Decision::Unschedulable(unschedulable), 0);
        }

        scratch.feasible.clear();
        let enough = feasible_nodes_to_find(nodes.len());
        let mut evaluated = 0;
        'nodes: for i in (start..nodes.len()).chain(0..start.min(nodes.len())) {
            if scratch.feasible.len() >= enough {
                break;
            }
            evaluated += 1;
            let node = nodes.get(i);
            for filter in &self.profile.filters {
                if let Err(rejection) = filter.filter(pod, node) {
                    if rejection.code == Code::UnschedulableAndUnresolvable {
                        unschedulable.unresolvable_nodes += 1;
                    }
                    for reason in rejection.reasons {
                        *unschedulable.reasons.entry(reason).or_insert(0) += 1;
                    }
                    continue 'nodes;
                }
            }
            scratch.feasible.push(i);
        }

        let best = match scratch.feasible.as_slice() {
            [] => return (Decision::Unschedulable(unschedulable), evaluated),
            [only] => *only,
            _ => self.pick(pod, nodes, scratch),
        };
        (Decision::Bind(Binding { pod: pod.pod.clone(), node: nodes.get(best).name.clone() }), evaluated)
    }

    /// Scores the feasible nodes and returns the index of the best one.
    fn pick(&self, pod: &PodInfo, nodes: &Placed<'_>, scratch: &mut Scratch) -> usize {
        let Scratch { feasible, totals, scores } = scratch;
        totals.clear();
        totals.resize(feasible.len(), 0);
        // Looked up once, read by every score plugin.
        let candidates: Vec<&NodeInfo> = feasible.iter().map(|&i| nodes.get(i)).collect();
        for (plugin, weight) in &self.profile.scores {
            scores.clear();
            scores.extend(candidates.iter().map(|node| plugin.score(pod, node)));
            plugin.normalize(scores);
            for (t, s) in totals.iter_mut().zip(scores.iter()) {
                *t += weight * s;
            }
        }
        let salt = mix(self.config.seed ^ pod.identity_hash);
        let (_, _, best) = feasible
            .iter()
            .zip(candidates.iter())
            .zip(totals.iter())
            .map(|((&i, node), &total)| (total, mix(salt ^ node.identity_hash), i))
            .max()
            .expect("at least two feasible nodes");
        best
    }
}

/// A pass's view of the snapshot's nodes with the pass's own bindings accounted: a node is
/// copied the first time a pod is placed on it, the others are read where they are.
struct Placed<'a> {
    base: &'a [NodeInfo],
    /// Per node, its index in `changed`, or `UNCHANGED`.
    slot: Vec<u32>,
    changed: Vec<NodeInfo>,
}

const UNCHANGED: u32 = u32::MAX;

impl<'a> Placed<'a> {
    fn new(base: &'a [NodeInfo]) -> Placed<'a> {
        Placed { base, slot: vec![UNCHANGED; base.len()], changed: Vec::new() }
    }

    fn len(&self) -> usize {
        self.base.len()
    }

    fn get(&self, i: usize) -> &NodeInfo {
        match self.slot[i] {
            UNCHANGED => &self.base[i],
            k => &self.changed[k as usize],
        }
    }

    fn add_pod(&mut self, i: usize, pod: &PodInfo) {
        if self.slot[i] == UNCHANGED {
            self.slot[i] = self.changed.len() as u32;
            self.changed.push(self.base[i].clone());
        }
        self.changed[self.slot[i] as usize].add_pod(pod);
    }
}

/// How many feasible nodes are enough to score, as kube-scheduler's default adaptive
/// `percentageOfNodesToScore`: every node up to 100; beyond, `50 - nodes/125` percent of
/// them (at least 5%), and never fewer than 100. A pod that fits nowhere is still checked
/// against every node, so its reasons cover the whole cluster.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN: usize = 100;
    if nodes <= MIN {
        return nodes;
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percent / 100).max(MIN)
}
