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
/// the disk. The log's tail stays in memory ([`Tail`]): entries handed to the writer but not
/// yet on disk, and the most recent flushed ones, so the leader's replication and apply read
/// what was just appended without a RocksDB read and decode. Truncate and purge first wait for
/// the writer to drain, keeping order.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    tail: Arc<Mutex<Tail>>,
    writer: tokio::sync::mpsc::Sender<Job>,
}

/// Flushed entries kept in memory at most (beyond them, reads go to RocksDB).
const TAIL_KEEP_ENTRIES: usize = 4096;
/// Encoded bytes of flushed entries kept in memory at most.
const TAIL_KEEP_BYTES: usize = 32 << 20;

/// The newest entries of the log, contiguous and ending at the last entry: every entry not
/// yet on disk, plus flushed ones up to the limits above. Holding the tail means a read that
/// starts inside it is served from memory alone.
struct Tail {
    keep_entries: usize,
    keep_bytes: usize,
    /// index → (entry, encoded size).
    entries: BTreeMap<u64, (Entry, usize)>,
    /// Encoded bytes of the flushed entries held.
    flushed_bytes: usize,
    /// The last index on disk.
    flushed_upto: Option<u64>,
}

impl Tail {
    fn new(keep_entries: usize, keep_bytes: usize) -> Self {
        Tail { keep_entries, keep_bytes, entries: BTreeMap::new(), flushed_bytes: 0, flushed_upto: None }
    }

    /// Entries up to `last` are on disk: count them as flushed and drop the oldest flushed
    /// ones beyond the limits.
    fn flushed(&mut self, last: u64) {
        let from = self.flushed_upto.map_or(0, |f| f + 1);
        if last >= from {
            self.flushed_bytes += self.entries.range(from..=last).map(|(_, (_, n))| n).sum::<usize>();
        }
        self.flushed_upto = Some(self.flushed_upto.map_or(last, |f| f.max(last)));
        while self.entries.len() > self.keep_entries || self.flushed_bytes > self.keep_bytes {
            let Some((&first, _)) = self.entries.first_key_value() else { break };
            if self.flushed_upto.is_none_or(|f| first > f) {
                break;
            }
            let (_, n) = self.entries.remove(&first).expect("present");
            self.flushed_bytes -= n;
        }
    }

    /// Drops entries from `index` on (a truncated log).
    fn truncate(&mut self, index: u64) {
        for (i, (_, n)) in self.entries.split_off(&index) {
            if self.flushed_upto.is_some_and(|f| i <= f) {
                self.flushed_bytes -= n;
            }
        }
        if self.flushed_upto.is_some_and(|f| f >= index) {
            self.flushed_upto = index.checked_sub(1);
        }
    }

    /// Drops entries up to `index` (a purged prefix; they are all on disk).
    fn purge(&mut self, index: u64) {
        let keep = self.entries.split_off(&(index + 1));
        for (i, (_, n)) in std::mem::replace(&mut self.entries, keep) {
            if self.flushed_upto.is_some_and(|f| i <= f) {
                self.flushed_bytes -= n;
            }
        }
    }
}

/// Batches queued to the writer at most (back-pressure on Raft beyond that).
const WRITER_QUEUE: usize = 1024;

/// Whom an append reports to once it is on disk.
enum Flushed {
    Raft(LogFlushed<TypeConfig>),
    #[cfg(test)]
    Test(tokio::sync::oneshot::Sender<std::io::Result<()>>),
}

