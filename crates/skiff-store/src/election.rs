//! When a follower starts an election. openraft 0.9's own timer is switched off
//! (`enable_elect: false`) and replaced by this driver, because its timer cannot give a
//! failover well under a second:
//!
//! - each process draws its random election timeout once, so two followers that collide
//!   collide again in the next round;
//! - a follower that saw a leader waits the leader lease (`election_timeout_max`) plus
//!   that timeout, and a candidate refused for a shorter log waits `2 × max` more while
//!   the peer with the longer log has no reason to hurry.
//!
//! The driver keeps openraft's safety rules (the voters' leader lease, log comparison,
//! terms) and only decides *when* `Raft::trigger().elect()` is called:
//!
//! - every contact with a leader (an accepted AppendEntries or snapshot chunk) or a vote
//!   granted moves the deadline to `lease + jitter`, with `lease = election_timeout_max`
//!   (every voter's lease has then expired) and a jitter drawn afresh in
//!   `[0, max − min)`;
//! - a candidate that has not won retries after a fresh random `[min/2, min)`;
//! - a candidate refused by a peer with a longer log backs off by `max`, and
//! - a voter that refuses a candidate for its shorter log, and has itself not heard from
//!   a leader for half the lease, campaigns at once, with a term above the candidate's, so
//!   the most up-to-date survivor wins in one round.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::types::{NodeId, Raft};

/// Timings, in milliseconds (the replica's `election_timeout_min/max`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub min_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug)]
struct State {
    /// An election starts when this passes without contact.
    deadline: Instant,
    /// The last time a leader (or a candidate we voted for) was heard from.
    last_contact: Instant,
    /// The highest term seen in a refused vote request; a campaign goes above it.
    seen_term: u64,
}

/// Shared between the transport hooks (client and server side) and the driver task.
pub(crate) struct Elector {
    timing: Timing,
    state: Mutex<State>,
    wake: Notify,
}

impl Elector {
    pub(crate) fn new(timing: Timing) -> Arc<Self> {
        let now = Instant::now();
        let e = Elector {
            timing,
            state: Mutex::new(State { deadline: now, last_contact: now, seen_term: 0 }),
            wake: Notify::new(),
        };
        e.state.lock().deadline = now + e.follower_timeout();
        Arc::new(e)
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.timing.max_ms)
    }

    fn follower_timeout(&self) -> Duration {
        let spread = self.timing.max_ms.saturating_sub(self.timing.min_ms).max(1);
        self.lease() + Duration::from_millis(rand::rng().random_range(0..spread))
    }

    fn retry_timeout(&self) -> Duration {
        let lo = (self.timing.min_ms / 2).max(1);
        let hi = self.timing.min_ms.max(lo + 1);
        Duration::from_millis(rand::rng().random_range(lo..hi))
    }

    /// A leader was heard from, or this replica granted a vote.
    pub(crate) fn contact(&self) {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.last_contact = now;
        s.deadline = now + self.follower_timeout();
    }

    /// When a leader (or a candidate this replica voted for) was last heard from.
    pub(crate) fn last_contact(&self) -> Instant {
        self.state.lock().last_contact
    }

    /// A vote request of ours was refused by a peer whose log is longer: give it room.
    pub(crate) fn peer_has_longer_log(&self) {
        let mut s = self.state.lock();
        let later = Instant::now() + self.lease();
        if s.deadline < later {
            s.deadline = later;
        }
    }

    /// This replica refused `term`'s candidate for its shorter log. If this replica has not
    /// heard from a leader for half the lease either, the leader is likely gone: campaign now.
    pub(crate) fn refused_shorter_log(&self, term: u64) {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.seen_term = s.seen_term.max(term);
        if now.duration_since(s.last_contact) >= self.lease() / 2 {
            s.deadline = now;
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Runs until the Raft instance shuts down.
    pub(crate) fn spawn(self: Arc<Self>, id: NodeId, raft: Raft) {
        tokio::spawn(async move {
            let mut metrics = raft.metrics();
            while self.step(id, &raft, &mut metrics).await {
                let deadline = self.state.lock().deadline;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = self.wake.notified() => {}
                }
            }
        });
    }

    /// Campaigns if the deadline has passed. Metrics are read only here, not on every change
    /// (they change with every log entry). False once Raft has stopped.
    async fn step(
        &self,
        id: NodeId,
        raft: &Raft,
        metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, crate::types::Node>>,
    ) -> bool {
        if metrics.has_changed().is_err() {
            return false;
        }
        let (state, term, voter, alone) = {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() || m.state == ServerState::Shutdown {
                return false;
            }
            let voters = m.membership_config.membership().voter_ids().collect::<Vec<_>>();
            (m.state, m.current_term, voters.contains(&id), voters.len() == 1)
        };
        if state == ServerState::Leader || !voter {
            // A leader's (or learner's) clock restarts when it becomes a follower.
            self.contact();
            return true;
        }
        let rounds = {
            let mut s = self.state.lock();
            let now = Instant::now();
            // A single voter needs nobody's vote: it elects itself at once.
            if now < s.deadline && !alone {
                return true;
            }
            s.deadline = now + self.retry_timeout();
            // Each elect() takes the next term: go one above any candidate seen.
            s.seen_term.saturating_sub(term).saturating_add(1).min(8)
        };
        for _ in 0..rounds {
            if raft.trigger().elect().await.is_err() {
                return false;
            }
        }
        tracing::info!(id, term, rounds, "no leader heard from within the election timeout: campaigning");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elector() -> Arc<Elector> {
        Elector::new(Timing { min_ms: 150, max_ms: 300 })
    }

    fn deadline_in(e: &Elector) -> Duration {
        e.state.lock().deadline.saturating_duration_since(Instant::now())
    }

    #[test]
    fn contact_waits_out_the_lease_plus_a_fresh_jitter() {
        let e = elector();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            e.contact();
            let d = deadline_in(&e);
            // Upper bound 450 ms; the lower allows for this thread being descheduled.
            assert!(d >= Duration::from_millis(250) && d < Duration::from_millis(450), "{d:?}");
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 10, "the jitter is drawn afresh each time: {seen:?}");
    }

    #[test]
    fn a_voter_refusing_a_shorter_log_campaigns_only_once_the_leader_is_silent() {
        let e = elector();
        e.contact();
        e.refused_shorter_log(7);
        assert!(deadline_in(&e) > Duration::from_millis(200), "a leader heard just now: no campaign");
        assert_eq!(e.state.lock().seen_term, 7);
        e.state.lock().last_contact = Instant::now() - Duration::from_millis(160);
        e.refused_shorter_log(8);
        assert_eq!(deadline_in(&e), Duration::ZERO, "silent for half the lease: campaign now");
        assert_eq!(e.state.lock().seen_term, 8);
    }

    #[test]
    fn a_candidate_refused_for_its_shorter_log_backs_off_a_lease() {
        let e = elector();
        e.state.lock().deadline = Instant::now() + Duration::from_millis(10);
        e.peer_has_longer_log();
        assert!(deadline_in(&e) >= Duration::from_millis(250));
        // A later deadline is not brought forward.
        e.state.lock().deadline = Instant::now() + Duration::from_secs(5);
        e.peer_has_longer_log();
        assert!(deadline_in(&e) > Duration::from_secs(4));
    }

    #[test]
    fn retries_are_random_within_half_to_one_election_timeout_min() {
        let e = elector();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let r = e.retry_timeout();
            assert!(r >= Duration::from_millis(75) && r < Duration::from_millis(150), "{r:?}");
            seen.insert(r);
        }
        assert!(seen.len() > 10, "{seen:?}");
    }
}
