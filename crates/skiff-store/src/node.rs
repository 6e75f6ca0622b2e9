//! One replica of the store: the Raft instance, its storage, and the client-facing
//! operations (writes forwarded to the leader, read-index reads, watches, membership).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Semaphore};

use crate::batcher::Batcher;
use crate::election::{Elector, Timing};
use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::state_machine::{HubMsg, SharedState, StateMachine};
use crate::transport::{ForwardRequest, ForwardResponse, NetworkFactory, Transport};
use crate::types::*;
use crate::watch::Watcher;

/// Tunables of one replica. Defaults are what `skiff server` uses.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub id: NodeId,
    /// The address other replicas and clients reach this one at (host:port).
    pub addr: String,
    pub data_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log before it) every this many applied entries.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot, so slightly lagging followers need no snapshot.
    pub keep_logs_after_snapshot: u64,
    /// How many revisions of change events are kept for watches.
    pub history_revisions: u64,
    /// Deadline of one client request (write, linearizable read, membership change).
    pub request_timeout_ms: u64,
    /// Requests admitted at once; more fail fast with `Overloaded`.
    pub max_inflight_requests: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            id: 1,
            addr: "127.0.0.1:7001".into(),
            data_dir: PathBuf::from("./data"),
            // Also openraft 0.9's deadline for each AppendEntries: at 50 ms a saturated
            // 2-core machine timed out hundreds of them per `bench schedule` run (each one
            // sent again, some runs ending in elections); at 100 ms, 0-74.
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_every_entries: 10_000,
            keep_logs_after_snapshot: 1_000,
            history_revisions: 100_000,
            request_timeout_ms: 5_000,
            max_inflight_requests: 10_000,
        }
    }
}

/// A member as the local replica sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
}

/// What `cluster status` shows for one replica.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MemberStatus {
    pub id: NodeId,
    pub addr: String,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub revision: u64,
    pub compacted: u64,
    pub members: Vec<Member>,
}

/// A running replica. Cheap to share behind an `Arc`.
pub struct StoreNode {
    id: NodeId,
    addr: String,
    raft: Raft,
    state: SharedState,
    hub: broadcast::Sender<HubMsg>,
    transport: Arc<dyn Transport>,
    cfg: StoreConfig,
    inflight: Semaphore,
    shut: Mutex<bool>,
    /// Coalesces concurrent transactions into one Raft entry while this replica leads.
    batcher: Batcher,
    /// Decides when this replica campaigns; fed by the peer RPCs below.
    elector: Arc<Elector>,
    /// Whether this replica leads, changed only when that flips (Raft's metrics change at
    /// every commit, far too often to be watched by many tasks).
    leading: tokio::sync::watch::Receiver<bool>,
    /// Whether this replica leads and a quorum acknowledged it within [`quorum_loss_timeout`]:
    /// false on a leader cut off from the other voters, which Raft alone keeps calling leader
    /// until it hears of a newer term.
    serving: tokio::sync::watch::Receiver<bool>,
}

/// How long a leader may go without a quorum's acknowledgement before it stops serving
/// what needs a working leader right now (the agent gateway): four election timeouts, at
/// least a second, so a loaded but healthy leader keeps its agents.
pub fn quorum_loss_timeout(election_timeout_max_ms: u64) -> Duration {
    Duration::from_millis(election_timeout_max_ms.saturating_mul(4).max(1_000))
}

