//! HTTP routing: Kubernetes REST paths to object operations, content negotiation (JSON or
//! Table), watch streams, and errors as `Status` bodies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use skiff_api::patch::PatchType;
use skiff_api::registry::{self, ResourceInfo};
use skiff_api::status as st;
use skiff_api::{FieldSelector, LabelSelector};
use tokio::sync::mpsc;

use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::logs::{LogOptions, LogSource};
use crate::objects::{
    DeleteOptions, Deleted, FieldValidation, ListOptions, ObjectListJson, ObjectStore, ObjectWatch, Propagation,
    ServedEvent, Subresource, WatchEvent, WriteOptions,
};
use crate::protobuf;
use crate::table::{self, IncludeObject};

/// Largest request body read (objects themselves are limited to 1.5 MiB by validation).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Deadline of a non-watch request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a watch stays open (clients re-watch from their last resourceVersion).
pub const MAX_WATCH_SECONDS: u64 = 1800;
/// Interval of watch bookmarks when the client allows them.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// Watch chunks (one or more events each) buffered per stream before the watch waits for the
/// client.
const WATCH_BUFFER: usize = 64;
/// A watch's lines of one batch of events are sent in chunks of at least this much (the last
/// one of a batch less), so a watch buffers at most about `WATCH_BUFFER` times this plus one
/// object per chunk.
const WATCH_CHUNK_BYTES: usize = 64 << 10;

/// Shared state of the HTTP API.
pub struct ApiServer {
    pub store: Arc<ObjectStore>,
    pub logs: Option<Arc<dyn LogSource>>,
}

type App = Arc<ApiServer>;
type Params = Query<HashMap<String, String>>;

/// The Kubernetes API routes (discovery, OpenAPI, resources).
pub fn router(app: App) -> Router {
    Router::new()
        .route("/version", get(|| async { Json(discovery::version()) }))
        .route("/api", get(api_versions))
        .route("/apis", get(|| async { Json(discovery::api_group_list()) }))
        .route("/api/v1", get(|| async { Json(discovery::resource_list("", "v1")) }))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_version))
        .route("/openapi/v3", get(|| async { Json(discovery::openapi_v3_root()) }))
        .route("/openapi/v3/api/v1", get(|| async { openapi_doc("", "v1") }))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_group))
        .route("/openapi/v2", get(openapi_v2))
        .route("/api/v1/{*rest}", any(core_resource))
        .route("/apis/{group}/{version}/{*rest}", any(group_resource))
        .fallback(not_found_path)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

async fn api_versions(headers: HeaderMap) -> Json<Value> {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:6443").to_string();
    Json(discovery::api_versions(&host))
}

async fn api_group(Path(group): Path<String>) -> Response {
    match discovery::api_group(&group) {
        Some(v) => Json(v).into_response(),
        None => not_found_path().await,
    }
}

async fn group_version(Path((group, version)): Path<(String, String)>) -> Response {
    match discovery::resource_list(&group, &version) {
        Some(v) => Json(v).into_response(),
        None => not_found_path().await,
    }
}

fn openapi_doc(group: &str, version: &str) -> Response {
    match discovery::openapi_v3_doc(group, version) {
        Some(v) => Json(v).into_response(),
        None => ApiError::from(st::Status::failure(
            skiff_api::StatusReason::NotFound,
            "the server could not find the requested resource",
            None,
        ))
        .into_response(),
    }
}

async fn openapi_group(Path((group, version)): Path<(String, String)>) -> Response {
    openapi_doc(&group, &version)
}

/// Skiff publishes its schemas as OpenAPI v3; `/openapi/v2` answers a document with no paths
/// and no definitions (JSON, or the protobuf kubectl asks for). kubectl reads it only to
/// validate kinds the v3 documents do not list; finding none there, it skips to its own
/// error for a kind the server does not serve (`no matches for kind "Widget" in version
/// "v1"`), where a 404 made it fail with `failed to download openapi`.
async fn openapi_v2(headers: HeaderMap) -> Response {
    const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains(PROTOBUF) {
        // Not the Accept type itself: client-go parses the answer's type, and the `@` in
        // that one is not a valid media type.
        ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], discovery::openapi_v2_empty_protobuf())
            .into_response()
    } else {
        Json(discovery::openapi_v2_empty()).into_response()
    }
}

