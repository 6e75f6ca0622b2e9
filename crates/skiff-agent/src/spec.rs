//! Translation of a Kubernetes pod spec into runtime sandbox and container specs (env, `$(VAR)` expansion, volumes, limits).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, ResourceFieldSelector, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

use crate::runtime::podnet::DnsSettings;
use crate::runtime::{ContainerSpec, Mount, MountSource, PodRef, PortMapping, Profile, SandboxSpec, Security};

/// Default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The pod's identity on this node; a pod without a uid is identified by namespace/name.
pub fn pod_ref(pod: &Pod, node_name: &str) -> PodRef {
    let namespace = pod.metadata.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| format!("{namespace}.{name}"));
    PodRef { uid, namespace, name, node_name: node_name.to_string() }
}

pub fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default()
}

/// The pod's init containers, run one after the other, each to success, before its containers.
pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or_default()
}

/// The pod's init containers, then its containers.
pub fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    init_containers(pod).iter().chain(containers(pod))
}

/// An init container's restart policy: `Never` with the pod's, else `OnFailure` (one that
/// succeeded never runs again).
pub fn init_restart_policy(pod: &Pod) -> &'static str {
    if restart_policy(pod) == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

/// `Always` (default), `OnFailure` or `Never`.
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// The grace period for stopping the pod's containers: `metadata.deletionGracePeriodSeconds`
/// when deleting, else `spec.terminationGracePeriodSeconds`, else 30 s.
pub fn grace_seconds(pod: &Pod) -> u64 {
    let g = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    u64::try_from(g).unwrap_or(0)
}

pub fn sandbox_spec(pod: &Pod, pod_ref: &PodRef, attempt: u32) -> SandboxSpec {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut hostname = spec.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ref.name.clone());
    hostname.truncate(63);
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                container_port: u16::try_from(p.container_port).ok()?,
                host_port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            })
        })
        .collect();
    let empty_dirs = spec.volumes.iter().flatten().filter(|v| v.empty_dir.is_some()).map(|v| v.name.clone()).collect();
    let host_aliases =
        spec.host_aliases.iter().flatten().map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default())).collect();
    let dns_config = spec.dns_config.clone().unwrap_or_default();
    let dns = DnsSettings {
        policy: spec.dns_policy.clone().unwrap_or_else(|| "ClusterFirst".into()),
        nameservers: dns_config.nameservers.unwrap_or_default(),
        searches: dns_config.searches.unwrap_or_default(),
        options: dns_config.options.unwrap_or_default().into_iter().filter_map(|o| Some((o.name?, o.value))).collect(),
    };
    let psc = spec.security_context.unwrap_or_default();
    SandboxSpec {
        pod: pod_ref.clone(),
        attempt,
        hostname,
        ports,
        empty_dirs,
        host_aliases,
        dns,
        host_network: spec.host_network == Some(true),
        host_ipc: spec.host_ipc == Some(true),
        sysctls: psc.sysctls.into_iter().flatten().map(|s| (s.name, s.value)).collect(),
        fs_group: psc.fs_group.and_then(|g| u32::try_from(g).ok()),
    }
}

fn profile(ty: &str, localhost: Option<&String>) -> Profile {
    match ty {
        "Unconfined" => Profile::Unconfined,
        "Localhost" => Profile::Localhost(localhost.cloned().unwrap_or_default()),
        _ => Profile::RuntimeDefault,
    }
}

