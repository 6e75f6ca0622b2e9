//! Skiff's leader-only reconcilers: replicasets, deployments, endpoints, node lifecycle, garbage collection, events.
//!
//! Everything here talks to the object store through [`ObjectApi`] (implemented by the
//! composition root over the Raft-replicated store; [`testing::FakeApi`] in tests), reads from
//! informer caches, and writes with compare-and-swap on `resourceVersion`, so a deposed leader
//! cannot make a decision stick. [`run_all`] starts every loop and returns when told to stop
//! (the leader stepped down).

pub mod api;
pub mod deployment;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod gc;
pub mod informer;
pub mod node_lifecycle;
pub mod replicaset;
pub mod runtime;
pub mod scheduling;
pub mod testing;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use skiff_api::registry::{DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES, NODES, PODS, REPLICASETS, SERVICES};
use tokio::sync::watch;

pub use api::{ApiCallError, EventType, ObjEvent, ObjectApi};
pub use error::Error;
pub use events::{EventKind, EventRecorder, InvolvedObject, NewEvent};
pub use informer::Cache;
pub use node_lifecycle::HeartbeatTable;
pub use runtime::{Action, Reconciler};
pub use util::ObjKey;

use informer::{run_informer, stopped};
use runtime::{run_controller, RunOptions, WorkQueue};

/// Tunables of the controller manager. Units are in the names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Concurrent reconciles per controller (never two for the same object).
    pub workers: usize,
    /// Distinct keys a controller's work queue holds; beyond that keys wait for the resync.
    pub queue_capacity: usize,
    /// Retry delay after the first failed reconcile of a key; doubles per failure.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Every object is reconciled again this often even without changes (0 disables).
    pub resync_period_ms: u64,
    /// How long a reconcile waits for the caches to reflect its own writes.
    pub cache_sync_timeout_ms: u64,
    /// A node whose agent is silent this long is unreachable (Ready=Unknown + taint).
    pub lease_ttl_ms: u64,
    /// Further time before an unreachable node's pods are deleted.
    pub eviction_timeout_ms: u64,
    /// What a new leader adds to the lease of every node it has not heard from yet: their
    /// agents are still streaming to the old leader, and notice a frozen or cut-off one only
    /// by their HTTP/2 keepalive (a PING every 5 s, answered within 5 s). Without it a leader
    /// that froze cost every pod of the cluster its place.
    pub leader_grace_ms: u64,
    /// Fraction of a zone's nodes from which, when more than two of them are silent at once,
    /// their pods are not evicted (Kubernetes' `--unhealthy-zone-threshold`). Evictions are held
    /// as well when every node of every zone is silent. Zones come from the nodes'
    /// `topology.kubernetes.io/region` and `zone` labels.
    pub unhealthy_zone_threshold: f64,
    /// A partially disrupted zone of more nodes than this is not held but slowed: its silent
    /// nodes lose their pods one node at a time (Kubernetes' `--large-cluster-size-threshold`).
    pub large_zone_threshold: usize,
    /// Nodes per second a slowed zone evicts (Kubernetes' `--secondary-node-eviction-rate`);
    /// 0 holds large zones as well.
    pub secondary_eviction_rate: f64,
    /// How often every node is checked besides the moments a lease or an eviction timeout
    /// runs out (when silent nodes are judged, whatever this is): it bounds how late a new
    /// node gets its first lease and a returning node loses the unreachable taint. A pass
    /// costs a lookup per node (5,000 nodes every 100 ms took a tenth of the leader's time).
    pub node_monitor_period_ms: u64,
    /// Garbage-collector sweep interval.
    pub gc_interval_ms: u64,
    /// Events older than this are deleted.
    pub event_ttl_ms: u64,
    pub event_expiry_interval_ms: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            workers: 2,
            queue_capacity: 10_000,
            backoff_base_ms: 20,
            backoff_max_ms: 10_000,
            resync_period_ms: 30_000,
            cache_sync_timeout_ms: 5_000,
            lease_ttl_ms: 4_000,
            eviction_timeout_ms: 2_000,
            leader_grace_ms: 10_000,
            unhealthy_zone_threshold: 0.55,
            large_zone_threshold: 50,
            secondary_eviction_rate: 0.01,
            node_monitor_period_ms: 500,
            gc_interval_ms: 10_000,
            event_ttl_ms: 3_600_000,
            event_expiry_interval_ms: 60_000,
        }
    }
}

/// The time between two evictions at `rate` nodes per second; `None` (never) at 0 or below.
/// Intervals beyond [`node_lifecycle::LONGEST_EVICTION_INTERVAL`] (a year) count as that.
pub fn eviction_interval(rate: f64) -> Option<Duration> {
    let longest = node_lifecycle::LONGEST_EVICTION_INTERVAL;
    (rate > 0.0).then(|| Duration::try_from_secs_f64(1.0 / rate).map_or(longest, |d| d.min(longest)))
}

/// What leader-only loops living in other crates get from the controller manager: the store,
/// the shared caches (so they need not watch again), the event recorder and the stop signal.
#[derive(Clone)]
pub struct LeaderContext {
    pub api: Arc<dyn ObjectApi>,
    pub pods: Cache,
    pub nodes: Cache,
    pub events: EventRecorder,
    pub heartbeats: HeartbeatTable,
    /// Becomes true when leadership is lost; the task must return promptly.
    pub stop: watch::Receiver<bool>,
}

/// A leader-only loop started by [`run_all_with`] once the caches are in sync.
pub type LeaderTask = Box<dyn FnOnce(LeaderContext) -> BoxFuture<'static, ()> + Send>;

