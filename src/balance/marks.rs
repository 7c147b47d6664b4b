//! Per-server process-wide marks: active request counts and passive-health state, as atomics.
//!
//! These are the only parts of a group that every worker writes. A server's active count is
//! written at the start and at the end of every request, so it can be split into *lanes*, one
//! per worker, each alone on its cache line: a worker adds and subtracts on its own lane only
//! ([`enter_worker`] says which), and the count is the sum of the lanes. With one lane for
//! all, the line moves between the cores twice per request; with a lane per worker, a
//! worker's writes stay in its core's cache until someone reads the sum. Groups whose picks
//! read the counts (least_conn and the other load-aware policies) are given one lane, so a
//! pick reads one line per server (`Peers::with_workers` decides).
//!
//! A server with `max_conns` counts on lane 0 whichever worker it is, with a
//! compare-and-swap against the sum, so that the cap stays exact. Lanes add up with wrapping
//! arithmetic, so a request may start on one lane and end on another (a queue grant taken by
//! another worker, a reload that changed `max_conns`) and the sum stays right.
//!
//! The health marks sit on another line that is written only on failures, so reading them on
//! every pick stays a shared-cache hit. All orderings are `Relaxed`: a mark publishes no other
//! data, it only has to be atomic.
//!
//! Each server's marks are behind an `Arc` so that a reload can hand the very same marks to
//! the new snapshot's group for a server that stays (same upstream name and address):
//! requests still running on the old snapshot then end on the counter the new one reads,
//! and a failure mark or probe verdict survives the reload.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use super::least_time::TimeMark;

/// Bits of `FailMark::window` that hold the window start (ms since process start: 8900 years).
const START_BITS: u32 = 48;
const START_MASK: u64 = (1 << START_BITS) - 1;
/// The failure count has the remaining 16 bits; `max_fails` above this behaves like this.
const MAX_COUNT: u32 = u16::MAX as u32;
/// Bits of `FailMark::feedback` that hold when it was reported (ms since process start: 34
/// years); the count of other requests has the remaining 24.
const AT_BITS: u32 = 40;
const AT_MASK: u64 = (1 << AT_BITS) - 1;
const MAX_OTHERS: u64 = (1 << (64 - AT_BITS)) - 1;

/// Most lanes a server's count is split into: beyond this many workers, workers share lanes
/// (worker `id` uses lane `id % lanes`), which stays correct and only costs some sharing. It
/// bounds the memory (64 bytes a lane a server) and what a least_conn pick reads.
pub const MAX_LANES: usize = 16;

thread_local! {
    /// The lane of the worker running on this thread (0 for any other thread).
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread is worker `id`: its requests count on lane `id` (modulo the lanes).
pub fn enter_worker(id: usize) {
    LANE.with(|lane| lane.set(id));
}

/// One worker's share of a server's active count. Alone on its cache line: only its worker
/// writes it (and every worker, where there is one lane). Wrapping: a request that ends on
/// another lane than it began on leaves this one "negative"; only the sum is meaningful.
#[repr(align(64))]
#[derive(Default)]
struct Lane(AtomicU32);

/// least_time's estimate of the time to first byte, on a line of its own: every worker
/// writes it once per answer, and only in groups whose policy uses it.
#[repr(align(64))]
#[derive(Default)]
struct TimeLine(TimeMark);

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
    /// Load feedback: requests the server reported beyond this process's own (high 24
    /// bits) and when, in ms (low 40 bits); 0 = never. One word, so a pick reads a
    /// consistent pair; written once per poll interval, so it shares this quiet line.
    feedback: AtomicU64,
    /// What the server itself reported last (waiting + running), for `/metrics`.
    reported: AtomicU32,
    /// When the server last came back (probes up again, `down` lifted or added by a reload),
    /// in ms; 0 = never. With `down_until` (the end of a passive mark, which needs no write
    /// to be over) it starts the `slow_start` ramp.
    back_since: AtomicU64,
}

/// The marks of one server, each part on its own cache line(s).
pub(super) struct ServerMarks {
    /// Lane 0 of the active count, inline: a one-lane count (least_conn) is read without
    /// following a pointer. A server with `max_conns` counts every worker's requests here.
    first: Lane,
    /// Lanes 1 and up, one per further worker (at most [`MAX_LANES`] in all).
    more: Box<[Lane]>,
    time: TimeLine,
    fail: FailMark,
}

impl ServerMarks {
    fn new(lanes: usize) -> ServerMarks {
        ServerMarks {
            first: Lane::default(),
            more: (1..lanes.clamp(1, MAX_LANES))
                .map(|_| Lane::default())
                .collect(),
            time: TimeLine::default(),
            fail: FailMark::default(),
        }
    }

