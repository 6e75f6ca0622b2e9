//! Best-effort recording of Kubernetes `v1 Event`s (bounded, never blocks a reconcile) and their expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use skiff_api::registry::EVENTS;
use skiff_api::ResourceInfo;
use tokio::sync::{mpsc, watch};

use crate::api::ObjectApi;
use crate::informer::{sleep_or_stop, stopped};
use crate::util::{self, format_time};

/// Pending events beyond this are dropped. One queue takes every agent's events as well as the
/// control plane's: at 1,024, bursts of 5,000 fake nodes starting pods still overflowed it
/// (4 % of the events lost); at 4,096 (a few MB) runs at 1,600-1,800 pods/s still lost 1-3 %
/// of them in 2 runs of 6 (logged as drops). At 16,384 it holds the events of 4,000 pods.
const EVENT_QUEUE: usize = 16_384;
/// Distinct (object, reason, message) series remembered for aggregation.
const SERIES_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Normal,
    Warning,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

/// The object an Event is about (`involvedObject`: Kubernetes' `ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The part of the object, e.g. `spec.containers{web}` for one container of a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// A new `v1 Event` as the sink writes it: serialized straight into the stored JSON, without
/// building a `serde_json::Value` tree first (the sink writes several per pod started).
/// `metadata.uid` and `creationTimestamp` are left empty for the store to fill in.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: NewEventMeta,
    pub involved_object: InvolvedObject,
    pub reason: String,
    pub message: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub count: i64,
    pub first_timestamp: String,
    pub last_timestamp: String,
    pub source: EventSource,
    pub reporting_component: &'static str,
    pub reporting_instance: String,
}

/// The metadata of a [`NewEvent`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEventMeta {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub creation_timestamp: String,
}

/// Who reported a [`NewEvent`] (`source`).
#[derive(Debug, Clone, Serialize)]
pub struct EventSource {
    pub component: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

struct EventRequest {
    involved: InvolvedObject,
    kind: EventKind,
    reason: String,
    message: String,
    component: &'static str,
    /// The node reporting it (`source.host`), for agents' events.
    host: Option<String>,
}

/// Handle for recording events about objects. Cheap to clone; recording never waits: when the
/// queue is full the event is dropped.
#[derive(Clone)]
pub struct EventRecorder {
    tx: Option<mpsc::Sender<EventRequest>>,
    component: &'static str,
    /// Events dropped on a full queue so far, for all handles of this sink.
    dropped: Arc<AtomicU64>,
    /// Events the sink failed to write so far.
    failed: Arc<AtomicU64>,
}

impl EventRecorder {
    /// A recorder and the task that writes its events through `api` until `stop`.
    pub fn new(
        api: Arc<dyn ObjectApi>,
        stop: watch::Receiver<bool>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let (dropped, failed) = (Arc::default(), Arc::new(AtomicU64::new(0)));
        let sink = run_sink(api, rx, failed.clone(), stop);
        (EventRecorder { tx: Some(tx), component: "skiff-controller-manager", dropped, failed }, sink)
    }

    /// A recorder that drops everything.
    pub fn disabled() -> Self {
        EventRecorder { tx: None, component: "", dropped: Arc::default(), failed: Arc::default() }
    }

