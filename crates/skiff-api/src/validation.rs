//! Object validation producing Kubernetes-style field error lists and 422/413 `Status` bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;

use serde_json::Value;

use crate::quantity::Quantity;
use crate::registry::ResourceInfo;
use crate::status::{Status, StatusCause, StatusDetails, StatusReason};

/// Largest object accepted (1.5 MiB, etcd's default request limit).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;
/// Largest total size of `metadata.annotations` (keys + values).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
pub const LABEL_VALUE_MAX: usize = 63;
pub const IANA_SVC_NAME_MAX: usize = 15;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
const NON_NEGATIVE_MSG: &str = "must be greater than or equal to 0";
const ENV_VAR_NAME_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// `reason` of a field error, serialized as Kubernetes' `CauseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorReason {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
    NotFound,
}

impl FieldErrorReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorReason::Required => "FieldValueRequired",
            FieldErrorReason::Invalid => "FieldValueInvalid",
            FieldErrorReason::NotSupported => "FieldValueNotSupported",
            FieldErrorReason::Duplicate => "FieldValueDuplicate",
            FieldErrorReason::TooLong => "FieldValueTooLong",
            FieldErrorReason::Forbidden => "FieldValueForbidden",
            FieldErrorReason::NotFound => "FieldValueNotFound",
        }
    }
}

/// One invalid field, e.g. `spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: FieldErrorReason,
    /// The offending value, printed JSON-style (strings quoted) in the message.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), reason: FieldErrorReason::Required, value: None, detail: detail.into() }
    }

    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: FieldErrorReason::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: impl Into<Value>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError {
            field: field.into(),
            reason: FieldErrorReason::NotSupported,
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            field: field.into(),
            reason: FieldErrorReason::Duplicate,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: FieldErrorReason::TooLong,
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), reason: FieldErrorReason::Forbidden, value: None, detail: detail.into() }
    }

    /// `<field>: Not found: <value>`: a reference to something that is not there.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            field: field.into(),
            reason: FieldErrorReason::NotFound,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// The message without the field path (Kubernetes' `ErrorBody`).
    pub fn body(&self) -> String {
        let head = match self.reason {
            FieldErrorReason::Required => "Required value",
            FieldErrorReason::Invalid => "Invalid value",
            FieldErrorReason::NotSupported => "Unsupported value",
            FieldErrorReason::Duplicate => "Duplicate value",
            FieldErrorReason::TooLong => "Too long",
            FieldErrorReason::Forbidden => "Forbidden",
            FieldErrorReason::NotFound => "Not found",
        };
        let mut s = head.to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&v.to_string());
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// All field errors of one object, with what is needed to build the 422 `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationErrors {
    pub kind: String,
    pub group: String,
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Field paths in error, in order (handy for tests and logs).
    pub fn fields(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.field.as_str()).collect()
    }

    /// The error for `field`, if any.
    pub fn get(&self, field: &str) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.field == field)
    }

    /// `Pod "web" is invalid: <err>` or `... is invalid: [<err>, <err>]`.
    pub fn message(&self) -> String {
        let errs: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        let list = if errs.len() == 1 { errs[0].clone() } else { format!("[{}]", errs.join(", ")) };
        format!("{} \"{}\" is invalid: {list}", self.kind, self.name)
    }

    /// 422 `Invalid` status. Each cause's message is the error without its field path (its
    /// `ErrorBody`), as Kubernetes writes it: clients print `field: message` (kubectl's
    /// `* spec.replicas: Invalid value: ...`), so a message naming the field showed it twice.
    pub fn to_status(&self) -> Status {
        let details = StatusDetails {
            name: Some(self.name.clone()),
            group: Some(self.group.clone()).filter(|g| !g.is_empty()),
            kind: Some(self.kind.clone()),
            causes: self
                .errors
                .iter()
                .map(|e| StatusCause {
                    reason: e.reason.as_str().to_string(),
                    message: e.body(),
                    field: e.field.clone(),
                })
                .collect(),
        };
        Status::failure(StatusReason::Invalid, self.message(), Some(details))
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ValidationErrors {}

/// Why an object was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// Field errors: HTTP 422.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The encoded object exceeds the size limit: HTTP 413.
    #[error("object is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl ValidationError {
    pub fn to_status(&self) -> Status {
        match self {
            ValidationError::Invalid(errs) => errs.to_status(),
            ValidationError::TooLarge { .. } => crate::status::request_entity_too_large(&self.to_string()),
        }
    }

    /// The field errors, if this is an `Invalid` error.
    pub fn field_errors(&self) -> Option<&ValidationErrors> {
        match self {
            ValidationError::Invalid(e) => Some(e),
            ValidationError::TooLarge { .. } => None,
        }
    }
}

/// Caller-tunable limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationOptions {
    pub node_port_range: RangeInclusive<i64>,
    pub max_object_bytes: usize,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions { node_port_range: 30000..=32767, max_object_bytes: MAX_OBJECT_BYTES }
    }
}

/// Validate an object of `resource` with default options.
pub fn validate(resource: &ResourceInfo, obj: &Value) -> Result<(), ValidationError> {
    validate_with(resource, obj, &ValidationOptions::default())
}

/// Validate an object of `resource`: size, metadata, and kind-specific spec rules.
pub fn validate_with(resource: &ResourceInfo, obj: &Value, opts: &ValidationOptions) -> Result<(), ValidationError> {
    check_size(serde_json::to_vec(obj).map(|v| v.len()).unwrap_or(0), opts)?;
    validate_fields(resource, obj, opts)
}

/// The size check alone, for a caller that has the encoded object at hand anyway (the API
/// server checks the bytes it stores rather than encoding the object once more).
pub fn check_size(size: usize, opts: &ValidationOptions) -> Result<(), ValidationError> {
    if size > opts.max_object_bytes {
        return Err(ValidationError::TooLarge { size, limit: opts.max_object_bytes });
    }
    Ok(())
}

/// Validation without the size check (see [`check_size`]).
pub fn validate_fields(resource: &ResourceInfo, obj: &Value, opts: &ValidationOptions) -> Result<(), ValidationError> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    invalid_if_any(resource, name, field_errors(resource, obj, opts))
}

/// An object's name and namespace alone, checked as [`validate_fields`] checks them: for
/// objects the server builds and encodes itself (the event sink's Events), whose other fields
/// are right by construction.
pub fn validate_name(resource: &ResourceInfo, name: &str, namespace: Option<&str>) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let namespace = namespace.unwrap_or("");
    validate_name_and_namespace(name, "", namespace, resource.namespaced, name_rule(resource), "metadata", &mut errors);
    invalid_if_any(resource, name, errors)
}

