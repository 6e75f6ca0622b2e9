//! Client-side apply as kubectl does it: last-applied annotation and a three-way merge patch.
//!
//! The patch sent is an RFC 7386 merge patch computed from three documents:
//!
//! * **deletions**: fields in the previous manifest (the `last-applied-configuration`
//!   annotation) that the new manifest no longer has become `null`;
//! * **changes**: fields of the new manifest whose value differs from the live object. Fields
//!   only the live object has (status, server defaults, fields other writers set) are left
//!   alone. A list is sent whole (merge patches replace lists) when it changed since the last
//!   apply or when it is not contained in the live list element by element — so a list the
//!   server only defaulted inside (`imagePullPolicy` in containers) is not a change.
//!
//! An empty patch means `unchanged`.

use serde_json::{Map, Value};

/// Annotation holding the manifest of the last apply.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What apply must do for one object.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyAction {
    /// The object does not exist: create this body (manifest plus annotation).
    Create(Value),
    /// Send this merge patch.
    Patch(Value),
    /// Nothing differs.
    Unchanged,
}

/// The manifest as it will be stored: the annotation is set to the manifest itself (without a
/// previous annotation), serialized as compact JSON.
pub fn with_last_applied(manifest: &Value) -> Value {
    let mut clean = manifest.clone();
    if let Some(ann) = clean.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        ann.remove(LAST_APPLIED);
        if ann.is_empty() {
            clean["metadata"].as_object_mut().expect("metadata is an object").remove("annotations");
        }
    }
    let text = serde_json::to_string(&clean).expect("JSON serializes");
    let mut out = clean;
    let meta = out
        .as_object_mut()
        .expect("manifest is an object")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let ann = meta.as_object_mut().expect("object").entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    ann.as_object_mut().expect("object").insert(LAST_APPLIED.into(), Value::String(text));
    out
}

/// The previous manifest stored in `live`'s annotation, if any (unparsable counts as none).
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live.pointer("/metadata/annotations")?.get(LAST_APPLIED)?.as_str()?;
    serde_json::from_str(text).ok()
}

/// Decide create / patch / unchanged for `manifest` given the live object (`None`: absent).
pub fn plan(manifest: &Value, live: Option<&Value>) -> ApplyAction {
    let modified = with_last_applied(manifest);
    let Some(live) = live else { return ApplyAction::Create(modified) };
    let original = last_applied(live);
    let patch = three_way_patch(original.as_ref(), &modified, live);
    if patch.as_object().is_some_and(Map::is_empty) {
        ApplyAction::Unchanged
    } else {
        ApplyAction::Patch(patch)
    }
}

/// The merge patch taking `current` to `modified`, deleting what `original` had and
/// `modified` dropped (see the module docs).
pub fn three_way_patch(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let mut patch = match original {
        Some(o) => deletions(o, modified),
        None => Map::new(),
    };
    let changes = changes(original, modified, current);
    merge_maps(&mut patch, changes);
    Value::Object(patch)
}

fn deletions(original: &Value, modified: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let (Value::Object(o), Value::Object(m)) = (original, modified) else { return out };
    for (k, ov) in o {
        match m.get(k) {
            None => {
                out.insert(k.clone(), Value::Null);
            }
            Some(mv) if ov.is_object() && mv.is_object() => {
                let d = deletions(ov, mv);
                if !d.is_empty() {
                    out.insert(k.clone(), Value::Object(d));
                }
            }
            Some(_) => {}
        }
    }
    out
}

fn changes(original: Option<&Value>, modified: &Value, current: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Value::Object(m) = modified else { return out };
    let cur = current.as_object();
    for (k, mv) in m {
        let cv = cur.and_then(|c| c.get(k));
        let ov = original.and_then(|o| o.get(k));
        let Some(cv) = cv else {
            if !mv.is_null() {
                out.insert(k.clone(), mv.clone());
            }
            continue;
        };
        match (mv, cv) {
            (Value::Object(_), Value::Object(_)) => {
                let c = changes(ov, mv, cv);
                if !c.is_empty() {
                    out.insert(k.clone(), Value::Object(c));
                }
            }
            (Value::Array(_), _) => {
                let changed_since_last_apply = ov.is_some_and(|ov| ov != mv);
                if changed_since_last_apply || !contained(mv, cv) {
                    out.insert(k.clone(), mv.clone());
                }
            }
            _ if mv != cv => {
                out.insert(k.clone(), mv.clone());
            }
            _ => {}
        }
    }
    out
}

