//! Service environment variables (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]`) for containers, as the kubelet injects them,
//! and whether a Service lists a pod among its endpoints while the pod is not Ready.
//!
//! Skiff allocates no cluster IPs yet. A Service with a real `spec.clusterIP` is advertised with
//! it and its `port`s; any other Service (no cluster IP, or headless `None`) is advertised with
//! the node's host IP and its `nodePort`s, which the node's service proxy
//! ([`crate::proxy::ServiceProxy`]) forwards to the Service's ready endpoints. A Service that has
//! neither is not advertised.

use std::collections::BTreeMap;

use serde_json::Value;

/// `my-svc.v2` → `MY_SVC_V2`.
fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The variables for Services in `namespace` (sorted by Service name, so stable across restarts).
pub fn service_env(services: &[Value], namespace: &str, host_ip: &str) -> Vec<(String, String)> {
    let mut selected: Vec<&Value> = services
        .iter()
        .filter(|s| s["metadata"]["namespace"].as_str().unwrap_or("default") == namespace)
        .filter(|s| s["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()))
        .collect();
    selected.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or_default());
    let mut env = Vec::new();
    for svc in selected {
        let ports: Vec<&Value> = svc["spec"]["ports"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let cluster_ip = svc["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None");
        let (host, field) = match cluster_ip {
            Some(ip) => (ip.to_string(), "port"),
            None => (host_ip.to_string(), "nodePort"),
        };
        let Some(port) = first[field].as_i64().filter(|p| *p > 0) else { continue };
        let prefix = env_name(svc["metadata"]["name"].as_str().unwrap_or_default());
        env.push((format!("{prefix}_SERVICE_HOST"), host));
        env.push((format!("{prefix}_SERVICE_PORT"), port.to_string()));
        for p in &ports {
            let (Some(name), Some(port)) =
                (p["name"].as_str().filter(|n| !n.is_empty()), p[field].as_i64().filter(|p| *p > 0))
            else {
                continue;
            };
            env.push((format!("{prefix}_SERVICE_PORT_{}", env_name(name)), port.to_string()));
        }
    }
    env
}

/// `service` first, then the container's own variables, which win on a name clash.
pub(crate) fn merge(service: &[(String, String)], own: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        service.iter().filter(|(k, _)| !own.iter().any(|(o, _)| o == k)).cloned().collect();
    out.extend(own);
    out
}

/// Whether a Service of `namespace` that publishes not-ready addresses
/// (`spec.publishNotReadyAddresses`) selects a pod with `labels`: its endpoints then list the
/// pod as ready whatever its readiness, so proxies may route to a pod that never was Ready.
pub fn publishes_unready(services: &[Value], namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    services
        .iter()
        .filter(|s| s["metadata"]["namespace"].as_str().unwrap_or("default") == namespace)
        .filter(|s| s["spec"]["publishNotReadyAddresses"].as_bool() == Some(true))
        .filter_map(|s| s["spec"]["selector"].as_object().filter(|sel| !sel.is_empty()))
        .any(|sel| sel.iter().all(|(k, v)| v.as_str().is_some_and(|v| labels.get(k).map(String::as_str) == Some(v))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn cluster_ip_node_port_fallback_and_named_ports() {
        let services = vec![
            json!({"metadata": {"name": "redis-primary", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 6379}]}}),
            json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"type": "NodePort", "ports": [
                    {"name": "http", "port": 80, "nodePort": 30080},
                    {"name": "metrics-v2", "port": 9090, "nodePort": 30090}]}}),
            json!({"metadata": {"name": "headless", "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
            json!({"metadata": {"name": "elsewhere", "namespace": "other"},
                "spec": {"clusterIP": "10.96.0.8", "ports": [{"port": 1}]}}),
        ];
        let env = service_env(&services, "default", "192.168.0.5");
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_HOST"), Some("10.96.0.7"));
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_PORT"), Some("6379"));
        assert_eq!(get(&env, "WEB_SERVICE_HOST"), Some("192.168.0.5"));
        assert_eq!(get(&env, "WEB_SERVICE_PORT"), Some("30080"));
        assert_eq!(get(&env, "WEB_SERVICE_PORT_HTTP"), Some("30080"));
        assert_eq!(get(&env, "WEB_SERVICE_PORT_METRICS_V2"), Some("30090"));
        assert!(env.iter().all(|(k, _)| !k.starts_with("HEADLESS") && !k.starts_with("ELSEWHERE")), "{env:?}");
        assert_eq!(env.len(), 6);
    }

    #[test]
    fn container_variables_win() {
        let svc = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())];
        let merged = merge(&svc, vec![("B".to_string(), "own".to_string())]);
        assert_eq!(merged, vec![("A".to_string(), "1".to_string()), ("B".to_string(), "own".to_string())]);
    }

    #[test]
    fn services_publishing_unready_addresses_select_by_namespace_and_labels() {
        let labels: BTreeMap<String, String> =
            [("app".to_string(), "db".to_string()), ("tier".into(), "x".into())].into();
        let svc = |ns: &str, publish: bool, selector: Value| {
            json!({"metadata": {"name": "s", "namespace": ns},
                "spec": {"publishNotReadyAddresses": publish, "selector": selector}})
        };
        assert!(publishes_unready(&[svc("default", true, json!({"app": "db"}))], "default", &labels));
        assert!(!publishes_unready(&[svc("default", false, json!({"app": "db"}))], "default", &labels));
        assert!(!publishes_unready(&[svc("other", true, json!({"app": "db"}))], "default", &labels));
        assert!(!publishes_unready(&[svc("default", true, json!({"app": "web"}))], "default", &labels));
        assert!(!publishes_unready(&[svc("default", true, json!({"app": "db", "zone": "a"}))], "default", &labels));
        // No selector: its Endpoints are the user's own, not kept by readiness.
        assert!(!publishes_unready(&[svc("default", true, json!({}))], "default", &labels));
        assert!(!publishes_unready(&[svc("default", true, Value::Null)], "default", &labels));
    }
}