fn invalid_if_any(resource: &ResourceInfo, name: &str, errors: Vec<FieldError>) -> Result<(), ValidationError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ValidationError::Invalid(ValidationErrors {
        kind: resource.kind.to_string(),
        group: resource.group.to_string(),
        name: name.to_string(),
        errors,
    }))
}

/// Validate a typed k8s-openapi object. Types Skiff does not serve fail with an unsupported `kind`.
pub fn validate_typed<K: k8s_openapi::Resource + serde::Serialize>(obj: &K) -> Result<(), ValidationError> {
    let value = serde_json::to_value(obj).unwrap_or(Value::Null);
    match crate::registry::resource_of::<K>() {
        Some(resource) => validate(resource, &value),
        None => {
            let kinds: Vec<&str> = crate::registry::RESOURCES.iter().map(|r| r.kind).collect();
            Err(ValidationError::Invalid(ValidationErrors {
                kind: K::KIND.to_string(),
                group: K::GROUP.to_string(),
                name: value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
                errors: vec![FieldError::not_supported("kind", K::KIND, &kinds)],
            }))
        }
    }
}

/// The field errors of an object, without the size check.
pub fn field_errors(resource: &ResourceInfo, obj: &Value, opts: &ValidationOptions) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("<root>", type_name(obj), "must be a JSON object"));
        return errs;
    }
    validate_object_meta(obj.get("metadata"), resource.namespaced, name_rule(resource), "metadata", &mut errs);
    let spec = obj.get("spec");
    match resource.kind {
        "Pod" => match spec {
            Some(spec) => validate_pod_spec(spec, "spec", false, &mut errs),
            None => errs.push(FieldError::required("spec.containers", "")),
        },
        "Deployment" | "ReplicaSet" => validate_workload_spec(resource.kind, spec, &mut errs),
        "Service" => validate_service_spec(spec, opts, &mut errs),
        "Endpoints" => validate_endpoints(obj, &mut errs),
        "Event" => validate_event(obj, &mut errs),
        "Lease" => validate_lease(spec, &mut errs),
        "EndpointSlice" => validate_endpoint_slice(obj, &mut errs),
        _ => {}
    }
    errs
}

fn validate_event(obj: &Value, errs: &mut Vec<FieldError>) {
    if !obj.get("involvedObject").is_some_and(Value::is_object) {
        errs.push(FieldError::required("involvedObject", ""));
    }
}

fn validate_lease(spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    let duration = spec.and_then(|s| s.get("leaseDurationSeconds")).and_then(Value::as_i64);
    if let Some(d) = duration.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid("spec.leaseDurationSeconds", d, "must be greater than 0"));
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Name syntax (each returns Kubernetes' error details; empty means valid).

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// DNS-1123 label: ≤63 chars of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    if !label_shape(s, is_lower_alnum) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// The shape shared by DNS labels: non-empty, lower-case alphanumerics and `-`, a first
/// character accepted by `first`, and an alphanumeric last character.
fn label_shape(s: &str, first: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && first(b[0]) && is_lower_alnum(b[b.len() - 1]) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// DNS-1123 subdomain: ≤253 chars, dot-separated DNS-1123 labels.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        out.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    let ok = !s.is_empty() && s.split('.').all(|part| label_shape(part, is_lower_alnum));
    if !ok {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// DNS-1035 label (Service names): a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    if !label_shape(s, |c| c.is_ascii_lowercase()) {
        out.push(DNS1035_LABEL_MSG.to_string());
    }
    out
}

/// Qualified name (label and annotation keys): optional `prefix/` (a DNS-1123 subdomain) and a
/// name part of ≤63 alphanumerics, `-`, `_`, `.` that starts and ends alphanumeric.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".to_string());
            } else {
                out.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            out.push(format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'), got {} '/' separators",
                parts.len() - 1
            ));
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
        return out;
    }
    if name.len() > LABEL_VALUE_MAX {
        out.push(format!("name part must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !is_label_like(name) {
        out.push(QUALIFIED_NAME_MSG.to_string());
    }
    out
}

fn is_label_like(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

/// Label value: empty, or ≤63 alphanumerics, `-`, `_`, `.` starting and ending alphanumeric.
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        out.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !s.is_empty() && !is_label_like(s) {
        out.push(LABEL_VALUE_MSG.to_string());
    }
    out
}

/// IANA service name (named ports): ≤15 chars of `[a-z0-9-]`, at least one letter, no leading,
/// trailing or doubled `-`.
pub fn is_iana_svc_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > IANA_SVC_NAME_MAX {
        out.push(format!("must be no more than {IANA_SVC_NAME_MAX} characters"));
    }
    if !s.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        out.push("must not begin or end with a hyphen".to_string());
    }
    out
}

fn push_all(errs: &mut Vec<FieldError>, field: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(field, value, m));
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

#[derive(Clone, Copy)]
enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

fn name_rule(resource: &ResourceInfo) -> NameRule {
    match resource.kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        _ => NameRule::Dns1123Subdomain,
    }
}

fn validate_object_meta(
    meta: Option<&Value>,
    namespaced: bool,
    rule: NameRule,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let empty = Value::Object(Default::default());
    let meta = meta.unwrap_or(&empty);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate_name = meta.get("generateName").and_then(Value::as_str).unwrap_or("");
    let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    validate_name_and_namespace(name, generate_name, namespace, namespaced, rule, path, errs);
    validate_labels(meta.get("labels"), &format!("{path}.labels"), errs);
    validate_annotations(meta.get("annotations"), &format!("{path}.annotations"), errs);
}

fn validate_name_and_namespace(
    name: &str,
    generate_name: &str,
    namespace: &str,
    namespaced: bool,
    rule: NameRule,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), "name or generateName is required"));
        }
    } else {
        let field = format!("{path}.name");
        let msgs = match rule {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
        };
        push_all(errs, &field, name, msgs);
    }
    if namespaced {
        if !namespace.is_empty() {
            push_all(errs, &format!("{path}.namespace"), namespace, is_dns1123_label(namespace));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(format!("{path}.namespace"), "not allowed on this type"));
    }
}

