//! JSON Patch (RFC 6902) with RFC 6901 JSON pointers (`~0` = `~`, `~1` = `/`).

use serde_json::Value;

use super::PatchError;

/// Split a JSON pointer into unescaped reference tokens. `""` is the whole document.
pub fn parse_pointer(ptr: &str) -> Result<Vec<String>, PatchError> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(PatchError::BadPointer(ptr.to_string()));
    };
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(PatchError::BadPointer(ptr.to_string())),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Escape one reference token for use in a pointer.
pub fn escape_token(tok: &str) -> String {
    tok.replace('~', "~0").replace('/', "~1")
}

fn array_index(tok: &str, len: usize, allow_end: bool, ptr: &str) -> Result<usize, PatchError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let valid = !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) && (tok == "0" || !tok.starts_with('0'));
    let idx: usize = if valid {
        tok.parse().map_err(|_| PatchError::BadPointer(ptr.to_string()))?
    } else {
        return Err(PatchError::BadPointer(ptr.to_string()));
    };
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if idx > max || (!allow_end && len == 0) {
        return Err(PatchError::PathNotFound(ptr.to_string()));
    }
    Ok(idx)
}

fn get<'a>(doc: &'a Value, tokens: &[String], ptr: &str) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => Some(&a[array_index(t, a.len(), false, ptr)?]),
            _ => None,
        }
        .ok_or_else(|| PatchError::PathNotFound(ptr.to_string()))?;
    }
    Ok(cur)
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String], ptr: &str) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in &tokens[..tokens.len() - 1] {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => {
                let i = array_index(t, a.len(), false, ptr)?;
                Some(&mut a[i])
            }
            _ => None,
        }
        .ok_or_else(|| PatchError::PathNotFound(ptr.to_string()))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, tokens: &[String], value: Value, ptr: &str) -> Result<(), PatchError> {
    let Some(last) = tokens.last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, tokens, ptr)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true, ptr)?;
            a.insert(i, value);
        }
        _ => return Err(PatchError::PathNotFound(ptr.to_string())),
    }
    Ok(())
}

fn remove(doc: &mut Value, tokens: &[String], ptr: &str) -> Result<Value, PatchError> {
    let Some(last) = tokens.last() else {
        return Err(PatchError::Invalid("cannot remove the whole document".into()));
    };
    match parent_mut(doc, tokens, ptr)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| PatchError::PathNotFound(ptr.to_string())),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false, ptr)?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError::PathNotFound(ptr.to_string())),
    }
}

fn str_field<'a>(op: &'a Value, name: &str, i: usize) -> Result<&'a str, PatchError> {
    op.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError::Invalid(format!("operation {i} is missing string field {name:?}")))
}

