//! Raft log storage in RocksDB: entries keyed by big-endian index, vote and purge marker fsynced.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogId, RaftLogReader};
use parking_lot::Mutex;
use rocksdb::{Direction, IteratorMode, DB};

use crate::db::{cf, decode, encode, sync_opts, CF_LOG, CF_LOG_META};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log of one replica. Cheap to clone; clones share the database and writer.
///
/// Appends are fsynced by one writer task that coalesces every batch queued while the
/// previous fsync ran into one RocksDB write (group commit), so Raft is never blocked on
/// the disk. Entries handed to the writer but not yet on disk stay readable from
/// `pending`; truncate and purge first wait for the writer to drain, keeping order.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    writer: tokio::sync::mpsc::Sender<Job>,
}

/// Batches queued to the writer at most (back-pressure on Raft beyond that).
const WRITER_QUEUE: usize = 1024;

enum Job {
    Append { entries: Vec<(u64, Vec<u8>)>, last: u64, callback: LogFlushed<TypeConfig> },
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The writer task: takes every queued job, writes their entries in one fsynced batch on
/// the blocking pool, then acknowledges them in order. Runs on the runtime (not a detached
/// thread) so the database is closed before the runtime finishes shutting down.
async fn writer_loop(db: Arc<DB>, pending: Arc<Mutex<BTreeMap<u64, Entry>>>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < WRITER_QUEUE {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut batch = rocksdb::WriteBatch::default();
        let mut last = None;
        {
            let cf_log = cf(&db, CF_LOG);
            for j in &jobs {
                if let Job::Append { entries, last: l, .. } = j {
                    for (idx, bytes) in entries {
                        batch.put_cf(cf_log, idx.to_be_bytes(), bytes);
                    }
                    last = Some(*l);
                }
            }
        }
        let res = if batch.is_empty() {
            Ok(())
        } else {
            let d = db.clone();
            match tokio::task::spawn_blocking(move || d.write_opt(batch, &sync_opts()).map_err(|e| e.to_string())).await
            {
                Ok(r) => r,
                Err(e) => Err(format!("log write task: {e}")),
            }
        };
        if let (Ok(()), Some(last)) = (&res, last) {
            let mut p = pending.lock();
            let keep = p.split_off(&(last + 1));
            *p = keep;
        }
        for j in jobs {
            match j {
                Job::Append { callback, .. } => callback.log_io_completed(res.clone().map_err(std::io::Error::other)),
                Job::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other(e.to_string()))
}
fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

impl LogStore {
    /// Must be called inside a tokio runtime (the writer is a task on it).
    pub fn new(db: Arc<DB>) -> Self {
        let (writer, rx) = tokio::sync::mpsc::channel(WRITER_QUEUE);
        let pending: Arc<Mutex<BTreeMap<u64, Entry>>> = Arc::default();
        tokio::spawn(writer_loop(db.clone(), pending.clone(), rx));
        LogStore { db, pending, writer }
    }

    /// Waits until every append handed to the writer is on disk.
    async fn drain(&self) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.send(Job::Barrier(tx)).await.map_err(|_| write_err(std::fmt::Error))?;
        rx.await.map_err(|_| write_err(std::fmt::Error))
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.db.get_cf(cf(&self.db, CF_LOG_META), key).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T, sync: bool) -> Result<(), StorageError> {
        let opts = if sync { sync_opts() } else { rocksdb::WriteOptions::default() };
        self.db.put_cf_opt(cf(&self.db, CF_LOG_META), key, encode(v), &opts).map_err(write_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        if let Some((_, e)) = self.pending.lock().last_key_value() {
            return Ok(Some(*e.get_log_id()));
        }
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match it.next() {
            Some(Ok((_, v))) => {
                let e: Entry = decode(&v).map_err(read_err)?;
                Ok(Some(*e.get_log_id()))
            }
            Some(Err(e)) => Err(read_err(e)),
            None => Ok(None),
        }
    }
}

fn start_of<RB: RangeBounds<u64>>(r: &RB) -> u64 {
    match r.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x + 1,
        Bound::Unbounded => 0,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = start_of(&range);
        let mut out = Vec::new();
        let it =
            self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::From(&start.to_be_bytes(), Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(read_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| read_err(std::fmt::Error))?);
            if !range.contains(&idx) {
                break;
            }
            out.push(decode(&v).map_err(read_err)?);
        }
        // Entries still on their way to disk follow the flushed ones.
        let next = out.last().map_or(start, |e: &Entry| e.get_log_id().index + 1);
        let pending = self.pending.lock();
        for (idx, e) in pending.range(next..) {
            if !range.contains(idx) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta(KEY_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: the committed index is an optimisation for re-applying on restart.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut pending = self.pending.lock();
            for e in entries {
                let idx = e.get_log_id().index;
                encoded.push((idx, encode(&e)));
                pending.insert(idx, e);
            }
        }
        let Some(last) = encoded.last().map(|(i, _)| *i) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Acknowledged (callback) only once fsynced: a write counts only when a majority has it on disk.
        self.writer
            .send(Job::Append { entries: encoded, last, callback })
            .await
            .map_err(|_| write_err(std::io::Error::other("log writer stopped")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.drain().await?;
        self.pending.lock().split_off(&log_id.index);
        let cf_log = cf(&self.db, CF_LOG);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(cf_log, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf_log, u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &sync_opts()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.drain().await?;
        // The state machine writes skip RocksDB's WAL (the Raft log is the WAL): flush its
        // memtables to disk before dropping the entries a restart would replay them from.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?
            .map_err(write_err)?;
        // Record the purge point first so a crash in between never loses track of it.
        self.put_meta(KEY_PURGED, &log_id, true)?;
        let cf_log = cf(&self.db, CF_LOG);
        self.db.delete_range_cf(cf_log, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes()).map_err(write_err)
    }
}