    /// This thread's lane (a division only where workers outnumber lanes).
    #[inline]
    fn lane(&self) -> &AtomicU32 {
        let lanes = self.more.len() + 1;
        let lane = match LANE.with(Cell::get) {
            _ if lanes == 1 => 0,
            lane if lane < lanes => lane,
            lane => lane % lanes,
        };
        match lane.checked_sub(1).and_then(|i| self.more.get(i)) {
            Some(more) => &more.0,
            None => &self.first.0,
        }
    }

    /// Lanes this server's count is split into.
    #[cfg(test)]
    pub(super) fn lane_count(&self) -> usize {
        self.more.len() + 1
    }

    /// Lanes 1 and up, added up (wrapping: see [`Lane`]).
    #[inline]
    fn more_sum(&self) -> u32 {
        self.more
            .iter()
            .fold(0, |sum, lane| sum.wrapping_add(lane.0.load(Relaxed)))
    }

    /// Active requests; an unmatched `end` reads as zero, never as four billion (which
    /// would make the server look saturated).
    #[inline]
    fn active(&self) -> u32 {
        non_negative(self.first.0.load(Relaxed).wrapping_add(self.more_sum()))
    }

    /// Counts one more request unless that would exceed `max_conns` (0 = no cap): how a
    /// request, and the wait queue for a waiter, takes a slot without overshooting the cap.
    /// Without a cap it counts on this worker's lane; with one, on lane 0 for every worker,
    /// so that the check and the count are one compare-and-swap.
    pub(super) fn try_begin(&self, max_conns: u32) -> bool {
        if max_conns == 0 {
            self.lane().fetch_add(1, Relaxed);
            return true;
        }
        // The other lanes of a capped server stay at zero but across a reload that set the cap.
        let others = self.more_sum();
        self.first
            .0
            .fetch_update(Relaxed, Relaxed, |n| {
                (non_negative(n.wrapping_add(others)) < max_conns).then_some(n.wrapping_add(1))
            })
            .is_ok()
    }

    /// The request counted by `try_begin(max_conns)` is over: off the same lane.
    pub(super) fn end(&self, max_conns: u32) {
        let lane = if max_conns == 0 {
            self.lane()
        } else {
            &self.first.0
        };
        lane.fetch_sub(1, Relaxed);
    }
}

