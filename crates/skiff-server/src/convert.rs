//! Conversions between the store's domain types and the protobuf types, and the mapping
//! of store errors to gRPC statuses (errors become `tonic::Status` only here, at the edge).

use skiff_proto::error_detail::Kind;
use skiff_proto::{self as pb, ErrorDetail};
use skiff_store::{Compare, CompareOp, CompareTarget, KeyValue, Op, OpResult, StoreError, Txn};
use tonic::{Code, Status};

pub fn kv(k: &KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: k.key.clone(),
        value: k.value.clone(),
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
    }
}

pub fn event(e: &skiff_store::Event) -> pb::Event {
    pb::Event {
        r#type: match e.kind {
            skiff_store::EventKind::Put => pb::event::Type::Put as i32,
            skiff_store::EventKind::Delete => pb::event::Type::Delete as i32,
        },
        kv: Some(kv(&e.kv)),
        prev: e.prev.as_deref().map(kv),
        revision: e.revision,
    }
}

fn op(o: pb::RequestOp) -> Result<Op, Status> {
    use pb::request_op::Op as P;
    match o.op {
        Some(P::Put(p)) => Ok(Op::Put { key: p.key, value: p.value }),
        Some(P::Delete(k)) => Ok(Op::Delete { key: k }),
        Some(P::DeletePrefix(k)) => Ok(Op::DeletePrefix { prefix: k }),
        Some(P::Get(k)) => Ok(Op::Get { key: k }),
        None => Err(Status::invalid_argument("txn: an operation has no op set")),
    }
}

pub fn txn(t: pb::TxnRequest) -> Result<Txn, Status> {
    let compare = t
        .compare
        .into_iter()
        .map(|c| {
            let op = match c.op() {
                pb::compare::Op::Equal => CompareOp::Equal,
                pb::compare::Op::NotEqual => CompareOp::NotEqual,
                pb::compare::Op::Less => CompareOp::Less,
                pb::compare::Op::Greater => CompareOp::Greater,
            };
            let target = match c.target() {
                pb::compare::Target::Mod => CompareTarget::ModRevision(c.number),
                pb::compare::Target::Create => CompareTarget::CreateRevision(c.number),
                pb::compare::Target::Version => CompareTarget::Version(c.number),
                pb::compare::Target::Value => CompareTarget::Value(c.value),
            };
            Compare { key: c.key, op, target }
        })
        .collect();
    Ok(Txn {
        compare,
        success: t.success.into_iter().map(op).collect::<Result<_, _>>()?,
        failure: t.failure.into_iter().map(op).collect::<Result<_, _>>()?,
    })
}

pub fn op_result(r: &OpResult) -> pb::ResponseOp {
    use pb::response_op::Result as R;
    let result = match r {
        OpResult::Put { prev } => R::Put(pb::PutResult { prev: prev.as_deref().map(kv) }),
        OpResult::Delete { deleted } => {
            R::Delete(pb::DeleteResult { deleted: deleted.iter().map(|k| kv(k)).collect() })
        }
        OpResult::Get { kv: k } => R::Get(pb::GetResult { kv: k.as_deref().map(kv) }),
    };
    pb::ResponseOp { result: Some(result) }
}

/// Maps a store error to a status whose details say what kind of error it is.
pub fn status(e: StoreError) -> Status {
    let msg = e.to_string();
    let detail = |kind: Kind| ErrorDetail { kind: kind as i32, ..Default::default() };
    match e {
        StoreError::ForwardToLeader { id, addr } => ErrorDetail {
            kind: Kind::NotLeader as i32,
            leader_id: id,
            leader_addr: addr.unwrap_or_default(),
            revision: 0,
        }
        .into_status(Code::Unavailable, msg),
        StoreError::NoLeader => detail(Kind::NoLeader).into_status(Code::Unavailable, msg),
        StoreError::Compacted { oldest, .. } => {
            ErrorDetail { kind: Kind::Compacted as i32, revision: oldest, ..Default::default() }
                .into_status(Code::OutOfRange, msg)
        }
        StoreError::InvalidArgument(_) => detail(Kind::InvalidArgument).into_status(Code::InvalidArgument, msg),
        StoreError::Timeout(_) => detail(Kind::Timeout).into_status(Code::DeadlineExceeded, msg),
        StoreError::Overloaded(_) => detail(Kind::Overloaded).into_status(Code::ResourceExhausted, msg),
        StoreError::Unavailable(_) | StoreError::Shutdown => detail(Kind::Other).into_status(Code::Unavailable, msg),
        StoreError::Membership(_) => detail(Kind::Other).into_status(Code::FailedPrecondition, msg),
        StoreError::Raft(_) | StoreError::Storage(_) => detail(Kind::Other).into_status(Code::Internal, msg),
    }
}

/// A compare-and-set that lost: the key is at `current`, not at `expected`.
pub fn conflict(key: &str, expected: u64, current: u64) -> Status {
    ErrorDetail { kind: Kind::Conflict as i32, revision: current, ..Default::default() }.into_status(
        Code::FailedPrecondition,
        format!("conflict: key {key:?} is at revision {current}, not {expected}"),
    )
}
