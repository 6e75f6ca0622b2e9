//! Kubernetes defaulting for served objects: fills absent fields in place and is idempotent.

use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Fill defaults on an object of `resource`. Only fields that are absent (or `null`) are set,
/// so applying it twice yields the same object. Non-object values are left untouched.
pub fn default_object(resource: &ResourceInfo, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else { return };
    if resource.namespaced {
        let meta = child(root, "metadata");
        let empty = meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty);
        if empty {
            meta.insert("namespace".into(), json!(DEFAULT_NAMESPACE));
        }
    }
    match resource.kind {
        "Pod" => default_pod_spec(child(root, "spec")),
        "Deployment" => default_deployment_spec(child(root, "spec")),
        "ReplicaSet" => {
            let spec = child(root, "spec");
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
        "Service" => default_service_spec(child(root, "spec")),
        _ => {}
    }
}

/// Default a typed k8s-openapi object through its JSON form. Types Skiff does not serve are
/// left unchanged.
pub fn default_typed<K>(obj: &mut K) -> Result<(), serde_json::Error>
where
    K: k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned,
{
    if let Some(resource) = crate::registry::resource_of::<K>() {
        let mut value = serde_json::to_value(&*obj)?;
        default_object(resource, &mut value);
        *obj = serde_json::from_value(value)?;
    }
    Ok(())
}

/// The object at `key`, created (or replacing a non-object) if needed.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// Set `key` unless already present with a non-null value.
fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            m.insert(key.to_string(), value);
        }
    }
}

fn each_object(m: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(items)) = m.get_mut(key) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    if let Some(Value::Object(template)) = spec.get_mut("template") {
        default_pod_spec(child(template, "spec"));
    }
}

/// Pod-spec defaults (also applied to workload templates).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!(DEFAULT_SCHEDULER));
    set(spec, "securityContext", json!({}));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        each_object(spec, list, default_container);
        if host_network {
            // A pod on the host's network listens on the host's ports: `hostPort` is `containerPort`.
            each_object(spec, list, |c| {
                each_object(c, "ports", |p| {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        if let Some(cp) = p.get("containerPort").cloned() {
                            p.insert("hostPort".into(), cp);
                        }
                    }
                })
            });
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (digests count as pinned).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Map<String, Value>) {
    let policy = default_pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    set(c, "imagePullPolicy", json!(policy));
    set(c, "terminationMessagePath", json!(TERMINATION_MESSAGE_PATH));
    set(c, "terminationMessagePolicy", json!("File"));
    each_object(c, "ports", |p| set(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            default_http_get(p);
        }
    }
    if let Some(Value::Object(lifecycle)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = lifecycle.get_mut(hook) {
                default_http_get(h);
            }
        }
    }
    // Requests default to limits for resources that have a limit but no request.
    if let Some(Value::Object(res)) = c.get_mut("resources") {
        if let Some(Value::Object(limits)) = res.get("limits").cloned() {
            if !limits.is_empty() {
                let requests = child(res, "requests");
                for (k, v) in limits {
                    set(requests, &k, v);
                }
            }
        }
    }
}

/// An `httpGet` handler's path `/` and scheme `HTTP` (what `kubectl describe` prints as
/// `http-get http://:8080/`). Templates that predate these defaults still match their
/// ReplicaSets: the Deployment controller compares and hashes templates without them.
fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(Value::Object(h)) = handler.get_mut("httpGet") {
        set(h, "path", json!("/"));
        set(h, "scheme", json!("HTTP"));
    }
}

fn default_deployment_spec(spec: &mut Map<String, Value>) {
    set(spec, "replicas", json!(1));
    set(spec, "progressDeadlineSeconds", json!(600));
    set(spec, "revisionHistoryLimit", json!(10));
    set(spec, "minReadySeconds", json!(0));
    let strategy = child(spec, "strategy");
    set(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = child(strategy, "rollingUpdate");
        set(ru, "maxUnavailable", json!("25%"));
        set(ru, "maxSurge", json!("25%"));
    }
    default_template(spec);
}