/// Container `c`'s effective security settings: its `securityContext` over the pod's, as
/// kubelet's `DetermineEffectiveSecurityContext` merges them. Settings no runtime of Skiff's
/// can honour are refused (kubelet's `CreateContainerConfigError`) rather than ignored.
pub fn security(pod: &Pod, c: &Container) -> Result<Security, String> {
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    if spec.and_then(|s| s.host_users) == Some(false) {
        return Err("user namespaces (spec.hostUsers: false) are not supported by Skiff".into());
    }
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let seccomp = sc.seccomp_profile.or(psc.seccomp_profile).map(|p| profile(&p.type_, p.localhost_profile.as_ref()));
    let apparmor =
        sc.app_armor_profile.or(psc.app_armor_profile).map(|p| profile(&p.type_, p.localhost_profile.as_ref()));
    let selinux = sc
        .se_linux_options
        .or(psc.se_linux_options)
        .map(|o| {
            [("user", o.user), ("role", o.role), ("type", o.type_), ("level", o.level)]
                .into_iter()
                .filter_map(|(k, v)| Some(format!("{k}:{}", v.filter(|v| !v.is_empty())?)))
                .collect()
        })
        .unwrap_or_default();
    let caps = sc.capabilities.unwrap_or_default();
    Ok(Security {
        run_as_user: id(sc.run_as_user.or(psc.run_as_user)),
        run_as_group: id(sc.run_as_group.or(psc.run_as_group)),
        run_as_non_root: sc.run_as_non_root.or(psc.run_as_non_root) == Some(true),
        supplemental_groups: psc
            .fs_group
            .into_iter()
            .chain(psc.supplemental_groups.into_iter().flatten())
            .filter_map(|g| id(Some(g)))
            .collect(),
        privileged: sc.privileged == Some(true),
        capabilities_add: caps.add.unwrap_or_default(),
        capabilities_drop: caps.drop.unwrap_or_default(),
        read_only_root_filesystem: sc.read_only_root_filesystem == Some(true),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        seccomp,
        apparmor,
        selinux,
        host_pid: spec.and_then(|s| s.host_pid) == Some(true),
        share_process_namespace: spec.and_then(|s| s.share_process_namespace) == Some(true),
        host_ipc: spec.and_then(|s| s.host_ipc) == Some(true),
    })
}

/// Values of the downward-API `fieldRef`s this agent supports.
pub struct FieldValues<'a> {
    pub pod: &'a Pod,
    pub pod_ref: &'a PodRef,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// The node's allocatable cpu and memory: a container's `limits.cpu` and
    /// `limits.memory` for `resourceFieldRef`s when it sets none, as in kubelet.
    pub allocatable_cpu: &'a str,
    pub allocatable_memory: &'a str,
}

impl FieldValues<'_> {
    fn field(&self, path: &str) -> Option<String> {
        Some(match path {
            "metadata.name" => self.pod_ref.name.clone(),
            "metadata.namespace" => self.pod_ref.namespace.clone(),
            "metadata.uid" => self.pod_ref.uid.clone(),
            "spec.nodeName" => self.pod_ref.node_name.clone(),
            "spec.serviceAccountName" => self.pod.spec.as_ref()?.service_account_name.clone()?,
            // One address family, so the lists hold the one address.
            "status.podIP" | "status.podIPs" => self.pod_ip.to_string(),
            "status.hostIP" | "status.hostIPs" => self.host_ip.to_string(),
            _ => {
                let (map, key) = path.strip_suffix("']")?.split_once("['")?;
                let meta = &self.pod.metadata;
                match map {
                    "metadata.labels" => meta.labels.as_ref()?.get(key)?.clone(),
                    "metadata.annotations" => meta.annotations.as_ref()?.get(key)?.clone(),
                    _ => return None,
                }
            }
        })
    }

    /// A `resourceFieldRef`'s value for container `c` as kubelet computes it: the quantity
    /// divided by the divisor (default 1), rounded up; a missing cpu or memory limit is the
    /// node's allocatable, a missing request the limit the user set, else 0.
    fn resource(&self, c: &Container, r: &ResourceFieldSelector) -> Result<String, String> {
        let c = match r.container_name.as_deref().filter(|n| !n.is_empty() && *n != c.name) {
            None => c,
            Some(name) => self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|o| o.name == name)
                .ok_or_else(|| format!("resourceFieldRef: container {name:?} not found in the pod"))?,
        };
        let parse = |what: &str, q: &str| {
            Quantity::parse(q).map_err(|e| format!("resourceFieldRef {}: {what} {q:?}: {e}", r.resource))
        };
        let res = c.resources.as_ref();
        // A zero limit is no limit (kubelet's `MergeContainerResourceLimits`).
        let limits = res.and_then(|r| r.limits.as_ref());
        let limit = |name: &str| quantity(limits, name).filter(|q| Quantity::parse(q).is_ok_and(|q| q.nanos() != 0));
        let requests = res.and_then(|r| r.requests.as_ref());
        let (kind, name) =
            r.resource.split_once('.').ok_or_else(|| format!("resourceFieldRef {:?} is not supported", r.resource))?;
        let allocatable = match name {
            "cpu" => Some(self.allocatable_cpu),
            "memory" => Some(self.allocatable_memory),
            _ => None,
        };
        let value = match kind {
            "limits" => limit(name).or(allocatable),
            "requests" => quantity(requests, name).or_else(|| limit(name)),
            _ => return Err(format!("resourceFieldRef {:?} is not supported", r.resource)),
        };
        let value = match value {
            Some(v) => parse("quantity", v)?,
            None if kind == "limits" && name == "ephemeral-storage" => {
                return Err(format!(
                    "resourceFieldRef {:?}: container {:?} sets no limit and Skiff nodes report no ephemeral-storage",
                    r.resource, c.name
                ))
            }
            None => Quantity::from_units(0),
        };
        let divisor = match r.divisor.as_ref().map(|d| parse("divisor", &d.0)).transpose()? {
            Some(d) if d.nanos() > 0 => d,
            _ => Quantity::from_units(1),
        };
        // cpu in milli-units (so a divisor of 1m counts millicores), the others in units; both
        // round up, so a positive divisor is at least 1.
        let (v, d) = if name == "cpu" { (value.millis(), divisor.millis()) } else { (value.units(), divisor.units()) };
        Ok(((v + d - 1).div_euclid(d)).to_string())
    }
}

