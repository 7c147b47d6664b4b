//! The prober's schedule: one [`Target`] per health-checked server, keyed by (upstream
//! name, address) — the key a reload keeps a server's marks under — so a server that stays
//! keeps its rise/fall count over a reload and a removed one is forgotten. Pure: the time
//! is passed in, randomness comes from a seed.
//!
//! Jitter: a server's first probe comes at a random point of its first interval and every
//! later one `interval` ± 10% after the previous one started, so servers configured alike
//! (or all servers after a start or a reload) are not probed in lock-step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::checks::{Checks, Flip};
use super::probe::{Outcome, Probe};
use crate::snapshot::Snapshot;

/// (upstream name, server address).
pub type Key = (String, SocketAddr);

/// Jitter on every interval after the first, in percent either way.
const JITTER_PERCENT: u64 = 10;

/// One health-checked server.
struct Target {
    probe: Probe,
    interval: Duration,
    rise: u32,
    fall: u32,
    checks: Checks,
    /// When the next probe starts.
    next: Instant,
    /// Set while a probe runs; results carry it back, so one from a target that was
    /// forgotten and learnt again in the meantime is recognised as stale.
    running: Option<u64>,
}

/// Every target, plus what it takes to schedule them.
pub struct Targets {
    map: BTreeMap<Key, Target>,
    /// xorshift64 state, never zero.
    random: super::Jitter,
    /// Numbers the probes, for [`Target::running`].
    probes: u64,
}

/// A probe to start now; hand its outcome back with [`Targets::finish`].
pub struct Due {
    pub key: Key,
    pub probe: Probe,
    pub id: u64,
}

/// A server's state changed: set its marks, log, count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: Key,
    pub flip: Flip,
    pub reason: String,
}

impl Targets {
    pub fn new(seed: u64) -> Targets {
        Targets {
            map: BTreeMap::new(),
            random: super::Jitter::new(seed),
            probes: 0,
        }
    }

    /// A random duration in `[0, interval)`.
    fn first_delay(&mut self, interval: Duration) -> Duration {
        let ms = interval.as_millis().max(1) as u64;
        Duration::from_millis(self.random.draw() % ms)
    }

    /// `interval` ± [`JITTER_PERCENT`].
    fn jittered(&mut self, interval: Duration) -> Duration {
        let ms = interval.as_millis() as u64;
        let spread = ms * JITTER_PERCENT / 100;
        let offset = self.random.draw() % (2 * spread + 1);
        Duration::from_millis(ms - spread + offset)
    }

    /// Follows `snap`: learns new health-checked servers (up, first probe within one
    /// interval), takes new settings for the ones that stay (their counts kept), forgets
    /// the rest. Returns the forgotten keys whose checks said down: if such a server is
    /// still configured (its group dropped `health_check`), its marks must be set up again.
    pub fn follow(&mut self, snap: &Snapshot, now: Instant) -> Vec<Key> {
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        for group in &snap.groups {
            let Some(check) = &group.health_check else {
                continue;
            };
            for server in group.peers.servers() {
                let key = (group.name.clone(), server.addr);
                if seen.contains(&key) {
                    // The same address twice in one group: one server to the prober.
                    continue;
                }
                let probe = Probe::new(server.addr, check);
                let (interval, rise, fall) = (check.interval, check.rise, check.fall);
                let first = now + self.first_delay(interval);
                let target = self.map.entry(key.clone()).or_insert_with(|| Target {
                    probe: probe.clone(),
                    interval,
                    rise,
                    fall,
                    checks: Checks::new(),
                    next: first,
                    running: None,
                });
                if target.interval != interval {
                    // A shorter interval applies now, not after the old one ran out.
                    target.next = target.next.min(first);
                }
                (target.probe, target.interval) = (probe, interval);
                (target.rise, target.fall) = (rise, fall);
                seen.insert(key);
            }
        }
        let mut forgotten = Vec::new();
        self.map.retain(|key, target| {
            let keep = seen.contains(key);
            if !keep && !target.checks.is_up() {
                forgotten.push(key.clone());
            }
            keep
        });
        forgotten
    }

