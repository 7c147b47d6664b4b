//! Per-server process-wide marks: active request counts and passive-health state, as atomics.
//!
//! These are the only parts of a group that every worker writes. Each server's active count
//! sits alone on its cache line because it is written at the start and end of every request;
//! the health marks sit on another line that is written only on failures, so reading them on
//! every pick stays a shared-cache hit. All orderings are `Relaxed`: a mark publishes no other
//! data, it only has to be atomic.
//!
//! Each server's marks are behind an `Arc` so that a reload can hand the very same marks to
//! the new snapshot's group for a server that stays (same upstream name and address):
//! requests still running on the old snapshot then end on the counter the new one reads,
//! and a failure mark or probe verdict survives the reload.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use super::least_time::TimeMark;

/// Bits of `FailMark::window` that hold the window start (ms since process start: 8900 years).
const START_BITS: u32 = 48;
const START_MASK: u64 = (1 << START_BITS) - 1;
/// The failure count has the remaining 16 bits; `max_fails` above this behaves like this.
const MAX_COUNT: u32 = u16::MAX as u32;

/// Requests in flight on one server, process-wide (least_conn, random_two and max_conns),
/// and least_time's estimate of its time to first byte: written at the start and the end of
/// every request alike, so they share the line that bounces anyway.
#[repr(align(64))]
#[derive(Default)]
struct ActiveMark {
    count: AtomicU32,
    time: TimeMark,
}

/// Passive (and active-check) health of one server.
#[repr(align(64))]
#[derive(Default)]
struct FailMark {
    /// Failures counted in the current window (high 16 bits) and when the window started, in
    /// ms (low 48 bits). One word, so a failure updates both with one compare-and-swap.
    window: AtomicU64,
    /// The server is skipped while `now_ms` is below this.
    down_until: AtomicU64,
    /// Set by active health checks after `fall` bad probes, cleared after `rise` good ones.
    probe_down: AtomicBool,
    /// The server answered 429 or 503 with `Retry-After`: picks skip it while `now_ms` is
    /// below this, though it is not failed (`max_fails` ignores it, `server_up` stays 1).
    busy_until: AtomicU64,
    /// When the server last came back (probes up again, `down` lifted or added by a reload),
    /// in ms; 0 = never. With `down_until` (the end of a passive mark, which needs no write
    /// to be over) it starts the `slow_start` ramp.
    back_since: AtomicU64,
}

/// Both marks of one server, each on its own cache line.
#[derive(Default)]
pub(super) struct ServerMarks {
    active: ActiveMark,
    fail: FailMark,
}

impl ServerMarks {
    /// Counts one more request unless that would exceed `max_conns` (0 = no cap): how the
    /// wait queue takes a freed slot for a waiter without overshooting the cap.
    pub(super) fn try_begin(&self, max_conns: u32) -> bool {
        if max_conns == 0 {
            self.active.count.fetch_add(1, Relaxed);
            return true;
        }
        self.active
            .count
            .fetch_update(Relaxed, Relaxed, |n| (n < max_conns).then_some(n + 1))
            .is_ok()
    }