async fn not_found_path() -> Response {
    ApiError::from(st::Status::failure(
        skiff_api::StatusReason::NotFound,
        "the server could not find the requested resource",
        None,
    ))
    .into_response()
}

/// Where a resource request points.
#[derive(Debug)]
struct Target {
    res: &'static ResourceInfo,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &str) -> ApiResult<Target> {
    let nf = || {
        ApiError::from(st::Status::failure(
            skiff_api::StatusReason::NotFound,
            "the server could not find the requested resource",
            None,
        ))
    };
    if version != "v1" {
        return Err(nf());
    }
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let lookup = |plural: &str| registry::lookup_plural(group, plural).ok_or_else(nf);
    let t = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        res,
        ns: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    match segs.as_slice() {
        [plural] => Ok(t(lookup(plural)?, None, None, None)),
        ["namespaces", ns, plural] if group.is_empty() || registry::lookup_plural(group, plural).is_some() => {
            match registry::lookup_plural(group, plural) {
                Some(r) if r.namespaced => Ok(t(r, Some(ns), None, None)),
                // `/api/v1/namespaces/<name>/status` (and `/finalize`); any other unknown
                // segment is an unserved resource: 404, whatever the verb.
                _ if group.is_empty() && registry::NAMESPACES.has_subresource(plural) => {
                    Ok(t(&registry::NAMESPACES, None, Some(ns), Some(plural)))
                }
                _ => Err(nf()),
            }
        }
        ["namespaces", ns, plural, name] => {
            let r = lookup(plural)?;
            if !r.namespaced {
                return Err(nf());
            }
            Ok(t(r, Some(ns), Some(name), None))
        }
        ["namespaces", ns, plural, name, sub] => {
            let r = lookup(plural)?;
            if !r.namespaced {
                return Err(nf());
            }
            Ok(t(r, Some(ns), Some(name), Some(sub)))
        }
        [plural, name] => {
            let r = lookup(plural)?;
            if r.namespaced {
                return Err(nf());
            }
            Ok(t(r, None, Some(name), None))
        }
        [plural, name, sub] => {
            let r = lookup(plural)?;
            if r.namespaced {
                return Err(nf());
            }
            Ok(t(r, None, Some(name), Some(sub)))
        }
        _ => Err(nf()),
    }
}

async fn core_resource(
    State(app): State<App>,
    Path(rest): Path<String>,
    method: Method,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(app, "", "v1", &rest, method, q, headers, body).await
}

async fn group_resource(
    State(app): State<App>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(app, &group, &version, &rest, method, q, headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    app: App,
    group: &str,
    version: &str,
    rest: &str,
    method: Method,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = match parse_target(group, version, rest) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let is_watch =
        method == Method::GET && target.name.is_none() && q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let is_log = target.sub.as_deref() == Some("log");
    if is_watch {
        return match watch(app, target, &q, &headers).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    }
    if is_log {
        return match logs(app, target, &q).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, handle(app, target, method, &q, &headers, body)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::from(st::timeout("the request did not complete within 60s")).into_response(),
    }
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers.get_all("accept").iter().filter_map(|v| v.to_str().ok()).any(|a| a.contains("as=Table"))
}

fn selectors(q: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = match q.get("labelSelector") {
        Some(s) => {
            LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?
        }
        None => LabelSelector::everything(),
    };
    let fields = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.0))?,
        None => FieldSelector::everything(),
    };
    Ok((labels, fields))
}

fn write_options(q: &HashMap<String, String>) -> ApiResult<WriteOptions> {
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, Strict (got {other:?})"
            )))
        }
    };
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => return Err(ApiError::bad_request(format!("dryRun must be All (got {other:?})"))),
    };
    Ok(WriteOptions { dry_run, field_validation, ..Default::default() })
}

/// The media type of a request's `Content-Type` (without parameters), `application/json` when absent.
fn media_type(headers: &HeaderMap) -> &str {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .unwrap_or("application/json")
}

