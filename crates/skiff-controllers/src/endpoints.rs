//! Endpoints controller: keeps the `v1 Endpoints` of every Service with a selector in step with its matching pods.
//!
//! For a Service `ns/name` with a non-empty `spec.selector`, the Endpoints `ns/name` lists every
//! matching pod of the namespace that has a `status.podIP`, is not terminal (Succeeded/Failed) and
//! is not being deleted: Ready pods (or all of them with `publishNotReadyAddresses`) under
//! `addresses`, the others under `notReadyAddresses`. A terminating pod leaves the Endpoints at
//! once, which is what lets service proxies stop sending it new connections before it gets
//! SIGTERM. Ports come from the Service's ports, `targetPort` resolved per pod (a number, or the
//! name of a container port; default the port itself); pods with the same resolved ports share a
//! subset; at most [`MAX_ADDRESSES`] addresses are listed (ready ones first, the object then
//! annotated `over-capacity: truncated`, as Kubernetes does). The controller writes only when the
//! content changed, marks what it writes with the label [`MANAGED_BY_LABEL`], and deletes marked
//! Endpoints whose Service is gone. Endpoints of Services without a selector belong to the user
//! and are never touched.
//!
//! It also keeps the Service's `discovery.k8s.io/v1` EndpointSlices, which is where `kubectl`
//! (1.28 and later) reads a Service's endpoints from (`describe svc`): one slice per port set
//! and address family of those Endpoints, named `<service>-<hash of both>`, labelled
//! `kubernetes.io/service-name` and [`SLICE_MANAGED_BY_LABEL`], owned by the Service; ready
//! addresses have `conditions.ready` (and `serving`) true, not-ready ones false; a Service
//! without pods has one slice without endpoints, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::registry::{ENDPOINTS, ENDPOINTSLICES, SERVICES};

use crate::api::ObjectApi;
use crate::error::Error;
use crate::informer::Cache;
use crate::runtime::{Action, Reconciler, WorkQueue};
use crate::util::{self, ObjKey};

pub const COMPONENT: &str = "endpoints-controller";
/// Label on every Endpoints this controller wrote; only these are deleted with their Service.
pub const MANAGED_BY_LABEL: &str = "endpoints.skiff.io/managed-by";
pub const MANAGED_BY_VALUE: &str = COMPONENT;
/// Most addresses one Endpoints object lists (Kubernetes' limit); beyond it ready addresses are
/// kept first and the object is annotated with [`OVER_CAPACITY_ANNOTATION`]` = truncated`.
pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// The label tying an EndpointSlice to its Service (what `kubectl describe svc` selects on).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller of an EndpointSlice; only slices with
/// [`SLICE_MANAGED_BY_VALUE`] are written or deleted here.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const SLICE_MANAGED_BY_VALUE: &str = "endpointslice-controller.skiff.io";

pub struct EndpointsController {
    api: Arc<dyn ObjectApi>,
    services: Cache,
    pods: Cache,
    endpoints: Cache,
    slices: Cache,
    cache_sync_timeout: Duration,
}

/// The Service's selector as a label map; `None` when absent or empty (the user manages Endpoints).
fn selector(svc: &Value) -> Option<BTreeMap<String, String>> {
    let sel = util::string_map(&svc["spec"]["selector"]);
    (!sel.is_empty()).then_some(sel)
}

