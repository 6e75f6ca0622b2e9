//! The MVCC state machine: current keys in memory (persisted to RocksDB), a bounded
//! window of change events for watches, and snapshots of both.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use parking_lot::RwLock;
use rocksdb::{IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::{cf, decode, encode, no_wal_opts, sync_opts, CF_HISTORY, CF_KV, CF_SM_META};
use crate::types::*;

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_REVISION: &[u8] = b"revision";
const KEY_COMPACTED: &[u8] = b"compacted";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// Persists a snapshot: metadata encoded, data as raw bytes (no re-encoding, no copy).
fn persist_snapshot(batch: &mut WriteBatch, db: &DB, meta: &SnapshotMeta, bytes: &[u8]) {
    batch.put_cf(cf(db, CF_SM_META), KEY_SNAPSHOT_META, encode(meta));
    batch.put_cf(cf(db, CF_SM_META), KEY_SNAPSHOT_DATA, bytes);
}

/// Capacity of the in-process event fan-out. A watcher that falls further behind
/// re-reads from the history window instead of blocking the state machine.
pub(crate) const HUB_CAPACITY: usize = 1024;

/// The applied state, shared between the state machine (writer) and readers.
#[derive(Debug, Default)]
pub struct SmState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The store revision: the number of committed modifying requests.
    pub revision: u64,
    /// Highest revision whose events are no longer kept (watches must start above it).
    pub compacted: u64,
    pub kv: BTreeMap<String, Arc<KeyValue>>,
    pub history: VecDeque<Arc<Event>>,
}

pub type SharedState = Arc<RwLock<SmState>>;

/// What the state machine tells watchers.
#[derive(Clone, Debug)]
pub(crate) enum HubMsg {
    /// Events of one apply batch, in revision order.
    Events(Arc<Vec<Arc<Event>>>),
    /// The state was replaced by a snapshot: watchers re-read the history window.
    Reset,
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    revision: u64,
    compacted: u64,
    kvs: Vec<Arc<KeyValue>>,
    history: Vec<Arc<Event>>,
}

/// The openraft state machine of one replica.
pub struct StateMachine {
    db: Arc<DB>,
    state: SharedState,
    hub: broadcast::Sender<HubMsg>,
    history_limit: u64,
    snapshot_seq: u64,
    /// The size of the last applied write batch: the next one starts with that much room
    /// (consecutive batches are alike), so RocksDB does not regrow and recopy its buffer while
    /// the batch fills.
    batch_hint: usize,
}

/// The most room a state machine write batch starts with (a larger batch still grows).
const MAX_BATCH_HINT: usize = 32 << 20;

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::StateMachine, verb, std::io::Error::other(e.to_string()))
}

