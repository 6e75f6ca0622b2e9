//! Raft log storage in RocksDB: entries keyed by big-endian index, vote and purge marker fsynced.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogId, RaftLogReader};
use rocksdb::{Direction, IteratorMode, DB};

use crate::db::{cf, decode, encode, sync_opts, CF_LOG, CF_LOG_META};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log of one replica. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other(e.to_string()))
}
fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        LogStore { db }
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
        let cf_log = cf(&self.db, CF_LOG);
        let mut batch = rocksdb::WriteBatch::default();
        for e in entries {
            batch.put_cf(cf_log, e.get_log_id().index.to_be_bytes(), encode(&e));
        }
        // fsync before acknowledging: a write is acknowledged only once a majority has it on disk.
        let res = self.db.write_opt(batch, &sync_opts()).map_err(|e| std::io::Error::other(e.to_string()));
        let failed = res.as_ref().err().map(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(res);
        match failed {
            Some(e) => Err(StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf_log = cf(&self.db, CF_LOG);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(cf_log, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf_log, u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &sync_opts()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first so a crash in between never loses track of it.
        self.put_meta(KEY_PURGED, &log_id, true)?;
        let cf_log = cf(&self.db, CF_LOG);
        self.db.delete_range_cf(cf_log, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes()).map_err(write_err)
    }
}
