//! `describe`: a human-readable summary of one object per kind, followed by its events.

use std::fmt::Write as _;

use serde_json::Value;
use skiff_api::ResourceInfo;

use crate::apply::LAST_APPLIED;
use crate::table::tabwrite;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn or_none(x: &str) -> &str {
    if x.is_empty() {
        "<none>"
    } else {
        x
    }
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, fractions
/// and offsets allowed).
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r[1..3].parse::<i64>().ok()? * 3600 + r[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
}

pub use skiff_api::duration::human_duration;

fn age(ts: &str, now: i64) -> String {
    parse_rfc3339(ts).map(|t| human_duration(now - t)).unwrap_or_else(|| "<unknown>".into())
}

/// `key=value` lines (first after the label, the rest indented under it).
fn map_lines(out: &mut String, indent: &str, label: &str, m: Option<&Value>, skip: &[&str]) {
    let mut pairs: Vec<(String, String)> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter().filter(|(k, _)| !skip.contains(&k.as_str())).map(|(k, v)| (k.clone(), scalar(Some(v)))).collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        let _ = writeln!(out, "{indent}{label}:\t<none>");
        return;
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        let sep = if label == "Annotations" { ": " } else { "=" };
        if i == 0 {
            let _ = writeln!(out, "{indent}{label}:\t{k}{sep}{v}");
        } else {
            let _ = writeln!(out, "{indent}\t{k}{sep}{v}");
        }
    }
}

fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let labels = sel.get("matchLabels").unwrap_or(sel);
    let mut parts: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| format!("{k}={}", scalar(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let vals: Vec<String> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().map(|v| scalar(Some(v))).collect();
        let op = s(e, "/operator");
        let key = s(e, "/key");
        parts.push(match op {
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => format!("{key} {} ({})", op.to_lowercase(), vals.join(",")),
        });
    }
    parts.sort();
    parts.join(",")
}

fn header(out: &mut String, res: &ResourceInfo, obj: &Value) {
    let _ = writeln!(out, "Name:\t{}", s(obj, "/metadata/name"));
    if res.namespaced {
        let _ = writeln!(out, "Namespace:\t{}", s(obj, "/metadata/namespace"));
    }
    map_lines(out, "", "Labels", obj.pointer("/metadata/labels"), &[]);
    map_lines(out, "", "Annotations", obj.pointer("/metadata/annotations"), &[LAST_APPLIED]);
}

fn controlled_by(out: &mut String, obj: &Value) {
    let owners = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    if let Some(o) = owners.into_iter().flatten().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true)) {
        let _ = writeln!(out, "Controlled By:\t{}/{}", s(o, "/kind"), s(o, "/name"));
    }
}

fn state_lines(out: &mut String, label: &str, state: Option<&Value>) {
    let Some(state) = state.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        if label == "State" {
            let _ = writeln!(out, "    {label}:\tWaiting");
        }
        return;
    };
    for (name, detail) in state {
        let title = match name.as_str() {
            "running" => "Running",
            "waiting" => "Waiting",
            "terminated" => "Terminated",
            other => other,
        };
        let _ = writeln!(out, "    {label}:\t{title}");
        for (field, key) in [
            ("Reason", "reason"),
            ("Message", "message"),
            ("Exit Code", "exitCode"),
            ("Signal", "signal"),
            ("Started", "startedAt"),
            ("Finished", "finishedAt"),
        ] {
            let v = scalar(detail.get(key));
            if !v.is_empty() {
                let _ = writeln!(out, "      {field}:\t{v}");
            }
        }
    }
}

