//! `cordon`, `uncordon` and `drain` logic over Node and Pod JSON: the unschedulable patch and kubectl's drain filters (unmanaged pods need `--force`, emptyDir pods `--delete-emptydir-data`).

use serde_json::{json, Value};

/// kubectl's message for pods without a controller.
pub const UNMANAGED_FATAL: &str = "cannot delete Pods that declare no controller (use --force to override)";
/// kubectl's warning when `--force` deletes them anyway.
pub const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";
/// kubectl's message for pods with local (emptyDir) storage.
pub const LOCAL_STORAGE_FATAL: &str = "cannot delete Pods with local storage (use --delete-emptydir-data to override)";

/// Whether the node is marked unschedulable.
pub fn is_cordoned(node: &Value) -> bool {
    node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
}

/// The merge patch that cordons (`true`) or uncordons a node.
pub fn cordon_patch(unschedulable: bool) -> Value {
    json!({"spec": {"unschedulable": unschedulable}})
}

/// `cordoned`, `already cordoned`, `uncordoned`, `already uncordoned`.
pub fn cordon_verb(desired: bool, already: bool) -> &'static str {
    match (desired, already) {
        (true, false) => "cordoned",
        (true, true) => "already cordoned",
        (false, false) => "uncordoned",
        (false, true) => "already uncordoned",
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Value) -> String {
    let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    format!("{}/{}", s("/metadata/namespace"), s("/metadata/name"))
}

fn has_controller(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
}

fn is_finished(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

fn has_local_storage(pod: &Value) -> bool {
    pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten().any(|v| v.get("emptyDir").is_some())
}

/// Drain options that change which pods may be evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainFilter {
    pub force: bool,
    pub delete_emptydir_data: bool,
}

/// The pods to evict and the warnings to print, or the reasons the drain must stop (each
/// `MESSAGE: ns/a, ns/b`), as kubectl's pod filters decide. Finished pods are always evictable.
pub fn drain_plan(pods: &[Value], f: DrainFilter) -> Result<(Vec<Value>, Vec<String>), Vec<String>> {
    let mut unmanaged = Vec::new();
    let mut local = Vec::new();
    let mut delete = Vec::new();
    let mut fatal_unmanaged = false;
    for p in pods {
        let finished = is_finished(p);
        if !finished && !has_controller(p) {
            unmanaged.push(pod_key(p));
            if !f.force {
                fatal_unmanaged = true;
                continue;
            }
        }
        if !finished && has_local_storage(p) && !f.delete_emptydir_data {
            local.push(pod_key(p));
            continue;
        }
        delete.push(p.clone());
    }
    let mut errors = Vec::new();
    if fatal_unmanaged {
        errors.push(format!("{UNMANAGED_FATAL}: {}", unmanaged.join(", ")));
    }
    if !local.is_empty() {
        errors.push(format!("{LOCAL_STORAGE_FATAL}: {}", local.join(", ")));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings =
        if unmanaged.is_empty() { Vec::new() } else { vec![format!("{UNMANAGED_WARNING}: {}", unmanaged.join(", "))] };
    Ok((delete, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, managed: bool, phase: &str, empty_dir: bool) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": "n1"},
            "status": {"phase": phase}});
        if managed {
            p["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": "web-1", "controller": true}]);
        }
        if empty_dir {
            p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        }
        p
    }

    #[test]
    fn cordon_words() {
        assert_eq!(cordon_patch(true), json!({"spec": {"unschedulable": true}}));
        assert_eq!(cordon_verb(true, true), "already cordoned");
        assert_eq!(cordon_verb(false, false), "uncordoned");
        assert!(is_cordoned(&json!({"spec": {"unschedulable": true}})));
        assert!(!is_cordoned(&json!({"spec": {}})));
    }

    #[test]
    fn drain_filters() {
        let pods = vec![
            pod("web", true, "Running", false),
            pod("bare", false, "Running", false),
            pod("done", false, "Succeeded", true),
            pod("cache", true, "Running", true),
        ];
        let e = drain_plan(&pods, DrainFilter::default()).unwrap_err();
        assert_eq!(
            e,
            vec![format!("{UNMANAGED_FATAL}: default/bare"), format!("{LOCAL_STORAGE_FATAL}: default/cache"),]
        );
        let (del, warn) = drain_plan(&pods, DrainFilter { force: true, delete_emptydir_data: true }).unwrap();
        assert_eq!(
            del.iter().map(pod_key).collect::<Vec<_>>(),
            ["default/web", "default/bare", "default/done", "default/cache"]
        );
        assert_eq!(warn, vec!["deleting Pods that declare no controller: default/bare".to_string()]);
        let (del, warn) = drain_plan(&pods[..1], DrainFilter::default()).unwrap();
        assert_eq!((del.len(), warn.len()), (1, 0));
    }
}
