//! The plugin interfaces: Filter plugins reject nodes with reasons, Score plugins rank the rest 0..=100.

use std::borrow::Cow;

use crate::snapshot::{NodeInfo, PodInfo};

/// Highest score a Score plugin gives a node (after normalisation).
pub const MAX_NODE_SCORE: i64 = 100;

/// How a node rejected a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The node cannot take the pod now, but might if pods were removed from it (resources,
    /// ports): preemption could help.
    Unschedulable,
    /// Removing pods would not help (selector, taint, cordon, readiness).
    UnschedulableAndUnresolvable,
}

/// A node's rejection of a pod, with Kubernetes-style reasons such as `Insufficient cpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: &'static str,
    pub code: Code,
    /// One or more reasons; each is counted once per node in the unschedulable message.
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection { plugin, code: Code::Unschedulable, reasons: vec![reason.into()] }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection { plugin, code: Code::UnschedulableAndUnresolvable, reasons: vec![reason.into()] }
    }
}

/// Decides whether a node can run a pod. Filters run in profile order; the first rejection
/// of a node stops its evaluation.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection>;
}

/// Ranks the nodes that passed every filter.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Raw score of one feasible node; must be within 0..=100 unless [`normalize`](Self::normalize)
    /// maps it there.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Maps the raw scores of all feasible nodes (same order as scored) into 0..=100.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales scores so that the highest becomes 100 (or, with `reverse`, the highest becomes 0
/// and zero becomes 100). All-zero scores become 0 (or 100 when reversed).
pub fn normalize_to_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        let scaled = if max > 0 { *s * MAX_NODE_SCORE / max } else { 0 };
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}
