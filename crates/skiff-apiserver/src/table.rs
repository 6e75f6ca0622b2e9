//! `meta.k8s.io/v1` Table responses: the columns `kubectl get` shows for each kind.

use serde_json::{json, Value};
use skiff_api::registry::ResourceInfo;

use crate::meta::{age, meta_str};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Self {
        match s {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, priority: u8, description: &'static str) -> Col {
    Col { name, ty, priority, description }
}

fn columns(kind: &str) -> Vec<Col> {
    let name = col("Name", "string", 0, "Name must be unique within a namespace.");
    let age = col("Age", "string", 0, "Time since the object was created.");
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0, "The number of containers that are ready."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
            age,
            col("IP", "string", 1, "The IP address of the pod."),
            col("Node", "string", 1, "The node the pod is bound to."),
            col("Nominated Node", "string", 1, "The node the pod is nominated to."),
            col("Readiness Gates", "string", 1, "The readiness gates of the pod."),
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col("Up-to-date", "string", 0, "Total number of non-terminated pods with the desired template."),
            col("Available", "string", 0, "Total number of available pods."),
            age,
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Label selector for pods."),
        ],
        "ReplicaSet" => vec![
            name,
            col("Desired", "integer", 0, "Number of desired pods."),
            col("Current", "integer", 0, "Number of actual replicas."),
            col("Ready", "integer", 0, "The number of ready replicas."),
            age,
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Label selector for pods."),
        ],
        "Service" => vec![
            name,
            col("Type", "string", 0, "The type of the service."),
            col("Cluster-IP", "string", 0, "The cluster IP of the service."),
            col("External-IP", "string", 0, "The external IPs of the service."),
            col("Port(s)", "string", 0, "The ports of the service."),
            age,
            col("Selector", "string", 1, "Route traffic to pods with labels matching this selector."),
        ],
        "Node" => vec![
            name,
            col("Status", "string", 0, "The status of the node."),
            col("Roles", "string", 0, "The roles of the node."),
            age,
            col("Version", "string", 0, "Kubelet version reported by the node."),
            col("Internal-IP", "string", 1, "The internal IP of the node."),
            col("External-IP", "string", 1, "The external IP of the node."),
            col("OS-Image", "string", 1, "The OS image reported by the node."),
            col("Kernel-Version", "string", 1, "The kernel version reported by the node."),
            col("Container-Runtime", "string", 1, "The container runtime reported by the node."),
        ],
        "Event" => vec![
            col("Last Seen", "string", 0, "Time since the event was last seen."),
            col("Type", "string", 0, "Type of this event."),
            col("Reason", "string", 0, "Why the action was taken."),
            col("Object", "string", 0, "The object this event is about."),
            col("Subobject", "string", 1, "The part of the object this event is about."),
            col("Source", "string", 1, "The component reporting this event."),
            col("Message", "string", 0, "A human-readable description of the status of this operation."),
            col("First Seen", "string", 1, "Time since the event was first seen."),
            col("Count", "string", 1, "The number of times this event has occurred."),
            col("Name", "string", 1, "The name of the event."),
        ],
        "Namespace" => vec![name, col("Status", "string", 0, "The status of the namespace."), age],
        "Endpoints" => vec![name, col("Endpoints", "string", 0, "Endpoints of the service."), age],
        "Lease" => vec![name, col("Holder", "string", 0, "The holder of the lease."), age],
        "EndpointSlice" => vec![
            name,
            col("AddressType", "string", 0, "The type of address of the endpoints."),
            col("Ports", "string", 0, "The ports of the endpoints."),
            col("Endpoints", "string", 0, "The addresses of the endpoints."),
            age,
        ],
        _ => vec![name, age],
    }
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

fn or_default(x: String, d: &str) -> String {
    if x.is_empty() {
        d.to_string()
    } else {
        x
    }
}

