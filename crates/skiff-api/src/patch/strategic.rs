//! Strategic Merge Patch: merge patches whose lists merge by key, chosen by field name and position.
//!
//! # List strategies
//!
//! The strategy of a list is decided from the *path of map keys* leading to it (list indices are
//! skipped, so `spec.template.spec.containers[2].ports` has the path
//! `spec/template/spec/containers/ports`):
//!
//! | list field                                   | parent field                                   | strategy |
//! |----------------------------------------------|------------------------------------------------|----------|
//! | `containers`, `initContainers`, `ephemeralContainers` | `spec` (pod spec, also under templates) | merge by `name` |
//! | `env`                                        | a container list                               | merge by `name` |
//! | `ports`                                      | a container list                               | merge by `containerPort` |
//! | `ports`                                      | top-level `spec` (Service)                     | merge by `port` |
//! | `volumeMounts`                               | a container list                               | merge by `mountPath` |
//! | `volumes`, `imagePullSecrets`                | `spec`                                         | merge by `name` |
//! | `tolerations`                                | `spec`                                         | merge by `key` |
//! | `conditions`                                 | `status`                                       | merge by `type` |
//! | `ownerReferences`                            | `metadata`                                     | merge by `uid` |
//! | `finalizers`                                 | `metadata`                                     | merge as a set of primitives |
//!
//! Every other list is replaced wholesale by the patch's list.
//!
//! # Directives
//!
//! * `null` as a map value deletes the key.
//! * `{"$patch": "delete"}` in a map deletes that map from its parent (at the root the result is
//!   `{}`); as an element of a merge-key list (`{"name": "x", "$patch": "delete"}`) it deletes the
//!   element with that key.
//! * `{"$patch": "replace"}` in a map replaces the original map by the patch map; as an element of
//!   a list it makes the rest of the patch list replace the original list.
//! * `"$retainKeys": [...]` in a map drops original keys not listed (patch keys must be listed).
//! * `"$setElementOrder/<list>": [...]` orders the merged list: listed elements (by merge key, or
//!   by value for primitive lists) follow the given order; unlisted (server-only) elements keep
//!   their original relative order and are interleaved before a listed element that came after
//!   them in the original list (Kubernetes' `normalizeElementOrder`).
//! * `"$deleteFromPrimitiveList/<list>": [...]` removes those values from a primitive list.

use serde_json::{Map, Value};

use super::PatchError;

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];
const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// How a list at a given path merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch list replaces the original list.
    Replace,
    /// Elements are maps merged by the value of this key.
    MergeKey(&'static str),
    /// Elements are primitives merged as a set (original order, new ones appended).
    MergePrimitive,
}

/// The strategy for the list reached by the map-key path `path` (see the module table).
pub fn list_strategy(path: &[&str]) -> ListStrategy {
    let Some((&field, parents)) = path.split_last() else { return ListStrategy::Replace };
    let parent = parents.last().copied().unwrap_or("");
    let in_container = CONTAINER_LISTS.contains(&parent);
    match field {
        f if CONTAINER_LISTS.contains(&f) && parent == "spec" => ListStrategy::MergeKey("name"),
        "env" if in_container => ListStrategy::MergeKey("name"),
        "ports" if in_container => ListStrategy::MergeKey("containerPort"),
        "ports" if parents == ["spec"] => ListStrategy::MergeKey("port"),
        "volumeMounts" if in_container => ListStrategy::MergeKey("mountPath"),
        "volumes" | "imagePullSecrets" if parent == "spec" => ListStrategy::MergeKey("name"),
        "tolerations" if parent == "spec" => ListStrategy::MergeKey("key"),
        "conditions" if parent == "status" => ListStrategy::MergeKey("type"),
        "ownerReferences" if parent == "metadata" => ListStrategy::MergeKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitive,
        _ => ListStrategy::Replace,
    }
}

