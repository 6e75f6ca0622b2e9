//! The decoder against real kubectl bodies and hand-built wire data.
//!
//! `tests/fixtures/kubectl-*.pb` are request bodies kubectl v1.32.4 sent to a recording HTTP
//! server: `create namespace foo`; `create deployment web --image=skiff/busybox:1
//! --replicas=2`; `create deployment web0 --image=skiff/busybox:1 --replicas=0 --port=8080 --
//! sleep 3600`; `create service nodeport web --tcp=80:8080`; `create service nodeport web2
//! --tcp=80:http --node-port=30080`.

use serde_json::json;

use super::*;

/// A protobuf writer for hand-built messages.
#[derive(Default, Clone)]
struct Enc(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Enc {
    fn new() -> Self {
        Enc::default()
    }
    fn key(mut self, num: u32, wire: u8) -> Self {
        put_varint(&mut self.0, (u64::from(num) << 3) | u64::from(wire));
        self
    }
    fn varint(self, num: u32, v: u64) -> Self {
        let mut s = self.key(num, 0);
        put_varint(&mut s.0, v);
        s
    }
    /// An int32/int64 as protobuf writes it (negative: ten bytes, sign-extended).
    fn int(self, num: u32, v: i64) -> Self {
        self.varint(num, v as u64)
    }
    fn bytes(self, num: u32, b: &[u8]) -> Self {
        let mut s = self.key(num, 2);
        put_varint(&mut s.0, b.len() as u64);
        s.0.extend_from_slice(b);
        s
    }
    fn str(self, num: u32, v: &str) -> Self {
        self.bytes(num, v.as_bytes())
    }
    fn msg(self, num: u32, m: Enc) -> Self {
        self.bytes(num, &m.0)
    }
    fn entry(self, num: u32, k: &str, v: &str) -> Self {
        self.msg(num, Enc::new().str(1, k).str(2, v))
    }
    fn quantity_entry(self, num: u32, k: &str, v: &str) -> Self {
        self.msg(num, Enc::new().str(1, k).msg(2, Enc::new().str(1, v)))
    }
}

fn int_or_string_int(v: i64) -> Enc {
    Enc::new().varint(1, 0).int(2, v).str(3, "")
}

fn int_or_string_str(v: &str) -> Enc {
    Enc::new().varint(1, 1).varint(2, 0).str(3, v)
}

/// The whole body: magic + `runtime.Unknown`, as client-go writes it.
fn body(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    let env = Enc::new().msg(1, Enc::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
    b.extend_from_slice(&env.0);
    b
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unsupported(e: ProtoError) -> String {
    match e {
        ProtoError::Unsupported(m) => m,
        ProtoError::Malformed(m) => panic!("expected Unsupported, got Malformed({m})"),
    }
}

fn malformed_msg(e: ProtoError) -> String {
    match e {
        ProtoError::Malformed(m) => m,
        ProtoError::Unsupported(m) => panic!("expected Malformed, got Unsupported({m})"),
    }
}

#[test]
fn kubectl_create_namespace() {
    let v = decode(&fixture("kubectl-create-namespace.pb")).unwrap();
    assert_eq!(v, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}));
}

#[test]
fn kubectl_create_deployment() {
    let v = decode(&fixture("kubectl-create-deployment.pb")).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "busybox", "image": "skiff/busybox:1"}]}
                }
            }
        })
    );
    // `--replicas=0` is a pointer set to zero: kept. Command and container port come through.
    let v = decode(&fixture("kubectl-create-deployment-replicas0-port-command.pb")).unwrap();
    assert_eq!(v["spec"]["replicas"], json!(0), "{v}");
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"],
        json!([{"name": "busybox", "image": "skiff/busybox:1", "command": ["sleep", "3600"],
            "ports": [{"containerPort": 8080}]}])
    );
}