impl StoreNode {
    /// Opens the data directory and starts Raft. `initial_members` bootstraps the cluster
    /// only when the data directory holds no Raft state yet; a restart uses what is on disk.
    pub async fn start(
        cfg: StoreConfig,
        transport: Arc<dyn Transport>,
        initial_members: Option<BTreeMap<NodeId, String>>,
    ) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StoreError::Storage(format!("create {}: {e}", cfg.data_dir.display())))?;
        let db = crate::db::open_db(&cfg.data_dir.join("db"))
            .map_err(|e| StoreError::Storage(format!("open {}: {e}", cfg.data_dir.display())))?;
        let log = LogStore::new(db.clone());
        let sm = StateMachine::open(db, cfg.history_revisions).map_err(|e| StoreError::Storage(e.to_string()))?;
        let state = sm.state();
        let hub = sm.hub();
        let raft_cfg = openraft::Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: cfg.heartbeat_interval_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every_entries),
            max_in_snapshot_log_to_keep: cfg.keep_logs_after_snapshot,
            // Entries can be batches of up to 8 MiB: 16 keep one AppendEntries under the
            // transport's 256 MiB message limit.
            max_payload_entries: 16,
            install_snapshot_timeout: 2_000,
            // Elections are started by `election::Elector` instead (see there why).
            enable_elect: false,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::InvalidArgument(format!("raft timing: {e}")))?;
        let elector = Elector::new(Timing { min_ms: cfg.election_timeout_min_ms, max_ms: cfg.election_timeout_max_ms });
        let network = NetworkFactory { transport: transport.clone(), elector: elector.clone() };
        let raft = Raft::new(cfg.id, Arc::new(raft_cfg), network, log, sm)
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        elector.clone().spawn(cfg.id, raft.clone());
        if let Some(members) = initial_members {
            let initialized = raft.is_initialized().await.map_err(|e| StoreError::Raft(e.to_string()))?;
            if !initialized {
                if !members.contains_key(&cfg.id) {
                    return Err(StoreError::InvalidArgument(format!(
                        "--initial-cluster does not contain this member's id {}",
                        cfg.id
                    )));
                }
                let nodes: BTreeMap<NodeId, Node> = members.into_iter().map(|(id, a)| (id, Node::new(a))).collect();
                // Every member may bootstrap with the same membership; later ones are refused harmlessly.
                if let Err(e) = raft.initialize(nodes).await {
                    tracing::info!("initialize: {e}");
                }
            }
        }
        let max = cfg.max_inflight_requests.max(1);
        let (leading, serving) = follow_leadership(&raft, quorum_loss_timeout(cfg.election_timeout_max_ms));
        Ok(Arc::new(StoreNode {
            id: cfg.id,
            addr: cfg.addr.clone(),
            state,
            hub,
            transport,
            inflight: Semaphore::new(max),
            cfg,
            shut: Mutex::new(false),
            batcher: Batcher::start(raft.clone()),
            raft,
            elector,
            leading,
            serving,
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The openraft handle (metrics, tests). Peer RPCs go through `handle_*` below.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// When this replica last heard from a leader (or granted a vote): what its election
    /// timer counts from.
    pub fn last_leader_contact(&self) -> tokio::time::Instant {
        self.elector.last_contact()
    }

    // ---- peer RPCs (the transports' server side) ---------------------------------------

    pub async fn handle_append_entries(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        // Contact counts from the moment a current leader's call arrives, not only once it is
        // accepted: openraft gives each AppendEntries the heartbeat interval (100 ms by
        // default), and when a CPU-starved follower takes longer, the leader gives up, the
        // transport cancels this handler (the Raft core still appends the entries) and no
        // contact was recorded. A few such calls in a row could make a follower campaign
        // against a live leader. Accepted calls count again when answered: a slow one moves
        // the deadline on from its end.
        if from_current_leader(&req.vote, &self.raft.metrics().borrow().vote) {
            self.elector.contact();
        }
        let resp = self.raft.append_entries(req).await;
        if matches!(&resp, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.elector.contact();
        }
        resp
    }

    pub async fn handle_vote(&self, req: VoteRequest<NodeId>) -> Result<VoteResponse<NodeId>, RaftError<NodeId>> {
        let (term, theirs) = (req.vote.leader_id().term, req.last_log_id);
        let resp = self.raft.vote(req).await;
        if let Ok(r) = &resp {
            if r.vote_granted {
                self.elector.contact();
            } else if r.last_log_id > theirs {
                self.elector.refused_shorter_log(term);
            }
        }
        resp
    }

    pub async fn handle_install_snapshot(
        &self,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let vote = req.vote;
        let resp = self.raft.install_snapshot(req).await;
        // A stale leader's chunk is answered with this replica's higher vote: no contact.
        if matches!(&resp, Ok(r) if r.vote == vote) {
            self.elector.contact();
        }
        resp
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms)
    }

    /// Stops Raft. Idempotent.
    pub async fn shutdown(&self) {
        {
            let mut s = self.shut.lock();
            if *s {
                return;
            }
            *s = true;
        }
        let _ = self.raft.shutdown().await;
    }

    // ---- writes -------------------------------------------------------------------

    /// Proposes a request through Raft (forwarded to the leader when needed) and returns
    /// the state machine's answer once a majority has it on disk and it is applied.
    pub async fn write(&self, req: Request) -> Result<Response, StoreError> {
        validate_request(&req).map_err(StoreError::InvalidArgument)?;
        if let Request::Compact { revision } = req {
            let current = self.state.read().revision;
            if revision > current {
                return Err(StoreError::InvalidArgument(format!(
                    "compact revision {revision} is beyond the current revision {current}"
                )));
            }
        }
        match self.route(ForwardRequest::Write(req)).await? {
            ForwardResponse::Write(r) => Ok(r),
            other => Err(StoreError::Raft(format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn txn(&self, txn: Txn) -> Result<Response, StoreError> {
        self.write(Request::Txn(txn)).await
    }

    /// Independent transactions in one Raft entry (see [`Request::Batch`]); one response
    /// per transaction, in order.
    pub async fn batch(&self, txns: Vec<Txn>) -> Result<Vec<Response>, StoreError> {
        let n = txns.len();
        let r = self.write(Request::Batch(txns)).await?;
        if r.batch.len() != n {
            return Err(StoreError::Raft(format!("batch of {n} answered with {} responses", r.batch.len())));
        }
        Ok(r.batch)
    }

    /// Unconditional put; returns the new revision.
    pub async fn put(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<u64, StoreError> {
        Ok(self.txn(Txn { success: vec![Op::put(key, value)], ..Default::default() }).await?.revision)
    }

    /// Deletes a key; returns (the revision after, whether it existed).
    pub async fn delete(&self, key: impl Into<String>) -> Result<(u64, bool), StoreError> {
        let r = self.txn(Txn { success: vec![Op::delete(key)], ..Default::default() }).await?;
        let existed = matches!(r.results.first(), Some(OpResult::Delete { deleted }) if !deleted.is_empty());
        Ok((r.revision, existed))
    }

    pub async fn add_member(&self, id: NodeId, addr: String) -> Result<(), StoreError> {
        if addr.is_empty() {
            return Err(StoreError::InvalidArgument("member address must not be empty".into()));
        }
        self.route(ForwardRequest::AddMember { id, addr }).await.map(|_| ())
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.route(ForwardRequest::RemoveMember { id }).await.map(|_| ())
    }

    /// Sends `req` to the leader (or runs it here when this replica leads), following
    /// leader hints and waiting out elections, within the request deadline.
    async fn route(&self, req: ForwardRequest) -> Result<ForwardResponse, StoreError> {
        let _permit =
            self.inflight.try_acquire().map_err(|_| StoreError::Overloaded(self.cfg.max_inflight_requests))?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let mut hint: Option<(NodeId, String)> = None;
        let mut last_err = StoreError::NoLeader;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(match last_err {
                    StoreError::NoLeader => StoreError::NoLeader,
                    e => StoreError::Timeout(format!("request deadline passed; last error: {e}")),
                });
            }
            let target = match hint.take() {
                Some(t) => Some(t),
                None => self.known_leader(),
            };
            let res = match target {
                None => {
                    self.wait_for_leader(remaining.min(Duration::from_millis(200))).await;
                    last_err = StoreError::NoLeader;
                    continue;
                }
                Some((id, _)) if id == self.id => tokio::time::timeout(remaining, self.execute_local(req.clone()))
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Timeout("request deadline passed".into()))),
                Some((id, addr)) => self.transport.forward(id, &addr, req.clone(), remaining).await,
            };
            match res {
                Err(StoreError::ForwardToLeader { id: Some(id), addr: Some(addr) }) if id != self.id => {
                    last_err = StoreError::ForwardToLeader { id: Some(id), addr: Some(addr.clone()) };
                    hint = Some((id, addr));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e @ (StoreError::ForwardToLeader { .. } | StoreError::NoLeader | StoreError::Unavailable(_))) => {
                    last_err = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    fn known_leader(&self) -> Option<(NodeId, String)> {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let leader = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    async fn wait_for_leader(&self, t: Duration) {
        let _ = self.raft.wait(Some(t)).metrics(|m| m.current_leader.is_some(), "leader known").await;
    }

    /// Runs a forwarded request here; never forwards again.
    pub async fn execute_local(&self, req: ForwardRequest) -> Result<ForwardResponse, StoreError> {
        match req {
            ForwardRequest::Write(r) => {
                validate_request(&r).map_err(StoreError::InvalidArgument)?;
                // Single transactions, local or forwarded, share entries (see batcher.rs).
                if let Request::Txn(txn) = r {
                    return Ok(ForwardResponse::Write(self.batcher.write(txn).await?));
                }
                let resp = self.raft.client_write(Arc::new(r)).await.map_err(write_err)?;
                Ok(ForwardResponse::Write(resp.data))
            }
            ForwardRequest::ReadIndex => {
                let (read_log_id, _) = self.raft.get_read_log_id().await.map_err(leader_check_err)?;
                Ok(ForwardResponse::ReadIndex(read_log_id.map_or(0, |l| l.index)))
            }
            ForwardRequest::AddMember { id, addr } => {
                let m = self.raft.metrics().borrow().membership_config.clone();
                if m.membership().voter_ids().any(|v| v == id) {
                    let existing = m.membership().get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
                    if existing == addr {
                        return Ok(ForwardResponse::Done);
                    }
                    return Err(StoreError::Membership(format!("member {id} already exists at {existing}")));
                }
                self.raft.add_learner(id, Node::new(addr), true).await.map_err(write_err)?;
                let mut voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
                voters.insert(id);
                self.raft.change_membership(voters, false).await.map_err(write_err)?;
                Ok(ForwardResponse::Done)
            }
            ForwardRequest::RemoveMember { id } => {
                let m = self.raft.metrics().borrow().membership_config.clone();
                let mut voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
                let is_learner = m.membership().learner_ids().any(|l| l == id);
                if !voters.contains(&id) && !is_learner {
                    return Err(StoreError::Membership(format!("{id} is not a member")));
                }
                voters.remove(&id);
                if voters.is_empty() {
                    return Err(StoreError::Membership("cannot remove the last voter".into()));
                }
                self.raft.change_membership(voters, false).await.map_err(write_err)?;
                Ok(ForwardResponse::Done)
            }
        }
    }

    // ---- reads --------------------------------------------------------------------

    /// Waits until this replica has applied everything committed when the call began
    /// (read-index through the leader): reads after it are linearizable.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let index = match self.route(ForwardRequest::ReadIndex).await? {
            ForwardResponse::ReadIndex(i) => i,
            other => return Err(StoreError::Raft(format!("unexpected reply {other:?}"))),
        };
        self.wait_applied(index, self.request_timeout()).await
    }

    /// Waits until the local state machine has applied `index`.
    pub async fn wait_applied(&self, index: u64, t: Duration) -> Result<(), StoreError> {
        if self.state.read().last_applied.map_or(0, |l| l.index) >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(t))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Timeout(format!("waiting to apply index {index}: {e}")))
    }

    /// Reads one key. Linearizable unless `serializable`.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<(Option<KeyValue>, u64), StoreError> {
        let (kv, rev) = self.get_shared(key, serializable).await?;
        Ok((kv.map(Arc::unwrap_or_clone), rev))
    }

    /// [`StoreNode::get`] without copying the value: the state's own entry, the same `Arc`
    /// its watch events carry.
    pub async fn get_shared(&self, key: &str, serializable: bool) -> Result<(Option<Arc<KeyValue>>, u64), StoreError> {
        if !serializable {
            self.read_barrier().await?;
        }
        let st = self.state.read();
        Ok((st.kv.get(key).cloned(), st.revision))
    }

    /// Reads keys starting with `prefix` in key order, after `start_after` when given, at
    /// most `limit` (0 = no limit). Returns (keys, store revision, whether more remain).
    pub async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        serializable: bool,
    ) -> Result<(Vec<Arc<KeyValue>>, u64, bool), StoreError> {
        if !serializable {
            self.read_barrier().await?;
        }
        let st = self.state.read();
        let mut out = Vec::new();
        let mut more = false;
        for (_, v) in keys_under(&st.kv, prefix, start_after) {
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(v.clone());
        }
        Ok((out, st.revision, more))
    }

    /// Like [`range`](Self::range), but as the keys stood at store revision `at` (0 = now):
    /// events after `at` still in the history window are undone on the way out, so every
    /// page of a paginated list shows the same snapshot. `Compacted` when the window no
    /// longer reaches back to `at`. Returns the revision served (`at`, or now for 0).
    pub async fn range_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at: u64,
        serializable: bool,
    ) -> Result<(Vec<Arc<KeyValue>>, u64, bool), StoreError> {
        if !serializable {
            self.read_barrier().await?;
        }
        if at == 0 || at >= self.state.read().revision {
            return self.range(prefix, start_after, limit, true).await;
        }
        let st = self.state.read();
        if at < st.compacted {
            return Err(StoreError::Compacted { requested: at, oldest: st.compacted + 1 });
        }
        let after = |k: &str| k.starts_with(prefix) && start_after.is_none_or(|s| k > s);
        // Key → its value at `at` (None: absent then), for every key changed since.
        // Walking newest to oldest, the oldest change after `at` writes last.
        let mut undo: BTreeMap<&str, Option<&Arc<KeyValue>>> = BTreeMap::new();
        for e in st.history.iter().rev().take_while(|e| e.revision > at) {
            if after(&e.kv.key) {
                undo.insert(e.kv.key.as_str(), e.prev.as_ref());
            }
        }
        let mut current = keys_under(&st.kv, prefix, start_after).peekable();
        let mut changed = undo.into_iter().peekable();
        let mut out = Vec::new();
        let mut more = false;
        loop {
            // Merge the two key-ordered streams; a changed key takes its old value.
            let next = match (current.peek(), changed.peek()) {
                (None, None) => break,
                (Some((k, _)), Some((c, _))) if k.as_str() < *c => current.next().map(|(_, v)| Some(v)),
                (Some((k, _)), Some((c, _))) if k.as_str() == *c => {
                    current.next();
                    changed.next().map(|(_, v)| v)
                }
                (Some(_), None) => current.next().map(|(_, v)| Some(v)),
                _ => changed.next().map(|(_, v)| v),
            };
            let Some(Some(kv)) = next else { continue };
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(kv.clone());
        }
        Ok((out, at, more))
    }

    /// The store revision this replica has applied.
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// Watches keys under `prefix` from `from_revision` (0 = from now).
    pub fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watcher, StoreError> {
        Watcher::new(&self.hub, self.state.clone(), prefix.to_string(), from_revision)
    }

    /// This replica's view of itself and the membership.
    /// Whether this replica is the Raft leader now (cheap: nothing is copied, unlike
    /// [`StoreNode::status`]).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Follows whether this replica is the Raft leader: the receiver wakes only when that
    /// changes (and ends when Raft shuts down).
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Follows whether this replica leads with a quorum behind it: as
    /// [`StoreNode::leadership`], but false also while no quorum of voters has acknowledged
    /// this leader for [`quorum_loss_timeout`] (a leader on the minority side of a partition
    /// keeps believing it leads until it hears of a newer term, meanwhile the majority elects
    /// another one). What must reach the actual leader, such as node agents, follows this.
    pub fn serving_leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.serving.clone()
    }

    /// This replica leads with a quorum behind it (see [`StoreNode::serving_leadership`]).
    pub fn is_serving_leader(&self) -> bool {
        *self.serving.borrow()
    }

    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let st = self.state.read();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| Member { id: *id, addr: n.addr.clone(), voter: voters.contains(id) })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower if voters.contains(&self.id) => "follower",
            ServerState::Follower | ServerState::Learner => "learner",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
        };
        MemberStatus {
            id: self.id,
            addr: self.addr.clone(),
            role: role.to_string(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            revision: st.revision,
            compacted: st.compacted,
            members,
        }
    }

    /// Ready: a leader is known and this replica has applied what the leader had
    /// committed at the time of the check.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let t = Duration::from_millis(self.cfg.request_timeout_ms.min(1_000));
        let index = match tokio::time::timeout(t, self.route(ForwardRequest::ReadIndex)).await {
            Ok(Ok(ForwardResponse::ReadIndex(i))) => i,
            Ok(Ok(other)) => return Err(StoreError::Raft(format!("unexpected reply {other:?}"))),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StoreError::Timeout("no read index from the leader".into())),
        };
        self.wait_applied(index, t).await
    }
}

