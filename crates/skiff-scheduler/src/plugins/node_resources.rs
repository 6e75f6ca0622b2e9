//! Resources: the fit filter (cpu, memory, pod count) and the least-allocated and balanced-allocation scores.

use crate::framework::{FilterPlugin, Rejection, ScorePlugin, MAX_NODE_SCORE};
use crate::resources::Resources;
use crate::snapshot::{NodeInfo, PodInfo};

/// Rejects nodes where the pods' requests plus this pod's would exceed allocatable cpu or
/// memory, or where the pod count would exceed allocatable `pods`. Every insufficient resource
/// is reported (`Too many pods`, `Insufficient cpu`, `Insufficient memory`); resolvable.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let mut reasons = Vec::new();
        if node.pod_count + 1 > node.allocatable.pods {
            reasons.push("Too many pods".into());
        }
        let want = pod.requests.requests;
        let free = node.allocatable.resources;
        if want.cpu_millis > 0 && node.requested.cpu_millis.saturating_add(want.cpu_millis) > free.cpu_millis {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory_bytes > 0 && node.requested.memory_bytes.saturating_add(want.memory_bytes) > free.memory_bytes {
            reasons.push("Insufficient memory".into());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Rejection { plugin: self.name(), code: crate::Code::Unschedulable, reasons })
        }
    }
}

/// Requested (with this pod, scoring requests) and allocatable, per resource: (cpu, memory).
fn usage(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    let r: Resources = node.scoring_requested + pod.requests.scoring;
    let a = node.allocatable.resources;
    [(r.cpu_millis, a.cpu_millis), (r.memory_bytes, a.memory_bytes)]
}

/// Prefers nodes with the most free cpu and memory after placing the pod: per resource
/// `(allocatable - requested) * 100 / allocatable`, averaged.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "LeastAllocated"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let per_resource = usage(pod, node).map(|(requested, allocatable)| {
            if allocatable <= 0 || requested > allocatable {
                0
            } else {
                // In i64 unless the product overflows (allocatable beyond ~92 PB): 128-bit
                // division is a tenth of a pass over thousands of nodes.
                match (allocatable - requested).checked_mul(MAX_NODE_SCORE) {
                    Some(scaled) => scaled / allocatable,
                    None => {
                        ((allocatable - requested) as i128 * i128::from(MAX_NODE_SCORE) / allocatable as i128) as i64
                    }
                }
            }
        });
        per_resource.iter().sum::<i64>() / per_resource.len() as i64
    }
}

/// Prefers nodes whose cpu and memory would be used in similar proportions after placing the
/// pod: `100 * (1 - |cpu fraction - memory fraction| / 2)` (the standard deviation of the two
/// fractions), fractions capped at 1.
#[derive(Debug, Default, Clone, Copy)]
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "BalancedAllocation"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let [cpu, mem] =
            usage(pod, node).map(
                |(requested, allocatable)| {
                    if allocatable <= 0 {
                        1.0
                    } else {
                        (requested as f64 / allocatable as f64).min(1.0)
                    }
                },
            );
        let std_dev = (cpu - mem).abs() / 2.0;
        ((1.0 - std_dev) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{node, pod};
    use crate::snapshot::{PodEntry, SpreadGroups};

    fn least_allocated(node_memory: &str, pod_memory: &str) -> i64 {
        let n = NodeInfo::new(&node("n").cpu("4").memory(node_memory).build());
        let p = PodEntry::new(&pod("p").cpu("2").memory(pod_memory).build(), &mut SpreadGroups::default());
        LeastAllocated.score(&p.info, &n)
    }

    /// The score is the same whether it is computed in 64 bits or, for exabyte nodes whose
    /// product would overflow, in 128.
    #[test]
    fn least_allocated_scores_huge_nodes_without_overflow() {
        assert_eq!(least_allocated("4Gi", "1Gi"), (50 + 75) / 2);
        assert_eq!(least_allocated("4Ei", "1Ei"), (50 + 75) / 2);
        assert_eq!(least_allocated("7Ei", "6Ei"), (50 + 14) / 2);
        assert_eq!(least_allocated("1Gi", "2Gi"), 50 / 2, "a resource over allocatable scores 0");
    }
}
