//! `Client`: async Kubernetes REST calls (CRUD, patch, Table, watch and log streams) with deadlines.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;
use skiff_api::{PatchType, ResourceInfo};

use crate::error::{Error, Result, ServerError};

/// `Accept` for plain JSON objects.
pub const ACCEPT_JSON: &str = "application/json";
/// `Accept` asking for server-side `Table` output (what kubectl sends for `get`), JSON as fallback.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
/// Largest response body read into memory (bigger than any list Skiff serves in practice).
pub const MAX_BODY_BYTES: usize = 256 << 20;
/// Largest single watch event line.
pub const MAX_WATCH_LINE_BYTES: usize = 16 << 20;

/// Query parameters of list, Table and watch requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl ListParams {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(l) = self.label_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("labelSelector", l.clone()));
        }
        if let Some(f) = self.field_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("fieldSelector", f.clone()));
        }
        q
    }
}

/// `DeleteOptions` sent with a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
}

impl DeleteParams {
    /// The `DeleteOptions` body of a DELETE.
    pub fn body(&self) -> Value {
        let mut b = self.options();
        b["kind"] = "DeleteOptions".into();
        b["apiVersion"] = "v1".into();
        b
    }

    /// The options alone, as an Eviction's `deleteOptions` carries them.
    pub fn options(&self) -> Value {
        let mut b = serde_json::json!({});
        if let Some(p) = &self.propagation_policy {
            b["propagationPolicy"] = Value::String(p.clone());
        }
        if let Some(g) = self.grace_period_seconds {
            b["gracePeriodSeconds"] = g.into();
        }
        b
    }
}

/// Query parameters of `pods/NAME/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogParams {
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub previous: bool,
}

/// One event of a watch stream (`ERROR` events arrive as `Err(Error::Server)` instead).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`.
    pub event_type: String,
    /// The object (a one-row `Table` when the watch asked for tables).
    pub object: Value,
}

pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;
/// Chunks of a streamed response body (pod logs).
pub type ByteStream = BoxStream<'static, Result<Vec<u8>>>;

/// The URL path of a resource: collection when `name` is `None`, all namespaces when `ns` is
/// `None` for a namespaced resource; `sub` appends a subresource (`scale`, `status`, `log`).
pub fn resource_path(res: &ResourceInfo, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
    let mut p = res.api_prefix();
    if res.namespaced {
        if let Some(ns) = ns {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
    }
    p.push('/');
    p.push_str(res.plural);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
        if let Some(s) = sub {
            p.push('/');
            p.push_str(s);
        }
    }
    p
}