#[test]
fn kubectl_create_service_nodeport() {
    let v = decode(&fixture("kubectl-create-service-nodeport.pb")).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}]
            }
        }),
        "nodePort 0 (a Go value field) means unset: the server allocates one"
    );
    let v = decode(&fixture("kubectl-create-service-nodeport-named.pb")).unwrap();
    assert_eq!(
        v["spec"]["ports"],
        json!([{"name": "80-http", "protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080}])
    );
}

/// Metadata as client-go writes it: every value field present, most of them empty.
fn meta(name: &str) -> Enc {
    Enc::new()
        .str(1, name)
        .str(2, "")
        .str(3, "default")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .varint(7, 0)
        .msg(8, Enc::new())
        .entry(11, "app", "web")
        .entry(11, "tier", "front")
        .entry(12, "note", "")
}

#[test]
fn pod_with_special_types_maps_and_nested_messages() {
    let container = Enc::new()
        .str(1, "web")
        .str(2, "skiff/busybox:1")
        .str(3, "serve-hostname")
        .str(4, "-v")
        .str(4, "")
        .msg(6, Enc::new().str(1, "http").varint(2, 0).int(3, 8080).str(4, "TCP").str(5, ""))
        .msg(7, Enc::new().str(1, "A").str(2, "1"))
        .msg(
            7,
            Enc::new()
                .str(1, "FROM_CM")
                .str(2, "")
                .msg(3, Enc::new().msg(3, Enc::new().msg(1, Enc::new().str(1, "cfg")).str(2, "key").varint(3, 0))),
        )
        .msg(7, Enc::new().str(1, "NODE").msg(3, Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "spec.nodeName"))))
        .msg(
            8,
            Enc::new()
                .quantity_entry(1, "cpu", "500m")
                .quantity_entry(1, "memory", "64Mi")
                .quantity_entry(2, "cpu", "100m"),
        )
        .msg(9, Enc::new().str(1, "scratch").varint(2, 1).str(3, "/data").str(4, ""))
        // readinessProbe: the handler is inlined into the probe's JSON.
        .msg(
            11,
            Enc::new()
                .msg(
                    1,
                    Enc::new().msg(2, Enc::new().str(1, "/healthz").msg(2, int_or_string_str("http")).str(4, "HTTP")),
                )
                .int(2, 0)
                .int(4, 5),
        )
        .msg(10, Enc::new().msg(1, Enc::new().msg(3, Enc::new().msg(1, int_or_string_int(8080)).str(2, ""))))
        .str(14, "IfNotPresent")
        .varint(16, 0);
    let spec = Enc::new()
        // emptyDir is a pointer: present and empty selects the volume type.
        .msg(1, Enc::new().str(1, "scratch").msg(2, Enc::new().msg(2, Enc::new().str(1, ""))))
        .msg(
            1,
            Enc::new().str(1, "cfg").msg(
                2,
                Enc::new()
                    .msg(19, Enc::new().msg(1, Enc::new().str(1, "settings")).int(3, 0o644))
                    .msg(2, Enc::new().str(1, "").msg(2, Enc::new().str(1, "1Gi"))),
            ),
        )
        .msg(2, container)
        .str(3, "Always")
        .int(4, 0)
        .entry(7, "disk", "ssd")
        .varint(11, 0)
        .msg(14, Enc::new().int(2, 1000).bytes(4, &[5]).varint(4, 6))
        .msg(22, Enc::new().str(1, "k").str(2, "Exists").str(3, "").str(4, "NoSchedule").int(5, 30))
        .int(25, -5);
    let mut pod_meta = meta("web-0");
    pod_meta = pod_meta.msg(
        13,
        Enc::new().str(1, "ReplicaSet").str(3, "web-1").str(4, "u-1").str(5, "apps/v1").varint(6, 1).varint(7, 0),
    );
    pod_meta = pod_meta.msg(8, Enc::new().varint(1, 1_700_000_000).varint(2, 5));
    let raw = Enc::new().msg(1, pod_meta).msg(2, spec).msg(3, Enc::new().str(1, "").msg(7, Enc::new().varint(1, 0)));
    let v = decode(&body("v1", "Pod", raw)).unwrap();
    assert_eq!(
        v["metadata"],
        json!({"name": "web-0", "namespace": "default", "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": ""}, "creationTimestamp": "2023-11-14T22:13:20Z",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "uid": "u-1", "apiVersion": "apps/v1",
                "controller": true, "blockOwnerDeletion": false}]})
    );
    let spec = &v["spec"];
    assert_eq!(
        spec["volumes"],
        json!([{"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 0o644}, "emptyDir": {"sizeLimit": "1Gi"}}])
    );
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], json!(0), "a pointer set to 0 is kept");
    assert_eq!(spec["nodeSelector"], json!({"disk": "ssd"}));
    assert!(spec.get("hostNetwork").is_none(), "false value fields are dropped: {spec}");
    assert_eq!(spec["securityContext"], json!({"runAsUser": 1000, "supplementalGroups": [5, 6]}));
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}])
    );
    assert_eq!(spec["priority"], json!(-5));
    let c = &spec["containers"][0];
    assert_eq!(
        *c,
        json!({
            "name": "web", "image": "skiff/busybox:1", "command": ["serve-hostname"], "args": ["-v", ""],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "key", "optional": false}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}
            ],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
            "volumeMounts": [{"name": "scratch", "readOnly": true, "mountPath": "/data"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 8080}},
            "imagePullPolicy": "IfNotPresent"
        })
    );
    assert_eq!(v["status"], json!({"startTime": "1970-01-01T00:00:00Z"}), "a set pointer Time is kept");
}

