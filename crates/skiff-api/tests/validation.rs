//! Validation rules end to end: valid objects pass, each invalid case names its exact field.

use serde_json::{json, Value};
use skiff_api::registry::{DEPLOYMENTS, ENDPOINTS, EVENTS, LEASES, NAMESPACES, NODES, PODS, REPLICASETS, SERVICES};
use skiff_api::validation::{
    is_dns1123_label, is_dns1123_subdomain, is_iana_svc_name, is_qualified_name, is_valid_label_value, MAX_OBJECT_BYTES,
};
use skiff_api::{
    default_object, validate, validate_with, FieldErrorReason, ResourceInfo, ValidationError, ValidationErrors,
    ValidationOptions,
};

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "example.com/tier": "front"},
                     "annotations": {"note": "hi"}},
        "spec": {"containers": [{
            "name": "app", "image": "nginx:1.25",
            "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
        }], "restartPolicy": "Always"}
    })
}

fn deployment() -> Value {
    json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "extra": "x"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
        }
    })
}

fn service() -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
           "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "targetPort": "https"}]}})
}

fn errors(resource: &ResourceInfo, obj: &Value) -> ValidationErrors {
    match validate(resource, obj) {
        Err(ValidationError::Invalid(e)) => e,
        other => panic!("expected field errors, got {other:?}"),
    }
}

/// Exactly one error, at `field`, with `reason`; returns its message.
fn single(resource: &ResourceInfo, obj: &Value, field: &str, reason: FieldErrorReason) -> String {
    let e = errors(resource, obj);
    assert_eq!(e.fields(), [field], "{}", e.message());
    assert_eq!(e.errors[0].reason, reason, "{}", e.message());
    e.errors[0].to_string()
}

fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match target {
        Value::Object(m) => {
            if value.is_null() {
                m.remove(key);
            } else {
                m.insert(key.to_string(), value);
            }
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
        _ => panic!("bad pointer"),
    }
    v
}

#[test]
fn valid_objects_pass() {
    assert_eq!(validate(&PODS, &pod()), Ok(()));
    assert_eq!(validate(&DEPLOYMENTS, &deployment()), Ok(()));
    assert_eq!(validate(&REPLICASETS, &deployment()), Ok(()));
    assert_eq!(validate(&SERVICES, &service()), Ok(()));
    assert_eq!(validate(&NAMESPACES, &json!({"metadata": {"name": "prod"}})), Ok(()));
    assert_eq!(validate(&NODES, &json!({"metadata": {"name": "node-1.example.com"}})), Ok(()));
    assert_eq!(
        validate(&LEASES, &json!({"metadata": {"name": "kube-scheduler"}, "spec": {"leaseDurationSeconds": 15}})),
        Ok(())
    );
    assert_eq!(
        validate(&EVENTS, &json!({"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web"}})),
        Ok(())
    );
    let ep =
        json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
    assert_eq!(validate(&ENDPOINTS, &ep), Ok(()));
    let headless = json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None"}});
    assert_eq!(validate(&SERVICES, &headless), Ok(()));
    let generated =
        json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "a", "image": "b"}]}});
    assert_eq!(validate(&PODS, &generated), Ok(()));
}

#[test]
fn defaulted_objects_still_pass() {
    for (r, mut obj) in [(&PODS, pod()), (&DEPLOYMENTS, deployment()), (&SERVICES, service())] {
        default_object(r, &mut obj);
        assert_eq!(validate(r, &obj), Ok(()), "{}", r.kind);
    }
}

