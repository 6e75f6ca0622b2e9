//! Storage-key layout: `/registry/<resource>/[<namespace>/]<name>` and list prefixes; short stable hashes for generated names.

use crate::registry::ResourceInfo;

/// 8 hex digits of a 32-bit FNV-1a hash of `s`: a short suffix for generated names (an
/// EndpointSlice per port set, a veth per sandbox, iptables chains per agent) that stays the
/// same from one process to the next.
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Root of every object key.
pub const REGISTRY_ROOT: &str = "/registry/";

/// Key of one object. `namespace` is ignored for cluster-scoped resources; for namespaced ones
/// `None` means `default`, as Kubernetes defaults it.
pub fn object_key(resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    if resource.namespaced {
        let ns = namespace.unwrap_or(crate::defaults::DEFAULT_NAMESPACE);
        format!("{REGISTRY_ROOT}{}/{ns}/{name}", resource.plural)
    } else {
        format!("{REGISTRY_ROOT}{}/{name}", resource.plural)
    }
}

/// Prefix covering every object of the resource in every namespace (ends with `/`).
pub fn all_prefix(resource: &ResourceInfo) -> String {
    format!("{REGISTRY_ROOT}{}/", resource.plural)
}

/// Prefix covering objects in one namespace (ends with `/`), or `all_prefix` for cluster-scoped
/// resources or when `namespace` is `None`.
pub fn list_prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match (resource.namespaced, namespace) {
        (true, Some(ns)) => format!("{REGISTRY_ROOT}{}/{ns}/", resource.plural),
        _ => all_prefix(resource),
    }
}

/// Split a key back into `(plural, namespace, name)`.
pub fn parse_key(key: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = key.strip_prefix(REGISTRY_ROOT)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match *parts.as_slice() {
        [plural, name] if !plural.is_empty() && !name.is_empty() => Some((plural, None, name)),
        [plural, ns, name] if !plural.is_empty() && !ns.is_empty() && !name.is_empty() => {
            Some((plural, Some(ns), name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{DEPLOYMENTS, NODES, PODS};

    /// FNV-1a's published values: names made from it must not change between releases.
    #[test]
    fn short_hash_is_fnv1a() {
        assert_eq!(short_hash(""), "811c9dc5");
        assert_eq!(short_hash("a"), "e40c292c");
        assert_eq!(short_hash("foobar"), "bf9cf968");
    }

    #[test]
    fn namespaced_and_cluster_keys() {
        assert_eq!(object_key(&PODS, Some("default"), "web"), "/registry/pods/default/web");
        assert_eq!(object_key(&DEPLOYMENTS, Some("prod"), "api"), "/registry/deployments/prod/api");
        assert_eq!(object_key(&NODES, Some("ignored"), "n1"), "/registry/nodes/n1");
        assert_eq!(object_key(&NODES, None, "n1"), "/registry/nodes/n1");
        assert_eq!(object_key(&PODS, None, "web"), "/registry/pods/default/web");
    }

    #[test]
    fn prefixes() {
        assert_eq!(list_prefix(&PODS, Some("default")), "/registry/pods/default/");
        assert_eq!(list_prefix(&PODS, None), "/registry/pods/");
        assert_eq!(list_prefix(&NODES, Some("x")), "/registry/nodes/");
        assert_eq!(all_prefix(&PODS), "/registry/pods/");
        let key = object_key(&PODS, Some("default"), "web");
        assert!(key.starts_with(&list_prefix(&PODS, Some("default"))));
        assert!(!key.starts_with(&list_prefix(&PODS, Some("def"))), "namespace prefix must not match longer names");
    }

    #[test]
    fn parse_round_trip() {
        assert_eq!(parse_key("/registry/pods/default/web"), Some(("pods", Some("default"), "web")));
        assert_eq!(parse_key("/registry/nodes/n1"), Some(("nodes", None, "n1")));
        assert_eq!(parse_key("/registry/pods/default/"), None);
        assert_eq!(parse_key("/other/pods/a"), None);
        assert_eq!(parse_key("/registry/a/b/c/d"), None);
    }
}