fn string_map<'a>(v: Option<&'a Value>, path: &str, errs: &mut Vec<FieldError>) -> Vec<(&'a str, &'a str)> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| match v.as_str() {
                Some(s) => Some((k.as_str(), s)),
                None => {
                    errs.push(FieldError::invalid(format!("{path}[{k}]"), v.clone(), "must be a string"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errs.push(FieldError::invalid(path, type_name(other), "must be a map of strings"));
            Vec::new()
        }
    }
}

/// Validate a label map at `path` (keys are qualified names, values label values).
pub fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    for (k, v) in string_map(labels, path, errs) {
        push_all(errs, path, k, is_qualified_name(k));
        push_all(errs, path, v, is_valid_label_value(v));
    }
}

fn validate_annotations(ann: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let mut total = 0;
    for (k, v) in string_map(ann, path, errs) {
        push_all(errs, path, k, is_qualified_name(&k.to_ascii_lowercase()));
        total += k.len() + v.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        errs.push(FieldError::too_long(path, MAX_ANNOTATIONS_BYTES));
    }
}

// ---------------------------------------------------------------------------------------------
// Pods

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

fn array<'a>(v: Option<&'a Value>, path: &str, errs: &mut Vec<FieldError>) -> &'a [Value] {
    match v {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            errs.push(FieldError::invalid(path, type_name(other), "must be a list"));
            &[]
        }
    }
}

fn non_negative(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid(path, n, NON_NEGATIVE_MSG));
        }
    }
}

/// Validate a pod spec at `path` (`spec` for pods, `spec.template.spec` for templates).
/// Templates only allow `restartPolicy: Always`.
pub fn validate_pod_spec(spec: &Value, path: &str, template: bool, errs: &mut Vec<FieldError>) {
    let containers = array(spec.get("containers"), &format!("{path}.containers"), errs);
    if containers.is_empty() && spec.get("containers").is_none_or(|c| c.is_null() || c.is_array()) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let volumes = validate_volumes(spec.get("volumes"), &format!("{path}.volumes"), errs);
    let mut names = BTreeSet::new();
    let host_users = spec.get("hostUsers").and_then(Value::as_bool) != Some(false);
    let grace = spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    for (i, c) in containers.iter().enumerate() {
        validate_container(c, &format!("{path}.containers[{i}]"), &mut names, &volumes, host_users, errs);
        if c.get("restartPolicy").is_some_and(|v| !v.is_null()) {
            let msg = "may not be set for non-init containers";
            errs.push(FieldError::forbidden(format!("{path}.containers[{i}].restartPolicy"), msg));
        }
        if let Some(l) = c.get("lifecycle").filter(|v| !v.is_null()) {
            validate_lifecycle(l, &format!("{path}.containers[{i}].lifecycle"), grace, errs);
        }
    }
    let init = array(spec.get("initContainers"), &format!("{path}.initContainers"), errs);
    for (i, c) in init.iter().enumerate() {
        let cp = format!("{path}.initContainers[{i}]");
        validate_container(c, &cp, &mut names, &volumes, host_users, errs);
        match c.get("restartPolicy") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if p == "Always" => {}
            Some(other) => {
                errs.push(FieldError::not_supported(format!("{cp}.restartPolicy"), other.clone(), &["Always"]))
            }
        }
        if c.get("restartPolicy").and_then(Value::as_str) != Some("Always") {
            for f in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if c.get(f).is_some_and(|v| !v.is_null()) {
                    let msg = "may not be set for init containers without restartPolicy=Always";
                    errs.push(FieldError::forbidden(format!("{cp}.{f}"), msg));
                }
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str) {
        let allowed: &[&str] = if template { &["Always"] } else { RESTART_POLICIES };
        if !allowed.contains(&policy) {
            errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), policy, allowed));
        }
    }
    if let Some(policy) = spec.get("dnsPolicy").and_then(Value::as_str) {
        let allowed = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !allowed.contains(&policy) {
            errs.push(FieldError::not_supported(format!("{path}.dnsPolicy"), policy, &allowed));
        }
    }
    non_negative(spec.get("terminationGracePeriodSeconds"), &format!("{path}.terminationGracePeriodSeconds"), errs);
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        if template {
            // A ReplicaSet's (or Deployment's) pods are meant to run on: Kubernetes refuses it.
            let msg = "activeDeadlineSeconds in ReplicaSet is not Supported";
            errs.push(FieldError::invalid(format!("{path}.activeDeadlineSeconds"), v.clone(), msg));
        } else {
            check_int32_from(Some(v), 1, &format!("{path}.activeDeadlineSeconds"), errs);
        }
    }
    if let Some(node) = spec.get("nodeName").and_then(Value::as_str) {
        if !node.is_empty() {
            push_all(errs, &format!("{path}.nodeName"), node, is_dns1123_subdomain(node));
        }
    }
    validate_labels(spec.get("nodeSelector"), &format!("{path}.nodeSelector"), errs);
    validate_pod_security(spec, path, errs);
}

// ---------------------------------------------------------------------------------------------
// Security contexts (Kubernetes 1.32's `ValidatePodSecurityContext` and `ValidateSecurityContext`)

const PROFILE_TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
/// `SysctlContainSlashFmt`, what Kubernetes 1.32 allows everywhere.
const SYSCTL_NAME_MSG: &str = r"must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// A user or group id: an integer in 0..=2147483647.
fn check_id(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    check_int32_from(v, 0, path, errs);
}

/// An integer in `low..=2147483647` (Kubernetes' `InclusiveRangeError`), when set.
fn check_int32_from(v: Option<&Value>, low: i64, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64().is_some_and(|n| (low..=i64::from(i32::MAX)).contains(&n)) => {}
        Some(v) => {
            let msg = format!("must be between {low} and 2147483647, inclusive");
            errs.push(FieldError::invalid(path, v.clone(), msg));
        }
    }
}

fn is_sysctl_name(name: &str) -> bool {
    let segment = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && is_lower_alnum(b[0])
            && is_lower_alnum(b[b.len() - 1])
            && b.iter().all(|&c| is_lower_alnum(c) || c == b'-' || c == b'_')
    };
    name.len() <= 253 && name.split(['.', '/']).all(segment)
}

