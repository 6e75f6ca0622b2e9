//! Table of the resources Skiff serves (group, version, kind, names, scope, verbs, subresources).

/// Verbs served for every resource in the table.
pub const STANDARD_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// Events are append-mostly but still fully served.
const EVENT_VERBS: &[&str] = STANDARD_VERBS;

/// Static description of one served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the legacy core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs and storage keys (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    /// Subresources served under `/<plural>/<name>/<sub>`.
    pub subresources: &'static [&'static str],
}

impl ResourceInfo {
    /// `apiVersion` as written in objects: `v1` for core, else `<group>/<version>`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for core resources, `plural.group` otherwise, as Kubernetes prints in messages
    /// (`pods`, `deployments.apps`).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// URL path prefix of the group/version: `/api/v1` or `/apis/<group>/<version>`.
    pub fn api_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    pub fn supports_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    verbs: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo { group, version: "v1", kind, plural, singular, short_names, namespaced, verbs, subresources }
}

pub static NAMESPACES: ResourceInfo =
    res("", "Namespace", "namespaces", "namespace", &["ns"], false, STANDARD_VERBS, &["status"]);
pub static PODS: ResourceInfo = res("", "Pod", "pods", "pod", &["po"], true, STANDARD_VERBS, &["status"]);
pub static NODES: ResourceInfo = res("", "Node", "nodes", "node", &["no"], false, STANDARD_VERBS, &["status"]);
pub static SERVICES: ResourceInfo =
    res("", "Service", "services", "service", &["svc"], true, STANDARD_VERBS, &["status"]);
pub static ENDPOINTS: ResourceInfo = res("", "Endpoints", "endpoints", "endpoints", &["ep"], true, STANDARD_VERBS, &[]);
pub static EVENTS: ResourceInfo = res("", "Event", "events", "event", &["ev"], true, EVENT_VERBS, &[]);
pub static DEPLOYMENTS: ResourceInfo =
    res("apps", "Deployment", "deployments", "deployment", &["deploy"], true, STANDARD_VERBS, &["status", "scale"]);
pub static REPLICASETS: ResourceInfo =
    res("apps", "ReplicaSet", "replicasets", "replicaset", &["rs"], true, STANDARD_VERBS, &["status", "scale"]);
pub static LEASES: ResourceInfo =
    res("coordination.k8s.io", "Lease", "leases", "lease", &[], true, STANDARD_VERBS, &[]);
/// What kubectl (1.28 and later) reads a Service's endpoints from, e.g. for `describe svc`.
pub static ENDPOINTSLICES: ResourceInfo =
    res("discovery.k8s.io", "EndpointSlice", "endpointslices", "endpointslice", &[], true, STANDARD_VERBS, &[]);

/// Every served resource, core group first.
pub static RESOURCES: [&ResourceInfo; 10] =
    [&NAMESPACES, &PODS, &NODES, &SERVICES, &ENDPOINTS, &EVENTS, &DEPLOYMENTS, &REPLICASETS, &LEASES, &ENDPOINTSLICES];

/// Find a resource by plural, singular, kind (case-insensitive) or short name.
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    RESOURCES.iter().copied().find(|r| {
        r.plural == lower
            || r.singular == lower
            || r.kind.eq_ignore_ascii_case(name)
            || r.short_names.contains(&&*lower)
    })
}

/// Find a resource by its exact plural within a group (`""` for core), as routed from a URL.
pub fn lookup_plural(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().copied().find(|r| r.group == group && r.plural == plural)
}

/// Find a resource from an object's `apiVersion` and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().copied().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The served resource for a k8s-openapi type, if Skiff serves it.
pub fn resource_of<K: k8s_openapi::Resource>() -> Option<&'static ResourceInfo> {
    lookup_kind(K::API_VERSION, K::KIND)
}

