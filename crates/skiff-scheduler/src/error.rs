//! The crate's error type: why a pending pod's spec could not be interpreted for scheduling.

/// A pending pod whose spec the scheduler cannot interpret. It is reported as unschedulable
/// (with this error) rather than guessed at; validation in the API server normally prevents it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("{field}: invalid quantity {value:?}: {source}")]
    InvalidQuantity {
        field: String,
        value: String,
        #[source]
        source: skiff_api::quantity::QuantityError,
    },
}