/// `seccompProfile` and `appArmorProfile` (`what`: "seccomp" or "AppArmor"): a known type,
/// and a profile name exactly when the type is `Localhost`.
fn validate_profile(p: &Value, path: &str, what: &str, errs: &mut Vec<FieldError>) {
    let localhost = p.get("localhostProfile").filter(|v| !v.is_null());
    let field = format!("{path}.localhostProfile");
    let required = || FieldError::required(&field, format!("must be set when {what} type is Localhost"));
    let seccomp = what == "seccomp";
    match p.get("type").and_then(Value::as_str).unwrap_or("") {
        "Localhost" => match localhost.and_then(Value::as_str) {
            None => errs.push(required()),
            Some(l) if seccomp => {
                if l.starts_with('/') {
                    errs.push(FieldError::invalid(&field, l, "must be a relative path"));
                }
                if l.split('/').any(|part| part == "..") {
                    errs.push(FieldError::invalid(&field, l, "must not contain '..'"));
                }
            }
            Some(l) => {
                if l.trim() != l {
                    errs.push(FieldError::invalid(&field, l, "must not be padded with whitespace"));
                } else if l.is_empty() {
                    errs.push(required());
                }
                if l.len() > 4095 {
                    errs.push(FieldError::too_long(&field, 4095));
                }
            }
        },
        ty => {
            let known = PROFILE_TYPES.contains(&ty);
            if ty.is_empty() {
                let key = if seccomp { "seccompProfile" } else { "appArmorProfile" };
                errs.push(FieldError::required(format!("{path}.type"), format!("type is required when {key} is set")));
            } else if !known {
                errs.push(FieldError::not_supported(format!("{path}.type"), ty, PROFILE_TYPES));
            }
            // (AppArmor names the type's error alone.)
            if let Some(l) = localhost.filter(|_| seccomp || known) {
                let msg = format!("can only be set when {what} type is Localhost");
                errs.push(FieldError::invalid(&field, l.clone(), msg));
            }
        }
    }
}

/// The `seccompProfile` and `appArmorProfile` of a pod's or a container's security context `sc`.
fn validate_profiles(sc: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = sc.get("seccompProfile").filter(|v| !v.is_null()) {
        validate_profile(p, &format!("{path}.seccompProfile"), "seccomp", errs);
    }
    if let Some(p) = sc.get("appArmorProfile").filter(|v| !v.is_null()) {
        validate_profile(p, &format!("{path}.appArmorProfile"), "AppArmor", errs);
    }
}

/// The pod's `securityContext`, and the host namespaces' rules.
fn validate_pod_security(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
                for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let (cp, hp) = (p.get("containerPort"), p.get("hostPort").and_then(Value::as_i64).unwrap_or(0));
                    if let Some(cp) = cp.filter(|cp| cp.as_i64() != Some(hp)) {
                        errs.push(FieldError::invalid(
                            format!("{path}.{list}[{i}].ports[{j}].containerPort"),
                            cp.clone(),
                            "must match `hostPort` when `hostNetwork` is true",
                        ));
                    }
                }
            }
        }
    }
    // (Kubernetes' own pod security context holds these, hence the path.)
    let share = spec.get("shareProcessNamespace").and_then(Value::as_bool) == Some(true);
    if share && spec.get("hostPID").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::invalid(
            format!("{path}.securityContext.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let Some(sc) = spec.get("securityContext").filter(|v| !v.is_null()) else { return };
    let path = format!("{path}.securityContext");
    for f in ["fsGroup", "runAsUser", "runAsGroup"] {
        check_id(sc.get(f), &format!("{path}.{f}"), errs);
    }
    let groups = format!("{path}.supplementalGroups");
    for (i, g) in array(sc.get("supplementalGroups"), &groups, errs).iter().enumerate() {
        check_id(Some(g), &format!("{groups}[{i}]"), errs);
    }
    let sysctls = format!("{path}.sysctls");
    let mut names = BTreeSet::new();
    for (i, s) in array(sc.get("sysctls"), &sysctls, errs).iter().enumerate() {
        let field = format!("{sysctls}[{i}].name");
        match s.get("name").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(field, "")),
            n if !is_sysctl_name(n) => errs.push(FieldError::invalid(field, n, SYSCTL_NAME_MSG)),
            n if !names.insert(n) => errs.push(FieldError::duplicate(field, n)),
            _ => {}
        }
    }
    if let Some(p) = sc.get("fsGroupChangePolicy").and_then(Value::as_str) {
        let allowed = ["Always", "OnRootMismatch"];
        if !allowed.contains(&p) {
            errs.push(FieldError::not_supported(format!("{path}.fsGroupChangePolicy"), p, &allowed));
        }
    }
    validate_profiles(sc, &path, errs);
}

/// A container's `securityContext`; `host_users` is the pod's `hostUsers` (default true).
fn validate_security_context(sc: &Value, path: &str, host_users: bool, errs: &mut Vec<FieldError>) {
    check_id(sc.get("runAsUser"), &format!("{path}.runAsUser"), errs);
    check_id(sc.get("runAsGroup"), &format!("{path}.runAsGroup"), errs);
    if sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if sc.get("privileged").and_then(Value::as_bool) == Some(true) {
            let msg = "cannot set `allowPrivilegeEscalation` to false and `privileged` to true";
            errs.push(FieldError::invalid(path, sc.clone(), msg));
        }
        let add = sc.pointer("/capabilities/add").and_then(Value::as_array);
        if add.into_iter().flatten().any(|c| c.as_str() == Some("CAP_SYS_ADMIN")) {
            let msg = "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN";
            errs.push(FieldError::invalid(path, sc.clone(), msg));
        }
    }
    match sc.get("procMount").and_then(Value::as_str) {
        None | Some("Default") => {}
        Some("Unmasked") if !host_users => {}
        Some("Unmasked") => errs.push(FieldError::invalid(
            format!("{path}.procMount"),
            "Unmasked",
            "`hostUsers` must be false to use `Unmasked`",
        )),
        Some(other) => {
            errs.push(FieldError::not_supported(format!("{path}.procMount"), other, &["Default", "Unmasked"]))
        }
    }
    validate_profiles(sc, path, errs);
}

/// A name unique among `seen` and a DNS-1123 label (containers', volumes').
fn unique_label(v: &Value, path: &str, seen: &mut BTreeSet<String>, errs: &mut Vec<FieldError>) {
    match v.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(format!("{path}.name"), "")),
        Some(name) => {
            let field = format!("{path}.name");
            let msgs = is_dns1123_label(name);
            if msgs.is_empty() && !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(field, name));
            } else {
                push_all(errs, &field, name, msgs);
            }
        }
    }
}

/// `volumes`: each named (unique DNS-1123 labels) with exactly one source. Returns the names.
fn validate_volumes(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, vol) in array(v, path, errs).iter().enumerate() {
        let vp = format!("{path}[{i}]");
        unique_label(vol, &vp, &mut names, errs);
        let sources: Vec<&str> = vol
            .as_object()
            .map(|m| m.iter().filter(|(k, v)| *k != "name" && !v.is_null()).map(|(k, _)| k.as_str()).collect())
            .unwrap_or_default();
        exactly_one(&sources, &vp, "volume type", errs);
    }
    names
}

