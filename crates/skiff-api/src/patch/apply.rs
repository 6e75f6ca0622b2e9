//! Server-side apply's field ownership: the fields an applied configuration sets, their
//! `fieldsV1` encoding in `metadata.managedFields`, and the plan of one apply — which fields
//! the manager stopped applying and are removed, which collide with another manager's.
//!
//! A field set holds paths of [`Step`]s. Maps contribute one path per leaf (a scalar, an
//! empty map, or a list merged as a whole); lists merged by key (the lists
//! [`super::strategic::list_strategy`] merges by key: containers by `name`, their ports by
//! `containerPort`, …) contribute the element itself (`.` in `fieldsV1`) and the element's
//! own fields; lists of primitives merged as a set (`metadata.finalizers`) one path per
//! value. Only managers that applied (operation `Apply`) own fields here: writes by PUT or
//! PATCH record no ownership, so they never conflict with an apply, and an apply overwrites
//! what they set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::strategic::{list_strategy, ListStrategy};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A map key (`f:<name>`).
    Field(String),
    /// The element of a keyed list whose key field has this value: the compact JSON of
    /// `{"<key>": <value>}` (`k:<json>`).
    Key(String),
    /// A value of a list of primitives merged as a set: its compact JSON (`v:<json>`).
    Value(String),
}

pub type Path = Vec<Step>;
pub type FieldSet = BTreeSet<Path>;

/// Top-level and `metadata` fields that name or describe the object rather than configure
/// it: never owned.
const ROOT_SKIPPED: &[&str] = &["apiVersion", "kind", "status"];
const META_SKIPPED: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields `applied` (a whole object as sent to apply) sets.
pub fn fields_of(applied: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(root) = applied {
        for (k, v) in root {
            if ROOT_SKIPPED.contains(&k.as_str()) {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    let mut prefix = vec![Step::Field("metadata".into())];
                    let mut names = vec!["metadata".to_string()];
                    for (mk, mv) in meta {
                        if !META_SKIPPED.contains(&mk.as_str()) {
                            field(&mut out, &mut prefix, &mut names, mk, mv);
                        }
                    }
                }
                continue;
            }
            field(&mut out, &mut Vec::new(), &mut Vec::new(), k, v);
        }
    }
    out
}

/// Adds the paths of the map entry `key: value` under `prefix`; `names` is the map-key path
/// the list strategies are chosen by (list positions left out).
fn field(out: &mut FieldSet, prefix: &mut Path, names: &mut Vec<String>, key: &str, value: &Value) {
    prefix.push(Step::Field(key.to_string()));
    names.push(key.to_string());
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                field(out, prefix, names, k, v);
            }
        }
        Value::Array(items) => {
            let strategy = {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                list_strategy(&refs)
            };
            match strategy {
                ListStrategy::MergeKey(mk) if items.iter().all(|i| i.get(mk).is_some_and(|k| !k.is_null())) => {
                    for item in items {
                        let step = Step::Key(key_json(mk, &item[mk]));
                        prefix.push(step);
                        out.insert(prefix.clone());
                        if let Value::Object(m) = item {
                            for (k, v) in m {
                                field(out, prefix, names, k, v);
                            }
                        }
                        prefix.pop();
                    }
                }
                ListStrategy::MergePrimitive if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    for item in items {
                        prefix.push(Step::Value(item.to_string()));
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                }
                // Replaced as a whole (or a keyed list with an element lacking its key).
                _ => {
                    out.insert(prefix.clone());
                }
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
    names.pop();
    prefix.pop();
}

fn key_json(key: &str, value: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    Value::Object(m).to_string()
}

/// The value at `path` in `obj`, if there is one.
pub fn get<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        cur = match step {
            Step::Field(f) => cur.as_object()?.get(f)?,
            Step::Key(k) => {
                let (kf, kv) = parse_key(k)?;
                cur.as_array()?.iter().find(|i| i.get(&kf) == Some(&kv))?
            }
            Step::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
        };
    }
    Some(cur)
}

fn parse_key(k: &str) -> Option<(String, Value)> {
    match serde_json::from_str::<Value>(k).ok()? {
        Value::Object(m) if m.len() == 1 => m.into_iter().next(),
        _ => None,
    }
}

