//! Kubernetes REST client for Skiff's API server (kubeconfig, typed errors, watch and log streams) and the kubectl-like `skiff` user commands.

pub mod apply;
pub mod client;
pub mod commands;
pub mod describe;
pub mod drain;
pub mod error;
pub mod kubeconfig;
pub mod manifest;
pub mod output;
pub mod resource;
pub mod rollout;
pub mod table;

pub use client::{Client, DeleteParams, ListParams, LogParams, WatchEvent};
pub use commands::{run, run_with, GlobalOpts, UserCommand};
pub use error::{Error, ServerError};
pub use kubeconfig::write_kubeconfig;
