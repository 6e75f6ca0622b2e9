//! Controller runtime: a bounded, deduplicating work queue of object keys and workers that call a
//! `Reconciler`, requeue with backoff on error, and resync periodically.
//!
//! As in kube-rs' `Controller`, a reconciler only ever learns *which* object to look at, never
//! why, so it must be idempotent. One key is never reconciled by two workers at once; a key
//! added while it is being reconciled runs again afterwards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::error::Error;
use crate::informer::{sleep_or_stop, stopped, Cache};
use crate::util::ObjKey;

/// What to do after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Nothing more to do until something changes (or the periodic resync).
    pub fn await_change() -> Self {
        Action { requeue_after: None }
    }
    /// Look again after `d` (time-based conditions: minReadySeconds, progress deadlines).
    pub fn requeue(d: Duration) -> Self {
        Action { requeue_after: Some(d) }
    }
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
    /// The sooner of two actions.
    pub fn min(self, other: Action) -> Action {
        match (self.requeue_after, other.requeue_after) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (a, b) => Action { requeue_after: a.or(b) },
        }
    }
}

/// One controller's reconcile function.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// Name used in logs (`replicaset-controller`).
    fn name(&self) -> &'static str;
    /// Bring the object at `key` (which may no longer exist) towards its desired state.
    async fn reconcile(&self, key: &ObjKey) -> Result<Action, Error>;
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<ObjKey>,
    queued: HashSet<ObjKey>,
    processing: HashSet<ObjKey>,
    dirty: HashSet<ObjKey>,
    delayed: HashMap<ObjKey, Instant>,
    failures: HashMap<ObjKey, u32>,
    dropped: u64,
}

impl QueueState {
    fn len(&self) -> usize {
        self.queued.len() + self.delayed.len() + self.dirty.len()
    }
}

/// Bounded, deduplicating queue of keys with delayed adds and per-key failure counts.
pub struct WorkQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    capacity: usize,
}

