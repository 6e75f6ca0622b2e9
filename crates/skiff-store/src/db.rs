//! The one RocksDB instance of a replica: column families for the Raft log and the state machine.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_LOG_META: &str = "log_meta";
pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_HISTORY: &str = "history";
pub(crate) const CF_SM_META: &str = "sm_meta";

/// Opens (or creates) the replica's database under `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    // State machine writes skip the WAL; flushing every column family together keeps what
    // reaches disk consistent across them (RocksDB's documented pairing for WAL-less writes).
    opts.set_atomic_flush(true);
    let cfs = [CF_LOG, CF_LOG_META, CF_KV, CF_HISTORY, CF_SM_META]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

pub(crate) fn sync_opts() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

/// For state machine writes: no WAL, no fsync. The Raft log (fsynced) is their WAL: after a
/// crash the state machine restarts from what its last (atomic) flush holds and re-applies
/// the log from there; the log is never purged past a flush (see `LogStore::purge`).
pub(crate) fn no_wal_opts() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.disable_wal(true);
    w
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("bincode serialization of an in-memory value cannot fail")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, std::io::Error> {
    bincode::deserialize(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
