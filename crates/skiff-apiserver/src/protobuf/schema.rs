//! The message schemas of the Kubernetes objects Skiff decodes from protobuf: for every message,
//! each field's number, JSON name, type and presence, as Kubernetes v1.32 defines them
//! (`k8s.io/api` core/v1, apps/v1, policy/v1 and apimachinery meta/v1 `generated.proto`, with
//! the Go types deciding presence and inlining).
//!
//! Covered: `Namespace`, `Service`, `Pod` (spec and status), `apps/v1 Deployment`,
//! `policy/v1 Eviction` and `DeleteOptions`. Inside a pod spec, the volume sources Skiff has no
//! use for (cloud disks, NFS, iSCSI, CSI, ephemeral claims, ...), ephemeral containers and a few
//! status details are left out on purpose: a body that uses them is refused with the message and
//! field number, never decoded with the field dropped.

use super::{Card, Field, Message, Ty};
use Card::{Inline, One, Opt, Rep};
use Ty::{Bool, FieldsV1, IntOrString, Msg, Quantity, QuantityMap, Str, StrMap, Time, I32, I64};

const fn f(num: u32, json: &'static str, ty: Ty, card: Card) -> Field {
    Field { num, json, ty, card }
}

pub(super) static OBJECT_META: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    fields: &[
        f(1, "name", Str, One),
        f(2, "generateName", Str, One),
        f(3, "namespace", Str, One),
        f(4, "selfLink", Str, One),
        f(5, "uid", Str, One),
        f(6, "resourceVersion", Str, One),
        f(7, "generation", I64, One),
        f(8, "creationTimestamp", Time, One),
        f(9, "deletionTimestamp", Time, Opt),
        f(10, "deletionGracePeriodSeconds", I64, Opt),
        f(11, "labels", StrMap, One),
        f(12, "annotations", StrMap, One),
        f(13, "ownerReferences", Msg(&OWNER_REFERENCE), Rep),
        f(14, "finalizers", Str, Rep),
        f(17, "managedFields", Msg(&MANAGED_FIELDS_ENTRY), Rep),
    ],
};

pub(super) static OWNER_REFERENCE: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference",
    fields: &[
        f(1, "kind", Str, One),
        f(3, "name", Str, One),
        f(4, "uid", Str, One),
        f(5, "apiVersion", Str, One),
        f(6, "controller", Bool, Opt),
        f(7, "blockOwnerDeletion", Bool, Opt),
    ],
};

pub(super) static MANAGED_FIELDS_ENTRY: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
    fields: &[
        f(1, "manager", Str, One),
        f(2, "operation", Str, One),
        f(3, "apiVersion", Str, One),
        f(4, "time", Time, Opt),
        f(6, "fieldsType", Str, One),
        f(7, "fieldsV1", FieldsV1, Opt),
        f(8, "subresource", Str, One),
    ],
};

pub(super) static LABEL_SELECTOR: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector",
    fields: &[f(1, "matchLabels", StrMap, One), f(2, "matchExpressions", Msg(&LABEL_SELECTOR_REQUIREMENT), Rep)],
};

pub(super) static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
    fields: &[f(1, "key", Str, One), f(2, "operator", Str, One), f(3, "values", Str, Rep)],
};

pub(super) static DELETE_OPTIONS: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    fields: &[
        f(1, "gracePeriodSeconds", I64, Opt),
        f(2, "preconditions", Msg(&PRECONDITIONS), Opt),
        f(3, "orphanDependents", Bool, Opt),
        f(4, "propagationPolicy", Str, Opt),
        f(5, "dryRun", Str, Rep),
        f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool, Opt),
    ],
};

pub(super) static PRECONDITIONS: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.Preconditions",
    fields: &[f(1, "uid", Str, Opt), f(2, "resourceVersion", Str, Opt)],
};

pub(super) static CONDITION: Message = Message {
    name: "k8s.io.apimachinery.pkg.apis.meta.v1.Condition",
    fields: &[
        f(1, "type", Str, One),
        f(2, "status", Str, One),
        f(3, "observedGeneration", I64, One),
        f(4, "lastTransitionTime", Time, One),
        f(5, "reason", Str, One),
        f(6, "message", Str, One),
    ],
};

pub(super) static NAMESPACE: Message = Message {
    name: "k8s.io.api.core.v1.Namespace",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META), One),
        f(2, "spec", Msg(&NAMESPACE_SPEC), One),
        f(3, "status", Msg(&NAMESPACE_STATUS), One),
    ],
};

pub(super) static NAMESPACE_SPEC: Message =
    Message { name: "k8s.io.api.core.v1.NamespaceSpec", fields: &[f(1, "finalizers", Str, Rep)] };

pub(super) static NAMESPACE_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.NamespaceStatus",
    fields: &[f(1, "phase", Str, One), f(2, "conditions", Msg(&NAMESPACE_CONDITION), Rep)],
};

pub(super) static NAMESPACE_CONDITION: Message = Message {
    name: "k8s.io.api.core.v1.NamespaceCondition",
    fields: &[
        f(1, "type", Str, One),
        f(2, "status", Str, One),
        f(4, "lastTransitionTime", Time, One),
        f(5, "reason", Str, One),
        f(6, "message", Str, One),
    ],
};

