//! least_time: two random candidates (as `random_two` draws them), the one with the lower
//! (load + 1) × *time* wins, where *time* is a peak-sensitive moving average of the server's
//! time from sending a request to the first byte of the response body (Finagle's and
//! Linkerd's PeakEWMA).
//!
//! The average ([`TimeMark`]) is one atomic word per server, shared by every worker: the
//! estimate in microseconds and when it was last updated. A sample above the estimate
//! replaces it at once (a server that turns slow is avoided from its first slow answer); a
//! lower one is blended in with a weight that grows with the time since the last update
//! (`1 - e^(-elapsed/DECAY)`), and a reader decays the estimate toward zero the same way, so
//! a server nobody has tried for a while is tried again. A failure (error, timeout, 429 or
//! 5xx answer) is recorded as a sample of at least twice the current estimate and at least
//! [`FAILURE_FLOOR_US`]: a server that fails fast never looks fast.
//!
//! A server with no estimate (never answered, or decayed all the way) scores by its load
//! alone when idle, and behind every measured server once it has requests in flight, so a
//! new server is probed without being flooded before its first answer.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Peers;

/// Time constant of the moving average and of the decay of an unrefreshed estimate
/// (Finagle's and tower's default).
const DECAY_MS: f64 = 10_000.0;
/// The least a failure counts as: one second to the first byte.
pub(super) const FAILURE_FLOOR_US: u32 = 1_000_000;
/// The score of a busy server without an estimate: behind any estimate below ~70 minutes.
const UNKNOWN_BUSY: u128 = 1 << 64;

/// One server's time estimate: microseconds (high 32 bits, at most ~71 minutes) and the
/// `clock::now_ms` of its last update (low 32 bits, wrapping every ~49 days: only the
/// difference to now is used). One word, so an update is one compare-and-swap.
#[derive(Default)]
pub(super) struct TimeMark {
    word: AtomicU64,
}

fn pack(estimate_us: u32, at_ms: u64) -> u64 {
    (u64::from(estimate_us) << 32) | (at_ms & 0xFFFF_FFFF)
}

/// The estimate `word` holds and the factor `e^(-elapsed/DECAY)` for the time since its
/// update: the estimate a reader sees is their product.
fn unpack(word: u64, now_ms: u64) -> (f64, f64) {
    let estimate = (word >> 32) as f64;
    let elapsed = (now_ms as u32).wrapping_sub(word as u32);
    let keep = if elapsed == 0 {
        1.0
    } else {
        (-f64::from(elapsed) / DECAY_MS).exp()
    };
    (estimate, keep)
}

fn to_us(value: f64) -> u32 {
    value.clamp(0.0, f64::from(u32::MAX)) as u32
}

impl TimeMark {
    /// The current estimate in microseconds.
    pub(super) fn estimate_us(&self, now_ms: u64) -> u32 {
        let (estimate, keep) = unpack(self.word.load(Relaxed), now_ms);
        to_us(estimate * keep)
    }

    /// Takes in one time to the first byte.
    pub(super) fn observe(&self, sample: Duration, now_ms: u64) {
        let sample = sample.as_micros().min(u128::from(u32::MAX)) as f64;
        self.update(now_ms, |estimate, keep| {
            let decayed = estimate * keep;
            if sample >= decayed {
                sample
            } else {
                decayed + sample * (1.0 - keep)
            }
        });
    }

    /// Records a failure as a slow answer: at least twice the estimate and at least
    /// [`FAILURE_FLOOR_US`].
    pub(super) fn failed(&self, now_ms: u64) {
        self.update(now_ms, |estimate, keep| {
            (2.0 * estimate * keep).max(f64::from(FAILURE_FLOOR_US))
        });
    }

    fn update(&self, now_ms: u64, next: impl Fn(f64, f64) -> f64) {
        let _ = self.word.fetch_update(Relaxed, Relaxed, |word| {
            let (estimate, keep) = unpack(word, now_ms);
            Some(pack(to_us(next(estimate, keep)), now_ms))
        });
    }
}

/// The score of `idx` (lower is better): (load + 1) × estimate / weight, as a fraction
/// compared by cross-multiplying. Gives (numerator, weight).
fn score(peers: &Peers, idx: usize, now_ms: u64) -> (u128, u128) {
    let load = u128::from(peers.load(idx));
    let estimate = peers
        .marks
        .time(idx)
        .map_or(0, |mark| mark.estimate_us(now_ms));
    let numerator = match (estimate, load) {
        (0, load) if load > 0 => UNKNOWN_BUSY + load,
        (0, _) => 0,
        (estimate, load) => (load + 1) * u128::from(estimate),
    };
    (numerator, u128::from(peers.weight(idx, now_ms)))
}

