//! Node lifecycle: judges node liveness from in-memory heartbeats (never written to the store);
//! a silent node becomes Ready=Unknown with the `unreachable:NoExecute` taint, then loses its pods.
//!
//! Evictions are held in a disrupted zone, as Kubernetes' node controller does: when every node
//! of every zone is silent, or when more than two nodes and at least the unhealthy-zone threshold
//! of a zone are, the likelier cause is the leader's own network, and deleting the pods would
//! only move the outage onto the rest of the cluster. Nodes are still marked and tainted (no new
//! pod goes there); evictions resume, after a fresh eviction timeout, when the zone recovers.
//! A partially disrupted zone of more than the large-zone threshold's nodes is not held but
//! slowed: its silent nodes lose their pods one node at a time, at the secondary eviction rate
//! (Kubernetes' `--large-cluster-size-threshold` and `--secondary-node-eviction-rate`): in a
//! large zone a majority of silent nodes is likelier a real failure, and holding for ever would
//! leave their pods' capacity lost.

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
/// The longest time between two evictions in a slowed zone (a rate below one node a year).
pub const LONGEST_EVICTION_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

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
        self.lock().get(node).copied()
    }

    /// The whole table, locked: one lock for a pass over every node.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Added by a new leader to the lease of a node it has not heard from since it started.
    pub leader_grace: Duration,
    /// How often nodes are checked.
    pub monitor_period: Duration,
    /// Fraction of a zone's nodes (more than two) silent at once from which its evictions are
    /// held.
    pub unhealthy_zone_threshold: f64,
    /// A partially disrupted zone of more nodes than this is slowed instead of held.
    pub large_zone_threshold: usize,
    /// Time between two nodes' evictions in a slowed zone (`None`: slowed zones are held too).
    pub secondary_eviction_interval: Option<Duration>,
}

/// The labels whose values make up a node's zone (nodes without them form one zone).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn zone_of(node: &Value) -> String {
    let labels = &node["metadata"]["labels"];
    match (labels[REGION_LABEL].as_str(), labels[ZONE_LABEL].as_str()) {
        (None, None) => String::new(),
        (region, zone) => format!("{}/{}", region.unwrap_or(""), zone.unwrap_or("")),
    }
}

/// How disrupted one zone is, by the nodes silent past their lease (Kubernetes' zone states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// More than two nodes, and at least the threshold's fraction, are silent.
    PartialDisruption,
    /// Every node is silent.
    FullDisruption,
}

impl ZoneState {
    pub fn of(nodes: usize, silent: usize, threshold: f64) -> ZoneState {
        if silent > 0 && silent == nodes {
            ZoneState::FullDisruption
        } else if silent > 2 && silent as f64 >= threshold * nodes as f64 {
            ZoneState::PartialDisruption
        } else {
            ZoneState::Normal
        }
    }
}

/// How a zone's silent nodes lose their pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evictions {
    /// Each node's as soon as its eviction timeout (or its pods' tolerations) runs out.
    Free,
    /// One node at a time, a secondary eviction interval apart.
    Slow,
    /// None: the zone's nodes are marked and tainted only.
    Held,
}

/// How each zone evicts, from each zone's (nodes, silent) count: every zone holds when all
/// zones with nodes are fully disrupted (the leader is the likelier one cut off); a partially
/// disrupted zone holds, or is slowed when it has more than `large_zone` nodes. A fully
/// disrupted zone among healthy ones is a zone that went down: its pods move freely.
pub fn zone_evictions(counts: &[(usize, usize)], threshold: f64, large_zone: usize) -> Vec<Evictions> {
    let states: Vec<ZoneState> =
        counts.iter().map(|&(nodes, silent)| ZoneState::of(nodes, silent, threshold)).collect();
    let mut populated = counts.iter().zip(&states).filter(|((nodes, _), _)| *nodes > 0).peekable();
    let all_full = populated.peek().is_some() && populated.all(|(_, s)| *s == ZoneState::FullDisruption);
    counts
        .iter()
        .zip(&states)
        .map(|(&(nodes, _), s)| match s {
            _ if nodes == 0 => Evictions::Free,
            _ if all_full => Evictions::Held,
            ZoneState::PartialDisruption if nodes > large_zone => Evictions::Slow,
            ZoneState::PartialDisruption => Evictions::Held,
            _ => Evictions::Free,
        })
        .collect()
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
    /// When this controller (this leader's) started: heartbeats before it are another term's.
    started: Instant,
    /// What this controller keeps about each node, by name.
    tracks: HashMap<String, NodeTrack>,
    /// Passes so far: a track not visited by the latest pass belongs to a deleted node.
    passes: u64,
    /// The node cache's revision when forgotten nodes were last dropped from `tracks`.
    pruned_at: Option<u64>,
    /// Every zone seen, by index (never shrinks: zones are few); `""` is the unlabelled one.
    zones: Vec<String>,
    /// How each zone evicted at the latest pass, by index.
    modes: Vec<Evictions>,
    /// By zone index: when a slowed zone may next evict a node (one node per secondary eviction
    /// interval; kept across mode changes, so a zone flapping in and out of it cannot go faster).
    slow_next: Vec<Option<Instant>>,
}