/// The containers of `spec`'s list `list` (`containers` or `initContainers`), each with its
/// status from `statuses`.
fn containers(out: &mut String, indent: &str, spec: &Value, list: &str, statuses: Option<&Value>) {
    for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
        let name = s(c, "/name");
        let _ = writeln!(out, "{indent}{name}:");
        let i = format!("{indent}  ");
        let _ = writeln!(out, "{i}Image:\t{}", s(c, "/image"));
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", scalar(p.get("containerPort")), or_default(s(p, "/protocol"), "TCP")))
            .collect();
        let _ = writeln!(out, "{i}Port:\t{}", if ports.is_empty() { "<none>".into() } else { ports.join(", ") });
        if let Some(cmd) = c.get("command").and_then(Value::as_array) {
            let _ = writeln!(out, "{i}Command:");
            for a in cmd {
                let _ = writeln!(out, "{i}  {}", scalar(Some(a)));
            }
        }
        if let Some(args) = c.get("args").and_then(Value::as_array) {
            let _ = writeln!(out, "{i}Args:");
            for a in args {
                let _ = writeln!(out, "{i}  {}", scalar(Some(a)));
            }
        }
        let st = statuses.and_then(Value::as_array).and_then(|l| l.iter().find(|x| s(x, "/name") == name));
        if let Some(st) = st {
            state_lines(out, "State", st.get("state"));
            state_lines(out, "Last State", st.get("lastState"));
            let ready = st.get("ready").and_then(Value::as_bool).unwrap_or(false);
            let _ = writeln!(out, "{i}Ready:\t{}", if ready { "True" } else { "False" });
            let _ = writeln!(out, "{i}Restart Count:\t{}", scalar(st.get("restartCount")).parse::<i64>().unwrap_or(0));
        }
        let env: Vec<(String, String)> = c
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    s(e, "/name").to_string(),
                    if e.get("value").is_some() { scalar(e.get("value")) } else { "<set from a source>".into() },
                )
            })
            .collect();
        if env.is_empty() {
            let _ = writeln!(out, "{i}Environment:\t<none>");
        } else {
            let _ = writeln!(out, "{i}Environment:");
            for (k, v) in env {
                let _ = writeln!(out, "{i}  {k}:\t{v}");
            }
        }
    }
}

fn or_default<'a>(v: &'a str, d: &'a str) -> &'a str {
    if v.is_empty() {
        d
    } else {
        v
    }
}

fn conditions(out: &mut String, obj: &Value, with_reason: bool) {
    let conds = obj.pointer("/status/conditions").and_then(Value::as_array);
    let Some(conds) = conds.filter(|c| !c.is_empty()) else { return };
    let _ = writeln!(out, "Conditions:");
    if with_reason {
        let _ = writeln!(out, "  Type\tStatus\tReason");
        let _ = writeln!(out, "  ----\t------\t------");
    } else {
        let _ = writeln!(out, "  Type\tStatus");
    }
    for c in conds {
        if with_reason {
            let _ = writeln!(out, "  {}\t{}\t{}", s(c, "/type"), s(c, "/status"), s(c, "/reason"));
        } else {
            let _ = writeln!(out, "  {}\t{}", s(c, "/type"), s(c, "/status"));
        }
    }
}

fn describe_pod(out: &mut String, obj: &Value) {
    let node = s(obj, "/spec/nodeName");
    let host_ip = s(obj, "/status/hostIP");
    let node = match (node, host_ip) {
        ("", _) => "<none>".to_string(),
        (n, "") => n.to_string(),
        (n, ip) => format!("{n}/{ip}"),
    };
    let _ = writeln!(out, "Node:\t{node}");
    if let Some(t) = obj.pointer("/status/startTime").and_then(Value::as_str) {
        let _ = writeln!(out, "Start Time:\t{t}");
    }
    let phase = s(obj, "/status/phase");
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        let _ = writeln!(out, "Status:\tTerminating");
    } else {
        let _ = writeln!(out, "Status:\t{}", or_none(phase));
    }
    for (label, ptr) in [("Reason", "/status/reason"), ("Message", "/status/message")] {
        if !s(obj, ptr).is_empty() {
            let _ = writeln!(out, "{label}:\t{}", s(obj, ptr));
        }
    }
    let _ = writeln!(out, "IP:\t{}", or_none(s(obj, "/status/podIP")));
    controlled_by(out, obj);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if spec.get("initContainers").and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
        let _ = writeln!(out, "Init Containers:");
        containers(out, "  ", spec, "initContainers", obj.pointer("/status/initContainerStatuses"));
    }
    let _ = writeln!(out, "Containers:");
    containers(out, "  ", spec, "containers", obj.pointer("/status/containerStatuses"));
    conditions(out, obj, false);
}

fn pod_template(out: &mut String, obj: &Value) {
    let tpl = obj.pointer("/spec/template").unwrap_or(&Value::Null);
    let _ = writeln!(out, "Pod Template:");
    map_lines(out, "  ", "Labels", tpl.pointer("/metadata/labels"), &[]);
    let _ = writeln!(out, "  Containers:");
    containers(out, "   ", tpl.get("spec").unwrap_or(&Value::Null), "containers", None);
}

