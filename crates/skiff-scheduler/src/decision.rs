//! What scheduling a pending pod produces: a binding to a node, or an explanation of why none fits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::snapshot::PodRef;
use crate::SchedulerError;

/// Place `pod` on `node` (the caller writes it as a `pods/binding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub pod: PodRef,
    pub node: String,
}

/// No node can take the pod. [`message`](Unschedulable::message) is the Kubernetes-style
/// `PodScheduled=False` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub pod: PodRef,
    /// Nodes considered.
    pub num_nodes: usize,
    /// Number of nodes that gave each reason (a node may give several, e.g. cpu and memory).
    pub reasons: BTreeMap<Cow<'static, str>, usize>,
    /// Nodes whose rejection was `UnschedulableAndUnresolvable`: removing pods would not help.
    pub unresolvable_nodes: usize,
    /// Set when the pod's spec could not be interpreted; no node was tried.
    pub error: Option<SchedulerError>,
}

impl Unschedulable {
    /// Whether evicting lower-priority pods could make room on some node.
    pub fn preemption_may_help(&self) -> bool {
        self.error.is_none() && self.unresolvable_nodes < self.num_nodes
    }

    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
    /// affinity/selector.`: "count reason" entries sorted as strings, as Kubernetes does.
    pub fn message(&self) -> String {
        if let Some(e) = &self.error {
            return format!("pod spec cannot be scheduled: {e}");
        }
        if self.num_nodes == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let mut entries: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        entries.sort();
        format!("0/{} nodes are available: {}.", self.num_nodes, entries.join(", "))
    }
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The outcome for one pending pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind(Binding),
    Unschedulable(Unschedulable),
}

impl Decision {
    pub fn pod(&self) -> &PodRef {
        match self {
            Decision::Bind(b) => &b.pod,
            Decision::Unschedulable(u) => &u.pod,
        }
    }

    /// The chosen node, if the pod was bound.
    pub fn node(&self) -> Option<&str> {
        match self {
            Decision::Bind(b) => Some(&b.node),
            Decision::Unschedulable(_) => None,
        }
    }
}