pub(super) static SERVICE: Message = Message {
    name: "k8s.io.api.core.v1.Service",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META), One),
        f(2, "spec", Msg(&SERVICE_SPEC), One),
        f(3, "status", Msg(&SERVICE_STATUS), One),
    ],
};

pub(super) static SERVICE_SPEC: Message = Message {
    name: "k8s.io.api.core.v1.ServiceSpec",
    fields: &[
        f(1, "ports", Msg(&SERVICE_PORT), Rep),
        f(2, "selector", StrMap, One),
        f(3, "clusterIP", Str, One),
        f(4, "type", Str, One),
        f(5, "externalIPs", Str, Rep),
        f(7, "sessionAffinity", Str, One),
        f(8, "loadBalancerIP", Str, One),
        f(9, "loadBalancerSourceRanges", Str, Rep),
        f(10, "externalName", Str, One),
        f(11, "externalTrafficPolicy", Str, One),
        f(12, "healthCheckNodePort", I32, One),
        f(13, "publishNotReadyAddresses", Bool, One),
        f(14, "sessionAffinityConfig", Msg(&SESSION_AFFINITY_CONFIG), Opt),
        f(17, "ipFamilyPolicy", Str, Opt),
        f(18, "clusterIPs", Str, Rep),
        f(19, "ipFamilies", Str, Rep),
        f(20, "allocateLoadBalancerNodePorts", Bool, Opt),
        f(21, "loadBalancerClass", Str, Opt),
        f(22, "internalTrafficPolicy", Str, Opt),
        f(23, "trafficDistribution", Str, Opt),
    ],
};

pub(super) static SERVICE_PORT: Message = Message {
    name: "k8s.io.api.core.v1.ServicePort",
    fields: &[
        f(1, "name", Str, One),
        f(2, "protocol", Str, One),
        f(3, "port", I32, One),
        f(4, "targetPort", IntOrString, One),
        f(5, "nodePort", I32, One),
        f(6, "appProtocol", Str, Opt),
    ],
};

pub(super) static SERVICE_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.ServiceStatus",
    fields: &[f(1, "loadBalancer", Msg(&LOAD_BALANCER_STATUS), One), f(2, "conditions", Msg(&CONDITION), Rep)],
};

pub(super) static LOAD_BALANCER_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.LoadBalancerStatus",
    fields: &[f(1, "ingress", Msg(&LOAD_BALANCER_INGRESS), Rep)],
};

pub(super) static LOAD_BALANCER_INGRESS: Message = Message {
    name: "k8s.io.api.core.v1.LoadBalancerIngress",
    fields: &[
        f(1, "ip", Str, One),
        f(2, "hostname", Str, One),
        f(3, "ipMode", Str, Opt),
        f(4, "ports", Msg(&PORT_STATUS), Rep),
    ],
};

pub(super) static PORT_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.PortStatus",
    fields: &[f(1, "port", I32, One), f(2, "protocol", Str, One), f(3, "error", Str, Opt)],
};

pub(super) static SESSION_AFFINITY_CONFIG: Message = Message {
    name: "k8s.io.api.core.v1.SessionAffinityConfig",
    fields: &[f(1, "clientIP", Msg(&CLIENT_IP_CONFIG), Opt)],
};

pub(super) static CLIENT_IP_CONFIG: Message =
    Message { name: "k8s.io.api.core.v1.ClientIPConfig", fields: &[f(1, "timeoutSeconds", I32, Opt)] };

pub(super) static DEPLOYMENT: Message = Message {
    name: "k8s.io.api.apps.v1.Deployment",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META), One),
        f(2, "spec", Msg(&DEPLOYMENT_SPEC), One),
        f(3, "status", Msg(&DEPLOYMENT_STATUS), One),
    ],
};

pub(super) static DEPLOYMENT_SPEC: Message = Message {
    name: "k8s.io.api.apps.v1.DeploymentSpec",
    fields: &[
        f(1, "replicas", I32, Opt),
        f(2, "selector", Msg(&LABEL_SELECTOR), Opt),
        f(3, "template", Msg(&POD_TEMPLATE_SPEC), One),
        f(4, "strategy", Msg(&DEPLOYMENT_STRATEGY), One),
        f(5, "minReadySeconds", I32, One),
        f(6, "revisionHistoryLimit", I32, Opt),
        f(7, "paused", Bool, One),
        f(9, "progressDeadlineSeconds", I32, Opt),
    ],
};

pub(super) static DEPLOYMENT_STRATEGY: Message = Message {
    name: "k8s.io.api.apps.v1.DeploymentStrategy",
    fields: &[f(1, "type", Str, One), f(2, "rollingUpdate", Msg(&ROLLING_UPDATE_DEPLOYMENT), Opt)],
};

pub(super) static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "k8s.io.api.apps.v1.RollingUpdateDeployment",
    fields: &[f(1, "maxUnavailable", IntOrString, Opt), f(2, "maxSurge", IntOrString, Opt)],
};

pub(super) static DEPLOYMENT_STATUS: Message = Message {
    name: "k8s.io.api.apps.v1.DeploymentStatus",
    fields: &[
        f(1, "observedGeneration", I64, One),
        f(2, "replicas", I32, One),
        f(3, "updatedReplicas", I32, One),
        f(4, "availableReplicas", I32, One),
        f(5, "unavailableReplicas", I32, One),
        f(6, "conditions", Msg(&DEPLOYMENT_CONDITION), Rep),
        f(7, "readyReplicas", I32, One),
        f(8, "collisionCount", I32, Opt),
    ],
};