fn history_key(rev: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&rev.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl StateMachine {
    /// Loads the applied state from `db`. `history_limit` is how many revisions of events
    /// are kept for watches.
    pub fn open(db: Arc<DB>, history_limit: u64) -> Result<Self, StorageError> {
        let meta = |k: &[u8]| db.get_cf(cf(&db, CF_SM_META), k).map_err(|e| sm_err(ErrorVerb::Read, e));
        let mut st = SmState::default();
        if let Some(b) = meta(KEY_APPLIED)? {
            st.last_applied = decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        }
        if let Some(b) = meta(KEY_MEMBERSHIP)? {
            st.membership = decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        }
        if let Some(b) = meta(KEY_REVISION)? {
            st.revision = decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        }
        if let Some(b) = meta(KEY_COMPACTED)? {
            st.compacted = decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        }
        for item in db.iterator_cf(cf(&db, CF_KV), IteratorMode::Start) {
            let (_, v) = item.map_err(|e| sm_err(ErrorVerb::Read, e))?;
            let kv: KeyValue = decode(&v).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            st.kv.insert(kv.key.clone(), Arc::new(kv));
        }
        for item in db.iterator_cf(cf(&db, CF_HISTORY), IteratorMode::Start) {
            let (_, v) = item.map_err(|e| sm_err(ErrorVerb::Read, e))?;
            st.history.push_back(Arc::new(decode(&v).map_err(|e| sm_err(ErrorVerb::Read, e))?));
        }
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        Ok(StateMachine {
            db,
            state: Arc::new(RwLock::new(st)),
            hub,
            history_limit: history_limit.max(1),
            snapshot_seq: 0,
            batch_hint: 0,
        })
    }

    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    pub(crate) fn hub(&self) -> broadcast::Sender<HubMsg> {
        self.hub.clone()
    }

    fn write_meta(batch: &mut WriteBatch, db: &DB, st: &SmState) {
        let m = cf(db, CF_SM_META);
        batch.put_cf(m, KEY_APPLIED, encode(&st.last_applied));
        batch.put_cf(m, KEY_MEMBERSHIP, encode(&st.membership));
        batch.put_cf(m, KEY_REVISION, encode(&st.revision));
        batch.put_cf(m, KEY_COMPACTED, encode(&st.compacted));
    }

    /// Drops events at or below `upto` from memory and disk.
    fn compact_history(batch: &mut WriteBatch, db: &DB, st: &mut SmState, upto: u64) {
        if upto <= st.compacted {
            return;
        }
        st.compacted = upto;
        while st.history.front().is_some_and(|e| e.revision <= upto) {
            st.history.pop_front();
        }
        batch.delete_range_cf(cf(db, CF_HISTORY), history_key(0, 0), history_key(upto + 1, 0));
    }
}

/// Applies one request to the state; returns the response and the events it produced.
fn apply_request(
    st: &mut SmState,
    req: Request,
    db: &DB,
    batch: &mut WriteBatch,
    history_limit: u64,
) -> (Response, Vec<Arc<Event>>) {
    match req {
        Request::Compact { revision } => {
            let upto = revision.min(st.revision).saturating_sub(1);
            StateMachine::compact_history(batch, db, st, upto);
            (Response { succeeded: true, revision: st.revision, ..Default::default() }, vec![])
        }
        Request::Txn(txn) => apply_txn(st, txn, db, batch, history_limit),
        Request::Batch(txns) => {
            let mut events = Vec::new();
            let mut responses = Vec::with_capacity(txns.len());
            for txn in txns {
                let (r, ev) = apply_txn(st, txn, db, batch, history_limit);
                events.extend(ev);
                responses.push(r);
            }
            (Response { succeeded: true, revision: st.revision, results: vec![], batch: responses }, events)
        }
    }
}

/// Applies one transaction: its own revision when it writes anything.
fn apply_txn(
    st: &mut SmState,
    txn: Txn,
    db: &DB,
    batch: &mut WriteBatch,
    history_limit: u64,
) -> (Response, Vec<Arc<Event>>) {
    {
        {
            let ok = txn.compare.iter().all(|c| c.holds(st.kv.get(&c.key).map(|a| a.as_ref())));
            let ops = if ok { txn.success } else { txn.failure };
            let rev = st.revision + 1;
            let mut events: Vec<Arc<Event>> = Vec::new();
            let mut results = Vec::with_capacity(ops.len());
            let cf_kv = cf(db, CF_KV);
            for op in ops {
                match op {
                    Op::Put { key, value } => {
                        let prev = st.kv.get(&key).cloned();
                        let kv = Arc::new(KeyValue {
                            key: key.clone(),
                            value,
                            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                            mod_revision: rev,
                            version: prev.as_ref().map_or(1, |p| p.version + 1),
                        });
                        batch.put_cf(cf_kv, key.as_bytes(), encode(kv.as_ref()));
                        st.kv.insert(key, kv.clone());
                        results.push(OpResult::Put { prev: prev.clone() });
                        events.push(Arc::new(Event { revision: rev, kind: EventKind::Put, kv, prev }));
                    }
                    Op::Delete { key } => {
                        let mut deleted = Vec::new();
                        if let Some(prev) = st.kv.remove(&key) {
                            batch.delete_cf(cf_kv, key.as_bytes());
                            deleted.push(prev.clone());
                            events.push(tombstone(rev, prev));
                        }
                        results.push(OpResult::Delete { deleted });
                    }
                    Op::DeletePrefix { prefix } => {
                        let keys: Vec<String> = st
                            .kv
                            .range(prefix.clone()..)
                            .take_while(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, _)| k.clone())
                            .collect();
                        let mut deleted = Vec::with_capacity(keys.len());
                        for k in keys {
                            if let Some(prev) = st.kv.remove(&k) {
                                batch.delete_cf(cf_kv, k.as_bytes());
                                deleted.push(prev.clone());
                                events.push(tombstone(rev, prev));
                            }
                        }
                        results.push(OpResult::Delete { deleted });
                    }
                    Op::Get { key } => results.push(OpResult::Get { kv: st.kv.get(&key).cloned() }),
                }
            }
            if !events.is_empty() {
                st.revision = rev;
                let cf_h = cf(db, CF_HISTORY);
                for (i, e) in events.iter().enumerate() {
                    batch.put_cf(cf_h, history_key(rev, i as u32), encode(e.as_ref()));
                    st.history.push_back(e.clone());
                }
                // Trim the window in steps of 1/64 of it: one range deletion per step rather
                // than one per write (RocksDB range tombstones are not free to read past).
                let step = (history_limit / 64).max(1);
                if rev > history_limit && rev - history_limit >= st.compacted + step {
                    StateMachine::compact_history(batch, db, st, rev - history_limit);
                }
            }
            (Response { succeeded: ok, revision: st.revision, results, batch: vec![] }, events)
        }
    }
}

