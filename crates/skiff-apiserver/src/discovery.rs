//! Discovery documents (`/version`, `/api`, `/apis`, resource lists) and the OpenAPI v3
//! documents kubectl reads to learn that the server validates fields itself.

use serde_json::{json, Map, Value};
use skiff_api::registry::{self, ResourceInfo, RESOURCES};

/// The Kubernetes minor version whose API Skiff serves.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "32";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Groups other than the core group, in table order.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().into_iter().map(group_doc).collect::<Vec<_>>()})
}

/// `/apis/<group>`, or `None` when the group is not served.
pub fn api_group(group: &str) -> Option<Value> {
    if !groups().contains(&group) {
        return None;
    }
    let mut g = group_doc(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn categories(r: &ResourceInfo) -> Vec<&'static str> {
    match r.kind {
        "Pod" | "Service" | "Deployment" | "ReplicaSet" => vec!["all"],
        _ => vec![],
    }
}

/// `/api/v1` or `/apis/<group>/<version>`, or `None` when not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = registry::resources_in(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in resources {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        let cats = categories(r);
        if !cats.is_empty() {
            main["categories"] = json!(cats);
        }
        out.push(main);
        for sub in r.subresources {
            let mut s = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            });
            if *sub == "scale" {
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
                s["kind"] = json!("Scale");
            }
            out.push(s);
        }
        if r.kind == "Pod" {
            out.push(
                json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}),
            );
            // What a scheduler posts to bind a pod to a node.
            out.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding",
                "verbs": ["create"]}));
            // kubectl drain evicts through this when it is advertised (else it deletes).
            out.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy",
                "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}))
}

/// A stable tag for the OpenAPI documents (they change only with the binary).
fn doc_hash() -> String {
    format!("skiff-{}", env!("CARGO_PKG_VERSION")).replace('.', "-")
}

/// `/openapi/v3`: where each group-version's document lives.
/// The OpenAPI v2 document served: `swagger` and `info` only, no paths and no definitions.
pub fn openapi_v2_empty() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Skiff", "version": version()["gitVersion"]}, "paths": {}})
}

/// [`openapi_v2_empty`] as gnostic's `openapi_v2.Document` protobuf: `swagger` (field 1) and
/// `info` (field 2: `title` 1, `version` 2), each a length-delimited field.
pub fn openapi_v2_empty_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push(number << 3 | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    let doc = openapi_v2_empty();
    let mut info = Vec::new();
    field(&mut info, 1, doc["info"]["title"].as_str().unwrap_or_default().as_bytes());
    field(&mut info, 2, doc["info"]["version"].as_str().unwrap_or_default().as_bytes());
    let mut out = Vec::new();
    field(&mut out, 1, b"2.0");
    field(&mut out, 2, &info);
    out
}

pub fn openapi_v3_root() -> Value {
    let mut paths = Map::new();
    paths.insert("api/v1".into(), json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", doc_hash())}));
    for g in groups() {
        paths.insert(
            format!("apis/{g}/v1"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/v1?hash={}", doc_hash())}),
        );
    }
    json!({"paths": paths})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn gvk(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn ok_response(r: &ResourceInfo) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(r))}}}}})
}