pub(super) static DEPLOYMENT_CONDITION: Message = Message {
    name: "k8s.io.api.apps.v1.DeploymentCondition",
    fields: &[
        f(1, "type", Str, One),
        f(2, "status", Str, One),
        f(4, "reason", Str, One),
        f(5, "message", Str, One),
        f(6, "lastUpdateTime", Time, One),
        f(7, "lastTransitionTime", Time, One),
    ],
};

pub(super) static EVICTION: Message = Message {
    name: "k8s.io.api.policy.v1.Eviction",
    fields: &[f(1, "metadata", Msg(&OBJECT_META), One), f(2, "deleteOptions", Msg(&DELETE_OPTIONS), Opt)],
};

pub(super) static POD: Message = Message {
    name: "k8s.io.api.core.v1.Pod",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META), One),
        f(2, "spec", Msg(&POD_SPEC), One),
        f(3, "status", Msg(&POD_STATUS), One),
    ],
};

pub(super) static POD_TEMPLATE_SPEC: Message = Message {
    name: "k8s.io.api.core.v1.PodTemplateSpec",
    fields: &[f(1, "metadata", Msg(&OBJECT_META), One), f(2, "spec", Msg(&POD_SPEC), One)],
};

pub(super) static POD_SPEC: Message = Message {
    name: "k8s.io.api.core.v1.PodSpec",
    fields: &[
        f(1, "volumes", Msg(&VOLUME), Rep),
        f(2, "containers", Msg(&CONTAINER), Rep),
        f(3, "restartPolicy", Str, One),
        f(4, "terminationGracePeriodSeconds", I64, Opt),
        f(5, "activeDeadlineSeconds", I64, Opt),
        f(6, "dnsPolicy", Str, One),
        f(7, "nodeSelector", StrMap, One),
        f(8, "serviceAccountName", Str, One),
        f(9, "serviceAccount", Str, One),
        f(10, "nodeName", Str, One),
        f(11, "hostNetwork", Bool, One),
        f(12, "hostPID", Bool, One),
        f(13, "hostIPC", Bool, One),
        f(14, "securityContext", Msg(&POD_SECURITY_CONTEXT), Opt),
        f(15, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE), Rep),
        f(16, "hostname", Str, One),
        f(17, "subdomain", Str, One),
        f(18, "affinity", Msg(&AFFINITY), Opt),
        f(19, "schedulerName", Str, One),
        f(20, "initContainers", Msg(&CONTAINER), Rep),
        f(21, "automountServiceAccountToken", Bool, Opt),
        f(22, "tolerations", Msg(&TOLERATION), Rep),
        f(23, "hostAliases", Msg(&HOST_ALIAS), Rep),
        f(24, "priorityClassName", Str, One),
        f(25, "priority", I32, Opt),
        f(26, "dnsConfig", Msg(&POD_DNS_CONFIG), Opt),
        f(27, "shareProcessNamespace", Bool, Opt),
        f(28, "readinessGates", Msg(&POD_READINESS_GATE), Rep),
        f(29, "runtimeClassName", Str, Opt),
        f(30, "enableServiceLinks", Bool, Opt),
        f(31, "preemptionPolicy", Str, Opt),
        f(32, "overhead", QuantityMap, One),
        f(33, "topologySpreadConstraints", Msg(&TOPOLOGY_SPREAD_CONSTRAINT), Rep),
        f(35, "setHostnameAsFQDN", Bool, Opt),
        f(36, "os", Msg(&POD_OS), Opt),
        f(37, "hostUsers", Bool, Opt),
        f(38, "schedulingGates", Msg(&POD_SCHEDULING_GATE), Rep),
        f(39, "resourceClaims", Msg(&POD_RESOURCE_CLAIM), Rep),
        f(40, "resources", Msg(&RESOURCE_REQUIREMENTS), Opt),
    ],
};

pub(super) static CONTAINER: Message = Message {
    name: "k8s.io.api.core.v1.Container",
    fields: &[
        f(1, "name", Str, One),
        f(2, "image", Str, One),
        f(3, "command", Str, Rep),
        f(4, "args", Str, Rep),
        f(5, "workingDir", Str, One),
        f(6, "ports", Msg(&CONTAINER_PORT), Rep),
        f(7, "env", Msg(&ENV_VAR), Rep),
        f(8, "resources", Msg(&RESOURCE_REQUIREMENTS), One),
        f(9, "volumeMounts", Msg(&VOLUME_MOUNT), Rep),
        f(10, "livenessProbe", Msg(&PROBE), Opt),
        f(11, "readinessProbe", Msg(&PROBE), Opt),
        f(12, "lifecycle", Msg(&LIFECYCLE), Opt),
        f(13, "terminationMessagePath", Str, One),
        f(14, "imagePullPolicy", Str, One),
        f(15, "securityContext", Msg(&SECURITY_CONTEXT), Opt),
        f(16, "stdin", Bool, One),
        f(17, "stdinOnce", Bool, One),
        f(18, "tty", Bool, One),
        f(19, "envFrom", Msg(&ENV_FROM_SOURCE), Rep),
        f(20, "terminationMessagePolicy", Str, One),
        f(21, "volumeDevices", Msg(&VOLUME_DEVICE), Rep),
        f(22, "startupProbe", Msg(&PROBE), Opt),
        f(23, "resizePolicy", Msg(&CONTAINER_RESIZE_POLICY), Rep),
        f(24, "restartPolicy", Str, Opt),
    ],
};