    /// The probes to start at `now`: every target due and not already probing.
    pub fn start_due(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, t)| t.running.is_none() && t.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.probes += 1;
            let id = self.probes;
            let interval = self.map[&key].interval;
            let next = now + self.jittered(interval);
            let target = self.map.get_mut(&key).expect("key listed just above");
            target.running = Some(id);
            target.next = next;
            due.push(Due {
                key,
                probe: target.probe.clone(),
                id,
            });
        }
        due
    }

    /// Counts the outcome of probe `id` of `key`. A result for a target forgotten since is
    /// dropped. A probe that ran past its target's next start is followed by the next one
    /// at `now`, not by a burst.
    pub fn finish(&mut self, key: &Key, id: u64, outcome: Outcome, now: Instant) -> Option<Change> {
        let target = self.map.get_mut(key)?;
        if target.running != Some(id) {
            return None;
        }
        target.running = None;
        target.next = target.next.max(now);
        let flip = target
            .checks
            .record(outcome.passed, target.rise, target.fall)?;
        Some(Change {
            key: key.clone(),
            flip,
            reason: outcome.reason,
        })
    }

    /// The earliest start among targets not probing now.
    pub fn next_start(&self) -> Option<Instant> {
        self.map
            .values()
            .filter(|t| t.running.is_none())
            .map(|t| t.next)
            .min()
    }

    /// Whether the checks of `key` say up (`None`: not a target).
    #[cfg(test)]
    pub fn is_up(&self, key: &Key) -> Option<bool> {
        self.map.get(key).map(|t| t.checks.is_up())
    }

    /// How many servers are health-checked.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot whose group `u` has servers on 127.0.0.1 at `ports`, with `check` as the
    /// inside of its `health_check` table (`None`: no health_check).
    fn snap(ports: &[u16], check: Option<&str>) -> Snapshot {
        let servers: Vec<String> = ports
            .iter()
            .map(|p| format!("{{ addr = \"127.0.0.1:{p}\" }}"))
            .collect();
        let check = check.map_or(String::new(), |c| format!("health_check = {{ {c} }}"));
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"u\"\n\
             [upstreams.u]\nservers = [{}]\n{check}\n",
            servers.join(", ")
        );
        crate::config::load_str(&text, std::path::Path::new("t.toml"), 1).expect("valid")
    }

    fn key(port: u16) -> Key {
        ("u".to_string(), SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn outcome(passed: bool) -> Outcome {
        let reason = if passed { "status 200" } else { "status 500" };
        Outcome {
            passed,
            reason: reason.into(),
        }
    }

    /// Runs one round at `at`: every due probe finishes with `passed`; returns the changes.
    fn round(targets: &mut Targets, at: Instant, passed: bool) -> Vec<Change> {
        targets
            .start_due(at)
            .into_iter()
            .filter_map(|d| targets.finish(&d.key, d.id, outcome(passed), at))
            .collect()
    }

    #[test]
    fn intervals_after_the_first_stay_within_ten_percent() {
        let mut t = Targets::new(42);
        let interval = Duration::from_millis(1000);
        let samples: Vec<u128> = (0..1000)
            .map(|_| t.jittered(interval).as_millis())
            .collect();
        assert!(
            samples.iter().all(|ms| (900..=1100).contains(ms)),
            "{samples:?}"
        );
        // Spread over the range, not stuck at one value.
        assert!(samples.iter().min() < Some(&920) && samples.iter().max() > Some(&1080));
        let firsts: Vec<u128> = (0..1000)
            .map(|_| t.first_delay(interval).as_millis())
            .collect();
        assert!(firsts.iter().all(|ms| *ms < 1000));
        assert!(firsts.iter().min() < Some(&100) && firsts.iter().max() > Some(&900));
        // Tiny intervals neither divide by zero nor go negative.
        assert_eq!(
            t.jittered(Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(t.first_delay(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn servers_configured_alike_are_not_probed_in_lock_step() {
        let mut t = Targets::new(7);
        let now = Instant::now();
        t.follow(&snap(&[1, 2, 3, 4, 5, 6], Some("interval = \"10s\"")), now);
        let mut starts: Vec<Instant> = t.map.values().map(|t| t.next).collect();
        assert!(starts.iter().all(|s| *s < now + Duration::from_secs(10)));
        starts.dedup();
        assert!(starts.len() > 1, "every first probe at the same moment");
    }

    #[test]
    fn a_probe_still_running_is_not_started_again() {
        let mut t = Targets::new(1);
        let now = Instant::now();
        t.follow(&snap(&[1], Some("interval = \"1s\"")), now);
        let later = now + Duration::from_secs(60);
        let due = t.start_due(later);
        assert_eq!(due.len(), 1);
        assert!(t.start_due(later + Duration::from_secs(60)).is_empty());
        assert_eq!(t.next_start(), None);
        let Due { key, id, .. } = &due[0];
        assert_eq!(t.finish(key, *id, outcome(true), later), None);
        assert_eq!(t.start_due(later + Duration::from_secs(60)).len(), 1);
    }

    #[test]
    fn fall_takes_a_server_down_and_rise_brings_it_back() {
        let mut t = Targets::new(3);
        let mut at = Instant::now();
        t.follow(&snap(&[1], Some("rise = 2, fall = 3")), at);
        let mut step = || {
            at += Duration::from_secs(60);
            at
        };
        assert!(round(&mut t, step(), true).is_empty());
        assert!(round(&mut t, step(), false).is_empty());
        assert!(round(&mut t, step(), false).is_empty());
        let down = round(&mut t, step(), false);
        assert_eq!(down.len(), 1);
        assert_eq!((down[0].flip.up, down[0].flip.after), (false, 3));
        assert_eq!(down[0].reason, "status 500");
        assert!(round(&mut t, step(), true).is_empty());
        let up = round(&mut t, step(), true);
        assert_eq!(
            (up[0].key.clone(), up[0].flip.up, up[0].flip.after),
            (key(1), true, 2)
        );
    }

    #[test]
    fn counts_survive_a_reload_for_servers_that_stay_and_removed_ones_are_forgotten() {
        let mut t = Targets::new(5);
        let mut at = Instant::now();
        t.follow(&snap(&[1, 2], Some("rise = 2, fall = 1")), at);
        at += Duration::from_secs(60);
        assert_eq!(round(&mut t, at, false).len(), 2);
        at += Duration::from_secs(60);
        // One pass of the two that rise needs...
        assert!(round(&mut t, at, true).is_empty());
        // ...then a reload keeps server 1, drops server 2, adds server 3.
        let forgotten = t.follow(&snap(&[1, 3], Some("rise = 2, fall = 1")), at);
        assert_eq!(forgotten, [key(2)]);
        assert_eq!(t.count(), 2);
        assert_eq!(t.is_up(&key(1)), Some(false));
        assert_eq!(t.is_up(&key(2)), None);
        assert_eq!(t.is_up(&key(3)), Some(true));
        // The second pass brings server 1 back: its count went on over the reload.
        at += Duration::from_secs(60);
        let changes = round(&mut t, at, true);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].key.clone(), changes[0].flip.up), (key(1), true));
    }

    #[test]
    fn dropping_health_check_returns_the_servers_it_held_down() {
        let mut t = Targets::new(9);
        let at = Instant::now() + Duration::from_secs(60);
        t.follow(&snap(&[1, 2], Some("fall = 1")), Instant::now());
        let d = t.start_due(at);
        t.finish(&d[0].key, d[0].id, outcome(false), at);
        t.finish(&d[1].key, d[1].id, outcome(true), at);
        assert_eq!(t.follow(&snap(&[1, 2], None), at), [key(1)]);
        assert_eq!(t.count(), 0);
    }

    #[test]
    fn a_result_for_a_server_forgotten_meanwhile_is_dropped() {
        let mut t = Targets::new(11);
        let at = Instant::now() + Duration::from_secs(60);
        t.follow(&snap(&[1], Some("fall = 1")), Instant::now());
        let old = t.start_due(at).remove(0);
        t.follow(&snap(&[2], Some("fall = 1")), at);
        t.follow(&snap(&[1], Some("fall = 1")), at);
        assert_eq!(t.finish(&old.key, old.id, outcome(false), at), None);
        assert_eq!(t.is_up(&key(1)), Some(true));
    }

    #[test]
    fn a_reload_takes_new_settings_and_a_shorter_interval_at_once() {
        let mut t = Targets::new(13);
        let now = Instant::now();
        t.follow(&snap(&[1], Some("interval = \"1h\"")), now);
        t.follow(
            &snap(&[1], Some("interval = \"1s\", path = \"/ready\"")),
            now,
        );
        assert!(t.next_start().unwrap() < now + Duration::from_secs(1));
        let due = t.start_due(now + Duration::from_secs(1));
        let request = due[0].probe.request.clone().unwrap();
        assert!(request.starts_with(b"GET /ready "));
    }
}
