//! Replica spreading: prefer nodes running fewer pods of the same group (controller, else identical labels).

use crate::framework::{normalize_to_max, ScorePlugin};
use crate::snapshot::{NodeInfo, PodInfo};

/// Scores a node by how few pods of the pod's spread group it already runs (including pods
/// placed earlier in the batch): the node with the most gets 0, nodes with none get 100.
/// Pods without a group score 100 everywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplicaSpread;

impl ScorePlugin for ReplicaSpread {
    fn name(&self) -> &'static str {
        "ReplicaSpread"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.spread_group.and_then(|g| node.group_counts.get(&g)).map_or(0, |&c| i64::from(c))
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, true);
    }
}