#[test]
fn invalid_name_message_matches_kubernetes() {
    let msg =
        single(&PODS, &with(pod(), "/metadata/name", json!("Foo_bar")), "metadata.name", FieldErrorReason::Invalid);
    assert_eq!(
        msg,
        "metadata.name: Invalid value: \"Foo_bar\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    );
}

#[test]
fn name_rules_per_kind() {
    single(&PODS, &with(pod(), "/metadata/name", Value::Null), "metadata.name", FieldErrorReason::Required);
    let long = "a".repeat(254);
    let e = errors(&PODS, &with(pod(), "/metadata/name", json!(long)));
    assert!(e.errors[0].to_string().contains("must be no more than 253 characters"), "{}", e.message());
    assert_eq!(validate(&PODS, &with(pod(), "/metadata/name", json!("a".repeat(253)))), Ok(()));
    // Namespaces are DNS-1123 labels: dots and >63 chars are rejected.
    let msg = single(&NAMESPACES, &json!({"metadata": {"name": "a.b"}}), "metadata.name", FieldErrorReason::Invalid);
    assert!(msg.contains("RFC 1123 label"), "{msg}");
    single(&NAMESPACES, &json!({"metadata": {"name": "a".repeat(64)}}), "metadata.name", FieldErrorReason::Invalid);
    // Services are DNS-1035 labels: must start with a letter.
    let msg = single(
        &SERVICES,
        &with(service(), "/metadata/name", json!("1web")),
        "metadata.name",
        FieldErrorReason::Invalid,
    );
    assert!(msg.contains("start with an alphabetic character"), "{msg}");
    single(&PODS, &with(pod(), "/metadata/namespace", json!("Prod")), "metadata.namespace", FieldErrorReason::Invalid);
    single(
        &NODES,
        &json!({"metadata": {"name": "n", "namespace": "x"}}),
        "metadata.namespace",
        FieldErrorReason::Forbidden,
    );
}

#[test]
fn labels_and_annotations() {
    let bad_key = with(pod(), "/metadata/labels", json!({"bad key": "x"}));
    let msg = single(&PODS, &bad_key, "metadata.labels", FieldErrorReason::Invalid);
    assert!(msg.contains("\"bad key\"") && msg.contains("name part must consist"), "{msg}");
    let bad_prefix = with(pod(), "/metadata/labels", json!({"Example.com/a": "x"}));
    assert!(single(&PODS, &bad_prefix, "metadata.labels", FieldErrorReason::Invalid).contains("prefix part"));
    let long_value = with(pod(), "/metadata/labels", json!({"a": "v".repeat(64)}));
    assert!(single(&PODS, &long_value, "metadata.labels", FieldErrorReason::Invalid).contains("no more than 63"));
    let bad_value = with(pod(), "/metadata/labels", json!({"a": "-x"}));
    single(&PODS, &bad_value, "metadata.labels", FieldErrorReason::Invalid);
    let huge = with(pod(), "/metadata/annotations", json!({"big": "x".repeat(256 * 1024)}));
    single(&PODS, &huge, "metadata.annotations", FieldErrorReason::TooLong);
    let ok = with(pod(), "/metadata/annotations", json!({"big": "x".repeat(200 * 1024)}));
    assert_eq!(validate(&PODS, &ok), Ok(()));
}

#[test]
fn name_syntax_helpers() {
    assert!(is_dns1123_label("a-1").is_empty());
    assert!(!is_dns1123_label("-a").is_empty());
    assert!(!is_dns1123_label("a.b").is_empty());
    assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
    assert!(!is_dns1123_subdomain("a..b").is_empty());
    assert!(!is_dns1123_subdomain("").is_empty());
    assert!(is_qualified_name("example.com/My_Name.x").is_empty());
    assert!(!is_qualified_name("a/b/c").is_empty());
    assert!(!is_qualified_name("/a").is_empty());
    assert!(!is_qualified_name("a/").is_empty());
    assert!(is_valid_label_value("").is_empty());
    assert!(!is_valid_label_value("a b").is_empty());
    assert!(is_iana_svc_name("http-alt").is_empty());
    assert!(!is_iana_svc_name("http--alt").is_empty());
    assert!(!is_iana_svc_name("8080").is_empty());
    assert!(!is_iana_svc_name("-http").is_empty());
    assert!(!is_iana_svc_name("a-very-long-port-name").is_empty());
    assert!(!is_iana_svc_name("HTTP").is_empty());
}

#[test]
fn pod_required_fields() {
    single(&PODS, &with(pod(), "/spec/containers", json!([])), "spec.containers", FieldErrorReason::Required);
    single(&PODS, &json!({"metadata": {"name": "x"}}), "spec.containers", FieldErrorReason::Required);
    let msg = single(
        &PODS,
        &with(pod(), "/spec/containers/0/image", Value::Null),
        "spec.containers[0].image",
        FieldErrorReason::Required,
    );
    assert_eq!(msg, "spec.containers[0].image: Required value");
    single(
        &PODS,
        &with(pod(), "/spec/containers/0/name", Value::Null),
        "spec.containers[0].name",
        FieldErrorReason::Required,
    );
    single(
        &PODS,
        &with(pod(), "/spec/containers/0/name", json!("App")),
        "spec.containers[0].name",
        FieldErrorReason::Invalid,
    );
    single(
        &PODS,
        &with(pod(), "/spec/containers/0/env/0/name", json!("")),
        "spec.containers[0].env[0].name",
        FieldErrorReason::Required,
    );
}

#[test]
fn duplicate_container_names() {
    let p = with(pod(), "/spec/containers", json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]));
    let msg = single(&PODS, &p, "spec.containers[1].name", FieldErrorReason::Duplicate);
    assert_eq!(msg, "spec.containers[1].name: Duplicate value: \"a\"");
    let p = with(pod(), "/spec/initContainers", json!([{"name": "app", "image": "x"}]));
    single(&PODS, &p, "spec.initContainers[0].name", FieldErrorReason::Duplicate);
}

#[test]
fn ports_and_protocols() {
    let port = |p: Value| with(pod(), "/spec/containers/0/ports", json!([p]));
    let msg = single(
        &PODS,
        &port(json!({"containerPort": 70000})),
        "spec.containers[0].ports[0].containerPort",
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("must be between 1 and 65535, inclusive"), "{msg}");
    single(
        &PODS,
        &port(json!({"containerPort": -1})),
        "spec.containers[0].ports[0].containerPort",
        FieldErrorReason::Invalid,
    );
    single(
        &PODS,
        &port(json!({"containerPort": 0})),
        "spec.containers[0].ports[0].containerPort",
        FieldErrorReason::Required,
    );
    single(&PODS, &port(json!({})), "spec.containers[0].ports[0].containerPort", FieldErrorReason::Required);
    single(
        &PODS,
        &port(json!({"containerPort": 80, "hostPort": 65536})),
        "spec.containers[0].ports[0].hostPort",
        FieldErrorReason::Invalid,
    );
    assert_eq!(validate(&PODS, &port(json!({"containerPort": 65535, "hostPort": 0, "protocol": "SCTP"}))), Ok(()));
    let msg = single(
        &PODS,
        &port(json!({"containerPort": 80, "protocol": "HTTP"})),
        "spec.containers[0].ports[0].protocol",
        FieldErrorReason::NotSupported,
    );
    assert_eq!(msg, "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"");
    single(
        &PODS,
        &port(json!({"containerPort": 80, "name": "http_x"})),
        "spec.containers[0].ports[0].name",
        FieldErrorReason::Invalid,
    );
    let two = with(
        pod(),
        "/spec/containers/0/ports",
        json!([{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]),
    );
    single(&PODS, &two, "spec.containers[0].ports[1].name", FieldErrorReason::Duplicate);
}

#[test]
fn restart_policy() {
    let msg = single(
        &PODS,
        &with(pod(), "/spec/restartPolicy", json!("Sometimes")),
        "spec.restartPolicy",
        FieldErrorReason::NotSupported,
    );
    assert!(msg.contains("\"Always\", \"OnFailure\", \"Never\""), "{msg}");
    assert_eq!(validate(&PODS, &with(pod(), "/spec/restartPolicy", json!("Never"))), Ok(()));
    let d = with(deployment(), "/spec/template/spec/restartPolicy", json!("Never"));
    let msg = single(&DEPLOYMENTS, &d, "spec.template.spec.restartPolicy", FieldErrorReason::NotSupported);
    assert!(msg.ends_with("supported values: \"Always\""), "{msg}");
}

#[test]
fn resource_quantities() {
    let res = |r: Value| with(pod(), "/spec/containers/0/resources", r);
    let msg = single(
        &PODS,
        &res(json!({"limits": {"cpu": "abc"}})),
        "spec.containers[0].resources.limits[cpu]",
        FieldErrorReason::Invalid,
    );
    assert!(msg.contains("\"abc\""), "{msg}");
    single(
        &PODS,
        &res(json!({"requests": {"memory": "-1Gi"}})),
        "spec.containers[0].resources.requests[memory]",
        FieldErrorReason::Invalid,
    );
    let msg = single(
        &PODS,
        &res(json!({"requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "1500m", "memory": "1e9"}})),
        "spec.containers[0].resources.requests[cpu]",
        FieldErrorReason::Invalid,
    );
    assert_eq!(msg, "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1500m");
    assert_eq!(validate(&PODS, &res(json!({"requests": {"cpu": "0.5"}, "limits": {"cpu": "500m"}}))), Ok(()));
    assert_eq!(validate(&PODS, &res(json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}))), Ok(()));
    single(
        &PODS,
        &res(json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "1G"}})),
        "spec.containers[0].resources.requests[memory]",
        FieldErrorReason::Invalid,
    );
}

