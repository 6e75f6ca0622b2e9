//! `FakeApi`: an in-memory test double of [`ObjectApi`] with revisions, watches, CAS and fault injection.
//!
//! It behaves like the API server where the controllers can tell: every write gets the next
//! store revision (which becomes `resourceVersion`), updates are compare-and-swap on it, watches
//! replay a bounded history window and end with 410 when compacted or when the reader lags, and
//! deletes of owners cascade to dependents (as the API server's propagation does). Deletion is
//! always immediate (the grace period is ignored). Not for production use.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use skiff_api::keys::object_key;
use skiff_api::registry::{DEPLOYMENTS, REPLICASETS};
use skiff_api::ResourceInfo;
use tokio::sync::mpsc;

use crate::api::{ApiCallError, EventType, ObjEvent, ObjectApi};
use crate::util::{self, now_string, strip_nulls};

/// Events kept for watches that resume from an older revision.
const HISTORY_LIMIT: usize = 20_000;
/// Buffered events per watch before the watcher is dropped with 410.
const WATCH_BUFFER: usize = 4096;

/// One scripted failure: the next `times` calls of `verb` (`create`, `update`, `update_status`,
/// `delete`, `get`, `list`, `watch`) on `plural` (or any resource) fail with `error`.
struct FailRule {
    verb: &'static str,
    plural: Option<&'static str>,
    error: ApiCallError,
    times: usize,
}

struct Watcher {
    res: &'static ResourceInfo,
    ns: Option<String>,
    tx: mpsc::Sender<ObjEvent>,
    overflow: Arc<AtomicBool>,
}

struct HistoryEntry {
    rev: u64,
    res: &'static ResourceInfo,
    ns: Option<String>,
    event: ObjEvent,
}

