//! Composition root of the `skiff` binary: the command line, and the process-cluster
//! harness shared by the end-to-end tests and the benchmarks.

pub mod cli;
pub mod proc_cluster;