/// An HTTP client for one Kubernetes-compatible API server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl Client {
    /// `base` is `http://host:port` (see [`crate::kubeconfig::normalize_server`]); `timeout` is the
    /// deadline of every request except the body of watch and follow streams.
    pub fn new(base: &str, timeout: Duration) -> Result<Self> {
        let base = crate::kubeconfig::normalize_server(base)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { base, http, timeout })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn map_err(&self, url: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout { url: url.to_string(), timeout_ms: self.timeout.as_millis() as u64 }
        } else if e.is_connect() {
            Error::ConnectionRefused { host: self.host() }
        } else {
            Error::Transport { url: url.to_string(), message: error_chain(&e) }
        }
    }

    /// Send a request; non-2xx answers become [`Error::Server`]. With `stream`, only the
    /// response headers are under the deadline.
    async fn send(&self, req: reqwest::RequestBuilder, url: &str, stream: bool) -> Result<reqwest::Response> {
        let resp = if stream {
            match tokio::time::timeout(self.timeout, req.send()).await {
                Ok(r) => r.map_err(|e| self.map_err(url, e))?,
                Err(_) => {
                    return Err(Error::Timeout { url: url.to_string(), timeout_ms: self.timeout.as_millis() as u64 })
                }
            }
        } else {
            req.timeout(self.timeout).send().await.map_err(|e| self.map_err(url, e))?
        };
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(resp);
        }
        let body = match tokio::time::timeout(self.timeout, self.read_body(resp, url)).await {
            Ok(Ok(b)) => b,
            _ => Vec::new(),
        };
        Err(Error::Server(ServerError::from_response(code, &body)))
    }

    async fn read_body(&self, mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.map_err(url, e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::Decode { url: url.into(), message: format!("body over {MAX_BODY_BYTES} bytes") });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Send a request and decode its JSON answer.
    async fn json(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value> {
        let resp = self.send(req, url, false).await?;
        let body = self.read_body(resp, url).await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode { url: url.into(), message: e.to_string() })
    }

    fn request(&self, method: reqwest::Method, path: &str, accept: &str) -> (reqwest::RequestBuilder, String) {
        let url = self.url(path);
        (self.http.request(method, &url).header(reqwest::header::ACCEPT, accept), url)
    }

    /// `GET` one object.
    pub async fn get(&self, res: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        self.get_subresource(res, ns, name, None).await
    }

    /// `GET` one object or its subresource (`scale`, `status`).
    pub async fn get_subresource(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::GET, &resource_path(res, ns, Some(name), sub), ACCEPT_JSON);
        self.json(req, &url).await
    }

    /// `GET` a collection (`ns: None` on a namespaced resource lists all namespaces).
    pub async fn list(&self, res: &ResourceInfo, ns: Option<&str>, params: &ListParams) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::GET, &resource_path(res, ns, None, None), ACCEPT_JSON);
        self.json(req.query(&params.query()), &url).await
    }

    /// `GET` as a server-side `Table`: the collection when `name` is `None`, else one object.
    pub async fn table(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::GET, &resource_path(res, ns, name, None), ACCEPT_TABLE);
        let req = if name.is_none() { req.query(&params.query()) } else { req };
        self.json(req, &url).await
    }

    /// `POST` a new object to its collection.
    pub async fn create(&self, res: &ResourceInfo, ns: Option<&str>, body: &Value) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::POST, &resource_path(res, ns, None, None), ACCEPT_JSON);
        self.json(req.json(body), &url).await
    }

    /// `PUT` a whole object (its `resourceVersion`, when set, is a compare-and-swap).
    pub async fn replace(&self, res: &ResourceInfo, ns: Option<&str>, name: &str, body: &Value) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::PUT, &resource_path(res, ns, Some(name), None), ACCEPT_JSON);
        self.json(req.json(body), &url).await
    }

    /// `PATCH` an object or a subresource with the given patch type.
    pub async fn patch(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        patch_type: PatchType,
        body: &Value,
    ) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::PATCH, &resource_path(res, ns, Some(name), sub), ACCEPT_JSON);
        let req = req.header(reqwest::header::CONTENT_TYPE, patch_type.content_type()).body(body.to_string());
        self.json(req, &url).await
    }

    /// `DELETE` an object; returns what the server answered (the object or a `Status`).
    pub async fn delete(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::DELETE, &resource_path(res, ns, Some(name), None), ACCEPT_JSON);
        self.json(req.json(&params.body()), &url).await
    }

    /// Evict a pod: `POST pods/NAME/eviction` with a `policy/v1` Eviction whose `deleteOptions`
    /// are `params` (the server deletes the pod gracefully, as a DELETE would).
    pub async fn evict(&self, ns: &str, name: &str, params: &DeleteParams) -> Result<Value> {
        let path = resource_path(&skiff_api::registry::PODS, Some(ns), Some(name), Some("eviction"));
        let (req, url) = self.request(reqwest::Method::POST, &path, ACCEPT_JSON);
        let body = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
            "deleteOptions": params.options(),
        });
        self.json(req.json(&body), &url).await
    }

    /// Watch a collection from `resource_version` (empty: from now). Each line of the response
    /// is one event; with `as_table` every object is a one-row `Table`. The stream has no
    /// deadline (only its response headers do); it ends when the server closes it.
    pub async fn watch(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
        as_table: bool,
    ) -> Result<WatchStream> {
        let accept = if as_table { ACCEPT_TABLE } else { ACCEPT_JSON };
        let (req, url) = self.request(reqwest::Method::GET, &resource_path(res, ns, None, None), accept);
        let mut q = params.query();
        q.push(("watch", "true".into()));
        if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
            q.push(("resourceVersion", rv.into()));
        }
        let resp = self.send(req.query(&q), &url, true).await?;
        let body = self.body_stream(resp, url.clone());
        Ok(watch_events(body, url))
    }

    /// Stream a container's log (`follow` keeps it open until the container ends).
    pub async fn logs(&self, ns: &str, pod: &str, params: &LogParams) -> Result<ByteStream> {
        let path = resource_path(&skiff_api::registry::PODS, Some(ns), Some(pod), Some("log"));
        let (req, url) = self.request(reqwest::Method::GET, &path, "*/*");
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(c) = params.container.as_ref().filter(|c| !c.is_empty()) {
            q.push(("container", c.clone()));
        }
        if params.follow {
            q.push(("follow", "true".into()));
        }
        if let Some(t) = params.tail_lines {
            q.push(("tailLines", t.to_string()));
        }
        if params.previous {
            q.push(("previous", "true".into()));
        }
        let resp = self.send(req.query(&q), &url, params.follow).await?;
        if params.follow {
            Ok(self.body_stream(resp, url))
        } else {
            // Not following: the whole body is under the deadline.
            let body = tokio::time::timeout(self.timeout, self.read_body(resp, &url))
                .await
                .map_err(|_| Error::Timeout { url: url.clone(), timeout_ms: self.timeout.as_millis() as u64 })??;
            Ok(futures::stream::iter([Ok(body)]).boxed())
        }
    }

    fn body_stream(&self, resp: reqwest::Response, url: String) -> ByteStream {
        let this = self.clone();
        resp.bytes_stream().map(move |r| r.map(|b| b.to_vec()).map_err(|e| this.map_err(&url, e))).boxed()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Decode one watch line (`{"type": ..., "object": ...}`).
pub fn parse_watch_line(line: &[u8], url: &str) -> Result<WatchEvent> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        event_type: String,
        #[serde(default)]
        object: Value,
    }
    let raw: Raw = serde_json::from_slice(line)
        .map_err(|e| Error::Decode { url: url.into(), message: format!("bad watch event: {e}") })?;
    if raw.event_type == "ERROR" {
        let code = raw.object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
        let body = serde_json::to_vec(&raw.object).unwrap_or_default();
        return Err(Error::Server(ServerError::from_response(code, &body)));
    }
    Ok(WatchEvent { event_type: raw.event_type, object: raw.object })
}

