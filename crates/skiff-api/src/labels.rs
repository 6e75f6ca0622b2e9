//! Label selectors: the `a=b,c in (x,y),!d` query syntax and `LabelSelector` objects, and matching.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::validation::{is_qualified_name, is_valid_label_value};

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`: the label is present with that value.
    Equals(String, String),
    /// `key!=value`: the label is absent or has another value.
    NotEquals(String, String),
    /// `key in (a,b)`: present with one of the values.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)`: absent or not one of the values.
    NotIn(String, BTreeSet<String>),
    /// `key`: present.
    Exists(String),
    /// `!key`: absent.
    DoesNotExist(String),
}

impl Requirement {
    pub fn key(&self) -> &str {
        match self {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(self.key());
        match self {
            Requirement::Equals(_, v) => got == Some(v),
            Requirement::NotEquals(_, v) => got != Some(v),
            Requirement::In(_, vs) => got.is_some_and(|g| vs.contains(g)),
            Requirement::NotIn(_, vs) => !got.is_some_and(|g| vs.contains(g)),
            Requirement::Exists(_) => got.is_some(),
            Requirement::DoesNotExist(_) => got.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", join(vs)),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", join(vs)),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// Why a selector could not be parsed or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {message}")]
pub struct SelectorError {
    /// Byte offset in the input where the problem was found (0 for object selectors).
    pub position: usize,
    pub message: String,
}

/// A conjunction of requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn from_requirements(requirements: Vec<Requirement>) -> Result<Self, SelectorError> {
        for r in &requirements {
            check_requirement(r, 0)?;
        }
        Ok(LabelSelector { requirements })
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when every requirement holds.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parse the `labelSelector` query-string syntax.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser { s: input, pos: 0 }.parse()
    }

    /// Convert a `metav1.LabelSelector` (matchLabels + matchExpressions).
    pub fn from_k8s(sel: &meta::LabelSelector) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for expr in sel.match_expressions.iter().flatten() {
            let values: Vec<String> = expr.values.clone().unwrap_or_default();
            let key = expr.key.clone();
            let req = match expr.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        return Err(err(0, format!("values: Invalid value: []: for 'In', 'NotIn' operators, values set can't be empty (key {key:?})")));
                    }
                    let set = values.into_iter().collect();
                    if expr.operator == "In" {
                        Requirement::In(key, set)
                    } else {
                        Requirement::NotIn(key, set)
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        return Err(err(0, format!("values: Invalid value: {values:?}: values set must be empty for exists and does not exist (key {key:?})")));
                    }
                    if expr.operator == "Exists" {
                        Requirement::Exists(key)
                    } else {
                        Requirement::DoesNotExist(key)
                    }
                }
                other => return Err(err(0, format!("{other:?} is not a valid label selector operator"))),
            };
            reqs.push(req);
        }
        Self::from_requirements(reqs)
    }

    /// Convert a JSON `LabelSelector` object, as found in `spec.selector` of workloads.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, SelectorError> {
        let sel: meta::LabelSelector =
            serde_json::from_value(v.clone()).map_err(|e| err(0, format!("invalid label selector object: {e}")))?;
        Self::from_k8s(&sel)
    }
}

impl fmt::Display for LabelSelector {
    /// Canonical query-string form, parseable by [`LabelSelector::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        Self::parse(s)
    }
}

fn err(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError { position, message: message.into() }
}