#[test]
fn deployment_rules() {
    single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/selector", Value::Null),
        "spec.selector",
        FieldErrorReason::Required,
    );
    single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/template", Value::Null),
        "spec.template",
        FieldErrorReason::Required,
    );
    let msg = single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/replicas", json!(-1)),
        "spec.replicas",
        FieldErrorReason::Invalid,
    );
    assert_eq!(msg, "spec.replicas: Invalid value: -1: must be greater than or equal to 0");
    assert_eq!(validate(&DEPLOYMENTS, &with(deployment(), "/spec/replicas", json!(0))), Ok(()));
    let mismatch = with(deployment(), "/spec/template/metadata/labels", json!({"app": "db"}));
    let msg = single(&DEPLOYMENTS, &mismatch, "spec.template.metadata.labels", FieldErrorReason::Invalid);
    assert!(msg.contains("`selector` does not match template `labels`"), "{msg}");
    single(&DEPLOYMENTS, &with(deployment(), "/spec/selector", json!({})), "spec.selector", FieldErrorReason::Invalid);
    let bad_expr =
        with(deployment(), "/spec/selector", json!({"matchExpressions": [{"key": "app", "operator": "Near"}]}));
    single(&DEPLOYMENTS, &bad_expr, "spec.selector", FieldErrorReason::Invalid);
    let expr = with(
        deployment(),
        "/spec/selector",
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
    );
    assert_eq!(validate(&DEPLOYMENTS, &expr), Ok(()));
    single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/template/spec/containers/0/image", json!("")),
        "spec.template.spec.containers[0].image",
        FieldErrorReason::Required,
    );
    single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/strategy", json!({"type": "BlueGreen"})),
        "spec.strategy.type",
        FieldErrorReason::NotSupported,
    );
    single(&REPLICASETS, &with(deployment(), "/spec/replicas", json!(-2)), "spec.replicas", FieldErrorReason::Invalid);
}

#[test]
fn deployment_rolling_update_fenceposts_and_progress_deadline() {
    let rolling =
        |ru: Value| with(deployment(), "/spec/strategy", json!({"type": "RollingUpdate", "rollingUpdate": ru}));
    const UNAVAILABLE: &str = "spec.strategy.rollingUpdate.maxUnavailable";
    const SURGE: &str = "spec.strategy.rollingUpdate.maxSurge";
    for ok in [
        json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
        json!({"maxSurge": 1, "maxUnavailable": 0}),
        json!({"maxSurge": "0%", "maxUnavailable": "100%"}),
        json!({"maxSurge": "300%", "maxUnavailable": 7}),
        json!({"maxSurge": 0}),
    ] {
        assert_eq!(validate(&DEPLOYMENTS, &rolling(ok.clone())), Ok(()), "{ok}");
    }
    // Both 0: a rollout could never replace a pod.
    for both_zero in [json!({"maxSurge": 0, "maxUnavailable": 0}), json!({"maxSurge": "0%", "maxUnavailable": 0})] {
        let msg = single(&DEPLOYMENTS, &rolling(both_zero), UNAVAILABLE, FieldErrorReason::Invalid);
        assert_eq!(
            msg,
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
        );
    }
    let msg = single(
        &DEPLOYMENTS,
        &rolling(json!({"maxSurge": 1, "maxUnavailable": "150%"})),
        UNAVAILABLE,
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("\"150%\": must not be greater than 100%"), "{msg}");
    let msg =
        single(&DEPLOYMENTS, &rolling(json!({"maxSurge": -1, "maxUnavailable": 1})), SURGE, FieldErrorReason::Invalid);
    assert!(msg.ends_with("-1: must be greater than or equal to 0"), "{msg}");
    for not_percent in ["abc", "5", "%", "-5%", "1.5%"] {
        let msg = single(
            &DEPLOYMENTS,
            &rolling(json!({"maxSurge": not_percent, "maxUnavailable": 1})),
            SURGE,
            FieldErrorReason::Invalid,
        );
        assert!(msg.contains("a valid percent string must be a numeric string followed by an ending '%'"), "{msg}");
    }
    let msg = single(
        &DEPLOYMENTS,
        &rolling(json!({"maxSurge": 1, "maxUnavailable": true})),
        UNAVAILABLE,
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("must be an integer or percentage (e.g '5%')"), "{msg}");
    // Recreate has no fenceposts to check (and may not carry rollingUpdate at all).
    single(
        &DEPLOYMENTS,
        &with(
            deployment(),
            "/spec/strategy",
            json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
        ),
        "spec.strategy.rollingUpdate",
        FieldErrorReason::Forbidden,
    );

    // The deadline must leave room for minReadySeconds, as Kubernetes requires.
    let d = with(with(deployment(), "/spec/minReadySeconds", json!(30)), "/spec/progressDeadlineSeconds", json!(30));
    let msg = single(&DEPLOYMENTS, &d, "spec.progressDeadlineSeconds", FieldErrorReason::Invalid);
    assert_eq!(msg, "spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds");
    let msg = single(
        &DEPLOYMENTS,
        &with(deployment(), "/spec/progressDeadlineSeconds", json!(0)),
        "spec.progressDeadlineSeconds",
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("must be greater than minReadySeconds"), "{msg}");
    let d = with(with(deployment(), "/spec/minReadySeconds", json!(30)), "/spec/progressDeadlineSeconds", json!(31));
    assert_eq!(validate(&DEPLOYMENTS, &d), Ok(()));
}

