//! Kubernetes `Status` failure objects (404, 409, 422, ...) with Kubernetes-formatted messages.

use serde::{Deserialize, Serialize};

use crate::registry::ResourceInfo;

/// `Status.reason` values Skiff returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusReason {
    NotFound,
    AlreadyExists,
    Conflict,
    BadRequest,
    Gone,
    Expired,
    RequestEntityTooLarge,
    MethodNotAllowed,
    Invalid,
    Forbidden,
    NotAcceptable,
    UnsupportedMediaType,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl StatusReason {
    /// HTTP status code Kubernetes uses for the reason.
    pub fn code(self) -> u16 {
        match self {
            StatusReason::NotFound => 404,
            StatusReason::AlreadyExists | StatusReason::Conflict => 409,
            StatusReason::BadRequest => 400,
            StatusReason::Gone | StatusReason::Expired => 410,
            StatusReason::RequestEntityTooLarge => 413,
            StatusReason::MethodNotAllowed => 405,
            StatusReason::Invalid => 422,
            StatusReason::Forbidden => 403,
            StatusReason::NotAcceptable => 406,
            StatusReason::UnsupportedMediaType => 415,
            StatusReason::TooManyRequests => 429,
            StatusReason::InternalError => 500,
            StatusReason::ServiceUnavailable => 503,
            StatusReason::Timeout => 504,
        }
    }
}

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// A failure `Status` as returned in Kubernetes API error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub status: String,
    pub message: String,
    pub reason: StatusReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    pub code: u16,
}

impl Status {
    /// A failure with the given reason and message; `code` follows the reason.
    pub fn failure(reason: StatusReason, message: impl Into<String>, details: Option<StatusDetails>) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: serde_json::Map::new(),
            status: "Failure".into(),
            message: message.into(),
            reason,
            details,
            code: reason.code(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("Status serializes")
    }

    /// The same status as k8s-openapi's typed `Status`.
    pub fn to_k8s(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Status {
        serde_json::from_value(self.to_json()).expect("Status matches the k8s-openapi schema")
    }
}

fn resource_details(resource: &ResourceInfo, name: Option<&str>) -> StatusDetails {
    StatusDetails {
        name: name.map(str::to_string),
        group: Some(resource.group.to_string()).filter(|g| !g.is_empty()),
        kind: Some(resource.plural.to_string()),
        causes: Vec::new(),
    }
}

/// `pods "web" not found` (404).
pub fn not_found(resource: &ResourceInfo, name: &str) -> Status {
    let msg = format!("{} \"{name}\" not found", resource.qualified_plural());
    Status::failure(StatusReason::NotFound, msg, Some(resource_details(resource, Some(name))))
}

/// `deployments.apps "web" already exists` (409).
pub fn already_exists(resource: &ResourceInfo, name: &str) -> Status {
    let msg = format!("{} \"{name}\" already exists", resource.qualified_plural());
    Status::failure(StatusReason::AlreadyExists, msg, Some(resource_details(resource, Some(name))))
}

/// Default detail of an optimistic-concurrency conflict.
pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// `Operation cannot be fulfilled on pods "web": <detail>` (409).
pub fn conflict(resource: &ResourceInfo, name: &str, detail: &str) -> Status {
    let msg = format!("Operation cannot be fulfilled on {} \"{name}\": {detail}", resource.qualified_plural());
    Status::failure(StatusReason::Conflict, msg, Some(resource_details(resource, Some(name))))
}

/// Conflict caused by a stale `resourceVersion`.
pub fn conflict_modified(resource: &ResourceInfo, name: &str) -> Status {
    conflict(resource, name, OBJECT_MODIFIED)
}

/// 400 with a free-form message.
pub fn bad_request(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::BadRequest, message, None)
}

/// 410 Gone with a free-form message.
pub fn gone(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::Gone, message, None)
}