fn describe_deployment(out: &mut String, obj: &Value) {
    let _ = writeln!(out, "CreationTimestamp:\t{}", s(obj, "/metadata/creationTimestamp"));
    let _ = writeln!(out, "Selector:\t{}", selector_text(obj.pointer("/spec/selector")));
    let n = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let _ = writeln!(
        out,
        "Replicas:\t{desired} desired | {} updated | {} total | {} available | {} unavailable",
        n("/status/updatedReplicas"),
        n("/status/replicas"),
        n("/status/availableReplicas"),
        n("/status/unavailableReplicas")
    );
    let strategy = or_default(s(obj, "/spec/strategy/type"), "RollingUpdate");
    let _ = writeln!(out, "StrategyType:\t{strategy}");
    let _ = writeln!(out, "MinReadySeconds:\t{}", n("/spec/minReadySeconds"));
    if strategy == "RollingUpdate" {
        let ru = |k: &str| {
            let v = scalar(obj.pointer(&format!("/spec/strategy/rollingUpdate/{k}")));
            if v.is_empty() {
                "25%".to_string()
            } else {
                v
            }
        };
        let _ = writeln!(
            out,
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
            ru("maxUnavailable"),
            ru("maxSurge")
        );
    }
    pod_template(out, obj);
    conditions(out, obj, true);
}

fn describe_replicaset(out: &mut String, obj: &Value) {
    let _ = writeln!(out, "Selector:\t{}", selector_text(obj.pointer("/spec/selector")));
    controlled_by(out, obj);
    let desired = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let current = obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0);
    let _ = writeln!(out, "Replicas:\t{current} current / {desired} desired");
    let ready = obj.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
    let _ = writeln!(out, "Ready Replicas:\t{ready}");
    pod_template(out, obj);
    conditions(out, obj, true);
}

fn describe_service(out: &mut String, obj: &Value, endpoints: Option<&Value>) {
    let _ = writeln!(out, "Selector:\t{}", or_none(&selector_text(obj.pointer("/spec/selector"))));
    let _ = writeln!(out, "Type:\t{}", or_default(s(obj, "/spec/type"), "ClusterIP"));
    let _ = writeln!(out, "IP:\t{}", or_none(s(obj, "/spec/clusterIP")));
    let addrs: Vec<String> = endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|sub| {
            let ips: Vec<String> = sub
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| s(a, "/ip").to_string())
                .collect();
            let ports: Vec<String> = sub
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| scalar(p.get("port")))
                .collect();
            ips.iter().flat_map(|ip| ports.iter().map(move |p| format!("{ip}:{p}"))).collect::<Vec<_>>()
        })
        .collect();
    for p in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        let proto = or_default(s(p, "/protocol"), "TCP");
        let _ = writeln!(out, "Port:\t{}  {}/{proto}", or_default(s(p, "/name"), "<unset>"), scalar(p.get("port")));
        let tp = scalar(p.get("targetPort"));
        let _ = writeln!(out, "TargetPort:\t{}/{proto}", if tp.is_empty() { scalar(p.get("port")) } else { tp });
        if p.get("nodePort").is_some() {
            let _ = writeln!(
                out,
                "NodePort:\t{}  {}/{proto}",
                or_default(s(p, "/name"), "<unset>"),
                scalar(p.get("nodePort"))
            );
        }
        let _ = writeln!(out, "Endpoints:\t{}", if addrs.is_empty() { "<none>".to_string() } else { addrs.join(",") });
    }
    let _ = writeln!(out, "Session Affinity:\t{}", or_default(s(obj, "/spec/sessionAffinity"), "None"));
}

fn describe_node(out: &mut String, obj: &Value) {
    let _ = writeln!(out, "CreationTimestamp:\t{}", s(obj, "/metadata/creationTimestamp"));
    let taints: Vec<String> = obj
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| format!("{}={}:{}", s(t, "/key"), s(t, "/value"), s(t, "/effect")).replace("=:", ":"))
        .collect();
    let _ = writeln!(out, "Taints:\t{}", if taints.is_empty() { "<none>".into() } else { taints.join(", ") });
    let unsched = obj.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
    let _ = writeln!(out, "Unschedulable:\t{unsched}");
    if let Some(conds) = obj.pointer("/status/conditions").and_then(Value::as_array).filter(|c| !c.is_empty()) {
        let _ = writeln!(out, "Conditions:");
        let _ = writeln!(out, "  Type\tStatus\tLastHeartbeatTime\tReason\tMessage");
        let _ = writeln!(out, "  ----\t------\t-----------------\t------\t-------");
        for c in conds {
            let _ = writeln!(
                out,
                "  {}\t{}\t{}\t{}\t{}",
                s(c, "/type"),
                s(c, "/status"),
                s(c, "/lastHeartbeatTime"),
                s(c, "/reason"),
                s(c, "/message")
            );
        }
    }
    let addrs = obj.pointer("/status/addresses").and_then(Value::as_array);
    if let Some(addrs) = addrs.filter(|a| !a.is_empty()) {
        let _ = writeln!(out, "Addresses:");
        for a in addrs {
            let _ = writeln!(out, "  {}:\t{}", s(a, "/type"), s(a, "/address"));
        }
    }
    for (label, ptr) in [("Capacity", "/status/capacity"), ("Allocatable", "/status/allocatable")] {
        if let Some(m) = obj.pointer(ptr).and_then(Value::as_object).filter(|m| !m.is_empty()) {
            let _ = writeln!(out, "{label}:");
            for (k, v) in m {
                let _ = writeln!(out, "  {k}:\t{}", scalar(Some(v)));
            }
        }
    }
    if let Some(info) = obj.pointer("/status/nodeInfo").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "System Info:");
        for (k, v) in info {
            let _ = writeln!(out, "  {k}:\t{}", scalar(Some(v)));
        }
    }
}