fn check_requirement(r: &Requirement, pos: usize) -> Result<(), SelectorError> {
    let key = r.key();
    let msgs = is_qualified_name(key);
    if !msgs.is_empty() {
        return Err(err(pos, format!("invalid label key {key:?}: {}", msgs.join("; "))));
    }
    let values: Vec<&String> = match r {
        Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => vec![v],
        Requirement::In(_, vs) | Requirement::NotIn(_, vs) => vs.iter().collect(),
        Requirement::Exists(_) | Requirement::DoesNotExist(_) => vec![],
    };
    for v in values {
        let msgs = is_valid_label_value(v);
        if !msgs.is_empty() {
            return Err(err(pos, format!("invalid label value: {v:?}: {}", msgs.join("; "))));
        }
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',') || c.is_whitespace()
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn word(&mut self) -> &'a str {
        let start = self.pos;
        let len = self.rest().find(is_special).unwrap_or(self.rest().len());
        self.pos += len;
        &self.s[start..self.pos]
    }

    fn parse(mut self) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        self.skip_ws();
        if self.rest().is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            self.skip_ws();
            let start = self.pos;
            let req = self.requirement()?;
            check_requirement(&req, start)?;
            reqs.push(req);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => self.pos += 1,
                Some(c) => return Err(err(self.pos, format!("found '{c}', expected: ',' or 'end of string'"))),
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let at = self.pos;
        let k = self.word().to_string();
        if k.is_empty() {
            let found = self.peek().map(|c| c.to_string()).unwrap_or_else(|| "end of string".into());
            return Err(err(at, format!("found '{found}', expected: identifier")));
        }
        Ok(k)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some('!') {
            self.pos += 1;
            let k = self.key()?;
            self.skip_ws();
            return match self.peek() {
                None | Some(',') => Ok(Requirement::DoesNotExist(k)),
                Some(c) => Err(err(self.pos, format!("found '{c}', expected: ',' or 'end of string' after '!{k}'"))),
            };
        }
        let key = self.key()?;
        self.skip_ws();
        let rest = self.rest();
        if rest.is_empty() || rest.starts_with(',') {
            return Ok(Requirement::Exists(key));
        }
        if let Some(r) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            self.pos = self.s.len() - r.len();
            return Ok(Requirement::Equals(key, self.value()?));
        }
        if let Some(r) = rest.strip_prefix("!=") {
            self.pos = self.s.len() - r.len();
            return Ok(Requirement::NotEquals(key, self.value()?));
        }
        let op_at = self.pos;
        let op = self.word().to_string();
        match op.as_str() {
            "in" => Ok(Requirement::In(key, self.set()?)),
            "notin" => Ok(Requirement::NotIn(key, self.set()?)),
            "" => {
                let c = self.peek().unwrap_or(' ');
                Err(err(op_at, format!("found '{c}', expected: in, notin, =, ==, !=")))
            }
            other => Err(err(op_at, format!("found '{other}', expected: in, notin, =, ==, !="))),
        }
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let at = self.pos;
        let v = self.word().to_string();
        if let Some(c @ ('=' | '!' | '(')) = self.peek() {
            return Err(err(at, format!("found '{c}', expected: value")));
        }
        Ok(v)
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(err(self.pos, "found missing '(', expected: '(' after 'in'/'notin'"));
        }
        self.pos += 1;
        let mut out = BTreeSet::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            let v = self.word().to_string();
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    out.insert(v);
                    self.pos += 1;
                }
                Some(')') => {
                    if !v.is_empty() || !out.is_empty() {
                        out.insert(v);
                    }
                    self.pos += 1;
                    break;
                }
                Some(c) => return Err(err(self.pos, format!("found '{c}', expected: ',' or ')'"))),
                None => return Err(err(at, "found 'end of string', expected: ')'")),
            }
        }
        if out.is_empty() {
            return Err(err(self.pos, "for 'in', 'notin' operators, values set can't be empty"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_operator() {
        let s = sel("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j");
        assert_eq!(
            s.requirements(),
            &[
                Requirement::Equals("a".into(), "b".into()),
                Requirement::Equals("c".into(), "d".into()),
                Requirement::NotEquals("e".into(), "f".into()),
                Requirement::In("g".into(), ["x".to_string(), "y".to_string()].into()),
                Requirement::NotIn("h".into(), ["z".to_string()].into()),
                Requirement::Exists("i".into()),
                Requirement::DoesNotExist("j".into()),
            ]
        );
        assert_eq!(s.to_string(), "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(sel("").matches(&labels(&[])));
        assert!(sel("  ").matches(&labels(&[("a", "b")])));
        assert!(sel("").is_empty());
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("example.com/team", "x")]);
        assert!(sel("app=web").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(sel("missing!=db").matches(&l), "!= matches absent labels");
        assert!(sel("tier in (front,back)").matches(&l));
        assert!(!sel("missing in (front)").matches(&l));
        assert!(sel("tier notin (back)").matches(&l));
        assert!(sel("missing notin (back)").matches(&l));
        assert!(!sel("tier notin (front)").matches(&l));
        assert!(sel("app,!missing").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("example.com/team=x").matches(&l));
        assert!(!sel("app=web,tier=back").matches(&l), "all requirements must hold");
        assert!(sel("app=").matches(&labels(&[("app", "")])));
        assert!(!sel("app=").matches(&l));
    }

    #[test]
    fn parse_errors() {
        for (input, needle) in [
            ("a in x", "'('"),
            ("a in (x", "')'"),
            ("a in ()", "can't be empty"),
            ("a >= b", "expected: in, notin"),
            ("a foo (b)", "found 'foo'"),
            ("=b", "expected: identifier"),
            ("a=b,", "expected: identifier"),
            ("a=b c=d", "expected: ','"),
            ("!a=b", "after '!a'"),
            ("Bad Key=x", "expected"),
            ("-bad=x", "invalid label key"),
            ("a=-bad", "invalid label value"),
            ("a=b=c", "expected: value"),
        ] {
            let e = LabelSelector::parse(input).expect_err(input);
            assert!(e.to_string().contains(needle), "{input:?}: {e} should contain {needle:?}");
            assert!(e.to_string().starts_with("unable to parse requirement: "));
        }
        assert_eq!(LabelSelector::parse("a=b,=c").unwrap_err().position, 4);
    }

    #[test]
    fn from_label_selector_object() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "mid"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["z9"]},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert_eq!(s.requirements().len(), 5);
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "mid"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "mid"), ("team", "a"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "back"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "mid"), ("team", "a"), ("zone", "z9")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "mid")])));
        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn object_selector_errors() {
        let bad_op = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert!(LabelSelector::from_json(&bad_op).unwrap_err().message.contains("not a valid label selector operator"));
        let empty_in = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert!(LabelSelector::from_json(&empty_in).unwrap_err().message.contains("can't be empty"));
        let exists_vals = json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
        assert!(LabelSelector::from_json(&exists_vals).unwrap_err().message.contains("must be empty"));
        let bad_key = json!({"matchLabels": {"a b": "x"}});
        assert!(LabelSelector::from_json(&bad_key).unwrap_err().message.contains("invalid label key"));
        assert!(LabelSelector::from_json(&json!({"matchLabels": "x"})).is_err());
    }
}