/// Which of the fields `keys` object `v` sets (not null), in the order given.
fn present<'k>(v: &Value, keys: &[&'k str]) -> Vec<&'k str> {
    keys.iter().copied().filter(|k| v.get(k).is_some_and(|f| !f.is_null())).collect()
}

/// Exactly one of the fields `set` (those present), in Kubernetes' words for `what`.
fn exactly_one(set: &[&str], path: &str, what: &str, errs: &mut Vec<FieldError>) {
    match set {
        [] => errs.push(FieldError::required(path, format!("must specify a {what}"))),
        [_] => {}
        [_, second, ..] => {
            errs.push(FieldError::forbidden(format!("{path}.{second}"), format!("may not specify more than 1 {what}")))
        }
    }
}

/// A probe's handler port: a number in 1-65535 or an IANA service name (a container port's).
fn check_port_num_or_name(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        Value::String(name) => push_all(errs, path, name, is_iana_svc_name(name)),
        other => check_port(other, path, false, errs),
    }
}

/// A probe's or a hook's handler: exactly one of `kinds`, and the port of an `httpGet` or
/// `tcpSocket` one valid.
fn validate_handler(h: &Value, path: &str, kinds: &[&str], errs: &mut Vec<FieldError>) {
    exactly_one(&present(h, kinds), path, "handler type", errs);
    for handler in ["httpGet", "tcpSocket"] {
        let Some(a) = h.get(handler).filter(|v| !v.is_null()) else { continue };
        let field = format!("{path}.{handler}.port");
        match a.get("port").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(field, "")),
            Some(port) => check_port_num_or_name(port, &field, errs),
        }
    }
}

/// A liveness, readiness or startup probe: one handler, its port valid, durations and
/// thresholds not negative, and a success threshold of 1 for liveness and startup probes.
fn validate_probe(p: &Value, path: &str, kind: &str, errs: &mut Vec<FieldError>) {
    for f in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        non_negative(p.get(f), &format!("{path}.{f}"), errs);
    }
    validate_handler(p, path, &["exec", "httpGet", "tcpSocket", "grpc"], errs);
    if kind != "readinessProbe" {
        if let Some(n) = p.get("successThreshold").and_then(Value::as_i64).filter(|n| *n != 1) {
            errs.push(FieldError::invalid(format!("{path}.successThreshold"), n, "must be 1"));
        }
    }
}

/// `postStart` and `preStop`: one handler each, its port valid, a `sleep` within the pod's
/// grace period.
fn validate_lifecycle(l: &Value, path: &str, grace: Option<i64>, errs: &mut Vec<FieldError>) {
    for hook in ["postStart", "preStop"] {
        let Some(h) = l.get(hook).filter(|v| !v.is_null()) else { continue };
        let hp = format!("{path}.{hook}");
        validate_handler(h, &hp, &["exec", "httpGet", "tcpSocket", "sleep"], errs);
        if let (Some(secs), Some(grace)) = (h.pointer("/sleep/seconds").and_then(Value::as_i64), grace) {
            if secs <= 0 || secs > grace {
                let msg = format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace})");
                errs.push(FieldError::invalid(format!("{hp}.sleep"), secs, msg));
            }
        }
    }
}

/// Kubernetes 1.32's environment variable names (`RelaxedEnvironmentVariableValidation`, on
/// by default): any printable ASCII but `=`.
fn check_env_var_name(name: &str, path: &str, errs: &mut Vec<FieldError>) {
    if !name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
        errs.push(FieldError::invalid(path, name, ENV_VAR_NAME_MSG));
    }
}

/// The object fields an environment variable's `fieldRef` may name (besides
/// `metadata.labels['KEY']` and `metadata.annotations['KEY']`), sorted as Kubernetes lists them.
pub const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The container resources a `resourceFieldRef` may name (besides `limits.hugepages-*` and
/// `requests.hugepages-*`).
pub const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// One `env` entry: a name, and at most one of `value` and a `valueFrom` with one source.
fn validate_env_var(e: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match e.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(format!("{path}.name"), "")),
        Some(name) => check_env_var_name(name, &format!("{path}.name"), errs),
    }
    let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) else { return };
    let vf = format!("{path}.valueFrom");
    let sources = present(from, &["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"]);
    let has_value = e.get("value").and_then(Value::as_str).is_some_and(|v| !v.is_empty());
    match sources.len() {
        0 => errs.push(FieldError::invalid(
            &vf,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        )),
        _ if has_value => errs.push(FieldError::invalid(&vf, "", "may not be specified when `value` is not empty")),
        1 => {}
        _ => errs.push(FieldError::invalid(&vf, "", "may not have more than one field specified at a time")),
    }
    for source in sources {
        let sel = &from[source];
        let sp = format!("{vf}.{source}");
        match source {
            "fieldRef" => validate_field_ref(sel, &sp, errs),
            "resourceFieldRef" => validate_resource_field_ref(sel, &sp, errs),
            _ => validate_key_selector(sel, &sp, errs),
        }
    }
}

/// A downward-API `fieldRef` of an environment variable.
fn validate_field_ref(sel: &Value, path: &str, errs: &mut Vec<FieldError>) {
    // `apiVersion` defaults to `v1`, the only version pods have.
    if let Some(v) = sel.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty() && *v != "v1") {
        errs.push(FieldError::invalid(
            format!("{path}.fieldPath"),
            sel.get("fieldPath").cloned().unwrap_or(Value::Null),
            format!("error converting fieldPath: unsupported pod version: {v}"),
        ));
        return;
    }
    let Some(fp) = sel.get("fieldPath").and_then(Value::as_str).filter(|p| !p.is_empty()) else {
        errs.push(FieldError::required(format!("{path}.fieldPath"), ""));
        return;
    };
    let subscripted = fp.strip_suffix("']").and_then(|p| p.split_once("['"));
    match subscripted {
        Some(("metadata.labels", key)) => push_all(errs, path, key, is_qualified_name(key)),
        Some(("metadata.annotations", key)) => push_all(errs, path, key, is_qualified_name(&key.to_lowercase())),
        Some((other, _)) => errs.push(FieldError::not_supported(path, other, ENV_FIELD_PATHS)),
        None if ENV_FIELD_PATHS.contains(&fp) => {}
        None => errs.push(FieldError::not_supported(format!("{path}.fieldPath"), fp, ENV_FIELD_PATHS)),
    }
}

