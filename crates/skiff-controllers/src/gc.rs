//! Garbage collector: deletes objects whose owners are all gone (what a crash mid-cascade left
//! behind) and pods bound to nodes that no longer exist.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_api::registry::{lookup_kind, NAMESPACES, NODES, PODS};
use tokio::sync::watch;

use crate::api::{ApiCallError, ObjectApi};
use crate::informer::{sleep_or_stop, stopped, Cache};
use crate::util;

/// Sweeps `dependents` (caches of resources that carry owner references) every `interval`.
pub struct GarbageCollector {
    api: Arc<dyn ObjectApi>,
    dependents: Vec<Cache>,
    /// Caches consulted first for owner existence (a miss is confirmed with a live GET).
    owners: Vec<Cache>,
    /// (pods, nodes): pods bound to a node missing from the store are deleted (Kubernetes' PodGC).
    node_pods: Option<(Cache, Cache)>,
}

impl GarbageCollector {
    pub fn new(api: Arc<dyn ObjectApi>, dependents: Vec<Cache>, owners: Vec<Cache>) -> Self {
        GarbageCollector { api, dependents, owners, node_pods: None }
    }

    /// Also delete pods bound to nodes that no longer exist.
    pub fn with_node_pods(mut self, pods: Cache, nodes: Cache) -> Self {
        self.node_pods = Some((pods, nodes));
        self
    }

    /// Pods whose `spec.nodeName` names a node that is gone (confirmed with a live GET).
    async fn sweep_node_pods(&self) -> Result<usize, ApiCallError> {
        let Some((pods, nodes)) = &self.node_pods else { return Ok(0) };
        let mut deleted = 0;
        let mut missing: HashSet<String> = HashSet::new();
        for pod in pods.list(None) {
            let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { continue };
            if nodes.get(None, node).is_some() {
                continue;
            }
            if !missing.contains(node) {
                match self.api.get(&NODES, None, node).await {
                    Ok(_) => continue,
                    Err(e) if e.is_not_found() => {
                        missing.insert(node.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            match self.api.delete(&PODS, util::namespace(&pod), util::name(&pod), Some(util::uid(&pod)), Some(0)).await
            {
                Ok(()) => {
                    tracing::info!(pod = %util::ObjKey::of(&pod), node, "deleted pod bound to a missing node");
                    deleted += 1;
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    pub async fn run(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = self.sweep() => match r {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "garbage collected orphans"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "garbage collection pass failed"),
                },
                _ = stopped(&mut stop) => return,
            }
            if sleep_or_stop(interval, &mut stop).await {
                return;
            }
        }
    }

    /// Does an owner reference point at an object that exists with that uid?
    async fn owner_exists(&self, dependent: &Value, owner: &Value) -> Result<bool, ApiCallError> {
        let (Some(api_version), Some(kind), Some(name), Some(uid)) =
            (owner["apiVersion"].as_str(), owner["kind"].as_str(), owner["name"].as_str(), owner["uid"].as_str())
        else {
            return Ok(true); // malformed: leave it alone
        };
        let Some(res) = lookup_kind(api_version, kind) else { return Ok(true) }; // a kind we do not serve
        let ns = if res.namespaced { util::namespace(dependent) } else { None };
        for cache in &self.owners {
            let c = cache.resource();
            if c.group == res.group
                && c.plural == res.plural
                && cache.get(ns, name).is_some_and(|o| util::uid(&o) == uid)
            {
                return Ok(true);
            }
        }
        match self.api.get(res, ns, name).await {
            Ok(o) => Ok(util::uid(&o) == uid),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Namespaces left Terminating (the replica emptying one died, or lost leadership):
    /// deleting one again makes the leader resume emptying it. Returns how many.
    async fn resume_namespace_deletions(&self) -> Result<usize, ApiCallError> {
        let (namespaces, _) = self.api.list(&NAMESPACES, None).await?;
        let mut resumed = 0;
        for ns in namespaces.iter().filter(|n| n["metadata"]["deletionTimestamp"].is_string()) {
            match self.api.delete(&NAMESPACES, None, util::name(ns), Some(util::uid(ns)), None).await {
                Ok(()) => resumed += 1,
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(resumed)
    }

    /// One pass; returns how many objects were deleted.
    pub async fn sweep(&self) -> Result<usize, ApiCallError> {
        match self.resume_namespace_deletions().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(namespaces = n, "resumed emptying Terminating namespaces"),
            Err(e) => tracing::debug!(error = %e, "resuming namespace deletions failed"),
        }
        let mut deleted = self.sweep_node_pods().await?;
        let mut seen_dangling: HashSet<String> = HashSet::new();
        for cache in &self.dependents {
            let res = cache.resource();
            for obj in cache.list(None) {
                let Some(refs) = obj["metadata"]["ownerReferences"].as_array().filter(|r| !r.is_empty()) else {
                    continue;
                };
                if util::controller_ref(&obj).is_none() {
                    continue;
                }
                let mut all_gone = true;
                for r in refs {
                    let uid = r["uid"].as_str().unwrap_or("").to_string();
                    if seen_dangling.contains(&uid) {
                        continue;
                    }
                    if self.owner_exists(&obj, r).await? {
                        all_gone = false;
                        break;
                    }
                    seen_dangling.insert(uid);
                }
                if !all_gone {
                    continue;
                }
                match self.api.delete(res, util::namespace(&obj), util::name(&obj), Some(util::uid(&obj)), None).await {
                    Ok(()) => {
                        tracing::debug!(resource = res.plural, object = %util::ObjKey::of(&obj), "deleted orphan");
                        deleted += 1;
                    }
                    Err(e) if e.is_not_found() || e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(deleted)
    }
}
