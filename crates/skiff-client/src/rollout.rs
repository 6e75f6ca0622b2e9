//! `rollout` logic over Deployment and ReplicaSet JSON, as kubectl has it: the status viewer, the history viewer, the rollbacker's revision choice and patch, and the restart/pause/resume patches.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::apply::LAST_APPLIED;
use crate::error::{Error, Result};

/// The revision the deployment controller writes on ReplicaSets and the Deployment.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// What `rollout history` shows in its CHANGE-CAUSE column.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label the controller adds to a ReplicaSet's template (never part of a Deployment's).
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The template annotation `rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The Progressing reason that makes `rollout status` fail.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Deployment annotations `rollout undo` keeps from the Deployment instead of copying them
/// from the ReplicaSet (kubectl's `annotationsToSkip`).
pub const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    LAST_APPLIED,
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn name(v: &Value) -> &str {
    v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// An object's revision annotation: absent is 0 (as kubectl's `deploymentutil.Revision`), a
/// value that is not an integer is an error.
pub fn revision_of(obj: &Value) -> std::result::Result<i64, String> {
    match obj.pointer("/metadata/annotations").and_then(|a| a.get(REVISION_ANNOTATION)) {
        None => Ok(0),
        Some(v) => {
            let s = v.as_str().unwrap_or("");
            s.parse::<i64>().map_err(|_| format!("strconv.ParseInt: parsing {s:?}: invalid syntax"))
        }
    }
}

/// One judgement of a deployment's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// The line to print (without its newline).
    pub message: String,
    /// The rollout finished.
    pub done: bool,
}

/// kubectl's `DeploymentStatusViewer.Status`: the status is judged only once the controller has
/// observed the current generation; a Progressing condition with reason
/// `ProgressDeadlineExceeded` is an error. `revision > 0` pins the expected revision.
pub fn deployment_status(d: &Value, revision: i64) -> Result<StatusView> {
    let n = name(d);
    if revision > 0 {
        let current =
            revision_of(d).map_err(|e| Error::Usage(format!("cannot get the revision of deployment {n:?}: {e}")))?;
        if current != revision {
            return Err(Error::Usage(format!(
                "desired revision ({revision}) is different from the running revision ({current})"
            )));
        }
    }
    let waiting = |message: String| Ok(StatusView { message, done: false });
    if int(d, "/metadata/generation") <= int(d, "/status/observedGeneration") {
        let progressing = d
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing")));
        if progressing.and_then(|c| c.get("reason")).and_then(Value::as_str) == Some(PROGRESS_DEADLINE_EXCEEDED) {
            return Err(Error::Usage(format!("deployment {n:?} exceeded its progress deadline")));
        }
        let updated = int(d, "/status/updatedReplicas");
        let replicas = int(d, "/status/replicas");
        let available = int(d, "/status/availableReplicas");
        if let Some(want) = d.pointer("/spec/replicas").and_then(Value::as_i64) {
            if updated < want {
                return waiting(format!(
                    "Waiting for deployment {n:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
                ));
            }
        }
        if replicas > updated {
            return waiting(format!(
                "Waiting for deployment {n:?} rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ));
        }
        if available < updated {
            return waiting(format!(
                "Waiting for deployment {n:?} rollout to finish: {available} of {updated} updated replicas are available..."
            ));
        }
        return Ok(StatusView { message: format!("deployment {n:?} successfully rolled out"), done: true });
    }
    waiting("Waiting for deployment spec update to be observed...".into())
}

/// A one-line progress bar for a terminal: updated and available replicas of the desired count.
pub fn progress_bar(d: &Value, width: usize) -> String {
    let want = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0);
    let updated = int(d, "/status/updatedReplicas").clamp(0, want.max(1));
    let available = int(d, "/status/availableReplicas").clamp(0, updated);
    let cells = |k: i64| if want == 0 { width } else { (k as usize * width) / want as usize };
    let (a, u) = (cells(available), cells(updated));
    let mut bar = String::with_capacity(width);
    bar.extend(std::iter::repeat_n('#', a));
    bar.extend(std::iter::repeat_n('=', u.saturating_sub(a)));
    bar.extend(std::iter::repeat_n(' ', width.saturating_sub(u.max(a))));
    format!("[{bar}] {updated}/{want} updated, {available}/{want} available")
}

/// True when `rs` names `deploy` as its controller (same uid).
pub fn controlled_by(rs: &Value, deploy: &Value) -> bool {
    let uid = deploy.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    rs.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten().any(|o| {
        o.get("controller").and_then(Value::as_bool) == Some(true)
            && !uid.is_empty()
            && o.get("uid").and_then(Value::as_str) == Some(uid)
    })
}

/// The label selector string of a deployment's `spec.selector` (matchLabels and
/// matchExpressions), for listing its ReplicaSets.
pub fn selector_string(deploy: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = deploy.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
        let mut kv: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        kv.sort();
        parts.extend(kv);
    }
    for e in deploy.pointer("/spec/selector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// Revision → pod template of the deployment's ReplicaSets, with each ReplicaSet's change-cause
/// copied into its template's annotations (kubectl's history viewer; unparsable revisions are
/// skipped).
pub fn history(rss: &[Value]) -> BTreeMap<i64, Value> {
    let mut out = BTreeMap::new();
    for rs in rss {
        let Ok(rev) = revision_of(rs) else { continue };
        let mut tpl = rs.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !cause.is_empty() {
            if !tpl["metadata"].is_object() {
                tpl["metadata"] = json!({});
            }
            if !tpl["metadata"]["annotations"].is_object() {
                tpl["metadata"]["annotations"] = json!({});
            }
            tpl["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!(cause);
        }
        out.insert(rev, tpl);
    }
    out
}

/// What `rollout history` prints under the `deployment.apps/NAME` line: the REVISION /
/// CHANGE-CAUSE table, one revision's pod template, or `No rollout history found.`.
pub fn history_text(rss: &[Value], revision: i64) -> Result<String> {
    let h = history(rss);
    if h.is_empty() {
        return Ok("No rollout history found.".into());
    }
    if revision > 0 {
        let tpl = h.get(&revision).ok_or_else(|| Error::Usage("unable to find the specified revision".into()))?;
        return Ok(crate::describe::describe_pod_template(tpl));
    }
    let mut text = String::from("REVISION\tCHANGE-CAUSE\n");
    for (rev, tpl) in &h {
        let cause = tpl
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .unwrap_or("<none>");
        text.push_str(&format!("{rev}\t{cause}\n"));
    }
    Ok(crate::table::tabwrite(&text, 0, 2))
}

/// kubectl's `deploymentRevision`: the ReplicaSet of `to_revision`, or with 0 the one of the
/// second-highest revision.
pub fn revision_replicaset<'a>(deploy: &Value, rss: &'a [Value], to_revision: i64) -> Result<&'a Value> {
    if to_revision < 0 {
        return Err(revision_not_found(to_revision));
    }
    let mut latest: (i64, Option<&Value>) = (-1, None);
    let mut previous: (i64, Option<&Value>) = (-1, None);
    for rs in rss {
        let Ok(v) = revision_of(rs) else { continue };
        if to_revision == 0 {
            if latest.0 < v {
                previous = latest;
                latest = (v, Some(rs));
            } else if previous.0 < v {
                previous = (v, Some(rs));
            }
        } else if to_revision == v {
            return Ok(rs);
        }
    }
    if to_revision > 0 {
        return Err(revision_not_found(to_revision));
    }
    previous.1.ok_or_else(|| Error::Usage(format!("no rollout history found for deployment {:?}", name(deploy))))
}

fn revision_not_found(r: i64) -> Error {
    Error::Usage(format!("unable to find specified revision {r} in history"))
}

/// Drop nulls and empty maps/lists, so that templates that went through different encoders
/// compare as Kubernetes' semantic equality would.
fn normalized(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: Map<String, Value> = m.iter().filter_map(|(k, v)| normalized(v).map(|v| (k.clone(), v))).collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => {
            (!a.is_empty()).then(|| Value::Array(a.iter().map(|x| normalized(x).unwrap_or(Value::Null)).collect()))
        }
        other => Some(other.clone()),
    }
}

/// A template without the `pod-template-hash` label.
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

/// kubectl's `equalIgnoreHash`.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    normalized(&without_hash(a)) == normalized(&without_hash(b))
}

/// What `rollout undo` does to the deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The template already matches: `skipped rollback (current template already matches revision N)`.
    Skip(String),
    /// Send this JSON patch (`application/json-patch+json`); then print `rolled back`.
    Patch(Value),
}

/// kubectl's `DeploymentRollbacker.Rollback` minus the requests: choose the ReplicaSet, refuse
/// a paused deployment, skip when the template already matches, else a JSON patch replacing
/// `spec.template` (hash label removed) and `metadata.annotations` (the skip-listed ones kept
/// from the deployment, every other one copied from the ReplicaSet).
pub fn rollback(deploy: &Value, rss: &[Value], to_revision: i64) -> Result<Rollback> {
    let rs = revision_replicaset(deploy, rss, to_revision)?;
    if deploy.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Usage(format!(
            "you cannot rollback a paused deployment; resume it first with 'skiff rollout resume deployment/{}' and try again",
            name(deploy)
        )));
    }
    let rs_template = rs.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    let current = deploy.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    if equal_ignore_hash(&rs_template, &current) {
        return Ok(Rollback::Skip(format!(
            "skipped rollback (current template already matches revision {to_revision})"
        )));
    }
    let template = without_hash(&rs_template);
    let mut annotations = Map::new();
    let deploy_ann = deploy.pointer("/metadata/annotations").and_then(Value::as_object);
    for k in ANNOTATIONS_TO_SKIP {
        if let Some(v) = deploy_ann.and_then(|a| a.get(k)) {
            annotations.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in rs.pointer("/metadata/annotations").and_then(Value::as_object).into_iter().flatten() {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    // `replace` needs the member to exist; `add` sets it either way.
    let ann_op = if deploy_ann.is_some() { "replace" } else { "add" };
    Ok(Rollback::Patch(json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": ann_op, "path": "/metadata/annotations", "value": annotations},
    ])))
}

/// The merge patch of `rollout restart`; errors on a paused deployment as kubectl does.
pub fn restart_patch(deploy: &Value, now_rfc3339: &str) -> std::result::Result<Value, String> {
    if deploy.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err("can't restart paused deployment (run rollout resume first)".into());
    }
    Ok(json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now_rfc3339}}}}}))
}

/// The merge patch of `rollout pause` (`pause = true`) or `resume`, or kubectl's complaint
/// when the deployment is already in that state.
pub fn pause_patch(deploy: &Value, pause: bool) -> std::result::Result<Value, String> {
    let paused = deploy.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    match (pause, paused) {
        (true, true) => Err("is already paused".into()),
        (false, false) => Err("is not paused".into()),
        _ => Ok(json!({"spec": {"paused": pause}})),
    }
}

/// `2024-05-01T10:00:00Z` for seconds since the Unix epoch (UTC).
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(gen: i64, observed: i64, want: i64, replicas: i64, updated: i64, available: i64) -> Value {
        json!({"metadata": {"name": "web", "uid": "d1", "generation": gen,
                "annotations": {REVISION_ANNOTATION: "2", LAST_APPLIED: "{}", "team": "a"}},
            "spec": {"replicas": want, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                "availableReplicas": available}})
    }

    fn rs(name: &str, rev: Option<&str>, image: &str, owner: &str) -> Value {
        let mut ann = json!({"deployment.kubernetes.io/desired-replicas": "3"});
        if let Some(r) = rev {
            ann[REVISION_ANNOTATION] = json!(r);
        }
        json!({"metadata": {"name": name, "annotations": ann,
                "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": true}]},
            "spec": {"template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: name}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn msg(d: &Value) -> String {
        deployment_status(d, 0).unwrap().message
    }

    #[test]
    fn status_messages_follow_kubectl() {
        assert_eq!(msg(&deploy(2, 1, 3, 3, 3, 3)), "Waiting for deployment spec update to be observed...");
        assert_eq!(
            msg(&deploy(2, 2, 3, 4, 1, 3)),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 4, 3, 2)),
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            msg(&deploy(2, 2, 3, 3, 3, 2)),
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        let done = deployment_status(&deploy(2, 3, 3, 3, 3, 3), 0).unwrap();
        assert_eq!(done, StatusView { message: "deployment \"web\" successfully rolled out".into(), done: true });
        // Scaled to zero: done at once.
        assert!(deployment_status(&deploy(1, 1, 0, 0, 0, 0), 0).unwrap().done);
    }

    #[test]
    fn progress_deadline_is_an_error_only_once_observed() {
        let mut d = deploy(2, 2, 3, 3, 1, 1);
        d["status"]["conditions"] = json!([
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            deployment_status(&d, 0).unwrap_err().to_string(),
            "error: deployment \"web\" exceeded its progress deadline"
        );
        d["metadata"]["generation"] = json!(3);
        assert!(!deployment_status(&d, 0).unwrap().done);
    }

    #[test]
    fn pinned_revision() {
        let d = deploy(1, 1, 1, 1, 1, 1);
        assert!(deployment_status(&d, 2).unwrap().done);
        assert_eq!(
            deployment_status(&d, 3).unwrap_err().to_string(),
            "error: desired revision (3) is different from the running revision (2)"
        );
    }

    #[test]
    fn history_table_and_revision() {
        let mut a = rs("web-a", Some("1"), "nginx:1", "d1");
        a["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!("skiff apply -f web.yaml");
        let rss = vec![rs("web-c", Some("10"), "nginx:3", "d1"), a, rs("web-b", Some("2"), "nginx:2", "d1")];
        assert_eq!(
            history_text(&rss, 0).unwrap(),
            "REVISION  CHANGE-CAUSE\n1         skiff apply -f web.yaml\n2         <none>\n10        <none>\n"
        );
        let t = history_text(&rss, 2).unwrap();
        assert!(t.starts_with("Pod Template:\n  Labels:"), "{t}");
        assert!(t.contains("pod-template-hash=web-b") && t.contains("nginx:2"), "{t}");
        assert_eq!(history_text(&rss, 7).unwrap_err().to_string(), "error: unable to find the specified revision");
        assert_eq!(history_text(&[], 0).unwrap(), "No rollout history found.");
        // No annotation reads as revision 0; a bad one is skipped.
        let odd = vec![rs("x", None, "i", "d1"), rs("y", Some("two"), "i", "d1")];
        assert_eq!(history(&odd).keys().copied().collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn undo_picks_the_previous_or_given_revision() {
        let d = deploy(3, 3, 3, 3, 3, 3);
        let rss = vec![
            rs("web-b", Some("2"), "nginx:2", "d1"),
            rs("web-a", Some("1"), "nginx:1", "d1"),
            rs("web-c", Some("3"), "nginx:3", "d1"),
        ];
        assert_eq!(name(revision_replicaset(&d, &rss, 0).unwrap()), "web-b");
        assert_eq!(name(revision_replicaset(&d, &rss, 1).unwrap()), "web-a");
        assert_eq!(
            revision_replicaset(&d, &rss, 9).unwrap_err().to_string(),
            "error: unable to find specified revision 9 in history"
        );
        assert_eq!(
            revision_replicaset(&d, &rss[..1], 0).unwrap_err().to_string(),
            "error: no rollout history found for deployment \"web\""
        );
        assert!(revision_replicaset(&d, &rss, -1).is_err());
    }

    #[test]
    fn undo_patch_and_skip() {
        let d = deploy(3, 3, 3, 3, 3, 3);
        let mut old = rs("web-a", Some("1"), "nginx:1", "d1");
        old["metadata"]["annotations"]["note"] = json!("from-rs");
        let rss = vec![old, rs("web-b", Some("2"), "nginx:2", "d1")];
        let Rollback::Patch(p) = rollback(&d, &rss, 0).unwrap() else { panic!() };
        assert_eq!(
            p,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    REVISION_ANNOTATION: "2", LAST_APPLIED: "{}", "note": "from-rs"}}
            ])
        );
        assert_eq!(
            rollback(&d, &rss, 2).unwrap(),
            Rollback::Skip("skipped rollback (current template already matches revision 2)".into())
        );
        let mut paused = d.clone();
        paused["spec"]["paused"] = json!(true);
        assert!(rollback(&paused, &rss, 1).unwrap_err().to_string().contains("cannot rollback a paused deployment"));
        // Empty labels and nulls do not make templates differ.
        assert!(equal_ignore_hash(
            &json!({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: "x"}, "annotations": null}, "spec": {"a": []}}),
            &json!({"metadata": {}, "spec": {}})
        ));
    }

    #[test]
    fn ownership_and_selectors() {
        let d = deploy(1, 1, 1, 1, 1, 1);
        assert!(controlled_by(&rs("a", None, "i", "d1"), &d));
        assert!(!controlled_by(&rs("a", None, "i", "other"), &d));
        let d = json!({"spec": {"selector": {"matchLabels": {"tier": "f", "app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]}}});
        assert_eq!(selector_string(&d), "app=web,tier=f,env in (a,b),!x");
    }

    #[test]
    fn small_patches() {
        let d = deploy(1, 1, 1, 1, 1, 1);
        assert_eq!(
            restart_patch(&d, "2024-01-02T03:04:05Z").unwrap(),
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: "2024-01-02T03:04:05Z"}}}}})
        );
        assert_eq!(pause_patch(&d, true).unwrap(), json!({"spec": {"paused": true}}));
        assert_eq!(pause_patch(&d, false).unwrap_err(), "is not paused");
        let mut p = d.clone();
        p["spec"]["paused"] = json!(true);
        assert_eq!(pause_patch(&p, true).unwrap_err(), "is already paused");
        assert_eq!(pause_patch(&p, false).unwrap(), json!({"spec": {"paused": false}}));
        assert!(restart_patch(&p, "t").is_err());
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(crate::describe::parse_rfc3339(&format_rfc3339(1_800_000_123)), Some(1_800_000_123));
        assert_eq!(progress_bar(&deploy(1, 1, 4, 4, 2, 1), 8), "[##==    ] 2/4 updated, 1/4 available");
    }
}
