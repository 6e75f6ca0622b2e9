//! Taints and tolerations: `NoSchedule`/`NoExecute` taints must be tolerated, `PreferNoSchedule` ones lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{normalize_to_max, FilterPlugin, Rejection, ScorePlugin};
use crate::snapshot::{NodeInfo, PodInfo};

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

/// Whether one toleration tolerates a taint given by key, value and effect (Kubernetes'
/// rules: an empty effect matches every effect, an empty key with `Exists` matches every key,
/// `Exists` ignores the value, `Equal` (the default) compares it).
pub fn toleration_matches(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != key) {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => t.value.as_deref().unwrap_or("") == value,
        Some(_) => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| toleration_matches(t, key, value, effect))
}

fn tolerates_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerates(tolerations, &taint.key, taint.value.as_deref().unwrap_or(""), &taint.effect)
}

/// Filter: every `NoSchedule`/`NoExecute` taint of the node must be tolerated (unresolvable).
/// Score: fewer untolerated `PreferNoSchedule` taints is better.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let untolerated = node
            .taints
            .iter()
            .find(|t| (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE) && !tolerates_taint(&pod.tolerations, t));
        match untolerated {
            None => Ok(()),
            Some(t) => Err(Rejection::unresolvable(
                FilterPlugin::name(self),
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")),
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.taints.iter().filter(|t| t.effect == PREFER_NO_SCHEDULE && !tolerates_taint(&pod.tolerations, t)).count()
            as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn matching_rules() {
        assert!(toleration_matches(&tol(Some("k"), None, Some("v"), None), "k", "v", NO_SCHEDULE));
        assert!(!toleration_matches(&tol(Some("k"), None, Some("w"), None), "k", "v", NO_SCHEDULE));
        assert!(toleration_matches(&tol(Some("k"), Some("Exists"), None, None), "k", "v", NO_EXECUTE));
        assert!(!toleration_matches(&tol(Some("k"), Some("Exists"), None, Some(NO_EXECUTE)), "k", "v", NO_SCHEDULE));
        assert!(toleration_matches(&tol(None, Some("Exists"), None, None), "anything", "x", NO_EXECUTE));
        assert!(!toleration_matches(&tol(Some("j"), Some("Exists"), None, None), "k", "", NO_SCHEDULE));
        assert!(toleration_matches(&tol(Some("k"), Some("Equal"), None, None), "k", "", NO_SCHEDULE));
        assert!(!toleration_matches(&tol(Some("k"), Some("Bogus"), None, None), "k", "", NO_SCHEDULE));
    }
}
