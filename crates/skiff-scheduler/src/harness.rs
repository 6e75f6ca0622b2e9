//! Test harness: concise builders for mock nodes and pods, and a `Harness` that schedules them and answers questions about the result.
//!
//! Public (not `#[cfg(test)]`) so other crates' tests can build scheduler inputs the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeCondition, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, PreferredSchedulingTerm, ResourceRequirements,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::{ClusterSnapshot, Decision, Scheduler, SchedulerConfig};

/// Starts a Ready node with 4 cpu, 8Gi memory and room for 110 pods.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        node: Node {
            metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus::default()),
        },
        ready: Some("True".to_string()),
        allocatable: [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect(),
    }
}

/// Builds a mock [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
    ready: Option<String>,
    allocatable: BTreeMap<String, Quantity>,
}

impl NodeBuilder {
    pub fn cpu(mut self, q: &str) -> Self {
        self.allocatable.insert("cpu".into(), Quantity(q.into()));
        self
    }

    pub fn memory(mut self, q: &str) -> Self {
        self.allocatable.insert("memory".into(), Quantity(q.into()));
        self
    }

    pub fn max_pods(mut self, n: i64) -> Self {
        self.allocatable.insert("pods".into(), Quantity(n.to_string()));
        self
    }

    /// Removes an allocatable entry (`cpu`, `memory`, `pods`).
    pub fn without(mut self, resource: &str) -> Self {
        self.allocatable.remove(resource);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node.metadata.labels.get_or_insert_with(Default::default).insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.node.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    /// Cordons the node (`spec.unschedulable: true`).
    pub fn unschedulable(mut self) -> Self {
        self.node.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        self
    }

    /// `Ready=False`.
    pub fn not_ready(mut self) -> Self {
        self.ready = Some("False".into());
        self
    }

    /// `Ready=Unknown`.
    pub fn unreachable(mut self) -> Self {
        self.ready = Some("Unknown".into());
        self
    }

    /// No `Ready` condition at all.
    pub fn no_ready_condition(mut self) -> Self {
        self.ready = None;
        self
    }

    pub fn build(mut self) -> Node {
        let status = self.node.status.get_or_insert_with(Default::default);
        status.allocatable = Some(self.allocatable);
        status.conditions =
            self.ready.map(|s| vec![NodeCondition { type_: "Ready".into(), status: s, ..Default::default() }]);
        self.node
    }
}

impl From<NodeBuilder> for Node {
    fn from(b: NodeBuilder) -> Node {
        b.build()
    }
}

/// Starts a pending pod in namespace `default`, uid `uid-<name>`, one container without requests.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container { name: "c0".into(), ..Default::default() }],
                ..Default::default()
            }),
            status: None,
        },
    }
}

/// Builds a mock [`Pod`]. Resource and port methods apply to the last container added.
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn last_container(&mut self) -> &mut Container {
        self.spec().containers.last_mut().expect("a pod has at least one container")
    }

    fn resource(mut self, limits: bool, name: &str, q: &str) -> Self {
        let r = self.last_container().resources.get_or_insert_with(ResourceRequirements::default);
        let list = if limits { &mut r.limits } else { &mut r.requests };
        list.get_or_insert_with(Default::default).insert(name.into(), Quantity(q.into()));
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.into());
        self
    }

    /// Sets `metadata.uid`; `None` removes it.
    pub fn uid(mut self, uid: Option<&str>) -> Self {
        self.pod.metadata.uid = uid.map(Into::into);
        self
    }

    /// CPU request of the last container.
    pub fn cpu(self, q: &str) -> Self {
        self.resource(false, "cpu", q)
    }

    /// Memory request of the last container.
    pub fn memory(self, q: &str) -> Self {
        self.resource(false, "memory", q)
    }

    pub fn cpu_limit(self, q: &str) -> Self {
        self.resource(true, "cpu", q)
    }

    pub fn memory_limit(self, q: &str) -> Self {
        self.resource(true, "memory", q)
    }

    /// Adds another (regular) container; later resource calls apply to it.
    pub fn container(mut self) -> Self {
        let n = self.spec().containers.len();
        self.spec().containers.push(Container { name: format!("c{n}"), ..Default::default() });
        self
    }

    /// Adds an init container requesting `cpu` and `memory`; `sidecar` makes it restartable
    /// (`restartPolicy: Always`).
    pub fn init_container(mut self, cpu: &str, memory: &str, sidecar: bool) -> Self {
        let spec = self.spec();
        let n = spec.init_containers.as_ref().map_or(0, Vec::len);
        let requests = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        spec.init_containers.get_or_insert_with(Vec::new).push(Container {
            name: format!("init{n}"),
            restart_policy: sidecar.then(|| "Always".to_string()),
            resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
            ..Default::default()
        });
        self
    }

    pub fn overhead(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().overhead =
            Some([("cpu", cpu), ("memory", memory)].into_iter().map(|(k, v)| (k.into(), Quantity(v.into()))).collect());
        self
    }

    /// A TCP host port on all addresses, on the last container.
    pub fn host_port(self, port: i32) -> Self {
        self.host_port_on(None, "TCP", port)
    }

    pub fn host_port_on(mut self, ip: Option<&str>, protocol: &str, port: i32) -> Self {
        self.last_container().ports.get_or_insert_with(Vec::new).push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            host_ip: ip.map(Into::into),
            protocol: Some(protocol.into()),
            name: None,
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod.metadata.labels.get_or_insert_with(Default::default).insert(key.into(), value.into());
        self
    }

    /// Adds a controller owner reference (a ReplicaSet with this uid).
    pub fn owner(mut self, uid: &str) -> Self {
        self.pod.metadata.owner_references.get_or_insert_with(Vec::new).push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec().node_selector.get_or_insert_with(Default::default).insert(key.into(), value.into());
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }

    /// Adds a required expression to the last required term (starting the first term if none).
    pub fn require(mut self, key: &str, operator: &str, values: &[&str]) -> Self {
        let selector = self
            .node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default);
        if selector.node_selector_terms.is_empty() {
            selector.node_selector_terms.push(NodeSelectorTerm::default());
        }
        let term = selector.node_selector_terms.last_mut().expect("just ensured");
        term.match_expressions.get_or_insert_with(Vec::new).push(requirement(key, operator, values));
        self
    }

    /// Starts another required term (terms are ORed).
    pub fn or_require(mut self, key: &str, operator: &str, values: &[&str]) -> Self {
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(NodeSelectorTerm::default());
        self.require(key, operator, values)
    }

    /// Adds a preferred term with one expression.
    pub fn prefer(mut self, weight: i32, key: &str, operator: &str, values: &[&str]) -> Self {
        self.node_affinity().preferred_during_scheduling_ignored_during_execution.get_or_insert_with(Vec::new).push(
            PreferredSchedulingTerm {
                weight,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![requirement(key, operator, values)]),
                    match_fields: None,
                },
            },
        );
        self
    }

    /// Adds a toleration; empty strings leave fields unset.
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec().tolerations.get_or_insert_with(Vec::new).push(Toleration {
            key: opt(key),
            operator: opt(operator),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        });
        self
    }

    /// Binds the pod to a node (`spec.nodeName`), making it a running pod in the snapshot.
    pub fn on_node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.pod.status.get_or_insert_with(PodStatus::default).phase = Some(phase.into());
        self
    }

    pub fn deleting(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    /// `metadata.creationTimestamp` as seconds after the Unix epoch.
    pub fn created(mut self, seconds: i64) -> Self {
        let ts = k8s_openapi::jiff::Timestamp::from_second(seconds).expect("timestamp in range");
        self.pod.metadata.creation_timestamp = Some(Time(ts));
        self
    }

    pub fn scheduler_name(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.into());
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }
}