fn schema_name(r: &ResourceInfo) -> String {
    let g =
        if r.group.is_empty() { "core".to_string() } else { r.group.split('.').next().unwrap_or(r.group).to_string() };
    format!("io.k8s.api.{g}.{}.{}", r.version, r.kind)
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`): every path and
/// operation Skiff serves, with the `fieldValidation` parameter on writes. Object schemas are
/// open (`x-kubernetes-preserve-unknown-fields`): the server validates.
pub fn openapi_v3_doc(group: &str, version: &str) -> Option<Value> {
    let resources = registry::resources_in(group, version);
    if resources.is_empty() {
        return None;
    }
    let fv = query_param(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.",
    );
    let dry = query_param("dryRun", "When present, indicates that modifications should not be persisted.");
    let fm = query_param("fieldManager", "A name associated with the actor making these changes.");
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in &resources {
        let base = r.api_prefix();
        let (coll, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (format!("{base}/{}", r.plural), format!("{base}/{}/{{name}}", r.plural))
        };
        let ext = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk(r), "responses": ok_response(r)});
        let mut post = ext("post");
        post["parameters"] = json!([fv, dry, fm]);
        let mut c = json!({"get": ext("list"), "post": post, "delete": ext("deletecollection")});
        c["get"]["parameters"] =
            json!([query_param("labelSelector", ""), query_param("fieldSelector", ""), query_param("watch", "")]);
        paths.insert(coll, c);
        let mut put = ext("put");
        put["parameters"] = json!([fv, dry, fm]);
        let mut patch = ext("patch");
        patch["parameters"] = json!([fv, dry, fm, query_param("force", "")]);
        paths.insert(item.clone(), json!({"get": ext("get"), "put": put, "patch": patch, "delete": ext("delete")}));
        for sub in r.subresources {
            let mut p = ext("patch");
            p["parameters"] = json!([fv, dry, fm]);
            if *sub == "scale" {
                p["x-kubernetes-group-version-kind"] =
                    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            }
            let mut g = ext("get");
            g["x-kubernetes-group-version-kind"] = p["x-kubernetes-group-version-kind"].clone();
            paths.insert(format!("{item}/{sub}"), json!({"get": g, "put": ext("put"), "patch": p}));
        }
        if r.kind == "Pod" {
            let mut post = ext("post");
            post["x-kubernetes-group-version-kind"] = json!({"group": "policy", "version": "v1", "kind": "Eviction"});
            post["parameters"] = json!([dry, fm]);
            paths.insert(format!("{item}/eviction"), json!({"post": post}));
        }
        schemas.insert(
            schema_name(r),
            json!({
                "type": "object",
                "description": format!("{} (validated by the server)", r.kind),
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk(r)],
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Skiff (Kubernetes API subset)", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_v2_is_an_empty_document_in_json_and_protobuf() {
        let doc = openapi_v2_empty();
        assert_eq!((&doc["swagger"], &doc["paths"]), (&json!("2.0"), &json!({})));
        assert!(doc.get("definitions").is_none());
        let version = doc["info"]["version"].as_str().unwrap();
        let mut info = vec![0x0a, 5];
        info.extend_from_slice(b"Skiff");
        info.extend_from_slice(&[0x12, version.len() as u8]);
        info.extend_from_slice(version.as_bytes());
        let mut want = vec![0x0a, 3, b'2', b'.', b'0', 0x12, info.len() as u8];
        want.extend_from_slice(&info);
        assert_eq!(openapi_v2_empty_protobuf(), want);
    }

    #[test]
    fn core_list_has_subresources_and_short_names() {
        let l = resource_list("", "v1").unwrap();
        let names: Vec<&str> = l["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"pods/log"));
        let binding = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/binding").unwrap();
        assert_eq!((&binding["kind"], &binding["verbs"]), (&json!("Binding"), &json!(["create"])));
        // What kubectl drain looks for to evict rather than delete.
        let ev = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!((&ev["group"], &ev["version"], &ev["kind"]), (&json!("policy"), &json!("v1"), &json!("Eviction")));
        assert_eq!(ev["verbs"], json!(["create"]));
        let pods = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(resource_list("nope", "v1").is_none());
    }

    #[test]
    fn scale_subresource_is_autoscaling_v1() {
        let l = resource_list("apps", "v1").unwrap();
        let s = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!(s["group"], "autoscaling");
        assert_eq!(s["kind"], "Scale");
    }

    #[test]
    fn openapi_advertises_field_validation_on_patch() {
        let doc = openapi_v3_doc("apps", "v1").unwrap();
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(p["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "fieldValidation" && x["in"] == "query"));
        let root = openapi_v3_root();
        assert!(root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1"));
    }
}