pub(super) static CONTAINER_PORT: Message = Message {
    name: "k8s.io.api.core.v1.ContainerPort",
    fields: &[
        f(1, "name", Str, One),
        f(2, "hostPort", I32, One),
        f(3, "containerPort", I32, One),
        f(4, "protocol", Str, One),
        f(5, "hostIP", Str, One),
    ],
};

pub(super) static ENV_VAR: Message = Message {
    name: "k8s.io.api.core.v1.EnvVar",
    fields: &[f(1, "name", Str, One), f(2, "value", Str, One), f(3, "valueFrom", Msg(&ENV_VAR_SOURCE), Opt)],
};

pub(super) static ENV_VAR_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.EnvVarSource",
    fields: &[
        f(1, "fieldRef", Msg(&OBJECT_FIELD_SELECTOR), Opt),
        f(2, "resourceFieldRef", Msg(&RESOURCE_FIELD_SELECTOR), Opt),
        f(3, "configMapKeyRef", Msg(&CONFIG_MAP_KEY_SELECTOR), Opt),
        f(4, "secretKeyRef", Msg(&SECRET_KEY_SELECTOR), Opt),
    ],
};

pub(super) static OBJECT_FIELD_SELECTOR: Message = Message {
    name: "k8s.io.api.core.v1.ObjectFieldSelector",
    fields: &[f(1, "apiVersion", Str, One), f(2, "fieldPath", Str, One)],
};

pub(super) static RESOURCE_FIELD_SELECTOR: Message = Message {
    name: "k8s.io.api.core.v1.ResourceFieldSelector",
    fields: &[f(1, "containerName", Str, One), f(2, "resource", Str, One), f(3, "divisor", Quantity, One)],
};

pub(super) static CONFIG_MAP_KEY_SELECTOR: Message = Message {
    name: "k8s.io.api.core.v1.ConfigMapKeySelector",
    fields: &[
        f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline),
        f(2, "key", Str, One),
        f(3, "optional", Bool, Opt),
    ],
};

pub(super) static SECRET_KEY_SELECTOR: Message = Message {
    name: "k8s.io.api.core.v1.SecretKeySelector",
    fields: &[
        f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline),
        f(2, "key", Str, One),
        f(3, "optional", Bool, Opt),
    ],
};

pub(super) static ENV_FROM_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.EnvFromSource",
    fields: &[
        f(1, "prefix", Str, One),
        f(2, "configMapRef", Msg(&CONFIG_MAP_ENV_SOURCE), Opt),
        f(3, "secretRef", Msg(&SECRET_ENV_SOURCE), Opt),
    ],
};

pub(super) static CONFIG_MAP_ENV_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.ConfigMapEnvSource",
    fields: &[f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline), f(2, "optional", Bool, Opt)],
};

pub(super) static SECRET_ENV_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.SecretEnvSource",
    fields: &[f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline), f(2, "optional", Bool, Opt)],
};

pub(super) static RESOURCE_REQUIREMENTS: Message = Message {
    name: "k8s.io.api.core.v1.ResourceRequirements",
    fields: &[
        f(1, "limits", QuantityMap, One),
        f(2, "requests", QuantityMap, One),
        f(3, "claims", Msg(&RESOURCE_CLAIM), Rep),
    ],
};

pub(super) static RESOURCE_CLAIM: Message =
    Message { name: "k8s.io.api.core.v1.ResourceClaim", fields: &[f(1, "name", Str, One), f(2, "request", Str, One)] };

pub(super) static VOLUME_MOUNT: Message = Message {
    name: "k8s.io.api.core.v1.VolumeMount",
    fields: &[
        f(1, "name", Str, One),
        f(2, "readOnly", Bool, One),
        f(3, "mountPath", Str, One),
        f(4, "subPath", Str, One),
        f(5, "mountPropagation", Str, Opt),
        f(6, "subPathExpr", Str, One),
        f(7, "recursiveReadOnly", Str, Opt),
    ],
};

pub(super) static VOLUME_DEVICE: Message = Message {
    name: "k8s.io.api.core.v1.VolumeDevice",
    fields: &[f(1, "name", Str, One), f(2, "devicePath", Str, One)],
};

pub(super) static PROBE: Message = Message {
    name: "k8s.io.api.core.v1.Probe",
    fields: &[
        f(1, "handler", Msg(&PROBE_HANDLER), Inline),
        f(2, "initialDelaySeconds", I32, One),
        f(3, "timeoutSeconds", I32, One),
        f(4, "periodSeconds", I32, One),
        f(5, "successThreshold", I32, One),
        f(6, "failureThreshold", I32, One),
        f(7, "terminationGracePeriodSeconds", I64, Opt),
    ],
};

pub(super) static PROBE_HANDLER: Message = Message {
    name: "k8s.io.api.core.v1.ProbeHandler",
    fields: &[
        f(1, "exec", Msg(&EXEC_ACTION), Opt),
        f(2, "httpGet", Msg(&HTTP_GET_ACTION), Opt),
        f(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION), Opt),
        f(4, "grpc", Msg(&GRPC_ACTION), Opt),
    ],
};