/// A request body as JSON: a JSON body, or a Kubernetes protobuf body (what kubectl's typed
/// clients send) decoded into the same JSON.
fn json_body(body: &Bytes, headers: &HeaderMap) -> ApiResult<Value> {
    let ct = media_type(headers);
    if ct.eq_ignore_ascii_case(protobuf::CONTENT_TYPE) {
        check_body_size(body)?;
        return Ok(protobuf::decode(body)?);
    }
    if !(ct.starts_with("application/json") || ct.is_empty() || ct.starts_with("*/*")) {
        return Err(ApiError::from(st::unsupported_media_type(ct)));
    }
    parse_json(body)
}

/// `PATCH` with `application/apply-patch+yaml` (`kubectl apply --server-side`): the body, YAML
/// or JSON, is the manager's whole intended configuration ([`ObjectStore::apply`]). 201 when it
/// created the object.
async fn server_side_apply(
    store: &ObjectStore,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    target: &Target,
    q: &HashMap<String, String>,
    body: &Bytes,
) -> ApiResult<Response> {
    if target.sub.is_some() {
        return Err(ApiError::bad_request(format!(
            "server-side apply is served for {} themselves, not their {} subresource",
            res.plural,
            target.sub.as_deref().unwrap_or_default()
        )));
    }
    let manager = q.get("fieldManager").map(String::as_str).unwrap_or("");
    if manager.is_empty() {
        return Err(ApiError::bad_request("fieldManager is required for apply requests (e.g. ?fieldManager=kubectl)"));
    }
    if manager.len() > 128 {
        return Err(ApiError::bad_request("fieldManager must be at most 128 characters"));
    }
    let force = match q.get("force").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("force must be true or false (got {other:?})"))),
    };
    check_body_size(body)?;
    let applied: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the apply configuration is neither JSON nor UTF-8 YAML"))?;
            yaml_serde::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("the apply configuration is not valid YAML: {e}")))?
        }
    };
    if !applied.is_object() {
        return Err(ApiError::bad_request("the apply configuration must be an object"));
    }
    let (w, created) = store.apply(res, ns, name, applied, manager, force, &write_options(q)?).await?;
    Ok(respond(if created { StatusCode::CREATED } else { StatusCode::OK }, w.object, &w.warnings))
}

fn check_body_size(body: &Bytes) -> ApiResult<()> {
    if body.len() > skiff_api::validation::MAX_OBJECT_BYTES + 64 * 1024 {
        return Err(ApiError::from(st::request_entity_too_large(&format!(
            "the request body is {} bytes, the limit is {}",
            body.len(),
            skiff_api::validation::MAX_OBJECT_BYTES
        ))));
    }
    Ok(())
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    check_body_size(body)?;
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// A `…List` response around items already serialized: the members in the order a `Value`
/// map serializes them (apiVersion, items, kind, metadata), so the bytes are the same.
fn list_response(res: &ResourceInfo, list: ObjectListJson) -> Response {
    let mut meta = json!({"resourceVersion": list.resource_version.to_string()});
    if let Some(c) = list.continue_token {
        meta["continue"] = json!(c);
    }
    let mut body = Vec::with_capacity(list.items.len() + 256);
    body.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut body, res.api_version().as_str()).expect("a string serializes");
    body.extend_from_slice(b",\"items\":");
    body.extend_from_slice(&list.items);
    body.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut body, &format!("{}List", res.kind)).expect("a string serializes");
    body.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut body, &meta).expect("JSON values serialize");
    body.push(b'}');
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn respond(code: StatusCode, v: Value, warnings: &[String]) -> Response {
    let mut r = (code, Json(v)).into_response();
    for w in warnings {
        if let Ok(h) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            r.headers_mut().append("warning", h);
        }
    }
    r
}

fn subresource(target: &Target) -> ApiResult<Subresource> {
    match target.sub.as_deref() {
        None => Ok(Subresource::Main),
        Some(s) if target.res.has_subresource(s) => {
            Ok(if s == "scale" { Subresource::Scale } else { Subresource::Status })
        }
        Some(s) => Err(ApiError::from(st::Status::failure(
            skiff_api::StatusReason::NotFound,
            format!("{} \"{s}\" is not a served subresource", target.res.qualified_plural()),
            None,
        ))),
    }
}

