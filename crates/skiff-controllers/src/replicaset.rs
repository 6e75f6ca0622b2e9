//! ReplicaSet controller: keeps `spec.replicas` active pods matching the selector, adopts orphans,
//! deletes the least valuable pods first on scale-down and reports status.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::registry::{PODS, REPLICASETS};
use skiff_api::LabelSelector;

use crate::api::ObjectApi;
use crate::error::Error;
use crate::events::EventRecorder;
use crate::informer::Cache;
use crate::runtime::{Action, Reconciler, WorkQueue};
use crate::util::{self, ObjKey};

pub const COMPONENT: &str = "replicaset-controller";
/// Most pods created or deleted in one reconcile (Kubernetes' `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

pub struct ReplicaSetController {
    api: Arc<dyn ObjectApi>,
    pods: Cache,
    rsets: Cache,
    events: EventRecorder,
    cache_sync_timeout: Duration,
}

impl ReplicaSetController {
    pub fn new(
        api: Arc<dyn ObjectApi>,
        pods: Cache,
        rsets: Cache,
        events: EventRecorder,
        cache_sync_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(ReplicaSetController { api, pods, rsets, events: events.for_component(COMPONENT), cache_sync_timeout })
    }

    /// Enqueue replica sets when they or their (candidate) pods change.
    pub fn register_triggers(&self, queue: &Arc<WorkQueue>) {
        let q = queue.clone();
        self.rsets.on_change(move |old, new| {
            if let Some(o) = new.or(old) {
                q.add(ObjKey::of(o));
            }
        });
        let q = queue.clone();
        let rsets = self.rsets.clone();
        self.pods.on_change(move |old, new| {
            for pod in [old, new].into_iter().flatten() {
                enqueue_for_pod(pod, &rsets, &q);
            }
        });
    }
}

/// The replica set controlling `pod`, or for an orphan every replica set that could adopt it.
fn enqueue_for_pod(pod: &Value, rsets: &Cache, queue: &WorkQueue) {
    let ns = util::namespace(pod);
    match util::controller_ref(pod) {
        Some(r) => {
            if r["kind"] == "ReplicaSet" {
                if let Some(name) = r["name"].as_str() {
                    queue.add(ObjKey::new(ns, name));
                }
            }
        }
        None => {
            if util::is_deleting(pod) {
                return;
            }
            let labels = util::labels(pod);
            for rs in rsets.list(ns) {
                if selector_of(&rs).is_ok_and(|s| !s.is_empty() && s.matches(&labels)) {
                    queue.add(ObjKey::of(&rs));
                }
            }
        }
    }
}

fn selector_of(obj: &Value) -> Result<LabelSelector, Error> {
    LabelSelector::from_json(&obj["spec"]["selector"])
        .map_err(|e| Error::invalid(ObjKey::of(obj), "spec.selector", e.to_string()))
}

