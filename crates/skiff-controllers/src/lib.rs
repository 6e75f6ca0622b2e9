//! Skiff's leader-only reconcilers (replicasets, deployments, node lifecycle, garbage collection, events).

pub mod api;
pub mod error;
pub mod events;
pub mod informer;
pub mod replicaset;
pub mod runtime;
pub mod testing;
pub mod util;

pub use api::{ApiCallError, EventType, ObjEvent, ObjectApi};
pub use error::Error;