/// One node as the lifecycle controller follows it.
struct NodeTrack {
    /// When this controller first saw the node: a new leader judges nobody before a full TTL.
    first_seen: Instant,
    /// When the node was found unreachable (the eviction clock).
    unreachable_since: Option<Instant>,
    /// The version of the node last found Ready (known) and untainted: while the cache holds
    /// that same version, a heard-from node needs no look at its conditions or taints.
    settled: Option<Arc<Value>>,
    /// The pass that last visited it.
    pass: u64,
    /// Index of its zone in `zones`, read from `zone_from` (a look into the JSON only when the
    /// node changes).
    zone: usize,
    zone_from: Option<Arc<Value>>,
    /// In a slowed zone: this node's eviction has had its turn (since it last turned
    /// unreachable), so its pods go as their tolerations run out without waiting again.
    slow_turn: bool,
}

/// What a pass found a node to need (most nodes need nothing).
enum NodeWork {
    /// Silent past its lease, unreachable for this long, in this zone (an index of `zones`).
    Unreachable(Duration, usize),
    /// Heard from, and not known to be Ready and untainted in this version.
    Alive,
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
            started: Instant::now(),
            tracks: HashMap::new(),
            passes: 0,
            pruned_at: None,
            zones: Vec::new(),
            modes: Vec::new(),
            slow_next: Vec::new(),
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
        self.passes += 1;
        let pass = self.passes;
        let (lease_ttl, eviction_timeout) = (self.cfg.lease_ttl, self.cfg.eviction_timeout);
        // A node not heard from in this term counts as heard at the grace's end: its agent may
        // still be streaming to the old leader (a frozen one holds it until its keepalive
        // fails), and a new node first seen later gets a full lease from then.
        let unheard_from = self.started + self.cfg.leader_grace;
        let started = self.started;
        // Every healthy node is visited at every pass, by the name the cache keys it with (no
        // look into its JSON) and one lookup of its track: no allocation on that path. The
        // few nodes that need a write are collected and handled after the locks are released.
        let mut work: Vec<(String, Arc<Value>, NodeWork)> = Vec::new();
        // Nodes and silent nodes by zone index.
        let mut counts: Vec<(usize, usize)> = vec![(0, 0); self.zones.len()];
        // Read before the walk: a node deleted during it moves the revision on, and the next
        // pass prunes again.
        let revision = self.nodes.revision();
        {
            let beats = self.heartbeats.lock();
            let (tracks, zones) = (&mut self.tracks, &mut self.zones);
            self.nodes.for_each(|key, node| {
                let name = key.name.as_str();
                let track = match tracks.get_mut(name) {
                    Some(t) => t,
                    None => tracks.entry(name.to_string()).or_insert(NodeTrack {
                        first_seen: now,
                        unreachable_since: None,
                        settled: None,
                        pass,
                        zone: 0,
                        zone_from: None,
                        slow_turn: false,
                    }),
                };
                track.pass = pass;
                if !track.zone_from.as_ref().is_some_and(|v| Arc::ptr_eq(v, node)) {
                    let zone = zone_of(node);
                    track.zone = match zones.iter().position(|z| *z == zone) {
                        Some(i) => i,
                        None => {
                            zones.push(zone);
                            counts.push((0, 0));
                            zones.len() - 1
                        }
                    };
                    track.zone_from = Some(node.clone());
                }
                counts[track.zone].0 += 1;
                let last_beat = beats.get(name).copied().filter(|b| *b >= started);
                let heard = match last_beat {
                    Some(b) => b.max(track.first_seen),
                    None => track.first_seen.max(unheard_from),
                };
                if now.saturating_duration_since(heard) >= lease_ttl {
                    // Unreachable since the lease ran out (not since this pass noticed it).
                    let since = *track.unreachable_since.get_or_insert(heard + lease_ttl);
                    counts[track.zone].1 += 1;
                    due_at(since + eviction_timeout);
                    work.push((
                        name.to_string(),
                        node.clone(),
                        NodeWork::Unreachable(now.saturating_duration_since(since), track.zone),
                    ));
                } else {
                    due_at(heard + lease_ttl);
                    track.unreachable_since = None;
                    track.slow_turn = false;
                    let heard_recently = last_beat.is_some_and(|b| now.saturating_duration_since(b) < lease_ttl);
                    let settled = track.settled.as_ref().is_some_and(|v| Arc::ptr_eq(v, node));
                    if heard_recently && !settled {
                        work.push((name.to_string(), node.clone(), NodeWork::Alive));
                    }
                }
            });
        }
        // Deleted nodes are forgotten when the node set changed, not at every pass.
        if self.pruned_at != Some(revision) {
            self.tracks.retain(|_, t| t.pass == pass);
            self.pruned_at = Some(revision);
        }
        // Without a secondary rate, a slowed zone is held.
        let large_zone =
            if self.cfg.secondary_eviction_interval.is_some() { self.cfg.large_zone_threshold } else { usize::MAX };
        let modes = zone_evictions(&counts, self.cfg.unhealthy_zone_threshold, large_zone);
        let was = self.note_disruption(&counts, modes.clone());
        self.slow_next.resize(self.zones.len(), None);
        for (name, node, w) in work {
            let result = match w {
                NodeWork::Unreachable(mut unreachable_for, zone) => {
                    if modes[zone] != Evictions::Held && was.get(zone) == Some(&Evictions::Held) {
                        // The zone just recovered: its silent nodes' eviction clocks start now,
                        // as if they had just turned unreachable.
                        if let Some(t) = self.tracks.get_mut(&name) {
                            t.unreachable_since = Some(now);
                        }
                        unreachable_for = Duration::ZERO;
                        let due = now + eviction_timeout;
                        next_due = Some(next_due.map_or(due, |d| d.min(due)));
                    }
                    let turn = self.handle_unreachable(&name, &node, unreachable_for, zone, modes[zone], now).await;
                    turn.map(|turn| {
                        if let Some(at) = turn {
                            next_due = Some(next_due.map_or(at, |d| d.min(at)));
                        }
                    })
                }
                NodeWork::Alive => {
                    let r = self.handle_alive(&node).await;
                    if r.is_ok() && is_settled(&node) {
                        if let Some(t) = self.tracks.get_mut(&name) {
                            t.settled = Some(node.clone());
                        }
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

    /// Logs the zones whose evictions change mode; returns the previous pass's modes.
    fn note_disruption(&mut self, counts: &[(usize, usize)], modes: Vec<Evictions>) -> Vec<Evictions> {
        for (i, &(nodes, silent)) in counts.iter().enumerate() {
            let (was, is) = (self.modes.get(i).copied().unwrap_or(Evictions::Free), modes[i]);
            if was == is {
                continue;
            }
            let zone = if self.zones[i].is_empty() { "(no zone label)" } else { self.zones[i].as_str() };
            match is {
                Evictions::Held => tracing::warn!(
                    zone,
                    nodes,
                    silent,
                    "{silent} of {nodes} nodes silent at once: holding pod evictions in this zone \
                     (a leader cut off from its agents looks like this)"
                ),
                Evictions::Slow => tracing::warn!(
                    zone,
                    nodes,
                    silent,
                    interval = ?self.cfg.secondary_eviction_interval,
                    "{silent} of {nodes} nodes silent at once in a large zone: evicting one node at a time"
                ),
                Evictions::Free if was == Evictions::Held => tracing::info!(
                    zone,
                    nodes,
                    silent,
                    "zone no longer disrupted: pod evictions resume after the eviction timeout"
                ),
                Evictions::Free => {
                    tracing::info!(zone, nodes, silent, "zone no longer disrupted: pod evictions no longer slowed")
                }
            }
        }
        std::mem::replace(&mut self.modes, modes)
    }

    /// In a slowed zone: whether `node`, with pods due (`wants`), may lose them now. A node
    /// takes the zone's turn once (until it is heard from again); the next node's turn comes a
    /// secondary eviction interval later, `Err` with that moment until then.
    fn slow_turn(&mut self, node: &str, zone: usize, wants: bool, now: Instant) -> Result<(), Instant> {
        let Some(track) = self.tracks.get_mut(node) else { return Ok(()) };
        if track.slow_turn || !wants {
            return Ok(());
        }
        if let Some(at) = self.slow_next[zone].filter(|at| *at > now) {
            return Err(at);
        }
        track.slow_turn = true;
        let interval = self.cfg.secondary_eviction_interval.unwrap_or(LONGEST_EVICTION_INTERVAL);
        self.slow_next[zone] = Some(now + interval.min(LONGEST_EVICTION_INTERVAL));
        tracing::info!(node, zone = self.zones[zone].as_str(), "slowed zone: this node's pods go now");
        Ok(())
    }

    /// Marks an unreachable node, then deletes its due pods as its zone's mode allows. Returns
    /// when the zone's next turn comes if the node, in a slowed zone, has to wait for it.
    async fn handle_unreachable(
        &mut self,
        name: &str,
        node: &Value,
        unreachable_for: Duration,
        zone: usize,
        mode: Evictions,
        now: Instant,
    ) -> Result<Option<Instant>, crate::ApiCallError> {
        self.mark_unreachable(node).await?;
        if mode == Evictions::Held {
            return Ok(None);
        }
        let due = self.due_pods(name, unreachable_for);
        if mode == Evictions::Slow {
            if let Err(turn) = self.slow_turn(name, zone, !due.is_empty(), now) {
                return Ok(Some(turn));
            }
        }
        self.evict_pods(name, due).await?;
        Ok(None)
    }

    /// Marks an unreachable node `Ready=Unknown` and taints it, once.
    async fn mark_unreachable(&self, node: &Value) -> Result<(), crate::ApiCallError> {
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
        Ok(())
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

    /// The pods bound to an unreachable node whose tolerations have run out.
    fn due_pods(&self, node: &str, unreachable_for: Duration) -> Vec<Arc<Value>> {
        self.pods
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
            .collect()
    }

    /// Delete (grace 0) `due`, the pods of unreachable `node`, all at once (their replacements
    /// wait for these deletes).
    async fn evict_pods(&self, node: &str, due: Vec<Arc<Value>>) -> Result<(), crate::ApiCallError> {
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
    fn zone_states_holds_and_slowed_zones_follow_kubernetes() {
        use ZoneState::*;
        assert_eq!(ZoneState::of(3, 0, 0.55), Normal);
        assert_eq!(ZoneState::of(1, 1, 0.55), FullDisruption);
        assert_eq!(ZoneState::of(3, 2, 0.55), Normal, "two silent nodes are never a partial disruption");
        assert_eq!(ZoneState::of(5, 3, 0.55), PartialDisruption);
        assert_eq!(ZoneState::of(6, 3, 0.55), Normal, "50 % < 55 %");
        assert_eq!(ZoneState::of(6, 3, 0.5), PartialDisruption);
        assert_eq!(ZoneState::of(4, 4, 0.55), FullDisruption);
        use Evictions::{Free, Held, Slow};
        // All populated zones down: the leader is the likelier one cut off; hold everywhere,
        // large zones too.
        assert_eq!(zone_evictions(&[(2, 2), (0, 0), (1, 1)], 0.55, 50), vec![Held, Free, Held]);
        assert_eq!(zone_evictions(&[(60, 60), (70, 70)], 0.55, 50), vec![Held, Held]);
        // One zone down among live ones: it went down, its pods move; a partial one holds.
        assert_eq!(zone_evictions(&[(2, 2), (3, 0), (5, 4)], 0.55, 50), vec![Free, Free, Held]);
        assert_eq!(zone_evictions(&[(3, 1)], 0.55, 50), vec![Free]);
        assert_eq!(zone_evictions(&[], 0.55, 50), Vec::<Evictions>::new());
        // A partial disruption of more nodes than the large-zone threshold is slowed, not held.
        assert_eq!(zone_evictions(&[(51, 40), (50, 40), (51, 10)], 0.55, 50), vec![Slow, Held, Free]);
        // Kubernetes' default rate, none, and one too slow to wait for.
        assert_eq!(crate::eviction_interval(0.01), Some(Duration::from_secs(100)));
        assert_eq!(crate::eviction_interval(0.0), None);
        assert_eq!(crate::eviction_interval(1e-300), Some(LONGEST_EVICTION_INTERVAL));
        assert_eq!(zone_of(&json!({"metadata": {}})), "");
        assert_eq!(zone_of(&json!({"metadata": {"labels": {ZONE_LABEL: "z1"}}})), "/z1");
        assert_eq!(zone_of(&json!({"metadata": {"labels": {ZONE_LABEL: "z1", REGION_LABEL: "r"}}})), "r/z1");
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
