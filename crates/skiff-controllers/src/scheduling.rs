//! The leader-only scheduler loop: snapshots the pod and node caches, asks the pure
//! `skiff-scheduler` for decisions, and writes bindings (compare-and-set on the pod's
//! resourceVersion) and `PodScheduled=False` conditions through the object API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use skiff_api::registry::PODS;
use skiff_scheduler::{ClusterSnapshot, Decision, SchedulerConfig};
use tokio::sync::Notify;

use crate::informer::{sleep_or_stop, stopped};
use crate::util::{resource_version, ObjKey};
use crate::{LeaderContext, LeaderTask};

/// Tunables of the scheduler loop.
#[derive(Debug, Clone)]
pub struct SchedulingConfig {
    /// Bindings per Raft entry.
    pub bind_batch: usize,
    /// Batches of bindings written concurrently.
    pub bind_concurrency: usize,
    /// `PodScheduled=False` status updates written concurrently.
    pub status_concurrency: usize,
    /// An unschedulable pod is retried at least this often even without cluster changes.
    pub retry_interval_ms: u64,
    /// Tie-breaking seed of the pure scheduler.
    pub seed: u64,
    /// Shortest time between two passes: changes arriving meanwhile are handled together.
    /// The pause is also at least twice the last pass's duration, so with thousands of pods
    /// and nodes the loop takes at most about a third of a core and batches more per pass.
    pub min_pass_interval_ms: u64,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig {
            bind_batch: 256,
            bind_concurrency: 4,
            status_concurrency: 64,
            retry_interval_ms: 5_000,
            seed: 0,
            min_pass_interval_ms: 20,
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The scheduler as a task for [`crate::run_all_with`].
pub fn scheduler_task(cfg: SchedulingConfig) -> LeaderTask {
    Box::new(move |ctx: LeaderContext| Box::pin(run(ctx, cfg)))
}

fn pending(p: &Value) -> bool {
    p.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty)
        && p.pointer("/metadata/deletionTimestamp").is_none()
}

async fn run(ctx: LeaderContext, cfg: SchedulingConfig) {
    let wake = Arc::new(Notify::new());
    {
        let w = wake.clone();
        ctx.pods.on_change(move |_, new| {
            if new.is_none_or(pending) {
                w.notify_one();
            }
        });
        let w = wake.clone();
        // A node change (new node, readiness, capacity) may make a waiting pod fit.
        ctx.nodes.on_change(move |_, _| w.notify_one());
    }
    let mut stop = ctx.stop.clone();
    let sched = skiff_scheduler::Scheduler::new(SchedulerConfig { seed: cfg.seed, ..SchedulerConfig::default() });
    let retry = Duration::from_millis(cfg.retry_interval_ms);
    let mut typed: HashMap<ObjKey, (u64, Arc<Pod>)> = HashMap::new();
    let mut typed_nodes: HashMap<ObjKey, (u64, Arc<Node>)> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // Decode only objects that changed since the last pass (typed decoding dominates the
        // cost of a pass when thousands of pods are bound or thousands of nodes exist).
        let pass_started = std::time::Instant::now();
        let mut pass_took = Duration::ZERO;
        typed = decode_changed(&ctx.pods.list(None), typed);
        if typed
            .values()
            .any(|(_, p)| p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty)))
        {
            typed_nodes = decode_changed(&ctx.nodes.list(None), typed_nodes);
            let snapshot =
                ClusterSnapshot::from_refs(typed_nodes.values().map(|(_, n)| &**n), typed.values().map(|(_, p)| &**p));
            let decisions = sched.schedule(&snapshot);
            // The CPU part of the pass (the writes below only wait).
            pass_took = pass_started.elapsed();
            tracing::debug!(
                pods = typed.len(),
                nodes = typed_nodes.len(),
                pending = snapshot.pending().len(),
                decisions = decisions.len(),
                "scheduling pass"
            );
            let (binds, unschedulable): (Vec<Decision>, Vec<Decision>) =
                decisions.into_iter().partition(|d| matches!(d, Decision::Bind(_)));
            let batches: Vec<Vec<(Value, String)>> = {
                let ready: Vec<(Value, String)> = binds.into_iter().filter_map(|d| bindable(&ctx.pods, &d)).collect();
                ready.chunks(cfg.bind_batch.max(1)).map(<[_]>::to_vec).collect()
            };
            let api = ctx.api.clone();
            let events = ctx.events.for_component("default-scheduler");
            let bound: Vec<()> = stream::iter(batches)
                .map(|batch| {
                    let (api, events) = (api.clone(), events.clone());
                    async move { bind_batch(&*api, &events, batch).await }
                })
                .buffer_unordered(cfg.bind_concurrency.max(1))
                .collect()
                .await;
            drop(bound);
            let pods_cache = ctx.pods.clone();
            let results: Vec<()> = stream::iter(unschedulable)
                .map(|d| {
                    let (api, pods_cache, events) = (api.clone(), pods_cache.clone(), events.clone());
                    async move { mark_unschedulable(&*api, &pods_cache, &events, d).await }
                })
                .buffer_unordered(cfg.status_concurrency.max(1))
                .collect()
                .await;
            drop(results);
        }
        if pass_took.is_zero() {
            pass_took = pass_started.elapsed();
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(retry) => {}
            _ = stopped(&mut stop) => return,
        }
        // Let a burst of creates settle into one pass (and bound the pass rate under churn).
        let pause = Duration::from_millis(cfg.min_pass_interval_ms).max(pass_took * 2);
        if sleep_or_stop(pause, &mut stop).await {
            return;
        }
    }
}