async fn handle(
    app: App,
    target: Target,
    method: Method,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let res = target.res;
    let store = &app.store;
    let ns = target.ns.as_deref();
    let verb_err = |verb: &str| ApiError::from(st::method_not_allowed(res, verb));
    if let Some(sub @ ("exec" | "attach" | "portforward")) = target.sub.as_deref().filter(|_| res.kind == "Pod") {
        // kubectl exec/attach/port-forward: say what is missing rather than which verb.
        return Err(ApiError::from(st::Status::failure(
            skiff_api::StatusReason::MethodNotAllowed,
            format!("pods/{sub} is not served by Skiff: its agents run no commands or streams for clients (exec, attach and port-forward); pods/log is served"),
            None,
        )));
    }
    match (&method, target.name.as_deref()) {
        (&Method::GET, None) => {
            if target.sub.is_some() {
                return Err(verb_err("get"));
            }
            let (labels, fields) = selectors(q)?;
            let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
            let serializable = q.get("resourceVersion").is_some_and(|rv| rv == "0");
            let opts = ListOptions { labels, fields, limit, continue_token: q.get("continue").cloned(), serializable };
            if wants_table(headers) {
                let list = store.list(res, ns, &opts).await?;
                let include = IncludeObject::parse(q.get("includeObject").map(String::as_str).unwrap_or(""));
                return Ok(Json(table::table(
                    res,
                    &list.items,
                    include,
                    true,
                    Some(list.resource_version.to_string()),
                    list.continue_token,
                ))
                .into_response());
            }
            // The items are written from their stored bytes, not decoded and serialized again.
            let list = store.list_json(res, ns, &opts).await?;
            Ok(list_response(res, list))
        }
        (&Method::GET, Some(name)) => {
            let sub = subresource(&target)?;
            let serializable = q.get("resourceVersion").is_some_and(|rv| rv == "0");
            if sub == Subresource::Main && !wants_table(headers) {
                // Written from the stored bytes, not decoded and serialized again.
                let body = store.get_json(res, ns, name, serializable).await?;
                let mut r = Response::new(Body::from(body));
                r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                return Ok(r);
            }
            let obj = store.get(res, ns, name, serializable).await?;
            let obj = if sub == Subresource::Scale { crate::objects::scale_of(res, &obj) } else { obj };
            if wants_table(headers) && sub == Subresource::Main {
                let include = IncludeObject::parse(q.get("includeObject").map(String::as_str).unwrap_or(""));
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
                return Ok(Json(table::table(res, &[obj], include, true, rv, None)).into_response());
            }
            Ok(Json(obj).into_response())
        }
        (&Method::POST, None) => {
            if target.sub.is_some() {
                return Err(verb_err("create"));
            }
            let obj = json_body(&body, headers)?;
            let w = store.create(res, ns, obj, &write_options(q)?).await?;
            Ok(respond(StatusCode::CREATED, w.object, &w.warnings))
        }
        (&Method::POST, Some(name)) if res.kind == "Pod" && target.sub.as_deref() == Some("binding") => {
            let b = json_body(&body, headers)?;
            let node = b
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("a Binding needs target.name (the node)"))?;
            let uid = b.pointer("/metadata/uid").and_then(Value::as_str);
            let rv = b.pointer("/metadata/resourceVersion").and_then(Value::as_str);
            store.bind(ns.unwrap_or("default"), name, uid, rv, node).await?;
            Ok(respond(
                StatusCode::CREATED,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                &[],
            ))
        }
        (&Method::POST, Some(name)) if res.kind == "Pod" && target.sub.as_deref() == Some("eviction") => {
            evict(store, ns.unwrap_or("default"), name, q, headers, &body).await
        }
        (&Method::PUT, Some(name)) => {
            let sub = subresource(&target)?;
            let obj = json_body(&body, headers)?;
            let w = store.update(res, ns, name, obj, sub, &write_options(q)?).await?;
            Ok(respond(StatusCode::OK, w.object, &w.warnings))
        }
        (&Method::PATCH, Some(name)) => {
            let sub = subresource(&target)?;
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            if ct.starts_with("application/apply-patch+yaml") || ct.starts_with("application/apply-patch+json") {
                return server_side_apply(store, res, ns, name, &target, q, &body).await;
            }
            let ptype = PatchType::from_content_type(ct).map_err(|_| ApiError::from(st::unsupported_media_type(ct)))?;
            let doc = parse_json(&body)?;
            let w = store.patch(res, ns, name, ptype, &doc, sub, &write_options(q)?).await?;
            Ok(respond(StatusCode::OK, w.object, &w.warnings))
        }
        (&Method::DELETE, Some(name)) => {
            if target.sub.is_some() {
                return Err(verb_err("delete"));
            }
            let opts = delete_options(q, &body, headers)?;
            match store.delete(res, ns, name, &opts).await? {
                Deleted::Gone(o) => Ok(Json(o).into_response()),
                Deleted::Pending(o) => Ok((StatusCode::OK, Json(o)).into_response()),
            }
        }
        (&Method::DELETE, None) => {
            let (labels, fields) = selectors(q)?;
            let opts = delete_options(q, &body, headers)?;
            let list =
                store.list(res, ns, &ListOptions { labels, fields, serializable: false, ..Default::default() }).await?;
            let mut items = Vec::new();
            for o in list.items {
                let o_ns = crate::meta::meta_str(&o, "namespace").map(str::to_string);
                match store.delete(res, o_ns.as_deref(), crate::meta::name_of(&o), &opts).await {
                    Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => items.push(o),
                    Err(e) if e.code() == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Json(json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
                "metadata": {"resourceVersion": store.node().revision().to_string()}, "items": items}))
            .into_response())
        }
        (m, _) => Err(verb_err(&m.as_str().to_lowercase())),
    }
}

