//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong on the node side of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The image is not present locally and images are never pulled.
    #[error("image {image:?} is not present on this node and images are never pulled")]
    ImageNotPresent { image: String },
    /// The runtime has no container (or sandbox) with this id.
    #[error("container {id} not found")]
    NotFound { id: String },
    /// No pod or container matches a lookup (logs, exec).
    #[error("{what} not found")]
    NoSuchObject { what: String },
    /// The spec cannot be run by this runtime (e.g. no command for the process runtime).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The container's settings cannot be honoured here (kubelet's
    /// `CreateContainerConfigError`): e.g. `runAsNonRoot` with an image that runs as root.
    #[error("{0}")]
    ContainerConfig(String),
    /// A runtime call did not finish before its deadline.
    #[error("{op} timed out after {after:?}")]
    Timeout { op: String, after: Duration },
    /// The Docker Engine API returned an error.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A local I/O error (process runtime, volumes, logs).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The agent's pod network could not reserve an address or plug a sandbox in.
    #[error("pod network: {0}")]
    Network(String),
    /// The pod manager has shut down.
    #[error("pod manager is shut down")]
    Shutdown,
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io { context: context.into(), source }
    }

    /// True when the error says the object does not exist (already removed, never created).
    pub fn is_not_found(&self) -> bool {
        match self {
            AgentError::NotFound { .. } | AgentError::NoSuchObject { .. } => true,
            AgentError::Docker(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
                *status_code == 404
            }
            _ => false,
        }
    }
}

/// Run `fut` with a deadline, mapping expiry to [`AgentError::Timeout`].
pub(crate) async fn with_deadline<T>(
    op: &str,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(AgentError::Timeout { op: op.to_string(), after }),
    }
}
