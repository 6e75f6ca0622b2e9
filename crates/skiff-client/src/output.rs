//! `-o yaml|json|name` printing of objects and lists, as kubectl formats them.

use serde::Serialize;
use serde_json::{json, Value};
use skiff_api::ResourceInfo;

use crate::resource::display_name;

/// JSON with 4-space indentation and a trailing newline (kubectl's `-o json`).
pub fn to_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    v.serialize(&mut ser).expect("JSON serializes");
    let mut s = String::from_utf8(buf).expect("JSON is UTF-8");
    s.push('\n');
    s
}

/// YAML (`-o yaml`).
pub fn to_yaml(v: &Value) -> String {
    yaml_serde::to_string(v).expect("YAML serializes")
}

/// Items of a list response lack `apiVersion`/`kind`; fill them in as kubectl does.
pub fn with_type(mut item: Value, res: &ResourceInfo) -> Value {
    if let Some(m) = item.as_object_mut() {
        m.entry("apiVersion").or_insert_with(|| Value::String(res.api_version()));
        m.entry("kind").or_insert_with(|| Value::String(res.kind.to_string()));
    }
    item
}

/// `obj` without `metadata.managedFields` unless `keep` (kubectl's `--show-managed-fields`).
pub fn without_managed_fields(mut obj: Value, keep: bool) -> Value {
    if !keep {
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    }
    obj
}

/// kubectl's `kind: List` wrapper for several objects.
pub fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// `-o name`: `pod/web`.
pub fn name_line(res: &ResourceInfo, obj: &Value) -> String {
    display_name(res, obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""))
}

/// Output format of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::DEPLOYMENTS;

    #[test]
    fn formats() {
        let item = with_type(json!({"metadata": {"name": "web"}}), &DEPLOYMENTS);
        assert_eq!(name_line(&DEPLOYMENTS, &item), "deployment.apps/web");
        assert_eq!(
            to_json(&item),
            "{\n    \"apiVersion\": \"apps/v1\",\n    \"kind\": \"Deployment\",\n    \"metadata\": {\n        \"name\": \"web\"\n    }\n}\n"
        );
        assert_eq!(to_yaml(&item), "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n");
        assert_eq!(
            to_yaml(&as_list(vec![json!({"a": 1})])),
            "apiVersion: v1\nitems:\n- a: 1\nkind: List\nmetadata:\n  resourceVersion: ''\n"
        );
    }
}