/// The candidate with the lower score; on a tie the less loaded, then `a`.
pub(super) fn faster(peers: &Peers, a: usize, b: usize, now_ms: u64) -> usize {
    let (score_a, weight_a) = score(peers, a, now_ms);
    let (score_b, weight_b) = score(peers, b, now_ms);
    let (left, right) = (score_a * weight_b, score_b * weight_a);
    if left < right || (left == right && peers.load(a) <= peers.load(b)) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{group, server};
    use super::super::{LocalCursor, Pick, PickKey, Policy, Tried};
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_higher_sample_replaces_the_estimate_a_lower_one_is_blended_in() {
        let mark = TimeMark::default();
        mark.observe(ms(100), 1000);
        assert_eq!(mark.estimate_us(1000), 100_000);
        mark.observe(ms(300), 1000);
        assert_eq!(mark.estimate_us(1000), 300_000);
        // A fast answer right away barely moves it; after a long quiet spell it counts fully.
        mark.observe(ms(10), 1001);
        let soon = mark.estimate_us(1001);
        assert!((299_000..300_000).contains(&soon), "{soon}");
        mark.observe(ms(10), 101_001);
        let later = mark.estimate_us(101_001);
        assert!((10_000..10_100).contains(&later), "{later}");
    }

    #[test]
    fn an_estimate_decays_toward_zero_when_not_refreshed() {
        let mark = TimeMark::default();
        mark.observe(ms(1000), 5);
        let after_one_decay = mark.estimate_us(5 + DECAY_MS as u64);
        assert!(
            (367_000..369_000).contains(&after_one_decay),
            "{after_one_decay}"
        );
        assert_eq!(mark.estimate_us(5 + 40 * DECAY_MS as u64), 0);
    }

    #[test]
    fn failures_count_as_slow_and_slower_each_time() {
        let mark = TimeMark::default();
        mark.observe(ms(2), 10);
        mark.failed(10);
        assert_eq!(mark.estimate_us(10), FAILURE_FLOOR_US);
        mark.failed(10);
        assert_eq!(mark.estimate_us(10), 2 * FAILURE_FLOOR_US);
        // Saturates instead of wrapping.
        for _ in 0..40 {
            mark.failed(10);
        }
        assert_eq!(mark.estimate_us(10), u32::MAX);
    }

    fn picks(peers: &Peers, n: usize) -> Vec<usize> {
        let mut cursor = LocalCursor::new(peers, 5);
        let mut counts = vec![0; peers.servers().len()];
        for _ in 0..n {
            match peers.pick(&mut cursor, PickKey::None, &Tried::default(), 1000) {
                Pick::Server(idx) => counts[idx] += 1,
                other => panic!("{other:?}"),
            }
        }
        counts
    }

    #[test]
    fn the_faster_of_two_idle_servers_always_wins() {
        let peers = group(Policy::LeastTime, vec![server(1), server(1)]);
        peers.observe_first_byte(0, ms(200), 1000);
        peers.observe_first_byte(1, ms(20), 1000);
        assert_eq!(picks(&peers, 50), [0, 50]);
    }

    #[test]
    fn load_multiplies_the_time() {
        let peers = group(Policy::LeastTime, vec![server(1), server(1)]);
        peers.observe_first_byte(0, ms(100), 1000);
        peers.observe_first_byte(1, ms(30), 1000);
        // 1 x 100ms beats (3 + 1) x 30ms.
        (0..3).for_each(|_| peers.begin(1));
        assert_eq!(picks(&peers, 20), [20, 0]);
    }

    #[test]
    fn a_failing_server_is_not_attractive() {
        let peers = group(Policy::LeastTime, vec![server(1), server(1), server(1)]);
        peers.observe_first_byte(0, ms(300), 1000);
        peers.observe_first_byte(1, ms(300), 1000);
        // Server 2 answers errors in no time: recorded as failures, never as fast answers.
        peers.observe_failure(2, 1000);
        let got = picks(&peers, 300);
        assert!(got[2] < 10, "{got:?}");
    }

    #[test]
    fn an_unmeasured_server_is_tried_while_idle_but_not_flooded() {
        let peers = group(Policy::LeastTime, vec![server(1), server(1)]);
        peers.observe_first_byte(0, ms(50), 1000);
        assert_eq!(picks(&peers, 10), [0, 10]);
        peers.begin(1);
        assert_eq!(picks(&peers, 10), [10, 0]);
    }
}