/// The `DeleteOptions` of a DELETE: query parameters, then the body (JSON, or protobuf from
/// kubectl's typed clients).
fn delete_options(q: &HashMap<String, String>, body: &Bytes, headers: &HeaderMap) -> ApiResult<DeleteOptions> {
    let b: Value = if body.is_empty() {
        json!({})
    } else if media_type(headers).eq_ignore_ascii_case(protobuf::CONTENT_TYPE) {
        json_body(body, headers)?
    } else {
        parse_json(body)?
    };
    delete_options_from(q, &b, "")
}

/// A `DeleteOptions` object (`prefix` names where it sits in the request body, for errors) with
/// the query parameters taking precedence.
fn delete_options_from(q: &HashMap<String, String>, b: &Value, prefix: &str) -> ApiResult<DeleteOptions> {
    let empty = json!({});
    let b = if b.is_null() { &empty } else { b };
    if !b.is_object() {
        return Err(ApiError::bad_request(format!("{}must be a DeleteOptions object", field_label(prefix, ""))));
    }
    let wrong =
        |field: &str, want: &str| ApiError::bad_request(format!("{} must be {want}", field_label(prefix, field)));
    let grace = match q.get("gracePeriodSeconds") {
        Some(g) => {
            Some(g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?)
        }
        None => match b.get("gracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| wrong("gracePeriodSeconds", "an integer"))?),
        },
    };
    let body_str = |field: &str| -> ApiResult<Option<String>> {
        match b.pointer(&format!("/{}", field.replace('.', "/"))) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(field, "a string")),
        }
    };
    let prop = match q.get("propagationPolicy") {
        Some(p) => Some(p.clone()),
        None => body_str("propagationPolicy")?,
    };
    let propagation = match prop.as_deref() {
        None | Some("") => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(p) => {
            return Err(ApiError::from(
                skiff_api::ValidationErrors {
                    kind: "DeleteOptions".into(),
                    group: String::new(),
                    name: String::new(),
                    errors: vec![skiff_api::FieldError::not_supported(
                        field_label(prefix, "propagationPolicy"),
                        p,
                        &["Foreground", "Background", "Orphan"],
                    )],
                }
                .to_status(),
            ))
        }
    };
    let orphan = match b.get("orphanDependents") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| wrong("orphanDependents", "a boolean"))?),
    };
    let propagation = match (propagation, orphan) {
        (None, Some(true)) => Some(Propagation::Orphan),
        (p, _) => p,
    };
    let dry_run_body = match b.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => {
            if a.iter().any(|x| !x.is_string()) {
                return Err(wrong("dryRun", "a list of strings"));
            }
            a.iter().any(|x| x == "All")
        }
        Some(_) => return Err(wrong("dryRun", "a list of strings")),
    };
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All") || dry_run_body;
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        propagation,
        precondition_uid: body_str("preconditions.uid")?,
        precondition_resource_version: body_str("preconditions.resourceVersion")?,
        dry_run,
    })
}

