//! The rise/fall state machine of one server's active checks (HAProxy's and nginx-plus's
//! semantics), pure: results in, state changes out.
//!
//! A server starts *up* — as in nginx-plus without `mandatory` and HAProxy's default
//! `init-state up` — so a start or a reload never takes traffic away before any probe ran.
//! Until its first passed probe, though, one failure takes it down (HAProxy does the same):
//! a server that is dead at start leaves the rotation after one interval, not `fall` of
//! them. From then on it takes `fall` consecutive failures to go down and `rise`
//! consecutive passes to come back; any opposite result restarts the count.

/// What the checks say about one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    up: bool,
    /// Passed at least once since it started up: from then on `fall` failures are needed.
    confirmed: bool,
    /// Consecutive results against the current state (failures while up, passes while down).
    streak: u32,
}

/// A state change and the number of consecutive results that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flip {
    pub up: bool,
    pub after: u32,
}

impl Default for Checks {
    fn default() -> Checks {
        Checks::new()
    }
}

impl Checks {
    /// Up, not yet confirmed by a passed probe.
    pub const fn new() -> Checks {
        Checks {
            up: true,
            confirmed: false,
            streak: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counts one probe result. `rise` and `fall` are read on every call, so a reload that
    /// lowers them takes effect with the next result.
    pub fn record(&mut self, passed: bool, rise: u32, fall: u32) -> Option<Flip> {
        if passed == self.up {
            // A result agreeing with the state clears the streak against it.
            self.streak = 0;
            self.confirmed |= passed;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let needed = match (self.up, self.confirmed) {
            (true, false) => 1,
            (true, true) => fall.max(1),
            (false, _) => rise.max(1),
        };
        if self.streak < needed {
            return None;
        }
        let flip = Flip {
            up: passed,
            after: self.streak,
        };
        self.up = passed;
        self.confirmed = passed;
        self.streak = 0;
        Some(flip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` ('+' pass, '-' fail) and lists the flips as "down@n" / "up@n" with
    /// the 1-based position of the result that caused them.
    fn run(checks: &mut Checks, results: &str, rise: u32, fall: u32) -> Vec<String> {
        let mut flips = Vec::new();
        for (i, c) in results.chars().enumerate() {
            if let Some(f) = checks.record(c == '+', rise, fall) {
                let to = if f.up { "up" } else { "down" };
                flips.push(format!("{to}@{}after{}", i + 1, f.after));
            }
        }
        flips
    }

    #[test]
    fn a_server_starts_up_and_one_failure_before_any_pass_takes_it_down() {
        let mut c = Checks::new();
        assert!(c.is_up());
        assert_eq!(run(&mut c, "-", 2, 3), ["down@1after1"]);
        assert!(!c.is_up());
    }

    #[test]
    fn after_a_pass_it_takes_fall_consecutive_failures() {
        let mut c = Checks::new();
        assert_eq!(run(&mut c, "+--+---", 2, 3), ["down@7after3"]);
    }

    #[test]
    fn it_comes_back_after_rise_consecutive_passes() {
        let mut c = Checks::new();
        assert_eq!(run(&mut c, "-++-+++", 3, 3), ["down@1after1", "up@7after3"]);
        // Back up means confirmed: it needs fall failures again, not one.
        assert_eq!(run(&mut c, "--+---", 3, 3), ["down@6after3"]);
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut c = Checks::new();
        assert_eq!(
            run(&mut c, "+-+-", 1, 1),
            ["down@2after1", "up@3after1", "down@4after1"]
        );
    }

    #[test]
    fn lowered_thresholds_apply_to_the_running_streak() {
        let mut c = Checks::new();
        assert!(run(&mut c, "+----", 2, 5).is_empty());
        // A reload lowers fall to 3 while 4 failures are counted: the next one flips.
        assert_eq!(run(&mut c, "-", 2, 3), ["down@1after5"]);
    }
}
