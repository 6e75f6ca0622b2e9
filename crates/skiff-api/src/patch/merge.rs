//! JSON Merge Patch (RFC 7386): objects merge recursively, `null` deletes, everything else replaces.

use serde_json::{Map, Value};

/// Apply `patch` to `doc` per RFC 7386.
pub fn apply(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    merge_into(&mut out, patch);
    out
}

/// In-place form of [`apply`].
pub fn merge_into(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("target is an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_into(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge patch that turns `from` into `to` (objects diffed recursively, removals as `null`).
pub fn diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, av) in a {
                match b.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(bv) if bv != av => {
                        out.insert(k.clone(), diff(av, bv));
                    }
                    Some(_) => {}
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.insert(k.clone(), bv.clone());
                }
            }
            Value::Object(out)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_examples() {
        // The test cases from RFC 7386 appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(apply(&doc, &patch), want, "doc {doc} patch {patch}");
        }
    }

    #[test]
    fn diff_round_trips() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "x": [1]}});
        let b = json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"replicas": 3, "x": [2]}});
        let p = diff(&a, &b);
        assert_eq!(p, json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"replicas": 3, "x": [2]}}));
        assert_eq!(apply(&a, &p), b);
    }
}
