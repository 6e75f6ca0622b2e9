//! Stored objects served from their stored bytes.
//!
//! The store keeps an object as JSON without `metadata.resourceVersion` (the key's revision,
//! set on every read). Serving it used to mean decoding it into a `serde_json::Value` tree,
//! setting that field and serializing the tree again: for a pod, about 150 allocations and two
//! passes over its JSON, per object of a list and per line of a watch. [`write_served`] writes
//! the same JSON from the stored bytes instead: it reads the top level and `metadata` as members
//! whose values stay unparsed slices, copies them, and adds the resourceVersion. For what
//! the store writes (compact JSON, members in key order, as `serde_json` serializes a `Value`)
//! the result is byte for byte what the decode-and-serialize path gives; for any other JSON
//! object it is the same object, its members in their stored order.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A member name, borrowed from the input unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object's members in their order, each value the unparsed slice of the input.
struct Members<'a>(Vec<(Name<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(m.size_hint().unwrap_or(8).min(64));
                while let Some(member) = m.next_entry::<Name<'de>, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    serde_json::to_writer(&mut *out, name).expect("a string serializes");
    out.push(b':');
}

/// Writes `members` as an object with `name: value` in it: in place of a member of that
/// name, else before the first member whose name sorts after it (where a `Value` map, whose
/// keys are in order, has it).
fn push_with(out: &mut Vec<u8>, members: &[(Name<'_>, &RawValue)], name: &str, value: impl FnOnce(&mut Vec<u8>)) {
    let mut value = Some(value);
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    for (k, v) in members {
        let here = k.0.as_ref() >= name;
        if here {
            if let Some(write) = value.take() {
                sep(out);
                push_name(out, name);
                write(out);
                if k.0 == name {
                    continue;
                }
            }
        }
        sep(out);
        push_name(out, &k.0);
        out.extend_from_slice(v.get().as_bytes());
    }
    if let Some(write) = value.take() {
        sep(out);
        push_name(out, name);
        write(out);
    }
    out.push(b'}');
}

/// Appends the object stored as `stored` as the API serves it, with `metadata.resourceVersion`
/// set to `revision` (see the module's documentation). False, with `out` as it was, when
/// `stored` is not a JSON object or its `metadata` is not one: the caller then decodes it.
pub fn write_served(out: &mut Vec<u8>, stored: &[u8], revision: u64) -> bool {
    let Ok(top) = serde_json::from_slice::<Members>(stored) else { return false };
    let meta = match top.0.iter().find(|(k, _)| k.0 == "metadata") {
        Some((_, raw)) => match serde_json::from_str::<Members>(raw.get()) {
            Ok(m) => m,
            Err(_) => return false,
        },
        None => Members(Vec::new()),
    };
    push_with(out, &top.0, "metadata", |out| {
        push_with(out, &meta.0, "resourceVersion", |out| {
            write!(out, "\"{revision}\"").expect("writing to a Vec cannot fail")
        })
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What the decode path serves: the stored object parsed, its resourceVersion set, serialized.
    fn decoded(stored: &[u8], rev: u64) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(stored).unwrap();
        crate::meta::meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rev.to_string()));
        serde_json::to_vec(&v).unwrap()
    }

    fn served(stored: &[u8], rev: u64) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        assert!(write_served(&mut out, stored, rev), "{}", String::from_utf8_lossy(stored));
        assert!(out.starts_with(b"prefix"), "appended, not replaced");
        out.split_off(6)
    }

    #[test]
    fn stored_objects_are_served_byte_for_byte_as_the_decode_path_serves_them() {
        let objects = [
            // A pod as the store writes it: keys in order, no resourceVersion.
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"creationTimestamp": "2026-12-07T10:00:00Z", "labels": {"app": "a\"b", "z": "ü"},
                    "name": "p-1", "namespace": "default", "uid": "u-1"},
                "spec": {"containers": [{"image": "skiff/busybox:1", "name": "c",
                    "resources": {"requests": {"cpu": "10m"}}}], "nodeName": "n1", "priority": 0},
                "status": {"conditions": [{"status": "True", "type": "Ready"}], "phase": "Running",
                    "startTime": null, "ratio": 0.5, "big": 18446744073709551615u64, "neg": -3}}),
            // No metadata at all, and metadata with only members after resourceVersion.
            json!({"apiVersion": "v1", "kind": "Namespace", "spec": {}}),
            json!({"metadata": {"uid": "x"}, "a": [1, 2, {"b": "c"}]}),
            // Members that sort before and after `metadata` and `resourceVersion`.
            json!({"data": {"k": "line\nbreak \\ \u{1}"}, "metadata": {"name": "cm", "annotations": {}}, "zeta": true}),
            json!({}),
        ];
        for o in objects {
            let stored = serde_json::to_vec(&o).unwrap();
            for rev in [0, 7, u64::MAX] {
                assert_eq!(
                    String::from_utf8(served(&stored, rev)).unwrap(),
                    String::from_utf8(decoded(&stored, rev)).unwrap()
                );
            }
        }
    }

    #[test]
    fn any_object_is_served_as_the_same_object() {
        // Members out of order (a typed struct's fields), whitespace, an escaped member name,
        // and a resourceVersion already there: the same object once parsed, the revision set.
        let stored = br#" { "kind" : "Event", "metadata" : { "resourceVersion": "3", "name" : "e" },
            "involvedObject": {"uid": "u", "kind": "Pod"}, "na\u006De": 1, "count": 2 } "#;
        let out = served(stored, 42);
        let got: Value = serde_json::from_slice(&out).unwrap();
        let want: Value = serde_json::from_slice(&decoded(stored, 42)).unwrap();
        assert_eq!(got, want);
        assert_eq!(got["metadata"]["resourceVersion"], "42");
        assert_eq!(String::from_utf8(out).unwrap().matches("resourceVersion").count(), 1, "replaced, not added");
    }

    #[test]
    fn what_is_not_an_object_with_an_object_metadata_is_left_to_the_decode_path() {
        for stored in [&b"[1,2]"[..], b"\"s\"", b"{\"metadata\": 5}", b"{\"metadata\": {}", b"not json", b""] {
            let mut out = b"kept".to_vec();
            assert!(!write_served(&mut out, stored, 1), "{}", String::from_utf8_lossy(stored));
            assert_eq!(out, b"kept");
        }
    }
}