fn describe_generic(out: &mut String, obj: &Value) {
    let Some(m) = obj.as_object() else { return };
    for (k, v) in m {
        if ["apiVersion", "kind", "metadata"].contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let title = {
            let mut c = k.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        };
        if v.is_object() || v.is_array() {
            let _ = writeln!(out, "{title}:");
            for line in crate::output::to_yaml(v).lines() {
                let _ = writeln!(out, "  {line}");
            }
        } else {
            let _ = writeln!(out, "{title}:\t{}", scalar(Some(v)));
        }
    }
}

fn events_section(out: &mut String, events: &[Value], now: i64) {
    if events.is_empty() {
        let _ = writeln!(out, "Events:\t<none>");
        return;
    }
    let mut evs: Vec<&Value> = events.iter().collect();
    let when = |e: &Value| {
        let t =
            [s(e, "/lastTimestamp"), s(e, "/eventTime"), s(e, "/firstTimestamp"), s(e, "/metadata/creationTimestamp")]
                .into_iter()
                .find(|t| !t.is_empty())
                .unwrap_or("")
                .to_string();
        t
    };
    evs.sort_by_key(|e| parse_rfc3339(&when(e)).unwrap_or(0));
    let _ = writeln!(out, "Events:");
    let _ = writeln!(out, "  Type\tReason\tAge\tFrom\tMessage");
    let _ = writeln!(out, "  ----\t------\t----\t----\t-------");
    for e in evs {
        let last = when(e);
        let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
        let first = or_default(s(e, "/firstTimestamp"), &last).to_string();
        let mut a = age(&last, now);
        if count > 1 {
            a = format!("{a} (x{count} over {})", age(&first, now));
        }
        let from = [s(e, "/source/component"), s(e, "/reportingComponent"), s(e, "/reportingController")]
            .into_iter()
            .find(|x| !x.is_empty())
            .unwrap_or("");
        let host = s(e, "/source/host");
        let from = if host.is_empty() { from.to_string() } else { format!("{from}, {host}") };
        let msg = s(e, "/message").trim().replace('\n', " ");
        let _ = writeln!(out, "  {}\t{}\t{a}\t{from}\t{msg}", s(e, "/type"), s(e, "/reason"));
    }
}

/// A pod template as kubectl's `DescribePodTemplate` prints it (`rollout history --revision`):
/// labels, annotations and containers under `Pod Template:`.
pub fn describe_pod_template(template: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Pod Template:");
    map_lines(&mut out, "  ", "Labels", template.pointer("/metadata/labels"), &[]);
    map_lines(&mut out, "  ", "Annotations", template.pointer("/metadata/annotations"), &[]);
    let _ = writeln!(out, "  Containers:");
    containers(&mut out, "   ", template.get("spec").unwrap_or(&Value::Null), "containers", None);
    tabwrite(&out, 0, 2)
}