/// `deleteOptions.gracePeriodSeconds` / `gracePeriodSeconds` / `deleteOptions` for messages.
fn field_label(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, true) => "the body ".to_string(),
        (true, false) => field.to_string(),
        (false, true) => format!("{prefix} "),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// `POST pods/NAME/eviction` with a `policy/v1` Eviction (JSON or protobuf): deletes the pod
/// gracefully, exactly as a DELETE with the Eviction's `deleteOptions` would (grace period,
/// preconditions, dry run), and answers 201 with a Success `Status` as Kubernetes does.
/// PodDisruptionBudgets are not served, so an eviction is never refused for availability.
async fn evict(
    store: &Arc<ObjectStore>,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let ev = if body.is_empty() { json!({}) } else { json_body(body, headers)? };
    let Some(obj) = ev.as_object() else {
        return Err(ApiError::bad_request("the body of pods/eviction must be a policy/v1 Eviction object"));
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("Eviction");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("policy/v1");
    if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the body of pods/eviction must be a policy/v1 Eviction, not {api_version} {kind}"
        )));
    }
    if let Some(n) = ev.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object ({name:?} vs {n:?})"
            )));
        }
    }
    if let Some(n) = ev.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        if n != ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object does not match the namespace sent on the request ({ns:?} vs {n:?})"
            )));
        }
    }
    let opts = match ev.get("deleteOptions") {
        None | Some(Value::Null) => json!({}),
        Some(o) => o.clone(),
    };
    // Only dryRun applies from the query of a POST; the rest comes from the body.
    let query: HashMap<String, String> =
        q.iter().filter(|(k, _)| *k == "dryRun").map(|(k, v)| (k.clone(), v.clone())).collect();
    let opts = delete_options_from(&query, &opts, "deleteOptions")?;
    store.delete(&registry::PODS, Some(ns), name, &opts).await?;
    Ok(respond(
        StatusCode::CREATED,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("JSON serializes");
    b.push(b'\n');
    Bytes::from(b)
}

/// Appends one watch line `{"type": …, "object": …}` to `buf`, serialized without copying the
/// object.
fn push_event_line(buf: &mut Vec<u8>, kind: &str, object: &Value) {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    serde_json::to_writer(&mut *buf, &Line { kind, object }).expect("JSON serializes");
    buf.push(b'\n');
}

/// [`push_event_line`] of `e`, its object written from its stored version
/// ([`ServedEvent::write_object`]): the same bytes, and no decoding where no selector needed it.
fn push_served_event_line(buf: &mut Vec<u8>, res: &ResourceInfo, e: &ServedEvent) -> ApiResult<()> {
    let start = buf.len();
    buf.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut *buf, e.kind).expect("a string serializes");
    buf.extend_from_slice(b",\"object\":");
    if let Err(err) = e.write_object(res, buf) {
        buf.truncate(start);
        return Err(err);
    }
    buf.extend_from_slice(b"}\n");
    Ok(())
}

/// One batch of a watch's events: decoded for a table, else as stored.
enum Batch {
    Table(Vec<WatchEvent>),
    Served(Vec<ServedEvent>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Table(events) => events.len(),
            Batch::Served(events) => events.len(),
        }
    }
}

async fn next_batch(w: &mut ObjectWatch, as_table: bool) -> ApiResult<Batch> {
    Ok(if as_table { Batch::Table(w.next().await?) } else { Batch::Served(w.next_served().await?) })
}

