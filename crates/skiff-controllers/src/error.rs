//! The crate's error type: what a reconcile can fail with (always retried with backoff).

use crate::api::ApiCallError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A call to the object store failed (conflicts are the common, benign case).
    #[error(transparent)]
    Api(#[from] ApiCallError),
    /// An object cannot be reconciled as written (bad selector, …); retried in case it is fixed.
    #[error("{object}: invalid {field}: {message}")]
    Invalid { object: String, field: String, message: String },
    /// The cache did not catch up with our own write in time.
    #[error("cache of {0} did not catch up with our last write")]
    StaleCache(&'static str),
}

impl Error {
    pub fn invalid(object: impl std::fmt::Display, field: &str, message: impl Into<String>) -> Self {
        Error::Invalid { object: object.to_string(), field: field.to_string(), message: message.into() }
    }

    /// Conflicts and not-found races resolve themselves on the next pass.
    pub fn is_benign(&self) -> bool {
        matches!(self, Error::Api(e) if e.is_conflict() || e.is_not_found())
    }
}
