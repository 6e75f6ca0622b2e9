//! Skiff's node agent, node-local half: container runtimes (docker, process, fake), pod lifecycle, probes, restarts with backoff, logs.
//!
//! The control-plane connection (gRPC) is not part of this crate yet: whoever owns it feeds
//! [`PodManager::sync`] with the pods bound to this node and forwards the [`PodEvent`]s it
//! receives. Nothing here knows about Raft or the store.

pub mod backoff;
pub mod error;
pub mod pod_manager;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod spec;

pub use error::{AgentError, Result};
pub use pod_manager::{PodEvent, PodManager, PodManagerConfig, PodStatusUpdate};
pub use runtime::{
    ContainerInfo, DockerConfig, DockerRuntime, FakeRuntime, FakeStart, LogOptions, LogStream, ProcessConfig,
    ProcessRuntime, Runtime,
};
