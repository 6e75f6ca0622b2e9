//! The built-in plugins, each a small struct implementing [`FilterPlugin`](crate::FilterPlugin)
//! and/or [`ScorePlugin`](crate::ScorePlugin).

pub mod node_affinity;
pub mod node_ports;
pub mod node_readiness;
pub mod node_resources;
pub mod spread;
pub mod taint_toleration;

pub use node_affinity::NodeAffinity;
pub use node_ports::NodePorts;
pub use node_readiness::{NodeReady, NodeUnschedulable};
pub use node_resources::{BalancedAllocation, LeastAllocated, NodeResourcesFit};
pub use spread::ReplicaSpread;
pub use taint_toleration::TaintToleration;