/// The text of resource `name` in a container's `limits` or `requests`.
fn quantity<'m>(map: Option<&'m BTreeMap<String, K8sQuantity>>, name: &str) -> Option<&'m str> {
    map?.get(name).map(|q| q.0.as_str())
}

/// Kubernetes `$(VAR)` expansion: known variables are substituted, `$$` escapes `$`, and
/// unknown references are left as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of `e` in container `c`, `None` when it has none; an error when it must come from
/// an object Skiff does not serve (a ConfigMap or Secret not marked optional) or names a
/// resource that has no value here.
fn env_value(
    c: &Container,
    e: &EnvVar,
    vars: &HashMap<String, String>,
    fields: &FieldValues<'_>,
) -> Result<Option<String>, String> {
    if let Some(v) = &e.value {
        return Ok(Some(expand(v, vars)));
    }
    let Some(from) = e.value_from.as_ref() else { return Ok(None) };
    if let Some(f) = &from.field_ref {
        return Ok(fields.field(&f.field_path));
    }
    if let Some(r) = &from.resource_field_ref {
        return fields.resource(c, r).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        unserved("ConfigMap", &r.name, r.optional)?;
    }
    if let Some(r) = &from.secret_key_ref {
        unserved("Secret", &r.name, r.optional)?;
    }
    Ok(None)
}

/// Kubelet's error for a ConfigMap or Secret that is not there, which on Skiff none is: an
/// optional one is simply left out.
fn unserved(kind: &str, name: &str, optional: Option<bool>) -> Result<(), String> {
    if optional == Some(true) {
        return Ok(());
    }
    Err(format!("{} {name:?} not found (Skiff serves no {kind}s)", kind.to_ascii_lowercase()))
}

