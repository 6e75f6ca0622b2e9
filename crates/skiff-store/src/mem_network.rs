//! An in-memory, fault-injecting transport for in-process clusters: partitions, dropped
//! messages and delays between chosen replicas. A named test transport, never used by
//! `skiff server` (which talks gRPC).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::{Mutex, RwLock};
use rand::Rng;

use crate::error::StoreError;
use crate::node::StoreNode;
use crate::transport::{ForwardRequest, ForwardResponse, RpcError, Transport};
use crate::types::{NodeId, TypeConfig};

#[derive(Default)]
struct Faults {
    /// Directed links that lose every message.
    blocked: HashSet<(NodeId, NodeId)>,
    /// Percentage of messages lost on every link.
    drop_percent: u32,
    /// Extra latency on every message.
    delay_ms: u64,
}

/// Connects in-process replicas and injects faults between them.
#[derive(Default)]
pub struct MemRouter {
    nodes: RwLock<HashMap<NodeId, Arc<StoreNode>>>,
    faults: Mutex<Faults>,
}

impl MemRouter {
    pub fn new() -> Arc<Self> {
        Arc::new(MemRouter::default())
    }

    /// The transport replica `from` uses.
    pub fn transport(self: &Arc<Self>, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(MemTransport { from, router: self.clone() })
    }

    /// Makes a started replica reachable.
    pub fn register(&self, node: Arc<StoreNode>) {
        self.nodes.write().insert(node.id(), node);
    }

    /// Makes a replica unreachable (as if its process died); returns it.
    pub fn unregister(&self, id: NodeId) -> Option<Arc<StoreNode>> {
        self.nodes.write().remove(&id)
    }

    /// Splits the replicas into groups that cannot talk to each other.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut f = self.faults.lock();
        f.blocked.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a.iter() {
                        for y in b.iter() {
                            f.blocked.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    /// Removes partitions, drops and delays.
    pub fn heal(&self) {
        *self.faults.lock() = Faults::default();
    }

    pub fn set_drop_percent(&self, p: u32) {
        self.faults.lock().drop_percent = p.min(100);
    }

    pub fn set_delay_ms(&self, ms: u64) {
        self.faults.lock().delay_ms = ms;
    }

    /// Applies the faults of link `from → to`; returns the target when the message gets through.
    async fn deliver(&self, from: NodeId, to: NodeId) -> Result<Arc<StoreNode>, String> {
        let (blocked, drop, delay) = {
            let f = self.faults.lock();
            let drop = f.drop_percent > 0 && rand::rng().random_range(0..100) < f.drop_percent;
            (f.blocked.contains(&(from, to)), drop, f.delay_ms)
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if blocked {
            return Err(format!("link {from}->{to} is partitioned"));
        }
        if drop {
            return Err(format!("message {from}->{to} dropped"));
        }
        self.nodes.read().get(&to).cloned().ok_or_else(|| format!("replica {to} is down"))
    }

    /// Whether the reply `to → from` gets through.
    fn reply_ok(&self, from: NodeId, to: NodeId) -> Result<(), String> {
        if self.faults.lock().blocked.contains(&(to, from)) {
            return Err(format!("reply {to}->{from} is partitioned"));
        }
        Ok(())
    }
}

struct MemTransport {
    from: NodeId,
    router: Arc<MemRouter>,
}

fn unreachable<E: std::error::Error>(msg: String) -> RPCError<NodeId, crate::types::Node, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(msg)))
}

impl MemTransport {
    async fn call<T, E, F, Fut>(&self, to: NodeId, f: F) -> Result<T, RpcError<E>>
    where
        E: std::error::Error,
        F: FnOnce(Arc<StoreNode>) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let node = self.router.deliver(self.from, to).await.map_err(unreachable)?;
        let res = f(node).await;
        self.router.reply_ok(self.from, to).map_err(unreachable)?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(to, e)))
    }
}

#[async_trait::async_trait]
impl Transport for MemTransport {
    async fn append_entries(
        &self,
        target: NodeId,
        _addr: &str,
        req: AppendEntriesRequest<TypeConfig>,
        _ttl: Duration,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(target, |n| async move { n.handle_append_entries(req).await }).await
    }

    async fn vote(
        &self,
        target: NodeId,
        _addr: &str,
        req: VoteRequest<NodeId>,
        _ttl: Duration,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(target, |n| async move { n.handle_vote(req).await }).await
    }

    async fn install_snapshot(
        &self,
        target: NodeId,
        _addr: &str,
        req: InstallSnapshotRequest<TypeConfig>,
        _ttl: Duration,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>> {
        self.call(target, |n| async move { n.handle_install_snapshot(req).await }).await
    }

    async fn forward(
        &self,
        target: NodeId,
        _addr: &str,
        req: ForwardRequest,
        ttl: Duration,
    ) -> Result<ForwardResponse, StoreError> {
        let node = self.router.deliver(self.from, target).await.map_err(StoreError::Unavailable)?;
        let res = tokio::time::timeout(ttl, node.execute_local(req))
            .await
            .unwrap_or_else(|_| Err(StoreError::Timeout("forwarded request".into())));
        self.router.reply_ok(self.from, target).map_err(StoreError::Unavailable)?;
        res
    }
}
