//! The immutable cluster snapshot: nodes with the pods already bound to them, and the pending pods.
//!
//! Everything a plugin reads is extracted from the Kubernetes objects once, here, so filtering
//! and scoring never re-parse quantities, selectors or taints.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use crate::plugins::node_affinity::{NodeSelectorTerm, RequiredNodeSelector};
use crate::plugins::node_ports::HostPort;
use crate::resources::{pod_requests, Allocatable, PodRequests, Resources};
use crate::SchedulerError;

/// Identifies a pod in decisions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`, when the pod has one (a binding should carry it as a precondition).
    pub uid: Option<String>,
}

impl PodRef {
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_string()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Identifies a group of replicas that should spread across nodes (see [`PodInfo::spread_group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// Hashes a [`GroupId`] (a small number handed out in order) with one multiplication instead
/// of SipHash: `ReplicaSpread` looks a group up on every node it scores.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupIdHasher(u64);

impl std::hash::Hasher for GroupIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Pods of each spread group on a node.
pub type GroupCounts = HashMap<GroupId, u32, std::hash::BuildHasherDefault<GroupIdHasher>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Controller(String),
    Labels(String, BTreeMap<String, String>),
}

/// What the plugins know about a pod, extracted once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: PodRef,
    pub labels: BTreeMap<String, String>,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    /// `spec.nodeSelector`: every entry must equal a node label.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<RequiredNodeSelector>,
    /// `spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution`: (weight, term).
    pub preferred_affinity: Vec<(i64, NodeSelectorTerm)>,
    /// Replicas of the same controller (`ownerReferences` entry with `controller: true`), or
    /// failing that pods of one namespace with identical non-empty labels, share a group.
    pub spread_group: Option<GroupId>,
    pub priority: i32,
    /// Stable hash of the pod's identity (uid, else namespace/name), for tie-breaking.
    pub identity_hash: u64,
}

/// A pod waiting for a node, in queue order (see [`ClusterSnapshot::pending`]): its
/// [`PodEntry`], shared with whoever keeps entries across passes and read through `Deref`
/// (`pending.info`, `pending.scheduler_name`, `pending.error`).
#[derive(Debug, Clone)]
pub struct PendingPod(pub(crate) Arc<PodEntry>);

impl std::ops::Deref for PendingPod {
    type Target = PodEntry;

    fn deref(&self) -> &PodEntry {
        &self.0
    }
}

/// Whether the node's `Ready` condition says it can run pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// `Ready=True`.
    Ready,
    /// `Ready=False`: the node reports it cannot run pods (Kubernetes taints it `not-ready`).
    NotReady,
    /// `Ready=Unknown` or no condition: the node has not been heard from (taint `unreachable`).
    Unknown,
}

/// What a node's object says, extracted once per version of the Node and shared (not copied)
/// by every snapshot and scheduling pass that includes the node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Allocatable,
    pub unschedulable: bool,
    pub readiness: Readiness,
    pub taints: Vec<Taint>,
    /// Stable hash of the node name, for tie-breaking.
    pub identity_hash: u64,
}

/// A node as the plugins see it: static facts from the Node object (shared, read through
/// `Deref`, so `node.labels` works) plus what is placed on it, including pods placed earlier
/// in the same scheduling batch. Cloning one copies only the placement accounting.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    facts: Arc<NodeFacts>,
    /// Sum of the fit requests of the pods on the node.
    pub requested: Resources,
    /// Sum of the scoring requests (with best-effort defaults) of the pods on the node.
    pub scoring_requested: Resources,
    pub pod_count: i64,
    pub used_ports: Vec<HostPort>,
    /// Number of pods of each spread group on the node.
    pub group_counts: GroupCounts,
}

impl std::ops::Deref for NodeInfo {
    type Target = NodeFacts;

    fn deref(&self) -> &NodeFacts {
        &self.facts
    }
}

impl NodeInfo {
    /// Builds the node's static facts, with nothing placed on it yet.
    pub fn new(node: &Node) -> NodeInfo {
        let name = node.metadata.name.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let facts = NodeFacts {
            identity_hash: hash_str(&name),
            name,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            allocatable: Allocatable::of_node(node),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            readiness: match ready {
                Some("True") => Readiness::Ready,
                Some("False") => Readiness::NotReady,
                _ => Readiness::Unknown,
            },
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
        };
        NodeInfo {
            facts: Arc::new(facts),
            requested: Resources::default(),
            scoring_requested: Resources::default(),
            pod_count: 0,
            used_ports: Vec::new(),
            group_counts: GroupCounts::default(),
        }
    }

    /// Whether two infos share one extraction of the node's facts.
    pub fn same_facts(&self, other: &NodeInfo) -> bool {
        Arc::ptr_eq(&self.facts, &other.facts)
    }

    /// Takes over what is placed on `old` (the same node, an earlier version of its object).
    pub(crate) fn keep_placements_of(&mut self, old: NodeInfo) {
        self.requested = old.requested;
        self.scoring_requested = old.scoring_requested;
        self.pod_count = old.pod_count;
        self.used_ports = old.used_ports;
        self.group_counts = old.group_counts;
    }

    /// Undoes [`NodeInfo::add_pod`] of the same pod.
    pub fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested -= pod.requests.requests;
        self.scoring_requested -= pod.requests.scoring;
        self.pod_count -= 1;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(g) = pod.spread_group {
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.group_counts.entry(g) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Accounts a pod as running on this node.
    pub fn add_pod(&mut self, pod: &PodInfo) {
        self.requested += pod.requests.requests;
        self.scoring_requested += pod.requests.scoring;
        self.pod_count += 1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(g) = pod.spread_group {
            *self.group_counts.entry(g).or_insert(0) += 1;
        }
    }
}

/// Immutable input to one scheduling pass: nodes (sorted by name, each with its bound pods
/// accounted) and the pending pods in queue order. The nodes may be shared with the
/// [`crate::ClusterState`] the snapshot was taken of.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    nodes: Arc<Vec<NodeInfo>>,
    pending: Vec<PendingPod>,
}

impl ClusterSnapshot {
    /// Builds a snapshot from the API objects.
    ///
    /// A pod with `spec.nodeName` set is bound: it counts against its node unless it has
    /// terminated (`Succeeded`/`Failed`); pods bound to nodes not in `nodes` are ignored. A pod
    /// without `spec.nodeName` that is neither terminated nor being deleted is pending. Pending
    /// pods are queued by priority (highest first), then creation time, then namespace/name.
    /// Nodes with duplicate names keep the first occurrence.
    pub fn new(nodes: &[Node], pods: &[Pod]) -> ClusterSnapshot {
        Self::from_refs(nodes, pods)
    }

    /// [`ClusterSnapshot::new`] over borrowed objects (callers that cache typed objects need
    /// not clone them).
    pub fn from_refs<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> ClusterSnapshot {
        let nodes: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::new).collect();
        let mut groups = SpreadGroups::default();
        let pods: Vec<Arc<PodEntry>> = pods.into_iter().map(|p| Arc::new(PodEntry::new(p, &mut groups))).collect();
        Self::from_entries(&nodes, &pods)
    }

    /// [`ClusterSnapshot::from_refs`] over facts extracted earlier: node infos as built by
    /// [`NodeInfo::new`] (nothing placed yet) and pod entries whose spread groups all come from
    /// one [`SpreadGroups`]. A caller that keeps entries across passes extracts each pod once
    /// per change instead of once per pass.
    pub fn from_entries<'a>(
        nodes: impl IntoIterator<Item = &'a NodeInfo>,
        pods: impl IntoIterator<Item = &'a Arc<PodEntry>>,
    ) -> ClusterSnapshot {
        let mut node_infos: Vec<NodeInfo> = nodes.into_iter().cloned().collect();
        // Callers that keep nodes in name order skip the sort (and its scratch buffer).
        if !node_infos.is_sorted_by(|a, b| a.name <= b.name) {
            node_infos.sort_by(|a, b| a.name.cmp(&b.name));
        }
        node_infos.dedup_by(|b, a| a.name == b.name);
        let index: HashMap<&str, usize> = node_infos.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let pods = pods.into_iter();
        let mut placed: Vec<(usize, &PodInfo)> = Vec::with_capacity(pods.size_hint().0);
        let mut pending = Vec::new();
        for entry in pods {
            if entry.terminated {
                continue;
            }
            match entry.node.as_deref() {
                // A bound pod with unreadable quantities still occupies its node; its requests
                // are counted as zero rather than guessed.
                Some(node) => {
                    if let Some(&i) = index.get(node) {
                        placed.push((i, &entry.info));
                    }
                }
                None if entry.deleting => {}
                None => pending.push(PendingPod(entry.clone())),
            }
        }
        for (i, info) in placed {
            node_infos[i].add_pod(info);
        }
        Self::with_pending(Arc::new(node_infos), pending)
    }

    /// A snapshot of `nodes` (sorted by unique name, bound pods accounted) and `pending`, which
    /// is put in queue order.
    pub(crate) fn with_pending(nodes: Arc<Vec<NodeInfo>>, mut pending: Vec<PendingPod>) -> ClusterSnapshot {
        pending.sort_by(|a, b| {
            b.info
                .priority
                .cmp(&a.info.priority)
                .then_with(|| creation_key(a).cmp(&creation_key(b)))
                .then_with(|| a.info.pod.cmp(&b.info.pod))
        });
        ClusterSnapshot { nodes, pending }
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn pending(&self) -> &[PendingPod] {
        &self.pending
    }
}

/// Spread group ids, stable for as long as one `SpreadGroups` is used: entries built with the
/// same one can go into one snapshot.
#[derive(Debug, Default)]
pub struct SpreadGroups {
    ids: HashMap<GroupKey, GroupId>,
}

impl SpreadGroups {
    fn id(&mut self, key: GroupKey) -> GroupId {
        let next = GroupId(self.ids.len() as u32);
        *self.ids.entry(key).or_insert(next)
    }

    /// Distinct groups seen (they are never forgotten: start afresh when this grows large).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What a snapshot needs of one pod, extracted once per version of the pod.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub info: PodInfo,
    /// `spec.nodeName`, when bound.
    pub node: Option<String>,
    /// `Succeeded` or `Failed`: holds nothing and waits for nothing.
    pub terminated: bool,
    /// Has a `deletionTimestamp`.
    pub deleting: bool,
    /// `spec.schedulerName` (`default-scheduler` when unset).
    pub scheduler_name: String,
    /// Set when the spec could not be interpreted; the pod is then reported unschedulable.
    pub error: Option<SchedulerError>,
    creation: Option<k8s_openapi::jiff::Timestamp>,
}

impl PodEntry {
    pub fn new(pod: &Pod, groups: &mut SpreadGroups) -> PodEntry {
        let spec = pod.spec.as_ref();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let (info, error) = pod_info(pod, groups);
        PodEntry {
            info,
            node: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            terminated: matches!(phase, Some("Succeeded") | Some("Failed")),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            scheduler_name: spec
                .and_then(|s| s.scheduler_name.clone())
                .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_string()),
            error,
            creation: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// Pending: not bound, not terminated, not being deleted.
    pub fn is_pending(&self) -> bool {
        self.node.is_none() && !self.terminated && !self.deleting
    }
}

fn creation_key(p: &PendingPod) -> (bool, Option<k8s_openapi::jiff::Timestamp>) {
    // Pods without a creation timestamp sort last.
    (p.creation.is_none(), p.creation)
}

fn pod_info(pod: &Pod, groups: &mut SpreadGroups) -> (PodInfo, Option<SchedulerError>) {
    let spec = pod.spec.as_ref();
    let pod_ref = PodRef::of(pod);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let (requests, error) = match pod_requests(pod) {
        Ok(r) => (r, None),
        Err(e) => (PodRequests::default(), Some(e)),
    };
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && !o.uid.is_empty())
        .map(|o| GroupKey::Controller(o.uid.clone()));
    let key = controller
        .or_else(|| (!labels.is_empty()).then(|| GroupKey::Labels(pod_ref.namespace.clone(), labels.clone())));
    let spread_group = key.map(|k| groups.id(k));
    let node_affinity = spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
    let identity_hash = match pod_ref.uid.as_deref() {
        Some(uid) if !uid.is_empty() => hash_str(uid),
        _ => hash_str(&format!("{}/{}", pod_ref.namespace, pod_ref.name)),
    };
    let info = PodInfo {
        labels,
        requests,
        host_ports: spec.map(HostPort::of_pod).unwrap_or_default(),
        tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
        node_selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(),
        required_affinity: node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(RequiredNodeSelector::new),
        preferred_affinity: node_affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|terms| terms.iter().map(|t| (i64::from(t.weight), NodeSelectorTerm::new(&t.preference))).collect())
            .unwrap_or_default(),
        spread_group,
        priority: spec.and_then(|s| s.priority).unwrap_or(0),
        identity_hash,
        pod: pod_ref,
    };
    (info, error)
}

/// FNV-1a followed by a SplitMix64 finaliser: stable across runs and platforms (unlike
/// `std`'s randomly seeded hasher), which keeps tie-breaking reproducible.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64 finaliser.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