/// Split a byte stream into newline-delimited watch events (blank lines skipped, lines bounded).
pub fn watch_events(body: ByteStream, url: String) -> WatchStream {
    struct State {
        body: ByteStream,
        buf: Vec<u8>,
        url: String,
        done: bool,
    }
    let st = State { body, buf: Vec::new(), url, done: false };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(pos) = st.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = st.buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let ev = parse_watch_line(line, &st.url);
                return Some((ev, st));
            }
            if st.done {
                let rest = std::mem::take(&mut st.buf);
                let rest = rest.trim_ascii();
                if rest.is_empty() {
                    return None;
                }
                let ev = parse_watch_line(rest, &st.url);
                return Some((ev, st));
            }
            if st.buf.len() > MAX_WATCH_LINE_BYTES {
                st.done = true;
                st.buf.clear();
                let msg = format!("watch event over {MAX_WATCH_LINE_BYTES} bytes");
                return Some((Err(Error::Decode { url: st.url.clone(), message: msg }), st));
            }
            match st.body.next().await {
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    st.done = true;
                    st.buf.clear();
                    return Some((Err(e), st));
                }
                None => st.done = true,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::{DEPLOYMENTS, NAMESPACES, PODS};

    #[test]
    fn paths() {
        assert_eq!(resource_path(&PODS, Some("default"), Some("web"), None), "/api/v1/namespaces/default/pods/web");
        assert_eq!(resource_path(&PODS, None, None, None), "/api/v1/pods");
        assert_eq!(
            resource_path(&DEPLOYMENTS, Some("ns"), Some("web"), Some("scale")),
            "/apis/apps/v1/namespaces/ns/deployments/web/scale"
        );
        assert_eq!(
            resource_path(&NAMESPACES, Some("ignored"), Some("kube-system"), None),
            "/api/v1/namespaces/kube-system"
        );
    }

    #[tokio::test]
    async fn watch_lines_split_across_chunks() {
        let chunks: Vec<Result<Vec<u8>>> = vec![
            Ok(b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n{\"type\":\"MOD".to_vec()),
            Ok(b"IFIED\",\"object\":{\"a\":2}}\n\n".to_vec()),
            Ok(b"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"reason\":\"Expired\",\"message\":\"too old\",\"code\":410}}".to_vec()),
        ];
        let evs: Vec<_> = watch_events(futures::stream::iter(chunks).boxed(), "u".into()).collect().await;
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].as_ref().unwrap().event_type, "ADDED");
        assert_eq!(evs[1].as_ref().unwrap().object, serde_json::json!({"a": 2}));
        let e = evs[2].as_ref().unwrap_err();
        assert!(e.is_gone());
        assert_eq!(e.to_string(), "Error from server (Expired): too old");
    }

    #[test]
    fn delete_options_body() {
        let p = DeleteParams { propagation_policy: Some("Background".into()), grace_period_seconds: Some(0) };
        assert_eq!(
            p.body(),
            serde_json::json!({"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","gracePeriodSeconds":0})
        );
    }
}