pub(super) static EXEC_ACTION: Message =
    Message { name: "k8s.io.api.core.v1.ExecAction", fields: &[f(1, "command", Str, Rep)] };

pub(super) static HTTP_GET_ACTION: Message = Message {
    name: "k8s.io.api.core.v1.HTTPGetAction",
    fields: &[
        f(1, "path", Str, One),
        f(2, "port", IntOrString, One),
        f(3, "host", Str, One),
        f(4, "scheme", Str, One),
        f(5, "httpHeaders", Msg(&HTTP_HEADER), Rep),
    ],
};

pub(super) static HTTP_HEADER: Message =
    Message { name: "k8s.io.api.core.v1.HTTPHeader", fields: &[f(1, "name", Str, One), f(2, "value", Str, One)] };

pub(super) static TCP_SOCKET_ACTION: Message = Message {
    name: "k8s.io.api.core.v1.TCPSocketAction",
    fields: &[f(1, "port", IntOrString, One), f(2, "host", Str, One)],
};

pub(super) static GRPC_ACTION: Message =
    Message { name: "k8s.io.api.core.v1.GRPCAction", fields: &[f(1, "port", I32, One), f(2, "service", Str, Opt)] };

pub(super) static LIFECYCLE: Message = Message {
    name: "k8s.io.api.core.v1.Lifecycle",
    fields: &[f(1, "postStart", Msg(&LIFECYCLE_HANDLER), Opt), f(2, "preStop", Msg(&LIFECYCLE_HANDLER), Opt)],
};

pub(super) static LIFECYCLE_HANDLER: Message = Message {
    name: "k8s.io.api.core.v1.LifecycleHandler",
    fields: &[
        f(1, "exec", Msg(&EXEC_ACTION), Opt),
        f(2, "httpGet", Msg(&HTTP_GET_ACTION), Opt),
        f(3, "tcpSocket", Msg(&TCP_SOCKET_ACTION), Opt),
        f(4, "sleep", Msg(&SLEEP_ACTION), Opt),
    ],
};

pub(super) static SLEEP_ACTION: Message =
    Message { name: "k8s.io.api.core.v1.SleepAction", fields: &[f(1, "seconds", I64, One)] };

pub(super) static SECURITY_CONTEXT: Message = Message {
    name: "k8s.io.api.core.v1.SecurityContext",
    fields: &[
        f(1, "capabilities", Msg(&CAPABILITIES), Opt),
        f(2, "privileged", Bool, Opt),
        f(3, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS), Opt),
        f(4, "runAsUser", I64, Opt),
        f(5, "runAsNonRoot", Bool, Opt),
        f(6, "readOnlyRootFilesystem", Bool, Opt),
        f(7, "allowPrivilegeEscalation", Bool, Opt),
        f(8, "runAsGroup", I64, Opt),
        f(9, "procMount", Str, Opt),
        f(10, "windowsOptions", Msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS), Opt),
        f(11, "seccompProfile", Msg(&SECCOMP_PROFILE), Opt),
        f(12, "appArmorProfile", Msg(&APP_ARMOR_PROFILE), Opt),
    ],
};

pub(super) static CAPABILITIES: Message =
    Message { name: "k8s.io.api.core.v1.Capabilities", fields: &[f(1, "add", Str, Rep), f(2, "drop", Str, Rep)] };

pub(super) static SE_LINUX_OPTIONS: Message = Message {
    name: "k8s.io.api.core.v1.SELinuxOptions",
    fields: &[f(1, "user", Str, One), f(2, "role", Str, One), f(3, "type", Str, One), f(4, "level", Str, One)],
};

pub(super) static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
    name: "k8s.io.api.core.v1.WindowsSecurityContextOptions",
    fields: &[
        f(1, "gmsaCredentialSpecName", Str, Opt),
        f(2, "gmsaCredentialSpec", Str, Opt),
        f(3, "runAsUserName", Str, Opt),
        f(4, "hostProcess", Bool, Opt),
    ],
};

pub(super) static SECCOMP_PROFILE: Message = Message {
    name: "k8s.io.api.core.v1.SeccompProfile",
    fields: &[f(1, "type", Str, One), f(2, "localhostProfile", Str, Opt)],
};

pub(super) static APP_ARMOR_PROFILE: Message = Message {
    name: "k8s.io.api.core.v1.AppArmorProfile",
    fields: &[f(1, "type", Str, One), f(2, "localhostProfile", Str, Opt)],
};

pub(super) static CONTAINER_RESIZE_POLICY: Message = Message {
    name: "k8s.io.api.core.v1.ContainerResizePolicy",
    fields: &[f(1, "resourceName", Str, One), f(2, "restartPolicy", Str, One)],
};

pub(super) static VOLUME: Message = Message {
    name: "k8s.io.api.core.v1.Volume",
    fields: &[f(1, "name", Str, One), f(2, "volumeSource", Msg(&VOLUME_SOURCE), Inline)],
};