/// 410 `Expired`, as returned to watches whose resourceVersion was compacted:
/// `too old resource version: 5 (100)`.
pub fn resource_expired(requested: u64, current: u64) -> Status {
    Status::failure(StatusReason::Expired, format!("too old resource version: {requested} ({current})"), None)
}

/// 410 Expired for a continue token whose revision has been compacted (as Kubernetes words it).
pub fn continue_expired() -> Status {
    Status::failure(
        StatusReason::Expired,
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter."
            .to_string(),
        None,
    )
}

/// 413 `Request entity too large: <detail>`.
pub fn request_entity_too_large(detail: &str) -> Status {
    Status::failure(StatusReason::RequestEntityTooLarge, format!("Request entity too large: {detail}"), None)
}

/// 405 `<verb> is not supported on resources of kind "pods"`.
pub fn method_not_allowed(resource: &ResourceInfo, verb: &str) -> Status {
    let msg = format!("{verb} is not supported on resources of kind \"{}\"", resource.qualified_plural());
    Status::failure(StatusReason::MethodNotAllowed, msg, Some(resource_details(resource, None)))
}

/// 500 with a free-form message.
pub fn internal_error(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::InternalError, message, None)
}

/// 503: the store cannot serve the request right now (no leader, shutting down).
pub fn service_unavailable(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::ServiceUnavailable, message, None)
}

/// 504: the request's deadline passed before the store answered.
pub fn timeout(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::Timeout, message, None)
}

/// 429: too many requests in flight.
pub fn too_many_requests(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::TooManyRequests, message, None)
}

/// 415 for a body whose content type is not served.
pub fn unsupported_media_type(content_type: &str) -> Status {
    Status::failure(
        StatusReason::UnsupportedMediaType,
        format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"),
        None,
    )
}

/// 403 with a free-form message.
pub fn forbidden(message: impl Into<String>) -> Status {
    Status::failure(StatusReason::Forbidden, message, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{DEPLOYMENTS, PODS};
    use serde_json::json;

    #[test]
    fn not_found_matches_kubernetes_body() {
        let s = not_found(&PODS, "web");
        assert_eq!(
            s.to_json(),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "pods \"web\" not found", "reason": "NotFound",
                "details": {"name": "web", "kind": "pods"}, "code": 404
            })
        );
    }

    #[test]
    fn grouped_resources_are_qualified() {
        let s = already_exists(&DEPLOYMENTS, "web");
        assert_eq!(s.message, "deployments.apps \"web\" already exists");
        assert_eq!(s.code, 409);
        assert_eq!(s.to_json()["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
    }

    #[test]
    fn conflict_message() {
        let s = conflict_modified(&PODS, "web");
        assert_eq!(
            s.message,
            "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!((s.code, s.reason), (409, StatusReason::Conflict));
    }

    #[test]
    fn other_codes() {
        assert_eq!(bad_request("bad").code, 400);
        assert_eq!(gone("gone").code, 410);
        let e = resource_expired(5, 100);
        assert_eq!((e.code, e.message.as_str()), (410, "too old resource version: 5 (100)"));
        assert_eq!(e.to_json()["reason"], "Expired");
        let big = request_entity_too_large("limit is 3145728");
        assert_eq!((big.code, big.message.as_str()), (413, "Request entity too large: limit is 3145728"));
        let m = method_not_allowed(&DEPLOYMENTS, "connect");
        assert_eq!(
            (m.code, m.message.as_str()),
            (405, "connect is not supported on resources of kind \"deployments.apps\"")
        );
        assert!(bad_request("x").to_json().get("details").is_none());
    }

    #[test]
    fn round_trips_through_serde_and_k8s_openapi() {
        let s = not_found(&DEPLOYMENTS, "api");
        let back: Status = serde_json::from_value(s.to_json()).unwrap();
        assert_eq!(back, s);
        let typed = s.to_k8s();
        assert_eq!(typed.code, Some(404));
        assert_eq!(typed.reason.as_deref(), Some("NotFound"));
        assert_eq!(typed.details.unwrap().group.as_deref(), Some("apps"));
    }
}