/// A wrapping sum read as a count: what would be negative is zero.
#[inline]
fn non_negative(sum: u32) -> u32 {
    u32::try_from(sum as i32).unwrap_or(0)
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
    /// Marks for `servers` servers, their counts split into `lanes` lanes (the workers).
    pub(super) fn new(servers: usize, lanes: usize) -> Marks {
        Marks {
            servers: (0..servers)
                .map(|_| Arc::new(ServerMarks::new(lanes)))
                .collect(),
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

    fn fail_mark(&self, idx: usize) -> Option<&FailMark> {
        self.servers.get(idx).map(|s| &s.fail)
    }

    /// Counts a request on `idx`, cap or not (on this worker's lane).
    pub(super) fn begin(&self, idx: usize) {
        if let Some(marks) = self.servers.get(idx) {
            marks.lane().fetch_add(1, Relaxed);
        }
    }

    /// Counts a request on `idx` unless it is at `max_conns` (0 = no cap).
    pub(super) fn try_begin(&self, idx: usize, max_conns: u32) -> bool {
        self.servers
            .get(idx)
            .is_some_and(|marks| marks.try_begin(max_conns))
    }

    /// The request counted by `try_begin(idx, max_conns)` is over.
    pub(super) fn end(&self, idx: usize, max_conns: u32) {
        if let Some(marks) = self.servers.get(idx) {
            marks.end(max_conns);
        }
    }

    /// least_time's estimate of server `idx`'s time to first byte.
    #[inline]
    pub(super) fn time(&self, idx: usize) -> Option<&TimeMark> {
        self.servers.get(idx).map(|s| &s.time.0)
    }

    /// Active requests on `idx`, process-wide: every worker's lane.
    #[inline]
    pub(super) fn active(&self, idx: usize) -> u32 {
        self.servers.get(idx).map_or(0, |s| s.active())
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

    /// Records a poll of the server's own metrics at `now_ms`: it reported `reported`
    /// requests, `others` of them not this process's.
    pub(super) fn set_feedback(&self, idx: usize, others: u64, reported: u64, now_ms: u64) {
        if let Some(mark) = self.fail_mark(idx) {
            let packed = (others.min(MAX_OTHERS) << AT_BITS) | (now_ms.max(1) & AT_MASK);
            mark.feedback.store(packed, Relaxed);
            let reported = u32::try_from(reported).unwrap_or(u32::MAX);
            mark.reported.store(reported, Relaxed);
        }
    }

    /// The last poll: (requests not this process's, ms it was taken at; 0 = never).
    #[inline]
    pub(super) fn feedback(&self, idx: usize) -> (u64, u64) {
        let packed = self
            .fail_mark(idx)
            .map_or(0, |mark| mark.feedback.load(Relaxed));
        (packed >> AT_BITS, packed & AT_MASK)
    }

    /// What the server reported at its last poll (waiting + running).
    pub(super) fn reported(&self, idx: usize) -> u64 {
        self.fail_mark(idx)
            .map_or(0, |mark| u64::from(mark.reported.load(Relaxed)))
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

    /// Active health checks have the server down (`fall` bad probes, not yet `rise` good).
    pub(super) fn probe_down(&self, idx: usize) -> bool {
        self.fail_mark(idx)
            .is_some_and(|mark| mark.probe_down.load(Relaxed))
    }

    /// When the server's passive failure mark ends (0 = never marked; in the past = over).
    pub(super) fn down_until(&self, idx: usize) -> u64 {
        self.fail_mark(idx)
            .map_or(0, |mark| mark.down_until.load(Relaxed))
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
    fn end_without_begin_reads_as_zero() {
        for max_conns in [0, 5] {
            let marks = Marks::new(1, 2);
            marks.end(0, max_conns);
            assert_eq!(marks.active(0), 0);
            marks.begin(0);
            marks.end(0, max_conns);
            marks.end(0, max_conns);
            assert_eq!(marks.active(0), 0);
            assert!(marks.try_begin(0, 5), "not saturated by an unmatched end");
        }
    }

    #[test]
    fn each_worker_counts_on_its_own_lane() {
        let marks = Marks::new(1, 2);
        let server = &marks.servers[0];
        std::thread::scope(|scope| {
            for id in [0, 1] {
                let marks = &marks;
                scope.spawn(move || {
                    enter_worker(id);
                    (0..=id).for_each(|_| marks.begin(0));
                });
            }
        });
        let lanes = [&server.first, &server.more[0]].map(|l| l.0.load(Relaxed));
        assert_eq!(
            lanes,
            [1, 2],
            "worker 0 wrote lane 0 only, worker 1 lane 1 only"
        );
        assert_eq!(marks.active(0), 3);
        // Lane lines are cache lines of their own.
        assert_eq!(std::mem::align_of::<Lane>(), 64);
        assert_eq!(Marks::new(1, 1000).servers[0].lane_count(), MAX_LANES);
    }

    #[test]
    fn max_conns_holds_exactly_while_workers_race_for_the_last_slots() {
        const CAP: u32 = 7;
        let marks = Marks::new(1, 4);
        let taken: u32 = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|id| {
                    let marks = &marks;
                    scope.spawn(move || {
                        enter_worker(id);
                        (0..1000).filter(|_| marks.try_begin(0, CAP)).count() as u32
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
        });
        assert_eq!((taken, marks.active(0)), (CAP, CAP));
        marks.end(0, CAP);
        assert!(marks.try_begin(0, CAP) && !marks.try_begin(0, CAP));
    }

    #[test]
    fn uncapped_and_capped_counts_add_up_across_a_changed_cap() {
        // A reload set max_conns = 2 while one request counted without a cap is open.
        let marks = Marks::new(1, 2);
        assert!(marks.try_begin(0, 0));
        assert!(marks.try_begin(0, 2));
        assert!(
            !marks.try_begin(0, 2),
            "the uncapped request counts against the cap"
        );
        // It ends through the new config's `end`, on lane 0: the sum stays right.
        marks.end(0, 2);
        assert_eq!(marks.active(0), 1);
        marks.end(0, 2);
        assert_eq!(marks.active(0), 0);
    }

    #[test]
    fn out_of_range_indexes_are_ignored() {
        let marks = Marks::new(2, 2);
        marks.begin(5);
        marks.end(5, 0);
        marks.failed(5, 10, 1, 10);
        marks.succeeded(5);
        marks.set_probe_up(5, false, 1);
        assert_eq!(marks.active(5), 0);
        assert!(!marks.healthy(5, 10));
    }

    #[test]
    fn marked_server_is_remarked_by_one_failure_until_it_succeeds() {
        let marks = Marks::new(1, 1);
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
        let marks = Marks::new(1, 1);
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
    fn feedback_keeps_its_count_and_time_together() {
        let marks = Marks::new(1, 1);
        assert_eq!(marks.feedback(0), (0, 0), "never polled");
        marks.set_feedback(0, 7, 9, 123_456);
        assert_eq!((marks.feedback(0), marks.reported(0)), ((7, 123_456), 9));
        marks.set_feedback(0, u64::MAX, u64::MAX, 5);
        assert_eq!(marks.feedback(0), (MAX_OTHERS, 5));
        assert_eq!(marks.reported(0), u64::from(u32::MAX));
    }

    #[test]
    fn probe_down_overrides_passive_state() {
        let marks = Marks::new(1, 1);
        assert!(marks.healthy(0, 5));
        marks.set_probe_up(0, false, 5);
        assert!(!marks.healthy(0, 5));
        marks.set_probe_up(0, true, 5);
        assert!(marks.healthy(0, 5));
    }

    #[test]
    fn back_since_is_the_later_of_a_comeback_and_a_passive_mark_ending() {
        let marks = Marks::new(1, 1);
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