/// Describe `obj` of type `res`; `related` is an extra object some kinds show (a service's
/// `Endpoints`), `events` the events whose `involvedObject` is `obj`, `now` the Unix time.
pub fn describe(res: &ResourceInfo, obj: &Value, related: Option<&Value>, events: &[Value], now: i64) -> String {
    let mut out = String::new();
    header(&mut out, res, obj);
    match res.kind {
        "Pod" => describe_pod(&mut out, obj),
        "Deployment" => describe_deployment(&mut out, obj),
        "ReplicaSet" => describe_replicaset(&mut out, obj),
        "Service" => describe_service(&mut out, obj, related),
        "Node" => describe_node(&mut out, obj),
        "Namespace" => {
            let _ = writeln!(out, "Status:\t{}", or_default(s(obj, "/status/phase"), "Active"));
        }
        _ => describe_generic(&mut out, obj),
    }
    if res.kind != "Event" {
        events_section(&mut out, events, now);
    }
    tabwrite(&out, 0, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::registry::{DEPLOYMENTS, PODS, SERVICES};

    const NOW: i64 = 1_700_000_000;

    fn ts(ago: i64) -> String {
        // 2023-11-14T22:13:20Z is NOW.
        let t = NOW - ago;
        let (d, r) = (t.div_euclid(86400), t.rem_euclid(86400));
        assert_eq!(d, 19675, "test helper only handles that day");
        format!("2023-11-14T{:02}:{:02}:{:02}Z", r / 3600, r % 3600 / 60, r % 60)
    }

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2023-11-15T00:13:20+02:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("yesterday"), None);
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (86400 * 3 + 3600, "3d1h"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want);
        }
        assert_eq!(human_duration(86400 * 400), "400d");
        assert_eq!(human_duration(86400 * 365 * 3 + 86400), "3y1d");
    }

    #[test]
    fn pod_description() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "abc"},
                "annotations": {LAST_APPLIED: "{}"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": true}]},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always",
                "containers": [{"name": "web", "image": "busybox", "ports": [{"containerPort": 80}],
                                "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Pending", "hostIP": "10.0.0.1", "podIP": "10.1.0.5",
                "containerStatuses": [{"name": "web", "ready": false, "restartCount": 2,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "image busybox not found"}}}],
                "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
        });
        let events = vec![json!({"type": "Warning", "reason": "Failed", "message": "pull failed", "count": 3,
            "firstTimestamp": ts(300), "lastTimestamp": ts(10), "source": {"component": "skiff-agent", "host": "node-a"}})];
        let text = describe(&PODS, &pod, None, &events, NOW);
        let want = "\
Name:           web-1
Namespace:      default
Labels:         app=web
                pod-template-hash=abc
Annotations:    <none>
Node:           node-a/10.0.0.1
Status:         Pending
IP:             10.1.0.5
Controlled By:  ReplicaSet/web-abc
Containers:
  web:
    Image:          busybox
    Port:           80/TCP
    State:          Waiting
      Reason:       ErrImagePull
      Message:      image busybox not found
    Ready:          False
    Restart Count:  2
    Environment:
      A:  1
Conditions:
  Type          Status
  Ready         False
  PodScheduled  True
Events:
  Type     Reason  Age               From                 Message
  ----     ------  ----              ----                 -------
  Warning  Failed  10s (x3 over 5m)  skiff-agent, node-a  pull failed
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn pod_description_lists_init_containers_first() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"initContainers": [{"name": "setup", "image": "busybox"}],
                     "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [{"name": "setup", "ready": false, "restartCount": 1,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}
        });
        let text = describe(&PODS, &pod, None, &[], NOW);
        let init = text.find("Init Containers:\n  setup:\n").unwrap_or_else(|| panic!("{text}"));
        let app = text.find("Containers:\n  app:\n").unwrap_or_else(|| panic!("{text}"));
        assert!(init < app, "{text}");
        assert!(text.contains("Restart Count:  1\n"), "{text}");
        assert!(text.contains("Reason:       PodInitializing\n"), "{text}");
    }

    #[test]
    fn deployment_and_service() {
        let d = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2, "unavailableReplicas": 1,
                "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}});
        let text = describe(&DEPLOYMENTS, &d, None, &[], NOW);
        assert!(
            text.contains("Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n"),
            "{text}"
        );
        assert!(text.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge\n"), "{text}");
        assert!(text.contains("  Available  False   MinimumReplicasUnavailable\n"), "{text}");
        // Go's tabwriter aligns `Events:` with the condition rows right above it, as kubectl does.
        assert!(text.ends_with("Events:      <none>\n"), "{text}");

        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.7", "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let ep =
            json!({"subsets": [{"addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}], "ports": [{"port": 8080}]}]});
        let text = describe(&SERVICES, &svc, Some(&ep), &[], NOW);
        assert!(text.contains("Selector:          app=web\n"), "{text}");
        assert!(text.contains("Port:              <unset>  80/TCP\n"), "{text}");
        assert!(text.contains("TargetPort:        8080/TCP\n"), "{text}");
        assert!(text.contains("Endpoints:         10.1.0.5:8080,10.1.0.6:8080\n"), "{text}");
    }
}