fn tombstone(rev: u64, prev: Arc<KeyValue>) -> Arc<Event> {
    let kv = Arc::new(KeyValue {
        key: prev.key.clone(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
    });
    Arc::new(Event { revision: rev, kind: EventKind::Delete, kv, prev: Some(prev) })
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.state.read();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::with_capacity_bytes(self.batch_hint);
        let mut responses = Vec::new();
        let mut all_events = Vec::new();
        {
            let mut st = self.state.write();
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {
                        responses.push(Response { succeeded: true, revision: st.revision, ..Default::default() })
                    }
                    EntryPayload::Normal(req) => {
                        // The log's tail still holds the entry: the one copy of its keys and
                        // values, made here, is the state's.
                        let req = Arc::unwrap_or_clone(req);
                        let (resp, events) = apply_request(&mut st, req, &self.db, &mut batch, self.history_limit);
                        all_events.extend(events);
                        responses.push(resp);
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        responses.push(Response { succeeded: true, revision: st.revision, ..Default::default() })
                    }
                }
            }
            Self::write_meta(&mut batch, &self.db, &st);
            self.batch_hint = batch.size_in_bytes().min(MAX_BATCH_HINT);
            // Not fsynced, not even logged: the Raft log is, and applying is replayed from
            // it after a crash (see `db::no_wal_opts`).
            self.db.write_opt(batch, &no_wal_opts()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        if !all_events.is_empty() {
            // No receivers is fine: nobody is watching.
            let _ = self.hub.send(HubMsg::Events(Arc::new(all_events)));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { db: self.db.clone(), state: self.state.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let db = &self.db;
        {
            let mut st = self.state.write();
            let mut batch = WriteBatch::default();
            for k in st.kv.keys() {
                batch.delete_cf(cf(db, CF_KV), k.as_bytes());
            }
            batch.delete_range_cf(cf(db, CF_HISTORY), history_key(0, 0), history_key(u64::MAX, u32::MAX));
            st.kv.clear();
            st.history.clear();
            for kv in data.kvs {
                batch.put_cf(cf(db, CF_KV), kv.key.as_bytes(), encode(kv.as_ref()));
                st.kv.insert(kv.key.clone(), kv);
            }
            let mut seq = 0u32;
            let mut last_rev = 0;
            for e in data.history {
                seq = if e.revision == last_rev { seq + 1 } else { 0 };
                last_rev = e.revision;
                batch.put_cf(cf(db, CF_HISTORY), history_key(e.revision, seq), encode(e.as_ref()));
                st.history.push_back(e);
            }
            st.revision = data.revision;
            st.compacted = data.compacted;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            Self::write_meta(&mut batch, db, &st);
            persist_snapshot(&mut batch, db, meta, &bytes);
            db.write_opt(batch, &sync_opts()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        let _ = self.hub.send(HubMsg::Reset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let get = |k: &[u8]| self.db.get_cf(cf(&self.db, CF_SM_META), k).map_err(|e| sm_err(ErrorVerb::Read, e));
        let (Some(m), Some(bytes)) = (get(KEY_SNAPSHOT_META)?, get(KEY_SNAPSHOT_DATA)?) else {
            return Ok(None);
        };
        let meta: SnapshotMeta = decode(&m).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

/// Builds a snapshot from a consistent copy of the applied state.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    state: SharedState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Copying Arcs under the read lock is cheap; encoding happens outside it.
        let (data, last_applied, membership) = {
            let st = self.state.read();
            let data = SnapshotData {
                revision: st.revision,
                compacted: st.compacted,
                kvs: st.kv.values().cloned().collect(),
                history: st.history.iter().cloned().collect(),
            };
            (data, st.last_applied, st.membership.clone())
        };
        let bytes = encode(&data);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let mut batch = WriteBatch::default();
        persist_snapshot(&mut batch, &self.db, &meta, &bytes);
        self.db.write_opt(batch, &sync_opts()).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}