/// Decodes the objects whose resourceVersion changed since `previous` (reusing the rest).
fn decode_changed<T: serde::de::DeserializeOwned>(
    cached: &[Arc<Value>],
    mut previous: HashMap<ObjKey, (u64, Arc<T>)>,
) -> HashMap<ObjKey, (u64, Arc<T>)> {
    let mut fresh = HashMap::with_capacity(cached.len());
    for o in cached {
        let key = ObjKey::of(o);
        let rv = resource_version(o).unwrap_or(0);
        let typed = match previous.remove(&key) {
            Some((old_rv, t)) if old_rv == rv && rv != 0 => t,
            _ => match <T as serde::Deserialize>::deserialize(&**o) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    tracing::warn!("scheduler skips undecodable object {key:?}: {e}");
                    continue;
                }
            },
        };
        fresh.insert(key, (rv, typed));
    }
    fresh
}

/// The cached pod a bind decision is about, if it is still the same pod and still pending.
fn bindable(pods: &crate::Cache, d: &Decision) -> Option<(Value, String)> {
    let Decision::Bind(b) = d else { return None };
    let pref = d.pod();
    let cur = pods.get(Some(&pref.namespace), &pref.name)?;
    if let Some(uid) = &pref.uid {
        if cur.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) {
            return None;
        }
    }
    pending(&cur).then(|| ((*cur).clone(), b.node.clone()))
}

/// Writes one batch of bindings (one Raft entry) and records a `Scheduled` event for each
/// pod bound. A pod that changed meanwhile is left to the next pass.
async fn bind_batch(api: &dyn crate::ObjectApi, events: &crate::EventRecorder, batch: Vec<(Value, String)>) {
    let n = batch.len();
    match api.bind_many(batch).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(bound) => {
                        let (ns, name) =
                            (crate::util::namespace(&bound).unwrap_or("default"), crate::util::name(&bound));
                        let node = bound.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
                        let msg = format!("Successfully assigned {ns}/{name} to {node}");
                        events.normal(&PODS, &bound, "Scheduled", msg);
                    }
                    // Someone else changed the pod; the next pass sees the new version.
                    Err(e) if e.is_conflict() || e.is_not_found() => tracing::debug!("binding: {e}"),
                    Err(e) => tracing::warn!("binding: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("binding a batch of {n} pods: {e}"),
    }
}

async fn mark_unschedulable(
    api: &dyn crate::ObjectApi,
    pods: &crate::Cache,
    events: &crate::EventRecorder,
    d: Decision,
) {
    let pref = d.pod().clone();
    let Some(cur) = pods.get(Some(&pref.namespace), &pref.name) else { return };
    let mut obj = (*cur).clone();
    if let Some(uid) = &pref.uid {
        if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) {
            return;
        }
    }
    if !pending(&obj) {
        return;
    }
    let Decision::Unschedulable(u) = d else { return };
    let msg = u.message();
    let same = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .is_some_and(|c| c["status"] == "False" && c["message"] == msg.as_str());
    if same {
        return;
    }
    set_pod_scheduled(&mut obj, "False", Some("Unschedulable"), Some(&msg));
    match api.update_status(&PODS, obj.clone()).await {
        Ok(_) => events.warning(&PODS, &obj, "FailedScheduling", msg),
        Err(e) if e.is_conflict() || e.is_not_found() => {}
        Err(e) => tracing::warn!("status of unschedulable {}/{}: {e}", pref.namespace, pref.name),
    }
}

/// Sets (or replaces) the pod's `PodScheduled` condition.
pub fn set_pod_scheduled(obj: &mut Value, status: &str, reason: Option<&str>, message: Option<&str>) {
    let mut cond: BTreeMap<&str, Value> = BTreeMap::new();
    cond.insert("type", json!("PodScheduled"));
    cond.insert("status", json!(status));
    cond.insert("lastTransitionTime", json!(now()));
    if let Some(r) = reason {
        cond.insert("reason", json!(r));
    }
    if let Some(m) = message {
        cond.insert("message", json!(m));
    }
    let cond = serde_json::to_value(cond).expect("condition serializes");
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let status_obj = obj["status"].as_object_mut().expect("status is an object");
    let conds = status_obj.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("array");
    match list.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_is_replaced_not_duplicated() {
        let mut p = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False"}, {"type": "Ready"}]}});
        set_pod_scheduled(&mut p, "True", None, None);
        let cs = p["status"]["conditions"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["status"], "True");
        let mut q = json!({});
        set_pod_scheduled(&mut q, "False", Some("Unschedulable"), Some("0/1 nodes are available"));
        assert_eq!(q["status"]["conditions"][0]["reason"], "Unschedulable");
    }
}