fn list_join(obj: &Value, ptr: &str, field: &str) -> String {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|c| s(c.get(field))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn selector_of(obj: &Value) -> String {
    obj.pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum();
    let mut reason = s(o.pointer("/status/reason"));
    if reason.is_empty() {
        reason = s(o.pointer("/status/phase"));
    }
    // kubectl's printer: the first init container that has not succeeded tells the status.
    let inits = o.pointer("/status/initContainerStatuses").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let init_total = o.pointer("/spec/initContainers").and_then(Value::as_array).map_or(0, Vec::len);
    let restarts = restarts + inits.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum::<i64>();
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated") {
            if t.get("exitCode").and_then(Value::as_i64) == Some(0) {
                continue;
            }
            reason = match t.get("reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", s(t.get("exitCode"))),
            };
        } else {
            reason = match c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() && r != "PodInitializing" => format!("Init:{r}"),
                _ => format!("Init:{i}/{init_total}"),
            };
        }
        initializing = true;
        break;
    }
    let initialized = o.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Initialized")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    for c in statuses.iter().filter(|_| !initializing || initialized) {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            reason = match t.get("reason").and_then(Value::as_str) {
                Some(r) => r.to_string(),
                None => format!("ExitCode:{}", s(t.get("exitCode"))),
            };
        }
    }
    if meta_str(o, "deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    vec![
        json!(meta_str(o, "name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(meta_str(o, "creationTimestamp"))),
        json!(or_none(s(o.pointer("/status/podIP")))),
        json!(or_none(s(o.pointer("/spec/nodeName")))),
        json!(or_none(s(o.pointer("/status/nominatedNodeName")))),
        json!("<none>"),
    ]
}

fn ports_of(o: &Value) -> String {
    let ports = o.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort") {
                Some(np) if !np.is_null() => format!("{}:{}/{proto}", s(p.get("port")), s(Some(np))),
                _ => format!("{}/{proto}", s(p.get("port"))),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn node_cells(o: &Value) -> Vec<Value> {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut status = match conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")) {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string)).collect())
        .unwrap_or_default();
    let addr = |t: &str| {
        o.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x.get("type").and_then(Value::as_str) == Some(t)))
            .map(|x| s(x.get("address")))
            .unwrap_or_default()
    };
    vec![
        json!(meta_str(o, "name")),
        json!(status),
        json!(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }),
        json!(age(meta_str(o, "creationTimestamp"))),
        json!(s(o.pointer("/status/nodeInfo/kubeletVersion"))),
        json!(or_none(addr("InternalIP"))),
        json!(or_none(addr("ExternalIP"))),
        json!(s(o.pointer("/status/nodeInfo/osImage"))),
        json!(s(o.pointer("/status/nodeInfo/kernelVersion"))),
        json!(s(o.pointer("/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

fn event_cells(o: &Value) -> Vec<Value> {
    let last = meta_str(o, "lastTimestamp")
        .or_else(|| o.get("lastTimestamp").and_then(Value::as_str))
        .or_else(|| o.get("eventTime").and_then(Value::as_str))
        .or_else(|| meta_str(o, "creationTimestamp"));
    let first = o.get("firstTimestamp").and_then(Value::as_str).or(last);
    let obj =
        format!("{}/{}", s(o.pointer("/involvedObject/kind")).to_lowercase(), s(o.pointer("/involvedObject/name")));
    vec![
        json!(age(last)),
        json!(s(o.get("type"))),
        json!(s(o.get("reason"))),
        json!(obj),
        json!(s(o.pointer("/involvedObject/fieldPath"))),
        json!(s(o.pointer("/source/component"))),
        json!(s(o.get("message")).trim()),
        json!(age(first)),
        json!(s(o.get("count"))),
        json!(meta_str(o, "name")),
    ]
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(meta_str(o, "name"));
    let created = json!(age(meta_str(o, "creationTimestamp")));
    let int = |p: &str| json!(o.pointer(p).and_then(Value::as_i64).unwrap_or(0));
    match kind {
        "Pod" => pod_cells(o),
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                o.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0),
                o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)
            )),
            int("/status/updatedReplicas"),
            int("/status/availableReplicas"),
            created,
            json!(list_join(o, "/spec/template/spec/containers", "name")),
            json!(list_join(o, "/spec/template/spec/containers", "image")),
            json!(selector_of(o)),
        ],
        "ReplicaSet" => vec![
            name,
            int("/spec/replicas"),
            int("/status/replicas"),
            int("/status/readyReplicas"),
            created,
            json!(list_join(o, "/spec/template/spec/containers", "name")),
            json!(list_join(o, "/spec/template/spec/containers", "image")),
            json!(selector_of(o)),
        ],
        "Service" => {
            let ext = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|i| s(i.get("ip"))).collect::<Vec<_>>().join(","))
                .or_else(|| {
                    o.pointer("/spec/externalIPs")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().map(|i| s(Some(i))).collect::<Vec<_>>().join(","))
                })
                .unwrap_or_default();
            let sel = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(or_default(s(o.pointer("/spec/type")), "ClusterIP")),
                json!(or_none(s(o.pointer("/spec/clusterIP")))),
                json!(or_none(ext)),
                json!(ports_of(o)),
                created,
                json!(or_none(sel)),
            ]
        }
        "Node" => node_cells(o),
        "Event" => event_cells(o),
        "Namespace" => vec![name, json!(s(o.pointer("/status/phase"))), created],
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in o.get("subsets").and_then(Value::as_array).into_iter().flatten() {
                let ports: Vec<String> = sub
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| s(p.get("port")))
                    .collect();
                for a in sub.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    let ip = s(a.get("ip"));
                    if ports.is_empty() {
                        eps.push(ip.clone());
                    }
                    for p in &ports {
                        eps.push(format!("{ip}:{p}"));
                    }
                }
            }
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, json!(or_none(shown)), created]
        }
        "Lease" => vec![name, json!(s(o.pointer("/spec/holderIdentity"))), created],
        "EndpointSlice" => {
            let list = |key: &str, f: &dyn Fn(&Value) -> Vec<String>| -> Vec<String> {
                o.get(key).and_then(Value::as_array).into_iter().flatten().flat_map(f).collect()
            };
            let ports = list("ports", &|p| vec![p.get("port").map_or_else(|| "<unset>".into(), |v| s(Some(v)))]);
            let addrs = list("endpoints", &|e| {
                e.get("addresses").and_then(Value::as_array).into_iter().flatten().map(|a| s(Some(a))).collect()
            });
            let shorten = |v: Vec<String>| {
                if v.len() > 3 {
                    format!("{} + {} more...", v[..3].join(","), v.len() - 3)
                } else {
                    v.join(",")
                }
            };
            vec![
                name,
                json!(s(o.get("addressType"))),
                json!(or_none(shorten(ports))),
                json!(or_none(shorten(addrs))),
                created,
            ]
        }
        _ => vec![name, created],
    }
}

