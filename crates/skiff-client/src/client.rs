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

/// One event of a watch stream (`ERROR` events arrive as `Err(Error::Server)` instead). The
/// object is a JSON `Value` unless the watch asked for a type of its own ([`Client::watch_as`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent<T = Value> {
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`.
    pub event_type: String,
    /// The object (a one-row `Table` when the watch asked for tables).
    pub object: T,
}

pub type WatchStream<T = Value> = BoxStream<'static, Result<WatchEvent<T>>>;
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
        self.json_as(req, url).await
    }

    /// Send a request and decode its JSON answer into `T` (an empty body decodes as `null`).
    async fn json_as<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder, url: &str) -> Result<T> {
        let resp = self.send(req, url, false).await?;
        let body = self.read_body(resp, url).await?;
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| Error::Decode { url: url.into(), message: e.to_string() })
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
        self.create_as(res, ns, body).await
    }

    /// [`Client::create`] with the created object decoded into `T`: a caller that needs only
    /// part of it (or, with `serde::de::IgnoredAny`, none) builds no `Value` tree.
    pub async fn create_as<T: serde::de::DeserializeOwned>(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        body: &Value,
    ) -> Result<T> {
        let (req, url) = self.request(reqwest::Method::POST, &resource_path(res, ns, None, None), ACCEPT_JSON);
        self.json_as(req.json(body), &url).await
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

    /// Server-side apply: `PATCH` with `application/apply-patch+yaml` of the whole manifest as
    /// field manager `manager` (`force` takes over other managers' fields).
    pub async fn apply(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        manifest: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value> {
        let (req, url) = self.request(reqwest::Method::PATCH, &resource_path(res, ns, Some(name), None), ACCEPT_JSON);
        let req = req
            .query(&[("fieldManager", manager), ("force", if force { "true" } else { "false" })])
            .header(reqwest::header::CONTENT_TYPE, "application/apply-patch+yaml")
            .body(manifest.to_string());
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
        let (body, url) = self.watch_body(res, ns, params, resource_version, accept).await?;
        Ok(watch_events(body, url))
    }

    /// [`Client::watch`] of plain objects, each decoded into `T` (which must also decode the
    /// `Status` of an `ERROR` event, as a type whose fields all have defaults does): a watcher
    /// that needs a few fields builds no `Value` tree per event.
    pub async fn watch_as<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<T>> {
        let (body, url) = self.watch_body(res, ns, params, resource_version, ACCEPT_JSON).await?;
        Ok(watch_lines(body, url, parse_watch_line_as::<T>))
    }

    async fn watch_body(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
        accept: &str,
    ) -> Result<(ByteStream, String)> {
        let (req, url) = self.request(reqwest::Method::GET, &resource_path(res, ns, None, None), accept);
        let mut q = params.query();
        q.push(("watch", "true".into()));
        if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
            q.push(("resourceVersion", rv.into()));
        }
        let resp = self.send(req.query(&q), &url, true).await?;
        Ok((self.body_stream(resp, url.clone()), url))
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
    parse_watch_line_as(line, url)
}

/// [`parse_watch_line`] with the object decoded into `T`. An `ERROR` event is read again as
/// JSON for its `Status`, whether or not it decoded into `T`.
pub fn parse_watch_line_as<T: serde::de::DeserializeOwned>(line: &[u8], url: &str) -> Result<WatchEvent<T>> {
    #[derive(serde::Deserialize)]
    struct Raw<T> {
        #[serde(rename = "type")]
        event_type: String,
        object: Option<T>,
    }
    let bad = |e: serde_json::Error| Error::Decode { url: url.into(), message: format!("bad watch event: {e}") };
    let error = |object: Value| {
        let code = object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
        let body = serde_json::to_vec(&object).unwrap_or_default();
        Error::Server(ServerError::from_response(code, &body))
    };
    let raw: Raw<T> = match serde_json::from_slice(line) {
        Ok(raw) => raw,
        Err(e) => match serde_json::from_slice::<Raw<Value>>(line) {
            Ok(r) if r.event_type == "ERROR" => return Err(error(r.object.unwrap_or_default())),
            _ => return Err(bad(e)),
        },
    };
    if raw.event_type == "ERROR" {
        let object = serde_json::from_slice::<Raw<Value>>(line).map_err(bad)?.object.unwrap_or_default();
        return Err(error(object));
    }
    let object = match raw.object {
        Some(o) => o,
        // No object: what `null` decodes to, as the object of an untyped event is `null`.
        None => serde_json::from_slice(b"null").map_err(bad)?,
    };
    Ok(WatchEvent { event_type: raw.event_type, object })
}

/// Split a byte stream into newline-delimited watch events (blank lines skipped, lines bounded).
pub fn watch_events(body: ByteStream, url: String) -> WatchStream {
    watch_lines(body, url, parse_watch_line)
}

/// Newline-delimited lines of `body`, each decoded by `parse` (blank lines skipped, lines
/// bounded by [`MAX_WATCH_LINE_BYTES`]). Every byte is scanned for a newline once, and the
/// buffer moves its unread bytes to the front only once it has read more than it holds unread
/// (not once per line).
fn watch_lines<T: Send + 'static>(
    body: ByteStream,
    url: String,
    parse: fn(&[u8], &str) -> Result<T>,
) -> BoxStream<'static, Result<T>> {
    struct State {
        body: ByteStream,
        buf: Vec<u8>,
        /// Where the unread bytes start.
        start: usize,
        /// Where the search for the next newline resumes (at or after `start`: the bytes
        /// between hold none).
        scanned: usize,
        url: String,
        done: bool,
    }
    impl State {
        /// Empties the buffer and returns its unread bytes.
        fn take_unread(&mut self) -> Vec<u8> {
            let mut rest = std::mem::take(&mut self.buf);
            rest.drain(..self.start);
            (self.start, self.scanned) = (0, 0);
            rest
        }
    }
    let st = State { body, buf: Vec::new(), start: 0, scanned: 0, url, done: false };
    futures::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(pos) = st.buf[st.scanned..].iter().position(|&b| b == b'\n').map(|p| st.scanned + p) {
                let line = st.buf[st.start..pos].trim_ascii();
                let ev = (!line.is_empty()).then(|| parse(line, &st.url));
                st.start = pos + 1;
                st.scanned = st.start;
                if let Some(ev) = ev {
                    return Some((ev, st));
                }
                continue;
            }
            st.scanned = st.buf.len();
            if st.done {
                let rest = st.take_unread();
                let rest = rest.trim_ascii();
                if rest.is_empty() {
                    return None;
                }
                let ev = parse(rest, &st.url);
                return Some((ev, st));
            }
            if st.buf.len() - st.start > MAX_WATCH_LINE_BYTES {
                st.done = true;
                st.take_unread();
                let msg = format!("watch event over {MAX_WATCH_LINE_BYTES} bytes");
                return Some((Err(Error::Decode { url: st.url.clone(), message: msg }), st));
            }
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    // Unread bytes move to the front only once more has been read than they
                    // are: each byte moves at most about once.
                    if st.start > 0 && st.start >= st.buf.len() - st.start {
                        let unread = st.take_unread();
                        st.scanned = unread.len();
                        st.buf = unread;
                    }
                    st.buf.extend_from_slice(&chunk)
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.take_unread();
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

    /// Many events in one chunk, one event over many chunks, and a line over the bound: every
    /// event comes out whole and in order, and the oversized line ends the stream with an error.
    #[tokio::test]
    async fn watch_lines_many_per_chunk_and_one_over_many() {
        let line = |i: usize| format!("{{\"type\":\"MODIFIED\",\"object\":{{\"i\":{i}}}}}\n");
        let many: String = (0..1000).map(line).collect();
        let big = format!("{{\"type\":\"ADDED\",\"object\":{{\"pad\":\"{}\"}}}}\n", "x".repeat(100_000));
        let mut chunks: Vec<Result<Vec<u8>>> = vec![Ok(many.into_bytes())];
        chunks.extend(big.as_bytes().chunks(977).map(|c| Ok(c.to_vec())));
        chunks.push(Ok(line(1000).into_bytes()));
        let evs: Vec<_> = watch_events(futures::stream::iter(chunks).boxed(), "u".into()).collect().await;
        assert_eq!(evs.len(), 1002);
        for (i, ev) in evs[..1000].iter().enumerate() {
            assert_eq!(ev.as_ref().unwrap().object, serde_json::json!({"i": i}));
        }
        assert_eq!(evs[1000].as_ref().unwrap().object["pad"].as_str().map(str::len), Some(100_000));
        assert_eq!(evs[1001].as_ref().unwrap().object, serde_json::json!({"i": 1000}));

        let over = vec![0x20u8; MAX_WATCH_LINE_BYTES / 4];
        let chunks: Vec<Result<Vec<u8>>> = vec![Ok(line(0).into_bytes()), Ok(b"{".to_vec())]
            .into_iter()
            .chain((0..5).map(|_| Ok(over.clone())))
            .collect();
        let evs: Vec<_> = watch_events(futures::stream::iter(chunks).boxed(), "u".into()).collect().await;
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].as_ref().unwrap().object, serde_json::json!({"i": 0}));
        assert!(evs[1].as_ref().unwrap_err().to_string().contains("over"), "{:?}", evs[1]);
    }

    /// A typed watch decodes the fields it names, and still reports an `ERROR` event's Status.
    #[tokio::test]
    async fn typed_watch_lines() {
        #[derive(serde::Deserialize, Debug, Default, PartialEq)]
        #[serde(default)]
        struct Named {
            metadata: Meta,
        }
        #[derive(serde::Deserialize, Debug, Default, PartialEq)]
        #[serde(default)]
        struct Meta {
            name: String,
        }
        let chunks: Vec<Result<Vec<u8>>> = vec![
            Ok(b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"uid\":\"u\"},\"spec\":{}}}\n".to_vec()),
            Ok(b"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"reason\":\"Expired\",\"message\":\"too old\",\"code\":410}}\n".to_vec()),
            Ok(b"{\"type\":\"ADDED\",\"object\":{\"metadata\":\"not an object\"}}\n".to_vec()),
        ];
        let evs: Vec<_> = watch_lines(futures::stream::iter(chunks).boxed(), "u".into(), parse_watch_line_as::<Named>)
            .collect()
            .await;
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].as_ref().unwrap().object, Named { metadata: Meta { name: "a".into() } });
        assert!(evs[1].as_ref().unwrap_err().is_gone());
        assert!(evs[2].as_ref().unwrap_err().to_string().contains("bad watch event"), "{:?}", evs[2]);
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