pub(super) static VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.VolumeSource",
    fields: &[
        f(1, "hostPath", Msg(&HOST_PATH_VOLUME_SOURCE), Opt),
        f(2, "emptyDir", Msg(&EMPTY_DIR_VOLUME_SOURCE), Opt),
        f(6, "secret", Msg(&SECRET_VOLUME_SOURCE), Opt),
        f(10, "persistentVolumeClaim", Msg(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE), Opt),
        f(16, "downwardAPI", Msg(&DOWNWARD_API_VOLUME_SOURCE), Opt),
        f(19, "configMap", Msg(&CONFIG_MAP_VOLUME_SOURCE), Opt),
        f(26, "projected", Msg(&PROJECTED_VOLUME_SOURCE), Opt),
        f(30, "image", Msg(&IMAGE_VOLUME_SOURCE), Opt),
    ],
};

pub(super) static HOST_PATH_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.HostPathVolumeSource",
    fields: &[f(1, "path", Str, One), f(2, "type", Str, Opt)],
};

pub(super) static EMPTY_DIR_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.EmptyDirVolumeSource",
    fields: &[f(1, "medium", Str, One), f(2, "sizeLimit", Quantity, Opt)],
};

pub(super) static SECRET_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.SecretVolumeSource",
    fields: &[
        f(1, "secretName", Str, One),
        f(2, "items", Msg(&KEY_TO_PATH), Rep),
        f(3, "defaultMode", I32, Opt),
        f(4, "optional", Bool, Opt),
    ],
};

pub(super) static KEY_TO_PATH: Message = Message {
    name: "k8s.io.api.core.v1.KeyToPath",
    fields: &[f(1, "key", Str, One), f(2, "path", Str, One), f(3, "mode", I32, Opt)],
};

pub(super) static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.PersistentVolumeClaimVolumeSource",
    fields: &[f(1, "claimName", Str, One), f(2, "readOnly", Bool, One)],
};

pub(super) static DOWNWARD_API_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.DownwardAPIVolumeSource",
    fields: &[f(1, "items", Msg(&DOWNWARD_API_VOLUME_FILE), Rep), f(2, "defaultMode", I32, Opt)],
};

pub(super) static DOWNWARD_API_VOLUME_FILE: Message = Message {
    name: "k8s.io.api.core.v1.DownwardAPIVolumeFile",
    fields: &[
        f(1, "path", Str, One),
        f(2, "fieldRef", Msg(&OBJECT_FIELD_SELECTOR), Opt),
        f(3, "resourceFieldRef", Msg(&RESOURCE_FIELD_SELECTOR), Opt),
        f(4, "mode", I32, Opt),
    ],
};

pub(super) static CONFIG_MAP_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.ConfigMapVolumeSource",
    fields: &[
        f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline),
        f(2, "items", Msg(&KEY_TO_PATH), Rep),
        f(3, "defaultMode", I32, Opt),
        f(4, "optional", Bool, Opt),
    ],
};

pub(super) static PROJECTED_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.ProjectedVolumeSource",
    fields: &[f(1, "sources", Msg(&VOLUME_PROJECTION), Rep), f(2, "defaultMode", I32, Opt)],
};

pub(super) static VOLUME_PROJECTION: Message = Message {
    name: "k8s.io.api.core.v1.VolumeProjection",
    fields: &[
        f(1, "secret", Msg(&SECRET_PROJECTION), Opt),
        f(2, "downwardAPI", Msg(&DOWNWARD_API_PROJECTION), Opt),
        f(3, "configMap", Msg(&CONFIG_MAP_PROJECTION), Opt),
        f(4, "serviceAccountToken", Msg(&SERVICE_ACCOUNT_TOKEN_PROJECTION), Opt),
    ],
};

pub(super) static SECRET_PROJECTION: Message = Message {
    name: "k8s.io.api.core.v1.SecretProjection",
    fields: &[
        f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline),
        f(2, "items", Msg(&KEY_TO_PATH), Rep),
        f(4, "optional", Bool, Opt),
    ],
};

pub(super) static CONFIG_MAP_PROJECTION: Message = Message {
    name: "k8s.io.api.core.v1.ConfigMapProjection",
    fields: &[
        f(1, "localObjectReference", Msg(&LOCAL_OBJECT_REFERENCE), Inline),
        f(2, "items", Msg(&KEY_TO_PATH), Rep),
        f(4, "optional", Bool, Opt),
    ],
};

pub(super) static DOWNWARD_API_PROJECTION: Message = Message {
    name: "k8s.io.api.core.v1.DownwardAPIProjection",
    fields: &[f(1, "items", Msg(&DOWNWARD_API_VOLUME_FILE), Rep)],
};

pub(super) static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
    name: "k8s.io.api.core.v1.ServiceAccountTokenProjection",
    fields: &[f(1, "audience", Str, One), f(2, "expirationSeconds", I64, Opt), f(3, "path", Str, One)],
};

pub(super) static IMAGE_VOLUME_SOURCE: Message = Message {
    name: "k8s.io.api.core.v1.ImageVolumeSource",
    fields: &[f(1, "reference", Str, One), f(2, "pullPolicy", Str, One)],
};

pub(super) static LOCAL_OBJECT_REFERENCE: Message =
    Message { name: "k8s.io.api.core.v1.LocalObjectReference", fields: &[f(1, "name", Str, One)] };

pub(super) static AFFINITY: Message = Message {
    name: "k8s.io.api.core.v1.Affinity",
    fields: &[
        f(1, "nodeAffinity", Msg(&NODE_AFFINITY), Opt),
        f(2, "podAffinity", Msg(&POD_AFFINITY), Opt),
        f(3, "podAntiAffinity", Msg(&POD_ANTI_AFFINITY), Opt),
    ],
};