/// The entries of `kv` under `prefix`, in key order, after `start_after` when given.
fn keys_under<'a>(
    kv: &'a BTreeMap<String, Arc<KeyValue>>,
    prefix: &'a str,
    start_after: Option<&str>,
) -> impl Iterator<Item = (&'a String, &'a Arc<KeyValue>)> + 'a {
    let from = match start_after {
        Some(s) if s >= prefix => (std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded),
        _ => (std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded),
    };
    kv.range::<str, _>(from).take_while(move |(k, _)| k.starts_with(prefix))
}

pub(crate) fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            StoreError::ForwardToLeader { id: f.leader_id, addr: f.leader_node.map(|n| n.addr) }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => StoreError::Membership(c.to_string()),
        RaftError::Fatal(f) => StoreError::Unavailable(format!("raft stopped: {f}")),
    }
}

fn leader_check_err(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>) -> StoreError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            StoreError::ForwardToLeader { id: f.leader_id, addr: f.leader_node.map(|n| n.addr) }
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            StoreError::Unavailable(format!("leader cannot reach a quorum: {q}"))
        }
        RaftError::Fatal(f) => StoreError::Unavailable(format!("raft stopped: {f}")),
    }
}

/// Watches of "this replica leads" and "this replica leads with a quorum's acknowledgement
/// within `quorum_loss`", fed by one task following Raft's metrics.
fn follow_leadership(
    raft: &Raft,
    quorum_loss: Duration,
) -> (tokio::sync::watch::Receiver<bool>, tokio::sync::watch::Receiver<bool>) {
    let mut metrics = raft.metrics();
    let leads = |m: &openraft::RaftMetrics<NodeId, Node>| m.state == ServerState::Leader;
    let (tx, rx) = tokio::sync::watch::channel(leads(&metrics.borrow_and_update()));
    let (serving_tx, serving_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut quorum = QuorumClock::default();
        // Metrics come at every Raft tick (50 ms by default), but a stalled core sends none:
        // the timer ages the last acknowledgement all the same.
        let mut check = tokio::time::interval(quorum_loss / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let (now, since_ack) = {
                        let m = metrics.borrow_and_update();
                        (leads(&m), m.millis_since_quorum_ack)
                    };
                    tx.send_if_modified(|l| std::mem::replace(l, now) != now);
                    quorum.observe(now, since_ack, std::time::Instant::now());
                }
                _ = check.tick() => {}
            }
            let serving = quorum.serving(quorum_loss, std::time::Instant::now());
            serving_tx.send_if_modified(|s| std::mem::replace(s, serving) != serving);
        }
        serving_tx.send_replace(false);
    });
    (rx, serving_rx)
}

