//! Node lifecycle: judges node liveness from in-memory heartbeats (never written to the store);
//! a silent node becomes Ready=Unknown with the `unreachable:NoExecute` taint, then loses its pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_api::registry::{NODES, PODS};
use tokio::sync::watch;

use crate::api::ObjectApi;
use crate::events::EventRecorder;
use crate::informer::{sleep_or_stop, Cache};
use crate::util;

pub const COMPONENT: &str = "node-controller";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Last time each node's agent was heard from, kept in the leader's memory only. Cheap to
/// clone; the agent gateway calls [`HeartbeatTable::record`] on every heartbeat.
#[derive(Clone, Default)]
pub struct HeartbeatTable {
    inner: Arc<Mutex<HashMap<String, Instant>>>,
}

impl HeartbeatTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A heartbeat from `node` now.
    pub fn record(&self, node: &str) {
        self.record_at(node, Instant::now());
    }

    pub fn record_at(&self, node: &str, at: Instant) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(node) {
            Some(t) => *t = (*t).max(at),
            None => {
                m.insert(node.to_string(), at);
            }
        }
    }

    pub fn last_seen(&self, node: &str) -> Option<Instant> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).get(node).copied()
    }

    /// [`HeartbeatTable::last_seen`] of many nodes under one lock.
    pub fn last_seen_all<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> Vec<Option<Instant>> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        nodes.into_iter().map(|n| m.get(n).copied()).collect()
    }

    /// Drop a node (deregistered).
    pub fn forget(&self, node: &str) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).remove(node);
    }
}

/// Timing of the node lifecycle controller.
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// Silence after which a node is unreachable.
    pub lease_ttl: Duration,
    /// Further time before an unreachable node's pods are deleted.
    pub eviction_timeout: Duration,
    /// How often nodes are checked.
    pub monitor_period: Duration,
}

/// Does `pod` tolerate the unreachable taint, and for how long (`None` = forever)?
fn unreachable_toleration(pod: &Value) -> Option<Option<i64>> {
    let tols = pod["spec"]["tolerations"].as_array()?;
    let mut best: Option<Option<i64>> = None;
    for t in tols {
        let key = t["key"].as_str().unwrap_or("");
        let op = t["operator"].as_str().unwrap_or("Equal");
        let effect = t["effect"].as_str().unwrap_or("");
        let key_ok = key == UNREACHABLE_TAINT || (key.is_empty() && op == "Exists");
        let effect_ok = effect.is_empty() || effect == "NoExecute";
        let value_ok = op == "Exists" || t["value"].as_str().unwrap_or("").is_empty();
        if key_ok && effect_ok && value_ok {
            let secs = t["tolerationSeconds"].as_i64();
            best = Some(match (best, secs) {
                (Some(None), _) | (_, None) => None,
                (Some(Some(a)), Some(b)) => Some(a.max(b)),
                (None, Some(b)) => Some(b),
            });
        }
    }
    best
}

/// Ready known (not `Unknown`) and without the unreachable taint: a heard-from node like this
/// needs nothing.
fn is_settled(node: &Value) -> bool {
    util::condition(node, "Ready").is_some_and(|c| c["status"] != "Unknown") && !has_unreachable_taint(node)
}

fn has_unreachable_taint(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == UNREACHABLE_TAINT))
}

pub struct NodeLifecycle {
    api: Arc<dyn ObjectApi>,
    nodes: Cache,
    pods: Cache,
    heartbeats: HeartbeatTable,
    events: EventRecorder,
    cfg: NodeLifecycleConfig,
    /// When this controller first saw each node: a new leader judges nobody before a full TTL.
    first_seen: HashMap<String, Instant>,
    /// When each node was found unreachable (the eviction clock).
    unreachable_since: HashMap<String, Instant>,
    /// The version of each node last found Ready (known) and untainted: while the cache holds
    /// that same version, a heard-from node needs no look at its conditions or taints.
    settled: HashMap<String, Arc<Value>>,
    /// The node cache's revision when forgotten nodes were last dropped from the maps above.
    pruned_at: Option<u64>,
}