impl From<PodBuilder> for Pod {
    fn from(b: PodBuilder) -> Pod {
        b.build()
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

/// Nodes and pods to schedule, plus the scheduler configuration (seed 0 by default).
#[derive(Debug, Clone, Default)]
pub struct Harness {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub config: SchedulerConfig,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::default()
    }

    pub fn add_node(&mut self, node: impl Into<Node>) -> &mut Self {
        self.nodes.push(node.into());
        self
    }

    /// Adds `count` nodes named `<prefix>-0`, `<prefix>-1`, …, each shaped by `shape`.
    pub fn add_nodes(&mut self, prefix: &str, count: usize, shape: impl Fn(NodeBuilder) -> NodeBuilder) -> &mut Self {
        for i in 0..count {
            self.nodes.push(shape(node(&format!("{prefix}-{i}"))).build());
        }
        self
    }

    pub fn add_pod(&mut self, pod: impl Into<Pod>) -> &mut Self {
        self.pods.push(pod.into());
        self
    }

    /// Adds `count` replicas named `<prefix>-0`, … of one controller (owner uid `<prefix>`).
    pub fn add_replicas(&mut self, prefix: &str, count: usize, shape: impl Fn(PodBuilder) -> PodBuilder) -> &mut Self {
        for i in 0..count {
            self.pods.push(shape(pod(&format!("{prefix}-{i}")).owner(prefix)).build());
        }
        self
    }

    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.config.seed = seed;
        self
    }

    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot::new(&self.nodes, &self.pods)
    }

    /// Schedules with the default plugins.
    pub fn schedule(&self) -> Outcome {
        self.schedule_with(&Scheduler::new(self.config.clone()))
    }

    pub fn schedule_with(&self, scheduler: &Scheduler) -> Outcome {
        Outcome { decisions: scheduler.schedule(&self.snapshot()) }
    }
}

/// The decisions of one pass, with lookups by pod name.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
}

impl Outcome {
    /// The decision for the pod with this name (any namespace).
    pub fn decision(&self, pod: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.pod().name == pod)
    }

    /// The node the pod was bound to.
    pub fn node_of(&self, pod: &str) -> Option<&str> {
        self.decision(pod).and_then(Decision::node)
    }

    /// The unschedulable message for the pod; panics if the pod was bound or not decided.
    pub fn message_of(&self, pod: &str) -> String {
        match self.decision(pod) {
            Some(Decision::Unschedulable(u)) => u.message(),
            other => panic!("{pod} is not unschedulable: {other:?}"),
        }
    }

    /// Pod name → node name for every bound pod.
    pub fn placements(&self) -> BTreeMap<String, String> {
        self.decisions.iter().filter_map(|d| Some((d.pod().name.clone(), d.node()?.to_string()))).collect()
    }

    /// Node name → number of pods bound to it in this pass.
    pub fn per_node(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for node in self.decisions.iter().filter_map(Decision::node) {
            *counts.entry(node.to_string()).or_insert(0) += 1;
        }
        counts
    }

    pub fn bound_count(&self) -> usize {
        self.decisions.iter().filter(|d| d.node().is_some()).count()
    }
}