/// When a quorum last acknowledged this replica as leader, from openraft's metrics.
#[derive(Debug, Default)]
struct QuorumClock {
    acked_at: Option<std::time::Instant>,
}

impl QuorumClock {
    /// A metrics report at `now`: leading or not, and how long since a quorum acknowledged
    /// the leader (`None` before the first acknowledgement of a new leader, whose election
    /// counts as one).
    fn observe(&mut self, leading: bool, millis_since_ack: Option<u64>, now: std::time::Instant) {
        self.acked_at = match (leading, millis_since_ack) {
            (false, _) => None,
            (true, Some(ms)) => Some(now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)),
            (true, None) => Some(self.acked_at.unwrap_or(now)),
        };
    }

    fn serving(&self, quorum_loss: Duration, now: std::time::Instant) -> bool {
        self.acked_at.is_some_and(|at| now.saturating_duration_since(at) <= quorum_loss)
    }
}

/// Whether an AppendEntries carrying `theirs` comes from a leader at least as recent as the
/// one this replica knows (`ours`): a committed vote (granted by a quorum) not below ours. A
/// deposed leader's older term, or a candidate's uncommitted vote, is no contact.
fn from_current_leader(theirs: &Vote, ours: &Vote) -> bool {
    theirs.is_committed() && theirs >= ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_serves_while_a_quorum_acknowledged_it_recently() {
        let t0 = std::time::Instant::now();
        let loss = Duration::from_secs(1);
        let mut q = QuorumClock::default();
        assert!(!q.serving(loss, t0), "not a leader yet");
        q.observe(true, None, t0);
        assert!(q.serving(loss, t0 + Duration::from_millis(900)), "a new leader's election counts");
        assert!(!q.serving(loss, t0 + Duration::from_millis(1100)), "never acknowledged since");
        q.observe(true, Some(100), t0 + Duration::from_millis(500));
        assert!(q.serving(loss, t0 + Duration::from_millis(1300)), "acknowledged at 400 ms");
        assert!(!q.serving(loss, t0 + Duration::from_millis(1500)), "silent for over a second");
        q.observe(true, None, t0 + Duration::from_millis(1600));
        assert!(!q.serving(loss, t0 + Duration::from_millis(1600)), "None later in a term keeps the old ack");
        q.observe(false, Some(0), t0 + Duration::from_millis(1700));
        assert!(!q.serving(loss, t0 + Duration::from_millis(1700)), "a follower never serves");
    }

    #[test]
    fn only_a_current_committed_leader_counts_as_contact_on_arrival() {
        let ours = Vote::new_committed(5, 1);
        assert!(from_current_leader(&Vote::new_committed(5, 1), &ours), "the known leader");
        assert!(from_current_leader(&Vote::new_committed(6, 2), &ours), "a newer leader");
        assert!(!from_current_leader(&Vote::new_committed(4, 2), &ours), "a deposed leader's older term");
        assert!(!from_current_leader(&Vote::new(6, 2), &ours), "a candidate's vote, not yet granted");
        // openraft orders the leaders of one term by node id: a lower one is a deposed leader.
        assert!(!from_current_leader(&Vote::new_committed(5, 0), &ours), "a lower leader id of the same term");
        // A replica that has voted for a candidate (uncommitted) hears from the winner.
        assert!(from_current_leader(&Vote::new_committed(6, 2), &Vote::new(6, 2)));
    }
}