struct Inner {
    revision: u64,
    /// Revisions up to and including this one are no longer in `history`.
    compacted: u64,
    objects: BTreeMap<String, (&'static ResourceInfo, Value)>,
    history: VecDeque<HistoryEntry>,
    watchers: Vec<Watcher>,
    cascade: bool,
    failures: Vec<FailRule>,
    writes: u64,
    /// The size of every `create_events` call, in order.
    event_batches: Vec<usize>,
}

/// In-memory [`ObjectApi`] test double. Cheap to share as `Arc<FakeApi>`.
pub struct FakeApi {
    inner: Mutex<Inner>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

fn same_res(a: &ResourceInfo, b: &ResourceInfo) -> bool {
    a.group == b.group && a.plural == b.plural
}

fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn random_uid() -> String {
    let mut rng = rand::rng();
    let a: u128 = rng.random();
    let h = format!("{a:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl FakeApi {
    pub fn new() -> Self {
        FakeApi {
            inner: Mutex::new(Inner {
                revision: 1,
                compacted: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                watchers: Vec::new(),
                cascade: true,
                failures: Vec::new(),
                writes: 0,
                event_batches: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current store revision.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Number of successful writes (create, update, update_status, delete) so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// How many Events each `create_events` call so far carried, in order.
    pub fn event_batches(&self) -> Vec<usize> {
        self.lock().event_batches.clone()
    }

    /// Whether deleting an owner deletes its dependents (default true, like the API server).
    pub fn set_cascade(&self, on: bool) {
        self.lock().cascade = on;
    }

    /// Make the next `times` calls of `verb` on `res` (or on anything) fail with `error`.
    pub fn fail_next(&self, verb: &'static str, res: Option<&'static ResourceInfo>, error: ApiCallError, times: usize) {
        self.lock().failures.push(FailRule { verb, plural: res.map(|r| r.plural), error, times });
    }

    /// Forget all history and end every watch with 410 (clients must relist).
    pub fn compact(&self) {
        let mut g = self.lock();
        g.compacted = g.revision;
        g.history.clear();
        for w in g.watchers.drain(..) {
            w.overflow.store(true, Ordering::SeqCst);
        }
    }

    /// All objects of `res`, sorted by key.
    pub fn objects(&self, res: &'static ResourceInfo) -> Vec<Value> {
        self.lock().objects.values().filter(|(r, _)| same_res(r, res)).map(|(_, v)| v.clone()).collect()
    }

    pub fn object(&self, res: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Option<Value> {
        self.lock().objects.get(&object_key(res, ns, name)).map(|(_, v)| v.clone())
    }

    /// Change an object directly (no precondition, no subresource rules), as a kubelet or a test
    /// would; bumps the revision and notifies watches. Returns the new object.
    pub fn modify(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut g = self.lock();
        let key = object_key(res, ns, name);
        let mut obj = g.objects.get(&key)?.1.clone();
        f(&mut obj);
        Some(g.store(res, key, obj, EventType::Modified))
    }

    fn check_failure(&self, g: &mut Inner, verb: &str, res: &ResourceInfo) -> Result<(), ApiCallError> {
        if let Some(i) = g.failures.iter().position(|r| r.verb == verb && r.plural.is_none_or(|p| p == res.plural)) {
            let rule = &mut g.failures[i];
            let err = rule.error.clone();
            rule.times = rule.times.saturating_sub(1);
            if rule.times == 0 {
                g.failures.remove(i);
            }
            return Err(err);
        }
        Ok(())
    }
}

impl Inner {
    /// Store `obj` at `key` with a new revision, record history and notify watchers.
    fn store(&mut self, res: &'static ResourceInfo, key: String, mut obj: Value, kind: EventType) -> Value {
        self.revision += 1;
        self.writes += 1;
        let rev = self.revision;
        util::object_at(&mut obj, &["metadata"]).insert("resourceVersion".into(), json!(rev.to_string()));
        if kind == EventType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, (res, obj.clone()));
        }
        let ns = util::namespace(&obj).map(str::to_string);
        let event = ObjEvent { kind, object: Arc::new(obj.clone()) };
        self.watchers.retain(|w| {
            if !same_res(w.res, res) || (w.ns.is_some() && w.ns != ns) {
                return true;
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.overflow.store(true, Ordering::SeqCst);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.history.push_back(HistoryEntry { rev, res, ns, event });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rev;
            }
        }
        obj
    }

    fn delete_key(&mut self, key: &str) {
        let Some((res, obj)) = self.objects.get(key).cloned() else { return };
        let uid = util::uid(&obj).to_string();
        self.store(res, key.to_string(), obj, EventType::Deleted);
        if !self.cascade {
            return;
        }
        // Background propagation: delete dependents none of whose owners remain.
        let dependents: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, (_, o))| {
                let refs = o["metadata"]["ownerReferences"].as_array();
                let refs = refs.map(Vec::as_slice).unwrap_or(&[]);
                refs.iter().any(|r| r["uid"].as_str() == Some(&uid))
                    && refs.iter().all(|r| {
                        let u = r["uid"].as_str().unwrap_or("");
                        u == uid || !self.objects.values().any(|(_, x)| util::uid(x) == u)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            self.delete_key(&k);
        }
    }
}

fn has_status_subresource(res: &ResourceInfo) -> bool {
    res.has_subresource("status")
}

fn check_precondition(current: &Value, obj: &Value, res: &ResourceInfo) -> Result<(), ApiCallError> {
    let want = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let have = current["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if !want.is_empty() && want != have {
        return Err(ApiCallError::conflict(format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            res.qualified_plural(),
            util::name(obj)
        )));
    }
    Ok(())
}

/// Keep server-owned metadata of `current` in `obj`.
fn keep_server_metadata(current: &Value, obj: &mut Value) {
    let meta = util::object_at(obj, &["metadata"]);
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "generation", "namespace", "name"] {
        match current["metadata"].get(k) {
            Some(v) if !v.is_null() => {
                meta.insert(k.into(), v.clone());
            }
            _ => {
                meta.remove(k);
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectApi for FakeApi {
    async fn create_events(&self, events: Vec<crate::NewEvent>) -> Result<Vec<Result<(), ApiCallError>>, ApiCallError> {
        self.lock().event_batches.push(events.len());
        Ok(crate::api::create_events_one_by_one(self, events).await)
    }

    async fn list(&self, res: &'static ResourceInfo, ns: Option<&str>) -> Result<(Vec<Value>, u64), ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "list", res)?;
        let items = g
            .objects
            .values()
            .filter(|(r, o)| same_res(r, res) && (ns.is_none() || util::namespace(o) == ns))
            .map(|(_, o)| o.clone())
            .collect();
        Ok((items, g.revision))
    }

    async fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        after_revision: u64,
    ) -> Result<BoxStream<'static, Result<ObjEvent, ApiCallError>>, ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "watch", res)?;
        if after_revision < g.compacted {
            return Err(ApiCallError::gone(format!(
                "too old resource version: {after_revision} ({})",
                g.compacted + 1
            )));
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let overflow = Arc::new(AtomicBool::new(false));
        let ns = ns.map(str::to_string);
        for e in g.history.iter().filter(|e| e.rev > after_revision) {
            if same_res(e.res, res) && (ns.is_none() || e.ns == ns) && tx.try_send(e.event.clone()).is_err() {
                return Err(ApiCallError::gone("watch backlog too large"));
            }
        }
        g.watchers.push(Watcher { res, ns, tx, overflow: overflow.clone() });
        drop(g);
        let stream = futures::stream::unfold((rx, overflow, false), |(mut rx, overflow, done)| async move {
            if done {
                return None;
            }
            match rx.recv().await {
                Some(ev) => Some((Ok(ev), (rx, overflow, false))),
                None if overflow.load(Ordering::SeqCst) => {
                    Some((Err(ApiCallError::gone("watch closed: too old resource version")), (rx, overflow, true)))
                }
                None => None,
            }
        });
        Ok(stream.boxed())
    }

    async fn get(&self, res: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "get", res)?;
        g.objects
            .get(&object_key(res, ns, name))
            .map(|(_, o)| o.clone())
            .ok_or_else(|| ApiCallError::not_found(format!("{} \"{name}\" not found", res.qualified_plural())))
    }

    async fn create(&self, res: &'static ResourceInfo, mut obj: Value) -> Result<Value, ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "create", res)?;
        if !obj.is_object() {
            return Err(ApiCallError::new(400, "BadRequest", "object must be a JSON object"));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let meta = util::object_at(&mut obj, &["metadata"]);
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(ApiCallError::new(422, "Invalid", "name or generateName is required"));
            };
            let name = format!("{prefix}{}", random_suffix(5));
            meta.insert("name".into(), json!(name));
        }
        if res.namespaced {
            if meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty) {
                meta.insert("namespace".into(), json!("default"));
            }
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(random_uid()));
        meta.insert("creationTimestamp".into(), json!(now_string()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        skiff_api::default_object(res, &mut obj);
        if same_res(res, &DEPLOYMENTS) || same_res(res, &REPLICASETS) {
            obj.as_object_mut().expect("object").remove("status");
        }
        if res.kind == "Pod" && obj["status"].is_null() {
            obj["status"] = json!({"phase": "Pending"});
        }
        let key = object_key(res, util::namespace(&obj), util::name(&obj));
        if g.objects.contains_key(&key) {
            return Err(ApiCallError::already_exists(format!(
                "{} \"{}\" already exists",
                res.qualified_plural(),
                util::name(&obj)
            )));
        }
        Ok(g.store(res, key, obj, EventType::Added))
    }

    async fn update(&self, res: &'static ResourceInfo, mut obj: Value) -> Result<Value, ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "update", res)?;
        let key = object_key(res, util::namespace(&obj), util::name(&obj));
        let Some((_, current)) = g.objects.get(&key).cloned() else {
            return Err(ApiCallError::not_found(format!(
                "{} \"{}\" not found",
                res.qualified_plural(),
                util::name(&obj)
            )));
        };
        check_precondition(&current, &obj, res)?;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        keep_server_metadata(&current, &mut obj);
        skiff_api::default_object(res, &mut obj);
        if has_status_subresource(res) {
            match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().expect("object").remove("status");
                }
            }
        }
        if strip_nulls(&obj["spec"]) != strip_nulls(&current["spec"]) {
            obj["metadata"]["generation"] = json!(util::generation(&current) + 1);
        }
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if strip_nulls(&obj) == strip_nulls(&current) {
            return Ok(current);
        }
        Ok(g.store(res, key, obj, EventType::Modified))
    }

    async fn update_status(&self, res: &'static ResourceInfo, obj: Value) -> Result<Value, ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "update_status", res)?;
        let key = object_key(res, util::namespace(&obj), util::name(&obj));
        let Some((_, current)) = g.objects.get(&key).cloned() else {
            return Err(ApiCallError::not_found(format!(
                "{} \"{}\" not found",
                res.qualified_plural(),
                util::name(&obj)
            )));
        };
        check_precondition(&current, &obj, res)?;
        let mut next = current.clone();
        next["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
        if strip_nulls(&next) == strip_nulls(&current) {
            return Ok(current);
        }
        Ok(g.store(res, key, next, EventType::Modified))
    }

    async fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        precondition_uid: Option<&str>,
        _grace_seconds: Option<i64>,
    ) -> Result<(), ApiCallError> {
        let mut g = self.lock();
        self.check_failure(&mut g, "delete", res)?;
        let key = object_key(res, ns, name);
        let Some((_, current)) = g.objects.get(&key) else {
            return Err(ApiCallError::not_found(format!("{} \"{name}\" not found", res.qualified_plural())));
        };
        if let Some(want) = precondition_uid {
            if util::uid(current) != want {
                return Err(ApiCallError::conflict(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                    util::uid(current)
                )));
            }
        }
        g.delete_key(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::PODS;

    fn pod(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    }

    #[tokio::test]
    async fn create_update_cas_and_watch() {
        let api = FakeApi::new();
        let (_, rev0) = api.list(&PODS, None).await.unwrap();
        let a = api.create(&PODS, pod("a")).await.unwrap();
        assert_eq!(a["metadata"]["namespace"], "default");
        assert_eq!(a["spec"]["restartPolicy"], "Always", "defaults applied");
        let g = api.create(&PODS, json!({"metadata": {"generateName": "web-"}, "spec": {}})).await.unwrap();
        assert!(util::name(&g).starts_with("web-") && util::name(&g).len() == 9);
        assert!(api.create(&PODS, pod("a")).await.unwrap_err().is_already_exists());

        let mut stale = a.clone();
        let mut fresh = a.clone();
        fresh["metadata"]["labels"] = json!({"x": "1"});
        let b = api.update(&PODS, fresh).await.unwrap();
        assert!(util::resource_version(&b) > util::resource_version(&a));
        stale["metadata"]["labels"] = json!({"x": "2"});
        assert!(api.update(&PODS, stale).await.unwrap_err().is_conflict());

        let mut w = api.watch(&PODS, None, rev0).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().kind, EventType::Added);
        assert_eq!(w.next().await.unwrap().unwrap().kind, EventType::Added);
        assert_eq!(w.next().await.unwrap().unwrap().kind, EventType::Modified);
        api.delete(&PODS, Some("default"), "a", Some("wrong-uid"), None).await.unwrap_err();
        api.delete(&PODS, Some("default"), "a", Some(util::uid(&a)), Some(0)).await.unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(ev.kind, EventType::Deleted);
        assert_eq!(util::resource_version(&ev.object), Some(api.revision()));

        api.compact();
        assert!(w.next().await.unwrap().unwrap_err().is_gone());
        assert!(w.next().await.is_none());
        assert!(api.watch(&PODS, None, rev0).await.err().unwrap().is_gone());
    }

    #[tokio::test]
    async fn status_subresource_and_generation() {
        let api = FakeApi::new();
        let d = api
            .create(
                &DEPLOYMENTS,
                json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 9}}),
            )
            .await
            .unwrap();
        assert!(d.get("status").is_none());
        let mut u = d.clone();
        u["spec"]["replicas"] = json!(2);
        u["status"] = json!({"replicas": 5});
        let u = api.update(&DEPLOYMENTS, u).await.unwrap();
        assert_eq!(u["metadata"]["generation"], 2);
        assert!(u.get("status").is_none());
        let mut s = u.clone();
        s["status"] = json!({"replicas": 5});
        let s = api.update_status(&DEPLOYMENTS, s).await.unwrap();
        assert_eq!(s["status"]["replicas"], 5);
        assert_eq!(s["metadata"]["generation"], 2);
        let writes = api.writes();
        api.update_status(&DEPLOYMENTS, s.clone()).await.unwrap();
        assert_eq!(api.writes(), writes, "no-op writes do not bump the revision");
    }

    #[tokio::test]
    async fn deletes_cascade_and_failures_inject() {
        let api = FakeApi::new();
        let rs = api.create(&REPLICASETS, json!({"metadata": {"name": "r"}, "spec": {}})).await.unwrap();
        let mut p = pod("p");
        p["metadata"]["ownerReferences"] = json!([util::controller_owner_ref(&REPLICASETS, &rs)]);
        api.create(&PODS, p).await.unwrap();
        api.fail_next("delete", Some(&REPLICASETS), ApiCallError::unavailable("no leader"), 1);
        assert_eq!(api.delete(&REPLICASETS, Some("default"), "r", None, None).await.unwrap_err().code, 503);
        api.delete(&REPLICASETS, Some("default"), "r", None, None).await.unwrap();
        assert!(api.objects(&PODS).is_empty());
    }
}
