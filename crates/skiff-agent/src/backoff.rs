//! Exponential restart backoff per container, as the kubelet applies it (CrashLoopBackOff).

use std::time::Duration;

/// Restart backoff of one container: the first restart is immediate, then each further
/// restart waits `initial`, doubling up to `max`. A container that ran at least `reset_after`
/// before exiting starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    /// The delay the next restart after this one will get (None: next restart is immediate).
    current: Option<Duration>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), reset_after: max.max(initial) * 2, current: None }
    }

    /// The delay before restarting a container that ran for `ran_for` and exited; advances
    /// the backoff for the restart after this one.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.reset_after {
            self.current = None;
        }
        match self.current {
            None => {
                self.current = Some(self.initial);
                Duration::ZERO
            }
            Some(d) => {
                self.current = Some((d * 2).min(self.max));
                d
            }
        }
    }

    pub fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_cap_and_resets() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(10), s(300));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(s(1))).collect();
        assert_eq!(delays, vec![s(0), s(10), s(20), s(40), s(80), s(160), s(300), s(300)]);
        // Ran long enough: back to an immediate restart.
        assert_eq!(b.next_delay(s(600)), s(0));
        assert_eq!(b.next_delay(s(1)), s(10));
        b.reset();
        assert_eq!(b.next_delay(s(1)), s(0));
    }

    #[test]
    fn small_test_values() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(500));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay(ms(1))).collect();
        assert_eq!(delays, vec![ms(0), ms(200), ms(400), ms(500), ms(500)]);
    }
}
