//! How replicas reach each other: a transport trait (gRPC in `skiff-server`, an
//! in-memory fault-injecting one in [`crate::mem_network`]) and openraft's network on top.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::election::Elector;
use crate::error::StoreError;
use crate::types::{Node, NodeId, Request, Response, TypeConfig};

pub type RpcError<E = RaftError<NodeId>> = RPCError<NodeId, Node, E>;

/// Requests a replica sends to the leader on a client's behalf.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum ForwardRequest {
    Write(Request),
    /// "What must I have applied to serve a linearizable read?" (read-index).
    ReadIndex,
    AddMember {
        id: NodeId,
        addr: String,
    },
    RemoveMember {
        id: NodeId,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum ForwardResponse {
    Write(Response),
    ReadIndex(u64),
    Done,
}

/// Replica-to-replica calls. `addr` is the target's advertised address.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn append_entries(
        &self,
        target: NodeId,
        addr: &str,
        req: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError>;

    async fn vote(
        &self,
        target: NodeId,
        addr: &str,
        req: VoteRequest<NodeId>,
        ttl: Duration,
    ) -> Result<VoteResponse<NodeId>, RpcError>;

    async fn install_snapshot(
        &self,
        target: NodeId,
        addr: &str,
        req: InstallSnapshotRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>>;

    /// Runs `req` on the target (which must not forward it again).
    async fn forward(
        &self,
        target: NodeId,
        addr: &str,
        req: ForwardRequest,
        ttl: Duration,
    ) -> Result<ForwardResponse, StoreError>;
}

/// openraft's network factory over a [`Transport`].
pub struct NetworkFactory {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) elector: Arc<Elector>,
}

pub struct NetworkConn {
    transport: Arc<dyn Transport>,
    elector: Arc<Elector>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkConn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        NetworkConn {
            transport: self.transport.clone(),
            elector: self.elector.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for NetworkConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.transport.append_entries(self.target, &self.addr, rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>> {
        self.transport.install_snapshot(self.target, &self.addr, rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        let mine = rpc.last_log_id;
        let resp = self.transport.vote(self.target, &self.addr, rpc, option.hard_ttl()).await?;
        if !resp.vote_granted && resp.last_log_id > mine {
            self.elector.peer_has_longer_log();
        }
        Ok(resp)
    }

    /// Retry an unreachable replica soon: a restarted replica should catch up quickly.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
