//! Kubernetes-compatible REST API over the replicated store: CRUD, watch, patch, subresources,
//! discovery and tables, served by every control-plane replica.
//!
//! `objects` holds the semantics (what a create, update, patch, delete or watch does to the
//! store); `http` maps Kubernetes paths and query parameters onto it; `protobuf` decodes the
//! protobuf bodies kubectl's typed clients send; `table` and `discovery` render what
//! `kubectl get` and kubectl's discovery read.

pub mod discovery;
pub mod error;
pub mod http;
pub mod logs;
pub mod meta;
pub mod objects;
pub mod protobuf;
pub mod served;
pub mod table;

pub use error::{ApiError, ApiResult};
pub use http::{router, ApiServer};
pub use logs::{AgentLogs, LogOptions, LogSource};
pub use objects::{DeleteOptions, ListOptions, ObjectStore, Subresource, WriteOptions};
