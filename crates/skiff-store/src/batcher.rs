//! Group commit at the Raft-entry level, on the leader.
//!
//! openraft 0.9 awaits the log flush of every appended entry inside its core loop, so each
//! `client_write` costs one fsync in series: about 3,000 writes/s on this machine's disk, no
//! matter how many clients wait. The leader's batcher takes the transactions that arrive
//! (from its own clients and forwarded by followers) while earlier ones are in flight and
//! proposes them together as one [`Request::Batch`] entry: one append, one fsync, one
//! replication round. Batching on followers as well was measured and is worse: three
//! batchers make three entries per round where one makes one. A batch applies its
//! transactions in order, each with its own compares, revision and response, exactly as
//! the same transactions proposed one by one would be, so batching changes no outcome.
//!
//! Bounds: at most [`MAX_BATCH_TXNS`] transactions and about [`MAX_BATCH_BYTES`] per
//! entry, [`QUEUE`] waiting transactions, [`IN_FLIGHT`] entries proposed at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::StoreError;
use crate::node::write_err;
use crate::types::{Op, Raft, Request, Response, Txn, MAX_BATCH_BYTES, MAX_BATCH_TXNS};

/// Transactions waiting for a batch at most (senders wait beyond that).
const QUEUE: usize = 4096;
/// Batches proposed and not yet answered at most: one being written while the next fills.
/// Measured on the store bench: 1, 2 and 3 alike (8.8–8.9k writes/s), 8 much worse (5k:
/// more, smaller entries, each its own fsync).
const IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<Response, StoreError>>;

/// The leader-side write batcher of one replica.
pub(crate) struct Batcher {
    tx: mpsc::Sender<(Txn, Reply)>,
}

fn txn_bytes(t: &Txn) -> usize {
    t.success.iter().chain(&t.failure).map(Op::size).sum()
}

impl Batcher {
    /// Starts the batching task (on the current tokio runtime), proposing to `raft`; it
    /// ends when the `Batcher` is dropped.
    pub(crate) fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `txn` (already validated) in the next batch and waits for its own answer.
    pub(crate) async fn write(&self, txn: Txn) -> Result<Response, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((txn, reply)).await.map_err(|_| StoreError::Shutdown)?;
        rx.await.map_err(|_| StoreError::Shutdown)?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Txn, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<(Txn, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        // Wait for a free slot first, then take everything that queued meanwhile.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let mut bytes = txn_bytes(&first.0);
        let mut items = vec![first];
        while items.len() < MAX_BATCH_TXNS {
            match rx.try_recv() {
                Ok(item) => {
                    let b = txn_bytes(&item.0);
                    if bytes + b > MAX_BATCH_BYTES {
                        carried = Some(item);
                        break;
                    }
                    bytes += b;
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose(&raft, items).await;
        });
    }
}

/// One entry for `items`: a plain `Txn` when alone, else a `Batch`; each caller gets its
/// own response, or the shared error.
async fn propose(raft: &Raft, items: Vec<(Txn, Reply)>) {
    let (txns, replies): (Vec<Txn>, Vec<Reply>) = items.into_iter().unzip();
    let n = txns.len();
    let req = if n == 1 { Request::Txn(txns.into_iter().next().expect("one")) } else { Request::Batch(txns) };
    match raft.client_write(Arc::new(req)).await.map(|r| r.data).map_err(write_err) {
        Ok(r) if n == 1 => {
            let _ = replies.into_iter().next().expect("one").send(Ok(r));
        }
        Ok(r) if r.batch.len() == n => {
            for (reply, resp) in replies.into_iter().zip(r.batch) {
                let _ = reply.send(Ok(resp));
            }
        }
        Ok(r) => {
            let e = StoreError::Raft(format!("batch of {n} answered with {} responses", r.batch.len()));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