/// Kubernetes' `ActivePods` ordering: the pod to delete first sorts first.
pub fn compare_deletion_priority(a: &Value, b: &Value) -> Ordering {
    let assigned = |p: &Value| p["spec"]["nodeName"].as_str().is_some_and(|s| !s.is_empty());
    let phase_rank = |p: &Value| match p["status"]["phase"].as_str() {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    let ready_since = |p: &Value| util::condition(p, "Ready").and_then(|c| util::parse_time(&c["lastTransitionTime"]));
    let restarts = |p: &Value| -> i64 {
        p["status"]["containerStatuses"]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).max().unwrap_or(0))
            .unwrap_or(0)
    };
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(util::pod_is_ready(a).cmp(&util::pod_is_ready(b)))
        .then_with(|| {
            if util::pod_is_ready(a) && util::pod_is_ready(b) {
                // Ready more recently sorts first.
                ready_since(b).cmp(&ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then(util::creation_timestamp(b).cmp(&util::creation_timestamp(a)))
        .then(util::name(b).cmp(util::name(a)))
}

/// Pod object created from the replica set's template.
fn pod_from_template(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", util::name(rs)),
        "namespace": util::namespace(rs).unwrap_or("default"),
        "ownerReferences": [util::controller_owner_ref(&REPLICASETS, rs)],
    });
    for k in ["labels", "annotations"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            meta[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
}

impl ReplicaSetController {
    /// Active pods this replica set owns after claiming: adopt matching orphans, release owned
    /// pods that no longer match.
    async fn claim_pods(&self, rs: &Value, selector: &LabelSelector) -> Result<Vec<Value>, Error> {
        let rs_uid = util::uid(rs);
        let mut owned = Vec::new();
        let mut orphans = Vec::new();
        for pod in self.pods.list(util::namespace(rs)) {
            if !util::pod_is_active(&pod) {
                continue;
            }
            let matches = selector.matches(&util::labels(&pod));
            match util::controller_ref(&pod) {
                Some(r) if r["uid"].as_str() == Some(rs_uid) => {
                    if matches {
                        owned.push((*pod).clone());
                    } else if !util::is_deleting(rs) {
                        self.release(&pod, rs_uid).await?;
                    }
                }
                Some(_) => {}
                None if matches && !util::is_deleting(rs) => orphans.push((*pod).clone()),
                None => {}
            }
        }
        if !orphans.is_empty() {
            // Adopt only if the replica set is still the one we think it is (not a successor).
            let fresh = self.api.get(&REPLICASETS, util::namespace(rs), util::name(rs)).await?;
            if util::uid(&fresh) != rs_uid || util::is_deleting(&fresh) {
                return Ok(owned);
            }
            for mut pod in orphans {
                let refs =
                    util::object_at(&mut pod, &["metadata"]).entry("ownerReferences").or_insert_with(|| json!([]));
                if !refs.is_array() {
                    *refs = json!([]);
                }
                refs.as_array_mut().expect("array").push(util::controller_owner_ref(&REPLICASETS, rs));
                match self.api.update(&PODS, pod).await {
                    Ok(p) => owned.push(p),
                    Err(e) if e.is_conflict() || e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(owned)
    }

    async fn release(&self, pod: &Value, owner_uid: &str) -> Result<(), Error> {
        let mut pod = pod.clone();
        if let Some(refs) = pod["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
        }
        match self.api.update(&PODS, pod).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create or delete pods to reach `want`; returns the first error, after which it stops.
    async fn manage(&self, rs: &Value, pods: &[Value], want: usize) -> Result<(), Error> {
        let have = pods.len();
        if have < want {
            let mut left = (want - have).min(BURST_REPLICAS);
            let mut batch = 1;
            let mut max_rv = 0;
            let mut first_err = None;
            while left > 0 && first_err.is_none() {
                let n = batch.min(left);
                let creates = (0..n).map(|_| self.api.create(&PODS, pod_from_template(rs)));
                for r in futures::future::join_all(creates).await {
                    match r {
                        Ok(p) => {
                            max_rv = max_rv.max(util::resource_version(&p).unwrap_or(0));
                            self.events.normal(
                                &REPLICASETS,
                                rs,
                                "SuccessfulCreate",
                                format!("Created pod: {}", util::name(&p)),
                            );
                        }
                        Err(e) => {
                            self.events.warning(&REPLICASETS, rs, "FailedCreate", format!("Error creating: {e}"));
                            first_err.get_or_insert(e);
                        }
                    }
                }
                left -= n;
                batch *= 2;
            }
            if max_rv > 0 && !self.pods.wait_for_revision(max_rv, self.cache_sync_timeout).await {
                return Err(Error::StaleCache("pods"));
            }
            if let Some(e) = first_err {
                return Err(e.into());
            }
        } else if have > want {
            let mut victims: Vec<&Value> = pods.iter().collect();
            victims.sort_by(|a, b| compare_deletion_priority(a, b));
            victims.truncate((have - want).min(BURST_REPLICAS));
            let deletes = victims
                .iter()
                .map(|p| self.api.delete(&PODS, util::namespace(p), util::name(p), Some(util::uid(p)), None));
            let mut first_err = None;
            for (r, p) in futures::future::join_all(deletes).await.into_iter().zip(&victims) {
                match r {
                    Ok(()) => self.events.normal(
                        &REPLICASETS,
                        rs,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", util::name(p)),
                    ),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        self.events.warning(&REPLICASETS, rs, "FailedDelete", format!("Error deleting: {e}"));
                        first_err.get_or_insert(e);
                    }
                }
            }
            let gone: Vec<(ObjKey, String)> =
                victims.iter().map(|p| (ObjKey::of(p), util::uid(p).to_string())).collect();
            let caught_up = self
                .pods
                .wait_until(self.cache_sync_timeout, |c| {
                    gone.iter()
                        .all(|(k, uid)| c.get_key(k).is_none_or(|p| util::uid(&p) != uid || !util::pod_is_active(&p)))
                })
                .await;
            if let Some(e) = first_err {
                return Err(e.into());
            }
            if !caught_up {
                return Err(Error::StaleCache("pods"));
            }
        }
        Ok(())
    }

    fn owned_active_pods(&self, rs: &Value, selector: &LabelSelector) -> Vec<Arc<Value>> {
        self.pods
            .list(util::namespace(rs))
            .into_iter()
            .filter(|p| {
                util::pod_is_active(p) && util::is_controlled_by(p, util::uid(rs)) && selector.matches(&util::labels(p))
            })
            .collect()
    }

    /// Write status computed from the cache; returns when to look again for minReadySeconds.
    async fn sync_status(
        &self,
        rs: &Value,
        selector: &LabelSelector,
        manage_err: Option<&Error>,
    ) -> Result<Action, Error> {
        let now = Timestamp::now();
        let min_ready = util::int_at(&rs["spec"]["minReadySeconds"], 0);
        let pods = self.owned_active_pods(rs, selector);
        let template_labels = util::string_map(&rs["spec"]["template"]["metadata"]["labels"]);
        let fully_labeled = pods
            .iter()
            .filter(|p| {
                let l = util::labels(p);
                template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .count();
        let ready = pods.iter().filter(|p| util::pod_is_ready(p)).count();
        let available = pods.iter().filter(|p| util::pod_is_available(p, min_ready, now)).count();
        let mut action = Action::await_change();
        for p in &pods {
            if let Some(s) = util::pod_seconds_until_available(p, min_ready, now) {
                action = action.min(Action::requeue(Duration::from_millis(s as u64 * 1000 + 100)));
            }
        }

        let mut conditions: Vec<Value> = rs["status"]["conditions"]
            .as_array()
            .map(|cs| cs.iter().filter(|c| c["type"] != "ReplicaFailure").cloned().collect())
            .unwrap_or_default();
        if let Some(Error::Api(e)) = manage_err {
            let old = util::condition(rs, "ReplicaFailure");
            let since = old.map(|c| c["lastTransitionTime"].clone()).unwrap_or_else(|| json!(util::now_string()));
            conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": e.to_string(), "lastTransitionTime": since}));
        }
        let mut status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": util::generation(rs),
        });
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        if util::strip_nulls(&status) != util::strip_nulls(&rs["status"]) {
            let mut next = rs.clone();
            next["status"] = status;
            let written = self.api.update_status(&REPLICASETS, next).await?;
            if let Some(rv) = util::resource_version(&written) {
                self.rsets.wait_for_revision(rv, self.cache_sync_timeout).await;
            }
        }
        Ok(action)
    }
}

#[async_trait::async_trait]
impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    async fn reconcile(&self, key: &ObjKey) -> Result<Action, Error> {
        let Some(rs) = self.rsets.get_key(key) else { return Ok(Action::await_change()) };
        let selector = selector_of(&rs)?;
        if selector.is_empty() {
            return Err(Error::invalid(key, "spec.selector", "empty selector matches no pods"));
        }
        let pods = self.claim_pods(&rs, &selector).await?;
        let mut manage_err = None;
        if !util::is_deleting(&rs) {
            let want = util::int_at(&rs["spec"]["replicas"], 1).max(0) as usize;
            if let Err(e) = self.manage(&rs, &pods, want).await {
                manage_err = Some(e);
            }
        }
        // Status from the (caught-up) cache, against the latest cached replica set.
        let rs = self.rsets.get_key(key).unwrap_or(rs);
        let action = self.sync_status(&rs, &selector, manage_err.as_ref()).await?;
        match manage_err {
            Some(e) => Err(e),
            None => Ok(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_priority_prefers_unscheduled_unready_newest() {
        let unscheduled = json!({"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {}, "status": {"phase": "Pending"}});
        let pending = json!({"metadata": {"name": "b", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n"}, "status": {"phase": "Pending"}});
        let running_unready = json!({"metadata": {"name": "c", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "n"}, "status": {"phase": "Running"}});
        let ready = |name: &str, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": "n"}, "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": created}]}})
        };
        let old_ready = ready("d", "2024-01-01T00:00:00Z");
        let new_ready = ready("e", "2024-01-02T00:00:00Z");
        let mut pods = [&old_ready, &new_ready, &running_unready, &pending, &unscheduled];
        pods.sort_by(|a, b| compare_deletion_priority(a, b));
        let names: Vec<&str> = pods.iter().map(|p| util::name(p)).collect();
        assert_eq!(names, ["a", "b", "c", "e", "d"]);
    }

    #[test]
    fn pods_come_from_the_template() {
        let rs = json!({"metadata": {"name": "web-abc", "namespace": "prod", "uid": "u"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
        let p = pod_from_template(&rs);
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["namespace"], "prod");
        assert_eq!(p["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
}
