//! Replicated data types: what goes into the Raft log and what comes out of applying it.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A control-plane member id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of the Skiff store.
    pub TypeConfig:
        // Shared, not copied: openraft clones an entry's payload for each follower it
        // replicates to and again to apply it, which for a batch of a thousand transactions
        // was a deep copy of every key and value each time. Serialized as the `Request` itself.
        D = Arc<Request>,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Node = openraft::BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 3 * 1024;
/// Largest value accepted, in bytes (etcd's default request limit).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;
/// Most operations in one transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// Most transactions in one [`Request::Batch`].
pub const MAX_BATCH_TXNS: usize = 1024;
/// Most bytes of keys and values in one [`Request::Batch`] (one Raft entry).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One key with its MVCC metadata. `mod_revision` is the revision of the last write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    #[serde(with = "serde_bytes_compat")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// What a compare inspects. A missing key has all three revisions/versions at 0.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(u64),
    CreateRevision(u64),
    Version(u64),
    Value(Vec<u8>),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// `mod_revision(key) == rev`; `rev == 0` means "the key does not exist".
    pub fn mod_revision(key: impl Into<String>, rev: u64) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::ModRevision(rev) }
    }
    pub fn exists(key: impl Into<String>) -> Self {
        Compare { key: key.into(), op: CompareOp::Greater, target: CompareTarget::Version(0) }
    }
    pub fn missing(key: impl Into<String>) -> Self {
        Compare { key: key.into(), op: CompareOp::Equal, target: CompareTarget::Version(0) }
    }

    pub(crate) fn holds(&self, kv: Option<&KeyValue>) -> bool {
        use std::cmp::Ordering;
        let ord = match &self.target {
            CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
            CompareTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            CompareTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
            CompareTarget::Value(v) => match kv {
                Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
                None => return self.op == CompareOp::NotEqual,
            },
        };
        match self.op {
            CompareOp::Equal => ord == Ordering::Equal,
            CompareOp::NotEqual => ord != Ordering::Equal,
            CompareOp::Less => ord == Ordering::Less,
            CompareOp::Greater => ord == Ordering::Greater,
        }
    }
}

/// One operation of a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        #[serde(with = "serde_bytes_compat")]
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key starting with `prefix` (a non-empty prefix).
    DeletePrefix {
        prefix: String,
    },
    /// Reads a key inside the transaction (useful on the failure branch).
    Get {
        key: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into() }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
    pub fn get(key: impl Into<String>) -> Self {
        Op::Get { key: key.into() }
    }
    /// Bytes of key and value this operation carries.
    pub fn size(&self) -> usize {
        match self {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } | Op::Get { key } => key.len(),
            Op::DeletePrefix { prefix } => prefix.len(),
        }
    }
}

/// An atomic compare-then-act: if every compare holds, `success` runs, else `failure`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// A command replicated through the Raft log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Txn(Txn),
    /// Discards watch history older than `revision`.
    Compact {
        revision: u64,
    },
    /// Independent transactions applied in order in one Raft entry (one log append and
    /// fsync for all): each compares and writes on its own and gets its own revision, so
    /// one failing compare does not affect the others. The answer's `batch` holds one
    /// response per transaction.
    Batch(Vec<Txn>),
}

/// What one operation found. The key-values are the state's own entries, shared, not copied
/// (encoded as the key-values themselves): most callers never look at a put's previous value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Put { prev: Option<Arc<KeyValue>> },
    Delete { deleted: Vec<Arc<KeyValue>> },
    Get { kv: Option<Arc<KeyValue>> },
}

/// The result of applying one [`Request`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Whether the compares held (always true for a transaction without compares).
    pub succeeded: bool,
    /// The store revision after this request.
    pub revision: u64,
    pub results: Vec<OpResult>,
    /// For a [`Request::Batch`]: the response of each transaction, in order.
    #[serde(default)]
    pub batch: Vec<Response>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as watches see it. For a delete, `kv` carries the key and the deleting
/// revision (empty value) and `prev` the last value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub kv: Arc<KeyValue>,
    pub prev: Option<Arc<KeyValue>>,
}

/// Encodes `Vec<u8>` compactly with bincode (serde's default for Vec<u8> is a sequence,
/// which bincode already packs; kept as a named module so the encoding is explicit).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Checks a request against the size and shape limits before it is proposed.
pub fn validate_request(req: &Request) -> Result<(), String> {
    match req {
        Request::Txn(txn) => validate_txn(txn),
        Request::Compact { .. } => Ok(()),
        Request::Batch(txns) => {
            if txns.len() > MAX_BATCH_TXNS {
                return Err(format!("too many transactions in one batch: {} > {MAX_BATCH_TXNS}", txns.len()));
            }
            let mut bytes = 0usize;
            for (i, t) in txns.iter().enumerate() {
                validate_txn(t).map_err(|e| format!("batch transaction {i}: {e}"))?;
                bytes += t.success.iter().chain(&t.failure).map(Op::size).sum::<usize>();
            }
            if bytes > MAX_BATCH_BYTES {
                return Err(format!("batch writes {bytes} bytes, the limit is {MAX_BATCH_BYTES}"));
            }
            Ok(())
        }
    }
}

fn validate_txn(txn: &Txn) -> Result<(), String> {
    let n = txn.compare.len() + txn.success.len() + txn.failure.len();
    if n > MAX_TXN_OPS {
        return Err(format!("too many operations in one transaction: {n} > {MAX_TXN_OPS}"));
    }
    let check_key = |k: &str, what: &str| -> Result<(), String> {
        if k.is_empty() {
            return Err(format!("{what}: key must not be empty"));
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(format!("{what}: key is {} bytes, the limit is {MAX_KEY_BYTES}", k.len()));
        }
        Ok(())
    };
    for c in &txn.compare {
        check_key(&c.key, "compare")?;
    }
    for (branch, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        let mut written = std::collections::HashSet::new();
        for op in ops.iter() {
            match op {
                Op::Put { key, value } => {
                    check_key(key, "put")?;
                    if value.len() > MAX_VALUE_BYTES {
                        return Err(format!(
                            "put {key}: value is {} bytes, the limit is {MAX_VALUE_BYTES}",
                            value.len()
                        ));
                    }
                    if !written.insert(key.as_str()) {
                        return Err(format!("{branch}: key {key} is written twice in one transaction"));
                    }
                }
                Op::Delete { key } => {
                    check_key(key, "delete")?;
                    if !written.insert(key.as_str()) {
                        return Err(format!("{branch}: key {key} is written twice in one transaction"));
                    }
                }
                Op::DeletePrefix { prefix } => check_key(prefix, "delete prefix")?,
                Op::Get { key } => check_key(key, "get")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{decode, encode};

    /// An entry's request is shared behind an `Arc` but written as the request itself: logs
    /// and snapshots written before it was shared read back the same.
    #[test]
    fn a_shared_request_is_encoded_as_the_request_itself() {
        let txn = |k: &str| Txn {
            compare: vec![Compare::missing(k)],
            success: vec![Op::put(k, b"v".to_vec())],
            failure: vec![],
        };
        let req = Request::Batch(vec![txn("/a"), txn("/b")]);
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 7),
            payload: openraft::EntryPayload::Normal(Arc::new(req.clone())),
        };
        let bytes = encode(&entry);
        // The same entry as it was encoded before: the payload's request inline.
        let before = encode(&(entry.log_id, 1u32, &req));
        assert_eq!(bytes, before);
        let back: Entry = decode(&bytes).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        match back.payload {
            openraft::EntryPayload::Normal(r) => assert_eq!(*r, req),
            other => panic!("{other:?}"),
        }
    }
}