fn default_service_spec(spec: &mut Map<String, Value>) {
    set(spec, "type", json!("ClusterIP"));
    set(spec, "sessionAffinity", json!("None"));
    each_object(spec, "ports", |p| {
        set(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set(p, "targetPort", port);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{DEPLOYMENTS, NODES, PODS, REPLICASETS, SERVICES};

    fn defaulted(resource: &ResourceInfo, mut v: Value) -> Value {
        default_object(resource, &mut v);
        let mut again = v.clone();
        default_object(resource, &mut again);
        assert_eq!(again, v, "defaulting must be idempotent");
        v
    }

    #[test]
    fn pod_defaults() {
        let p = defaulted(
            &PODS,
            json!({"metadata": {"name": "web"}, "spec": {"containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                 "livenessProbe": {"httpGet": {"path": "/", "port": 80}}},
                {"name": "b", "image": "redis:7.2", "readinessProbe": {"periodSeconds": 3},
                 "lifecycle": {"preStop": {"httpGet": {"path": "/quit", "port": 80, "scheme": "HTTPS"}},
                               "postStart": {"httpGet": {"port": 80}}}},
            ], "initContainers": [{"name": "i", "image": "busybox:latest"}]}}),
        );
        assert_eq!(p["metadata"]["namespace"], "default");
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["schedulerName"], "default-scheduler");
        let a = &s["containers"][0];
        assert_eq!(a["imagePullPolicy"], "Always");
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        assert_eq!(
            a["livenessProbe"],
            json!({"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10,
                   "successThreshold": 1, "failureThreshold": 3})
        );
        let b = &s["containers"][1];
        assert_eq!(b["imagePullPolicy"], "IfNotPresent");
        assert_eq!(b["readinessProbe"]["periodSeconds"], 3, "explicit values are kept");
        assert_eq!(b["readinessProbe"]["failureThreshold"], 3);
        assert_eq!(b["lifecycle"]["preStop"]["httpGet"], json!({"path": "/quit", "port": 80, "scheme": "HTTPS"}));
        assert_eq!(b["lifecycle"]["postStart"]["httpGet"], json!({"path": "/", "port": 80, "scheme": "HTTP"}));
        assert_eq!(s["initContainers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn explicit_values_survive() {
        let p = defaulted(
            &PODS,
            json!({"metadata": {"name": "x", "namespace": "prod"}, "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "dnsPolicy": "Default",
                "containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never",
                                "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}}),
        );
        assert_eq!(p["metadata"]["namespace"], "prod");
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(p["spec"]["dnsPolicy"], "Default");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "UDP");
    }

    #[test]
    fn requests_default_to_limits() {
        let p = defaulted(
            &PODS,
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a", "image": "i:1",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}}]}}),
        );
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "100m", "memory": "1Gi"}));
    }

    #[test]
    fn pull_policy_from_image() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(default_pull_policy("registry:5000/nginx:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            &DEPLOYMENTS,
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "a", "image": "nginx:1"}]}}}}),
        );
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["minReadySeconds"], 0);
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(s["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(d["metadata"]["namespace"], "default");
    }

    #[test]
    fn deployment_keeps_explicit_strategy() {
        let d = defaulted(
            &DEPLOYMENTS,
            json!({"metadata": {"name": "w"}, "spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let d = defaulted(
            &DEPLOYMENTS,
            json!({"metadata": {"name": "w"}, "spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}}),
        );
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 2, "maxUnavailable": "25%"}));
    }

    #[test]
    fn replicaset_defaults() {
        let rs = defaulted(
            &REPLICASETS,
            json!({"metadata": {"name": "r"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(rs["spec"].get("strategy").is_none());
    }

    #[test]
    fn service_defaults() {
        let s = defaulted(
            &SERVICES,
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]}}),
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "https");
    }

    #[test]
    fn typed_objects_are_defaulted() {
        use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

        let container = Container { name: "app".into(), image: Some("nginx:1".into()), ..Default::default() };
        let spec = PodSpec { containers: vec![container], ..Default::default() };
        let mut pod = Pod {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            spec: Some(spec.clone()),
            ..Default::default()
        };
        default_typed(&mut pod).unwrap();
        let s = pod.spec.as_ref().unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(s.restart_policy.as_deref(), Some("Always"));
        assert_eq!(s.termination_grace_period_seconds, Some(30));
        assert_eq!(s.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
        let once = pod.clone();
        default_typed(&mut pod).unwrap();
        assert_eq!(pod, once);

        let mut d = Deployment {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec { spec: Some(spec), ..Default::default() },
                ..Default::default()
            }),
            ..Default::default()
        };
        default_typed(&mut d).unwrap();
        let ds = d.spec.unwrap();
        assert_eq!(ds.replicas, Some(1));
        let ru = ds.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(ds.template.spec.unwrap().dns_policy.as_deref(), Some("ClusterFirst"));
    }

    #[test]
    fn cluster_scoped_objects_get_no_namespace() {
        let n = defaulted(&NODES, json!({"metadata": {"name": "n1"}}));
        assert!(n["metadata"].get("namespace").is_none());
        let mut not_obj = json!([1, 2]);
        default_object(&PODS, &mut not_obj);
        assert_eq!(not_obj, json!([1, 2]));
    }
}