fn selector_matches(sel: &BTreeMap<String, String>, pod: &Value) -> bool {
    let labels = util::labels(pod);
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_managed(ep: &Value) -> bool {
    ep["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
}

/// Whether `slice` is one this controller keeps for Service `service`.
fn is_our_slice(slice: &Value, service: &str) -> bool {
    let labels = &slice["metadata"]["labels"];
    labels[SLICE_MANAGED_BY_LABEL].as_str() == Some(SLICE_MANAGED_BY_VALUE)
        && labels[SERVICE_NAME_LABEL].as_str() == Some(service)
}

impl EndpointsController {
    pub fn new(
        api: Arc<dyn ObjectApi>,
        services: Cache,
        pods: Cache,
        endpoints: Cache,
        slices: Cache,
        cache_sync_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(EndpointsController { api, services, pods, endpoints, slices, cache_sync_timeout })
    }

    /// Enqueue a Service when it, its Endpoints, one of its EndpointSlices or a pod it selects
    /// (before or after) changes.
    pub fn register_triggers(&self, queue: &Arc<WorkQueue>) {
        for cache in [&self.services, &self.endpoints] {
            let q = queue.clone();
            cache.on_change(move |old, new| {
                if let Some(o) = new.or(old) {
                    q.add(ObjKey::of(o));
                }
            });
        }
        let q = queue.clone();
        self.slices.on_change(move |old, new| {
            for s in [old, new].into_iter().flatten() {
                if let Some(svc) = s["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() {
                    q.add(ObjKey::new(util::namespace(s), svc));
                }
            }
        });
        let q = queue.clone();
        let services = self.services.clone();
        self.pods.on_change(move |old, new| {
            let Some(ns) = new.or(old).and_then(util::namespace) else { return };
            for svc in services.list(Some(ns)) {
                let Some(sel) = selector(&svc) else { continue };
                if [old, new].into_iter().flatten().any(|p| selector_matches(&sel, p)) {
                    q.add(ObjKey::of(&svc));
                }
            }
        });
    }
}

/// Resolve a Service port's `targetPort` for `pod`: a number, a container port name, or (absent)
/// the Service port. `None` when a named port is not declared by any container of the pod.
pub fn resolve_target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    match &svc_port["targetPort"] {
        Value::Number(n) if n.as_i64().is_some_and(|p| p > 0) => n.as_i64(),
        Value::String(s) if s.parse::<i64>().is_ok() => s.parse().ok(),
        Value::String(name) => pod["spec"]["containers"].as_array()?.iter().find_map(|c| {
            c["ports"].as_array()?.iter().find(|p| p["name"].as_str() == Some(name))?["containerPort"].as_i64()
        }),
        _ => svc_port["port"].as_i64(),
    }
}

/// Whether the pod belongs in the Endpoints at all (ready or not).
fn pod_is_endpoint_candidate(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    phase != "Succeeded"
        && phase != "Failed"
        && !util::is_deleting(pod)
        && pod["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty())
}

/// The `subsets` the Endpoints of `svc` should have given the namespace's `pods`; deterministic
/// (subsets and addresses sorted) so that unchanged inputs give an identical value.
pub fn desired_subsets<'a>(svc: &Value, pods: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
    let Some(sel) = selector(svc) else { return Vec::new() };
    let publish_not_ready = svc["spec"]["publishNotReadyAddresses"].as_bool().unwrap_or(false);
    let svc_ports: Vec<&Value> = svc["spec"]["ports"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    // resolved ports (sorted JSON strings) -> (ready addresses, not-ready addresses), each sorted by IP.
    type Addrs = (BTreeMap<String, Value>, BTreeMap<String, Value>);
    let mut groups: BTreeMap<Vec<String>, Addrs> = BTreeMap::new();
    for pod in pods {
        if !pod_is_endpoint_candidate(pod) || !selector_matches(&sel, pod) {
            continue;
        }
        let mut ports: Vec<String> = Vec::new();
        for sp in &svc_ports {
            let Some(port) = resolve_target_port(sp, pod) else { continue };
            let mut p = json!({"port": port, "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
            if let Some(name) = sp["name"].as_str().filter(|n| !n.is_empty()) {
                p["name"] = json!(name);
            }
            ports.push(p.to_string());
        }
        if ports.is_empty() && !svc_ports.is_empty() {
            continue; // no port of the Service can reach this pod
        }
        ports.sort();
        ports.dedup();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
        let mut addr = json!({"ip": ip, "targetRef": {
            "kind": "Pod",
            "name": util::name(pod),
            "namespace": util::namespace(pod).unwrap_or("default"),
            "uid": util::uid(pod),
        }});
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            addr["nodeName"] = json!(node);
        }
        let key = format!("{ip}/{}", util::name(pod));
        let group = groups.entry(ports).or_default();
        if publish_not_ready || util::pod_is_ready(pod) {
            group.0.insert(key, addr);
        } else {
            group.1.insert(key, addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut subset = serde_json::Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready.into_values().collect()));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready.into_values().collect()));
            }
            if !ports.is_empty() {
                let ports: Vec<Value> =
                    ports.iter().map(|p| serde_json::from_str(p).expect("serialized above")).collect();
                subset.insert("ports".into(), Value::Array(ports));
            }
            Value::Object(subset)
        })
        .collect()
}

