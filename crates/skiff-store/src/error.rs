//! The store's one error type.

use crate::types::NodeId;

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum StoreError {
    /// This replica is not the leader; `addr` is the leader's address when known.
    #[error("not the leader; the leader is {}", leader_display(.id, .addr))]
    ForwardToLeader { id: Option<NodeId>, addr: Option<String> },
    #[error("no leader is known (election in progress or no quorum)")]
    NoLeader,
    #[error("revision {requested} has been compacted; the oldest available revision is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("deadline exceeded: {0}")]
    Timeout(String),
    #[error("too many requests in flight ({0}); retry later")]
    Overloaded(usize),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("membership change failed: {0}")]
    Membership(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("shutting down")]
    Shutdown,
}

fn leader_display(id: &Option<NodeId>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(a)) => format!("{id} at {a}"),
        (Some(id), None) => format!("{id}"),
        _ => "unknown".to_string(),
    }
}

impl StoreError {
    /// Whether a client may retry the same request on another replica or later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::ForwardToLeader { .. }
                | StoreError::NoLeader
                | StoreError::Unavailable(_)
                | StoreError::Timeout(_)
                | StoreError::Overloaded(_)
                | StoreError::Shutdown
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
