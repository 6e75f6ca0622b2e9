//! The gRPC transport between replicas: openraft messages bincode-encoded in `RaftMessage`.

use std::collections::HashMap;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::Mutex;
use skiff_proto::raft_client::RaftClient;
use skiff_proto::RaftMessage;
use skiff_store::transport::RpcError;
use skiff_store::{ForwardRequest, ForwardResponse, NodeId, StoreError, Transport, TypeConfig};
use tonic::transport::Channel;
use tonic::Code;

/// Largest replica-to-replica message (a batch of up to 64 entries of at most 1.5 MiB).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Default)]
pub struct GrpcTransport {
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTransport {
    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let ch = {
            let mut map = self.channels.lock();
            match map.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = skiff_proto::client::channel(addr).map_err(|e| e.to_string())?;
                    map.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(RaftClient::new(ch)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
    }
}

fn io(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn request<T: serde::Serialize>(v: &T, ttl: Duration) -> tonic::Request<RaftMessage> {
    let mut r =
        tonic::Request::new(RaftMessage { data: bincode::serialize(v).expect("serializing a raft message").into() });
    r.set_timeout(ttl);
    r
}

/// Sends one openraft RPC and turns the remote `Result<Resp, E>` back into openraft's errors.
async fn raft_call<Req, Resp, E, F, Fut>(
    t: &GrpcTransport,
    target: NodeId,
    addr: &str,
    req: &Req,
    ttl: Duration,
    f: F,
) -> Result<Resp, RpcError<E>>
where
    Req: serde::Serialize,
    Resp: serde::de::DeserializeOwned,
    E: std::error::Error + serde::de::DeserializeOwned,
    F: FnOnce(RaftClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
{
    let client = t.client(addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&io(e))))?;
    match f(client, request(req, ttl)).await {
        Ok(resp) => {
            let res: Result<Resp, E> = bincode::deserialize(&resp.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&io(format!("undecodable reply: {e}")))))?;
            res.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
        }
        Err(s) if s.code() == Code::Unavailable => {
            Err(RPCError::Unreachable(Unreachable::new(&io(format!("{addr}: {}", s.message())))))
        }
        Err(s) => Err(RPCError::Network(NetworkError::new(&io(format!("{addr}: {:?} {}", s.code(), s.message()))))),
    }
}

#[async_trait::async_trait]
impl Transport for GrpcTransport {
    async fn append_entries(
        &self,
        target: NodeId,
        addr: &str,
        req: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        raft_call(self, target, addr, &req, ttl, |mut c, r| async move { c.append_entries(r).await }).await
    }

    async fn vote(
        &self,
        target: NodeId,
        addr: &str,
        req: VoteRequest<NodeId>,
        ttl: Duration,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        raft_call(self, target, addr, &req, ttl, |mut c, r| async move { c.vote(r).await }).await
    }

    async fn install_snapshot(
        &self,
        target: NodeId,
        addr: &str,
        req: InstallSnapshotRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>> {
        raft_call(self, target, addr, &req, ttl, |mut c, r| async move { c.install_snapshot(r).await }).await
    }

    async fn forward(
        &self,
        _target: NodeId,
        addr: &str,
        req: ForwardRequest,
        ttl: Duration,
    ) -> Result<ForwardResponse, StoreError> {
        let mut client = self.client(addr).map_err(StoreError::Unavailable)?;
        match client.forward(request(&req, ttl)).await {
            Ok(resp) => {
                let res: Result<ForwardResponse, StoreError> = bincode::deserialize(&resp.into_inner().data)
                    .map_err(|e| StoreError::Raft(format!("undecodable forward reply: {e}")))?;
                res
            }
            Err(s) if s.code() == Code::DeadlineExceeded => Err(StoreError::Timeout(format!("forward to {addr}"))),
            Err(s) => Err(StoreError::Unavailable(format!("forward to {addr}: {}", s.message()))),
        }
    }
}