/// Apply an RFC 6902 patch (a JSON array of operations). All-or-nothing: on error `doc` is
/// not modified because the patch is applied to a copy.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Invalid("a JSON patch must be an array".into()))?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let name = str_field(op, "op", i)?;
        let path = str_field(op, "path", i)?;
        let tokens = parse_pointer(path)?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| PatchError::Invalid(format!("operation {i} ({name}) needs a value")))
        };
        match name {
            "add" => add(&mut out, &tokens, value()?, path)?,
            "remove" => {
                remove(&mut out, &tokens, path)?;
            }
            "replace" => {
                let v = value()?;
                if tokens.is_empty() {
                    out = v;
                } else {
                    get(&out, &tokens, path)?;
                    remove(&mut out, &tokens, path)?;
                    add(&mut out, &tokens, v, path)?;
                }
            }
            "move" => {
                let from = str_field(op, "from", i)?;
                let from_tokens = parse_pointer(from)?;
                if tokens.len() > from_tokens.len() && tokens[..from_tokens.len()] == from_tokens[..] {
                    return Err(PatchError::Invalid(format!("cannot move {from:?} into its own child {path:?}")));
                }
                if from_tokens != tokens {
                    let v = remove(&mut out, &from_tokens, from)?;
                    add(&mut out, &tokens, v, path)?;
                } else {
                    get(&out, &from_tokens, from)?;
                }
            }
            "copy" => {
                let from = str_field(op, "from", i)?;
                let v = get(&out, &parse_pointer(from)?, from)?.clone();
                add(&mut out, &tokens, v, path)?;
            }
            "test" => {
                let want = value()?;
                let found = get(&out, &tokens, path)?;
                if *found != want {
                    return Err(PatchError::TestFailed {
                        path: path.to_string(),
                        expected: want.to_string(),
                        found: found.to_string(),
                    });
                }
            }
            other => return Err(PatchError::Invalid(format!("operation {i} has unknown op {other:?}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&doc, &patch)
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_pointer("/a~1b/c~0d/~01").unwrap(), vec!["a/b", "c~d", "~1"]);
        assert_eq!(parse_pointer("/").unwrap(), vec![""]);
        assert!(matches!(parse_pointer("a/b"), Err(PatchError::BadPointer(_))));
        assert!(matches!(parse_pointer("/a~2"), Err(PatchError::BadPointer(_))));
        assert_eq!(escape_token("example.com/a~b"), "example.com~1a~0b");
    }

    #[test]
    fn add_to_objects_and_arrays() {
        let doc = json!({"metadata": {"labels": {}}, "list": [1, 3]});
        let out = run(
            doc,
            json!([
                {"op": "add", "path": "/metadata/labels/example.com~1team", "value": "x"},
                {"op": "add", "path": "/list/1", "value": 2},
                {"op": "add", "path": "/list/-", "value": 4},
                {"op": "add", "path": "/new", "value": {"a": 1}}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"example.com/team": "x"}}, "list": [1, 2, 3, 4], "new": {"a": 1}})
        );
    }

    #[test]
    fn remove_replace_move_copy() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": ["x", "y", "z"]});
        let out = run(
            doc,
            json!([
                {"op": "remove", "path": "/a/b"},
                {"op": "replace", "path": "/l/0", "value": "X"},
                {"op": "move", "from": "/l/2", "path": "/a/z"},
                {"op": "copy", "from": "/a/c", "path": "/l/-"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "z": "z"}, "l": ["X", "y", 2]}));
    }

    #[test]
    fn replace_root_and_test_success() {
        let out = run(
            json!({"a": 1}),
            json!([{"op": "test", "path": "/a", "value": 1}, {"op": "replace", "path": "", "value": [1]}]),
        )
        .unwrap();
        assert_eq!(out, json!([1]));
    }

    #[test]
    fn test_failure_is_an_error() {
        let doc = json!({"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 1}});
        let err = run(
            doc,
            json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4"}
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                path: "/metadata/resourceVersion".into(),
                expected: "\"4\"".into(),
                found: "\"5\"".into()
            }
        );
    }

    #[test]
    fn errors() {
        let doc = json!({"a": {"b": 1}, "l": [1]});
        let cases = [
            json!([{"op": "remove", "path": "/missing"}]),
            json!([{"op": "replace", "path": "/a/x", "value": 1}]),
            json!([{"op": "add", "path": "/l/5", "value": 1}]),
            json!([{"op": "add", "path": "/l/01", "value": 1}]),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
            json!([{"op": "copy", "from": "/nope", "path": "/c"}]),
            json!([{"op": "test", "path": "/nope", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"path": "/a"}]),
            json!({"op": "add"}),
            json!([{"op": "remove", "path": "/l/-"}]),
        ];
        for p in cases {
            assert!(apply(&doc, &p).is_err(), "{p} should fail");
        }
    }

    #[test]
    fn failing_patch_leaves_input_untouched() {
        let doc = json!({"a": 1});
        let _ = apply(&doc, &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zzz"}]));
        assert_eq!(doc, json!({"a": 1}));
    }
}
