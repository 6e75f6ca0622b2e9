//! Small accessors over JSON objects: metadata, owner references, pod readiness, timestamps.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde_json::{json, Map, Value};
use skiff_api::ResourceInfo;

/// Identity of an object in a cache or work queue: namespace (None for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        ObjKey { namespace: namespace.map(str::to_string), name: name.to_string() }
    }
    pub fn of(obj: &Value) -> Self {
        ObjKey::new(namespace(obj), name(obj))
    }
    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

pub fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"].as_str().filter(|s| !s.is_empty())
}

pub fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

/// `metadata.resourceVersion` as a store revision.
pub fn resource_version(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok())
}

pub fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap_or(0)
}

pub fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(&obj["metadata"]["labels"])
}

pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

/// Set (or with `None`, remove) an annotation.
pub fn set_annotation(obj: &mut Value, key: &str, value: Option<&str>) {
    let ann = object_at(obj, &["metadata", "annotations"]);
    match value {
        Some(v) => {
            ann.insert(key.to_string(), json!(v));
        }
        None => {
            ann.remove(key);
        }
    }
}

/// Mutable object at a path of keys, created (replacing non-objects) as needed.
pub fn object_at<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for key in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur.as_object_mut().expect("object").entry(key.to_string()).or_insert(Value::Null);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("object")
}

pub fn creation_timestamp(obj: &Value) -> Option<Timestamp> {
    parse_time(&obj["metadata"]["creationTimestamp"])
}

pub fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// RFC 3339 with second precision, as Kubernetes serializes `metav1.Time`.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now_string() -> String {
    format_time(Timestamp::now())
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"].as_bool() == Some(true))
}

/// Whether `obj` is controlled by the object with `owner_uid`.
pub fn is_controlled_by(obj: &Value, owner_uid: &str) -> bool {
    controller_ref(obj).is_some_and(|r| r["uid"].as_str() == Some(owner_uid))
}

/// A controller owner reference pointing at `owner` (of resource `res`).
pub fn controller_owner_ref(res: &ResourceInfo, owner: &Value) -> Value {
    json!({
        "apiVersion": res.api_version(),
        "kind": res.kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Remove nulls recursively (`{"a": null}` and `{}` are the same object to Kubernetes).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// A condition of type `ty` in `status.conditions`.
pub fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"].as_str() == Some(ty))
}

/// A pod counts toward its controller unless it is terminated or being deleted.
pub fn pod_is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && !is_deleting(pod)
}

/// `Ready` condition is `True`.
pub fn pod_is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub fn pod_is_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> bool {
    if !pod_is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let Some(since) = condition(pod, "Ready").and_then(|c| parse_time(&c["lastTransitionTime"])) else {
        return false;
    };
    since.as_second() + min_ready_seconds <= now.as_second()
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn pod_seconds_until_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> Option<i64> {
    if !pod_is_ready(pod) || min_ready_seconds <= 0 {
        return None;
    }
    let since = condition(pod, "Ready").and_then(|c| parse_time(&c["lastTransitionTime"]))?;
    let left = since.as_second() + min_ready_seconds - now.as_second();
    (left > 0).then_some(left)
}

/// `i32`-ish integer field with a default.
pub fn int_at(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_at_second_precision() {
        let s = now_string();
        assert!(s.ends_with('Z') && s.len() == 20, "{s}");
        assert_eq!(format_time(parse_time(&json!(s)).unwrap()), s);
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().unwrap();
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": "2024-01-01T00:00:05Z"}]}});
        assert!(pod_is_available(&pod, 0, now));
        assert!(pod_is_available(&pod, 5, now));
        assert!(!pod_is_available(&pod, 6, now));
        assert_eq!(pod_seconds_until_available(&pod, 8, now), Some(3));
        assert!(!pod_is_available(&json!({}), 0, now));
    }

    #[test]
    fn strip_nulls_and_object_at() {
        assert_eq!(strip_nulls(&json!({"a": null, "b": [{"c": null}]})), json!({"b": [{}]}));
        let mut v = json!({"metadata": null});
        object_at(&mut v, &["metadata", "annotations"]).insert("k".into(), json!("v"));
        assert_eq!(v, json!({"metadata": {"annotations": {"k": "v"}}}));
        set_annotation(&mut v, "k", None);
        assert_eq!(annotation(&v, "k"), None);
    }
}
