//! Field selectors (`metadata.name=x,spec.nodeName!=y`) matched against JSON objects by dotted path.

use std::fmt;

use serde_json::Value;

/// `=`/`==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted path into the object, e.g. `spec.nodeName` or `involvedObject.kind`.
    pub path: String,
    pub op: FieldOp,
    pub value: String,
}

impl FieldRequirement {
    /// Compare the field's string form (missing or null fields read as `""`).
    pub fn matches(&self, obj: &Value) -> bool {
        let got = field_value(obj, &self.path);
        match self.op {
            FieldOp::Equals => got == self.value,
            FieldOp::NotEquals => got != self.value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field selector: {0}")]
pub struct FieldSelectorError(pub String);

/// A conjunction of field requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Paths the Kubernetes API documents for field selectors; any other plain dotted path is also
/// accepted by Skiff.
pub const WELL_KNOWN_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "involvedObject.kind",
    "involvedObject.name",
    "involvedObject.namespace",
    "involvedObject.uid",
];

impl FieldSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }

    /// The value required by an `=` term on `path`, if any (lets callers turn
    /// `metadata.name=x` or `metadata.namespace=y` into a key lookup or prefix).
    pub fn required_value(&self, path: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.path == path && r.op == FieldOp::Equals).map(|r| r.value.as_str())
    }

    /// Parse `path=value,path!=value`. Values may escape `\,`, `\=` and `\\`.
    pub fn parse(input: &str) -> Result<Self, FieldSelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self::default());
        }
        for term in split_unescaped(input, ',') {
            let t = term.trim();
            let (path, op, raw_value) = if let Some(i) = find_unescaped(t, "!=") {
                (&t[..i], FieldOp::NotEquals, &t[i + 2..])
            } else if let Some(i) = find_unescaped(t, "==") {
                (&t[..i], FieldOp::Equals, &t[i + 2..])
            } else if let Some(i) = find_unescaped(t, "=") {
                (&t[..i], FieldOp::Equals, &t[i + 1..])
            } else {
                return Err(FieldSelectorError(format!("'{t}'; can't understand '{t}'")));
            };
            let path = path.trim();
            let valid_path = !path.is_empty()
                && path.split('.').all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid_path {
                return Err(FieldSelectorError(format!(
                    "'{t}': unsupported operator or field path '{path}' (operators are =, == and !=)"
                )));
            }
            if find_unescaped(raw_value, "=").is_some() {
                return Err(FieldSelectorError(format!("'{t}': unsupported operator (operators are =, == and !=)")));
            }
            requirements.push(FieldRequirement { path: path.to_string(), op, value: unescape(raw_value.trim()) });
        }
        Ok(FieldSelector { requirements })
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = FieldSelectorError;
    fn from_str(s: &str) -> Result<Self, FieldSelectorError> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
                format!("{}{op}{}", r.path, escape(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The string form of the field at a dotted path: strings as-is, numbers and booleans printed,
/// missing/null as `""`, objects and arrays as compact JSON.
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_escaped(s: &str, i: usize) -> bool {
    s[..i].bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    s.match_indices(pat).map(|(i, _)| i).find(|&i| !is_escaped(s, i))
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == sep && !is_escaped(s, i) {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "prod"},
            "spec": {"nodeName": "node-a", "priority": 5, "hostNetwork": false},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn parses_operators() {
        let s = FieldSelector::parse("metadata.name=web-1, spec.nodeName!=node-b,status.phase==Running").unwrap();
        assert_eq!(s.requirements().len(), 3);
        assert_eq!(s.requirements()[1].op, FieldOp::NotEquals);
        assert_eq!(s.requirements()[2].op, FieldOp::Equals);
        assert_eq!(s.requirements()[2].value, "Running");
        assert!(s.matches(&pod()));
        assert_eq!(s.required_value("metadata.name"), Some("web-1"));
        assert_eq!(s.required_value("spec.nodeName"), None);
        assert_eq!(s.to_string(), "metadata.name=web-1,spec.nodeName!=node-b,status.phase=Running");
    }

    #[test]
    fn matching() {
        let p = pod();
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&p);
        assert!(m("metadata.namespace=prod"));
        assert!(!m("metadata.namespace=dev"));
        assert!(!m("spec.nodeName!=node-a"));
        assert!(m("spec.nodeName!="), "scheduled pods have a non-empty nodeName");
        assert!(m("spec.schedulerName="), "missing fields read as empty");
        let null_node = json!({"spec": {"nodeName": null}});
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&null_node), "null reads as empty");
        assert!(!FieldSelector::parse("spec.nodeName=null").unwrap().matches(&null_node));
        assert!(!m("spec="), "objects are compared by their JSON form");
        assert!(m("spec.priority=5"));
        assert!(m("spec.hostNetwork=false"));
        assert!(!m("metadata.name=web-1,status.phase=Pending"));
        assert!(m(""));
    }

    #[test]
    fn event_involved_object_fields() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "prod", "uid": "u-1"}});
        let s = FieldSelector::parse(
            "involvedObject.kind=Pod,involvedObject.name=web,involvedObject.namespace=prod,involvedObject.uid=u-1",
        )
        .unwrap();
        assert!(s.matches(&ev));
        assert!(!FieldSelector::parse("involvedObject.uid=u-2").unwrap().matches(&ev));
    }

    #[test]
    fn escapes() {
        let obj = json!({"metadata": {"name": "a,b=c"}});
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.requirements()[0].value, "a,b=c");
        assert!(s.matches(&obj));
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn errors() {
        for bad in ["metadata.name", "a<b", "a>=b", "a in (b)", "=x", "spec..nodeName=x", "a=b=c", "a!b", "a,b=c"] {
            let e = FieldSelector::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid field selector: "), "{e}");
        }
    }
}
