//! Skiff's Kubernetes object model: the pure, I/O-free rules for served resources and their objects.
//!
//! Everything here operates on `serde_json::Value` objects (as decoded from the REST API) or on
//! plain strings, so the API server, controllers and tests can share one definition of
//! "what a valid, defaulted pod looks like" without pulling in storage or networking.

pub mod defaults;
pub mod duration;
pub mod fields;
pub mod keys;
pub mod labels;
pub mod patch;
pub mod quantity;
pub mod registry;
pub mod status;
pub mod strict;
pub mod validation;

pub use defaults::{default_object, default_typed};
pub use fields::FieldSelector;
pub use labels::LabelSelector;
pub use patch::{PatchError, PatchType};
pub use registry::{lookup, ResourceInfo, RESOURCES};
pub use status::{Status, StatusReason};
pub use validation::{
    validate, validate_typed, validate_with, FieldError, FieldErrorReason, ValidationError, ValidationErrors,
    ValidationOptions,
};