/// The kind of a volume Skiff cannot mount (`configMap`, `persistentVolumeClaim`, ...), by
/// the first source field it sets.
fn volume_kind(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_object().and_then(|m| m.keys().find(|k| *k != "name").cloned()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// A stable fingerprint of the container spec fields that matter to the runtime.
fn spec_hash(c: &Container) -> String {
    let json = serde_json::to_string(&(
        &c.image,
        &c.command,
        &c.args,
        &c.env,
        &c.working_dir,
        &c.volume_mounts,
        &c.resources,
        &c.ports,
    ))
    .unwrap_or_default();
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The runtime spec of container `c` (instance `attempt`), or why it cannot be honoured on
/// this node (kubelet's `CreateContainerConfigError`): a mount of a volume the pod does not
/// declare, a volume of a kind other than `emptyDir` and `hostPath`, or a value from a
/// ConfigMap or Secret. The container is not started without what it asked for.
pub fn container_spec(
    pod: &Pod,
    c: &Container,
    pod_ref: &PodRef,
    attempt: u32,
    fields: &FieldValues<'_>,
) -> Result<ContainerSpec, String> {
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            unserved("ConfigMap", &r.name, r.optional)?;
        }
        if let Some(r) = &from.secret_ref {
            unserved("Secret", &r.name, r.optional)?;
        }
    }
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c.env.iter().flatten() {
        if let Some(v) = env_value(c, e, &vars, fields)? {
            vars.insert(e.name.clone(), v.clone());
            env.retain(|(k, _)| k != &e.name);
            env.push((e.name.clone(), v));
        }
    }
    let command = c.command.iter().flatten().map(|a| expand(a, &vars)).collect();
    let args = c.args.iter().flatten().map(|a| expand(a, &vars)).collect();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = volumes.and_then(|vs| vs.iter().find(|v| v.name == m.name)) else {
            return Err(format!("cannot find volume {:?} to mount into container {:?}", m.name, c.name));
        };
        let source = if v.empty_dir.is_some() {
            MountSource::EmptyDir(v.name.clone())
        } else if let Some(hp) = &v.host_path {
            MountSource::HostPath(PathBuf::from(&hp.path))
        } else {
            return Err(format!(
                "volume {:?}: {} volumes are not supported by Skiff (emptyDir and hostPath are)",
                v.name,
                volume_kind(v)
            ));
        };
        let source = match (source, m.sub_path.as_deref().filter(|s| !s.is_empty())) {
            (MountSource::HostPath(p), Some(sub)) => MountSource::HostPath(p.join(sub)),
            (s, _) => s,
        };
        mounts.push(Mount { source, container_path: m.mount_path.clone(), read_only: m.read_only.unwrap_or(false) });
    }
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limit = |k: &str| limits.and_then(|l| l.get(k)).and_then(|q| Quantity::parse(&q.0).ok());
    let nano_cpus = limit("cpu").map(|q| q.nanos()).and_then(|n| i64::try_from(n).ok()).filter(|n| *n > 0);
    let memory_bytes = limit("memory").map(|q| q.units()).and_then(|n| i64::try_from(n).ok()).filter(|n| *n > 0);
    let security = security(pod, c)?;
    if c.restart_policy.as_deref() == Some("Always") {
        return Err(format!(
            "init container {:?}: sidecar containers (restartPolicy: Always) are not supported by Skiff",
            c.name
        ));
    }
    Ok(ContainerSpec {
        pod: pod_ref.clone(),
        name: c.name.clone(),
        attempt,
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
        nano_cpus,
        memory_bytes,
        spec_hash: spec_hash(c),
        security,
    })
}

