//! Deployment controller: ReplicaSets per pod-template hash, revisions, proportional scaling,
//! RollingUpdate (maxSurge/maxUnavailable) and Recreate rollouts, pause, progress deadlines,
//! history cleanup and the status/conditions `kubectl rollout status` reads.
//!
//! It follows Kubernetes' `pkg/controller/deployment` closely (same arithmetic, same condition
//! reasons and messages), over JSON objects and the informer caches.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::registry::{DEPLOYMENTS, REPLICASETS};
use skiff_api::LabelSelector;

use crate::api::ObjectApi;
use crate::error::Error;
use crate::events::EventRecorder;
use crate::informer::Cache;
use crate::runtime::{Action, Reconciler, WorkQueue};
use crate::util::{self, ObjKey};

pub const COMPONENT: &str = "deployment-controller";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Annotations of the deployment that are not copied to its replica sets.
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

// Condition reasons, as Kubernetes spells them.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// The stable hash of a pod template (plus the collision count), encoded like Kubernetes'
/// `ComputeHash`: FNV-1a 32 over the template, printed in decimal and mapped onto a
/// vowel-free alphabet so it is a safe label value and name suffix.
pub fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let canonical = serde_json::to_string(&canonical_template(template)).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(canonical.as_bytes());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// `template` as its typed form would have it: without nulls, and without the empty objects
/// that a Go client's round trip adds where the type has a plain struct (`resources: {}`,
/// `securityContext: {}`), which mean the same as none. `kubectl rollout undo` sends the old
/// ReplicaSet's template so, and it must still match that ReplicaSet (Kubernetes compares
/// typed templates, where the two are one). An `httpGet` handler's `path: /` and
/// `scheme: HTTP` are left out too: they are defaults added after templates were stored
/// without them, and a template written again since (a scale, a label) must neither hash
/// differently nor stop matching its ReplicaSet, which would roll the Deployment out.
fn canonical_template(template: &Value) -> Value {
    let mut t = util::strip_nulls(template);
    let empty = |v: &Value| v.as_object().is_some_and(|m| m.is_empty());
    if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
        spec.retain(|k, v| !(k == "securityContext" && empty(v)));
        for list in ["containers", "initContainers"] {
            for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.retain(|k, v| !((k == "resources" || k == "securityContext") && empty(v)));
                    without_http_get_defaults(c);
                }
            }
        }
    }
    t
}

/// Drops `path: /` and `scheme: HTTP` from the `httpGet` handlers of a container's probes and
/// lifecycle hooks.
fn without_http_get_defaults(container: &mut serde_json::Map<String, Value>) {
    for (field, v) in container.iter_mut() {
        let handlers: Vec<&mut Value> = match field.as_str() {
            "livenessProbe" | "readinessProbe" | "startupProbe" => vec![v],
            "lifecycle" => v
                .as_object_mut()
                .map(|l| l.iter_mut().filter(|(h, _)| *h == "postStart" || *h == "preStop").map(|(_, h)| h).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for h in handlers {
            if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
                get.retain(|k, v| !((k == "path" && v == "/") || (k == "scheme" && v == "HTTP")));
            }
        }
    }
}

/// Templates equal once the `pod-template-hash` label is ignored (Kubernetes' `EqualIgnoreHash`).
pub fn templates_equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    let norm = |t: &Value| {
        let mut t = canonical_template(t);
        if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                t["metadata"].as_object_mut().expect("object").remove("labels");
            }
        }
        if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
            t.as_object_mut().expect("object").remove("metadata");
        }
        t
    };
    norm(a) == norm(b)
}

/// `intstr` value scaled against `total`: integers as is, percentages rounded up or down.
pub fn scaled_value(v: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid value {n}")),
        Value::String(s) => {
            if let Some(p) = s.strip_suffix('%') {
                let p: i64 = p.parse().map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
                let scaled = p * total;
                Ok(if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) })
            } else {
                s.parse().map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))
            }
        }
        other => Err(format!("invalid value {other}")),
    }
}

fn replicas(d: &Value) -> i64 {
    util::int_at(&d["spec"]["replicas"], 1)
}

fn rs_replicas(rs: &Value) -> i64 {
    util::int_at(&rs["spec"]["replicas"], 0)
}

fn status_int(obj: &Value, field: &str) -> i64 {
    util::int_at(&obj["status"][field], 0)
}

