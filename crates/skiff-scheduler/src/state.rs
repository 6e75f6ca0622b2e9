//! The cluster as the scheduler keeps it between passes: nodes with their bound pods
//! accounted, updated pod by pod and node by node (as kube-scheduler's cache is), so a pass
//! costs what changed plus the nodes it evaluates, not a rebuild of every node and bound pod.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::snapshot::{ClusterSnapshot, NodeInfo, PendingPod, PodEntry};

/// Nodes (sorted by name) with the pods bound to them accounted, and the pending pods, kept
/// up to date by [`set_node`](ClusterState::set_node), [`remove_node`](ClusterState::remove_node),
/// [`set_pod`](ClusterState::set_pod) and [`remove_pod`](ClusterState::remove_pod), in any
/// order. Its [`snapshot`](ClusterState::snapshot) always equals
/// [`ClusterSnapshot::from_entries`] over the same nodes and pods.
///
/// Pods are known by the caller's key `K`; every entry must come from one
/// [`crate::SpreadGroups`] (start a new state with a new one).
#[derive(Debug)]
pub struct ClusterState<K> {
    /// Shared with the last snapshot; copied on the next change only if that snapshot is still
    /// alive.
    nodes: Arc<Vec<NodeInfo>>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    pods: HashMap<K, Arc<PodEntry>>,
    pending: HashMap<K, Arc<PodEntry>>,
}

impl<K> Default for ClusterState<K> {
    fn default() -> Self {
        ClusterState { nodes: Arc::default(), index: HashMap::new(), pods: HashMap::new(), pending: HashMap::new() }
    }
}

/// What a pod holds on its node: its node's name when it counts there (bound, not terminated).
fn holds(entry: &PodEntry) -> Option<&str> {
    entry.node.as_deref().filter(|_| !entry.terminated)
}

impl<K: Hash + Eq + Clone> ClusterState<K> {
    /// A state of `nodes` (as [`NodeInfo::new`] builds them, nothing placed) and `pods`, built
    /// in one go; later nodes and pods with a name or key seen before replace the earlier.
    pub fn from_entries(
        nodes: impl IntoIterator<Item = NodeInfo>,
        pods: impl IntoIterator<Item = (K, Arc<PodEntry>)>,
    ) -> ClusterState<K> {
        let mut by_name: HashMap<String, NodeInfo> = HashMap::new();
        for n in nodes {
            by_name.insert(n.name.clone(), n);
        }
        let mut list: Vec<NodeInfo> = by_name.into_values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let mut state = ClusterState { nodes: Arc::new(list), ..ClusterState::default() };
        state.reindex();
        // The nodes are not shared yet: each pod is accounted in place.
        for (key, entry) in pods {
            state.set_pod(key, entry);
        }
        state
    }

    fn reindex(&mut self) {
        self.index = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    }

    /// Adds a node, or replaces the facts of one with the same name (what is placed on it
    /// stays). `info` is as [`NodeInfo::new`] builds it.
    pub fn set_node(&mut self, mut info: NodeInfo) {
        if let Some(&i) = self.index.get(&info.name) {
            let nodes = Arc::make_mut(&mut self.nodes);
            let old = std::mem::replace(&mut nodes[i], info);
            nodes[i].keep_placements_of(old);
            return;
        }
        // A new node: the pods already bound to it (seen before it) now count there.
        for entry in self.pods.values() {
            if holds(entry) == Some(info.name.as_str()) {
                info.add_pod(&entry.info);
            }
        }
        let nodes = Arc::make_mut(&mut self.nodes);
        let at = nodes.partition_point(|n| n.name < info.name);
        nodes.insert(at, info);
        self.reindex();
    }

    /// Forgets a node; the pods bound to it stay known and count again if it returns.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(i) = self.index.get(name).copied() {
            Arc::make_mut(&mut self.nodes).remove(i);
            self.reindex();
        }
    }

    /// Adds a pod or replaces the entry of the pod with the same key, moving its accounting.
    pub fn set_pod(&mut self, key: K, entry: Arc<PodEntry>) {
        self.remove_pod(&key);
        if let Some(&i) = holds(&entry).and_then(|n| self.index.get(n)) {
            Arc::make_mut(&mut self.nodes)[i].add_pod(&entry.info);
        } else if entry.is_pending() {
            self.pending.insert(key.clone(), entry.clone());
        }
        self.pods.insert(key, entry);
    }

    /// Forgets a pod, releasing what it held on its node.
    pub fn remove_pod(&mut self, key: &K) {
        let Some(old) = self.pods.remove(key) else { return };
        if let Some(&i) = holds(&old).and_then(|n| self.index.get(n)) {
            Arc::make_mut(&mut self.nodes)[i].remove_pod(&old.info);
        }
        self.pending.remove(key);
    }

    /// Whether any pod waits for a node.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The nodes, in name order, with their pods accounted.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Pods known, bound or not.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The input of a pass: the nodes as they are now (shared, not copied) and the pending pods
    /// in queue order.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let pending = self.pending.values().map(|e| PendingPod(e.clone())).collect();
        ClusterSnapshot::with_pending(self.nodes.clone(), pending)
    }
}