/// Run every controller until `stop` becomes true (the leader stepped down), then return.
pub async fn run_all(
    api: Arc<dyn ObjectApi>,
    cfg: ControllerConfig,
    heartbeats: HeartbeatTable,
    stop: watch::Receiver<bool>,
) {
    run_all_with(api, cfg, heartbeats, stop, Vec::new()).await
}

/// [`run_all`] plus extra leader-only tasks.
///
/// SCHEDULER HOOK: the scheduler loop (crate `skiff-scheduler`) is meant to be passed here by
/// the composition root as a [`LeaderTask`]; it then reads `ctx.pods` / `ctx.nodes`, binds pods
/// through `ctx.api`, and stops with `ctx.stop`, exactly like the controllers.
pub async fn run_all_with(
    api: Arc<dyn ObjectApi>,
    cfg: ControllerConfig,
    heartbeats: HeartbeatTable,
    mut stop: watch::Receiver<bool>,
    extra: Vec<LeaderTask>,
) {
    if *stop.borrow() {
        return;
    }
    let ms = Duration::from_millis;
    let cache_timeout = ms(cfg.cache_sync_timeout_ms);
    let mut tasks = tokio::task::JoinSet::new();

    let pods = Cache::new(&PODS);
    let rsets = Cache::new(&REPLICASETS);
    let deploys = Cache::new(&DEPLOYMENTS);
    let nodes = Cache::new(&NODES);
    let services = Cache::new(&SERVICES);
    let endpoints = Cache::new(&ENDPOINTS);
    let slices = Cache::new(&ENDPOINTSLICES);

    let (events, sink) = EventRecorder::new(api.clone(), stop.clone());
    tasks.spawn(sink);

    // Triggers are registered before the informers start so the first list enqueues everything.
    let rs_ctl =
        replicaset::ReplicaSetController::new(api.clone(), pods.clone(), rsets.clone(), events.clone(), cache_timeout);
    let rs_queue = WorkQueue::new(cfg.queue_capacity);
    rs_ctl.register_triggers(&rs_queue);
    let d_ctl = deployment::DeploymentController::new(
        api.clone(),
        deploys.clone(),
        rsets.clone(),
        pods.clone(),
        events.clone(),
        cache_timeout,
    );
    let d_queue = WorkQueue::new(cfg.queue_capacity);
    d_ctl.register_triggers(&d_queue);
    let ep_ctl = endpoints::EndpointsController::new(
        api.clone(),
        services.clone(),
        pods.clone(),
        endpoints.clone(),
        slices.clone(),
        cache_timeout,
    );
    let ep_queue = WorkQueue::new(cfg.queue_capacity);
    ep_ctl.register_triggers(&ep_queue);

    for cache in [&pods, &rsets, &deploys, &nodes, &services, &endpoints, &slices] {
        tasks.spawn(run_informer(api.clone(), cache.clone(), stop.clone()));
    }

    // Nothing decides anything before every cache holds a full list: an empty pod cache would
    // make the ReplicaSet controller create duplicates.
    let synced = async {
        for cache in [&pods, &rsets, &deploys, &nodes, &services, &endpoints, &slices] {
            while !cache.wait_synced(Duration::from_secs(3600)).await {}
        }
    };
    tokio::select! {
        _ = synced => {}
        _ = stopped(&mut stop) => {
            tasks.shutdown().await;
            return;
        }
    }
    tracing::info!("controller caches synced; starting controllers");

    let opts = RunOptions {
        workers: cfg.workers,
        backoff_base_ms: cfg.backoff_base_ms,
        backoff_max_ms: cfg.backoff_max_ms,
        resync_period_ms: cfg.resync_period_ms,
    };
    tasks.spawn(run_controller(rs_ctl, rs_queue, Some(rsets.clone()), opts.clone(), stop.clone()));
    tasks.spawn(run_controller(d_ctl, d_queue, Some(deploys.clone()), opts.clone(), stop.clone()));
    tasks.spawn(run_controller(ep_ctl, ep_queue, Some(services.clone()), opts, stop.clone()));

    let nl = node_lifecycle::NodeLifecycle::new(
        api.clone(),
        nodes.clone(),
        pods.clone(),
        heartbeats.clone(),
        events.clone(),
        node_lifecycle::NodeLifecycleConfig {
            lease_ttl: ms(cfg.lease_ttl_ms),
            eviction_timeout: ms(cfg.eviction_timeout_ms),
            leader_grace: ms(cfg.leader_grace_ms),
            monitor_period: ms(cfg.node_monitor_period_ms),
            unhealthy_zone_threshold: cfg.unhealthy_zone_threshold,
            large_zone_threshold: cfg.large_zone_threshold,
            secondary_eviction_interval: eviction_interval(cfg.secondary_eviction_rate),
        },
    );
    tasks.spawn(nl.run(stop.clone()));

    let gc = gc::GarbageCollector::new(
        api.clone(),
        vec![pods.clone(), rsets.clone()],
        vec![rsets.clone(), deploys.clone(), nodes.clone()],
    )
    .with_node_pods(pods.clone(), nodes.clone());
    tasks.spawn(gc.run(ms(cfg.gc_interval_ms), stop.clone()));
    tasks.spawn(events::run_event_expiry(
        api.clone(),
        ms(cfg.event_ttl_ms),
        ms(cfg.event_expiry_interval_ms),
        stop.clone(),
    ));

    // SCHEDULER HOOK (and any other leader-only loop): started with the shared caches.
    let ctx = LeaderContext { api, pods, nodes, events, heartbeats, stop: stop.clone() };
    for task in extra {
        tasks.spawn(task(ctx.clone()));
    }

    stopped(&mut stop).await;
    tracing::info!("leadership lost or shutdown: stopping controllers");
    tasks.shutdown().await;
}
