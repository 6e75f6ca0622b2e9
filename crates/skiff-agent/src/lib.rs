//! Skiff's node agent: the gRPC connection to the control plane, container runtimes (docker, process, fake), pod lifecycle, probes, restarts with backoff, logs over HTTP.
//!
//! [`Agent::start`] (or [`run_agent`]) connects to the control plane's `AgentGateway`, feeds
//! [`PodManager::sync`] with the pods bound to this node and reports the [`PodEvent`]s it
//! emits. Nothing here knows about Raft or the store.

pub mod backoff;
mod command;
pub mod connection;
pub mod error;
pub mod http;
pub mod pod_manager;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod spec;

pub use connection::{node_object, run_agent, Agent, AgentConfig};
pub use error::{AgentError, Result};
pub use pod_manager::{PodEvent, PodManager, PodManagerConfig, PodStatusUpdate, RecordedEvent};
pub use runtime::{
    ContainerInfo, DockerConfig, DockerRuntime, FakeRuntime, FakeStart, LogOptions, LogStream, ProcessConfig,
    ProcessRuntime, Runtime, RuntimeCalls,
};
