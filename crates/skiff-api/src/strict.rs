//! Typed decoding of served objects: type errors and unknown fields, as Kubernetes' strict decoder reports them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use serde_json::Value;

use crate::registry::ResourceInfo;

/// Decodes `obj` as the typed object of `resource` and returns the paths of fields the type
/// does not know (`spec.containers[0].imagePullPolicyy`), or the decode error when a field has
/// the wrong type.
pub fn unknown_fields(resource: &ResourceInfo, obj: &Value) -> Result<Vec<String>, String> {
    let typed = match resource.kind {
        "Pod" => round_trip::<Pod>(obj),
        "Namespace" => round_trip::<Namespace>(obj),
        "Node" => round_trip::<Node>(obj),
        "Service" => round_trip::<Service>(obj),
        "Endpoints" => round_trip::<Endpoints>(obj),
        "Event" => round_trip::<Event>(obj),
        "Deployment" => round_trip::<Deployment>(obj),
        "ReplicaSet" => round_trip::<ReplicaSet>(obj),
        "Lease" => round_trip::<Lease>(obj),
        _ => return Ok(Vec::new()),
    }
    .map_err(|e| {
        format!("{} in version \"{}\" cannot be handled as a {}: {e}", resource.kind, resource.version, resource.kind)
    })?;
    let mut out = Vec::new();
    diff_keys(obj, &typed, "", &mut out);
    Ok(out)
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(obj.clone())?;
    serde_json::to_value(typed)
}

fn diff_keys(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(tv) => diff_keys(v, tv, &p, out),
                    None if v.is_null() => {}
                    // An empty object or list for an optional field may be dropped by the type.
                    None if v.as_object().is_some_and(|m| m.is_empty()) => {}
                    None if v.as_array().is_some_and(|l| l.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, tv)) in a.iter().zip(b).enumerate() {
                diff_keys(v, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{DEPLOYMENTS, PODS};
    use serde_json::json;

    #[test]
    fn reports_unknown_nested_fields_with_their_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagee": "x"}]}});
        assert_eq!(unknown_fields(&PODS, &pod).unwrap(), vec!["metadata.bogus", "spec.containers[0].imagee"]);
    }

    #[test]
    fn known_fields_and_nulls_pass() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"x": "y"}}, "paused": null,
                "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(unknown_fields(&DEPLOYMENTS, &d).unwrap().is_empty());
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let e = unknown_fields(&DEPLOYMENTS, &d).unwrap_err();
        assert!(e.contains("cannot be handled as a Deployment"), "{e}");
    }
}
