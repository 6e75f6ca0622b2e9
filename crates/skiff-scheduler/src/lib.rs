//! Skiff's pod scheduler, pure: (cluster snapshot, pending pods) → bindings, via filter and score plugins.
//!
//! Modelled on the Kubernetes scheduler framework (Filter plugins that reject a node with
//! reasons coded `Unschedulable` or `UnschedulableAndUnresolvable`, Score plugins ranking the
//! feasible nodes 0..=100 with weights) and on Nomad's scheduler (business logic over an
//! immutable snapshot, tested through a [`harness::Harness`] with mock nodes). No I/O, no
//! async, no clock: the same snapshot and seed always give the same decisions.
//!
//! ```
//! use skiff_scheduler::harness::{node, pod, Harness};
//! let mut h = Harness::new();
//! h.add_node(node("n1").cpu("1")).add_pod(pod("web").cpu("500m"));
//! assert_eq!(h.schedule().node_of("web"), Some("n1"));
//! ```

pub mod decision;
pub mod error;
pub mod framework;
pub mod harness;
pub mod plugins;
pub mod resources;
pub mod scheduler;
pub mod snapshot;
pub mod state;

pub use decision::{Binding, Decision, Unschedulable};
pub use error::SchedulerError;
pub use framework::{Code, FilterPlugin, Rejection, ScorePlugin, MAX_NODE_SCORE};
pub use scheduler::{schedule, Profile, Scheduler, SchedulerConfig, DEFAULT_SCHEDULER_NAME};
pub use snapshot::{
    ClusterSnapshot, GroupCounts, NodeInfo, PendingPod, PodEntry, PodInfo, PodRef, Readiness, SpreadGroups,
};
pub use state::ClusterState;
