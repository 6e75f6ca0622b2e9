//! The gRPC services one replica serves: Raft (peer traffic), Kv and Cluster (clients).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use skiff_proto as pb;
use skiff_proto::error_detail::Kind;
use skiff_store::{Compare, ForwardRequest, Op, OpResult, StoreNode, Txn};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::convert::{self, status};

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    bincode::deserialize(b).map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> pb::RaftMessage {
    pb::RaftMessage { data: bincode::serialize(v).expect("serializing an in-memory value").into() }
}

/// Replica-to-replica traffic.
pub struct RaftSvc(pub Arc<StoreNode>);

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftSvc {
    async fn append_entries(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data)?;
        Ok(Response::new(encode(&self.0.handle_append_entries(rpc).await)))
    }

    async fn vote(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data)?;
        Ok(Response::new(encode(&self.0.handle_vote(rpc).await)))
    }

    async fn install_snapshot(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data)?;
        Ok(Response::new(encode(&self.0.handle_install_snapshot(rpc).await)))
    }

    async fn forward(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let fwd: ForwardRequest = decode(&req.into_inner().data)?;
        Ok(Response::new(encode(&self.0.execute_local(fwd).await)))
    }
}

/// The etcd-style key-value API.
pub struct KvSvc(pub Arc<StoreNode>);

impl KvSvc {
    /// Runs `op` on `key`, only if the key is at `prev_revision` when one is given; a lost
    /// compare becomes a conflict status carrying the key's current revision.
    async fn guarded(&self, key: &str, prev_revision: Option<u64>, op: Op) -> Result<(u64, OpResult), Status> {
        let txn = Txn {
            compare: prev_revision.map(|rev| vec![Compare::mod_revision(key, rev)]).unwrap_or_default(),
            success: vec![op],
            failure: vec![Op::get(key)],
        };
        let resp = self.0.txn(txn).await.map_err(status)?;
        match resp.results.into_iter().next() {
            Some(OpResult::Get { kv }) if !resp.succeeded => {
                Err(convert::conflict(key, prev_revision.unwrap_or_default(), kv.map_or(0, |k| k.mod_revision)))
            }
            Some(result) => Ok((resp.revision, result)),
            None => Err(Status::internal("transaction returned no result")),
        }
    }
}

type WatchOut = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// Events per watch message, and messages buffered per watch.
const WATCH_BATCH: usize = 256;
const WATCH_BUFFER: usize = 64;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvSvc {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = req.into_inner();
        if !r.prefix {
            if r.key.is_empty() {
                return Err(status(skiff_store::StoreError::InvalidArgument("key must not be empty".into())));
            }
            let (kv, revision) = self.0.get(&r.key, r.serializable).await.map_err(status)?;
            return Ok(Response::new(pb::RangeResponse {
                kvs: kv.iter().map(convert::kv).collect(),
                revision,
                more: false,
            }));
        }
        let start_after = (!r.start_after.is_empty()).then_some(r.start_after.as_str());
        let (kvs, revision, more) =
            self.0.range(&r.key, start_after, r.limit as usize, r.serializable).await.map_err(status)?;
        Ok(Response::new(pb::RangeResponse { kvs: kvs.iter().map(|k| convert::kv(k)).collect(), revision, more }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        let op = Op::Put { key: r.key.clone(), value: r.value };
        match self.guarded(&r.key, r.prev_revision, op).await? {
            (revision, OpResult::Put { prev }) => {
                Ok(Response::new(pb::PutResponse { revision, prev: prev.as_deref().map(convert::kv) }))
            }
            (_, other) => Err(Status::internal(format!("unexpected put result {other:?}"))),
        }
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let op = if r.prefix { Op::DeletePrefix { prefix: r.key.clone() } } else { Op::delete(r.key.clone()) };
        match self.guarded(&r.key, r.prev_revision, op).await? {
            (revision, OpResult::Delete { deleted }) => {
                Ok(Response::new(pb::DeleteResponse { revision, deleted: deleted.len() as u64 }))
            }
            (_, other) => Err(Status::internal(format!("unexpected delete result {other:?}"))),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let txn = convert::txn(req.into_inner())?;
        let resp = self.0.txn(txn).await.map_err(status)?;
        Ok(Response::new(pb::TxnResponse {
            succeeded: resp.succeeded,
            revision: resp.revision,
            results: resp.results.iter().map(convert::op_result).collect(),
        }))
    }

    async fn compact(&self, req: Request<pb::CompactRequest>) -> Result<Response<pb::CompactResponse>, Status> {
        let revision = req.into_inner().revision;
        let resp = self.0.write(skiff_store::Request::Compact { revision }).await.map_err(status)?;
        Ok(Response::new(pb::CompactResponse { revision: resp.revision }))
    }

    type WatchStream = WatchOut;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        let mut watcher = self.0.watch(&r.prefix, r.from_revision).map_err(status)?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        // The first message says where the watch starts, so a client that reconnects
        // elsewhere resumes from there rather than from that replica's "now".
        let start = pb::WatchResponse { events: vec![], revision: watcher.next_revision().saturating_sub(1) };
        let _ = tx.try_send(Ok(start));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    batch = watcher.next_batch(WATCH_BATCH) => {
                        let msg = match batch {
                            Ok(events) => {
                                let revision = events.last().map_or(0, |e| e.revision);
                                Ok(pb::WatchResponse { events: events.iter().map(|e| convert::event(e)).collect(), revision })
                            }
                            Err(e) => Err(status(e)),
                        };
                        let end = msg.is_err();
                        if tx.send(msg).await.is_err() || end {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Membership administration and status.
pub struct ClusterSvc(pub Arc<StoreNode>);

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterSvc {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.0.status();
        Ok(Response::new(pb::StatusResponse {
            id: s.id,
            addr: s.addr,
            role: s.role,
            term: s.term,
            leader: s.leader,
            last_log_index: s.last_log_index,
            last_applied: s.last_applied,
            revision: s.revision,
            compacted: s.compacted,
            members: s.members.into_iter().map(|m| pb::Member { id: m.id, addr: m.addr, voter: m.voter }).collect(),
        }))
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Result<Response<pb::AddMemberResponse>, Status> {
        let r = req.into_inner();
        if r.id == 0 {
            return Err(pb::ErrorDetail { kind: Kind::InvalidArgument as i32, ..Default::default() }
                .into_status(tonic::Code::InvalidArgument, "member id must be a positive integer"));
        }
        self.0.add_member(r.id, r.addr).await.map_err(status)?;
        Ok(Response::new(pb::AddMemberResponse {}))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        self.0.remove_member(req.into_inner().id).await.map_err(status)?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }
}
