//! Skiff's gRPC protocol: the code generated from `proto/skiff.proto`, the error details
//! carried in statuses, and a client that fails over across control-plane endpoints.
//! The only crate that knows prost types.

pub mod client;

#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("skiff.v1");
}

/// etcd's v3 `KV/Put`, for benchmarking against etcd with the same load generator.
#[allow(clippy::all)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// The node agent's stream to the control plane (`proto/agent.proto`).
#[allow(clippy::all)]
pub mod agent {
    tonic::include_proto!("skiff.agent.v1");

    /// The largest gateway message (a full pod set of a busy node); agents and the gateway
    /// both enforce it.
    pub const MAX_AGENT_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
}

pub use client::{Client, ClientError, WatchStream};
pub use pb::*;

use prost::Message;

impl ErrorDetail {
    /// Builds a status whose details carry this error as data.
    pub fn into_status(self, code: tonic::Code, message: impl Into<String>) -> tonic::Status {
        tonic::Status::with_details(code, message, self.encode_to_vec().into())
    }

    /// Reads the error data back out of a status (`OTHER` when there is none).
    pub fn from_status(s: &tonic::Status) -> ErrorDetail {
        ErrorDetail::decode(s.details()).unwrap_or_default()
    }
}