impl WorkQueue {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(WorkQueue { state: Mutex::default(), notify: Notify::new(), capacity: capacity.max(1) })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` now. A key already queued is not queued twice; a key being reconciled runs
    /// again when its reconcile finishes. When the queue is full the key is dropped (the periodic
    /// resync picks it up again).
    pub fn add(&self, key: ObjKey) {
        let mut s = self.lock();
        if Self::add_locked(&mut s, key, self.capacity) {
            drop(s);
            self.notify.notify_one();
        }
    }

    fn add_locked(s: &mut QueueState, key: ObjKey, capacity: usize) -> bool {
        if s.queued.contains(&key) {
            return false;
        }
        if s.processing.contains(&key) {
            if !s.dirty.contains(&key) && s.len() >= capacity {
                s.dropped += 1;
                return false;
            }
            s.delayed.remove(&key);
            s.dirty.insert(key);
            return false;
        }
        let was_delayed = s.delayed.remove(&key).is_some();
        if !was_delayed && s.len() >= capacity {
            s.dropped += 1;
            if s.dropped.is_power_of_two() {
                tracing::warn!(dropped = s.dropped, "work queue full; keys dropped until the next resync");
            }
            return false;
        }
        s.queued.insert(key.clone());
        s.ready.push_back(key);
        true
    }

    /// Queue `key` after `delay` (unless it is queued sooner).
    pub fn add_after(&self, key: ObjKey, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        let mut s = self.lock();
        if s.queued.contains(&key) || s.dirty.contains(&key) {
            return;
        }
        let full = s.len() >= self.capacity;
        match s.delayed.get_mut(&key) {
            Some(at) => *at = (*at).min(due),
            None if full => s.dropped += 1,
            None => {
                s.delayed.insert(key, due);
            }
        }
        drop(s);
        self.notify.notify_one();
    }

    /// Next key to reconcile; the caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> ObjKey {
        loop {
            let notified = self.notify.notified();
            let wake_at = {
                let mut s = self.lock();
                let now = Instant::now();
                let due: Vec<ObjKey> = s.delayed.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    s.delayed.remove(&k);
                    Self::add_locked(&mut s, k, usize::MAX);
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
                s.delayed.values().min().copied()
            };
            match wake_at {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Finish `key`; re-queue it if it was added meanwhile.
    pub fn done(&self, key: &ObjKey) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && Self::add_locked(&mut s, key.clone(), usize::MAX) {
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Record a failure of `key`; returns how many in a row.
    fn failed(&self, key: &ObjKey) -> u32 {
        let mut s = self.lock();
        let n = s.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn forget(&self, key: &ObjKey) {
        self.lock().failures.remove(key);
    }

    /// Keys waiting (ready, delayed or to re-run).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a controller's workers behave.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub workers: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Re-queue every key of the primary cache this often (0 disables).
    pub resync_period_ms: u64,
}

/// Delay before retrying after `failures` consecutive failures: base·2^(n−1), capped.
pub fn backoff_delay(failures: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    Duration::from_millis(base_ms.saturating_mul(1u64 << exp).min(max_ms))
}

/// Run `reconciler` over `queue` with `opts.workers` workers until `stop`. `primary`, if given,
/// is resynced periodically. Reconcile errors are logged and retried with backoff; they never
/// stop the controller.
pub async fn run_controller(
    reconciler: Arc<dyn Reconciler>,
    queue: Arc<WorkQueue>,
    primary: Option<Cache>,
    opts: RunOptions,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(cache), true) = (primary, opts.resync_period_ms > 0) {
        let queue = queue.clone();
        let mut stop = stop.clone();
        let period = Duration::from_millis(opts.resync_period_ms);
        tasks.spawn(async move {
            while !sleep_or_stop(period, &mut stop).await {
                for key in cache.keys() {
                    queue.add(key);
                }
            }
        });
    }
    for _ in 0..opts.workers.max(1) {
        let reconciler = reconciler.clone();
        let queue = queue.clone();
        let mut stop = stop.clone();
        let opts = opts.clone();
        tasks.spawn(async move {
            loop {
                let key = tokio::select! {
                    k = queue.next() => k,
                    _ = stopped(&mut stop) => return,
                };
                let result = tokio::select! {
                    r = reconciler.reconcile(&key) => r,
                    _ = stopped(&mut stop) => {
                        queue.done(&key);
                        return;
                    }
                };
                match result {
                    Ok(action) => {
                        queue.forget(&key);
                        if let Some(d) = action.requeue_after() {
                            queue.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let n = queue.failed(&key);
                        let delay = backoff_delay(n, opts.backoff_base_ms, opts.backoff_max_ms);
                        if e.is_benign() {
                            tracing::debug!(controller = reconciler.name(), %key, error = %e, "reconcile retry");
                        } else {
                            tracing::warn!(controller = reconciler.name(), %key, error = %e, failures = n,
                                retry_in_ms = delay.as_millis() as u64, "reconcile failed");
                        }
                        queue.add_after(key.clone(), delay);
                    }
                }
                queue.done(&key);
            }
        });
    }
    let mut stop = stop;
    stopped(&mut stop).await;
    tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn k(n: &str) -> ObjKey {
        ObjKey::new(Some("default"), n)
    }

    #[tokio::test]
    async fn queue_dedups_and_defers_keys_in_flight() {
        let q = WorkQueue::new(10);
        q.add(k("a"));
        q.add(k("a"));
        q.add(k("b"));
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, k("a"));
        q.add(k("a"));
        assert_eq!(q.next().await, k("b"));
        q.done(&k("b"));
        q.done(&a);
        assert_eq!(q.next().await, k("a"), "re-added while processing runs again");
        q.done(&k("a"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn queue_is_bounded_and_delays() {
        let q = WorkQueue::new(2);
        q.add(k("a"));
        q.add(k("b"));
        q.add(k("c"));
        assert_eq!(q.len(), 2, "third key dropped");
        let start = Instant::now();
        let q2 = WorkQueue::new(2);
        q2.add_after(k("x"), Duration::from_millis(50));
        q2.add_after(k("x"), Duration::from_millis(10_000));
        assert_eq!(q2.next().await, k("x"));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(45) && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_delay(1, 10, 1000), Duration::from_millis(10));
        assert_eq!(backoff_delay(3, 10, 1000), Duration::from_millis(40));
        assert_eq!(backoff_delay(40, 10, 1000), Duration::from_millis(1000));
    }

    struct Flaky(AtomicU32);
    #[async_trait::async_trait]
    impl Reconciler for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn reconcile(&self, _key: &ObjKey) -> Result<Action, Error> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if n < 3 {
                Err(Error::invalid("x", "spec", "boom"))
            } else {
                Ok(Action::await_change())
            }
        }
    }

    #[tokio::test]
    async fn errors_requeue_with_backoff_and_never_stop_the_controller() {
        let rec = Arc::new(Flaky(AtomicU32::new(0)));
        let q = WorkQueue::new(10);
        q.add(k("a"));
        let (tx, rx) = watch::channel(false);
        let opts = RunOptions { workers: 2, backoff_base_ms: 5, backoff_max_ms: 50, resync_period_ms: 0 };
        let task = tokio::spawn(run_controller(rec.clone(), q.clone(), None, opts, rx));
        let deadline = Instant::now() + Duration::from_secs(5);
        while rec.0.load(Ordering::SeqCst) < 4 {
            assert!(Instant::now() < deadline, "reconcile was not retried");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task).await.unwrap().unwrap();
    }
}