#[test]
fn service_rules() {
    single(&SERVICES, &with(service(), "/spec/ports", json!([])), "spec.ports", FieldErrorReason::Required);
    single(
        &SERVICES,
        &with(service(), "/spec/ports/0/port", json!(0)),
        "spec.ports[0].port",
        FieldErrorReason::Required,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/0/port", json!(65536)),
        "spec.ports[0].port",
        FieldErrorReason::Invalid,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/1/name", Value::Null),
        "spec.ports[1].name",
        FieldErrorReason::Required,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/1/name", json!("http")),
        "spec.ports[1].name",
        FieldErrorReason::Duplicate,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/0/protocol", json!("ICMP")),
        "spec.ports[0].protocol",
        FieldErrorReason::NotSupported,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/0/targetPort", json!(0)),
        "spec.ports[0].targetPort",
        FieldErrorReason::Required,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/1/targetPort", json!("x_y")),
        "spec.ports[1].targetPort",
        FieldErrorReason::Invalid,
    );
    single(&SERVICES, &with(service(), "/spec/type", json!("Magic")), "spec.type", FieldErrorReason::NotSupported);
    single(
        &SERVICES,
        &with(service(), "/spec/sessionAffinity", json!("Sticky")),
        "spec.sessionAffinity",
        FieldErrorReason::NotSupported,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/selector", json!({"app": "-"})),
        "spec.selector",
        FieldErrorReason::Invalid,
    );
    single(
        &SERVICES,
        &with(service(), "/spec/ports/0/nodePort", json!(30080)),
        "spec.ports[0].nodePort",
        FieldErrorReason::Forbidden,
    );
    let np = with(with(service(), "/spec/type", json!("NodePort")), "/spec/ports/0/nodePort", json!(30080));
    assert_eq!(validate(&SERVICES, &np), Ok(()));
    let out_of_range = with(np.clone(), "/spec/ports/0/nodePort", json!(8080));
    let msg = single(&SERVICES, &out_of_range, "spec.ports[0].nodePort", FieldErrorReason::Invalid);
    assert!(msg.contains("30000-32767"), "{msg}");
    let opts = ValidationOptions { node_port_range: 8000..=9000, ..Default::default() };
    assert_eq!(validate_with(&SERVICES, &out_of_range, &opts), Ok(()));
    assert!(validate_with(&SERVICES, &np, &opts).is_err());
}

#[test]
fn other_kinds() {
    single(&EVENTS, &json!({"metadata": {"name": "e"}}), "involvedObject", FieldErrorReason::Required);
    single(
        &LEASES,
        &json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
        "spec.leaseDurationSeconds",
        FieldErrorReason::Invalid,
    );
    let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 0}]}]});
    let e = errors(&ENDPOINTS, &ep);
    assert_eq!(e.fields(), ["subsets[0].ports[0].port", "subsets[0].addresses[0].ip"]);
    let e = errors(&PODS, &json!("not an object"));
    assert_eq!(e.errors.len(), 1);
}

