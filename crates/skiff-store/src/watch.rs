//! Watches: every event on a prefix from a revision, in order, exactly once.
//!
//! A watcher subscribes to the state machine's fan-out first and then reads the history
//! window, skipping anything below the next revision it owes; a watcher that lags behind
//! the bounded fan-out, or sees the state replaced by a snapshot, re-reads the window.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::state_machine::{HubMsg, SharedState};
use crate::types::Event;

pub struct Watcher {
    rx: broadcast::Receiver<HubMsg>,
    state: SharedState,
    prefix: String,
    next_rev: u64,
    pending: VecDeque<Arc<Event>>,
}

impl Watcher {
    /// `from_revision == 0` means "changes after the current revision".
    pub(crate) fn new(
        hub: &broadcast::Sender<HubMsg>,
        state: SharedState,
        prefix: String,
        from_revision: u64,
    ) -> Result<Self, StoreError> {
        let rx = hub.subscribe();
        let next_rev = if from_revision == 0 { state.read().revision + 1 } else { from_revision };
        let mut w = Watcher { rx, state, prefix, next_rev, pending: VecDeque::new() };
        w.catch_up()?;
        Ok(w)
    }

    /// The revision of the next event this watcher will deliver (at least).
    pub fn next_revision(&self) -> u64 {
        self.next_rev
    }

    /// Reads owed events from the history window.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let st = self.state.read();
        if self.next_rev <= st.compacted {
            return Err(StoreError::Compacted { requested: self.next_rev, oldest: st.compacted + 1 });
        }
        // History is in revision order; find the first owed event by binary search.
        let start = st.history.partition_point(|e| e.revision < self.next_rev);
        for e in st.history.range(start..) {
            if e.kv.key.starts_with(&self.prefix) {
                self.pending.push_back(e.clone());
            }
        }
        self.next_rev = self.next_rev.max(st.revision + 1);
        Ok(())
    }

    /// Waits for the next events (at most `max`). Errors with `Compacted` when the
    /// events owed are no longer kept; with `Shutdown` when the store stops.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Event>>, StoreError> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(max.max(1));
                return Ok(self.pending.drain(..n).collect());
            }
            match self.rx.recv().await {
                Ok(HubMsg::Events(events)) => {
                    let mut last = None;
                    for e in events.iter() {
                        if e.revision >= self.next_rev {
                            last = Some(e.revision);
                            if e.kv.key.starts_with(&self.prefix) {
                                self.pending.push_back(e.clone());
                            }
                        }
                    }
                    if let Some(r) = last {
                        self.next_rev = r + 1;
                    }
                }
                Ok(HubMsg::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up()?,
                Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Shutdown),
            }
        }
    }
}
