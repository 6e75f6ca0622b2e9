//! A client over a list of control-plane endpoints: it sends each call to the endpoint
//! that last answered and moves on to the next when one is down or not able to serve,
//! until the call's deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::pb::cluster_client::ClusterClient;
use crate::pb::error_detail::Kind;
use crate::pb::kv_client::KvClient;
use crate::pb::*;

/// Largest message the client sends or accepts (values are at most 1.5 MiB; ranges are paged).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message}")]
    Server { code: Code, kind: Kind, message: String, revision: u64 },
    /// No endpoint could serve the call before its deadline.
    #[error("no endpoint could serve the request within {timeout:?}: {last}")]
    Unavailable { timeout: Duration, last: String },
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
}

impl ClientError {
    pub fn kind(&self) -> Kind {
        match self {
            ClientError::Server { kind, .. } => *kind,
            _ => Kind::Other,
        }
    }
}

fn from_status(s: Status) -> ClientError {
    let d = ErrorDetail::from_status(&s);
    ClientError::Server { code: s.code(), kind: d.kind(), message: s.message().to_string(), revision: d.revision }
}

/// Whether another endpoint (or a later try) may succeed where this one failed.
fn retryable(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted => true,
        _ => matches!(ErrorDetail::from_status(s).kind(), Kind::NotLeader | Kind::NoLeader | Kind::Overloaded),
    }
}

/// Connects to `addr` (host:port) lazily.
pub fn channel(addr: &str) -> Result<Channel, ClientError> {
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| ClientError::BadEndpoint(addr.to_string(), e.to_string()))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

pub struct Client {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    timeout: Duration,
}

impl Client {
    /// `endpoints` are host:port gRPC addresses of control-plane replicas.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint(String::new(), "no endpoints given".into()));
        }
        let channels = endpoints.iter().map(|e| channel(e)).collect::<Result<Vec<_>, _>>()?;
        Ok(Client { endpoints: endpoints.to_vec(), channels, current: AtomicUsize::new(0), timeout })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channels[i].clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn cluster(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channels[i].clone())
    }

    /// Runs `f` against endpoints in turn until one answers or the deadline passes.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let n = self.channels.len();
        let mut backoff = Duration::from_millis(10);
        let mut tries = 0usize;
        loop {
            let i = self.current.load(Ordering::Relaxed) % n;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let res = tokio::time::timeout(remaining, f(i)).await;
            let status = match res {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if !retryable(&s) => return Err(from_status(s)),
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("deadline passed"),
            };
            tries += 1;
            // Follow a leader hint when the server gave one that we know.
            let d = ErrorDetail::from_status(&status);
            let hinted =
                (!d.leader_addr.is_empty()).then(|| self.endpoints.iter().position(|e| *e == d.leader_addr)).flatten();
            match hinted {
                Some(h) if h != i => self.current.store(h, Ordering::Relaxed),
                _ => {
                    let _ = self.current.compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(ClientError::Unavailable {
                    timeout: self.timeout,
                    last: format!("{} ({:?}) after {tries} tries", status.message(), status.code()),
                });
            }
            if tries.is_multiple_of(n) {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, prev_revision: Option<u64>) -> Result<PutResponse, ClientError> {
        self.call(|i| {
            let req = PutRequest { key: key.to_string(), value: value.clone(), prev_revision };
            async move { self.kv(i).put(req).await }
        })
        .await
    }

    /// Reads one key; `None` when it does not exist.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<(Option<KeyValue>, u64), ClientError> {
        let r = self.range(RangeRequest { key: key.to_string(), serializable, ..Default::default() }).await?;
        Ok((r.kvs.into_iter().next(), r.revision))
    }

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ClientError> {
        self.call(|i| {
            let req = req.clone();
            async move { self.kv(i).range(req).await }
        })
        .await
    }

    pub async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ClientError> {
        self.call(|i| {
            let req = req.clone();
            async move { self.kv(i).delete(req).await }
        })
        .await
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ClientError> {
        self.call(|i| {
            let req = req.clone();
            async move { self.kv(i).txn(req).await }
        })
        .await
    }

    pub async fn compact(&self, revision: u64) -> Result<CompactResponse, ClientError> {
        self.call(|i| async move { self.kv(i).compact(CompactRequest { revision }).await }).await
    }

    pub async fn add_member(&self, id: u64, addr: &str) -> Result<(), ClientError> {
        self.call(|i| {
            let req = AddMemberRequest { id, addr: addr.to_string() };
            async move { self.cluster(i).add_member(req).await }
        })
        .await
        .map(|_| ())
    }

    pub async fn remove_member(&self, id: u64) -> Result<(), ClientError> {
        self.call(|i| async move { self.cluster(i).remove_member(RemoveMemberRequest { id }).await }).await.map(|_| ())
    }

    /// The status of one endpoint (no failover: the point is to ask that replica).
    pub async fn status_of(&self, i: usize, timeout: Duration) -> Result<StatusResponse, ClientError> {
        match tokio::time::timeout(timeout, self.cluster(i).status(StatusRequest {})).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(from_status(s)),
            Err(_) => Err(ClientError::Unavailable { timeout, last: "status timed out".into() }),
        }
    }

    /// A watch that survives replica failures: it reconnects to the next endpoint and
    /// resumes after the last revision it delivered, so no event is lost or repeated.
    pub fn watch(&self, prefix: &str, from_revision: u64) -> WatchStream<'_> {
        WatchStream { client: self, prefix: prefix.to_string(), next_revision: from_revision, stream: None }
    }
}

pub struct WatchStream<'a> {
    client: &'a Client,
    prefix: String,
    next_revision: u64,
    stream: Option<tonic::Streaming<WatchResponse>>,
}

impl WatchStream<'_> {
    /// The next batch of events. Errors only with a non-retryable server error (such as
    /// `COMPACTED`) or when no endpoint answers within the client's timeout.
    pub async fn next(&mut self) -> Result<Vec<Event>, ClientError> {
        let deadline_of = |c: &Client| tokio::time::Instant::now() + c.timeout;
        let mut deadline = deadline_of(self.client);
        loop {
            if self.stream.is_none() {
                let i = self.client.current.load(Ordering::Relaxed) % self.client.channels.len();
                let req = WatchRequest { prefix: self.prefix.clone(), from_revision: self.next_revision };
                match self.client.kv(i).watch(req).await {
                    Ok(s) => self.stream = Some(s.into_inner()),
                    Err(s) if !retryable(&s) => return Err(from_status(s)),
                    Err(s) => {
                        self.client.current.store((i + 1) % self.client.channels.len(), Ordering::Relaxed);
                        if tokio::time::Instant::now() > deadline {
                            return Err(ClientError::Unavailable {
                                timeout: self.client.timeout,
                                last: s.message().to_string(),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let s = self.stream.as_mut().expect("set above");
            match s.message().await {
                Ok(Some(resp)) => {
                    deadline = deadline_of(self.client);
                    if let Some(last) = resp.events.last() {
                        self.next_revision = last.revision + 1;
                    } else if self.next_revision == 0 {
                        self.next_revision = resp.revision + 1;
                    }
                    if !resp.events.is_empty() {
                        return Ok(resp.events);
                    }
                }
                Ok(None) => self.stream = None,
                Err(st) if !retryable(&st) => return Err(from_status(st)),
                Err(_) => {
                    self.stream = None;
                    let n = self.client.channels.len();
                    let i = self.client.current.load(Ordering::Relaxed);
                    self.client.current.store((i + 1) % n, Ordering::Relaxed);
                }
            }
        }
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> u64 {
        self.next_revision
    }
}