fn is_rolling(d: &Value) -> bool {
    d["spec"]["strategy"]["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// (maxSurge, maxUnavailable) resolved against `spec.replicas`; both 0 becomes unavailable 1.
pub fn resolve_fenceposts(d: &Value) -> Result<(i64, i64), Error> {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let desired = replicas(d);
    let surge_v = ru.get("maxSurge").cloned().unwrap_or(json!("25%"));
    let unavail_v = ru.get("maxUnavailable").cloned().unwrap_or(json!("25%"));
    let key = ObjKey::of(d);
    let surge = scaled_value(&surge_v, desired, true)
        .map_err(|e| Error::invalid(&key, "spec.strategy.rollingUpdate.maxSurge", e))?;
    let mut unavailable = scaled_value(&unavail_v, desired, false)
        .map_err(|e| Error::invalid(&key, "spec.strategy.rollingUpdate.maxUnavailable", e))?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn max_surge(d: &Value) -> Result<i64, Error> {
    if !is_rolling(d) {
        return Ok(0);
    }
    Ok(resolve_fenceposts(d)?.0)
}

fn max_unavailable(d: &Value) -> Result<i64, Error> {
    if !is_rolling(d) || replicas(d) == 0 {
        return Ok(0);
    }
    Ok(resolve_fenceposts(d)?.1.min(replicas(d)))
}

fn revision(rs: &Value) -> i64 {
    util::annotation(rs, REVISION_ANNOTATION).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn by_creation(a: &Value, b: &Value) -> Ordering {
    util::creation_timestamp(a).cmp(&util::creation_timestamp(b)).then(util::name(a).cmp(util::name(b)))
}

fn has_progress_deadline(d: &Value) -> bool {
    d["spec"]["progressDeadlineSeconds"].as_i64().is_some_and(|s| s < i32::MAX as i64)
}

fn set_condition(status: &mut Value, ty: &str, cond_status: &str, reason: &str, message: String) {
    let now = util::now_string();
    let conds = status["conditions"].as_array().cloned().unwrap_or_default();
    let current = conds.iter().find(|c| c["type"] == ty);
    if let Some(c) = current {
        if c["status"] == cond_status && c["reason"] == reason {
            return;
        }
    }
    let transition = match current {
        Some(c) if c["status"] == cond_status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut next: Vec<Value> = conds.iter().filter(|c| c["type"] != ty).cloned().collect();
    next.push(json!({"type": ty, "status": cond_status, "lastUpdateTime": now,
        "lastTransitionTime": transition, "reason": reason, "message": message}));
    status["conditions"] = json!(next);
}

fn remove_condition(status: &mut Value, ty: &str) {
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.retain(|c| c["type"] != ty);
    }
}

fn progressing(status: &Value) -> Option<&Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == "Progressing")
}

/// The replica sets of one deployment; `new` indexes the one whose template matches.
struct Sets {
    rs: Vec<Value>,
    new: Option<usize>,
}

impl Sets {
    fn new_rs(&self) -> Option<&Value> {
        self.new.map(|i| &self.rs[i])
    }
    fn old(&self) -> Vec<usize> {
        (0..self.rs.len()).filter(|i| Some(*i) != self.new).collect()
    }
    fn active_old(&self) -> Vec<usize> {
        self.old().into_iter().filter(|i| rs_replicas(&self.rs[*i]) > 0).collect()
    }
    fn all(&self) -> Vec<usize> {
        (0..self.rs.len()).collect()
    }
    fn sum(&self, idx: &[usize], f: impl Fn(&Value) -> i64) -> i64 {
        idx.iter().map(|i| f(&self.rs[*i])).sum()
    }
}

/// Kubernetes' `DeploymentComplete`.
fn deployment_complete(d: &Value, status: &Value) -> bool {
    let n = replicas(d);
    status_int_v(status, "updatedReplicas") == n
        && status_int_v(status, "replicas") == n
        && status_int_v(status, "availableReplicas") == n
        && status_int_v(status, "observedGeneration") >= util::generation(d)
}

fn status_int_v(status: &Value, field: &str) -> i64 {
    util::int_at(&status[field], 0)
}

/// Kubernetes' `DeploymentProgressing`: the new status shows progress over the old one.
fn deployment_progressing(d: &Value, new: &Value) -> bool {
    let old = &d["status"];
    let old_old = status_int_v(old, "replicas") - status_int_v(old, "updatedReplicas");
    let new_old = status_int_v(new, "replicas") - status_int_v(new, "updatedReplicas");
    status_int_v(new, "updatedReplicas") > status_int_v(old, "updatedReplicas")
        || new_old < old_old
        || status_int_v(new, "readyReplicas") > status_int_v(old, "readyReplicas")
        || status_int_v(new, "availableReplicas") > status_int_v(old, "availableReplicas")
}

/// Kubernetes' `DeploymentTimedOut`.
fn deployment_timed_out(d: &Value, status: &Value, now: Timestamp) -> bool {
    let Some(c) = progressing(status) else { return false };
    match c["reason"].as_str() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = util::parse_time(&c["lastUpdateTime"]) else { return false };
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    from.as_second() + deadline < now.as_second()
}

pub struct DeploymentController {
    api: Arc<dyn ObjectApi>,
    deploys: Cache,
    rsets: Cache,
    pods: Cache,
    events: EventRecorder,
    cache_sync_timeout: Duration,
}

impl DeploymentController {
    pub fn new(
        api: Arc<dyn ObjectApi>,
        deploys: Cache,
        rsets: Cache,
        pods: Cache,
        events: EventRecorder,
        cache_sync_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(DeploymentController {
            api,
            deploys,
            rsets,
            pods,
            events: events.for_component(COMPONENT),
            cache_sync_timeout,
        })
    }

    /// Enqueue deployments when they, their replica sets or (on deletion) their pods change.
    pub fn register_triggers(&self, queue: &Arc<WorkQueue>) {
        let q = queue.clone();
        self.deploys.on_change(move |old, new| {
            if let Some(o) = new.or(old) {
                q.add(ObjKey::of(o));
            }
        });
        let q = queue.clone();
        let deploys = self.deploys.clone();
        self.rsets.on_change(move |old, new| {
            for rs in [old, new].into_iter().flatten() {
                let ns = util::namespace(rs);
                match util::controller_ref(rs) {
                    Some(r) if r["kind"] == "Deployment" => {
                        if let Some(name) = r["name"].as_str() {
                            q.add(ObjKey::new(ns, name));
                        }
                    }
                    Some(_) => {}
                    None => {
                        let labels = util::labels(rs);
                        for d in deploys.list(ns) {
                            let sel = LabelSelector::from_json(&d["spec"]["selector"]);
                            if sel.is_ok_and(|s| !s.is_empty() && s.matches(&labels)) {
                                q.add(ObjKey::of(&d));
                            }
                        }
                    }
                }
            }
        });
        // Recreate waits for old pods to be gone: a pod deletion may unblock it.
        let q = queue.clone();
        let rsets = self.rsets.clone();
        self.pods.on_change(move |old, new| {
            if let (Some(pod), None) = (old, new) {
                let Some(r) = util::controller_ref(pod) else { return };
                let Some(rs) = rsets.get(util::namespace(pod), r["name"].as_str().unwrap_or("")) else { return };
                if let Some(dr) = util::controller_ref(&rs).filter(|dr| dr["kind"] == "Deployment") {
                    q.add(ObjKey::new(util::namespace(&rs), dr["name"].as_str().unwrap_or("")));
                }
            }
        });
    }

    async fn wait_rs(&self, written: &Value) {
        if let Some(rv) = util::resource_version(written) {
            self.rsets.wait_for_revision(rv, self.cache_sync_timeout).await;
        }
    }

    /// Replica sets this deployment controls, adopting matching orphans and releasing
    /// non-matching ones.
    async fn claim_replica_sets(&self, d: &Value, selector: &LabelSelector) -> Result<Vec<Value>, Error> {
        let d_uid = util::uid(d);
        let mut owned = Vec::new();
        for rs in self.rsets.list(util::namespace(d)) {
            let matches = selector.matches(&util::labels(&rs));
            match util::controller_ref(&rs) {
                Some(r) if r["uid"].as_str() == Some(d_uid) => {
                    if matches || util::is_deleting(d) {
                        owned.push((*rs).clone());
                    } else {
                        let mut rel = (*rs).clone();
                        if let Some(refs) = rel["metadata"]["ownerReferences"].as_array_mut() {
                            refs.retain(|r| r["uid"].as_str() != Some(d_uid));
                        }
                        match self.api.update(&REPLICASETS, rel).await {
                            Ok(w) => self.wait_rs(&w).await,
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Some(_) => {}
                None if matches && !util::is_deleting(d) && !util::is_deleting(&rs) => {
                    let fresh = self.api.get(&DEPLOYMENTS, util::namespace(d), util::name(d)).await?;
                    if util::uid(&fresh) != d_uid || util::is_deleting(&fresh) {
                        continue;
                    }
                    let mut adopt = (*rs).clone();
                    let refs = util::object_at(&mut adopt, &["metadata"]).entry("ownerReferences").or_insert(json!([]));
                    if !refs.is_array() {
                        *refs = json!([]);
                    }
                    refs.as_array_mut().expect("array").push(util::controller_owner_ref(&DEPLOYMENTS, d));
                    match self.api.update(&REPLICASETS, adopt).await {
                        Ok(w) => {
                            self.wait_rs(&w).await;
                            owned.push(w);
                        }
                        Err(e) if e.is_conflict() || e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {}
            }
        }
        owned.sort_by(by_creation);
        Ok(owned)
    }

    /// Sort into new (template matches; oldest if several) and old.
    fn find_new(d: &Value, rss: Vec<Value>) -> Sets {
        let new =
            rss.iter().position(|rs| templates_equal_ignoring_hash(&rs["spec"]["template"], &d["spec"]["template"]));
        Sets { rs: rss, new }
    }

    async fn update_deployment_meta(&self, d: &mut Value) -> Result<(), Error> {
        let written = self.api.update(&DEPLOYMENTS, d.clone()).await?;
        *d = written;
        Ok(())
    }

    async fn update_deployment_status(&self, d: &mut Value, status: Value) -> Result<(), Error> {
        let mut next = d.clone();
        next["status"] = status;
        let written = self.api.update_status(&DEPLOYMENTS, next).await?;
        *d = written;
        Ok(())
    }

    /// Set the deployment's revision annotation; true when it changed.
    fn set_deployment_revision(d: &mut Value, rev: &str) -> bool {
        if util::annotation(d, REVISION_ANNOTATION) == Some(rev) {
            return false;
        }
        util::set_annotation(d, REVISION_ANNOTATION, Some(rev));
        true
    }

    /// Copy annotations, bump the revision; true when `rs` changed.
    fn set_new_rs_annotations(d: &Value, rs: &mut Value, new_revision: i64, exists: bool) -> Result<bool, Error> {
        let mut changed = false;
        if let Some(ann) = d["metadata"]["annotations"].as_object() {
            for (k, v) in ann {
                if SKIPPED_ANNOTATIONS.contains(&k.as_str()) || k.starts_with("kubectl.kubernetes.io/") {
                    continue;
                }
                if util::annotation(rs, k) != v.as_str() {
                    util::set_annotation(rs, k, v.as_str());
                    changed = true;
                }
            }
        }
        if revision(rs) < new_revision {
            util::set_annotation(rs, REVISION_ANNOTATION, Some(&new_revision.to_string()));
            changed = true;
        }
        if !exists {
            changed |= Self::set_replicas_annotations(d, rs)?;
        }
        Ok(changed)
    }

    fn set_replicas_annotations(d: &Value, rs: &mut Value) -> Result<bool, Error> {
        let desired = replicas(d).to_string();
        let max = (replicas(d) + max_surge(d)?).to_string();
        let mut changed = false;
        if util::annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(&desired) {
            util::set_annotation(rs, DESIRED_REPLICAS_ANNOTATION, Some(&desired));
            changed = true;
        }
        if util::annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(&max) {
            util::set_annotation(rs, MAX_REPLICAS_ANNOTATION, Some(&max));
            changed = true;
        }
        Ok(changed)
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: find (or create) the new replica set and
    /// keep revisions in order.
    async fn sync_revision(&self, d: &mut Value, mut sets: Sets, create: bool) -> Result<Sets, Error> {
        let max_old_revision = sets.old().iter().map(|i| revision(&sets.rs[*i])).max().unwrap_or(0);
        let new_revision = max_old_revision + 1;
        if let Some(i) = sets.new {
            let mut rs = sets.rs[i].clone();
            let mut changed = Self::set_new_rs_annotations(d, &mut rs, new_revision, true)?;
            let min_ready = &d["spec"]["minReadySeconds"];
            if rs["spec"]["minReadySeconds"] != *min_ready {
                rs["spec"]["minReadySeconds"] = min_ready.clone();
                changed = true;
            }
            if changed {
                rs = self.api.update(&REPLICASETS, rs).await?;
                self.wait_rs(&rs).await;
            }
            let rs_rev = util::annotation(&rs, REVISION_ANNOTATION).unwrap_or("").to_string();
            sets.rs[i] = rs;
            if Self::set_deployment_revision(d, &rs_rev) {
                self.update_deployment_meta(d).await?;
            }
            if has_progress_deadline(d) && progressing(&d["status"]).is_none() {
                let mut status = d["status"].clone();
                let msg = format!("Found new replica set \"{}\"", util::name(&sets.rs[i]));
                set_condition(&mut status, "Progressing", "True", FOUND_NEW_RS, msg);
                self.update_deployment_status(d, status).await?;
            }
            return Ok(sets);
        }
        if !create {
            return Ok(sets);
        }
        let collision = d["status"]["collisionCount"].as_i64();
        let hash = pod_template_hash(&d["spec"]["template"], collision);
        let mut template = d["spec"]["template"].clone();
        util::object_at(&mut template, &["metadata", "labels"]).insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
        let mut selector = d["spec"]["selector"].clone();
        util::object_at(&mut selector, &["matchLabels"]).insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{}-{hash}", util::name(d)),
                "namespace": util::namespace(d).unwrap_or("default"),
                "labels": template["metadata"]["labels"].clone(),
                "ownerReferences": [util::controller_owner_ref(&DEPLOYMENTS, d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": d["spec"]["minReadySeconds"].clone(),
                "selector": selector,
                "template": template,
            },
        });
        let mut all: Vec<Value> = sets.rs.clone();
        all.push(rs.clone());
        let new_replicas = new_rs_new_replicas(d, &all, all.len() - 1)?;
        rs["spec"]["replicas"] = json!(new_replicas);
        Self::set_new_rs_annotations(d, &mut rs, new_revision, false)?;
        let created = match self.api.create(&REPLICASETS, rs).await {
            Ok(c) => c,
            Err(e) if e.is_already_exists() => {
                let name = format!("{}-{hash}", util::name(d));
                let existing = self.api.get(&REPLICASETS, util::namespace(d), &name).await?;
                if util::is_controlled_by(&existing, util::uid(d))
                    && templates_equal_ignoring_hash(&existing["spec"]["template"], &d["spec"]["template"])
                {
                    // Our own creation, not yet in the cache: pick it up on the next pass.
                    self.wait_rs(&existing).await;
                    return Err(Error::StaleCache("replicasets"));
                }
                // A hash collision: bump collisionCount so the next hash differs.
                let mut status = d["status"].clone();
                status["collisionCount"] = json!(collision.unwrap_or(0) + 1);
                self.update_deployment_status(d, status).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.wait_rs(&created).await;
        if new_replicas > 0 {
            self.events.normal(
                &DEPLOYMENTS,
                d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {} from 0 to {new_replicas}", util::name(&created)),
            );
        }
        if Self::set_deployment_revision(d, &new_revision.to_string()) {
            self.update_deployment_meta(d).await?;
        }
        if has_progress_deadline(d) {
            let mut status = d["status"].clone();
            let msg = format!("Created new replica set \"{}\"", util::name(&created));
            set_condition(&mut status, "Progressing", "True", NEW_RS_CREATED, msg);
            self.update_deployment_status(d, status).await?;
        }
        sets.rs.push(created);
        sets.new = Some(sets.rs.len() - 1);
        Ok(sets)
    }

    /// Scale `sets.rs[i]` to `n` (and refresh its replica annotations when `annotations`);
    /// true when the size changed.
    async fn scale(&self, d: &Value, sets: &mut Sets, i: usize, n: i64, annotations: bool) -> Result<bool, Error> {
        let rs = &sets.rs[i];
        let old = rs_replicas(rs);
        let size_changed = old != n;
        if !size_changed && !annotations {
            return Ok(false);
        }
        let mut next = rs.clone();
        let ann_changed = Self::set_replicas_annotations(d, &mut next)?;
        if !size_changed && !ann_changed {
            return Ok(false);
        }
        next["spec"]["replicas"] = json!(n);
        let written = self.api.update(&REPLICASETS, next).await?;
        self.wait_rs(&written).await;
        sets.rs[i] = written;
        if size_changed {
            let dir = if n > old { "up" } else { "down" };
            self.events.normal(
                &DEPLOYMENTS,
                d,
                "ScalingReplicaSet",
                format!("Scaled {dir} replica set {} from {old} to {n}", util::name(&sets.rs[i])),
            );
        }
        Ok(size_changed)
    }

    /// Kubernetes' `isScalingEvent`: an active replica set was sized for another replica count.
    fn is_scaling_event(d: &Value, sets: &Sets) -> bool {
        sets.rs.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            util::annotation(rs, DESIRED_REPLICAS_ANNOTATION)
                .and_then(|s| s.parse::<i64>().ok())
                .is_some_and(|desired| desired != replicas(d))
        })
    }

    /// Kubernetes' `scale`: proportional scaling of all active replica sets.
    async fn scale_all(&self, d: &Value, sets: &mut Sets) -> Result<(), Error> {
        // One active (or, with none, the newest) replica set takes the whole size.
        let active: Vec<usize> = sets.all().into_iter().filter(|i| rs_replicas(&sets.rs[*i]) > 0).collect();
        let target = match active.len() {
            0 => sets.new.or_else(|| sets.all().into_iter().max_by(|a, b| by_creation(&sets.rs[*a], &sets.rs[*b]))),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = target {
            if rs_replicas(&sets.rs[i]) != replicas(d) {
                self.scale(d, sets, i, replicas(d), true).await?;
            }
            return Ok(());
        }
        // Saturated new replica set: everything old goes to zero.
        if let Some(new) = sets.new_rs() {
            let desired = util::annotation(new, DESIRED_REPLICAS_ANNOTATION).and_then(|s| s.parse::<i64>().ok());
            if desired == Some(replicas(d))
                && rs_replicas(new) == replicas(d)
                && status_int(new, "availableReplicas") == replicas(d)
            {
                for i in sets.active_old() {
                    self.scale(d, sets, i, 0, true).await?;
                }
                return Ok(());
            }
        }
        if !is_rolling(d) {
            return Ok(());
        }
        let surge = max_surge(d)?;
        let total: i64 = sets.sum(&active, rs_replicas);
        let allowed = if replicas(d) > 0 { replicas(d) + surge } else { 0 };
        let to_add = allowed - total;
        let mut order = active.clone();
        if to_add > 0 {
            // Bigger first; newer first among equals.
            order.sort_by(|a, b| {
                rs_replicas(&sets.rs[*b]).cmp(&rs_replicas(&sets.rs[*a])).then(by_creation(&sets.rs[*b], &sets.rs[*a]))
            });
        } else {
            // Bigger first; older first among equals.
            order.sort_by(|a, b| {
                rs_replicas(&sets.rs[*b]).cmp(&rs_replicas(&sets.rs[*a])).then(by_creation(&sets.rs[*a], &sets.rs[*b]))
            });
        }
        let mut added = 0;
        let mut sizes: Vec<(usize, i64)> = Vec::new();
        for &i in &order {
            let rs = &sets.rs[i];
            let size = if to_add != 0 {
                let p = proportion(rs, d, to_add, added, surge);
                added += p;
                rs_replicas(rs) + p
            } else {
                rs_replicas(rs)
            };
            sizes.push((i, size));
        }
        if added != to_add {
            if let Some(first) = sizes.first_mut() {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, n) in sizes {
            self.scale(d, sets, i, n, true).await?;
        }
        Ok(())
    }

    /// Kubernetes' `cleanupDeployment`: delete the oldest zero-sized replica sets beyond
    /// `revisionHistoryLimit`.
    async fn cleanup(&self, d: &Value, sets: &Sets) -> Result<(), Error> {
        let Some(limit) = d["spec"]["revisionHistoryLimit"].as_i64() else { return Ok(()) };
        let mut old: Vec<&Value> =
            sets.old().into_iter().map(|i| &sets.rs[i]).filter(|rs| !util::is_deleting(rs)).collect();
        let excess = old.len() as i64 - limit;
        if excess <= 0 {
            return Ok(());
        }
        old.sort_by(|a, b| revision(a).cmp(&revision(b)).then(by_creation(a, b)));
        for rs in old.into_iter().take(excess as usize) {
            if status_int(rs, "replicas") != 0
                || rs_replicas(rs) != 0
                || util::generation(rs) > status_int(rs, "observedGeneration")
            {
                continue;
            }
            match self.api.delete(&REPLICASETS, util::namespace(rs), util::name(rs), Some(util::uid(rs)), None).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Kubernetes' `calculateStatus`.
    fn calculate_status(d: &Value, sets: &Sets) -> Result<Value, Error> {
        let all = sets.all();
        let available = sets.sum(&all, |rs| status_int(rs, "availableReplicas"));
        let total = sets.sum(&all, rs_replicas);
        let mut status = json!({
            "observedGeneration": util::generation(d),
            "replicas": sets.sum(&all, |rs| status_int(rs, "replicas")),
            "updatedReplicas": sets.new_rs().map(|rs| status_int(rs, "replicas")).unwrap_or(0),
            "readyReplicas": sets.sum(&all, |rs| status_int(rs, "readyReplicas")),
            "availableReplicas": available,
            "unavailableReplicas": (total - available).max(0),
        });
        if let Some(c) = d["status"].get("collisionCount").filter(|c| !c.is_null()) {
            status["collisionCount"] = c.clone();
        }
        if let Some(c) = d["status"].get("conditions").filter(|c| !c.is_null()) {
            status["conditions"] = c.clone();
        }
        if available >= replicas(d) - max_unavailable(d)? {
            set_condition(
                &mut status,
                "Available",
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            );
        }
        Ok(status)
    }

    /// Kubernetes' `syncDeploymentStatus` (scaling and paused paths: no progress judgement).
    async fn sync_status_only(&self, d: &mut Value, sets: &Sets) -> Result<Action, Error> {
        let status = Self::calculate_status(d, sets)?;
        if util::strip_nulls(&status) != util::strip_nulls(&d["status"]) {
            self.update_deployment_status(d, status).await?;
        }
        Ok(Action::await_change())
    }

    /// Kubernetes' `syncRolloutStatus`: status plus the Progressing condition; requeue for the
    /// progress deadline.
    async fn sync_rollout_status(&self, d: &mut Value, sets: &Sets) -> Result<Action, Error> {
        let now = Timestamp::now();
        let mut status = Self::calculate_status(d, sets)?;
        if !has_progress_deadline(d) {
            remove_condition(&mut status, "Progressing");
        }
        let current = progressing(&d["status"]).cloned();
        let complete_before = status_int_v(&status, "replicas") == status_int_v(&status, "updatedReplicas")
            && current.as_ref().is_some_and(|c| c["reason"] == NEW_RS_AVAILABLE);
        let new_name = sets.new_rs().map(|rs| util::name(rs).to_string()).unwrap_or_default();
        if has_progress_deadline(d) && !complete_before {
            if deployment_complete(d, &status) {
                let msg = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
                set_condition(&mut status, "Progressing", "True", NEW_RS_AVAILABLE, msg);
            } else if deployment_progressing(d, &status) {
                let msg = format!("ReplicaSet \"{new_name}\" is progressing.");
                let mut cond = json!({"type": "Progressing", "status": "True", "lastUpdateTime": util::now_string(),
                    "lastTransitionTime": util::now_string(), "reason": RS_UPDATED, "message": msg});
                if let Some(c) = &current {
                    if c["status"] == "True" {
                        cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
                    }
                }
                remove_condition(&mut status, "Progressing");
                if let Some(cs) = status["conditions"].as_array_mut() {
                    cs.push(cond);
                } else {
                    status["conditions"] = json!([cond]);
                }
            } else if deployment_timed_out(d, &status, now) {
                let msg = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
                set_condition(&mut status, "Progressing", "False", TIMED_OUT, msg);
            }
        }
        if util::strip_nulls(&status) == util::strip_nulls(&d["status"]) {
            return Ok(requeue_stuck(d, &status, now));
        }
        self.update_deployment_status(d, status).await?;
        Ok(Action::await_change())
    }

    /// Kubernetes' `checkPausedConditions`.
    async fn check_paused_conditions(&self, d: &mut Value) -> Result<(), Error> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let cond = progressing(&d["status"]);
        if cond.is_some_and(|c| c["reason"] == TIMED_OUT) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c["reason"] == PAUSED);
        let paused = d["spec"]["paused"].as_bool() == Some(true);
        let mut status = d["status"].clone();
        if paused && !paused_cond {
            set_condition(&mut status, "Progressing", "Unknown", PAUSED, "Deployment is paused".into());
        } else if !paused && paused_cond {
            set_condition(&mut status, "Progressing", "Unknown", RESUMED, "Deployment is resumed".into());
        } else {
            return Ok(());
        }
        self.update_deployment_status(d, status).await
    }

    /// Kubernetes' `sync`: scale (and when paused, clean up) without rolling out.
    async fn sync(&self, d: &mut Value, sets: Sets) -> Result<Action, Error> {
        let mut sets = self.sync_revision(d, sets, false).await?;
        self.scale_all(d, &mut sets).await?;
        if d["spec"]["paused"].as_bool() == Some(true) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_status_only(d, &sets).await
    }

    async fn rollout_rolling(&self, d: &mut Value, sets: Sets) -> Result<Action, Error> {
        let mut sets = self.sync_revision(d, sets, true).await?;
        let new = sets.new.expect("created when missing");
        // Scale up the new replica set as far as maxSurge allows.
        let want_new = {
            let cur = rs_replicas(&sets.rs[new]);
            if cur == replicas(d) {
                None
            } else if cur > replicas(d) {
                Some(replicas(d))
            } else {
                Some(new_rs_new_replicas(d, &sets.rs, new)?)
            }
        };
        if let Some(n) = want_new {
            if self.scale(d, &mut sets, new, n, false).await? {
                return self.sync_rollout_status(d, &sets).await;
            }
        }
        if self.reconcile_old_replica_sets(d, &mut sets).await? {
            return self.sync_rollout_status(d, &sets).await;
        }
        let status = Self::calculate_status(d, &sets)?;
        if deployment_complete(d, &status) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Kubernetes' `reconcileOldReplicaSets`; true when something was scaled down.
    async fn reconcile_old_replica_sets(&self, d: &Value, sets: &mut Sets) -> Result<bool, Error> {
        let old = sets.active_old();
        let old_pods = sets.sum(&old, rs_replicas);
        if old_pods == 0 {
            return Ok(false);
        }
        let new = sets.new.expect("new replica set");
        let all_pods = sets.sum(&sets.all(), rs_replicas);
        let min_available = replicas(d) - max_unavailable(d)?;
        let new_unavailable = rs_replicas(&sets.rs[new]) - available(&sets.rs[new]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // First the old replicas that are not available anyway.
        let mut old_sorted = old.clone();
        old_sorted.sort_by(|a, b| by_creation(&sets.rs[*a], &sets.rs[*b]));
        let mut cleaned = 0;
        for &i in &old_sorted {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &sets.rs[i];
            let unhealthy = rs_replicas(rs) - available(rs);
            if rs_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            let n = rs_replicas(rs) - down;
            self.scale(d, sets, i, n, false).await?;
            cleaned += down;
        }
        // Then healthy old replicas, as far as availability allows.
        let available_pods = sets.sum(&sets.all(), available);
        let mut scaled = 0;
        if available_pods > min_available {
            let budget = available_pods - min_available;
            for &i in &old_sorted {
                if scaled >= budget {
                    break;
                }
                let r = rs_replicas(&sets.rs[i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(budget - scaled);
                self.scale(d, sets, i, r - down, false).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, d: &mut Value, sets: Sets) -> Result<Action, Error> {
        let mut sets = self.sync_revision(d, sets, false).await?;
        let mut scaled_down = false;
        for i in sets.active_old() {
            scaled_down |= self.scale(d, &mut sets, i, 0, false).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(d, &sets).await;
        }
        if self.old_pods_running(&sets) {
            return self.sync_rollout_status(d, &sets).await;
        }
        if sets.new.is_none() {
            sets = self.sync_revision(d, sets, true).await?;
        }
        let new = sets.new.expect("created when missing");
        self.scale(d, &mut sets, new, replicas(d), false).await?;
        let status = Self::calculate_status(d, &sets)?;
        if deployment_complete(d, &status) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Any pod of an old replica set that is not terminated (terminating pods count).
    fn old_pods_running(&self, sets: &Sets) -> bool {
        let old = sets.old();
        if sets.sum(&old, |rs| status_int(rs, "replicas")) > 0 {
            return true;
        }
        let old_uids: Vec<&str> = old.iter().map(|i| util::uid(&sets.rs[*i])).collect();
        let ns = sets.rs.first().and_then(util::namespace);
        self.pods.list(ns).iter().any(|p| {
            let phase = p["status"]["phase"].as_str().unwrap_or("");
            phase != "Failed"
                && phase != "Succeeded"
                && util::controller_ref(p).is_some_and(|r| old_uids.contains(&r["uid"].as_str().unwrap_or("")))
        })
    }
}

/// Available replicas of a replica set, never counting more than its current size (its status
/// may still count pods that a scale-down is removing).
fn available(rs: &Value) -> i64 {
    status_int(rs, "availableReplicas").min(rs_replicas(rs))
}

/// Kubernetes' `NewRSNewReplicas` for RollingUpdate (and the full size for Recreate).
fn new_rs_new_replicas(d: &Value, all: &[Value], new: usize) -> Result<i64, Error> {
    if !is_rolling(d) {
        return Ok(replicas(d));
    }
    let surge = max_surge(d)?;
    let current: i64 = all.iter().map(rs_replicas).sum();
    let max_total = replicas(d) + surge;
    let cur_new = rs_replicas(&all[new]);
    if current >= max_total {
        return Ok(cur_new);
    }
    let up = (max_total - current).min(replicas(d) - cur_new);
    Ok(cur_new + up)
}

/// Kubernetes' `GetProportion`: this replica set's share of `to_add`.
fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64, surge: i64) -> i64 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let deployment_replicas = replicas(d) + surge;
        let annotated = util::annotation(rs, MAX_REPLICAS_ANNOTATION)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_else(|| status_int(d, "replicas"));
        if annotated == 0 {
            0
        } else {
            let size = (rs_replicas(rs) * deployment_replicas) as f64 / annotated as f64;
            size.round() as i64 - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `requeueStuckDeployment`: look again when the progress deadline would pass.
fn requeue_stuck(d: &Value, status: &Value, now: Timestamp) -> Action {
    let Some(c) = progressing(status) else { return Action::await_change() };
    if !has_progress_deadline(d) || c["reason"] == NEW_RS_AVAILABLE || c["reason"] == TIMED_OUT {
        return Action::await_change();
    }
    if deployment_complete(d, status) {
        return Action::await_change();
    }
    let Some(from) = util::parse_time(&c["lastUpdateTime"]) else { return Action::await_change() };
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let left = from.as_second() + deadline + 1 - now.as_second();
    Action::requeue(Duration::from_millis((left.max(0) as u64) * 1000 + 100))
}

#[async_trait::async_trait]
impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    async fn reconcile(&self, key: &ObjKey) -> Result<Action, Error> {
        let Some(d) = self.deploys.get_key(key) else { return Ok(Action::await_change()) };
        let mut d = (*d).clone();
        let selector = LabelSelector::from_json(&d["spec"]["selector"])
            .map_err(|e| Error::invalid(key, "spec.selector", e.to_string()))?;
        if selector.is_empty() {
            self.events.warning(
                &DEPLOYMENTS,
                &d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            if util::generation(&d) > status_int(&d, "observedGeneration") {
                let mut status = d["status"].clone();
                status["observedGeneration"] = json!(util::generation(&d));
                self.update_deployment_status(&mut d, status).await?;
            }
            return Ok(Action::await_change());
        }
        let rss = self.claim_replica_sets(&d, &selector).await?;
        let sets = Self::find_new(&d, rss);
        if util::is_deleting(&d) {
            return self.sync_status_only(&mut d, &sets).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if d["spec"]["paused"].as_bool() == Some(true) {
            return self.sync(&mut d, sets).await;
        }
        if Self::is_scaling_event(&d, &sets) {
            return self.sync(&mut d, sets).await;
        }
        if d["spec"]["strategy"]["type"] == "Recreate" {
            self.rollout_recreate(&mut d, sets).await
        } else {
            self.rollout_rolling(&mut d, sets).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(scaled_value(&json!("25%"), 10, true).unwrap(), 3);
        assert_eq!(scaled_value(&json!("25%"), 10, false).unwrap(), 2);
        assert_eq!(scaled_value(&json!(2), 10, false).unwrap(), 2);
        assert_eq!(scaled_value(&json!("3"), 10, false).unwrap(), 3);
        assert!(scaled_value(&json!("x%"), 10, false).is_err());
        let d = json!({"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "10%"}}}});
        assert_eq!(resolve_fenceposts(&d).unwrap(), (0, 1), "both zero: one may be unavailable");
    }

    #[test]
    fn hash_is_stable_and_ignores_nulls() {
        let t =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        let mut t2 = t.clone();
        t2["metadata"]["creationTimestamp"] = Value::Null;
        assert_eq!(pod_template_hash(&t, None), pod_template_hash(&t2, None));
        assert_ne!(pod_template_hash(&t, None), pod_template_hash(&t, Some(1)));
        let h = pod_template_hash(&t, None);
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric()) && !h.is_empty());
        let mut with_hash = t.clone();
        with_hash["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(h);
        assert!(templates_equal_ignoring_hash(&with_hash, &t2));
        let mut other = t.clone();
        other["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(!templates_equal_ignoring_hash(&other, &t));
        // What a Go client's round trip adds (kubectl rollout undo) is the same template...
        let mut round_trip = with_hash.clone();
        round_trip["spec"]["containers"][0]["resources"] = json!({});
        round_trip["spec"]["containers"][0]["securityContext"] = json!({});
        round_trip["spec"]["securityContext"] = json!({});
        assert!(templates_equal_ignoring_hash(&round_trip, &t));
        assert_eq!(pod_template_hash(&round_trip, None), pod_template_hash(&with_hash, None));
        // ...but resources that say something, or an emptyDir volume, are not.
        let mut limited = t.clone();
        limited["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
        assert!(!templates_equal_ignoring_hash(&limited, &t));
        let mut vol = t.clone();
        vol["spec"]["volumes"] = json!([{"name": "d", "emptyDir": {}}]);
        let mut vol2 = t.clone();
        vol2["spec"]["volumes"] = json!([{"name": "d", "hostPath": {"path": "/d"}}]);
        assert!(!templates_equal_ignoring_hash(&vol, &vol2));
    }

    /// A template stored before `httpGet` handlers got their `path` and `scheme` defaults and
    /// the same template defaulted now are one: same hash, same ReplicaSet, no rollout. Other
    /// paths and HTTPS still differ.
    #[test]
    fn http_get_defaults_change_no_template() {
        let probe = |http: Value| {
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:1",
                "readinessProbe": {"httpGet": http.clone()}, "lifecycle": {"preStop": {"httpGet": http}}}]}})
        };
        let before = probe(json!({"port": 8080}));
        let defaulted = probe(json!({"port": 8080, "path": "/", "scheme": "HTTP"}));
        assert_eq!(pod_template_hash(&before, None), pod_template_hash(&defaulted, None));
        assert!(templates_equal_ignoring_hash(&before, &defaulted));
        assert!(!templates_equal_ignoring_hash(&before, &probe(json!({"port": 8080, "path": "/healthz"}))));
        assert!(!templates_equal_ignoring_hash(&before, &probe(json!({"port": 8080, "scheme": "HTTPS"}))));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = json!({"spec": {"replicas": 4, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let all = vec![json!({"spec": {"replicas": 4}}), json!({"spec": {"replicas": 0}})];
        assert_eq!(new_rs_new_replicas(&d, &all, 1).unwrap(), 1);
        let all = vec![json!({"spec": {"replicas": 3}}), json!({"spec": {"replicas": 2}})];
        assert_eq!(new_rs_new_replicas(&d, &all, 1).unwrap(), 2);
    }
}