#[test]
fn deployment_pointers_and_int_or_string() {
    let template = Enc::new()
        .msg(1, Enc::new().entry(11, "app", "web").msg(8, Enc::new()))
        .msg(2, Enc::new().msg(2, Enc::new().str(1, "c").str(2, "i")));
    let strategy = Enc::new()
        .str(1, "RollingUpdate")
        .msg(2, Enc::new().msg(1, int_or_string_int(0)).msg(2, int_or_string_str("25%")));
    let spec = Enc::new()
        .int(1, 0)
        .msg(2, Enc::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, strategy)
        .int(5, 0)
        .int(6, 3)
        .varint(7, 0)
        .int(9, 600);
    let status = Enc::new()
        .int(1, 0)
        .int(2, 0)
        .msg(6, Enc::new().str(1, "Available").str(2, "True").msg(6, Enc::new()).msg(7, Enc::new().varint(1, 86400)));
    let v = decode(&body("apps/v1", "Deployment", Enc::new().msg(1, meta("web")).msg(2, spec).msg(3, status))).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600
        })
    );
    assert_eq!(
        v["status"],
        json!({"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "1970-01-02T00:00:00Z"}]})
    );
}

#[test]
fn eviction_and_delete_options() {
    let opts = Enc::new().int(1, 0).msg(2, Enc::new().str(1, "u-1").str(2, "42")).str(4, "Foreground").str(5, "All");
    let raw = Enc::new().msg(1, Enc::new().str(1, "web-0").str(3, "team")).msg(2, opts.clone());
    let v = decode(&body("policy/v1", "Eviction", raw)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0", "namespace": "team"},
            "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u-1", "resourceVersion": "42"},
                "propagationPolicy": "Foreground", "dryRun": ["All"]}})
    );
    // deleteOptions is a pointer: present and empty stays.
    let v =
        decode(&body("policy/v1", "Eviction", Enc::new().msg(1, Enc::new().str(1, "p")).msg(2, Enc::new()))).unwrap();
    assert_eq!(v["deleteOptions"], json!({}));
    // DeleteOptions travels under whichever group version the client used.
    for av in ["v1", "meta.k8s.io/v1", "apps/v1"] {
        let v = decode(&body(av, "DeleteOptions", opts.clone())).unwrap();
        assert_eq!((v["apiVersion"].as_str(), v["gracePeriodSeconds"].as_i64()), (Some(av), Some(0)));
    }
}

