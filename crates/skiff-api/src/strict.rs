//! Typed decoding of served objects: type errors and unknown fields, as Kubernetes' strict decoder reports them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use crate::registry::ResourceInfo;

/// Decodes `obj` as the typed object of `resource` and returns the paths of fields the type
/// does not know (`spec.containers[0].imagePullPolicyy`), or the decode error when a field has
/// the wrong type. One pass: the typed decoder reports what it skips. An unknown field whose
/// value is null, `{}` or `[]` is not reported (an empty optional value says nothing).
pub fn unknown_fields(resource: &ResourceInfo, obj: &Value) -> Result<Vec<String>, String> {
    let skipped = match resource.kind {
        "Pod" => skipped_by::<Pod>(obj),
        "Namespace" => skipped_by::<Namespace>(obj),
        "Node" => skipped_by::<Node>(obj),
        "Service" => skipped_by::<Service>(obj),
        "Endpoints" => skipped_by::<Endpoints>(obj),
        "Event" => skipped_by::<Event>(obj),
        "Deployment" => skipped_by::<Deployment>(obj),
        "ReplicaSet" => skipped_by::<ReplicaSet>(obj),
        "Lease" => skipped_by::<Lease>(obj),
        "EndpointSlice" => skipped_by::<EndpointSlice>(obj),
        _ => return Ok(Vec::new()),
    }
    .map_err(|e| {
        format!("{} in version \"{}\" cannot be handled as a {}: {e}", resource.kind, resource.version, resource.kind)
    })?;
    Ok(skipped.into_iter().filter(|segs| !empty_at(obj, segs)).map(|segs| render(&segs)).collect())
}

/// One step of a path into a JSON value.
enum Seg {
    Key(String),
    Index(usize),
}

/// The paths the typed decoding of `obj` as `T` skipped, in document order; or why it failed,
/// led by the path of the field at fault (`spec.replicas: invalid type: string "many", ...`).
fn skipped_by<'de, T: serde::Deserialize<'de>>(obj: &'de Value) -> Result<Vec<Vec<Seg>>, String> {
    let mut out = Vec::new();
    match serde_ignored::deserialize::<_, _, T>(obj, |path| out.push(segments(&path))) {
        Ok(_) => Ok(out),
        // Decoded again to find the field: tracking the path costs every decode, so only a
        // failed one pays for it.
        Err(e) => Err(match serde_path_to_error::deserialize::<_, T>(obj) {
            Err(at) if at.path().iter().next().is_some() => format!("{}: {}", at.path(), at.inner()),
            _ => e.to_string(),
        }),
    }
}

fn segments(path: &serde_ignored::Path) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut segs = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                segs.push(Seg::Index(*index));
                parent
            }
            Path::Map { parent, key } => {
                segs.push(Seg::Key(key.clone()));
                parent
            }
            Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => parent,
        };
    }
    segs.reverse();
    segs
}

fn empty_at(obj: &Value, segs: &[Seg]) -> bool {
    let mut v = obj;
    for s in segs {
        v = match (s, v) {
            (Seg::Key(k), Value::Object(m)) => match m.get(k) {
                Some(x) => x,
                None => return false,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get(*i) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|l| l.is_empty())
}

/// `spec.containers[0].image`.
fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
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
        assert_eq!(
            e,
            r#"Deployment in version "v1" cannot be handled as a Deployment: spec.replicas: invalid type: string "three", expected i32"#
        );
        // Inside lists too.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i", "ports": [{"containerPort": "80"}]}]}});
        let e = unknown_fields(&PODS, &pod).unwrap_err();
        assert!(e.ends_with(r#"cannot be handled as a Pod: spec.containers[1].ports[0].containerPort: invalid type: string "80", expected i32"#), "{e}");
    }

    /// The former implementation (typed round trip, then a diff of the keys): the oracle.
    fn by_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) -> Vec<String> {
        fn diff_keys(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
            match (input, typed) {
                (Value::Object(a), Value::Object(b)) => {
                    for (k, v) in a {
                        let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                        match b.get(k) {
                            Some(tv) => diff_keys(v, tv, &p, out),
                            None if v.is_null() => {}
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
        let typed: T = serde_json::from_value(obj.clone()).unwrap();
        let mut out = Vec::new();
        diff_keys(obj, &serde_json::to_value(typed).unwrap(), "", &mut out);
        out
    }

    #[test]
    fn one_pass_reports_what_the_round_trip_did() {
        use crate::registry::{EVENTS, NODES, SERVICES};
        let pods = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "bogus": 1, "labels": {"x": "y"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u", "extra": true}]},
                "spec": {"containers": [{"name": "c", "image": "i", "imagee": "x",
                    "resources": {"requests": {"cpu": "1"}, "limitz": {}}, "ports": [{"containerPort": 80, "nope": [1]}],
                    "env": [{"name": "A", "value": "b"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x", "q": null}}}]}],
                    "nodeSelector": {"any": "thing"}, "unknownList": [], "unknownNull": null, "unknownObj": {"k": 1},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
                        [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"], "w": 2}]}]}}}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "odd": "x"}],
                    "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z", "extra": 1}}}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}, "spec": {"containers": []}}),
        ];
        for p in &pods {
            assert_eq!(unknown_fields(&PODS, p).unwrap(), by_round_trip::<Pod>(p), "{p}");
        }
        assert_eq!(unknown_fields(&PODS, &pods[0]).unwrap().len(), 8, "null, {{}} and [] values are not reported");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1, "x": 1}},
                "selector": {"matchLabels": {"x": "y"}},
                "template": {"metadata": {"labels": {"x": "y"}, "z": "z"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 1, "q": 2}});
        assert_eq!(unknown_fields(&DEPLOYMENTS, &d).unwrap(), by_round_trip::<Deployment>(&d));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": "http", "nodePortt": 3}]}});
        assert_eq!(unknown_fields(&SERVICES, &svc).unwrap(), by_round_trip::<Service>(&svc));
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule", "v": 1}]},
            "status": {"capacity": {"cpu": "2"}, "addresses": [{"type": "InternalIP", "address": "1.2.3.4", "p": 0}]}});
        assert_eq!(unknown_fields(&NODES, &node).unwrap(), by_round_trip::<Node>(&node));
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}", "x": 1},
            "reason": "Started", "count": 2, "source": {"component": "kubelet", "host": "n", "y": 2}});
        assert_eq!(unknown_fields(&EVENTS, &ev).unwrap(), by_round_trip::<Event>(&ev));
    }
}
