//! Informers: list + watch one resource into an in-memory cache (relisting on 410) and fan changes out.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use skiff_api::ResourceInfo;
use tokio::sync::watch;

use crate::api::{EventType, ObjectApi};
use crate::util::{self, ObjKey};

/// Called with (old, new) after the cache changed: (None, Some) added, (Some, Some) modified,
/// (Some, None) deleted. Runs on the informer task: it must be quick and never block.
/// (old, new) pair of one cache change.
type Change = (Option<Arc<Value>>, Option<Arc<Value>>);

pub type ChangeHandler = Arc<dyn Fn(Option<&Value>, Option<&Value>) + Send + Sync>;

struct CacheInner {
    res: &'static ResourceInfo,
    objects: RwLock<BTreeMap<ObjKey, Arc<Value>>>,
    /// Highest store revision reflected in `objects`.
    revision: watch::Sender<u64>,
    synced: watch::Sender<bool>,
    handlers: RwLock<Vec<ChangeHandler>>,
}

/// Read-only view of one resource as last seen by its informer, keyed by namespace/name.
/// Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

impl Cache {
    pub fn new(res: &'static ResourceInfo) -> Self {
        Cache {
            inner: Arc::new(CacheInner {
                res,
                objects: RwLock::new(BTreeMap::new()),
                revision: watch::channel(0).0,
                synced: watch::channel(false).0,
                handlers: RwLock::new(Vec::new()),
            }),
        }
    }

    pub fn resource(&self) -> &'static ResourceInfo {
        self.inner.res
    }

    pub fn get(&self, ns: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let ns = if self.inner.res.namespaced { ns } else { None };
        self.read().get(&ObjKey::new(ns, name)).cloned()
    }

    pub fn get_key(&self, key: &ObjKey) -> Option<Arc<Value>> {
        self.read().get(key).cloned()
    }

    /// Objects in `ns` (or everywhere), in key order.
    pub fn list(&self, ns: Option<&str>) -> Vec<Arc<Value>> {
        let map = self.read();
        match ns {
            Some(ns) => map.iter().filter(|(k, _)| k.ns() == Some(ns)).map(|(_, v)| v.clone()).collect(),
            None => map.values().cloned().collect(),
        }
    }

    /// Calls `f` with every object and its key, in key order, under the cache's read lock (a
    /// pass over thousands of objects without copying the list; `f` must not wait).
    pub fn for_each(&self, mut f: impl FnMut(&ObjKey, &Arc<Value>)) {
        for (k, v) in self.read().iter() {
            f(k, v);
        }
    }

    pub fn keys(&self) -> Vec<ObjKey> {
        self.read().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Highest store revision the cache reflects.
    pub fn revision(&self) -> u64 {
        *self.inner.revision.borrow()
    }

    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Wait until the first list has been loaded; false on timeout.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.synced.subscribe();
        let ok = matches!(tokio::time::timeout(timeout, rx.wait_for(|s| *s)).await, Ok(Ok(_)));
        ok
    }

    /// Wait until the cache reflects store revision `rev` (read-your-writes after a write); false
    /// on timeout.
    pub async fn wait_for_revision(&self, rev: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.revision.subscribe();
        let ok = matches!(tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev)).await, Ok(Ok(_)));
        ok
    }

    /// Wait until `pred` holds for the cache (re-checked after every applied change); false on
    /// timeout.
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&Cache) -> bool) -> bool {
        let mut rx = self.inner.revision.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if pred(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return pred(self),
            }
        }
    }

    /// Register a change handler. Handlers registered before the informer starts see every object
    /// of the first list as added.
    pub fn on_change(&self, handler: impl Fn(Option<&Value>, Option<&Value>) + Send + Sync + 'static) {
        self.inner.handlers.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(handler));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjKey, Arc<Value>>> {
        self.inner.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, changes: &[Change]) {
        let handlers = self.inner.handlers.read().unwrap_or_else(|e| e.into_inner()).clone();
        for (old, new) in changes {
            for h in &handlers {
                h(old.as_deref(), new.as_deref());
            }
        }
    }

    /// Replace the whole content after a list at `rev`; notify the differences.
    fn replace(&self, items: Vec<Value>, rev: u64) {
        let mut changes = Vec::new();
        {
            let mut map = self.inner.objects.write().unwrap_or_else(|e| e.into_inner());
            let mut fresh = BTreeMap::new();
            for obj in items {
                fresh.insert(ObjKey::of(&obj), Arc::new(obj));
            }
            for (k, old) in map.iter() {
                match fresh.get(k) {
                    None => changes.push((Some(old.clone()), None)),
                    Some(new) if util::resource_version(new) != util::resource_version(old) || new != old => {
                        changes.push((Some(old.clone()), Some(new.clone())))
                    }
                    Some(_) => {}
                }
            }
            for (k, new) in &fresh {
                if !map.contains_key(k) {
                    changes.push((None, Some(new.clone())));
                }
            }
            *map = fresh;
        }
        self.inner.revision.send_modify(|r| *r = (*r).max(rev));
        self.inner.synced.send_replace(true);
        self.notify(&changes);
    }

    pub(crate) fn apply(&self, kind: EventType, obj: Arc<Value>) {
        let key = ObjKey::of(&obj);
        let rev = util::resource_version(&obj).unwrap_or(0);
        let change = {
            let mut map = self.inner.objects.write().unwrap_or_else(|e| e.into_inner());
            match kind {
                EventType::Deleted => map.remove(&key).map(|old| (Some(old), None)),
                EventType::Added | EventType::Modified => {
                    let old = map.insert(key, obj.clone());
                    let new = obj;
                    Some((old, Some(new)))
                }
            }
        };
        self.inner.revision.send_modify(|r| *r = (*r).max(rev));
        if let Some(change) = change {
            self.notify(&[change]);
        }
    }
}

