//! Node condition filters: cordoned nodes (`spec.unschedulable`) and nodes that are not `Ready=True`.

use crate::framework::{FilterPlugin, Rejection};
use crate::plugins::taint_toleration::{tolerates, NO_SCHEDULE};
use crate::snapshot::{NodeInfo, PodInfo, Readiness};

/// Taint key Kubernetes puts on cordoned nodes; tolerating it lets a pod onto them.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Taint key for nodes whose `Ready` condition is `False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key for nodes whose `Ready` condition is `Unknown` (not heard from).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Rejects cordoned nodes unless the pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if node.unschedulable && !tolerates(&pod.tolerations, TAINT_UNSCHEDULABLE, "", NO_SCHEDULE) {
            return Err(Rejection::unresolvable(self.name(), "node(s) were unschedulable"));
        }
        Ok(())
    }
}

/// Rejects nodes that are not `Ready=True`. The condition is treated as the taint the node
/// lifecycle controller would set for it (`not-ready` for `False`, `unreachable` for `Unknown`
/// or a missing condition, effect `NoSchedule`), so pods tolerating that taint (daemons) pass
/// whether or not the taint has been written yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let (taint, reason) = match node.readiness {
            Readiness::Ready => return Ok(()),
            Readiness::NotReady => (TAINT_NOT_READY, "node(s) were not ready"),
            Readiness::Unknown => (TAINT_UNREACHABLE, "node(s) were unreachable"),
        };
        if tolerates(&pod.tolerations, taint, "", NO_SCHEDULE) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(self.name(), reason))
        }
    }
}
