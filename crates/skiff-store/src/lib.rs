//! Replicated control-plane store: an etcd-like MVCC key-value state machine agreed on
//! through openraft and persisted in RocksDB, with watches and linearizable reads.
//!
//! The store knows nothing about pods: keys are strings, values are bytes.

// openraft's storage traits fix the error type to its (large) `StorageError`.
#![allow(clippy::result_large_err)]

mod batcher;
mod db;
mod election;
pub mod error;
pub mod log_store;
pub mod mem_network;
pub mod node;
pub mod state_machine;
pub mod transport;
pub mod types;
pub mod watch;

pub use error::StoreError;
pub use node::{quorum_loss_timeout, Member, MemberStatus, StoreConfig, StoreNode};
pub use transport::{ForwardRequest, ForwardResponse, Transport};
pub use types::*;
pub use watch::Watcher;

/// Opens a replica's database directly (for tools and the storage conformance suite).
pub use db::open_db;
