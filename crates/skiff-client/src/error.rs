//! Client errors: the server's `Status` (reason, code, message) as data, transport and usage failures.

use serde::Deserialize;

/// A failure answered by the API server, decoded from its `Status` body (or synthesised from the
/// HTTP code when the body was not a `Status`, as kubectl does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// HTTP status code (`Status.code` when present).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...); may be empty.
    pub reason: String,
    /// `Status.message`, e.g. `pods "web" not found`.
    pub message: String,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl ServerError {
    /// Decode an error response: a `Status` object when the body is one, otherwise the reason
    /// kubectl would infer from the HTTP code.
    pub fn from_response(http_code: u16, body: &[u8]) -> Self {
        if let Ok(s) = serde_json::from_slice::<StatusBody>(body) {
            if s.kind == "Status" && (!s.message.is_empty() || !s.reason.is_empty()) {
                return ServerError { code: s.code.unwrap_or(http_code), reason: s.reason, message: s.message };
            }
        }
        let (reason, default_message) = match http_code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => ("Unauthorized", "the server has asked for the client to provide credentials"),
            403 => ("Forbidden", "the server does not allow access to the requested resource"),
            404 => ("NotFound", "the server could not find the requested resource"),
            405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
            409 => ("Conflict", "the server reported a conflict"),
            410 => ("Gone", "the server reported the resource is gone"),
            413 => ("RequestEntityTooLarge", "the request entity is too large"),
            415 => ("UnsupportedMediaType", "the server does not support the content type of the request"),
            422 => ("Invalid", "the server rejected our request due to an error in our request"),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            500 => ("InternalError", ""),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted"),
            _ => ("", "an error on the server has prevented the request from succeeding"),
        };
        let text = String::from_utf8_lossy(body).trim().chars().take(512).collect::<String>();
        let message = if http_code == 500 {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        } else {
            default_message.to_string()
        };
        ServerError { code: http_code, reason: reason.to_string(), message }
    }

    /// The same failure as `skiff_api`'s typed `Status`, when its reason is one Skiff defines.
    pub fn to_status(&self) -> Option<skiff_api::Status> {
        let reason: skiff_api::StatusReason =
            serde_json::from_value(serde_json::Value::String(self.reason.clone())).ok()?;
        let mut s = skiff_api::Status::failure(reason, self.message.clone(), None);
        s.code = self.code;
        Some(s)
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "Error from server: {}", self.message)
        } else {
            write!(f, "Error from server ({}): {}", self.reason, self.message)
        }
    }
}

/// Everything a client call or a user command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a failure `Status`: `Error from server (NotFound): pods "x" not found`.
    #[error("{0}")]
    Server(ServerError),
    /// The server could not be reached at all.
    #[error("The connection to the server {host} was refused - did you specify the right host or port?")]
    ConnectionRefused { host: String },
    /// Any other transport failure (reset, protocol error, ...).
    #[error("error talking to {url}: {message}")]
    Transport { url: String, message: String },
    /// A request deadline passed.
    #[error("error: the request to {url} timed out after {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u64 },
    /// The response body was not what the API promises.
    #[error("error: cannot decode the response of {url}: {message}")]
    Decode { url: String, message: String },
    /// kubeconfig / server selection problems.
    #[error("error: {0}")]
    Config(String),
    /// A manifest could not be read or parsed.
    #[error("error: {0}")]
    Manifest(String),
    /// Bad command-line usage (unknown resource type, missing name, ...).
    #[error("error: {0}")]
    Usage(String),
    /// Writing output failed.
    #[error("error: {0}")]
    Io(#[from] std::io::Error),
    /// Several independent failures (one per object), printed one per line like kubectl.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Multiple(Vec<Error>),
}

impl Error {
    /// The server's failure, if this is one.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(s) => Some(s),
            _ => None,
        }
    }

    /// True for a 404 `NotFound` from the server.
    pub fn is_not_found(&self) -> bool {
        self.server().is_some_and(|s| s.code == 404)
    }

    /// True for 410 `Gone` / `Expired` (a watch must relist).
    pub fn is_gone(&self) -> bool {
        self.server().is_some_and(|s| s.code == 410)
    }

    /// Collapse a list of failures: none → `Ok`, one → itself, more → [`Error::Multiple`].
    pub fn from_many(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().expect("one error")),
            _ => Err(Error::Multiple(errors)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_formats_like_kubectl() {
        let body =
            serde_json::to_vec(&skiff_api::status::not_found(&skiff_api::registry::PODS, "x").to_json()).unwrap();
        let e = Error::Server(ServerError::from_response(404, &body));
        assert_eq!(e.to_string(), r#"Error from server (NotFound): pods "x" not found"#);
        assert!(e.is_not_found());
        let s = e.server().unwrap().to_status().unwrap();
        assert_eq!((s.code, s.reason), (404, skiff_api::StatusReason::NotFound));
    }

    #[test]
    fn unknown_reasons_are_kept_as_text() {
        let body = br#"{"kind":"Status","status":"Failure","reason":"SomethingNew","message":"no","code":403}"#;
        let e = ServerError::from_response(403, body);
        assert_eq!(e.to_string(), "Error from server (SomethingNew): no");
        assert!(e.to_status().is_none());
        let body = br#"{"kind":"Status","status":"Failure","message":"odd","code":500}"#;
        assert_eq!(ServerError::from_response(500, body).to_string(), "Error from server: odd");
    }

    #[test]
    fn non_status_bodies_use_the_http_code() {
        let e = ServerError::from_response(404, b"404 page not found");
        assert_eq!(e.to_string(), "Error from server (NotFound): the server could not find the requested resource");
        let e = ServerError::from_response(500, b"boom");
        assert_eq!(
            e.to_string(),
            r#"Error from server (InternalError): an error on the server ("boom") has prevented the request from succeeding"#
        );
    }

    #[test]
    fn multiple_errors_print_one_per_line() {
        let nf = |n: &str| {
            Error::Server(ServerError {
                code: 404,
                reason: "NotFound".into(),
                message: format!("pods \"{n}\" not found"),
            })
        };
        assert!(Error::from_many(vec![]).is_ok());
        let e = Error::from_many(vec![nf("a"), nf("b")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"a\" not found\nError from server (NotFound): pods \"b\" not found"
        );
        let e = Error::ConnectionRefused { host: "127.0.0.1:6443".into() };
        assert_eq!(
            e.to_string(),
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
        );
    }
}