impl Flushed {
    fn done(self, res: Result<(), String>) {
        let res = res.map_err(std::io::Error::other);
        match self {
            Flushed::Raft(cb) => cb.log_io_completed(res),
            #[cfg(test)]
            Flushed::Test(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

enum Job {
    Append { entries: Vec<(u64, Vec<u8>)>, last: u64, callback: Flushed },
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The writer task: takes every queued job, writes their entries in one fsynced batch on
/// the blocking pool, then acknowledges them in order. Runs on the runtime (not a detached
/// thread) so the database is closed before the runtime finishes shutting down.
/// The fixed header of a RocksDB write batch (sequence number and count).
const WRITE_BATCH_HEADER: usize = 12;

async fn writer_loop(db: Arc<DB>, tail: Arc<Mutex<Tail>>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < WRITER_QUEUE {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Room for every entry up front (its bytes, its 8-byte key and RocksDB's record
        // header): RocksDB would otherwise regrow and recopy the batch as it fills.
        let room: usize = jobs
            .iter()
            .map(|j| match j {
                Job::Append { entries, .. } => entries.iter().map(|(_, b)| b.len() + 32).sum(),
                Job::Barrier(_) => 0,
            })
            .sum();
        let mut batch = rocksdb::WriteBatch::with_capacity_bytes(WRITE_BATCH_HEADER + room);
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
            tail.lock().flushed(last);
        }
        for j in jobs {
            match j {
                Job::Append { callback, .. } => callback.done(res.clone()),
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
        Self::with_tail(db, TAIL_KEEP_ENTRIES, TAIL_KEEP_BYTES)
    }

    /// With at most `keep_entries` flushed entries and `keep_bytes` of them held in memory.
    fn with_tail(db: Arc<DB>, keep_entries: usize, keep_bytes: usize) -> Self {
        let (writer, rx) = tokio::sync::mpsc::channel(WRITER_QUEUE);
        let tail = Arc::new(Mutex::new(Tail::new(keep_entries, keep_bytes)));
        tokio::spawn(writer_loop(db.clone(), tail.clone(), rx));
        LogStore { db, tail, writer }
    }

    /// Waits until every append handed to the writer is on disk.
    async fn drain(&self) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.send(Job::Barrier(tx)).await.map_err(|_| write_err(std::fmt::Error))?;
        rx.await.map_err(|_| write_err(std::fmt::Error))
    }

    /// Holds `entries` in the tail and queues them to the writer, which reports to
    /// `callback` once they are on disk.
    async fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        callback: Flushed,
    ) -> Result<(), StorageError> {
        let mut encoded = Vec::new();
        {
            let mut tail = self.tail.lock();
            for e in entries {
                let idx = e.get_log_id().index;
                let bytes = encode(&e);
                tail.entries.insert(idx, (e, bytes.len()));
                encoded.push((idx, bytes));
            }
        }
        let Some(last) = encoded.last().map(|(i, _)| *i) else {
            callback.done(Ok(()));
            return Ok(());
        };
        // Acknowledged (callback) only once fsynced: a write counts only when a majority has it on disk.
        self.writer
            .send(Job::Append { entries: encoded, last, callback })
            .await
            .map_err(|_| write_err(std::io::Error::other("log writer stopped")))
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
        if let Some((_, (e, _))) = self.tail.lock().entries.last_key_value() {
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
        {
            // A read starting inside the tail is served from memory (the tail ends the log).
            let tail = self.tail.lock();
            if tail.entries.first_key_value().is_some_and(|(&first, _)| first <= start) {
                for (idx, (e, _)) in tail.entries.range(start..) {
                    if !range.contains(idx) {
                        break;
                    }
                    out.push(e.clone());
                }
                return Ok(out);
            }
        }
        // Otherwise RocksDB holds every flushed entry (the tail only drops flushed ones).
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
        let tail = self.tail.lock();
        for (idx, (e, _)) in tail.entries.range(next..) {
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
        self.append_entries(entries, Flushed::Raft(callback)).await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.drain().await?;
        self.tail.lock().truncate(log_id.index);
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
        self.tail.lock().purge(log_id.index);
        let cf_log = cf(&self.db, CF_LOG);
        self.db.delete_range_cf(cf_log, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes()).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    async fn append(store: &mut LogStore, range: std::ops::RangeInclusive<u64>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.append_entries(range.map(entry), Flushed::Test(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }

    async fn indexes(store: &mut LogStore, range: impl RangeBounds<u64> + Clone + Debug + Send) -> Vec<u64> {
        store.try_get_log_entries(range).await.unwrap().iter().map(|e| e.get_log_id().index).collect()
    }

    #[tokio::test]
    async fn the_tail_serves_recent_entries_and_rocksdb_the_rest_across_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_db(dir.path()).unwrap();
        let mut store = LogStore::with_tail(db, 4, usize::MAX);
        append(&mut store, 1..=3).await;
        append(&mut store, 4..=10).await;
        // Flushed entries beyond the limit left memory: 7..=10 are held, the rest is on disk.
        assert_eq!(store.tail.lock().entries.keys().copied().collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert_eq!(indexes(&mut store, 8..).await, vec![8, 9, 10]);
        assert_eq!(indexes(&mut store, 2..9).await, (2..9).collect::<Vec<_>>());
        assert_eq!(indexes(&mut store, 1..=10).await, (1..=10).collect::<Vec<_>>());
        assert_eq!(indexes(&mut store, 11..).await, Vec::<u64>::new());
        // A truncated suffix is gone from memory and disk alike; the log continues after it.
        store.truncate(*entry(9).get_log_id()).await.unwrap();
        assert_eq!(indexes(&mut store, 5..).await, vec![5, 6, 7, 8]);
        append(&mut store, 9..=9).await;
        assert_eq!(indexes(&mut store, 8..).await, vec![8, 9]);
        assert_eq!(store.get_log_state().await.unwrap().last_log_id.map(|l| l.index), Some(9));
        // A purged prefix leaves memory too.
        store.purge(*entry(8).get_log_id()).await.unwrap();
        assert_eq!(store.tail.lock().entries.keys().copied().collect::<Vec<_>>(), vec![9]);
        assert_eq!(indexes(&mut store, 9..).await, vec![9]);
        let tail = store.tail.lock();
        assert_eq!(tail.flushed_bytes, tail.entries.values().map(|(_, n)| n).sum::<usize>());
    }

    #[tokio::test]
    async fn the_byte_limit_bounds_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_db(dir.path()).unwrap();
        let one = encode(&entry(1)).len();
        let mut store = LogStore::with_tail(db, usize::MAX, 3 * one);
        append(&mut store, 1..=10).await;
        assert_eq!(store.tail.lock().entries.len(), 3);
        assert_eq!(indexes(&mut store, 1..).await, (1..=10).collect::<Vec<_>>());
    }
}