/// A `resourceFieldRef`: a supported resource and, for cpu, memory and ephemeral storage, a
/// divisor Kubernetes allows.
fn validate_resource_field_ref(sel: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(resource) = sel.get("resource").and_then(Value::as_str).filter(|r| !r.is_empty()) else {
        errs.push(FieldError::required(format!("{path}.resource"), ""));
        return;
    };
    let hugepages = resource.starts_with("limits.hugepages-") || resource.starts_with("requests.hugepages-");
    if !RESOURCE_FIELD_PATHS.contains(&resource) && !hugepages {
        errs.push(FieldError::not_supported(format!("{path}.resource"), resource, RESOURCE_FIELD_PATHS));
    }
    let divisor = match sel.get("divisor") {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) => s.parse::<Quantity>(),
        Some(other) => other.to_string().parse::<Quantity>(),
    };
    let divisor = match divisor {
        Ok(d) => d,
        Err(e) => {
            errs.push(FieldError::invalid(format!("{path}.divisor"), sel["divisor"].clone(), e.to_string()));
            return;
        }
    };
    // A zero divisor is an unset one (it defaults to 1).
    if divisor.nanos() == 0 {
        return;
    }
    let units = |n: i128| divisor.nanos() == n * 1_000_000_000;
    let memory_like = || (0..=6).any(|e| units(1000_i128.pow(e))) || (1..=6).any(|e| units(1024_i128.pow(e)));
    let (ok, what) = match resource {
        "limits.cpu" | "requests.cpu" => (units(1) || divisor.nanos() == 1_000_000, None),
        "limits.memory" | "requests.memory" => (memory_like(), Some("memory")),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => (memory_like(), Some("local ephemeral storage")),
        _ => (true, None),
    };
    if !ok {
        let detail = match what {
            None => "only divisor's values 1m and 1 are supported with the cpu resource".to_string(),
            Some(what) => format!(
                "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the {what} resource"
            ),
        };
        errs.push(FieldError::invalid(format!("{path}.divisor"), resource, detail));
    }
}

/// A `configMapKeyRef` or `secretKeyRef`: the object's name and a valid key.
fn validate_key_selector(sel: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let name = sel.get("name").and_then(Value::as_str).unwrap_or("");
    push_all(errs, &format!("{path}.name"), name, is_dns1123_subdomain(name));
    match sel.get("key").and_then(Value::as_str).filter(|k| !k.is_empty()) {
        None => errs.push(FieldError::required(format!("{path}.key"), "")),
        Some(key) => push_all(errs, &format!("{path}.key"), key, is_config_map_key(key)),
    }
}

/// A key of a ConfigMap or Secret: up to 253 alphanumerics, `-`, `_` or `.`, and no `..`
/// prefix (it becomes a file name in volumes).
pub fn is_config_map_key(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.bytes().all(|c| is_alnum(c) || matches!(c, b'-' | b'_' | b'.')) {
        out.push(CONFIG_KEY_MSG.to_string());
    }
    match s {
        "." => out.push("must not be '.'".to_string()),
        ".." => out.push("must not be '..'".to_string()),
        _ if s.starts_with("..") => out.push("must not start with '..'".to_string()),
        _ => {}
    }
    out
}

/// One `envFrom` entry: exactly one of `configMapRef` and `secretRef`, and a valid `prefix`.
/// Kubernetes reports the count against the whole `envFrom` list (`list_path`).
fn validate_env_from(e: &Value, list_path: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(prefix) = e.get("prefix").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        check_env_var_name(prefix, &format!("{path}.prefix"), errs);
    }
    let sources = present(e, &["configMapRef", "secretRef"]);
    match sources.len() {
        0 => errs.push(FieldError::invalid(list_path, "", "must specify one of: `configMapRef` or `secretRef`")),
        1 => {}
        _ => errs.push(FieldError::invalid(list_path, "", "may not have more than one field specified at a time")),
    }
    for source in sources {
        let name = e[source].get("name").and_then(Value::as_str).unwrap_or("");
        let field = format!("{path}.{source}.name");
        push_all(errs, &field, name, is_dns1123_subdomain(name));
    }
}

fn validate_container(
    c: &Value,
    path: &str,
    names: &mut BTreeSet<String>,
    volumes: &BTreeSet<String>,
    host_users: bool,
    errs: &mut Vec<FieldError>,
) {
    unique_label(c, path, names, errs);
    if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str) {
        let allowed = ["Always", "IfNotPresent", "Never"];
        if !allowed.contains(&p) {
            errs.push(FieldError::not_supported(format!("{path}.imagePullPolicy"), p, &allowed));
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in array(c.get("ports"), &format!("{path}.ports"), errs).iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if let Some(name) = p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            let msgs = is_iana_svc_name(name);
            if msgs.is_empty() && !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), name));
            }
            push_all(errs, &format!("{pp}.name"), name, msgs);
        }
        match p.get("containerPort") {
            None | Some(Value::Null) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(v) => check_port(v, &format!("{pp}.containerPort"), false, errs),
        }
        if let Some(v) = p.get("hostPort") {
            check_port(v, &format!("{pp}.hostPort"), true, errs);
        }
        check_protocol(p.get("protocol"), &format!("{pp}.protocol"), errs);
    }
    for (i, e) in array(c.get("env"), &format!("{path}.env"), errs).iter().enumerate() {
        validate_env_var(e, &format!("{path}.env[{i}]"), errs);
    }
    let env_from_path = format!("{path}.envFrom");
    for (i, e) in array(c.get("envFrom"), &env_from_path, errs).iter().enumerate() {
        validate_env_from(e, &env_from_path, &format!("{env_from_path}[{i}]"), errs);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in array(c.get("volumeMounts"), &format!("{path}.volumeMounts"), errs).iter().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        match m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(format!("{mp}.name"), "")),
            Some(name) if !volumes.contains(name) => errs.push(FieldError::not_found(format!("{mp}.name"), name)),
            Some(_) => {}
        }
        match m.get("mountPath").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            None => errs.push(FieldError::required(format!("{mp}.mountPath"), "")),
            Some(p) if !mount_paths.insert(p) => {
                errs.push(FieldError::invalid(format!("{mp}.mountPath"), p, "must be unique"))
            }
            Some(_) => {}
        }
    }
    if let Some(res) = c.get("resources") {
        validate_resources(res, &format!("{path}.resources"), errs);
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe).filter(|p| !p.is_null()) {
            validate_probe(p, &format!("{path}.{probe}"), probe, errs);
        }
    }
    if let Some(sc) = c.get("securityContext").filter(|v| !v.is_null()) {
        validate_security_context(sc, &format!("{path}.securityContext"), host_users, errs);
    }
}