/// `a` is contained in `b`: every field of `a` is in `b` with a contained value; lists have the
/// same length and are contained element by element; scalars are equal.
pub fn contained(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, av)| match b.get(k) {
            Some(bv) => contained(av, bv),
            None => {
                av.is_null() || av.as_object().is_some_and(Map::is_empty) || av.as_array().is_some_and(Vec::is_empty)
            }
        }),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| contained(x, y)),
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn merge_maps(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge_maps(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `skiff_api`'s merge diff, for callers that want a plain two-way merge patch.
pub fn two_way_patch(from: &Value, to: &Value) -> Value {
    skiff_api::patch::merge::diff(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        })
    }

    /// What the server would hold after create: defaults and status added.
    fn as_stored(body: &Value) -> Value {
        let mut live = body.clone();
        live["metadata"]["uid"] = json!("u1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        live["status"] = json!({"replicas": 1});
        live
    }

    #[test]
    fn annotation_holds_the_manifest_without_itself() {
        let m = manifest(1, "busybox");
        let out = with_last_applied(&m);
        assert_eq!(last_applied(&out).unwrap(), m);
        // Re-annotating an annotated manifest does not nest the annotation.
        assert_eq!(with_last_applied(&out), out);
    }

    #[test]
    fn absent_object_is_created_with_annotation() {
        let ApplyAction::Create(body) = plan(&manifest(1, "busybox"), None) else { panic!() };
        assert_eq!(last_applied(&body).unwrap(), manifest(1, "busybox"));
        assert_eq!(body["spec"]["replicas"], 1);
    }

    #[test]
    fn same_manifest_is_unchanged_despite_server_defaults() {
        let ApplyAction::Create(body) = plan(&manifest(1, "busybox"), None) else { panic!() };
        let live = as_stored(&body);
        assert_eq!(plan(&manifest(1, "busybox"), Some(&live)), ApplyAction::Unchanged);
    }

    #[test]
    fn changed_fields_are_configured() {
        let ApplyAction::Create(body) = plan(&manifest(1, "busybox"), None) else { panic!() };
        let live = as_stored(&body);
        let ApplyAction::Patch(p) = plan(&manifest(3, "busybox:2"), Some(&live)) else { panic!() };
        assert_eq!(p["spec"]["replicas"], 3);
        assert_eq!(p["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "busybox:2"}]));
        assert_eq!(last_applied(&json!({"metadata": p["metadata"]})).unwrap(), manifest(3, "busybox:2"));
        // Nothing the manifest does not mention is touched.
        assert!(p.get("status").is_none() && p["spec"].get("strategy").is_none());
        assert!(p["metadata"].get("uid").is_none());
    }

    #[test]
    fn removed_fields_become_nulls() {
        let mut old = manifest(2, "busybox");
        old["metadata"]["labels"]["tier"] = json!("front");
        let ApplyAction::Create(body) = plan(&old, None) else { panic!() };
        let live = as_stored(&body);
        let mut new = manifest(2, "busybox");
        new["spec"].as_object_mut().unwrap().remove("replicas");
        let ApplyAction::Patch(p) = plan(&new, Some(&live)) else { panic!() };
        assert_eq!(p["spec"]["replicas"], Value::Null);
        assert!(p["spec"].as_object().unwrap().contains_key("replicas"));
        assert_eq!(p["metadata"]["labels"], json!({"tier": null}));
    }

    #[test]
    fn list_item_removed_since_last_apply_resends_the_list() {
        let mut old = manifest(1, "busybox");
        old["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        let ApplyAction::Create(body) = plan(&old, None) else { panic!() };
        let live = as_stored(&body);
        let ApplyAction::Patch(p) = plan(&manifest(1, "busybox"), Some(&live)) else { panic!() };
        assert_eq!(p["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "busybox"}]));
    }

    #[test]
    fn object_without_annotation_only_gets_changes() {
        let mut live = as_stored(&manifest(1, "busybox"));
        live["metadata"]["labels"]["extra"] = json!("x");
        let ApplyAction::Patch(p) = plan(&manifest(1, "busybox"), Some(&live)) else { panic!() };
        // Only the annotation is new; the extra label is not deleted (no previous manifest).
        assert_eq!(p["metadata"].as_object().unwrap().keys().collect::<Vec<_>>(), ["annotations"]);
        assert!(p.get("spec").is_none());
    }

    #[test]
    fn containment() {
        assert!(contained(&json!([{"a": 1}]), &json!([{"a": 1.0, "b": 2}])));
        assert!(!contained(&json!([{"a": 1}]), &json!([{"a": 1}, {"a": 2}])));
        assert!(contained(&json!({"r": {}}), &json!({})));
        assert!(!contained(&json!({"r": 1}), &json!({})));
        assert_eq!(two_way_patch(&json!({"a": 1, "b": 2}), &json!({"a": 1})), json!({"b": null}));
    }
}
