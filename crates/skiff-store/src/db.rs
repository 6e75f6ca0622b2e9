//! The one RocksDB instance of a replica: column families for the Raft log and the state machine.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_LOG_META: &str = "log_meta";
pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_HISTORY: &str = "history";
pub(crate) const CF_SM_META: &str = "sm_meta";

/// Whether flushes and compactions write their files with `O_DIRECT` (see [`open_db`]):
/// `SKIFF_DIRECT_IO=0` turns it off, else it is on wherever the filesystem allows it.
fn direct_io(dir: &Path) -> bool {
    if std::env::var_os("SKIFF_DIRECT_IO").is_some_and(|v| v == "0") {
        return false;
    }
    direct_io_supported(dir)
}

/// Whether a file under `dir` (which must exist) can be opened with `O_DIRECT` (tmpfs, for
/// one, refuses it).
fn direct_io_supported(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-io-probe");
    let opened = std::fs::OpenOptions::new().write(true).create(true).custom_flags(libc::O_DIRECT).open(&probe);
    let _ = std::fs::remove_file(&probe);
    opened.is_ok()
}

/// Opens (or creates) the replica's database under `dir`.
///
/// Flushes and compactions write with `O_DIRECT` where the filesystem allows it: through the
/// page cache, copying every flushed memtable into it (`copy_folio_from_iter_atomic`) made the
/// flush threads 5–8 % of both cores' samples under `bench schedule`; with direct I/O they
/// are 2 %. Nothing reads those files back in the normal course (the state machine serves
/// reads from memory, the Raft log's tail is kept in memory), so the page cache held them for
/// nobody.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    // State machine writes skip the WAL; flushing every column family together keeps what
    // reaches disk consistent across them (RocksDB's documented pairing for WAL-less writes).
    opts.set_atomic_flush(true);
    // RocksDB creates a missing directory itself; the probe needs it first.
    if std::fs::create_dir_all(dir).is_ok() && direct_io(dir) {
        opts.set_use_direct_io_for_flush_and_compaction(true);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes, flushes (through `O_DIRECT` where allowed), reopens and reads back under `dir`;
    /// returns whether the database's options file has direct I/O on.
    fn round_trip(dir: &Path) -> bool {
        let value = vec![7u8; 300_000];
        {
            let db = open_db(dir).unwrap();
            for i in 0..20u32 {
                db.put_cf(cf(&db, CF_KV), i.to_be_bytes(), &value).unwrap();
            }
            db.flush_cf(cf(&db, CF_KV)).unwrap();
        }
        let db = open_db(dir).unwrap();
        for i in 0..20u32 {
            assert_eq!(db.get_cf(cf(&db, CF_KV), i.to_be_bytes()).unwrap().as_deref(), Some(&value[..]));
        }
        let sst =
            std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension() == Some("sst".as_ref()));
        assert!(sst.count() >= 1, "the flush wrote a table file");
        let options = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .max()
            .expect("an OPTIONS file");
        std::fs::read_to_string(options).unwrap().contains("use_direct_io_for_flush_and_compaction=true")
    }

    #[test]
    fn flushes_write_with_direct_io_where_the_filesystem_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        std::fs::create_dir_all(&db_dir).unwrap();
        let expected = direct_io(&db_dir);
        assert_eq!(round_trip(&db_dir), expected);
    }

    #[test]
    fn a_filesystem_without_direct_io_still_flushes_through_the_page_cache() {
        // tmpfs refuses O_DIRECT: the database must notice and write buffered.
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() || direct_io_supported(shm) {
            eprintln!("SKIPPED: no /dev/shm refusing O_DIRECT here");
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        assert!(!round_trip(dir.path()), "direct I/O must stay off on tmpfs");
    }
}