/// Apply a strategic merge patch (a JSON object) to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid("a strategic merge patch must be a JSON object".into()));
    };
    let mut out = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    match merge_map(&mut out, p, &mut path)? {
        Outcome::Keep => Ok(Value::Object(out)),
        Outcome::Delete => Ok(Value::Object(Map::new())),
    }
}

enum Outcome {
    Keep,
    Delete,
}

fn patch_directive(p: &Map<String, Value>) -> Result<Option<&str>, PatchError> {
    match p.get(PATCH) {
        None => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "delete" | "replace" | "merge") => Ok(Some(s)),
        Some(other) => Err(PatchError::Invalid(format!("unknown $patch directive {other}"))),
    }
}

fn is_directive(k: &str) -> bool {
    k == PATCH || k == RETAIN_KEYS || k.starts_with(SET_ORDER) || k.starts_with(DELETE_PRIMITIVE)
}

/// A patch value with directives resolved against nothing (used for keys new to the original).
fn fresh(patch: &Value, path: &mut Vec<String>) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(p) => {
            let mut m = Map::new();
            match merge_map(&mut m, p, path)? {
                Outcome::Keep => Ok(Some(Value::Object(m))),
                Outcome::Delete => Ok(None),
            }
        }
        Value::Array(items) => Ok(Some(Value::Array(merge_list(Vec::new(), items, path)?))),
        other => Ok(Some(other.clone())),
    }
}

fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Outcome, PatchError> {
    match patch_directive(patch)? {
        Some("delete") => return Ok(Outcome::Delete),
        Some("replace") => {
            let mut replaced = Map::new();
            let rest: Map<String, Value> =
                patch.iter().filter(|(k, _)| k.as_str() != PATCH).map(|(k, v)| (k.clone(), v.clone())).collect();
            merge_map(&mut replaced, &rest, path)?;
            *orig = replaced;
            return Ok(Outcome::Keep);
        }
        _ => {}
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .ok_or_else(|| PatchError::Invalid("$retainKeys must be a list of strings".into()))?;
        for k in patch.keys().filter(|k| !is_directive(k)) {
            if !keys.contains(&k.as_str()) {
                return Err(PatchError::Invalid(format!("{k:?} is not present in the $retainKeys list {keys:?}")));
            }
        }
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }
    let server_orders: Vec<(&str, Vec<Value>)> = patch
        .keys()
        .filter_map(|k| k.strip_prefix(SET_ORDER))
        .map(|list| (list, orig.get(list).and_then(Value::as_array).cloned().unwrap_or_default()))
        .collect();
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix(DELETE_PRIMITIVE) {
            let remove = v.as_array().ok_or_else(|| PatchError::Invalid(format!("{k} must be a list")))?;
            if let Some(Value::Array(items)) = orig.get_mut(list) {
                items.retain(|item| !remove.contains(item));
            }
        }
    }
    for (k, v) in patch {
        if is_directive(k) {
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        path.push(k.clone());
        let result = match (orig.get_mut(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => match merge_map(o, p, path)? {
                Outcome::Keep => Ok(None),
                Outcome::Delete => Ok(Some(None)),
            },
            (Some(Value::Array(o)), Value::Array(p)) => {
                let merged = merge_list(std::mem::take(o), p, path)?;
                *o = merged;
                Ok(None)
            }
            _ => fresh(v, path).map(Some),
        };
        path.pop();
        match result? {
            None => {}
            Some(None) => {
                orig.remove(k);
            }
            Some(Some(new)) => {
                orig.insert(k.clone(), new);
            }
        }
    }
    for (k, order) in patch {
        if let Some(list) = k.strip_prefix(SET_ORDER) {
            let order = order.as_array().ok_or_else(|| PatchError::Invalid(format!("{k} must be a list")))?;
            path.push(list.to_string());
            let strategy = list_strategy(&path.iter().map(String::as_str).collect::<Vec<_>>());
            path.pop();
            let server = server_orders.iter().find(|(l, _)| *l == list).map(|(_, s)| s.as_slice()).unwrap_or(&[]);
            if let Some(Value::Array(items)) = orig.get_mut(list) {
                reorder(items, order, server, strategy);
            }
        }
    }
    Ok(Outcome::Keep)
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key).filter(|v| !v.is_null())
}