#[test]
fn unknown_fields_are_refused_naming_message_number_and_place() {
    let spec = Enc::new().msg(2, Enc::new().str(1, "c")).str(99, "surprise");
    let e = unsupported(decode(&body("v1", "Pod", Enc::new().msg(2, spec))).unwrap_err());
    assert!(
        e.contains("field number 99") && e.contains("k8s.io.api.core.v1.PodSpec") && e.contains(" at spec "),
        "{e}"
    );
    // An NFS volume (a source Skiff does not decode) inside a Deployment's template.
    let vol = Enc::new().str(1, "v").msg(2, Enc::new().msg(7, Enc::new().str(1, "server")));
    let tmpl = Enc::new().msg(2, Enc::new().msg(1, Enc::new()).msg(1, vol));
    let e =
        unsupported(decode(&body("apps/v1", "Deployment", Enc::new().msg(2, Enc::new().msg(3, tmpl)))).unwrap_err());
    assert!(
        e.contains("field number 7") && e.contains("VolumeSource") && e.contains("spec.template.spec.volumes[1]"),
        "{e}"
    );
    // Inside the small special messages too.
    let svc = Enc::new().msg(2, Enc::new().msg(1, Enc::new().msg(4, Enc::new().varint(1, 0).varint(9, 1))));
    let e = malformed_msg(decode(&body("v1", "Service", svc)).unwrap_err());
    assert!(e.contains("field number 9") && e.contains("IntOrString") && e.contains("spec.ports[0].targetPort"), "{e}");
    // Kinds outside the table.
    let e = unsupported(decode(&body("v1", "ConfigMap", Enc::new())).unwrap_err());
    assert!(e.contains("v1 ConfigMap") && e.contains("apps/v1 Deployment") && e.contains("JSON"), "{e}");
    let e = unsupported(decode(&body("apps/v2", "Deployment", Enc::new())).unwrap_err());
    assert!(e.contains("apps/v2 Deployment"), "{e}");
}

#[test]
fn malformed_input_is_refused() {
    let mut good = MAGIC.to_vec();
    good.extend_from_slice(
        &Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "Namespace"))
            .msg(2, Enc::new().msg(1, Enc::new().str(1, "foo")))
            .0,
    );
    assert!(decode(&good).is_ok());
    // Every truncation of a valid body fails cleanly (no panic, no partial object), except the
    // one at the boundary before `raw`, which is a well-formed envelope of an empty object.
    let type_meta_end = MAGIC.len() + 2 + Enc::new().str(1, "v1").str(2, "Namespace").0.len();
    for cut in (0..good.len()).filter(|c| *c != type_meta_end) {
        assert!(decode(&good[..cut]).is_err(), "a body cut at {cut} bytes was accepted");
    }
    assert_eq!(decode(&good[..type_meta_end]).unwrap(), json!({"apiVersion": "v1", "kind": "Namespace"}));
    let e = malformed_msg(decode(&good[..good.len() - 1]).unwrap_err());
    assert!(e.contains("truncated"), "{e}");
    // Truncated inside a nested message whose own length is consistent.
    let e = malformed_msg(
        decode(&body("v1", "Namespace", Enc::new().msg(1, Enc(vec![0x0a, 0x05, b'f', b'o', b'o'])))).unwrap_err(),
    );
    assert!(e.contains("truncated") && e.contains("metadata.name"), "{e}");
    let e = malformed_msg(decode(b"{\"kind\":\"Namespace\"}").unwrap_err());
    assert!(e.contains("magic"), "{e}");
    // A string sent as a varint; a bool where a message belongs.
    let e = malformed_msg(decode(&body("v1", "Namespace", Enc::new().msg(1, Enc::new().varint(1, 5)))).unwrap_err());
    assert!(e.contains("metadata.name") && e.contains("wire type 0, expected 2"), "{e}");
    let e = malformed_msg(decode(&body("v1", "Namespace", Enc::new().varint(2, 1))).unwrap_err());
    assert!(e.contains("wire type"), "{e}");
    let e = malformed_msg(
        decode(&body("v1", "Namespace", Enc::new().msg(1, Enc::new().bytes(1, &[0xff, 0xfe])))).unwrap_err(),
    );
    assert!(e.contains("UTF-8"), "{e}");
    let e = malformed_msg(
        decode(&body("apps/v1", "Deployment", Enc::new().msg(2, Enc::new().int(1, i64::from(i32::MAX) + 1))))
            .unwrap_err(),
    );
    assert!(e.contains("int32") && e.contains("spec.replicas"), "{e}");
    let e = malformed_msg(
        decode(&body(
            "v1",
            "Service",
            Enc::new().msg(2, Enc::new().msg(1, Enc::new().msg(4, Enc::new().varint(1, 2)))),
        ))
        .unwrap_err(),
    );
    assert!(e.contains("IntOrString type 2"), "{e}");
    let mut bad_env = MAGIC.to_vec();
    bad_env.extend_from_slice(&Enc::new().str(3, "gzip").msg(1, Enc::new().str(1, "v1").str(2, "Namespace")).0);
    assert!(unsupported(decode(&bad_env).unwrap_err()).contains("gzip"));
}

