//! Manifests: read `-f FILE|DIR|-`, split multi-document YAML / JSON, expand `List` objects.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest manifest file read (objects are limited to 1.5 MiB by the server anyway).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// One object from a manifest, with where it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Parse a file's text: concatenated JSON values, or multi-document YAML (JSON is YAML too).
/// Empty documents are skipped, `kind: List` (and `*List` with `items`) are expanded.
pub fn parse(text: &str, source: &str) -> Result<Vec<Value>> {
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match parse_json(text) {
            Ok(d) => d,
            Err(_) => parse_yaml(text, source)?,
        }
    } else {
        parse_yaml(text, source)?
    };
    let mut out = Vec::new();
    for doc in docs {
        expand(doc, source, &mut out)?;
    }
    Ok(out)
}

fn parse_json(text: &str) -> std::result::Result<Vec<Value>, serde_json::Error> {
    serde_json::Deserializer::from_str(text).into_iter::<Value>().collect()
}

fn parse_yaml(text: &str, source: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc)
            .map_err(|e| Error::Manifest(format!("error parsing {source} (document {}): {e}", i + 1)))?;
        docs.push(v);
    }
    Ok(docs)
}

fn expand(doc: Value, source: &str, out: &mut Vec<Value>) -> Result<()> {
    match doc {
        Value::Null => Ok(()),
        Value::Array(items) => items.into_iter().try_for_each(|i| expand(i, source, out)),
        Value::Object(ref m) => {
            let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
            if kind.ends_with("List") && m.get("items").is_some_and(Value::is_array) {
                let Value::Object(mut m) = doc else { unreachable!() };
                let Some(Value::Array(items)) = m.remove("items") else { unreachable!() };
                return items.into_iter().try_for_each(|i| expand(i, source, out));
            }
            if m.is_empty() {
                return Ok(());
            }
            check_object(&doc, source)?;
            out.push(doc);
            Ok(())
        }
        other => Err(Error::Manifest(format!("error validating {source}: expected an object, found {other}"))),
    }
}

fn check_object(obj: &Value, source: &str) -> Result<()> {
    for field in ["apiVersion", "kind"] {
        if obj.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::Manifest(format!(
                "error validating data from {source}: {field} not set; every object needs apiVersion and kind"
            )));
        }
    }
    Ok(())
}

/// Read every `-f` argument: `-` is stdin, a directory contributes its `.yaml`, `.yml` and `.json`
/// files in name order (subdirectories too with `recursive`), anything else is one file.
pub fn read_sources(files: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_MANIFEST_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| Error::Manifest(format!("cannot read stdin: {e}")))?;
            push_all(&text, "STDIN", &mut out)?;
        } else {
            read_path(Path::new(f), recursive, true, &mut out)?;
        }
    }
    Ok(out)
}

fn push_all(text: &str, source: &str, out: &mut Vec<Manifest>) -> Result<()> {
    for object in parse(text, source)? {
        out.push(Manifest { source: source.to_string(), object });
    }
    Ok(())
}

fn read_path(path: &Path, recursive: bool, top: bool, out: &mut Vec<Manifest>) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Manifest(format!("the path \"{}\" does not exist: {e}", path.display())))?;
    if meta.is_dir() {
        if !top && !recursive {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::Manifest(format!("cannot read directory {}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let is_manifest =
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["yaml", "yml", "json"].contains(&e));
            if p.is_dir() || is_manifest {
                read_path(&p, recursive, false, out)?;
            }
        }
        return Ok(());
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(Error::Manifest(format!("{} is larger than {MAX_MANIFEST_BYTES} bytes", path.display())));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Manifest(format!("cannot read {}: {e}", path.display())))?;
    push_all(&text, &path.display().to_string(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_yaml() {
        let text = "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports:\n    - containerPort: 80\n---\n# only a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n...\n";
        let docs = parse(text, "f.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["spec"]["containers"][0]["ports"][0]["containerPort"], json!(80));
        assert_eq!(docs[1]["metadata"]["name"], "b");
    }

    #[test]
    fn json_single_concatenated_and_arrays() {
        let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#;
        assert_eq!(parse(one, "x").unwrap().len(), 1);
        let two = format!("{one}\n{one}");
        assert_eq!(parse(&two, "x").unwrap().len(), 2);
        assert_eq!(parse(&format!("[{one},{one}]"), "x").unwrap().len(), 2);
    }

    #[test]
    fn list_kinds_are_expanded() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}},
            {"apiVersion":"v1","kind":"PodList","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}]}]}"#;
        let docs = parse(text, "x").unwrap();
        let names: Vec<_> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["s", "p"]);
    }

    #[test]
    fn missing_kind_and_bad_yaml_are_errors() {
        let e = parse("apiVersion: v1\nmetadata: {name: a}\n", "f.yaml").unwrap_err().to_string();
        assert!(e.contains("kind not set"), "{e}");
        let e = parse("a: [1,\n", "f.yaml").unwrap_err().to_string();
        assert!(e.contains("error parsing f.yaml"), "{e}");
        assert!(parse("just a string", "f").is_err());
        assert!(parse("", "f").unwrap().is_empty());
    }

    #[test]
    fn directories_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n").unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#)
            .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.yml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\n").unwrap();
        let names = |recursive| {
            read_sources(&[dir.path().display().to_string()], recursive)
                .unwrap()
                .into_iter()
                .map(|m| m.object["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(false), ["a", "b"]);
        assert_eq!(names(true), ["a", "b", "c"]);
        assert!(read_sources(&["/does/not/exist".into()], false).is_err());
    }
}