/// Resolve when `stop` becomes true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleep for `d` unless stopped first; true when stopped.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stopped(stop) => true,
    }
}

/// Keep `cache` in step with the store until `stop`: list, then watch from the list revision;
/// resume the watch when it ends, relist on 410 or errors (with bounded backoff).
pub async fn run_informer(api: Arc<dyn ObjectApi>, cache: Cache, mut stop: watch::Receiver<bool>) {
    let res = cache.resource();
    let mut backoff = Duration::from_millis(50);
    let max_backoff = Duration::from_secs(5);
    let mut need_list = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if need_list {
            let listed = tokio::select! {
                r = api.list(res, None) => r,
                _ = stopped(&mut stop) => return,
            };
            match listed {
                Ok((items, rev)) => {
                    cache.replace(items, rev);
                    need_list = false;
                }
                Err(e) => {
                    tracing::warn!(resource = res.plural, error = %e, "informer list failed");
                    if sleep_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            }
        }
        let from = cache.revision();
        let watched = tokio::select! {
            r = api.watch(res, None, from) => r,
            _ = stopped(&mut stop) => return,
        };
        let mut stream = match watched {
            Ok(s) => s,
            Err(e) => {
                if !e.is_gone() {
                    tracing::warn!(resource = res.plural, error = %e, "informer watch failed");
                    if sleep_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
                need_list = true;
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stopped(&mut stop) => return,
            };
            match next {
                Some(Ok(ev)) => cache.apply(ev.kind, ev.object),
                Some(Err(e)) => {
                    if !e.is_gone() {
                        tracing::warn!(resource = res.plural, error = %e, "informer watch broke");
                        if sleep_or_stop(backoff, &mut stop).await {
                            return;
                        }
                    } else {
                        tracing::debug!(resource = res.plural, "watch expired; relisting");
                    }
                    need_list = true;
                    break;
                }
                // Stream ended cleanly: resume from the last revision seen.
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;
    use serde_json::json;
    use skiff_api::registry::PODS;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn informer_follows_store_and_relists_after_compaction() {
        let api = Arc::new(FakeApi::new());
        api.create(&PODS, json!({"metadata": {"name": "a"}, "spec": {}})).await.unwrap();
        let cache = Cache::new(&PODS);
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        cache.on_change(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
        });
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_informer(api.clone(), cache.clone(), rx));
        assert!(cache.wait_synced(Duration::from_secs(5)).await);
        assert!(cache.get(Some("default"), "a").is_some());

        let b = api.create(&PODS, json!({"metadata": {"name": "b"}, "spec": {}})).await.unwrap();
        assert!(cache.wait_for_revision(util::resource_version(&b).unwrap(), Duration::from_secs(5)).await);
        assert_eq!(cache.len(), 2);

        api.compact();
        api.delete(&PODS, Some("default"), "a", None, None).await.unwrap();
        assert!(cache.wait_for_revision(api.revision(), Duration::from_secs(5)).await);
        assert!(cache.get(Some("default"), "a").is_none(), "relist removed the deleted pod");
        assert_eq!(seen.load(Ordering::SeqCst), 3, "a added, b added, a deleted");

        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