/// A recursive schema, to exercise the depth bound the real (finite) schemas never reach.
static NEST: Message =
    Message { name: "test.Nest", fields: &[Field { num: 1, json: "child", ty: Ty::Msg(&NEST), card: Card::One }] };

#[test]
fn nesting_is_bounded() {
    let nest = |levels: usize| {
        let mut m = Enc::new();
        for _ in 0..levels {
            m = Enc::new().msg(1, m);
        }
        m.0
    };
    let mut out = Map::new();
    decode_message(&NEST, &nest(MAX_DEPTH - 1), &mut out, 1, &mut Path::default()).unwrap();
    let mut out = Map::new();
    let e = decode_message(&NEST, &nest(MAX_DEPTH + 5), &mut out, 1, &mut Path::default()).unwrap_err();
    assert!(malformed_msg(e).contains(&format!("nested deeper than {MAX_DEPTH}")));
}

/// Every schema reachable from the served kinds: field numbers unique, JSON names unique per
/// JSON object (inlined messages included), no `Inline` of a non-message.
#[test]
fn schemas_are_consistent() {
    fn names(m: &'static Message, into: &mut Vec<&'static str>) {
        for f in m.fields {
            match (f.card, f.ty) {
                (Card::Inline, Ty::Msg(sub)) => names(sub, into),
                (Card::Inline, _) => panic!("{}: inline field {} is not a message", m.name, f.num),
                _ => into.push(f.json),
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut todo: Vec<&'static Message> = KINDS.iter().map(|(_, _, m)| *m).collect();
    while let Some(m) = todo.pop() {
        if seen.contains(&m.name) {
            continue;
        }
        seen.push(m.name);
        let mut nums: Vec<u32> = m.fields.iter().map(|f| f.num).collect();
        nums.sort_unstable();
        nums.dedup();
        assert_eq!(nums.len(), m.fields.len(), "{}: duplicate field numbers", m.name);
        let mut json = Vec::new();
        names(m, &mut json);
        let n = json.len();
        json.sort_unstable();
        json.dedup();
        assert_eq!(json.len(), n, "{}: duplicate JSON names", m.name);
        todo.extend(m.fields.iter().filter_map(|f| match f.ty {
            Ty::Msg(sub) => Some(sub),
            _ => None,
        }));
    }
    assert!(seen.len() > 80, "only {} messages reachable", seen.len());
}
