//! Pod logs: the API server asks the node agent that runs the pod (`pods/<name>/log`).

use axum::body::Body;
use serde_json::Value;

use crate::error::ApiResult;

/// Query parameters of `GET .../pods/<name>/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub previous: bool,
    pub timestamps: bool,
}

/// Where logs come from: the composition root plugs in a client of the node agents.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync {
    /// The log of a container of `pod` (the pod object as stored), as a streaming body.
    async fn logs(&self, pod: &Value, opts: LogOptions) -> ApiResult<Body>;
}

/// How long connecting to a node agent may take.
const AGENT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a node agent may take to start answering a log request.
const AGENT_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The [`LogSource`] of a replica: finds the pod's node (`spec.nodeName` → the Node's
/// `InternalIP` and `daemonEndpoints.kubeletEndpoint.Port`) and streams the agent's
/// `GET /containerLogs/{ns}/{pod}/{container}` body.
pub struct AgentLogs {
    store: std::sync::Arc<crate::ObjectStore>,
    http: reqwest::Client,
}

impl AgentLogs {
    pub fn new(store: std::sync::Arc<crate::ObjectStore>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(AGENT_CONNECT_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds");
        AgentLogs { store, http }
    }
}

fn unavailable(msg: String) -> crate::ApiError {
    crate::ApiError::from(skiff_api::status::service_unavailable(msg))
}

#[async_trait::async_trait]
impl LogSource for AgentLogs {
    async fn logs(&self, pod: &Value, opts: LogOptions) -> ApiResult<Body> {
        let name = crate::meta::name_of(pod).to_string();
        let ns = crate::meta::meta_str(pod, "namespace").unwrap_or("default").to_string();
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        let container = match opts.container.clone() {
            Some(c) => {
                let init = pod
                    .pointer("/spec/initContainers")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|x| x.get("name").and_then(Value::as_str) == Some(&c)));
                if !containers.contains(&c) && !init {
                    return Err(crate::ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
                }
                c
            }
            None if containers.len() == 1 => containers[0].clone(),
            None => {
                return Err(crate::ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                )))
            }
        };
        let Some(node_name) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Err(crate::ApiError::bad_request(format!("pod {name} does not have a host assigned")));
        };
        let nodes = skiff_api::lookup("nodes").expect("nodes are served");
        let node = match self.store.get(nodes, None, node_name, false).await {
            Ok(n) => n,
            Err(e) if e.code() == 404 => {
                return Err(unavailable(format!(
                    "pod {name} is bound to node {node_name}, which is not registered (no agent has connected)"
                )))
            }
            Err(e) => return Err(e),
        };
        let ip = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                    .and_then(|x| x.get("address").and_then(Value::as_str))
            })
            .map(str::to_string);
        let port =
            node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_i64).filter(|p| *p > 0);
        let (Some(ip), Some(port)) = (ip, port) else {
            return Err(unavailable(format!(
                "node {node_name} reports no InternalIP and agent port to fetch logs from"
            )));
        };
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
        let mut url = reqwest::Url::parse(&format!("http://{host}:{port}/"))
            .map_err(|e| crate::ApiError::internal(format!("agent address of node {node_name}: {e}")))?;
        url.path_segments_mut().expect("http URLs have paths").extend(["containerLogs", &ns, &name, &container]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("follow", if opts.follow { "true" } else { "false" });
            q.append_pair("previous", if opts.previous { "true" } else { "false" });
            if let Some(t) = opts.tail_lines {
                q.append_pair("tailLines", &t.to_string());
            }
        }
        let resp = tokio::time::timeout(AGENT_RESPONSE_TIMEOUT, self.http.get(url.clone()).send())
            .await
            .map_err(|_| unavailable(format!("the agent of node {node_name} at {url} did not answer in time")))?
            .map_err(|e| unavailable(format!("cannot reach the agent of node {node_name}: {e}")))?;
        let code = resp.status();
        if !code.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let text = text.trim();
            let st = if code.as_u16() == 404 {
                skiff_api::Status::failure(skiff_api::StatusReason::NotFound, text.to_string(), None)
            } else if code.as_u16() == 400 {
                skiff_api::status::bad_request(text.to_string())
            } else {
                skiff_api::status::internal_error(format!("the agent of node {node_name} answered {code}: {text}"))
            };
            return Err(crate::ApiError::from(st));
        }
        Ok(Body::from_stream(resp.bytes_stream()))
    }
}
