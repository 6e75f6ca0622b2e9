//! The leader-only scheduler loop: snapshots the pod and node caches, asks the pure
//! `skiff-scheduler` for decisions, and writes bindings (compare-and-set on the pod's
//! resourceVersion) and `PodScheduled=False` conditions through the object API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use skiff_api::registry::PODS;
use skiff_scheduler::{ClusterState, Decision, NodeInfo, PodEntry, SchedulerConfig, SpreadGroups};
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
    // Pods changed since the last pass: a pass looks at those only (and at every pod now
    // and then, and at the first pass, which also covers changes before this handler).
    let dirty: Arc<std::sync::Mutex<HashSet<ObjKey>>> = Arc::default();
    // The same for nodes: a pass decodes only the nodes changed since the last one.
    let dirty_nodes: Arc<std::sync::Mutex<HashSet<ObjKey>>> = Arc::default();
    {
        let w = wake.clone();
        let d = dirty.clone();
        ctx.pods.on_change(move |old, new| {
            if let Some(o) = new.or(old) {
                d.lock().unwrap_or_else(|e| e.into_inner()).insert(ObjKey::of(o));
            }
            if new.is_none_or(pending) {
                w.notify_one();
            }
        });
        let w = wake.clone();
        let d = dirty_nodes.clone();
        // A node change (new node, readiness, capacity) may make a waiting pod fit.
        ctx.nodes.on_change(move |old, new| {
            if let Some(o) = new.or(old) {
                d.lock().unwrap_or_else(|e| e.into_inner()).insert(ObjKey::of(o));
            }
            w.notify_one()
        });
    }
    let mut stop = ctx.stop.clone();
    let sched = skiff_scheduler::Scheduler::new(SchedulerConfig { seed: cfg.seed, ..SchedulerConfig::default() });
    let retry = Duration::from_millis(cfg.retry_interval_ms);
    let mut pods = PodEntries::default();
    let mut typed_nodes: BTreeMap<ObjKey, (u64, NodeInfo)> = BTreeMap::new();
    let mut nodes_full: Option<std::time::Instant> = None;
    // Nodes with their bound pods accounted, kept across passes and changed only by what
    // changed; rebuilt from `pods` and `typed_nodes` at every full refresh.
    let mut state: ClusterState<ObjKey> = ClusterState::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let pass_started = std::time::Instant::now();
        let mut pass_took = Duration::ZERO;
        let changed = std::mem::take(&mut *dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let mut rebuild = false;
        if pods.last_full.is_none_or(|t| t.elapsed() >= FULL_REFRESH) {
            pods.refresh(&ctx.pods.list(None));
            rebuild = true;
        } else {
            for key in pods.refresh_keys(&ctx.pods, changed) {
                match pods.entries.get(&key) {
                    Some((_, entry)) => state.set_pod(key, entry.clone()),
                    None => state.remove_pod(&key),
                }
            }
        }
        // Nodes are decoded only while some pod waits for one.
        let waiting = if rebuild { pods.entries.values().any(|(_, e)| e.is_pending()) } else { state.has_pending() };
        if waiting {
            let changed_nodes = std::mem::take(&mut *dirty_nodes.lock().unwrap_or_else(|e| e.into_inner()));
            if nodes_full.is_none_or(|t| t.elapsed() >= FULL_REFRESH) {
                typed_nodes = decode_changed(&ctx.nodes.list(None), typed_nodes, |n: &Node| NodeInfo::new(n));
                nodes_full = Some(std::time::Instant::now());
                rebuild = true;
            } else {
                for key in changed_nodes {
                    let cached = ctx.nodes.get_key(&key);
                    let previous = typed_nodes.remove(&key).into_iter().map(|e| (key.clone(), e)).collect();
                    typed_nodes.extend(decode_changed(cached.as_slice(), previous, |n: &Node| NodeInfo::new(n)));
                    // A Node's key is its name.
                    match typed_nodes.get(&key) {
                        Some((_, info)) => state.set_node(info.clone()),
                        None => state.remove_node(&key.name),
                    }
                }
            }
        }
        if rebuild {
            state = ClusterState::from_entries(
                typed_nodes.values().map(|(_, n)| n.clone()),
                pods.entries.iter().map(|(k, (_, e))| (k.clone(), e.clone())),
            );
        }
        if waiting {
            let snapshot = state.snapshot();
            let decisions = sched.schedule(&snapshot);
            // The CPU part of the pass (the writes below only wait).
            pass_took = pass_started.elapsed();
            tracing::debug!(
                pods = pods.entries.len(),
                nodes = typed_nodes.len(),
                pending = snapshot.pending().len(),
                decisions = decisions.len(),
                "scheduling pass"
            );
            let (binds, unschedulable): (Vec<Decision>, Vec<Decision>) =
                decisions.into_iter().partition(|d| matches!(d, Decision::Bind(_)));
            // Batches of the cached pods themselves (shared, not copied: the store serializes
            // each bound version through a view of it).
            let batches = batches_of(binds.into_iter().filter_map(|d| bindable(&ctx.pods, &d)), cfg.bind_batch);
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

/// Per object, what `extract` makes of its typed form: objects whose resourceVersion did not
/// change since `previous` keep theirs (typed decoding dominates a pass over thousands of
/// nodes).
fn decode_changed<T: serde::de::DeserializeOwned, E>(
    cached: &[Arc<Value>],
    mut previous: BTreeMap<ObjKey, (u64, E)>,
    mut extract: impl FnMut(&T) -> E,
) -> BTreeMap<ObjKey, (u64, E)> {
    let mut fresh = BTreeMap::new();
    for o in cached {
        let key = ObjKey::of(o);
        let rv = resource_version(o).unwrap_or(0);
        let extracted = match previous.remove(&key) {
            Some((old_rv, e)) if old_rv == rv && rv != 0 => e,
            _ => match <T as serde::Deserialize>::deserialize(&**o) {
                Ok(t) => extract(&t),
                Err(e) => {
                    tracing::warn!("scheduler skips undecodable object {key:?}: {e}");
                    continue;
                }
            },
        };
        fresh.insert(key, (rv, extracted));
    }
    fresh
}

/// How often the scheduler looks at every pod and node rather than only at those reported
/// changed.
const FULL_REFRESH: Duration = Duration::from_secs(10);

/// The scheduler's per-pod facts, kept across passes: a pod is decoded and extracted again
/// only when something the scheduler reads changed (spec, identity, labels, owners, deletion,
/// phase), not at each status update an agent writes.
#[derive(Default)]
struct PodEntries {
    entries: HashMap<ObjKey, (Arc<Value>, Arc<PodEntry>)>,
    groups: SpreadGroups,
    /// When every pod was last looked at.
    last_full: Option<std::time::Instant>,
}

/// How two versions of a pod differ in what their [`PodEntry`] holds.
#[derive(Debug, PartialEq, Eq)]
enum EntryChange {
    /// The same entry.
    None,
    /// Only `spec.nodeName` differs (a binding): the entry but for its node.
    Node,
    /// Anything else: extract it again.
    Other,
}

fn entry_change(a: &Value, b: &Value) -> EntryChange {
    const META: [&str; 6] = ["uid", "labels", "ownerReferences", "deletionTimestamp", "creationTimestamp", "name"];
    // Of the phase, the entry holds only whether it is terminal: Pending to Running (every
    // pod's first status from its agent) changes nothing the scheduler looks at.
    let terminal =
        |p: &Value| matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    let same_rest = terminal(a) == terminal(b) && META.iter().all(|f| a["metadata"].get(f) == b["metadata"].get(f));
    if !same_rest {
        return EntryChange::Other;
    }
    match (a.get("spec"), b.get("spec")) {
        (sa, sb) if sa == sb => EntryChange::None,
        (Some(Value::Object(sa)), Some(Value::Object(sb))) => {
            let others = |m: &'_ serde_json::Map<String, Value>| m.iter().filter(|(k, _)| *k != "nodeName").count();
            let same_but_node = others(sa) == others(sb)
                && sa.iter().filter(|(k, _)| *k != "nodeName").all(|(k, v)| sb.get(k) == Some(v));
            if same_but_node {
                EntryChange::Node
            } else {
                EntryChange::Other
            }
        }
        _ => EntryChange::Other,
    }
}

impl PodEntries {
    /// Looks at every pod in `cached` (the informer's full list); forgets the others.
    fn refresh(&mut self, cached: &[Arc<Value>]) {
        // Group ids are never forgotten: start afresh once stale ones dominate.
        if self.groups.len() > 4 * cached.len() + 1024 {
            self.entries.clear();
            self.groups = SpreadGroups::default();
        }
        let mut previous = std::mem::take(&mut self.entries);
        for o in cached {
            let key = ObjKey::of(o);
            let old = previous.remove(&key);
            self.update(key, old, o);
        }
        self.last_full = Some(std::time::Instant::now());
    }

    /// Looks at the pods in `keys` only, as `cache` has them now (gone: forgotten). Returns
    /// the keys whose entry changed or went.
    fn refresh_keys(&mut self, cache: &crate::Cache, keys: HashSet<ObjKey>) -> Vec<ObjKey> {
        let mut changed = Vec::new();
        for key in keys {
            let old = self.entries.remove(&key);
            let old_entry = old.as_ref().map(|(_, e)| e.clone());
            if let Some(o) = cache.get_key(&key) {
                self.update(key.clone(), old, &o);
            }
            let new_entry = self.entries.get(&key).map(|(_, e)| e);
            if !matches!((&old_entry, new_entry), (Some(a), Some(b)) if Arc::ptr_eq(a, b)) {
                changed.push(key);
            }
        }
        changed
    }

    /// Keeps `old`'s entry when `o` gives the same one, else extracts it from `o`.
    fn update(&mut self, key: ObjKey, old: Option<(Arc<Value>, Arc<PodEntry>)>, o: &Arc<Value>) {
        let change =
            old.as_ref().map(|(prev, _)| if Arc::ptr_eq(prev, o) { EntryChange::None } else { entry_change(prev, o) });
        let entry = match (old, change) {
            (Some((_, e)), Some(EntryChange::None)) => e,
            // A binding (the scheduler's own or another's): no need to decode the pod again.
            (Some((_, e)), Some(EntryChange::Node)) => {
                let mut bound = (*e).clone();
                bound.node =
                    o.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
                Arc::new(bound)
            }
            _ => match <Pod as serde::Deserialize>::deserialize(&**o) {
                Ok(p) => Arc::new(PodEntry::new(&p, &mut self.groups)),
                Err(e) => {
                    tracing::warn!("scheduler skips undecodable pod {key:?}: {e}");
                    return;
                }
            },
        };
        self.entries.insert(key, (o.clone(), entry));
    }
}

/// `items` in batches of `size` (at least 1) and a last, smaller one, moved rather than copied.
fn batches_of<T>(items: impl Iterator<Item = T>, size: usize) -> Vec<Vec<T>> {
    let mut items = items.peekable();
    let mut batches = Vec::new();
    while items.peek().is_some() {
        batches.push(items.by_ref().take(size.max(1)).collect());
    }
    batches
}

/// The cached pod a bind decision is about, if it is still the same pod and still pending
/// (shared with the cache, not copied).
fn bindable(pods: &crate::Cache, d: &Decision) -> Option<(Arc<Value>, String)> {
    let Decision::Bind(b) = d else { return None };
    let pref = d.pod();
    let cur = pods.get(Some(&pref.namespace), &pref.name)?;
    if let Some(uid) = &pref.uid {
        if cur.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) {
            return None;
        }
    }
    pending(&cur).then(|| (cur, b.node.clone()))
}

/// Writes one batch of bindings (one Raft entry) and records a `Scheduled` event for each
/// pod bound. A pod that changed meanwhile is left to the next pass.
async fn bind_batch(api: &dyn crate::ObjectApi, events: &crate::EventRecorder, batch: Vec<(Arc<Value>, String)>) {
    let n = batch.len();
    match api.bind_many(&batch).await {
        Ok(results) => {
            for ((pod, node), r) in batch.iter().zip(results) {
                match r {
                    // The event is about the pod as it was scheduled (as kube-scheduler's is).
                    Ok(_) => {
                        let (ns, name) = (crate::util::namespace(pod).unwrap_or("default"), crate::util::name(pod));
                        let msg = format!("Successfully assigned {ns}/{name} to {node}");
                        events.normal(&PODS, pod, "Scheduled", msg);
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
    fn bind_batches_keep_order_and_size() {
        assert!(batches_of(std::iter::empty::<u32>(), 3).is_empty());
        assert_eq!(batches_of(0..6, 3), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(batches_of(0..7, 3), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(batches_of(0..2, 0), vec![vec![0], vec![1]], "a size of 0 is taken as 1");
    }

    #[test]
    fn a_pass_after_the_first_looks_only_at_the_pods_reported_changed() {
        use crate::api::EventType;
        let cache = crate::Cache::new(&PODS);
        let pod = |name: &str, rv: u64, phase: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                             "resourceVersion": rv.to_string()},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": phase}})
        };
        cache.apply(EventType::Added, Arc::new(pod("a", 1, "Pending")));
        cache.apply(EventType::Added, Arc::new(pod("b", 2, "Pending")));
        let mut entries = PodEntries::default();
        entries.refresh(&cache.list(None));
        assert_eq!(entries.entries.len(), 2);
        let (ka, kb) = (ObjKey::new(Some("default"), "a"), ObjKey::new(Some("default"), "b"));
        let entry = |e: &PodEntries, k: &ObjKey| e.entries.get(k).map(|(_, e)| e.clone());
        let a0 = entry(&entries, &ka).unwrap();
        // b changes but only a is reported: b's entry stays as it was (the next full pass or
        // its own report picks it up); a status-only change to a keeps a's entry.
        let mut a1 = pod("a", 3, "Pending");
        a1["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        cache.apply(EventType::Modified, Arc::new(a1));
        cache.apply(EventType::Modified, Arc::new(pod("b", 4, "Succeeded")));
        assert!(entries.refresh_keys(&cache, [ka.clone()].into()).is_empty(), "a's entry did not change");
        assert!(Arc::ptr_eq(&a0, &entry(&entries, &ka).unwrap()));
        assert!(!entry(&entries, &kb).unwrap().terminated);
        assert_eq!(entries.refresh_keys(&cache, [kb.clone()].into()), std::slice::from_ref(&kb));
        assert!(entry(&entries, &kb).unwrap().terminated);
        // A deleted pod is forgotten when reported.
        cache.apply(EventType::Deleted, Arc::new(pod("a", 5, "Pending")));
        assert_eq!(entries.refresh_keys(&cache, [ka.clone()].into()), std::slice::from_ref(&ka));
        assert!(entry(&entries, &ka).is_none());
        assert_eq!(entries.entries.len(), 1);
    }

    #[test]
    fn pod_entries_are_extracted_again_only_when_scheduling_inputs_change() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "5",
                         "labels": {"app": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                     "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Pending"}});
        let mut entries = PodEntries::default();
        let key = ObjKey::of(&pod);
        let entry = |e: &PodEntries| e.entries.get(&key).map(|(_, e)| e.clone()).unwrap();
        entries.refresh(&[Arc::new(pod.clone())]);
        let first = entry(&entries);
        assert_eq!(first.node.as_deref(), Some("n1"));
        // A status update that keeps the phase (conditions, container statuses), or moves it
        // from Pending to Running: kept.
        let mut v = pod.clone();
        v["metadata"]["resourceVersion"] = json!("6");
        v["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        entries.refresh(&[Arc::new(v.clone())]);
        assert!(Arc::ptr_eq(&first, &entry(&entries)));
        v["status"]["phase"] = json!("Running");
        entries.refresh(&[Arc::new(v.clone())]);
        assert!(Arc::ptr_eq(&first, &entry(&entries)));
        // The phase ends: extracted again, and the pod no longer holds its node.
        v["status"]["phase"] = json!("Succeeded");
        entries.refresh(&[Arc::new(v.clone())]);
        let done = entry(&entries);
        assert!(!Arc::ptr_eq(&first, &done) && done.terminated);
        // A label change (spread groups) is seen too; a vanished pod is dropped.
        v["metadata"]["labels"] = json!({"app": "b"});
        entries.refresh(&[Arc::new(v)]);
        assert!(!Arc::ptr_eq(&done, &entry(&entries)));
        entries.refresh(&[]);
        assert!(entries.entries.is_empty());
    }

    /// A binding changes only the entry's node: the entry is the one a fresh extraction of the
    /// bound pod gives, without decoding the pod again; any other spec change is extracted.
    #[test]
    fn a_binding_moves_the_entry_to_its_node() {
        let pending = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "5",
                         "labels": {"app": "a"}, "creationTimestamp": "2026-12-06T10:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}],
                     "resources": {"requests": {"cpu": "100m"}}}], "tolerations": [{"operator": "Exists"}]},
            "status": {"phase": "Pending"}});
        let mut bound = pending.clone();
        bound["spec"]["nodeName"] = json!("n1");
        bound["metadata"]["resourceVersion"] = json!("6");
        bound["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
        assert_eq!(entry_change(&pending, &bound), EntryChange::Node);
        assert_eq!(entry_change(&bound, &bound.clone()), EntryChange::None);
        let mut moved_image = bound.clone();
        moved_image["spec"]["containers"][0]["image"] = json!("j");
        assert_eq!(entry_change(&bound, &moved_image), EntryChange::Other);
        let mut unbound = bound.clone();
        unbound["spec"].as_object_mut().unwrap().remove("nodeName");
        unbound["spec"]["schedulerName"] = json!("other");
        assert_eq!(entry_change(&bound, &unbound), EntryChange::Other, "nodeName and another field changed");

        let key = ObjKey::of(&pending);
        let mut entries = PodEntries::default();
        entries.refresh(&[Arc::new(pending)]);
        let before = entries.entries.get(&key).map(|(_, e)| e.clone()).unwrap();
        entries.refresh(&[Arc::new(bound.clone())]);
        let kept = entries.entries.get(&key).map(|(_, e)| e.clone()).unwrap();
        let fresh = PodEntry::new(&serde_json::from_value(bound).unwrap(), &mut entries.groups);
        assert_eq!((before.node.as_deref(), kept.node.as_deref()), (None, Some("n1")));
        assert!(before.is_pending() && !kept.is_pending());
        assert_eq!(format!("{kept:?}"), format!("{fresh:?}"), "the moved entry is what extraction gives");
    }

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