pub(super) static NODE_AFFINITY: Message = Message {
    name: "k8s.io.api.core.v1.NodeAffinity",
    fields: &[
        f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&NODE_SELECTOR), Opt),
        f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&PREFERRED_SCHEDULING_TERM), Rep),
    ],
};

pub(super) static NODE_SELECTOR: Message = Message {
    name: "k8s.io.api.core.v1.NodeSelector",
    fields: &[f(1, "nodeSelectorTerms", Msg(&NODE_SELECTOR_TERM), Rep)],
};

pub(super) static NODE_SELECTOR_TERM: Message = Message {
    name: "k8s.io.api.core.v1.NodeSelectorTerm",
    fields: &[
        f(1, "matchExpressions", Msg(&NODE_SELECTOR_REQUIREMENT), Rep),
        f(2, "matchFields", Msg(&NODE_SELECTOR_REQUIREMENT), Rep),
    ],
};

pub(super) static NODE_SELECTOR_REQUIREMENT: Message = Message {
    name: "k8s.io.api.core.v1.NodeSelectorRequirement",
    fields: &[f(1, "key", Str, One), f(2, "operator", Str, One), f(3, "values", Str, Rep)],
};

pub(super) static PREFERRED_SCHEDULING_TERM: Message = Message {
    name: "k8s.io.api.core.v1.PreferredSchedulingTerm",
    fields: &[f(1, "weight", I32, One), f(2, "preference", Msg(&NODE_SELECTOR_TERM), One)],
};

pub(super) static POD_AFFINITY: Message = Message {
    name: "k8s.io.api.core.v1.PodAffinity",
    fields: &[
        f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&POD_AFFINITY_TERM), Rep),
        f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&WEIGHTED_POD_AFFINITY_TERM), Rep),
    ],
};

pub(super) static POD_ANTI_AFFINITY: Message = Message {
    name: "k8s.io.api.core.v1.PodAntiAffinity",
    fields: &[
        f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&POD_AFFINITY_TERM), Rep),
        f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&WEIGHTED_POD_AFFINITY_TERM), Rep),
    ],
};

pub(super) static POD_AFFINITY_TERM: Message = Message {
    name: "k8s.io.api.core.v1.PodAffinityTerm",
    fields: &[
        f(1, "labelSelector", Msg(&LABEL_SELECTOR), Opt),
        f(2, "namespaces", Str, Rep),
        f(3, "topologyKey", Str, One),
        f(4, "namespaceSelector", Msg(&LABEL_SELECTOR), Opt),
        f(5, "matchLabelKeys", Str, Rep),
        f(6, "mismatchLabelKeys", Str, Rep),
    ],
};

pub(super) static WEIGHTED_POD_AFFINITY_TERM: Message = Message {
    name: "k8s.io.api.core.v1.WeightedPodAffinityTerm",
    fields: &[f(1, "weight", I32, One), f(2, "podAffinityTerm", Msg(&POD_AFFINITY_TERM), One)],
};

pub(super) static TOLERATION: Message = Message {
    name: "k8s.io.api.core.v1.Toleration",
    fields: &[
        f(1, "key", Str, One),
        f(2, "operator", Str, One),
        f(3, "value", Str, One),
        f(4, "effect", Str, One),
        f(5, "tolerationSeconds", I64, Opt),
    ],
};

pub(super) static HOST_ALIAS: Message =
    Message { name: "k8s.io.api.core.v1.HostAlias", fields: &[f(1, "ip", Str, One), f(2, "hostnames", Str, Rep)] };

pub(super) static POD_SECURITY_CONTEXT: Message = Message {
    name: "k8s.io.api.core.v1.PodSecurityContext",
    fields: &[
        f(1, "seLinuxOptions", Msg(&SE_LINUX_OPTIONS), Opt),
        f(2, "runAsUser", I64, Opt),
        f(3, "runAsNonRoot", Bool, Opt),
        f(4, "supplementalGroups", I64, Rep),
        f(5, "fsGroup", I64, Opt),
        f(6, "runAsGroup", I64, Opt),
        f(7, "sysctls", Msg(&SYSCTL), Rep),
        f(8, "windowsOptions", Msg(&WINDOWS_SECURITY_CONTEXT_OPTIONS), Opt),
        f(9, "fsGroupChangePolicy", Str, Opt),
        f(10, "seccompProfile", Msg(&SECCOMP_PROFILE), Opt),
        f(11, "appArmorProfile", Msg(&APP_ARMOR_PROFILE), Opt),
        f(12, "supplementalGroupsPolicy", Str, Opt),
        f(13, "seLinuxChangePolicy", Str, Opt),
    ],
};

pub(super) static SYSCTL: Message =
    Message { name: "k8s.io.api.core.v1.Sysctl", fields: &[f(1, "name", Str, One), f(2, "value", Str, One)] };

pub(super) static POD_DNS_CONFIG: Message = Message {
    name: "k8s.io.api.core.v1.PodDNSConfig",
    fields: &[
        f(1, "nameservers", Str, Rep),
        f(2, "searches", Str, Rep),
        f(3, "options", Msg(&POD_DNS_CONFIG_OPTION), Rep),
    ],
};