#[test]
fn multiple_errors_and_status_body() {
    let mut p = with(pod(), "/metadata/name", json!("web"));
    p = with(p, "/spec/containers/0/image", Value::Null);
    p = with(p, "/spec/restartPolicy", json!("Sometimes"));
    let err = validate(&PODS, &p).unwrap_err();
    let status = err.to_status().to_json();
    assert_eq!(status["code"], 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(
        status["message"],
        "Pod \"web\" is invalid: [spec.containers[0].image: Required value, spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
    );
    assert_eq!(status["details"]["name"], "web");
    assert_eq!(status["details"]["kind"], "Pod");
    assert!(status["details"].get("group").is_none());
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"})
    );
    assert_eq!(status["details"]["causes"][1]["reason"], "FieldValueNotSupported");
    assert_eq!(
        status["details"]["causes"][1]["message"],
        "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );

    let d = validate(&DEPLOYMENTS, &with(deployment(), "/spec/replicas", json!(-1))).unwrap_err().to_status();
    assert_eq!(
        d.message,
        "Deployment \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(d.details.unwrap().group.as_deref(), Some("apps"));
}

#[test]
fn oversized_objects_are_413() {
    let big = with(pod(), "/metadata/annotations", json!({"a": "x".repeat(MAX_OBJECT_BYTES)}));
    let err = validate(&PODS, &big).unwrap_err();
    assert!(matches!(err, ValidationError::TooLarge { limit, size } if limit == MAX_OBJECT_BYTES && size > limit));
    assert!(err.field_errors().is_none());
    let s = err.to_status();
    assert_eq!(s.code, 413);
    assert_eq!(s.to_json()["reason"], "RequestEntityTooLarge");
    let opts = ValidationOptions { max_object_bytes: 100, ..Default::default() };
    assert!(matches!(validate_with(&PODS, &pod(), &opts), Err(ValidationError::TooLarge { .. })));
}

#[test]
fn typed_objects() {
    use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use skiff_api::validation::validate_typed;

    let mut pod = Pod {
        metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
        spec: Some(PodSpec {
            containers: vec![Container { name: "app".into(), image: Some("nginx".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(validate_typed(&pod), Ok(()));
    pod.spec.as_mut().unwrap().containers[0].image = None;
    let err = validate_typed(&pod).unwrap_err();
    assert_eq!(err.field_errors().unwrap().fields(), ["spec.containers[0].image"]);

    let cm = ConfigMap { metadata: ObjectMeta { name: Some("c".into()), ..Default::default() }, ..Default::default() };
    let err = validate_typed(&cm).unwrap_err();
    let e = err.field_errors().unwrap();
    assert_eq!(e.errors[0].reason, FieldErrorReason::NotSupported);
    assert_eq!(e.fields(), ["kind"]);
}

#[test]
fn volumes_mounts_and_probes() {
    let with_volumes = |volumes: Value, mounts: Value| {
        with(with(pod(), "/spec/volumes", volumes), "/spec/containers/0/volumeMounts", mounts)
    };
    let ok = with_volumes(
        json!([{"name": "data", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/tmp"}}]),
        json!([{"name": "data", "mountPath": "/data"}, {"name": "host", "mountPath": "/host"}]),
    );
    assert_eq!(validate(&PODS, &ok), Ok(()));
    // A mount of a volume the pod does not declare.
    let msg = single(
        &PODS,
        &with_volumes(json!([{"name": "data", "emptyDir": {}}]), json!([{"name": "nope", "mountPath": "/x"}])),
        "spec.containers[0].volumeMounts[0].name",
        FieldErrorReason::NotFound,
    );
    assert_eq!(msg, "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"");
    let status = errors(
        &PODS,
        &with_volumes(json!([{"name": "data", "emptyDir": {}}]), json!([{"name": "nope", "mountPath": "/x"}])),
    )
    .to_status()
    .to_json();
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueNotFound");
    // Two mounts at one path.
    let msg = single(
        &PODS,
        &with_volumes(
            json!([{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]),
            json!([{"name": "a", "mountPath": "/x"}, {"name": "b", "mountPath": "/x"}]),
        ),
        "spec.containers[0].volumeMounts[1].mountPath",
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("\"/x\": must be unique"), "{msg}");
    // Volumes: unique names, exactly one source.
    single(
        &PODS,
        &with(pod(), "/spec/volumes", json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}])),
        "spec.volumes[1].name",
        FieldErrorReason::Duplicate,
    );
    single(&PODS, &with(pod(), "/spec/volumes", json!([{"name": "a"}])), "spec.volumes[0]", FieldErrorReason::Required);
    single(
        &PODS,
        &with(pod(), "/spec/volumes", json!([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/"}}])),
        "spec.volumes[0].hostPath",
        FieldErrorReason::Forbidden,
    );
    single(
        &PODS,
        &with(pod(), "/spec/volumes", json!([{"name": "Bad_Name", "emptyDir": {}}])),
        "spec.volumes[0].name",
        FieldErrorReason::Invalid,
    );

    // Probes: one handler, a valid port, a success threshold of 1 but for readiness.
    let probe = |kind: &str, p: Value| with(pod(), &format!("/spec/containers/0/{kind}"), p);
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(validate(&PODS, &probe(kind, json!({"httpGet": {"port": 8080, "path": "/"}}))), Ok(()));
        assert_eq!(validate(&PODS, &probe(kind, json!({"tcpSocket": {"port": "http"}}))), Ok(()));
        let msg = single(
            &PODS,
            &probe(kind, json!({"httpGet": {"port": 99999}})),
            &format!("spec.containers[0].{kind}.httpGet.port"),
            FieldErrorReason::Invalid,
        );
        assert!(msg.ends_with("99999: must be between 1 and 65535, inclusive"), "{msg}");
        single(
            &PODS,
            &probe(kind, json!({"tcpSocket": {"port": "Not_A_Name"}})),
            &format!("spec.containers[0].{kind}.tcpSocket.port"),
            FieldErrorReason::Invalid,
        );
        single(
            &PODS,
            &probe(kind, json!({"periodSeconds": 5})),
            &format!("spec.containers[0].{kind}"),
            FieldErrorReason::Required,
        );
        single(
            &PODS,
            &probe(kind, json!({"exec": {"command": ["true"]}, "httpGet": {"port": 80}})),
            &format!("spec.containers[0].{kind}.httpGet"),
            FieldErrorReason::Forbidden,
        );
    }
    let two = |kind: &str| probe(kind, json!({"exec": {"command": ["true"]}, "successThreshold": 2}));
    assert_eq!(validate(&PODS, &two("readinessProbe")), Ok(()));
    let msg = single(
        &PODS,
        &two("livenessProbe"),
        "spec.containers[0].livenessProbe.successThreshold",
        FieldErrorReason::Invalid,
    );
    assert_eq!(msg, "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1");
}

#[test]
fn environment_variables() {
    let env = |e: Value| with(pod(), "/spec/containers/0/env", e);
    let from = |vf: Value| env(json!([{"name": "X", "valueFrom": vf}]));
    let field = "spec.containers[0].env[0]";
    // Kubernetes 1.32's relaxed names: printable ASCII but '='.
    for name in ["PATH", "my.var", "1st", "with space", "a:b-c"] {
        assert_eq!(validate(&PODS, &env(json!([{"name": name, "value": "v"}]))), Ok(()), "{name}");
    }
    for name in ["A=B", "tab\there", "é"] {
        let msg = single(&PODS, &env(json!([{"name": name}])), &format!("{field}.name"), FieldErrorReason::Invalid);
        assert!(msg.ends_with("must consist only of printable ASCII characters other than '='"), "{msg}");
    }
    single(&PODS, &env(json!([{"value": "v"}])), &format!("{field}.name"), FieldErrorReason::Required);

    // valueFrom: one source, not beside a value.
    let ok = [
        json!({"fieldRef": {"fieldPath": "metadata.name"}}),
        json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIPs"}}),
        json!({"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}}),
        json!({"fieldRef": {"fieldPath": "metadata.annotations['Owner']"}}),
        json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}),
        json!({"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}),
        json!({"resourceFieldRef": {"resource": "limits.hugepages-2Mi"}}),
        json!({"configMapKeyRef": {"name": "settings", "key": "log.level", "optional": true}}),
        json!({"secretKeyRef": {"name": "db", "key": "PASSWORD"}}),
    ];
    for vf in ok {
        assert_eq!(validate(&PODS, &from(vf.clone())), Ok(()), "{vf}");
    }
    let vf = format!("{field}.valueFrom");
    let msg = single(&PODS, &from(json!({})), &vf, FieldErrorReason::Invalid);
    assert!(msg.ends_with("must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
    let both = env(json!([{"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]));
    let msg = single(&PODS, &both, &vf, FieldErrorReason::Invalid);
    assert!(msg.ends_with("may not be specified when `value` is not empty"), "{msg}");
    let two = json!({"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "db", "key": "k"}});
    let msg = single(&PODS, &from(two), &vf, FieldErrorReason::Invalid);
    assert!(msg.ends_with("may not have more than one field specified at a time"), "{msg}");

    // fieldRef: the paths kubelet resolves.
    let msg = single(
        &PODS,
        &from(json!({"fieldRef": {"fieldPath": "spec.containers"}})),
        &format!("{vf}.fieldRef.fieldPath"),
        FieldErrorReason::NotSupported,
    );
    assert!(msg.contains(r#"Unsupported value: "spec.containers": supported values: "metadata.name""#), "{msg}");
    single(
        &PODS,
        &from(json!({"fieldRef": {"fieldPath": "metadata.labels['bad key']"}})),
        &format!("{vf}.fieldRef"),
        FieldErrorReason::Invalid,
    );
    single(&PODS, &from(json!({"fieldRef": {}})), &format!("{vf}.fieldRef.fieldPath"), FieldErrorReason::Required);
    let msg = single(
        &PODS,
        &from(json!({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}})),
        &format!("{vf}.fieldRef.fieldPath"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("error converting fieldPath: unsupported pod version: v2"), "{msg}");

    // resourceFieldRef: a known resource and a divisor Kubernetes allows.
    single(
        &PODS,
        &from(json!({"resourceFieldRef": {"resource": "limits.gpu"}})),
        &format!("{vf}.resourceFieldRef.resource"),
        FieldErrorReason::NotSupported,
    );
    let msg = single(
        &PODS,
        &from(json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "2"}})),
        &format!("{vf}.resourceFieldRef.divisor"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("only divisor's values 1m and 1 are supported with the cpu resource"), "{msg}");
    single(
        &PODS,
        &from(json!({"resourceFieldRef": {"resource": "requests.memory", "divisor": "3Ki"}})),
        &format!("{vf}.resourceFieldRef.divisor"),
        FieldErrorReason::Invalid,
    );

    // configMapKeyRef / secretKeyRef: a name and a valid key.
    single(
        &PODS,
        &from(json!({"configMapKeyRef": {"name": "settings"}})),
        &format!("{vf}.configMapKeyRef.key"),
        FieldErrorReason::Required,
    );
    let msg = single(
        &PODS,
        &from(json!({"secretKeyRef": {"name": "db", "key": "etc/passwd"}})),
        &format!("{vf}.secretKeyRef.key"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.contains("a valid config key must consist of alphanumeric characters"), "{msg}");
    let msg = single(
        &PODS,
        &from(json!({"secretKeyRef": {"name": "db", "key": "..etc"}})),
        &format!("{vf}.secretKeyRef.key"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("must not start with '..'"), "{msg}");
    single(
        &PODS,
        &from(json!({"secretKeyRef": {"name": "Not_A_Name", "key": "k"}})),
        &format!("{vf}.secretKeyRef.name"),
        FieldErrorReason::Invalid,
    );

    // envFrom: one source each, a valid prefix.
    let env_from = |e: Value| with(pod(), "/spec/containers/0/envFrom", e);
    assert_eq!(validate(&PODS, &env_from(json!([{"configMapRef": {"name": "a"}, "prefix": "APP_"}]))), Ok(()));
    let msg =
        single(&PODS, &env_from(json!([{"prefix": "X_"}])), "spec.containers[0].envFrom", FieldErrorReason::Invalid);
    assert!(msg.ends_with("must specify one of: `configMapRef` or `secretRef`"), "{msg}");
    single(
        &PODS,
        &env_from(json!([{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}])),
        "spec.containers[0].envFrom",
        FieldErrorReason::Invalid,
    );
    single(
        &PODS,
        &env_from(json!([{"secretRef": {"name": "b"}, "prefix": "A="}])),
        "spec.containers[0].envFrom[0].prefix",
        FieldErrorReason::Invalid,
    );
}

#[test]
fn security_contexts() {
    let psc = |sc: Value| with(pod(), "/spec/securityContext", sc);
    let csc = |sc: Value| with(pod(), "/spec/containers/0/securityContext", sc);
    let ok_pod = json!({
        "runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true, "fsGroup": 2000,
        "supplementalGroups": [4000, 0], "fsGroupChangePolicy": "OnRootMismatch",
        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"},
                    {"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": "net/ipv4/ping_group_range", "value": "0 0"}],
        "seccompProfile": {"type": "RuntimeDefault"}, "appArmorProfile": {"type": "Unconfined"},
        "seLinuxOptions": {"level": "s0:c123,c456"}
    });
    assert_eq!(validate(&PODS, &psc(ok_pod)), Ok(()));
    let ok_container = json!({
        "runAsUser": 0, "privileged": false, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}, "procMount": "Default",
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-apparmor-example"}
    });
    assert_eq!(validate(&PODS, &csc(ok_container)), Ok(()));

    // Ids: 0..=2147483647.
    for (field, sc) in [
        ("spec.securityContext.runAsUser", psc(json!({"runAsUser": -1}))),
        ("spec.securityContext.fsGroup", psc(json!({"fsGroup": 2147483648u64}))),
        ("spec.securityContext.supplementalGroups[1]", psc(json!({"supplementalGroups": [1, -5]}))),
        ("spec.containers[0].securityContext.runAsGroup", csc(json!({"runAsGroup": -1}))),
    ] {
        let msg = single(&PODS, &sc, field, FieldErrorReason::Invalid);
        assert!(msg.ends_with("must be between 0 and 2147483647, inclusive"), "{msg}");
    }
    // sysctls: named, well-formed, once.
    let sysctls = |s: Value| psc(json!({"sysctls": s}));
    single(
        &PODS,
        &sysctls(json!([{"value": "1"}])),
        "spec.securityContext.sysctls[0].name",
        FieldErrorReason::Required,
    );
    let msg = single(
        &PODS,
        &sysctls(json!([{"name": "Net.IPv4", "value": "1"}])),
        "spec.securityContext.sysctls[0].name",
        FieldErrorReason::Invalid,
    );
    assert!(msg.contains("must have at most 253 characters and match regex"), "{msg}");
    single(
        &PODS,
        &sysctls(json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "kernel.msgmax", "value": "2"}])),
        "spec.securityContext.sysctls[1].name",
        FieldErrorReason::Duplicate,
    );
    single(
        &PODS,
        &psc(json!({"fsGroupChangePolicy": "Sometimes"})),
        "spec.securityContext.fsGroupChangePolicy",
        FieldErrorReason::NotSupported,
    );

    // Profiles: a known type, a localhost profile exactly when the type is Localhost.
    let seccomp = |p: Value| csc(json!({"seccompProfile": p}));
    let sp = "spec.containers[0].securityContext.seccompProfile";
    let msg = single(&PODS, &seccomp(json!({})), &format!("{sp}.type"), FieldErrorReason::Required);
    assert!(msg.ends_with("type is required when seccompProfile is set"), "{msg}");
    let msg = single(&PODS, &seccomp(json!({"type": "Strict"})), &format!("{sp}.type"), FieldErrorReason::NotSupported);
    assert!(msg.contains(r#""Localhost", "RuntimeDefault", "Unconfined""#), "{msg}");
    let msg = single(
        &PODS,
        &seccomp(json!({"type": "Localhost"})),
        &format!("{sp}.localhostProfile"),
        FieldErrorReason::Required,
    );
    assert!(msg.ends_with("must be set when seccomp type is Localhost"), "{msg}");
    let msg = single(
        &PODS,
        &seccomp(json!({"type": "RuntimeDefault", "localhostProfile": "x.json"})),
        &format!("{sp}.localhostProfile"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("can only be set when seccomp type is Localhost"), "{msg}");
    for (profile, why) in [("/etc/x.json", "must be a relative path"), ("a/../../x.json", "must not contain '..'")] {
        let msg = single(
            &PODS,
            &seccomp(json!({"type": "Localhost", "localhostProfile": profile})),
            &format!("{sp}.localhostProfile"),
            FieldErrorReason::Invalid,
        );
        assert!(msg.ends_with(why), "{msg}");
    }
    let ap = "spec.securityContext.appArmorProfile";
    let apparmor = |p: Value| psc(json!({"appArmorProfile": p}));
    let msg = single(
        &PODS,
        &apparmor(json!({"type": "Localhost"})),
        &format!("{ap}.localhostProfile"),
        FieldErrorReason::Required,
    );
    assert!(msg.ends_with("must be set when AppArmor type is Localhost"), "{msg}");
    let msg = single(
        &PODS,
        &apparmor(json!({"type": "Localhost", "localhostProfile": " padded"})),
        &format!("{ap}.localhostProfile"),
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("must not be padded with whitespace"), "{msg}");
    single(
        &PODS,
        &apparmor(json!({"type": "Unconfined", "localhostProfile": "p"})),
        &format!("{ap}.localhostProfile"),
        FieldErrorReason::Invalid,
    );

    // Privilege escalation cannot be off for a privileged container or one given CAP_SYS_ADMIN.
    let cs = "spec.containers[0].securityContext";
    let msg = single(
        &PODS,
        &csc(json!({"allowPrivilegeEscalation": false, "privileged": true})),
        cs,
        FieldErrorReason::Invalid,
    );
    assert!(msg.ends_with("cannot set `allowPrivilegeEscalation` to false and `privileged` to true"), "{msg}");
    let msg = single(
        &PODS,
        &csc(json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["CAP_SYS_ADMIN"]}})),
        cs,
        FieldErrorReason::Invalid,
    );
    assert!(
        msg.ends_with("cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"),
        "{msg}"
    );
    // procMount: Unmasked only in a user namespace.
    single(&PODS, &csc(json!({"procMount": "Hidden"})), &format!("{cs}.procMount"), FieldErrorReason::NotSupported);
    let msg =
        single(&PODS, &csc(json!({"procMount": "Unmasked"})), &format!("{cs}.procMount"), FieldErrorReason::Invalid);
    assert!(msg.ends_with("`hostUsers` must be false to use `Unmasked`"), "{msg}");
    let userns = with(csc(json!({"procMount": "Unmasked"})), "/spec/hostUsers", json!(false));
    assert_eq!(validate(&PODS, &userns), Ok(()));

    // Host namespaces.
    let both = with(with(pod(), "/spec/hostPID", json!(true)), "/spec/shareProcessNamespace", json!(true));
    let msg = single(&PODS, &both, "spec.securityContext.shareProcessNamespace", FieldErrorReason::Invalid);
    assert!(msg.ends_with("ShareProcessNamespace and HostPID cannot both be enabled"), "{msg}");
    let host_net = with(pod(), "/spec/hostNetwork", json!(true));
    let moved = with(host_net.clone(), "/spec/containers/0/ports/0/hostPort", json!(8080));
    let msg = single(&PODS, &moved, "spec.containers[0].ports[0].containerPort", FieldErrorReason::Invalid);
    assert!(msg.ends_with("must match `hostPort` when `hostNetwork` is true"), "{msg}");
    // Defaulting makes the host port the container port, as Kubernetes does.
    let mut defaulted = host_net;
    default_object(&PODS, &mut defaulted);
    assert_eq!(defaulted.pointer("/spec/containers/0/ports/0/hostPort"), Some(&json!(80)));
    assert_eq!(validate(&PODS, &defaulted), Ok(()));
}

#[test]
fn active_deadline_seconds() {
    assert_eq!(validate(&PODS, &with(pod(), "/spec/activeDeadlineSeconds", json!(30))), Ok(()));
    for bad in [json!(0), json!(-1), json!(2147483648u64)] {
        let p = with(pod(), "/spec/activeDeadlineSeconds", bad.clone());
        let msg = single(&PODS, &p, "spec.activeDeadlineSeconds", FieldErrorReason::Invalid);
        assert!(msg.ends_with("must be between 1 and 2147483647, inclusive"), "{bad}: {msg}");
    }
    let d = with(deployment(), "/spec/template/spec/activeDeadlineSeconds", json!(30));
    let msg = single(&DEPLOYMENTS, &d, "spec.template.spec.activeDeadlineSeconds", FieldErrorReason::Invalid);
    assert!(msg.ends_with("activeDeadlineSeconds in ReplicaSet is not Supported"), "{msg}");
}

#[test]
fn init_containers_take_no_probes() {
    let init = |c: Value| with(pod(), "/spec/initContainers", json!([c]));
    assert_eq!(validate(&PODS, &init(json!({"name": "setup", "image": "busybox"}))), Ok(()));
    let probe = json!({"exec": {"command": ["true"]}});
    for f in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let c = json!({"name": "setup", "image": "busybox", f: probe});
        let msg = single(&PODS, &init(c), &format!("spec.initContainers[0].{f}"), FieldErrorReason::Forbidden);
        assert!(msg.ends_with("may not be set for init containers without restartPolicy=Always"), "{msg}");
    }
    // restartPolicy: only `Always` (a sidecar), and only on init containers.
    let sidecar = init(json!({"name": "proxy", "image": "busybox", "restartPolicy": "Always"}));
    assert_eq!(validate(&PODS, &sidecar), Ok(()));
    let other = init(json!({"name": "proxy", "image": "busybox", "restartPolicy": "OnFailure"}));
    single(&PODS, &other, "spec.initContainers[0].restartPolicy", FieldErrorReason::NotSupported);
    let app = with(pod(), "/spec/containers/0/restartPolicy", json!("Always"));
    let msg = single(&PODS, &app, "spec.containers[0].restartPolicy", FieldErrorReason::Forbidden);
    assert!(msg.ends_with("may not be set for non-init containers"), "{msg}");
    // A name is unique among both lists.
    let dup = init(json!({"name": "app", "image": "busybox"}));
    single(&PODS, &dup, "spec.initContainers[0].name", FieldErrorReason::Duplicate);
}

#[test]
fn lifecycle_hooks() {
    let hooks = |l: Value| with(pod(), "/spec/containers/0/lifecycle", l);
    let ok = json!({"postStart": {"exec": {"command": ["touch", "/ready"]}},
                    "preStop": {"httpGet": {"path": "/drain", "port": "http"}}});
    assert_eq!(validate(&PODS, &hooks(ok)), Ok(()));
    assert_eq!(validate(&PODS, &hooks(json!({"preStop": {"sleep": {"seconds": 5}}}))), Ok(()));
    let lp = "spec.containers[0].lifecycle.preStop";
    single(&PODS, &hooks(json!({"preStop": {}})), lp, FieldErrorReason::Required);
    let two = json!({"preStop": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}});
    single(&PODS, &hooks(two), &format!("{lp}.sleep"), FieldErrorReason::Forbidden);
    single(
        &PODS,
        &hooks(json!({"preStop": {"httpGet": {"path": "/"}}})),
        &format!("{lp}.httpGet.port"),
        FieldErrorReason::Required,
    );
    let long =
        with(hooks(json!({"preStop": {"sleep": {"seconds": 40}}})), "/spec/terminationGracePeriodSeconds", json!(30));
    let msg = single(&PODS, &long, &format!("{lp}.sleep"), FieldErrorReason::Invalid);
    assert!(msg.ends_with("must be greater than 0 and less than terminationGracePeriodSeconds (30)"), "{msg}");
}