    /// The same sink, reporting as `component` (`source.component`).
    pub fn for_component(&self, component: &'static str) -> Self {
        EventRecorder { tx: self.tx.clone(), component, dropped: self.dropped.clone(), failed: self.failed.clone() }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events taken from the queue whose write failed so far (not retried).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn normal(&self, res: &ResourceInfo, obj: &Value, reason: &str, message: impl Into<String>) {
        self.record(res, obj, EventKind::Normal, reason, message.into());
    }

    pub fn warning(&self, res: &ResourceInfo, obj: &Value, reason: &str, message: impl Into<String>) {
        self.record(res, obj, EventKind::Warning, reason, message.into());
    }

    pub fn record(&self, res: &ResourceInfo, obj: &Value, kind: EventKind, reason: &str, message: String) {
        if self.tx.is_none() {
            return;
        }
        let involved = InvolvedObject {
            api_version: res.api_version(),
            kind: res.kind.to_string(),
            name: util::name(obj).to_string(),
            namespace: util::namespace(obj).map(str::to_string),
            uid: util::uid(obj).to_string(),
            resource_version: obj["metadata"]["resourceVersion"].as_str().map(str::to_string),
            field_path: None,
        };
        self.send(involved, kind, reason, message, None);
    }

    /// An event another component reported, about `involved` (an `involvedObject`, e.g. a
    /// pod's container with `fieldPath`), from node `host`: what agents report as `kubelet`.
    pub fn record_involved(
        &self,
        involved: InvolvedObject,
        kind: EventKind,
        reason: &str,
        message: String,
        host: &str,
    ) {
        self.send(involved, kind, reason, message, Some(host.to_string()).filter(|h| !h.is_empty()));
    }

    fn send(&self, involved: InvolvedObject, kind: EventKind, reason: &str, message: String, host: Option<String>) {
        let Some(tx) = &self.tx else { return };
        let req = EventRequest { involved, kind, reason: reason.to_string(), message, component: self.component, host };
        match tx.try_send(req) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Told at the first and at every 1,024th: a loss is visible, never a log flood.
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(1024) {
                    tracing::warn!(dropped = n, "event queue full ({EVENT_QUEUE} pending): events are being dropped");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => tracing::debug!(reason, "event dropped (recorder stopped)"),
        }
    }
}

type SeriesKey = (String, EventKind, String, String);
/// Where a series' Event lives: namespace and name.
type EventAt = (String, String);

/// Events taken from the queue and written at once: the first Events of the series new in the
/// round are created together (a batch of transactions per [`CREATE_CHUNK`]), the rest of each
/// series after, in order, distinct series concurrently (the store's group commit makes few
/// Raft entries of them).
/// A round lasts about one commit, so this bounds the rate the sink keeps up with: at 64,
/// pods started at 1,700/s on 5,000 fake nodes (four events each) filled the queue and 62 %
/// of the agents' events were dropped; at 512 the sink was still 1-10 % behind when the last
/// pod was bound, and at 2,048 (two of the store's batches) it is not.
const SINK_CHUNK: usize = 2048;

/// `now` in nanoseconds, or one more than the last value handed out when that is not later.
fn unique_nanos(now: Timestamp) -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let want = u64::try_from(now.as_nanosecond()).unwrap_or(0);
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = want.max(last + 1);
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn series_key(req: &EventRequest) -> SeriesKey {
    let i = &req.involved;
    (
        format!("{}/{}/{}", i.uid, i.name, i.field_path.as_deref().unwrap_or("")),
        req.kind,
        req.reason.clone(),
        req.message.clone(),
    )
}

async fn run_sink(
    api: Arc<dyn ObjectApi>,
    mut rx: mpsc::Receiver<EventRequest>,
    failed: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    // Series already written: key → (namespace, event name).
    let mut series: HashMap<SeriesKey, (String, String)> = HashMap::new();
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            _ = stopped(&mut stop) => return,
        };
        let mut groups: Vec<(SeriesKey, Vec<EventRequest>)> = Vec::new();
        let mut index: HashMap<SeriesKey, usize> = HashMap::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(req) = next.take() {
            taken += 1;
            let key = series_key(&req);
            match index.get(&key) {
                Some(&i) => groups[i].1.push(req),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![req]));
                }
            }
            if taken < SINK_CHUNK {
                next = rx.try_recv().ok();
            }
        }
        // A series not written before starts with a new Event: those of the round are created
        // together (a few Raft entries for thousands of events); the rest of every series
        // (repeats, and series written before, which raise an Event's count) is written
        // after, in order, concurrently across series.
        let api = &*api;
        let mut creates = Vec::new();
        let mut firsts = Vec::new();
        // Per series: where it lives (if written) and what is left to write of it.
        let mut rounds: Vec<(SeriesKey, Option<EventAt>, std::vec::IntoIter<EventRequest>)> = Vec::new();
        for (key, reqs) in groups {
            let cur = series.get(&key).cloned();
            let mut reqs = reqs.into_iter();
            if cur.is_none() {
                if let Some(req) = reqs.next() {
                    let event = new_event(req, Timestamp::now());
                    firsts.push((rounds.len(), event.metadata.namespace.clone(), event.metadata.name.clone()));
                    creates.push(event);
                }
            }
            rounds.push((key, cur, reqs));
        }
        let mut errors: Vec<(u64, Option<crate::api::ApiCallError>)> = vec![(0, None); rounds.len()];
        let created = tokio::select! {
            c = create_events(api, creates) => c,
            _ = stopped(&mut stop) => return,
        };
        for ((i, ns, name), r) in firsts.into_iter().zip(created) {
            match r {
                Ok(()) => rounds[i].1 = Some((ns, name)),
                Err(e) => errors[i] = (1, Some(e)),
            }
        }
        let writes = rounds.into_iter().zip(errors).map(|((key, mut cur, reqs), mut errors)| async move {
            for req in reqs {
                match write_event(api, cur.clone(), req).await {
                    Ok(written) => cur = Some(written),
                    Err(e) => errors = (errors.0 + 1, Some(e)),
                }
            }
            (key, cur, errors)
        });
        let written = tokio::select! {
            w = futures::future::join_all(writes) => w,
            _ = stopped(&mut stop) => return,
        };
        for (key, at, (n, error)) in written {
            if let Some(e) = error {
                // Told at the first and whenever the count passes a multiple of 1,024.
                let before = failed.fetch_add(n, Ordering::Relaxed);
                let now = before + n;
                if before == 0 || before / 1024 != now / 1024 {
                    tracing::warn!(failed = now, error = %e, "event writes failing: events not recorded");
                }
            }
            if let Some(at) = at {
                if series.len() >= SERIES_LIMIT && !series.contains_key(&key) {
                    series.clear();
                }
                series.insert(key, at);
            }
        }
    }
}