pub(super) static POD_DNS_CONFIG_OPTION: Message = Message {
    name: "k8s.io.api.core.v1.PodDNSConfigOption",
    fields: &[f(1, "name", Str, One), f(2, "value", Str, Opt)],
};

pub(super) static POD_READINESS_GATE: Message =
    Message { name: "k8s.io.api.core.v1.PodReadinessGate", fields: &[f(1, "conditionType", Str, One)] };

pub(super) static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
    name: "k8s.io.api.core.v1.TopologySpreadConstraint",
    fields: &[
        f(1, "maxSkew", I32, One),
        f(2, "topologyKey", Str, One),
        f(3, "whenUnsatisfiable", Str, One),
        f(4, "labelSelector", Msg(&LABEL_SELECTOR), Opt),
        f(5, "minDomains", I32, Opt),
        f(6, "nodeAffinityPolicy", Str, Opt),
        f(7, "nodeTaintsPolicy", Str, Opt),
        f(8, "matchLabelKeys", Str, Rep),
    ],
};

pub(super) static POD_OS: Message = Message { name: "k8s.io.api.core.v1.PodOS", fields: &[f(1, "name", Str, One)] };

pub(super) static POD_SCHEDULING_GATE: Message =
    Message { name: "k8s.io.api.core.v1.PodSchedulingGate", fields: &[f(1, "name", Str, One)] };

pub(super) static POD_RESOURCE_CLAIM: Message = Message {
    name: "k8s.io.api.core.v1.PodResourceClaim",
    fields: &[f(1, "name", Str, One), f(3, "resourceClaimName", Str, Opt), f(4, "resourceClaimTemplateName", Str, Opt)],
};

pub(super) static POD_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.PodStatus",
    fields: &[
        f(1, "phase", Str, One),
        f(2, "conditions", Msg(&POD_CONDITION), Rep),
        f(3, "message", Str, One),
        f(4, "reason", Str, One),
        f(5, "hostIP", Str, One),
        f(6, "podIP", Str, One),
        f(7, "startTime", Time, Opt),
        f(8, "containerStatuses", Msg(&CONTAINER_STATUS), Rep),
        f(9, "qosClass", Str, One),
        f(10, "initContainerStatuses", Msg(&CONTAINER_STATUS), Rep),
        f(11, "nominatedNodeName", Str, One),
        f(12, "podIPs", Msg(&POD_IP), Rep),
        f(13, "ephemeralContainerStatuses", Msg(&CONTAINER_STATUS), Rep),
        f(14, "resize", Str, One),
        f(16, "hostIPs", Msg(&HOST_IP), Rep),
    ],
};

pub(super) static POD_CONDITION: Message = Message {
    name: "k8s.io.api.core.v1.PodCondition",
    fields: &[
        f(1, "type", Str, One),
        f(2, "status", Str, One),
        f(3, "lastProbeTime", Time, One),
        f(4, "lastTransitionTime", Time, One),
        f(5, "reason", Str, One),
        f(6, "message", Str, One),
    ],
};

pub(super) static CONTAINER_STATUS: Message = Message {
    name: "k8s.io.api.core.v1.ContainerStatus",
    fields: &[
        f(1, "name", Str, One),
        f(2, "state", Msg(&CONTAINER_STATE), One),
        f(3, "lastState", Msg(&CONTAINER_STATE), One),
        f(4, "ready", Bool, One),
        f(5, "restartCount", I32, One),
        f(6, "image", Str, One),
        f(7, "imageID", Str, One),
        f(8, "containerID", Str, One),
        f(9, "started", Bool, Opt),
        f(10, "allocatedResources", QuantityMap, One),
        f(11, "resources", Msg(&RESOURCE_REQUIREMENTS), Opt),
    ],
};

pub(super) static CONTAINER_STATE: Message = Message {
    name: "k8s.io.api.core.v1.ContainerState",
    fields: &[
        f(1, "waiting", Msg(&CONTAINER_STATE_WAITING), Opt),
        f(2, "running", Msg(&CONTAINER_STATE_RUNNING), Opt),
        f(3, "terminated", Msg(&CONTAINER_STATE_TERMINATED), Opt),
    ],
};

pub(super) static CONTAINER_STATE_WAITING: Message = Message {
    name: "k8s.io.api.core.v1.ContainerStateWaiting",
    fields: &[f(1, "reason", Str, One), f(2, "message", Str, One)],
};

pub(super) static CONTAINER_STATE_RUNNING: Message =
    Message { name: "k8s.io.api.core.v1.ContainerStateRunning", fields: &[f(1, "startedAt", Time, One)] };

pub(super) static CONTAINER_STATE_TERMINATED: Message = Message {
    name: "k8s.io.api.core.v1.ContainerStateTerminated",
    fields: &[
        f(1, "exitCode", I32, One),
        f(2, "signal", I32, One),
        f(3, "reason", Str, One),
        f(4, "message", Str, One),
        f(5, "startedAt", Time, One),
        f(6, "finishedAt", Time, One),
        f(7, "containerID", Str, One),
    ],
};

pub(super) static POD_IP: Message = Message { name: "k8s.io.api.core.v1.PodIP", fields: &[f(1, "ip", Str, One)] };

pub(super) static HOST_IP: Message = Message { name: "k8s.io.api.core.v1.HostIP", fields: &[f(1, "ip", Str, One)] };
