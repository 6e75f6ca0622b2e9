//! Patch semantics: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386), Strategic Merge Patch,
//! and server-side apply's field ownership.

pub mod apply;
pub mod json;
pub mod merge;
pub mod strategic;

use serde_json::Value;

/// Why a patch could not be applied (the API answers these with 422 or 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
    #[error("invalid JSON pointer {0:?}")]
    BadPointer(String),
    #[error("path {0:?} does not exist")]
    PathNotFound(String),
    #[error("test operation failed at {path:?}: expected {expected}, found {found}")]
    TestFailed { path: String, expected: String, found: String },
    #[error("unsupported patch content type {0:?}")]
    UnsupportedType(String),
}

/// The patch flavours the API accepts, keyed by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<Self, PatchError> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            other => Err(PatchError::UnsupportedType(other.to_string())),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
        }
    }
}

/// Apply a patch of the given type to `doc`, returning the patched document.
pub fn apply(kind: PatchType, doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => json::apply(doc, patch),
        PatchType::Merge => Ok(merge::apply(doc, patch)),
        PatchType::Strategic => strategic::apply(doc, patch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(PatchType::from_content_type("application/json-patch+json").unwrap(), PatchType::Json);
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json").unwrap(),
            PatchType::Strategic
        );
        assert!(matches!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Err(PatchError::UnsupportedType(_))
        ));
        for t in [PatchType::Json, PatchType::Merge, PatchType::Strategic] {
            assert_eq!(PatchType::from_content_type(t.content_type()).unwrap(), t);
        }
    }

    #[test]
    fn dispatch_differs_by_type() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "image": "z"}]}});
        let merged = apply(PatchType::Merge, &doc, &patch).unwrap();
        assert_eq!(merged["spec"]["containers"].as_array().unwrap().len(), 1, "merge patch replaces lists");
        let strategic = apply(PatchType::Strategic, &doc, &patch).unwrap();
        assert_eq!(strategic["spec"]["containers"].as_array().unwrap().len(), 2, "strategic merges by name");
        let jp = json!([{"op": "replace", "path": "/spec/containers/1/image", "value": "w"}]);
        assert_eq!(apply(PatchType::Json, &doc, &jp).unwrap()["spec"]["containers"][1]["image"], "w");
    }
}