/// The spec hash of container `c`, to compare with a running instance's label.
pub fn container_spec_hash(c: &Container) -> String {
    spec_hash(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements, Volume, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    /// The downward API's values on a test node with 4 cpus and 8 GiB.
    fn test_fields<'a>(pod: &'a Pod, r: &'a PodRef) -> FieldValues<'a> {
        FieldValues {
            pod,
            pod_ref: r,
            pod_ip: "10.0.0.1",
            host_ip: "192.168.0.1",
            allocatable_cpu: "4",
            allocatable_memory: "8Gi",
        }
    }

    #[test]
    fn expansion() {
        let vars = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("$(A", &vars), "$(A");
    }

    #[test]
    fn container_translation() {
        let c = Container {
            name: "app".into(),
            image: Some("img".into()),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(GREETING) $(POD)".into()]),
            env: Some(vec![
                EnvVar { name: "NAME".into(), value: Some("w".into()), ..Default::default() },
                EnvVar { name: "GREETING".into(), value: Some("hello $(NAME)".into()), ..Default::default() },
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            resources: Some(ResourceRequirements {
                limits: Some([("cpu".to_string(), Q("500m".into())), ("memory".to_string(), Q("64Mi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![c.clone()],
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    empty_dir: Some(Default::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = pod_ref(&pod, "n1");
        assert_eq!(r.namespace, "default");
        let fields = test_fields(&pod, &r);
        let s = container_spec(&pod, &c, &r, 0, &fields).unwrap();
        assert_eq!(s.args, vec!["echo hello w p".to_string()]);
        assert_eq!(s.env.iter().find(|(k, _)| k == "POD").unwrap().1, "p");
        assert_eq!(s.nano_cpus, Some(500_000_000));
        assert_eq!(s.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(
            s.mounts,
            vec![Mount {
                source: MountSource::EmptyDir("data".into()),
                container_path: "/data".into(),
                read_only: true
            }]
        );
        assert_eq!(sandbox_spec(&pod, &r, 0).empty_dirs, vec!["data".to_string()]);
        assert_eq!(s.spec_hash, container_spec_hash(&c));
    }

    #[test]
    fn what_cannot_be_honoured_is_a_config_error() {
        let pod_with = |volumes: Vec<Volume>, c: &Container| Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec { containers: vec![c.clone()], volumes: Some(volumes), ..Default::default() }),
            ..Default::default()
        };
        let mount = |name: &str| VolumeMount { name: name.into(), mount_path: "/x".into(), ..Default::default() };
        let c = Container { name: "app".into(), volume_mounts: Some(vec![mount("cfg")]), ..Default::default() };
        let spec_of = |pod: &Pod, c: &Container| {
            let r = pod_ref(pod, "n1");
            let fields = test_fields(pod, &r);
            container_spec(pod, c, &r, 0, &fields)
        };

        let missing = pod_with(vec![], &c);
        assert_eq!(spec_of(&missing, &c).unwrap_err(), r#"cannot find volume "cfg" to mount into container "app""#);
        let config_map = Volume {
            name: "cfg".into(),
            config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            spec_of(&pod_with(vec![config_map], &c), &c).unwrap_err(),
            r#"volume "cfg": configMap volumes are not supported by Skiff (emptyDir and hostPath are)"#
        );

        let from_secret = |optional: Option<bool>| Container {
            name: "app".into(),
            env: Some(vec![EnvVar {
                name: "PASSWORD".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                        name: "db".into(),
                        key: "password".into(),
                        optional,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let c = from_secret(None);
        assert_eq!(
            spec_of(&pod_with(vec![], &c), &c).unwrap_err(),
            r#"secret "db" not found (Skiff serves no Secrets)"#
        );
        // Optional: the variable is left unset, as kubelet does for a missing optional one.
        let c = from_secret(Some(true));
        assert!(spec_of(&pod_with(vec![], &c), &c).unwrap().env.is_empty());

        // `envFrom` a whole ConfigMap: the same, unless optional.
        let env_from = |optional: Option<bool>| Container {
            name: "app".into(),
            env_from: Some(vec![k8s_openapi::api::core::v1::EnvFromSource {
                config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource { name: "app".into(), optional }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let c = env_from(None);
        assert_eq!(
            spec_of(&pod_with(vec![], &c), &c).unwrap_err(),
            r#"configmap "app" not found (Skiff serves no ConfigMaps)"#
        );
        let c = env_from(Some(true));
        assert!(spec_of(&pod_with(vec![], &c), &c).is_ok());
    }

    #[test]
    fn downward_api_env() {
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        };
        let resource = |res: &str, divisor: Option<&str>, container: Option<&str>| EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                resource: res.into(),
                divisor: divisor.map(|d| Q(d.into())),
                container_name: container.map(Into::into),
            }),
            ..Default::default()
        };
        let vars = [
            ("ANNOTATION", field("metadata.annotations['team']")),
            ("IPS", field("status.podIPs")),
            ("HOST_IPS", field("status.hostIPs")),
            ("CPU_LIMIT", resource("limits.cpu", None, None)),
            ("CPU_LIMIT_M", resource("limits.cpu", Some("1m"), None)),
            ("MEM_LIMIT_MI", resource("limits.memory", Some("1Mi"), None)),
            ("CPU_REQUEST_M", resource("requests.cpu", Some("1m"), None)),
            ("MEM_REQUEST", resource("requests.memory", None, None)),
            ("SIDE_CPU", resource("limits.cpu", None, Some("side"))),
            ("SIDE_MEM_MI", resource("limits.memory", Some("1Mi"), Some("side"))),
            ("SIDE_MEM_REQUEST", resource("requests.memory", None, Some("side"))),
        ];
        let c = Container {
            name: "app".into(),
            env: Some(
                vars.iter()
                    .map(|(n, v)| EnvVar { name: n.to_string(), value_from: Some(v.clone()), ..Default::default() })
                    .collect(),
            ),
            resources: Some(ResourceRequirements {
                // 1.5 cpus: a divisor of 1 rounds up, as kubelet does.
                limits: Some([("cpu".to_string(), Q("1500m".into())), ("memory".to_string(), Q("64Mi".into()))].into()),
                requests: Some([("cpu".to_string(), Q("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let side = Container { name: "side".into(), ..Default::default() };
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                annotations: Some([("team".to_string(), "storage".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec { containers: vec![c.clone(), side], ..Default::default() }),
            ..Default::default()
        };
        let r = pod_ref(&pod, "n1");
        let fields = test_fields(&pod, &r);
        let env: HashMap<String, String> = container_spec(&pod, &c, &r, 0, &fields).unwrap().env.into_iter().collect();
        let expect = [
            ("ANNOTATION", "storage"),
            ("IPS", "10.0.0.1"),
            ("HOST_IPS", "192.168.0.1"),
            ("CPU_LIMIT", "2"),
            ("CPU_LIMIT_M", "1500"),
            ("MEM_LIMIT_MI", "64"),
            ("CPU_REQUEST_M", "250"),
            // No memory request: the limit, as API defaulting sets it.
            ("MEM_REQUEST", "67108864"),
            // The sidecar sets no limits: the node's allocatable; no request: 0.
            ("SIDE_CPU", "4"),
            ("SIDE_MEM_MI", "8192"),
            ("SIDE_MEM_REQUEST", "0"),
        ];
        for (name, value) in expect {
            assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
        }

        // A container that is not in the pod, and an ephemeral-storage limit nobody set.
        for (source, msg) in [
            (
                resource("limits.cpu", None, Some("ghost")),
                r#"resourceFieldRef: container "ghost" not found in the pod"#,
            ),
            (
                resource("limits.ephemeral-storage", None, None),
                r#"resourceFieldRef "limits.ephemeral-storage": container "app" sets no limit and Skiff nodes report no ephemeral-storage"#,
            ),
        ] {
            let c = Container {
                name: "app".into(),
                env: Some(vec![EnvVar { name: "X".into(), value_from: Some(source), ..Default::default() }]),
                ..Default::default()
            };
            assert_eq!(container_spec(&pod, &c, &r, 0, &fields).unwrap_err(), msg);
        }
    }

    #[test]
    fn effective_security_context() {
        use k8s_openapi::api::core::v1::{
            AppArmorProfile, Capabilities, PodSecurityContext, SELinuxOptions, SeccompProfile, SecurityContext, Sysctl,
        };
        let mut c = Container { name: "app".into(), image: Some("img".into()), ..Default::default() };
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c.clone()],
                host_pid: Some(true),
                host_network: Some(true),
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    run_as_non_root: Some(true),
                    fs_group: Some(2000),
                    supplemental_groups: Some(vec![4000, 5000]),
                    seccomp_profile: Some(SeccompProfile { type_: "Unconfined".into(), localhost_profile: None }),
                    se_linux_options: Some(SELinuxOptions {
                        level: Some("s0:c1".into()),
                        type_: Some("spc_t".into()),
                        ..Default::default()
                    }),
                    sysctls: Some(vec![Sysctl { name: "kernel.shm_rmid_forced".into(), value: "1".into() }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // The pod's settings alone.
        let sec = security(&pod, &c).unwrap();
        assert_eq!((sec.run_as_user, sec.run_as_group, sec.run_as_non_root), (Some(1000), Some(3000), true));
        assert_eq!(sec.supplemental_groups, [2000, 4000, 5000], "fsGroup first");
        assert_eq!(sec.seccomp, Some(Profile::Unconfined));
        assert_eq!(sec.selinux, ["type:spc_t", "level:s0:c1"]);
        assert!(sec.host_pid && !sec.host_ipc && !sec.privileged && sec.apparmor.is_none());
        // The container's override the pod's; the container-only ones are its own.
        c.security_context = Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: Some("a.json".into()),
            }),
            app_armor_profile: Some(AppArmorProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            capabilities: Some(Capabilities { add: Some(vec!["NET_ADMIN".into()]), drop: Some(vec!["ALL".into()]) }),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            ..Default::default()
        });
        let sec = security(&pod, &c).unwrap();
        assert_eq!((sec.run_as_user, sec.run_as_group, sec.run_as_non_root), (Some(0), Some(3000), false));
        assert_eq!(sec.seccomp, Some(Profile::Localhost("a.json".into())));
        assert_eq!(sec.apparmor, Some(Profile::RuntimeDefault));
        assert_eq!(
            (sec.capabilities_add.as_slice(), sec.capabilities_drop.as_slice()),
            (&["NET_ADMIN".to_string()][..], &["ALL".to_string()][..])
        );
        assert!(sec.read_only_root_filesystem && sec.no_new_privileges && !sec.privileged);
        // The sandbox: the node's network, the pod's sysctls, the fsGroup for its volumes.
        let r = PodRef { uid: "u".into(), namespace: "ns".into(), name: "p".into(), node_name: "n".into() };
        let sb = sandbox_spec(&pod, &r, 0);
        assert!(sb.host_network && !sb.host_ipc);
        assert_eq!(sb.sysctls, [("kernel.shm_rmid_forced".to_string(), "1".to_string())]);
        assert_eq!(sb.fs_group, Some(2000));
        // No runtime of Skiff's has user namespaces: refused, not ignored.
        pod.spec.as_mut().unwrap().host_users = Some(false);
        assert!(security(&pod, &c).unwrap_err().contains("spec.hostUsers: false"));
    }
}
