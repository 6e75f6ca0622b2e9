//! In-process clusters over the fault-injecting memory transport.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use skiff_store::mem_network::MemRouter;
use skiff_store::{NodeId, StoreConfig, StoreNode};

pub struct TestCluster {
    pub router: Arc<MemRouter>,
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<NodeId, Arc<StoreNode>>,
    pub base: StoreConfig,
}

pub fn fast_config() -> StoreConfig {
    StoreConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 250,
        election_timeout_max_ms: 500,
        request_timeout_ms: 3_000,
        ..StoreConfig::default()
    }
}

impl TestCluster {
    pub async fn start(n: u64, base: StoreConfig) -> TestCluster {
        let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
        let mut c =
            TestCluster { router: MemRouter::new(), dir: tempfile::tempdir().unwrap(), nodes: BTreeMap::new(), base };
        let members: BTreeMap<NodeId, String> = (1..=n).map(|i| (i, format!("mem-{i}"))).collect();
        for id in 1..=n {
            c.start_node(id, Some(members.clone())).await;
        }
        c
    }

    pub fn config(&self, id: NodeId) -> StoreConfig {
        StoreConfig {
            id,
            addr: format!("mem-{id}"),
            data_dir: self.dir.path().join(format!("n{id}")),
            ..self.base.clone()
        }
    }

    /// Starts (or restarts) replica `id` from its data directory.
    pub async fn start_node(&mut self, id: NodeId, members: Option<BTreeMap<NodeId, String>>) -> Arc<StoreNode> {
        // A just-stopped replica may still hold the RocksDB lock for a moment.
        let node = wait_for(Duration::from_secs(10), "open the replica's database", || {
            let cfg = self.config(id);
            let t = self.router.transport(id);
            let m = members.clone();
            async move { StoreNode::start(cfg, t, m).await.ok() }
        })
        .await;
        self.router.register(node.clone());
        self.nodes.insert(id, node.clone());
        node
    }

    /// Stops replica `id` as a crash would: unreachable at once, Raft stopped.
    pub async fn kill(&mut self, id: NodeId) {
        self.router.unregister(id);
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
        }
    }

    pub fn node(&self, id: NodeId) -> Arc<StoreNode> {
        self.nodes[&id].clone()
    }

    /// Waits until exactly one live replica among `among` says it leads; returns it.
    pub async fn leader_among(&self, among: &[NodeId]) -> NodeId {
        wait_for(Duration::from_secs(10), "a leader", || async {
            let leaders: Vec<NodeId> =
                among.iter().filter_map(|id| self.nodes.get(id)).filter(|n| n.is_leader()).map(|n| n.id()).collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
        .await
    }

    pub async fn leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.leader_among(&ids).await
    }

    /// Waits until every live replica has applied the same state (revision and keys).
    pub async fn converged(&self) {
        wait_for(Duration::from_secs(15), "replicas to converge", || async {
            let mut views = Vec::new();
            for n in self.nodes.values() {
                let (kvs, rev, _) = n.range("", None, 0, true).await.ok()?;
                views.push((
                    rev,
                    kvs.iter().map(|k| (k.key.clone(), k.value.clone(), k.mod_revision)).collect::<Vec<_>>(),
                ));
            }
            views.windows(2).all(|w| w[0] == w[1]).then_some(())
        })
        .await
    }
}

/// Polls `f` until it yields `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