fn row_object(o: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => o.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// A Table of `objects`. `column_definitions` is false for watch events after the first.
pub fn table(
    res: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    column_definitions: bool,
    resource_version: Option<String>,
    continue_token: Option<String>,
) -> Value {
    let cols = columns(res.kind);
    let defs: Vec<Value> = if column_definitions {
        cols.iter()
            .map(|c| {
                json!({"name": c.name, "type": c.ty, "format": if c.name == "Name" { "name" } else { "" },
                    "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(res.kind, o)});
            let obj = row_object(o, include);
            if !obj.is_null() {
                row["object"] = obj;
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::{DEPLOYMENTS, PODS, SERVICES};

    #[test]
    fn pod_row_shows_readiness_status_and_restarts() {
        let pod = json!({"metadata": {"name": "web-1", "creationTimestamp": crate::meta::now_rfc3339()},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table(&PODS, &[pod], IncludeObject::Metadata, true, Some("9".into()), None);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web-1");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[4], "0s");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"][1]["name"], "Ready");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn pod_row_status_while_initializing() {
        let row = |inits: Value, initialized: &str| {
            let pod = json!({"metadata": {"name": "p"},
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "Initialized", "status": initialized}],
                    "initContainerStatuses": inits,
                    "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0,
                                           "state": {"waiting": {"reason": "PodInitializing"}}}]}});
            let t = table(&PODS, &[pod], IncludeObject::None, true, None, None);
            (t["rows"][0]["cells"][2].clone(), t["rows"][0]["cells"][3].clone())
        };
        let done =
            json!({"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running = json!({"name": "i2", "restartCount": 0, "state": {"running": {}}});
        let waiting = json!({"name": "i2", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}});
        assert_eq!(row(json!([waiting.clone(), waiting.clone()]), "False").0, "Init:0/2");
        assert_eq!(row(json!([done.clone(), running]), "False").0, "Init:1/2");
        let backoff = json!({"name": "i2", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
        assert_eq!(row(json!([done.clone(), backoff]), "False"), (json!("Init:CrashLoopBackOff"), json!("4")));
        let failed =
            json!({"name": "i2", "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error"}}});
        assert_eq!(row(json!([done.clone(), failed]), "False").0, "Init:Error");
        let unnamed = json!({"name": "i2", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}});
        assert_eq!(row(json!([done.clone(), unnamed]), "False").0, "Init:ExitCode:3");
        // All done: the containers tell, as for any pod.
        assert_eq!(row(json!([done.clone(), done]), "True").0, "PodInitializing");
    }

    #[test]
    fn deployment_and_service_rows() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "skiff/busybox:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table(&DEPLOYMENTS, &[d], IncludeObject::None, true, None, None);
        assert_eq!(t["rows"][0]["cells"], json!(["web", "2/3", 3, 2, "<unknown>", "c", "skiff/busybox:1", "app=web"]));
        assert!(t["rows"][0].get("object").is_none());
        let svc = json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}]}});
        let t = table(&SERVICES, &[svc], IncludeObject::None, false, None, None);
        assert_eq!(t["rows"][0]["cells"][1], "ClusterIP");
        assert_eq!(t["rows"][0]["cells"][4], "80/TCP");
        assert_eq!(t["columnDefinitions"], json!([]));
    }
}