/// Enforce `$setElementOrder` like Kubernetes' `normalizeElementOrder`: elements named in `order`
/// are sorted by it, the remaining ("server-only") elements by their position in `server` (the
/// original list), and the two sequences are merged so that a server-only element goes before a
/// listed one when it came before it in the original list.
fn reorder(items: &mut Vec<Value>, order: &[Value], server: &[Value], strategy: ListStrategy) {
    let id = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeKey(k) => key_of(v, k).cloned(),
            _ => Some(v.clone()),
        }
    };
    let order_ids: Vec<Value> = order.iter().filter_map(id).collect();
    let server_ids: Vec<Value> = server.iter().filter_map(id).collect();
    let position = |ids: &[Value], v: &Value| id(v).and_then(|i| ids.iter().position(|x| *x == i));
    let (mut listed, mut server_only): (Vec<Value>, Vec<Value>) =
        std::mem::take(items).into_iter().partition(|v| position(&order_ids, v).is_some());
    listed.sort_by_key(|v| position(&order_ids, v));
    server_only.sort_by_key(|v| position(&server_ids, v).unwrap_or(usize::MAX));
    let mut left = server_only.into_iter().peekable();
    let mut right = listed.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((position(&server_ids, l), position(&server_ids, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        items.extend(next);
    }
}

fn is_replace_marker(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.len() == 1 && m.get(PATCH).and_then(Value::as_str) == Some("replace"))
}

