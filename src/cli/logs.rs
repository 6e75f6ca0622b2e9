//! What of openraft's logging reaches the log: its routine late-vote warning never, and each of
//! its other warnings and errors at most once per [`OPENRAFT_REPEAT_INTERVAL`] per place in its
//! code and peer. A replica that is down otherwise fills the leader's log with three lines every
//! replication retry (about 33 a second, nearly 3 million a day); now its first failure is
//! logged at once and then one line per kind every interval while it lasts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// How often one of openraft's warnings or errors is logged again for the same peer.
pub const OPENRAFT_REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// openraft's warning for each vote answer that arrives after its election is decided: every
/// won election has one per peer whose answer was not needed, so it tells an operator nothing
/// and reads like a fault.
const LATE_VOTE: &str = "A message will be ignored because vote changed";

/// Distinct (place, peer) keys remembered at most; beyond that the memory starts afresh.
const MAX_KEYS: usize = 1024;

/// The layer (see the module documentation). Every event not from openraft, and openraft's
/// below WARN, pass untouched.
pub struct OpenraftLogs {
    interval: Duration,
    last: Mutex<HashMap<(Identifier, String), Instant>>,
}

impl OpenraftLogs {
    pub fn new(interval: Duration) -> Self {
        OpenraftLogs { interval, last: Mutex::new(HashMap::new()) }
    }

    fn pass(&self, event: &Event<'_>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("openraft") || *meta.level() > Level::WARN {
            return true;
        }
        #[derive(Default)]
        struct Fields {
            late_vote: bool,
            peer: String,
        }
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.late_vote = format!("{value:?}").starts_with(LATE_VOTE),
                    "target" => self.peer = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if f.late_vote && *meta.level() == Level::WARN {
            return false;
        }
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() >= MAX_KEYS {
            last.clear();
        }
        match last.entry((meta.callsite(), f.peer)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if now.duration_since(*e.get()) < self.interval {
                    return false;
                }
                e.insert(now);
                true
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(now);
                true
            }
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for OpenraftLogs {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        self.pass(event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::OpenraftLogs;

    /// Records the level, target and message of each event that reaches it.
    struct Record(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Record {
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            struct Msg(String);
            impl tracing::field::Visit for Msg {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Msg(String::new());
            e.record(&mut m);
            self.0.lock().unwrap().push(format!("{} {} {}", e.metadata().level(), e.metadata().target(), m.0));
        }
    }

    fn run(interval: Duration, f: impl FnOnce()) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(OpenraftLogs::new(interval)).with(Record(seen.clone()));
        tracing::subscriber::with_default(sub, f);
        let v = seen.lock().unwrap().clone();
        v
    }

    fn unreachable(peer: u64) {
        tracing::warn!(target: "openraft::replication", target = peer, "error replication to target={peer}");
    }

    #[test]
    fn late_vote_warnings_are_dropped_and_other_events_pass() {
        let late = "A message will be ignored because vote changed: msg sent by vote: T1-N3:uncommitted; current my vote: None; when (VoteResponse)";
        let seen = run(Duration::from_secs(30), || {
            tracing::warn!(target: "openraft::core::raft_core", "{late}");
            tracing::warn!(target: "openraft::core::raft_core", "something else went wrong");
            tracing::error!(target: "openraft::core::raft_core", "{late}");
            for _ in 0..3 {
                tracing::info!(target: "openraft::core::raft_core", "routine");
                tracing::warn!(target: "skiff_server", "ours");
            }
        });
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert!(seen[0].starts_with("WARN openraft::core::raft_core something"), "{seen:?}");
        assert!(seen[1].starts_with("ERROR openraft::core::raft_core A message"), "{seen:?}");
        assert_eq!(seen.iter().filter(|l| l.contains("routine")).count(), 3);
        assert_eq!(seen.iter().filter(|l| l.contains("ours")).count(), 3);
    }

    #[test]
    fn repeats_are_limited_per_place_and_peer() {
        let seen = run(Duration::from_secs(30), || {
            for _ in 0..100 {
                unreachable(1);
            }
            unreachable(2);
            unreachable(2);
            tracing::error!(target: "openraft::replication", target = 1u64, "RPCError");
        });
        assert_eq!(
            seen,
            [
                "WARN openraft::replication error replication to target=1",
                "WARN openraft::replication error replication to target=2",
                "ERROR openraft::replication RPCError",
            ]
        );
        // Once the interval has passed, a repeat is logged again.
        let seen = run(Duration::ZERO, || {
            unreachable(1);
            unreachable(1);
        });
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
}