/// Removes the field, element or value at `path` from `obj`; false when it is not there.
pub fn remove(obj: &mut Value, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut cur = obj;
    for step in parents {
        let next = match step {
            Step::Field(f) => cur.as_object_mut().and_then(|m| m.get_mut(f)),
            Step::Key(k) => match parse_key(k) {
                Some((kf, kv)) => cur.as_array_mut().and_then(|a| a.iter_mut().find(|i| i.get(&kf) == Some(&kv))),
                None => None,
            },
            Step::Value(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match last {
        Step::Field(f) => cur.as_object_mut().is_some_and(|m| m.remove(f).is_some()),
        Step::Key(k) => {
            let (Some((kf, kv)), Some(a)) = (parse_key(k), cur.as_array_mut()) else { return false };
            let before = a.len();
            a.retain(|i| i.get(&kf) != Some(&kv));
            a.len() != before
        }
        Step::Value(v) => {
            let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut()) else { return false };
            let before = a.len();
            a.retain(|i| *i != want);
            a.len() != before
        }
    }
}

/// `path` as Kubernetes prints it in an apply conflict: `.spec.containers[name="web"].image`.
pub fn display(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Step::Key(k) => match parse_key(k) {
                Some((kf, kv)) => s.push_str(&format!("[{kf}={kv}]")),
                None => s.push_str(&format!("[{k}]")),
            },
            Step::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// The `fieldsV1` encoding of a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, step) in path.iter().enumerate() {
            let k = match step {
                Step::Field(f) => format!("f:{f}"),
                Step::Key(k) => format!("k:{k}"),
                Step::Value(v) => format!("v:{v}"),
            };
            let child = node.entry(k).or_insert_with(|| json!({}));
            node = child.as_object_mut().expect("fieldsV1 nodes are maps");
            if i + 1 == path.len() && set.range(path.clone()..).nth(1).is_some_and(|next| next.starts_with(path)) {
                // A member with members below it (a list element): `.` marks the element itself.
                node.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// The field set a `fieldsV1` value encodes (unknown keys are skipped).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
        if (node.is_empty() || node.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in node {
            let step = if let Some(f) = k.strip_prefix("f:") {
                Step::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Step::Key(key.to_string())
            } else if let Some(val) = k.strip_prefix("v:") {
                Step::Value(val.to_string())
            } else {
                continue;
            };
            if let Value::Object(c) = child {
                prefix.push(step);
                walk(c, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    if let Value::Object(m) = v {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

/// One manager's entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    pub fn to_json(&self) -> Value {
        json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        })
    }

    fn from_json(v: &Value) -> Option<ManagedEntry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some(ManagedEntry {
            manager: v.get("manager").and_then(Value::as_str)?.to_string(),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: s("time"),
            fields: from_fields_v1(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }
}

/// The entries of `obj`'s `metadata.managedFields` (malformed entries are dropped).
pub fn managed_entries(obj: &Value) -> Vec<ManagedEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

/// A field another manager owns that this apply would set to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// What one apply does to the live object.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Fields the manager applied before and no longer does, owned by nobody else: removed
    /// from the live object before the applied configuration is merged into it.
    pub removed: Vec<Path>,
    /// Conflicts with other managers (empty when forced: their fields are taken over).
    pub conflicts: Vec<Conflict>,
    /// The managed-fields entries after the apply.
    pub entries: Vec<ManagedEntry>,
    /// Whether the entries differ from the live object's.
    pub entries_changed: bool,
}

/// Plans `manager`'s apply of `applied` (as `api_version`, at `now`) over `live`.
pub fn plan(live: &Value, applied: &Value, manager: &str, api_version: &str, force: bool, now: &str) -> Plan {
    let before = managed_entries(live);
    let mine = fields_of(applied);
    let is_mine = |e: &ManagedEntry| e.manager == manager && e.operation == "Apply";
    let my_last = before.iter().find(|e| is_mine(e));
    let no_fields = FieldSet::new();
    let previous = my_last.map_or(&no_fields, |e| &e.fields);
    let mut conflicts = Vec::new();
    let mut entries: Vec<ManagedEntry> = Vec::new();
    for e in before.iter().filter(|e| !is_mine(e)) {
        let mut e = e.clone();
        let clashing: Vec<Path> = e
            .fields
            .iter()
            .filter(|p| mine.contains(*p) && matches!(p.last(), Some(Step::Field(_))))
            .filter(|p| get(live, p) != get(applied, p))
            .cloned()
            .collect();
        if force {
            for p in &clashing {
                e.fields.remove(p);
            }
        } else {
            conflicts.extend(clashing.into_iter().map(|path| Conflict { manager: e.manager.clone(), path }));
        }
        if !e.fields.is_empty() {
            entries.push(e);
        }
    }
    // Removed: what this manager no longer applies, unless another manager owns it or
    // anything below it.
    let removed: Vec<Path> = previous
        .iter()
        .filter(|p| !mine.contains(*p))
        .filter(|p| !entries.iter().any(|e| e.fields.range((*p).clone()..).next().is_some_and(|q| q.starts_with(p))))
        .cloned()
        .collect();
    // The time of the last change of the manager's set.
    let time = match my_last {
        Some(e) if e.fields == mine => e.time.clone(),
        _ => now.to_string(),
    };
    entries.push(ManagedEntry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time,
        fields: mine,
    });
    let entries_changed = entries.len() != before.len() || !entries.iter().all(|e| before.iter().any(|b| b == e));
    Plan { removed, conflicts, entries, entries_changed }
}

/// `obj` with the plan's removals done. A path below another removed one goes with it (an
/// element's fields with the element: removed first, they would take the key it is found by).
/// A map or list left empty by a removal goes too (no `env: []` after the last variable).
pub fn remove_all(obj: &mut Value, removed: &[Path]) {
    let set: BTreeSet<&[Step]> = removed.iter().map(Vec::as_slice).collect();
    for p in removed {
        if (1..p.len()).any(|n| set.contains(&p[..n])) || !remove(obj, p) {
            continue;
        }
        for n in (1..p.len()).rev() {
            let emptied = match get(obj, &p[..n]) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if !emptied || !remove(obj, &p[..n]) {
                break;
            }
        }
    }
}

/// The message Kubernetes gives a refused apply: `Apply failed with 1 conflict: conflict with
/// "kubectl-edit": .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(display(&c.path));
    }
    let parts: Vec<String> = by_manager
        .iter()
        .flat_map(|(m, paths)| paths.iter().map(move |p| format!("conflict with \"{m}\": {p}")))
        .collect();
    let n = conflicts.len();
    let noun = if n == 1 { "conflict" } else { "conflicts" };
    if n == 1 {
        format!("Apply failed with 1 {noun}: {}", parts.join(""))
    } else {
        format!("Apply failed with {n} {noun}: {}", parts.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Step {
        Step::Field(s.into())
    }

    fn deployment(image: &str, replicas: i64, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": labels},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn fields_of_an_applied_object() {
        let set = fields_of(&deployment("nginx", 3, json!({"app": "web"})));
        let containers = vec![f("spec"), f("template"), f("spec"), f("containers")];
        let web = [containers.clone(), vec![Step::Key(r#"{"name":"web"}"#.into())]].concat();
        let mut want: FieldSet = [
            vec![f("metadata"), f("labels"), f("app")],
            vec![f("spec"), f("replicas")],
            web.clone(),
            [web.clone(), vec![f("name")]].concat(),
            [web.clone(), vec![f("image")]].concat(),
            [web.clone(), vec![f("ports"), Step::Key(r#"{"containerPort":80}"#.into())]].concat(),
            [web.clone(), vec![f("ports"), Step::Key(r#"{"containerPort":80}"#.into()), f("containerPort")]].concat(),
        ]
        .into_iter()
        .collect();
        assert_eq!(set, want, "name, namespace, apiVersion and kind are not owned");
        // A list merged whole is one leaf; finalizers one path per value.
        let set = fields_of(&json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"args": ["x", "y"]}}));
        want = [
            vec![f("metadata"), f("finalizers"), Step::Value("\"a\"".into())],
            vec![f("metadata"), f("finalizers"), Step::Value("\"b\"".into())],
            vec![f("spec"), f("args")],
        ]
        .into_iter()
        .collect();
        assert_eq!(set, want);
    }

    #[test]
    fn fields_v1_round_trips_and_marks_elements() {
        let set = fields_of(&deployment("nginx", 3, json!({"app": "web"})));
        let v = to_fields_v1(&set);
        let web = &v["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(web["."], json!({}), "an element with fields below it is marked with `.`: {v}");
        assert_eq!(web["f:image"], json!({}));
        assert_eq!(v["f:spec"]["f:replicas"], json!({}));
        assert!(v["f:spec"].get(".").is_none(), "a map on the way is not a member");
        assert_eq!(from_fields_v1(&v), set);
    }

    #[test]
    fn get_remove_and_display_follow_keys() {
        let mut d = deployment("nginx", 3, json!({"app": "web", "tier": "x"}));
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            Step::Key(r#"{"name":"web"}"#.into()),
            f("image"),
        ];
        assert_eq!(get(&d, &image), Some(&json!("nginx")));
        assert_eq!(display(&image), r#".spec.template.spec.containers[name="web"].image"#);
        assert!(remove(&mut d, &[f("metadata"), f("labels"), f("tier")]));
        assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
        assert!(remove(&mut d, &image[..5]), "the element goes");
        assert_eq!(d["spec"]["template"]["spec"]["containers"], json!([]));
        assert!(!remove(&mut d, &image), "a path that is gone is left alone");
    }

    #[test]
    fn a_field_no_longer_applied_is_removed_unless_another_manager_owns_it() {
        let first = deployment("nginx", 3, json!({"app": "web", "tier": "x"}));
        let p1 = plan(&json!({}), &first, "ci", "apps/v1", false, "t1");
        let mut live = first.clone();
        live["metadata"]["managedFields"] = Value::Array(p1.entries.iter().map(ManagedEntry::to_json).collect());
        // The second apply drops the `tier` label.
        let second = deployment("nginx", 3, json!({"app": "web"}));
        let p2 = plan(&live, &second, "ci", "apps/v1", false, "t2");
        assert_eq!(p2.removed, vec![vec![f("metadata"), f("labels"), f("tier")]]);
        assert!(p2.conflicts.is_empty());
        assert_eq!(p2.entries.len(), 1);
        assert_eq!(p2.entries[0].time, "t2", "a changed set gets the new time");
        // Applying the same again changes nothing, not even the time.
        let p_same = plan(&live, &first, "ci", "apps/v1", false, "t3");
        assert!(p_same.removed.is_empty() && !p_same.entries_changed, "{p_same:?}");
        // Another manager that also applied `tier` keeps it.
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "x"}}});
        let po = plan(&live, &other, "ops", "apps/v1", false, "t4");
        assert!(po.conflicts.is_empty(), "the same value is no conflict: {:?}", po.conflicts);
        live["metadata"]["managedFields"] = Value::Array(po.entries.iter().map(ManagedEntry::to_json).collect());
        let p3 = plan(&live, &second, "ci", "apps/v1", false, "t5");
        assert!(p3.removed.is_empty(), "co-owned fields stay: {:?}", p3.removed);
    }

    fn live_meta(p: &Plan) -> Value {
        json!({"managedFields": p.entries.iter().map(ManagedEntry::to_json).collect::<Vec<_>>()})
    }

    #[test]
    fn an_element_no_longer_applied_goes_whole() {
        let env = |vars: Value| json!({"spec": {"containers": [{"name": "c", "image": "i", "env": vars}]}});
        let first = env(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        let mut live = first.clone();
        let p1 = plan(&json!({}), &first, "ci", "v1", false, "t1");
        live["metadata"] = json!({"managedFields": p1.entries.iter().map(ManagedEntry::to_json).collect::<Vec<_>>()});
        let p2 = plan(&live, &env(json!([{"name": "A", "value": "1"}])), "ci", "v1", false, "t2");
        assert_eq!(p2.removed.len(), 3, "the element B, its name and its value: {:?}", p2.removed);
        remove_all(&mut live, &p2.removed);
        assert_eq!(live["spec"]["containers"][0]["env"], json!([{"name": "A", "value": "1"}]));
        // Dropping the last variable drops the emptied list, not the container beside it.
        let mut live = first.clone();
        let p3 = plan(&json!({"metadata": live_meta(&p1)}), &env(json!([])), "ci", "v1", false, "t3");
        remove_all(&mut live, &p3.removed);
        assert_eq!(live["spec"]["containers"], json!([{"name": "c", "image": "i"}]));
    }

    #[test]
    fn a_different_value_for_another_managers_field_conflicts_unless_forced() {
        let mut live = deployment("nginx", 3, json!({"app": "web"}));
        let p = plan(&json!({}), &live, "ci", "apps/v1", false, "t1");
        live["metadata"]["managedFields"] = Value::Array(p.entries.iter().map(ManagedEntry::to_json).collect());
        let scaled = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let refused = plan(&live, &scaled, "ops", "apps/v1", false, "t2");
        assert_eq!(refused.conflicts, vec![Conflict { manager: "ci".into(), path: vec![f("spec"), f("replicas")] }]);
        assert_eq!(
            conflict_message(&refused.conflicts),
            r#"Apply failed with 1 conflict: conflict with "ci": .spec.replicas"#
        );
        let forced = plan(&live, &scaled, "ops", "apps/v1", true, "t2");
        assert!(forced.conflicts.is_empty());
        let ci = forced.entries.iter().find(|e| e.manager == "ci").expect("ci keeps its other fields");
        assert!(!ci.fields.contains(&vec![f("spec"), f("replicas")]), "forcing takes the field over");
        let ops = forced.entries.iter().find(|e| e.manager == "ops").expect("ops entry");
        assert!(ops.fields.contains(&vec![f("spec"), f("replicas")]));
    }
}