fn merge_list(orig: Vec<Value>, patch: &[Value], path: &mut Vec<String>) -> Result<Vec<Value>, PatchError> {
    let strategy = list_strategy(&path.iter().map(String::as_str).collect::<Vec<_>>());
    let replace = patch.iter().any(is_replace_marker);
    let items: Vec<&Value> = patch.iter().filter(|v| !is_replace_marker(v)).collect();
    match strategy {
        ListStrategy::Replace => Ok(items.into_iter().cloned().collect()),
        ListStrategy::MergePrimitive => {
            let mut out = if replace { Vec::new() } else { orig };
            for item in items {
                if item.is_object() || item.is_array() {
                    return Err(PatchError::Invalid(format!("list {} holds primitives, got {item}", path.join("."))));
                }
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(key) => {
            let mut out = if replace { Vec::new() } else { orig };
            for item in items {
                let Value::Object(p) = item else {
                    return Err(PatchError::Invalid(format!(
                        "elements of {} must be objects, got {item}",
                        path.join(".")
                    )));
                };
                let directive = patch_directive(p)?;
                let Some(k) = key_of(item, key) else {
                    return Err(PatchError::Invalid(format!(
                        "map {item} in list {} does not contain declared merge key: {key}",
                        path.join(".")
                    )));
                };
                if directive == Some("delete") {
                    out.retain(|o| key_of(o, key) != Some(k));
                    continue;
                }
                match out.iter().position(|o| key_of(o, key) == Some(k)) {
                    Some(i) => {
                        let mut m = match std::mem::take(&mut out[i]) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        match merge_map(&mut m, p, path)? {
                            Outcome::Keep => out[i] = Value::Object(m),
                            Outcome::Delete => {
                                out.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(v) = fresh(item, path)? {
                            out.push(v);
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"spec": {
                    "containers": [
                        {"name": "app", "image": "app:1",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}],
                         "volumeMounts": [{"mountPath": "/data", "name": "data"}],
                         "args": ["--x", "--y"]},
                        {"name": "sidecar", "image": "proxy:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                    "tolerations": [{"key": "k1", "operator": "Exists"}]
                }}
            }
        })
    }

    fn patch(p: Value) -> Value {
        apply(&deployment(), &p).unwrap()
    }

    fn containers(v: &Value) -> &Vec<Value> {
        v["spec"]["template"]["spec"]["containers"].as_array().unwrap()
    }

    #[test]
    fn strategy_table() {
        assert_eq!(list_strategy(&["spec", "containers"]), ListStrategy::MergeKey("name"));
        assert_eq!(list_strategy(&["spec", "template", "spec", "initContainers"]), ListStrategy::MergeKey("name"));
        assert_eq!(list_strategy(&["spec", "containers", "ports"]), ListStrategy::MergeKey("containerPort"));
        assert_eq!(list_strategy(&["spec", "ports"]), ListStrategy::MergeKey("port"));
        assert_eq!(list_strategy(&["spec", "containers", "env"]), ListStrategy::MergeKey("name"));
        assert_eq!(list_strategy(&["spec", "containers", "volumeMounts"]), ListStrategy::MergeKey("mountPath"));
        assert_eq!(list_strategy(&["spec", "volumes"]), ListStrategy::MergeKey("name"));
        assert_eq!(list_strategy(&["spec", "tolerations"]), ListStrategy::MergeKey("key"));
        assert_eq!(list_strategy(&["spec", "imagePullSecrets"]), ListStrategy::MergeKey("name"));
        assert_eq!(list_strategy(&["status", "conditions"]), ListStrategy::MergeKey("type"));
        assert_eq!(list_strategy(&["metadata", "finalizers"]), ListStrategy::MergePrimitive);
        assert_eq!(list_strategy(&["spec", "containers", "args"]), ListStrategy::Replace);
        assert_eq!(list_strategy(&["subsets", "ports"]), ListStrategy::Replace);
        assert_eq!(list_strategy(&["spec", "template", "spec", "ports"]), ListStrategy::Replace);
        assert_eq!(list_strategy(&[]), ListStrategy::Replace);
    }

    #[test]
    fn changing_one_image_keeps_other_containers() {
        let out =
            patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:2"}]}}}}));
        let c = containers(&out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["image"], "app:1");
        assert_eq!(c[0]["env"].as_array().unwrap().len(), 2, "untouched container keeps its fields");
        assert_eq!(c[1], json!({"name": "sidecar", "image": "proxy:2"}));
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn new_elements_are_appended() {
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}],
             "ports": [{"containerPort": 8080}]},
            {"name": "logger", "image": "log:1"}
        ]}}}}));
        let c = containers(&out);
        assert_eq!(c.iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(), ["app", "sidecar", "logger"]);
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(c[0]["ports"].as_array().unwrap().len(), 3);
        assert_eq!(c[0]["ports"][2], json!({"containerPort": 8080}));
    }

    #[test]
    fn non_keyed_lists_are_replaced() {
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["--z"]}]}}}}));
        assert_eq!(containers(&out)[0]["args"], json!(["--z"]));
    }

    #[test]
    fn patch_delete_removes_element_by_merge_key() {
        let out = patch(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "$patch": "delete"}, {"name": "app", "env": [{"name": "A", "$patch": "delete"}]}],
            "volumes": [{"name": "cfg", "$patch": "delete"}],
            "tolerations": [{"key": "k1", "$patch": "delete"}]
        }}}}));
        let c = containers(&out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["name"], "app");
        assert_eq!(c[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(out["spec"]["template"]["spec"]["volumes"], json!([{"name": "data", "emptyDir": {}}]));
        assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([]));
    }

    #[test]
    fn patch_delete_on_a_map() {
        let out = patch(json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}, "type": "Recreate"}}}));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(apply(&json!({"a": 1}), &json!({"$patch": "delete"})).unwrap(), json!({}));
        let new_key = apply(&json!({"a": 1}), &json!({"b": {"$patch": "delete"}})).unwrap();
        assert_eq!(new_key, json!({"a": 1}), "deleting an absent map adds nothing");
    }

    #[test]
    fn patch_replace_on_map_and_list() {
        let out = patch(json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "o:1"}
        ]}}}}));
        assert_eq!(containers(&out), &vec![json!({"name": "only", "image": "o:1"})]);
    }

    #[test]
    fn set_element_order_reorders() {
        let out = patch(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "sidecar", "image": "proxy:3"}]
        }}}}));
        let c = containers(&out);
        assert_eq!(c[0]["name"], "sidecar");
        assert_eq!(c[0]["image"], "proxy:3");
        assert_eq!(c[1]["name"], "app");
        assert_eq!(c[1]["image"], "app:1");

        let only_order = patch(json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}));
        assert_eq!(only_order["metadata"]["finalizers"], json!(["b", "a"]));

        // Server-only elements keep their place relative to the original list.
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}});
        let names = |v: &Value| -> Vec<String> {
            v["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&apply(&doc, &p).unwrap()), ["b", "c", "a"]);
        // A new element listed first goes first; the server-only one stays after its successor.
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "n"}, {"name": "a"}, {"name": "c"}],
                                "containers": [{"name": "n"}]}});
        assert_eq!(names(&apply(&doc, &p).unwrap()), ["n", "a", "b", "c"]);
    }

    #[test]
    fn retain_keys() {
        let out = patch(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = apply(&deployment(), &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}));
        assert!(matches!(err, Err(PatchError::Invalid(m)) if m.contains("$retainKeys")));
    }

    #[test]
    fn primitive_lists() {
        let out = patch(json!({"metadata": {"finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        let replaced = patch(json!({"metadata": {"finalizers": [{"$patch": "replace"}, "z"]}}));
        assert_eq!(replaced["metadata"]["finalizers"], json!(["z"]));
    }

    #[test]
    fn null_deletes_and_scalars_replace() {
        let out = patch(json!({"metadata": {"labels": {"app": null, "tier": "web"}}, "spec": {"replicas": 5}}));
        assert_eq!(out["metadata"]["labels"], json!({"tier": "web"}));
        assert_eq!(out["spec"]["replicas"], 5);
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": null}]}}}}));
        assert!(containers(&out)[0].get("env").is_none());
    }

    #[test]
    fn service_ports_merge_by_port_and_conditions_by_type() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
                         "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}]}});
        let out = apply(
            &svc,
            &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["ports"][1], json!({"port": 443, "name": "https", "targetPort": 8443}));
        assert_eq!(out["spec"]["ports"][0]["name"], "http");
        assert_eq!(out["status"]["conditions"][0], json!({"type": "Ready", "status": "True"}));
        assert_eq!(out["status"]["conditions"][1]["type"], "Synced");
    }

    #[test]
    fn nested_directives_in_new_elements_are_resolved() {
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "new", "image": "n:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}
        ]}}}}));
        assert_eq!(containers(&out)[2], json!({"name": "new", "image": "n:1", "env": [{"name": "X", "value": "1"}]}));
    }

    #[test]
    fn errors() {
        let d = deployment();
        assert!(apply(&d, &json!([1])).is_err());
        let missing_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(matches!(apply(&d, &missing_key), Err(PatchError::Invalid(m)) if m.contains("merge key: name")));
        assert!(apply(&d, &json!({"spec": {"$patch": "explode"}})).is_err());
        assert!(apply(&d, &json!({"spec": {"template": {"spec": {"containers": ["x"]}}}})).is_err());
        assert!(apply(&d, &json!({"metadata": {"finalizers": [{"a": 1}]}})).is_err());
    }

    #[test]
    fn input_is_not_modified() {
        let d = deployment();
        let _ = apply(&d, &json!({"spec": {"replicas": 9}})).unwrap();
        assert_eq!(d, deployment());
    }
}