/// All resources of one group/version, for discovery documents.
pub fn resources_in(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    RESOURCES.iter().copied().filter(|r| r.group == group && r.version == version).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_plural_kind_singular_and_short_name() {
        assert_eq!(lookup("pods").unwrap().kind, "Pod");
        assert_eq!(lookup("Pod").unwrap().plural, "pods");
        assert_eq!(lookup("pod").unwrap().plural, "pods");
        assert_eq!(lookup("po").unwrap().plural, "pods");
        assert_eq!(lookup("deploy").unwrap().kind, "Deployment");
        assert_eq!(lookup("rs").unwrap().kind, "ReplicaSet");
        assert_eq!(lookup("svc").unwrap().kind, "Service");
        assert_eq!(lookup("ep").unwrap().kind, "Endpoints");
        assert_eq!(lookup("ev").unwrap().kind, "Event");
        assert_eq!(lookup("no").unwrap().kind, "Node");
        assert_eq!(lookup("ns").unwrap().kind, "Namespace");
        assert_eq!(lookup("leases").unwrap().group, "coordination.k8s.io");
        assert!(lookup("configmaps").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn scope_and_subresources() {
        assert!(!NAMESPACES.namespaced);
        assert!(!NODES.namespaced);
        assert!(PODS.namespaced && LEASES.namespaced && EVENTS.namespaced);
        assert!(DEPLOYMENTS.has_subresource("scale") && REPLICASETS.has_subresource("scale"));
        assert!(!PODS.has_subresource("scale"));
        assert!(PODS.has_subresource("status"));
        assert!(PODS.supports_verb("watch") && !PODS.supports_verb("escalate"));
    }

    #[test]
    fn api_versions_and_prefixes() {
        assert_eq!(PODS.api_version(), "v1");
        assert_eq!(DEPLOYMENTS.api_version(), "apps/v1");
        assert_eq!(LEASES.api_version(), "coordination.k8s.io/v1");
        assert_eq!(PODS.api_prefix(), "/api/v1");
        assert_eq!(REPLICASETS.api_prefix(), "/apis/apps/v1");
        assert_eq!(PODS.qualified_plural(), "pods");
        assert_eq!(DEPLOYMENTS.qualified_plural(), "deployments.apps");
    }

    #[test]
    fn lookup_by_route_and_kind() {
        assert_eq!(lookup_plural("apps", "deployments").unwrap().kind, "Deployment");
        assert!(lookup_plural("", "deployments").is_none());
        assert_eq!(lookup_kind("apps/v1", "ReplicaSet").unwrap().plural, "replicasets");
        assert!(lookup_kind("v1", "ReplicaSet").is_none());
        assert_eq!(resource_of::<k8s_openapi::api::apps::v1::Deployment>(), Some(&DEPLOYMENTS));
        assert_eq!(resource_of::<k8s_openapi::api::core::v1::ConfigMap>(), None);
        let core: Vec<_> = resources_in("", "v1").iter().map(|r| r.plural).collect();
        assert_eq!(core, ["namespaces", "pods", "nodes", "services", "endpoints", "events"]);
    }

    #[test]
    fn table_agrees_with_k8s_openapi_types() {
        use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core};
        use k8s_openapi::{NamespaceResourceScope, Resource};
        fn check<K: Resource>(info: &ResourceInfo)
        where
            K::Scope: 'static,
        {
            assert_eq!(info.kind, K::KIND);
            assert_eq!(info.group, K::GROUP);
            assert_eq!(info.version, K::VERSION);
            assert_eq!(info.api_version(), K::API_VERSION);
            assert_eq!(info.plural, K::URL_PATH_SEGMENT);
            let namespaced = std::any::TypeId::of::<K::Scope>() == std::any::TypeId::of::<NamespaceResourceScope>();
            assert_eq!(info.namespaced, namespaced, "{}", K::KIND);
        }
        check::<core::Namespace>(&NAMESPACES);
        check::<core::Pod>(&PODS);
        check::<core::Node>(&NODES);
        check::<core::Service>(&SERVICES);
        check::<core::Endpoints>(&ENDPOINTS);
        check::<core::Event>(&EVENTS);
        check::<apps::Deployment>(&DEPLOYMENTS);
        check::<apps::ReplicaSet>(&REPLICASETS);
        check::<coord::Lease>(&LEASES);
        check::<k8s_openapi::api::discovery::v1::EndpointSlice>(&ENDPOINTSLICES);
    }

    #[test]
    fn names_are_unique_across_table() {
        let mut seen = std::collections::HashSet::new();
        for r in RESOURCES {
            for n in std::iter::once(r.plural).chain(r.short_names.iter().copied()) {
                assert!(seen.insert(n), "duplicate name {n}");
            }
        }
    }
}