    /// Never goes below zero: an unmatched `end` must not make a server look saturated
    /// (see the callers: `end` on `Marks` and on a grant).
    pub(super) fn end(&self) {
        let _ = self
            .active
            .count
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

/// The marks of every server of one group, indexed like its servers.
pub(super) struct Marks {
    servers: Box<[Arc<ServerMarks>]>,
}

fn unpack(window: u64) -> (u32, u64) {
    ((window >> START_BITS) as u32, window & START_MASK)
}

fn pack(count: u32, start: u64) -> u64 {
    (u64::from(count.min(MAX_COUNT)) << START_BITS) | (start & START_MASK)
}

impl Marks {
    pub(super) fn new(servers: usize) -> Marks {
        Marks {
            servers: (0..servers).map(|_| Arc::default()).collect(),
        }
    }

    /// Server `idx` shares `from`'s marks of server `from_idx` from now on (a reload keeping
    /// a server). Out-of-range indexes are ignored.
    pub(super) fn share(&mut self, idx: usize, from: &Marks, from_idx: usize) {
        if let (Some(slot), Some(marks)) = (self.servers.get_mut(idx), from.servers.get(from_idx)) {
            *slot = marks.clone();
        }
    }

    /// The shared marks of server `idx` (what a wait-queue grant names its server by).
    pub(super) fn server(&self, idx: usize) -> Option<&Arc<ServerMarks>> {
        self.servers.get(idx)
    }

    fn active_mark(&self, idx: usize) -> Option<&ActiveMark> {
        self.servers.get(idx).map(|s| &s.active)
    }

    fn fail_mark(&self, idx: usize) -> Option<&FailMark> {
        self.servers.get(idx).map(|s| &s.fail)
    }

    pub(super) fn begin(&self, idx: usize) {
        if let Some(mark) = self.active_mark(idx) {
            mark.count.fetch_add(1, Relaxed);
        }
    }

    /// Counts a request on `idx` unless it is at `max_conns` (0 = no cap).
    pub(super) fn try_begin(&self, idx: usize, max_conns: u32) -> bool {
        self.servers
            .get(idx)
            .is_some_and(|marks| marks.try_begin(max_conns))
    }

    pub(super) fn end(&self, idx: usize) {
        if let Some(marks) = self.servers.get(idx) {
            marks.end();
        }
    }

    /// least_time's estimate of server `idx`'s time to first byte.
    #[inline]
    pub(super) fn time(&self, idx: usize) -> Option<&TimeMark> {
        self.active_mark(idx).map(|mark| &mark.time)
    }

    #[inline]
    pub(super) fn active(&self, idx: usize) -> u32 {
        self.active_mark(idx)
            .map_or(0, |mark| mark.count.load(Relaxed))
    }

    /// Counts a failure at `now_ms`; marks the server down for `fail_timeout_ms` when the count
    /// reaches `max_fails` (0 disables). The count restarts when the window that began with
    /// its first failure is over. A server that was marked and has not succeeded since is
    /// re-marked by a single failure, as nginx does for the probe after the timeout.
    pub(super) fn failed(&self, idx: usize, now_ms: u64, max_fails: u32, fail_timeout_ms: u64) {
        let Some(mark) = self.fail_mark(idx) else {
            return;
        };
        if max_fails == 0 {
            return;
        }
        let max_fails = max_fails.min(MAX_COUNT);
        let mut current = mark.window.load(Relaxed);
        loop {
            let (count, start) = unpack(current);
            let expired = now_ms.saturating_sub(start) >= fail_timeout_ms;
            let (count, start) = if count >= max_fails {
                (count.saturating_add(1), start)
            } else if count == 0 || expired {
                (1, now_ms)
            } else {
                (count + 1, start)
            };
            match mark
                .window
                .compare_exchange_weak(current, pack(count, start), Relaxed, Relaxed)
            {
                Ok(_) => {
                    if count >= max_fails {
                        // fetch_max: a late report of an older failure never shortens the mark.
                        let until = now_ms.saturating_add(fail_timeout_ms);
                        mark.down_until.fetch_max(until, Relaxed);
                    }
                    return;
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Forgets counted failures. Reads first so that the common case (nothing to forget)
    /// does not write the shared line on every successful request. The current down period,
    /// if any, still runs out: a success of a request sent before the mark proves little.
    pub(super) fn succeeded(&self, idx: usize) {
        if let Some(mark) = self.fail_mark(idx)
            && mark.window.load(Relaxed) != 0
        {
            mark.window.store(0, Relaxed);
        }
    }

    /// Not marked by passive failures nor by active probes at `now_ms`.
    #[inline]
    pub(super) fn healthy(&self, idx: usize, now_ms: u64) -> bool {
        self.fail_mark(idx).is_some_and(|mark| {
            !mark.probe_down.load(Relaxed) && now_ms >= mark.down_until.load(Relaxed)
        })
    }

    /// Marks the server busy until `until_ms` (a later mark already set is kept: answers
    /// may arrive out of order).
    pub(super) fn set_busy(&self, idx: usize, until_ms: u64) {
        if let Some(mark) = self.fail_mark(idx) {
            mark.busy_until.fetch_max(until_ms, Relaxed);
        }
    }

    /// When the server's busy mark ends, in ms (0 or past: not busy). Read from the line
    /// `healthy` reads.
    #[inline]
    pub(super) fn busy_until(&self, idx: usize) -> u64 {
        self.fail_mark(idx)
            .map_or(0, |mark| mark.busy_until.load(Relaxed))
    }

    /// Records a probe verdict; a server the probes bring back is back since `now_ms`.
    pub(super) fn set_probe_up(&self, idx: usize, up: bool, now_ms: u64) {
        if let Some(mark) = self.fail_mark(idx) {
            let was_down = mark.probe_down.swap(!up, Relaxed);
            if up && was_down {
                mark.back_since.fetch_max(now_ms, Relaxed);
            }
        }
    }

    /// The server is available again from `now_ms` on (added, or no longer `down`).
    pub(super) fn came_back(&self, idx: usize, now_ms: u64) {
        if let Some(mark) = self.fail_mark(idx) {
            mark.back_since.fetch_max(now_ms, Relaxed);
        }
    }

    /// When the server last became available: the later of its last comeback and the end
    /// of its last passive mark (0 = it never was out). Read from the line `healthy` reads.
    #[inline]
    pub(super) fn back_since(&self, idx: usize) -> u64 {
        self.fail_mark(idx).map_or(0, |mark| {
            mark.back_since
                .load(Relaxed)
                .max(mark.down_until.load(Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_packs_count_and_start() {
        let (count, start) = unpack(pack(7, 123_456_789));
        assert_eq!((count, start), (7, 123_456_789));
        assert_eq!(unpack(pack(u32::MAX, 1)).0, MAX_COUNT);
    }

    #[test]
    fn end_without_begin_stays_at_zero() {
        let marks = Marks::new(1);
        marks.end(0);
        assert_eq!(marks.active(0), 0);
        marks.begin(0);
        marks.end(0);
        marks.end(0);
        assert_eq!(marks.active(0), 0);
    }

    #[test]
    fn out_of_range_indexes_are_ignored() {
        let marks = Marks::new(2);
        marks.begin(5);
        marks.end(5);
        marks.failed(5, 10, 1, 10);
        marks.succeeded(5);
        marks.set_probe_up(5, false, 1);
        assert_eq!(marks.active(5), 0);
        assert!(!marks.healthy(5, 10));
    }

    #[test]
    fn marked_server_is_remarked_by_one_failure_until_it_succeeds() {
        let marks = Marks::new(1);
        marks.failed(0, 1000, 3, 100);
        marks.failed(0, 1010, 3, 100);
        marks.failed(0, 1020, 3, 100);
        assert!(!marks.healthy(0, 1119));
        assert!(marks.healthy(0, 1120));
        // The probe after the timeout fails: down again at once.
        marks.failed(0, 1200, 3, 100);
        assert!(!marks.healthy(0, 1250));
        assert!(marks.healthy(0, 1300));
        // After a success it takes max_fails failures again.
        marks.succeeded(0);
        marks.failed(0, 1400, 3, 100);
        assert!(marks.healthy(0, 1401));
    }

    #[test]
    fn a_busy_mark_only_grows_and_leaves_health_alone() {
        let marks = Marks::new(1);
        assert_eq!(marks.busy_until(0), 0);
        marks.set_busy(0, 5000);
        marks.set_busy(0, 3000);
        assert_eq!(
            marks.busy_until(0),
            5000,
            "a late, shorter answer keeps the mark"
        );
        assert!(marks.healthy(0, 4000), "busy is not failed");
        assert_eq!(marks.busy_until(7), 0);
    }

    #[test]
    fn probe_down_overrides_passive_state() {
        let marks = Marks::new(1);
        assert!(marks.healthy(0, 5));
        marks.set_probe_up(0, false, 5);
        assert!(!marks.healthy(0, 5));
        marks.set_probe_up(0, true, 5);
        assert!(marks.healthy(0, 5));
    }

    #[test]
    fn back_since_is_the_later_of_a_comeback_and_a_passive_mark_ending() {
        let marks = Marks::new(1);
        assert_eq!(marks.back_since(0), 0);
        marks.failed(0, 1000, 1, 500);
        assert_eq!(marks.back_since(0), 1500);
        // Probes saying "up" to a server they never took out is no comeback.
        marks.set_probe_up(0, true, 2000);
        assert_eq!(marks.back_since(0), 1500);
        marks.set_probe_up(0, false, 3000);
        marks.set_probe_up(0, true, 4000);
        assert_eq!(marks.back_since(0), 4000);
        marks.came_back(0, 3500);
        assert_eq!(marks.back_since(0), 4000);
    }
}