/// Keep at most `max` addresses over all subsets, ready ones first; returns whether any were cut.
pub fn truncate_subsets(subsets: &mut Vec<Value>, max: usize) -> bool {
    let mut budget = max;
    let mut truncated = false;
    for key in ["addresses", "notReadyAddresses"] {
        for subset in subsets.iter_mut() {
            if let Some(list) = subset.get_mut(key).and_then(Value::as_array_mut) {
                if list.len() > budget {
                    list.truncate(budget);
                    truncated = true;
                }
                budget -= list.len();
            }
        }
    }
    for subset in subsets.iter_mut() {
        if let Some(m) = subset.as_object_mut() {
            m.retain(|k, v| {
                !((k == "addresses" || k == "notReadyAddresses") && v.as_array().is_some_and(Vec::is_empty))
            });
        }
    }
    subsets.retain(|s| s.get("addresses").is_some() || s.get("notReadyAddresses").is_some());
    truncated
}

/// The EndpointSlices Service `svc` should have for its Endpoints `subsets` (as written): one per
/// port set and address family, sorted by name; one without endpoints when there are none.
pub fn desired_slices(svc: &Value, subsets: &[Value]) -> Vec<Value> {
    let service = util::name(svc);
    // (ports, family) -> endpoints
    let mut groups: BTreeMap<(String, &'static str), Vec<Value>> = BTreeMap::new();
    for subset in subsets {
        let ports = subset.get("ports").cloned().unwrap_or(json!([]));
        let ports_key = ports.to_string();
        for (key, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in subset[key].as_array().into_iter().flatten() {
                let Some(ip) = a["ip"].as_str() else { continue };
                let family = if ip.parse::<std::net::Ipv6Addr>().is_ok() { "IPv6" } else { "IPv4" };
                let mut ep = json!({
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                });
                if let Some(node) = a.get("nodeName").filter(|n| n.is_string()) {
                    ep["nodeName"] = node.clone();
                }
                if let Some(target) = a.get("targetRef").filter(|t| t.is_object()) {
                    ep["targetRef"] = target.clone();
                }
                groups.entry((ports_key.clone(), family)).or_default().push(ep);
            }
        }
    }
    if groups.is_empty() {
        groups.insert(("[]".to_string(), "IPv4"), Vec::new());
    }
    let mut slices: Vec<Value> = groups
        .into_iter()
        .map(|((ports, family), mut endpoints)| {
            endpoints.sort_by(|a, b| a["addresses"][0].as_str().cmp(&b["addresses"][0].as_str()));
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{service}-{}", skiff_api::keys::short_hash(&format!("{family}{ports}"))),
                    "namespace": util::namespace(svc).unwrap_or("default"),
                    "labels": {SERVICE_NAME_LABEL: service, SLICE_MANAGED_BY_LABEL: SLICE_MANAGED_BY_VALUE},
                    "ownerReferences": [util::controller_owner_ref(&SERVICES, svc)],
                },
                "addressType": family,
                "endpoints": endpoints,
                "ports": serde_json::from_str::<Value>(&ports).unwrap_or(json!([])),
            })
        })
        .collect();
    slices.sort_by(|a, b| util::name(a).cmp(util::name(b)));
    slices
}

/// Whether an existing slice already says what `want` says.
fn slice_matches(cur: &Value, want: &Value) -> bool {
    ["addressType", "endpoints", "ports"].iter().all(|k| {
        util::strip_nulls(&cur[*k]) == util::strip_nulls(&want[*k]) || (cur[*k].is_null() && want[*k] == json!([]))
    }) && cur["metadata"]["labels"] == want["metadata"]["labels"]
        && cur["metadata"]["ownerReferences"] == want["metadata"]["ownerReferences"]
}

/// `subsets` of an existing Endpoints, normalized for comparison (absent = empty).
fn current_subsets(ep: &Value) -> Value {
    util::strip_nulls(&ep["subsets"].as_array().map(|a| Value::Array(a.clone())).unwrap_or(json!([])))
}

