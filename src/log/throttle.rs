//! At most one line per interval for an error that can repeat as fast as the loop runs.
//!
//! An accept loop that finds the descriptor table full fails again on every attempt until
//! a connection closes; logging each failure would fill the error log (and the log
//! channel) exactly when the operator needs it readable. The first failure is logged at
//! once, later ones are counted, and the next line (at most one per `every`) says how many
//! were left out.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// One throttled message source (per worker thread, not shared).
pub struct Throttle {
    every: Duration,
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Cell::new(None),
            suppressed: Cell::new(0),
        }
    }

    /// Whether an event at `now` may be logged; `Some(n)` when it may, with the number of
    /// events left out since the last logged one.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last.get()
            && now.saturating_duration_since(last) < self.every
        {
            self.suppressed.set(self.suppressed.get() + 1);
            return None;
        }
        self.last.set(Some(now));
        Some(self.suppressed.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_and_the_rest_of_the_interval_counted() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.admit(start), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(t.admit(start + Duration::from_millis(ms)), None);
        }
        // The next line reports the four left out, then counting starts over.
        assert_eq!(t.admit(start + Duration::from_millis(1000)), Some(4));
        assert_eq!(t.admit(start + Duration::from_millis(1001)), None);
        assert_eq!(t.admit(start + Duration::from_millis(2500)), Some(1));
    }

    #[test]
    fn a_steady_stream_of_events_logs_once_per_interval() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        // 50 ms apart for 10 s: what an accept loop with its back-off would produce.
        let logged = (0..200)
            .filter(|i| t.admit(start + Duration::from_millis(i * 50)).is_some())
            .count();
        assert_eq!(logged, 10);
    }
}
