//! A cheap process-wide monotonic clock in milliseconds, shared by workers and marks.
//!
//! Balancer marks (fail windows, down-until times) are atomics holding milliseconds since
//! process start, so they can be compared without locks and passed into pure code as `now_ms`.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process (monotonic, never 0 after start-up).
pub fn now_ms() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

/// [`now_ms`] as it read at `at` (no clock read of its own: for a caller that has just
/// taken an `Instant` anyway).
pub fn ms_at(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_millis() as u64 + 1
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm), for log timestamps without a date crate.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_around_epoch_and_leap_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
    }

    #[test]
    fn now_ms_is_monotonic_and_never_zero() {
        let a = now_ms();
        let b = now_ms();
        assert!(a >= 1 && b >= a);
    }

    #[test]
    fn ms_at_agrees_with_now_ms() {
        let before = now_ms();
        let at = ms_at(Instant::now());
        let after = now_ms();
        assert!(before <= at && at <= after, "{before} {at} {after}");
    }
}