fn desired_labels(svc: &Value) -> Value {
    let mut labels: serde_json::Map<String, Value> = svc["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY_VALUE));
    Value::Object(labels)
}

impl EndpointsController {
    async fn wait_for_write(&self, written: &Value) -> Result<(), Error> {
        if let Some(rv) = util::resource_version(written) {
            if !self.endpoints.wait_for_revision(rv, self.cache_sync_timeout).await {
                return Err(Error::StaleCache("endpoints"));
            }
        }
        Ok(())
    }

    /// Make the Service's EndpointSlices say what its Endpoints `subsets` say.
    async fn sync_slices(&self, svc: &Value, key: &ObjKey, subsets: &[Value]) -> Result<(), Error> {
        let desired = desired_slices(svc, subsets);
        let existing: Vec<Arc<Value>> =
            self.slices.list(key.ns()).into_iter().filter(|s| is_our_slice(s, &key.name)).collect();
        for want in &desired {
            let written = match existing.iter().find(|s| util::name(s) == util::name(want)) {
                Some(cur) if slice_matches(cur, want) => continue,
                Some(cur) => {
                    let mut next = (**cur).clone();
                    for k in ["addressType", "endpoints", "ports"] {
                        next[k] = want[k].clone();
                    }
                    next["metadata"]["labels"] = want["metadata"]["labels"].clone();
                    next["metadata"]["ownerReferences"] = want["metadata"]["ownerReferences"].clone();
                    self.api.update(&ENDPOINTSLICES, next).await?
                }
                None => self.api.create(&ENDPOINTSLICES, want.clone()).await?,
            };
            if let Some(rv) = util::resource_version(&written) {
                if !self.slices.wait_for_revision(rv, self.cache_sync_timeout).await {
                    return Err(Error::StaleCache("endpointslices"));
                }
            }
        }
        for cur in existing.iter().filter(|c| !desired.iter().any(|d| util::name(d) == util::name(c))) {
            self.delete_slice(cur).await?;
        }
        Ok(())
    }

    async fn delete_slice(&self, slice: &Value) -> Result<(), Error> {
        match self
            .api
            .delete(&ENDPOINTSLICES, util::namespace(slice), util::name(slice), Some(util::uid(slice)), None)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete our Endpoints and EndpointSlices of `key` (its Service is gone).
    async fn delete_managed(&self, key: &ObjKey) -> Result<Action, Error> {
        for slice in self.slices.list(key.ns()).into_iter().filter(|s| is_our_slice(s, &key.name)) {
            self.delete_slice(&slice).await?;
        }
        let Some(ep) = self.endpoints.get_key(key) else { return Ok(Action::await_change()) };
        if !is_managed(&ep) {
            return Ok(Action::await_change());
        }
        match self.api.delete(&ENDPOINTS, key.ns(), &key.name, Some(util::uid(&ep)), None).await {
            Ok(()) => {
                tracing::debug!(endpoints = %key, "deleted endpoints of a removed service");
                let uid = util::uid(&ep).to_string();
                self.endpoints
                    .wait_until(self.cache_sync_timeout, |c| c.get_key(key).is_none_or(|e| util::uid(&e) != uid))
                    .await;
                Ok(Action::await_change())
            }
            Err(e) if e.is_not_found() => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        COMPONENT
    }

    async fn reconcile(&self, key: &ObjKey) -> Result<Action, Error> {
        let Some(svc) = self.services.get_key(key) else { return self.delete_managed(key).await };
        if selector(&svc).is_none() {
            return Ok(Action::await_change()); // the user manages these Endpoints
        }
        let pods = self.pods.list(key.ns());
        let mut subsets = desired_subsets(&svc, pods.iter().map(|p| p.as_ref()));
        let over_capacity = truncate_subsets(&mut subsets, MAX_ADDRESSES).then_some("truncated");
        let slices_from = subsets.clone();
        let subsets = Value::Array(subsets);
        let labels = desired_labels(&svc);
        // The Endpoints first: service proxies follow them; the slices are for kubectl.
        match self.endpoints.get_key(key) {
            Some(ep) => {
                if current_subsets(&ep) == subsets
                    && ep["metadata"]["labels"] == labels
                    && util::annotation(&ep, OVER_CAPACITY_ANNOTATION) == over_capacity
                {
                    self.sync_slices(&svc, key, &slices_from).await?;
                    return Ok(Action::await_change());
                }
                let mut next = (*ep).clone();
                next["metadata"]["labels"] = labels;
                util::set_annotation(&mut next, OVER_CAPACITY_ANNOTATION, over_capacity);
                next["subsets"] = subsets;
                let written = self.api.update(&ENDPOINTS, next).await?;
                self.wait_for_write(&written).await?;
            }
            None => {
                let mut ep = json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": key.name, "namespace": key.ns().unwrap_or("default"), "labels": labels},
                    "subsets": subsets,
                });
                if over_capacity.is_some() {
                    util::set_annotation(&mut ep, OVER_CAPACITY_ANNOTATION, over_capacity);
                }
                let written = self.api.create(&ENDPOINTS, ep).await?;
                self.wait_for_write(&written).await?;
            }
        }
        self.sync_slices(&svc, key, &slices_from).await?;
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn svc(target: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}]}})
    }

    #[test]
    fn ready_and_not_ready_split_with_named_target_port() {
        let pods = [pod("b", "10.0.0.2", true), pod("a", "10.0.0.1", false), pod("c", "10.0.0.3", true)];
        let subsets = desired_subsets(&svc(json!("http")), pods.iter());
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        let ips = |k: &str| s[k].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(ips("addresses"), ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(ips("notReadyAddresses"), ["10.0.0.1"]);
        assert_eq!(s["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(
            s["addresses"][0]["targetRef"],
            json!({"kind": "Pod", "name": "b", "namespace": "default", "uid": "uid-b"})
        );
        assert_eq!(s["addresses"][0]["nodeName"], "n1");
    }

    #[test]
    fn target_port_defaults_and_unresolvable_names() {
        let p = pod("a", "10.0.0.1", true);
        assert_eq!(resolve_target_port(&json!({"port": 80}), &p), Some(80));
        assert_eq!(resolve_target_port(&json!({"port": 80, "targetPort": 9000}), &p), Some(9000));
        assert_eq!(resolve_target_port(&json!({"port": 80, "targetPort": "http"}), &p), Some(8080));
        assert_eq!(resolve_target_port(&json!({"port": 80, "targetPort": "nope"}), &p), None);
        assert!(desired_subsets(&svc(json!("nope")), [&p]).is_empty());
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let mut pods: Vec<Value> = (0..6).map(|i| pod(&format!("r{i}"), &format!("10.0.0.{i}"), true)).collect();
        pods.extend((0..6).map(|i| pod(&format!("n{i}"), &format!("10.0.1.{i}"), false)));
        let mut subsets = desired_subsets(&svc(json!(8080)), pods.iter());
        assert!(!truncate_subsets(&mut subsets.clone(), 12));
        assert!(truncate_subsets(&mut subsets, 8));
        assert_eq!(subsets[0]["addresses"].as_array().unwrap().len(), 6);
        assert_eq!(subsets[0]["notReadyAddresses"].as_array().unwrap().len(), 2);
        let mut only_ready = desired_subsets(&svc(json!(8080)), pods.iter());
        assert!(truncate_subsets(&mut only_ready, 4));
        assert_eq!(only_ready[0]["addresses"].as_array().unwrap().len(), 4);
        assert!(only_ready[0].get("notReadyAddresses").is_none());
    }

    #[test]
    fn terminating_terminal_and_ipless_pods_are_left_out() {
        let mut deleting = pod("a", "10.0.0.1", true);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let mut done = pod("b", "10.0.0.2", true);
        done["status"]["phase"] = json!("Succeeded");
        let mut no_ip = pod("c", "", true);
        no_ip["status"]["podIP"] = Value::Null;
        let mut other = pod("d", "10.0.0.4", true);
        other["metadata"]["labels"]["app"] = json!("db");
        assert!(desired_subsets(&svc(json!(8080)), [&deleting, &done, &no_ip, &other]).is_empty());
    }
}
