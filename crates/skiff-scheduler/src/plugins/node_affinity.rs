//! `spec.nodeSelector` and node affinity: required terms filter nodes, preferred terms add their weights to the score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;

use crate::framework::{normalize_to_max, FilterPlugin, Rejection, ScorePlugin};
use crate::snapshot::{NodeInfo, PodInfo};

/// The operator of a node selector requirement, with its values parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    /// The label's value parsed as an integer is greater than this.
    Gt(i64),
    /// The label's value parsed as an integer is less than this.
    Lt(i64),
    /// An unknown operator or a `Gt`/`Lt` without exactly one integer value: matches nothing
    /// (validation rejects these; the scheduler fails closed).
    Invalid,
}

/// One `matchExpressions` / `matchFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

impl Requirement {
    pub fn new(r: &core::NodeSelectorRequirement) -> Requirement {
        let values = r.values.clone().unwrap_or_default();
        let single_int = || match values.as_slice() {
            [v] => v.parse::<i64>().ok(),
            _ => None,
        };
        let operator = match r.operator.as_str() {
            "In" => Operator::In(values.clone()),
            "NotIn" => Operator::NotIn(values.clone()),
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => single_int().map_or(Operator::Invalid, Operator::Gt),
            "Lt" => single_int().map_or(Operator::Invalid, Operator::Lt),
            _ => Operator::Invalid,
        };
        Requirement { key: r.key.clone(), operator }
    }

    /// Whether a value (`None`: the label is absent) satisfies the requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match &self.operator {
            Operator::In(vs) => value.is_some_and(|v| vs.iter().any(|x| x == v)),
            Operator::NotIn(vs) => !value.is_some_and(|v| vs.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Operator::Lt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            Operator::Invalid => false,
        }
    }
}

/// A node selector term: all of its label expressions and field expressions must match. A term
/// with neither matches no node (as in Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelectorTerm {
    pub expressions: Vec<Requirement>,
    /// `matchFields`: only `metadata.name` is supported (as in Kubernetes); any other key fails.
    pub fields: Vec<Requirement>,
}

impl NodeSelectorTerm {
    pub fn new(t: &core::NodeSelectorTerm) -> NodeSelectorTerm {
        NodeSelectorTerm {
            expressions: t.match_expressions.iter().flatten().map(Requirement::new).collect(),
            fields: t.match_fields.iter().flatten().map(Requirement::new).collect(),
        }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions.iter().all(|r| r.matches_value(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| {
                r.key == "metadata.name"
                    && matches!(r.operator, Operator::In(_) | Operator::NotIn(_))
                    && r.matches_value(Some(node_name))
            })
    }
}

/// `requiredDuringSchedulingIgnoredDuringExecution`: the terms are ORed; no terms matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequiredNodeSelector {
    pub terms: Vec<NodeSelectorTerm>,
}

impl RequiredNodeSelector {
    pub fn new(s: &core::NodeSelector) -> RequiredNodeSelector {
        RequiredNodeSelector { terms: s.node_selector_terms.iter().map(NodeSelectorTerm::new).collect() }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

/// Filter: `spec.nodeSelector` and required node affinity (unresolvable). Score: sum of the
/// weights of the matching preferred terms, scaled so the best node gets 100.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let selector_ok = pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
        let affinity_ok = pod.required_affinity.as_ref().is_none_or(|r| r.matches(&node.name, &node.labels));
        if selector_ok && affinity_ok {
            Ok(())
        } else {
            Err(Rejection::unresolvable(FilterPlugin::name(self), "node(s) didn't match Pod's node affinity/selector"))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_affinity
            .iter()
            .filter(|(w, t)| *w > 0 && t.matches(&node.name, &node.labels))
            .map(|(w, _)| *w)
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement::new(&core::NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        })
    }

    #[test]
    fn operators() {
        assert!(req("k", "In", &["a", "b"]).matches_value(Some("b")));
        assert!(!req("k", "In", &["a"]).matches_value(None));
        assert!(req("k", "NotIn", &["a"]).matches_value(None));
        assert!(!req("k", "NotIn", &["a"]).matches_value(Some("a")));
        assert!(req("k", "Exists", &[]).matches_value(Some("")));
        assert!(req("k", "DoesNotExist", &[]).matches_value(None));
        assert!(req("k", "Gt", &["4"]).matches_value(Some("5")));
        assert!(!req("k", "Gt", &["4"]).matches_value(Some("4")));
        assert!(!req("k", "Gt", &["4"]).matches_value(Some("five")));
        assert!(req("k", "Lt", &["4"]).matches_value(Some("-1")));
        assert!(!req("k", "Lt", &["4"]).matches_value(None));
        assert_eq!(req("k", "Gt", &["x"]).operator, Operator::Invalid);
        assert_eq!(req("k", "Gt", &["1", "2"]).operator, Operator::Invalid);
        assert!(!req("k", "Near", &["a"]).matches_value(Some("a")));
    }

    #[test]
    fn empty_term_matches_nothing_and_fields_match_name() {
        let labels = BTreeMap::new();
        assert!(!NodeSelectorTerm::default().matches("n1", &labels));
        let by_name = NodeSelectorTerm { expressions: vec![], fields: vec![req("metadata.name", "In", &["n1"])] };
        assert!(by_name.matches("n1", &labels));
        assert!(!by_name.matches("n2", &labels));
        let other_field = NodeSelectorTerm { expressions: vec![], fields: vec![req("spec.x", "In", &["n1"])] };
        assert!(!other_field.matches("n1", &labels));
        assert!(!RequiredNodeSelector::default().matches("n1", &labels));
    }
}