fn check_port(v: &Value, path: &str, zero_ok: bool, errs: &mut Vec<FieldError>) {
    match v.as_i64() {
        Some(0) if zero_ok => {}
        Some(0) => errs.push(FieldError::required(path, "")),
        Some(n) if (1..=65535).contains(&n) => {}
        _ => errs.push(FieldError::invalid(path, v.clone(), PORT_RANGE_MSG)),
    }
}

fn check_protocol(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if PROTOCOLS.contains(&s.as_str()) => {}
        Some(other) => errs.push(FieldError::not_supported(path, other.clone(), PROTOCOLS)),
    }
}

fn quantities(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) -> BTreeMap<String, (String, Quantity)> {
    let mut out = BTreeMap::new();
    for (k, s) in string_map(v, path, errs) {
        let field = format!("{path}[{k}]");
        match s.parse::<Quantity>() {
            Ok(q) if q.is_negative() => errs.push(FieldError::invalid(field, s, NON_NEGATIVE_MSG)),
            Ok(q) => {
                out.insert(k.to_string(), (s.to_string(), q));
            }
            Err(e) => errs.push(FieldError::invalid(field, s, e.to_string())),
        }
    }
    out
}

fn validate_resources(res: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let limits = quantities(res.get("limits"), &format!("{path}.limits"), errs);
    let requests = quantities(res.get("requests"), &format!("{path}.requests"), errs);
    for (name, (text, req)) in &requests {
        if let Some((limit_text, limit)) = limits.get(name) {
            if req > limit {
                errs.push(FieldError::invalid(
                    format!("{path}.requests[{name}]"),
                    text.as_str(),
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deployments and ReplicaSets

fn validate_workload_spec(kind: &str, spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required("spec.selector", ""));
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    non_negative(spec.get("replicas"), "spec.replicas", errs);
    non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds", errs);
    non_negative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", errs);
    if let Some(v) = spec.get("replicas").filter(|v| !v.is_null() && !v.is_i64()) {
        errs.push(FieldError::invalid("spec.replicas", v.clone(), "must be an integer"));
    }
    let selector = match spec.get("selector").filter(|s| !s.is_null()) {
        None => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
        Some(sel) => match crate::labels::LabelSelector::from_json(sel) {
            Ok(s) if s.is_empty() => {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel.clone(),
                    format!("empty selector is invalid for {}", kind.to_ascii_lowercase()),
                ));
                None
            }
            Ok(s) => {
                validate_labels(sel.get("matchLabels"), "spec.selector.matchLabels", errs);
                Some(s)
            }
            Err(e) => {
                errs.push(FieldError::invalid("spec.selector", sel.clone(), e.to_string()));
                None
            }
        },
    };
    match spec.get("template").filter(|t| !t.is_null()) {
        None => errs.push(FieldError::required("spec.template", "")),
        Some(t) => {
            let labels_v = t.pointer("/metadata/labels");
            validate_labels(labels_v, "spec.template.metadata.labels", errs);
            let labels: BTreeMap<String, String> = labels_v
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            if let Some(sel) = &selector {
                if !sel.matches(&labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        serde_json::to_value(&labels).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            match t.get("spec") {
                Some(ps) => validate_pod_spec(ps, "spec.template.spec", true, errs),
                None => errs.push(FieldError::required("spec.template.spec.containers", "")),
            }
        }
    }
    if kind == "Deployment" {
        if let Some(t) = spec.pointer("/strategy/type").and_then(Value::as_str) {
            let allowed = ["Recreate", "RollingUpdate"];
            if !allowed.contains(&t) {
                errs.push(FieldError::not_supported("spec.strategy.type", t, &allowed));
            } else if t == "Recreate" && spec.pointer("/strategy/rollingUpdate").is_some_and(|r| !r.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        let rolling = spec.pointer("/strategy/type").and_then(Value::as_str).is_none_or(|t| t == "RollingUpdate");
        if let Some(ru) = spec.pointer("/strategy/rollingUpdate").filter(|r| rolling && !r.is_null()) {
            validate_rolling_update(ru, errs);
        }
        non_negative(spec.get("progressDeadlineSeconds"), "spec.progressDeadlineSeconds", errs);
        if let Some(deadline) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
            let min_ready = spec.get("minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
            if deadline <= min_ready {
                errs.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    deadline,
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }
}

/// Kubernetes' message for an `intstr` that is neither an integer nor a string.
const INT_OR_PERCENT_MSG: &str = "must be an integer or percentage (e.g '5%')";

/// Kubernetes' message for a string `intstr` that is not a percentage (`IsValidPercent`).
const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// An `intstr` that must be a non-negative integer or a percentage such as `25%` (Kubernetes'
/// `ValidatePositiveIntOrPercent`): its number, and whether it is a percentage, when valid.
fn int_or_percent(v: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) -> Option<(i64, bool)> {
    match v? {
        Value::Null => None,
        Value::Number(n) => match n.as_i64() {
            Some(i) if i >= 0 => Some((i, false)),
            Some(i) => {
                errs.push(FieldError::invalid(path, i, NON_NEGATIVE_MSG));
                None
            }
            None => {
                errs.push(FieldError::invalid(path, Value::Number(n.clone()), INT_OR_PERCENT_MSG));
                None
            }
        },
        Value::String(s) => {
            let digits = s.strip_suffix('%').filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.map(str::parse::<i64>) {
                Some(Ok(p)) => Some((p, true)),
                _ => {
                    errs.push(FieldError::invalid(path, s.as_str(), PERCENT_MSG));
                    None
                }
            }
        }
        other => {
            errs.push(FieldError::invalid(path, other.clone(), INT_OR_PERCENT_MSG));
            None
        }
    }
}

/// `spec.strategy.rollingUpdate` of a Deployment (Kubernetes' `ValidateRollingUpdateDeployment`):
/// each of maxUnavailable and maxSurge a non-negative integer or a percentage, not both 0 (a
/// rollout could then never move), maxUnavailable at most 100%.
fn validate_rolling_update(ru: &Value, errs: &mut Vec<FieldError>) {
    const UNAVAILABLE: &str = "spec.strategy.rollingUpdate.maxUnavailable";
    let unavailable = int_or_percent(ru.get("maxUnavailable"), UNAVAILABLE, errs);
    let surge = int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge", errs);
    let value = || ru.get("maxUnavailable").cloned().unwrap_or(Value::Null);
    if matches!(unavailable, Some((0, _))) && matches!(surge, Some((0, _))) {
        errs.push(FieldError::invalid(UNAVAILABLE, value(), "may not be 0 when `maxSurge` is 0"));
    }
    if matches!(unavailable, Some((p, true)) if p > 100) {
        errs.push(FieldError::invalid(UNAVAILABLE, value(), "must not be greater than 100%"));
    }
}

// ---------------------------------------------------------------------------------------------
// Services and Endpoints

const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

fn validate_service_spec(spec: Option<&Value>, opts: &ValidationOptions, errs: &mut Vec<FieldError>) {
    let null = Value::Null;
    let spec = spec.unwrap_or(&null);
    let svc_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&svc_type) {
        errs.push(FieldError::not_supported("spec.type", svc_type, SERVICE_TYPES));
    }
    if let Some(a) = spec.get("sessionAffinity").and_then(Value::as_str) {
        let allowed = ["ClientIP", "None"];
        if !allowed.contains(&a) {
            errs.push(FieldError::not_supported("spec.sessionAffinity", a, &allowed));
        }
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = array(spec.get("ports"), "spec.ports", errs);
    if ports.is_empty() && svc_type != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let node_ports_allowed = matches!(svc_type, "NodePort" | "LoadBalancer");
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        match p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errs.push(FieldError::required(format!("{pp}.name"), "")),
            None => {}
            Some(name) => {
                let msgs = is_dns1123_label(name);
                if msgs.is_empty() && !names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{pp}.name"), name));
                }
                push_all(errs, &format!("{pp}.name"), name, msgs);
            }
        }
        match p.get("port") {
            None | Some(Value::Null) => errs.push(FieldError::required(format!("{pp}.port"), "")),
            Some(v) => check_port(v, &format!("{pp}.port"), false, errs),
        }
        check_protocol(p.get("protocol"), &format!("{pp}.protocol"), errs);
        let key = (p.get("port").and_then(Value::as_i64), p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"));
        if key.0.is_some() && !seen.insert(key) {
            errs.push(FieldError::duplicate(pp.clone(), serde_json::json!({"port": key.0, "protocol": key.1})));
        }
        match p.get("targetPort") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => push_all(errs, &format!("{pp}.targetPort"), s, is_iana_svc_name(s)),
            Some(v) => check_port(v, &format!("{pp}.targetPort"), false, errs),
        }
        if let Some(np) = p.get("nodePort").filter(|v| !v.is_null() && v.as_i64() != Some(0)) {
            let field = format!("{pp}.nodePort");
            if !node_ports_allowed {
                errs.push(FieldError::forbidden(field, format!("may not be used when `type` is '{svc_type}'")));
            } else if !np.as_i64().is_some_and(|n| opts.node_port_range.contains(&n)) {
                errs.push(FieldError::invalid(
                    field,
                    np.clone(),
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        opts.node_port_range.start(),
                        opts.node_port_range.end()
                    ),
                ));
            }
        }
    }
    validate_labels(spec.get("selector"), "spec.selector", errs);
}

/// `discovery.k8s.io/v1` EndpointSlice: Kubernetes' limits (1,000 endpoints of 1–100 addresses,
/// 100 ports) and address types.
fn validate_endpoint_slice(obj: &Value, errs: &mut Vec<FieldError>) {
    const TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
    let address_type = obj.get("addressType").and_then(Value::as_str);
    match address_type {
        None => errs.push(FieldError::required("addressType", "")),
        Some(t) if !TYPES.contains(&t) => errs.push(FieldError::not_supported("addressType", t, TYPES)),
        Some(_) => {}
    }
    let endpoints = array(obj.get("endpoints"), "endpoints", errs);
    if endpoints.len() > 1000 {
        errs.push(FieldError::invalid("endpoints", endpoints.len(), "must have at most 1000 items"));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let path = format!("endpoints[{i}].addresses");
        let addresses = array(ep.get("addresses"), &path, errs);
        if addresses.is_empty() {
            errs.push(FieldError::required(&path, "must contain at least 1 address"));
        } else if addresses.len() > 100 {
            errs.push(FieldError::invalid(&path, addresses.len(), "must have at most 100 items"));
        }
        for (j, a) in addresses.iter().enumerate() {
            let ok = match (address_type, a.as_str()) {
                (Some("IPv4"), Some(s)) => s.parse::<std::net::Ipv4Addr>().is_ok(),
                (Some("IPv6"), Some(s)) => s.parse::<std::net::Ipv6Addr>().is_ok(),
                (_, Some(s)) => !s.is_empty(),
                (_, None) => false,
            };
            if !ok {
                let detail = match address_type {
                    Some("IPv4") => "must be a valid IPv4 address",
                    Some("IPv6") => "must be a valid IPv6 address",
                    _ => "must be a non-empty string",
                };
                errs.push(FieldError::invalid(format!("{path}[{j}]"), a.clone(), detail));
            }
        }
    }
    let ports = array(obj.get("ports"), "ports", errs);
    if ports.len() > 100 {
        errs.push(FieldError::invalid("ports", ports.len(), "must have at most 100 items"));
    }
    for (i, p) in ports.iter().enumerate() {
        if let Some(v) = p.get("port").filter(|v| !v.is_null()) {
            check_port(v, &format!("ports[{i}].port"), false, errs);
        }
        check_protocol(p.get("protocol"), &format!("ports[{i}].protocol"), errs);
    }
}

fn validate_endpoints(obj: &Value, errs: &mut Vec<FieldError>) {
    for (i, subset) in array(obj.get("subsets"), "subsets", errs).iter().enumerate() {
        for (j, p) in array(subset.get("ports"), &format!("subsets[{i}].ports"), errs).iter().enumerate() {
            let pp = format!("subsets[{i}].ports[{j}]");
            match p.get("port") {
                None | Some(Value::Null) => errs.push(FieldError::required(format!("{pp}.port"), "")),
                Some(v) => check_port(v, &format!("{pp}.port"), false, errs),
            }
            check_protocol(p.get("protocol"), &format!("{pp}.protocol"), errs);
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in array(subset.get(key), &format!("subsets[{i}].{key}"), errs).iter().enumerate() {
                if a.get("ip").and_then(Value::as_str).is_none_or(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
                    let v = a.get("ip").cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        format!("subsets[{i}].{key}[{j}].ip"),
                        v,
                        "must be a valid IP address",
                    ));
                }
            }
        }
    }
}