impl NodeLifecycle {
    pub fn new(
        api: Arc<dyn ObjectApi>,
        nodes: Cache,
        pods: Cache,
        heartbeats: HeartbeatTable,
        events: EventRecorder,
        cfg: NodeLifecycleConfig,
    ) -> Self {
        NodeLifecycle {
            api,
            nodes,
            pods,
            heartbeats,
            events: events.for_component(COMPONENT),
            cfg,
            first_seen: HashMap::new(),
            unreachable_since: HashMap::new(),
            settled: HashMap::new(),
            pruned_at: None,
        }
    }

    /// Check every node each period, or sooner when a lease or an eviction timeout runs out
    /// before then, until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let next_due = tokio::select! {
                due = self.tick() => due,
                _ = crate::informer::stopped(&mut stop) => return,
            };
            let mut pause = self.cfg.monitor_period;
            if let Some(due) = next_due {
                pause = pause.min(due.saturating_duration_since(Instant::now()).max(Duration::from_millis(5)));
            }
            if sleep_or_stop(pause, &mut stop).await {
                return;
            }
        }
    }

    /// One pass over all nodes. Write failures (conflicts, lost leadership) are retried next
    /// pass. Returns the earliest future moment a lease or an eviction timeout runs out.
    pub async fn tick(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        let mut due_at = |at: Instant| {
            if at > now {
                next_due = Some(next_due.map_or(at, |d| d.min(at)));
            }
        };
        let nodes = self.nodes.list(None);
        // Deleted nodes are forgotten when the node set changed, not at every pass.
        let revision = self.nodes.revision();
        if self.pruned_at != Some(revision) {
            let names: std::collections::HashSet<&str> = nodes.iter().map(|n| util::name(n)).collect();
            self.first_seen.retain(|n, _| names.contains(n.as_str()));
            self.unreachable_since.retain(|n, _| names.contains(n.as_str()));
            self.settled.retain(|n, _| names.contains(n.as_str()));
            self.pruned_at = Some(revision);
        }
        let beats = self.heartbeats.last_seen_all(nodes.iter().map(|n| util::name(n)));
        for (node, last_beat) in nodes.into_iter().zip(beats) {
            // Every healthy node is visited at every pass: no allocation on that path.
            let name = util::name(&node);
            let first = match self.first_seen.get(name) {
                Some(t) => *t,
                None => {
                    self.first_seen.insert(name.to_string(), now);
                    now
                }
            };
            let heard = last_beat.map_or(first, |b| b.max(first));
            let silent = now.saturating_duration_since(heard) >= self.cfg.lease_ttl;
            let result = if silent {
                // Unreachable since the lease ran out (not since this pass noticed it).
                let since = *self.unreachable_since.entry(name.to_string()).or_insert(heard + self.cfg.lease_ttl);
                due_at(since + self.cfg.eviction_timeout);
                self.handle_unreachable(&node, now.saturating_duration_since(since)).await
            } else {
                due_at(heard + self.cfg.lease_ttl);
                self.unreachable_since.remove(name);
                let heard_recently = last_beat.is_some_and(|b| now.saturating_duration_since(b) < self.cfg.lease_ttl);
                if !heard_recently || self.settled.get(name).is_some_and(|v| Arc::ptr_eq(v, &node)) {
                    Ok(())
                } else {
                    let r = self.handle_alive(&node).await;
                    if r.is_ok() && is_settled(&node) {
                        self.settled.insert(name.to_string(), node.clone());
                    }
                    r
                }
            };
            if let Err(e) = result {
                tracing::debug!(node = %name, error = %e, "node lifecycle write failed; retrying next pass");
            }
        }
        next_due
    }

    async fn handle_unreachable(&self, node: &Value, unreachable_for: Duration) -> Result<(), crate::ApiCallError> {
        let ready = util::condition(node, "Ready");
        if ready.is_none_or(|c| c["status"] != "Unknown") {
            let mut next = node.clone();
            let now = util::now_string();
            let mut conds = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
            if !conds.iter().any(|c| c["type"] == "Ready") {
                conds.push(json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.", "lastTransitionTime": now}));
            }
            for c in conds.iter_mut() {
                if c["status"] != "Unknown" {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                }
            }
            next["status"]["conditions"] = json!(conds);
            let written = self.api.update_status(&NODES, next).await?;
            tracing::info!(node = util::name(node), "node stopped sending heartbeats; marked Ready=Unknown");
            self.events.normal(
                &NODES,
                &written,
                "NodeNotReady",
                format!("Node {} status is now: NodeNotReady", util::name(node)),
            );
            if !has_unreachable_taint(&written) {
                self.add_taint(written).await?;
            }
        } else if !has_unreachable_taint(node) {
            self.add_taint(node.clone()).await?;
        }
        self.evict_pods(util::name(node), unreachable_for).await
    }

    async fn add_taint(&self, mut node: Value) -> Result<(), crate::ApiCallError> {
        let taint = json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": util::now_string()});
        match node["spec"]["taints"].as_array_mut() {
            Some(ts) => ts.push(taint),
            None => {
                util::object_at(&mut node, &["spec"]).insert("taints".into(), json!([taint]));
            }
        }
        self.api.update(&NODES, node).await.map(|_| ())
    }

    /// Delete (grace 0) the pods bound to an unreachable node whose tolerations have run out,
    /// all at once (their replacements wait for these deletes).
    async fn evict_pods(&self, node: &str, unreachable_for: Duration) -> Result<(), crate::ApiCallError> {
        let due: Vec<_> = self
            .pods
            .list(None)
            .into_iter()
            .filter(|pod| pod["spec"]["nodeName"].as_str() == Some(node))
            .filter(|pod| {
                let limit = match unreachable_toleration(pod) {
                    Some(None) => return false,
                    Some(Some(secs)) => Duration::from_secs(secs.max(0) as u64),
                    None => self.cfg.eviction_timeout,
                };
                unreachable_for >= limit
            })
            .collect();
        let deletes = due.iter().map(|pod| async move {
            let r = self.api.delete(&PODS, util::namespace(pod), util::name(pod), Some(util::uid(pod)), Some(0)).await;
            (pod, r)
        });
        let mut first_err = None;
        for (pod, r) in futures::future::join_all(deletes).await {
            match r {
                Ok(()) => {
                    tracing::info!(node, pod = util::name(pod), "evicted pod from unreachable node");
                    self.events.normal(
                        &PODS,
                        pod,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {}", ObjKeyDisplay(pod)),
                    );
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn handle_alive(&self, node: &Value) -> Result<(), crate::ApiCallError> {
        if is_settled(node) {
            // Nothing to write, no copy.
            return Ok(());
        }
        let mut node = node.clone();
        let ready = util::condition(&node, "Ready");
        if ready.is_none_or(|c| c["status"] == "Unknown") {
            let now = util::now_string();
            let mut conds = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conds.retain(|c| c["type"] != "Ready");
            for c in conds.iter_mut() {
                if c["status"] == "Unknown" && c["reason"] == "NodeStatusUnknown" {
                    c["status"] = json!("False");
                    c["reason"] = json!("NodeStatusRecovered");
                    c["message"] = json!("Heartbeats resumed.");
                    c["lastTransitionTime"] = json!(now);
                }
            }
            conds.push(json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastTransitionTime": now, "lastHeartbeatTime": now}));
            node["status"]["conditions"] = json!(conds);
            node = self.api.update_status(&NODES, node).await?;
            tracing::info!(node = util::name(&node), "node is heard from; marked Ready=True");
            self.events.normal(
                &NODES,
                &node,
                "NodeReady",
                format!("Node {} status is now: NodeReady", util::name(&node)),
            );
        }
        if has_unreachable_taint(&node) {
            if let Some(ts) = node["spec"]["taints"].as_array_mut() {
                ts.retain(|t| t["key"] != UNREACHABLE_TAINT);
            }
            self.api.update(&NODES, node).await?;
        }
        Ok(())
    }
}

struct ObjKeyDisplay<'a>(&'a Value);

impl std::fmt::Display for ObjKeyDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", util::ObjKey::of(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_of_the_unreachable_taint() {
        assert_eq!(unreachable_toleration(&json!({"spec": {}})), None);
        let p = json!({"spec": {"tolerations": [{"key": UNREACHABLE_TAINT, "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 30}]}});
        assert_eq!(unreachable_toleration(&p), Some(Some(30)));
        let p = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(unreachable_toleration(&p), Some(None));
        let p = json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}});
        assert_eq!(unreachable_toleration(&p), None);
    }

    #[test]
    fn heartbeats_only_move_forward() {
        let t = HeartbeatTable::new();
        let now = Instant::now();
        t.record_at("n1", now);
        t.record_at("n1", now - Duration::from_secs(5));
        assert_eq!(t.last_seen("n1"), Some(now));
        t.forget("n1");
        assert_eq!(t.last_seen("n1"), None);
    }
}