/// Writes one event: a new occurrence of the series last written as `existing` raises its
/// count; otherwise (or when that Event is gone) a new Event ([`new_event`]). Returns where the
/// series now lives.
async fn write_event(
    api: &dyn ObjectApi,
    existing: Option<(String, String)>,
    req: EventRequest,
) -> Result<(String, String), crate::api::ApiCallError> {
    let now = Timestamp::now();
    if let Some((ev_ns, ev_name)) = existing {
        if let Ok(mut ev) = api.get(&EVENTS, Some(&ev_ns), &ev_name).await {
            ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
            ev["lastTimestamp"] = json!(format_time(now));
            match api.update(&EVENTS, ev).await {
                Ok(_) => return Ok((ev_ns, ev_name)),
                Err(e) if !e.is_not_found() => return Err(e),
                Err(_) => {}
            }
        }
    }
    let event = new_event(req, now);
    let at = (event.metadata.namespace.clone(), event.metadata.name.clone());
    api.create_event(event).await?;
    Ok(at)
}

/// Events created at once, in chunks of this many (each chunk one batch of transactions).
const CREATE_CHUNK: usize = 512;

/// Creates `events` (new series), chunks concurrently: one result per event, in order.
async fn create_events(api: &dyn ObjectApi, mut events: Vec<NewEvent>) -> Vec<Result<(), crate::api::ApiCallError>> {
    let mut chunks = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(CREATE_CHUNK));
        chunks.push(std::mem::replace(&mut events, rest));
    }
    let results = futures::future::join_all(chunks.into_iter().map(|chunk| async move {
        let n = chunk.len();
        match api.create_events(chunk).await {
            Ok(rs) if rs.len() == n => rs,
            Ok(rs) => {
                let e =
                    crate::api::ApiCallError::new(500, "InternalError", format!("{n} events answered {}", rs.len()));
                vec![Err(e); n]
            }
            Err(e) => vec![Err(e); n],
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// A new Event for `req` at `now`, named after the object and a time in nanoseconds that is
/// unique in this process (events written at once never collide).
fn new_event(req: EventRequest, now: Timestamp) -> NewEvent {
    let ns = req.involved.namespace.clone().unwrap_or_else(|| "default".to_string());
    let object = if req.involved.name.is_empty() { "unknown" } else { req.involved.name.as_str() };
    let name = format!("{object}.{:x}", unique_nanos(now));
    let at = format_time(now);
    NewEvent {
        api_version: "v1",
        kind: "Event",
        metadata: NewEventMeta { name, namespace: ns, uid: String::new(), creation_timestamp: String::new() },
        involved_object: req.involved,
        reason: req.reason,
        message: req.message,
        type_: req.kind.as_str(),
        count: 1,
        first_timestamp: at.clone(),
        last_timestamp: at,
        source: EventSource { component: req.component, host: req.host.clone() },
        reporting_component: req.component,
        reporting_instance: req.host.unwrap_or_default(),
    }
}

/// Delete events whose last occurrence is older than `ttl`, every `interval`, until `stop`.
pub async fn run_event_expiry(
    api: Arc<dyn ObjectApi>,
    ttl: Duration,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let sweep = expire_events(&*api, ttl);
        tokio::select! {
            r = sweep => match r {
                Ok(n) if n > 0 => tracing::debug!(deleted = n, "expired events"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "event expiry failed"),
            },
            _ = stopped(&mut stop) => return,
        }
        if sleep_or_stop(interval, &mut stop).await {
            return;
        }
    }
}

/// One expiry pass; returns how many events were deleted.
pub async fn expire_events(api: &dyn ObjectApi, ttl: Duration) -> Result<usize, crate::api::ApiCallError> {
    let (events, _) = api.list(&EVENTS, None).await?;
    let cutoff = Timestamp::now().as_second() - ttl.as_secs() as i64;
    let mut deleted = 0;
    for ev in events {
        let last = util::parse_time(&ev["lastTimestamp"])
            .or_else(|| util::parse_time(&ev["eventTime"]))
            .or_else(|| util::creation_timestamp(&ev));
        if last.is_some_and(|t| t.as_second() < cutoff) {
            match api.delete(&EVENTS, util::namespace(&ev), util::name(&ev), Some(util::uid(&ev)), Some(0)).await {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;
    use skiff_api::registry::REPLICASETS;

    #[tokio::test]
    async fn events_are_written_aggregated_and_expired() {
        let api = Arc::new(FakeApi::new());
        let (_tx, rx) = watch::channel(false);
        let (rec, sink) = EventRecorder::new(api.clone(), rx);
        tokio::spawn(sink);
        let rec = rec.for_component("replicaset-controller");
        let rs = json!({"metadata": {"name": "web-1", "namespace": "default", "uid": "u1"}});
        rec.normal(&REPLICASETS, &rs, "SuccessfulCreate", "Created pod: web-1-abcde");
        rec.normal(&REPLICASETS, &rs, "SuccessfulCreate", "Created pod: web-1-abcde");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let evs = api.objects(&EVENTS);
            if evs.len() == 1 && evs[0]["count"] == 2 {
                let e = &evs[0];
                assert!(util::name(e).starts_with("web-1."));
                assert_eq!(e["involvedObject"]["kind"], "ReplicaSet");
                assert_eq!(e["involvedObject"]["uid"], "u1");
                assert_eq!(e["source"]["component"], "replicaset-controller");
                assert_eq!(e["source"].get("host"), None, "a controller's event has no host: {e}");
                assert_eq!(e["type"], "Normal");
                assert_eq!(e["reason"], "SuccessfulCreate");
                assert_eq!(e["message"], "Created pod: web-1-abcde");
                assert_eq!(e["metadata"]["namespace"], "default");
                assert_eq!(e["reportingComponent"], "replicaset-controller");
                assert_eq!(e["reportingInstance"], "");
                assert!(util::parse_time(&e["firstTimestamp"]).is_some(), "{e}");
                assert!(util::parse_time(&e["lastTimestamp"]).is_some(), "{e}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "events: {evs:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(expire_events(&*api, Duration::from_secs(3600)).await.unwrap(), 0);
        let name = util::name(&api.objects(&EVENTS)[0]).to_string();
        api.modify(&EVENTS, Some("default"), &name, |e| e["lastTimestamp"] = json!("2001-01-01T00:00:00Z"));
        assert_eq!(expire_events(&*api, Duration::from_secs(3600)).await.unwrap(), 1);
        assert!(api.objects(&EVENTS).is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_the_rest() {
        let api = Arc::new(FakeApi::new());
        let (_tx, rx) = watch::channel(false);
        // The sink does not run: nothing leaves the queue.
        let (rec, _sink) = EventRecorder::new(api.clone(), rx);
        let kubelet = rec.for_component("kubelet");
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}});
        for i in 0..EVENT_QUEUE + 5 {
            kubelet.normal(&skiff_api::registry::PODS, &pod, "Started", format!("Started container c{i}"));
        }
        assert_eq!(rec.dropped(), 5, "every handle of the sink shares the count");
        assert_eq!(EventRecorder::disabled().dropped(), 0);
    }

    #[tokio::test]
    async fn failed_writes_are_counted() {
        let api = Arc::new(FakeApi::new());
        let (_tx, rx) = watch::channel(false);
        let (rec, sink) = EventRecorder::new(api.clone(), rx);
        api.fail_next("create", Some(&EVENTS), crate::ApiCallError::unavailable("no leader"), 2);
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}});
        for reason in ["Pulled", "Created", "Started"] {
            rec.normal(&skiff_api::registry::PODS, &pod, reason, format!("{reason} container c"));
        }
        tokio::spawn(sink);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rec.failed() < 2 || api.objects(&EVENTS).is_empty() {
            assert!(std::time::Instant::now() < deadline, "failed {}, events {:?}", rec.failed(), api.objects(&EVENTS));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rec.failed(), 2);
        assert_eq!(api.objects(&EVENTS).len(), 1, "the third was written");
        assert_eq!(rec.dropped(), 0);
    }

    #[tokio::test]
    async fn a_burst_of_events_is_written_in_full_and_repeats_aggregate() {
        let api = Arc::new(FakeApi::new());
        let (_tx, rx) = watch::channel(false);
        let (rec, sink) = EventRecorder::new(api.clone(), rx);
        let rec = rec.for_component("kubelet");
        // Queued before the sink runs, so they are taken in chunks: 100 pods × 3 reasons,
        // the same pod's events in the same instant, plus 5 repeats of one series.
        for p in 0..100 {
            let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": format!("u{p}")}});
            for reason in ["Pulled", "Created", "Started"] {
                rec.normal(&skiff_api::registry::PODS, &pod, reason, format!("{reason} container c"));
            }
        }
        let pod = json!({"metadata": {"name": "crashy", "namespace": "default", "uid": "c1"}});
        for _ in 0..5 {
            rec.warning(&skiff_api::registry::PODS, &pod, "BackOff", "Back-off restarting failed container");
        }
        tokio::spawn(sink);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let evs = api.objects(&EVENTS);
            let backoff: Vec<&Value> = evs.iter().filter(|e| e["reason"] == "BackOff").collect();
            if evs.len() == 301 && backoff.len() == 1 && backoff[0]["count"] == 5 {
                let names: std::collections::HashSet<&str> = evs.iter().map(util::name).collect();
                assert_eq!(names.len(), 301, "event names collide");
                for reason in ["Pulled", "Created", "Started"] {
                    assert_eq!(evs.iter().filter(|e| e["reason"] == reason).count(), 100, "{reason}");
                }
                // Every series was new in the one round that took them all: their Events were
                // created in one call, and BackOff's repeats raised its count after.
                assert_eq!(api.event_batches(), [301]);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{} events: {:?}", evs.len(), backoff);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