async fn watch(app: App, target: Target, q: &HashMap<String, String>, headers: &HeaderMap) -> ApiResult<Response> {
    let res = target.res;
    let (labels, fields) = selectors(q)?;
    let as_table = wants_table(headers);
    let include = IncludeObject::parse(q.get("includeObject").map(String::as_str).unwrap_or(""));
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
    let timeout =
        q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(MAX_WATCH_SECONDS).min(MAX_WATCH_SECONDS);
    let mut w = app
        .store
        .watch(res, target.ns.as_deref(), q.get("resourceVersion").map(String::as_str), labels, fields)
        .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(WATCH_BUFFER);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
        tick.tick().await;
        let mut first = true;
        loop {
            tokio::select! {
                r = next_batch(&mut w, as_table) => match r {
                    Ok(batch) => {
                        // The lines of one batch of events go out together, in chunks of about
                        // WATCH_CHUNK_BYTES: one message, one HTTP chunk and one write for many
                        // events when a commit changed many objects.
                        let mut buf = Vec::new();
                        for i in 0..batch.len() {
                            match &batch {
                                Batch::Table(events) => {
                                    let e = &events[i];
                                    let table = table::table(res, std::slice::from_ref(&*e.object), include, first, None, None);
                                    first = false;
                                    push_event_line(&mut buf, e.kind, &table);
                                }
                                Batch::Served(events) => {
                                    if let Err(e) = push_served_event_line(&mut buf, res, &events[i]) {
                                        // The lines before it go first: the client saw those events.
                                        if !buf.is_empty() && tx.send(Ok(Bytes::from(std::mem::take(&mut buf)))).await.is_err() {
                                            return;
                                        }
                                        let _ = tx.send(Ok(line(&json!({"type": "ERROR", "object": e.status()})))).await;
                                        return;
                                    }
                                }
                            }
                            if buf.len() >= WATCH_CHUNK_BYTES && tx.send(Ok(Bytes::from(std::mem::take(&mut buf)))).await.is_err() {
                                return;
                            }
                        }
                        if !buf.is_empty() && tx.send(Ok(Bytes::from(buf))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Ok(line(&json!({"type": "ERROR", "object": e.status()})))).await;
                        return;
                    }
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(res, w.bookmark_revision()))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // Like Kubernetes: a last bookmark before the timeout closes the watch, so
                    // the client resumes from there instead of relisting.
                    if bookmarks {
                        let _ = tx.send(Ok(bookmark(res, w.bookmark_revision()))).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = Response::new(body);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache, private"));
    Ok(r)
}

/// A `BOOKMARK` watch line: every event up to `revision` has been sent.
fn bookmark(res: &ResourceInfo, revision: u64) -> Bytes {
    let obj = json!({"kind": res.kind, "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": revision.to_string()}});
    line(&json!({"type": "BOOKMARK", "object": obj}))
}

async fn logs(app: App, target: Target, q: &HashMap<String, String>) -> ApiResult<Response> {
    if target.res.kind != "Pod" {
        return Err(ApiError::from(st::method_not_allowed(target.res, "log")));
    }
    let name = target.name.as_deref().unwrap_or_default();
    let pod = app.store.get(target.res, target.ns.as_deref(), name, false).await?;
    let opts = LogOptions {
        container: q.get("container").cloned().filter(|c| !c.is_empty()),
        follow: q.get("follow").is_some_and(|f| f == "true" || f == "1"),
        tail_lines: q.get("tailLines").and_then(|t| t.parse().ok()),
        previous: q.get("previous").is_some_and(|f| f == "true" || f == "1"),
        timestamps: q.get("timestamps").is_some_and(|f| f == "true" || f == "1"),
    };
    let Some(src) = app.logs.clone() else {
        return Err(ApiError::from(st::service_unavailable("this API server has no route to node agents for logs")));
    };
    let body = src.logs(&pod, opts).await?;
    let mut r = Response::new(body);
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubernetes_paths() {
        let t = parse_target("", "v1", "namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            (t.res.plural, t.ns.as_deref(), t.name.as_deref(), t.sub.as_deref()),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = parse_target("", "v1", "pods").unwrap();
        assert_eq!((t.res.plural, t.ns, t.name), ("pods", None, None));
        let t = parse_target("", "v1", "namespaces/kube-system").unwrap();
        assert_eq!((t.res.plural, t.name.as_deref()), ("namespaces", Some("kube-system")));
        let t = parse_target("", "v1", "namespaces/x/status").unwrap();
        assert_eq!((t.res.plural, t.name.as_deref(), t.sub.as_deref()), ("namespaces", Some("x"), Some("status")));
        let t = parse_target("apps", "v1", "namespaces/default/deployments").unwrap();
        assert_eq!((t.res.plural, t.ns.as_deref()), ("deployments", Some("default")));
        assert_eq!(parse_target("", "v1", "widgets").unwrap_err().code(), 404);
        assert_eq!(parse_target("", "v1", "pods/web").unwrap_err().code(), 404, "pods are namespaced");
        assert_eq!(parse_target("apps", "v2", "deployments").unwrap_err().code(), 404);
    }
}
