//! Timeouts for socket operations: one hashed timer wheel per worker thread instead of one
//! monoio timer per operation.
//!
//! Every read, write, connect and idle wait of a connection has a deadline, so a request
//! sets up a dozen of them. monoio's `timeout` embeds a `Sleep` of 640 bytes (its timer
//! entry is padded to cache lines for a multi-threaded driver it does not have) in every
//! future that waits: it made an idle keep-alive connection's task 2.5 KiB and its moves
//! were the largest `memcpy` source per request. Here a pending deadline is a slot index
//! in a per-thread slab (a few bytes in the future), and one driver task per worker wakes
//! every `TICK` while any deadline is pending, firing the expired ones.
//!
//! Deadlines are rounded up to the next tick and never fire early; they may fire up to
//! one `TICK` late, which is what nginx's and HAProxy's millisecond timers give too.
//! An operation that completes on its first poll never touches the wheel.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Wheel resolution.
pub const TICK: Duration = Duration::from_millis(4);
const TICK_MS: u64 = 4;
/// Buckets in the wheel (a power of two): one revolution is `SLOTS × TICK` ≈ 4 s. A
/// longer deadline waits in its bucket and is looked at once per revolution.
const SLOTS: usize = 1024;

/// The operation did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` until it completes or `limit` has passed; in the latter case `fut` is
/// dropped (cancelling its I/O) and `Err(Elapsed)` is returned.
pub fn timeout<F: Future>(limit: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        limit,
        key: None,
    }
}

/// Waits `limit` on the wheel (a sleep that costs a slot index, not monoio's 640-byte
/// `Sleep`).
pub async fn sleep(limit: Duration) {
    let _ = timeout(limit, std::future::pending::<()>()).await;
}

/// The future of [`timeout`].
pub struct Timeout<F> {
    fut: F,
    limit: Duration,
    /// The wheel entry, once the inner future has returned `Pending`.
    key: Option<Key>,
}

/// A wheel entry: its slab index and the generation it was created in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    index: u32,
    generation: u32,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is never moved out of `self` (structural pinning); the other fields
        // are plain data that are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `this.fut` stays at this address until `Timeout` is dropped.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(out) = fut.poll(cx) {
            if let Some(key) = this.key.take() {
                with_wheel(|w| w.remove(key));
            }
            return Poll::Ready(Ok(out));
        }
        match this.key {
            None => {
                let limit = this.limit;
                this.key = Some(with_wheel(|w| w.insert(limit, cx.waker())));
                Poll::Pending
            }
            Some(key) => {
                if with_wheel(|w| w.poll_entry(key, cx.waker())) {
                    this.key = None;
                    Poll::Ready(Err(Elapsed))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // A thread that is exiting may have dropped its wheel already.
            let _ = WHEEL.try_with(|w| w.borrow_mut().remove(key));
        }
    }
}

thread_local! {
    static WHEEL: RefCell<Wheel> = const { RefCell::new(Wheel::new()) };
}

fn with_wheel<R>(f: impl FnOnce(&mut Wheel) -> R) -> R {
    WHEEL.with(|w| f(&mut w.borrow_mut()))
}

/// One pending deadline.
struct Entry {
    /// In ticks since the wheel's epoch.
    deadline: u64,
    waker: Option<Waker>,
    generation: u32,
    /// Where the entry sits: `buckets[bucket][pos]` (for O(1) removal).
    bucket: u32,
    pos: u32,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Pending,
    Fired,
}

/// A worker's deadlines.
struct Wheel {
    epoch: Option<Instant>,
    /// The last tick processed.
    tick: u64,
    entries: Vec<Entry>,
    free: Vec<u32>,
    buckets: Vec<Vec<u32>>,
    /// Entries in `Pending` state.
    pending: usize,
    /// The driver task runs (`None`) or waits to be woken for a first entry.
    driver: Driver,
}

enum Driver {
    /// No driver task on this thread yet.
    Absent,
    Running,
    /// Parked while no deadline is pending; woken by the next insert.
    Parked(Waker),
}

impl Wheel {
    const fn new() -> Wheel {
        Wheel {
            epoch: None,
            tick: 0,
            entries: Vec::new(),
            free: Vec::new(),
            buckets: Vec::new(),
            pending: 0,
            driver: Driver::Absent,
        }
    }

    fn now_tick(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_millis() as u64 / TICK_MS
    }

    fn insert(&mut self, limit: Duration, waker: &Waker) -> Key {
        if self.buckets.is_empty() {
            self.buckets = (0..SLOTS).map(|_| Vec::new()).collect();
        }
        if self.pending == 0 {
            // The driver was parked: `tick` is stale.
            self.tick = self.now_tick(Instant::now());
        }
        // Round up, plus one tick: `tick` may be up to one tick old, and a deadline must
        // never fire early.
        let ticks = limit.as_millis().div_ceil(u128::from(TICK_MS)) as u64 + 1;
        let deadline = self.tick.saturating_add(ticks);
        let bucket = (deadline % SLOTS as u64) as u32;
        let pos = self.buckets[bucket as usize].len() as u32;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    deadline: 0,
                    waker: None,
                    generation: 0,
                    bucket: 0,
                    pos: 0,
                    state: State::Free,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[index as usize];
        debug_assert!(e.state == State::Free);
        e.deadline = deadline;
        e.waker = Some(waker.clone());
        e.bucket = bucket;
        e.pos = pos;
        e.state = State::Pending;
        let key = Key {
            index,
            generation: e.generation,
        };
        self.buckets[bucket as usize].push(index);
        self.pending += 1;
        self.wake_driver();
        key
    }

    /// Whether the entry fired; if not, keeps the task's current waker.
    fn poll_entry(&mut self, key: Key, waker: &Waker) -> bool {
        let Some(e) = self.entries.get_mut(key.index as usize) else {
            return true;
        };
        if e.generation != key.generation {
            return true;
        }
        match e.state {
            State::Pending => {
                if !e.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    e.waker = Some(waker.clone());
                }
                false
            }
            State::Fired | State::Free => {
                self.release(key.index);
                true
            }
        }
    }

    /// Drops the entry (the operation completed, or its future went away).
    fn remove(&mut self, key: Key) {
        let Some(e) = self.entries.get(key.index as usize) else {
            return;
        };
        if e.generation != key.generation {
            return;
        }
        if e.state == State::Pending {
            self.unlink(key.index);
        }
        self.release(key.index);
    }

    /// Takes a pending entry out of its bucket.
    fn unlink(&mut self, index: u32) {
        let (bucket, pos) = {
            let e = &self.entries[index as usize];
            (e.bucket as usize, e.pos as usize)
        };
        let list = &mut self.buckets[bucket];
        debug_assert_eq!(list[pos], index);
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            self.entries[moved as usize].pos = pos as u32;
        }
        self.pending -= 1;
    }

    fn release(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        if e.state == State::Free {
            return;
        }
        e.state = State::Free;
        e.waker = None;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(index);
    }

    /// Fires every entry due at or before `now`; gives the wakers to call (outside the
    /// borrow of the wheel, since a woken task may run and touch it).
    fn advance(&mut self, now: Instant, woken: &mut Vec<Waker>) {
        let now_tick = self.now_tick(now);
        // More than a revolution behind: every bucket is looked at once.
        let from = self.tick.max(now_tick.saturating_sub(SLOTS as u64 - 1));
        for t in from..=now_tick {
            let bucket = (t % SLOTS as u64) as usize;
            let mut pos = 0;
            while pos < self.buckets[bucket].len() {
                let index = self.buckets[bucket][pos];
                let e = &mut self.entries[index as usize];
                if e.deadline > now_tick {
                    pos += 1;
                    continue;
                }
                e.state = State::Fired;
                if let Some(w) = e.waker.take() {
                    woken.push(w);
                }
                // The fired entry leaves the bucket (the last one moves into `pos`); the
                // future releases the slot when it sees `Fired`.
                self.buckets[bucket].swap_remove(pos);
                if let Some(&moved) = self.buckets[bucket].get(pos) {
                    self.entries[moved as usize].pos = pos as u32;
                }
                self.pending -= 1;
            }
        }
        self.tick = now_tick;
    }

    fn wake_driver(&mut self) {
        match std::mem::replace(&mut self.driver, Driver::Running) {
            Driver::Running => {}
            Driver::Parked(w) => w.wake(),
            Driver::Absent => {
                monoio::spawn(drive());
            }
        }
    }
}

/// The driver task: ticks while deadlines are pending, parks while none are.
async fn drive() {
    // If the runtime goes away (a test's), the next runtime on this thread starts afresh.
    struct Gone;
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = WHEEL.try_with(|w| w.borrow_mut().driver = Driver::Absent);
        }
    }
    let _gone = Gone;
    let mut woken = Vec::new();
    loop {
        if with_wheel(|w| w.pending) == 0 {
            std::future::poll_fn(|cx| {
                with_wheel(|w| {
                    if w.pending > 0 {
                        w.driver = Driver::Running;
                        Poll::Ready(())
                    } else {
                        w.driver = Driver::Parked(cx.waker().clone());
                        Poll::Pending
                    }
                })
            })
            .await;
        }
        monoio::time::sleep(TICK).await;
        with_wheel(|w| w.advance(Instant::now(), &mut woken));
        for w in woken.drain(..) {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop_waker() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn entries_fire_at_their_deadline_not_before() {
        let mut w = Wheel::new();
        w.buckets = (0..SLOTS).map(|_| Vec::new()).collect();
        w.driver = Driver::Running;
        let t0 = Instant::now();
        w.epoch = Some(t0);
        let waker = noop_waker();
        let short = w.insert(Duration::from_millis(10), &waker);
        let long = w.insert(Duration::from_secs(10), &waker);
        let mut woken = Vec::new();
        w.advance(t0 + Duration::from_millis(9), &mut woken);
        assert!(woken.is_empty());
        assert!(!w.poll_entry(short, &waker));
        w.advance(t0 + Duration::from_millis(30), &mut woken);
        assert_eq!(woken.len(), 1);
        assert!(w.poll_entry(short, &waker), "fired");
        assert!(!w.poll_entry(long, &waker));
        // Several revolutions later the long one is still only due at 10 s.
        w.advance(t0 + Duration::from_millis(9_990), &mut woken);
        assert_eq!(woken.len(), 1);
        w.advance(t0 + Duration::from_millis(10_020), &mut woken);
        assert_eq!(woken.len(), 2);
        assert!(w.poll_entry(long, &waker));
        assert_eq!(w.pending, 0);
    }

    #[test]
    fn removed_entries_never_fire_and_slots_are_reused() {
        let mut w = Wheel::new();
        w.buckets = (0..SLOTS).map(|_| Vec::new()).collect();
        w.driver = Driver::Running;
        let t0 = Instant::now();
        w.epoch = Some(t0);
        let waker = noop_waker();
        let keys: Vec<Key> = (0..5)
            .map(|_| w.insert(Duration::from_millis(8), &waker))
            .collect();
        // Remove from the middle of one bucket: the others keep correct positions.
        w.remove(keys[1]);
        w.remove(keys[3]);
        let again = w.insert(Duration::from_millis(8), &waker);
        assert_eq!(again.index, keys[3].index, "slot reused");
        assert_ne!(again.generation, keys[3].generation);
        w.remove(keys[3]); // stale key: no effect on the new entry
        let mut woken = Vec::new();
        w.advance(t0 + Duration::from_millis(40), &mut woken);
        assert_eq!(woken.len(), 4);
        for k in [keys[0], keys[2], keys[4], again] {
            assert!(w.poll_entry(k, &waker));
        }
        assert_eq!(w.pending, 0);
        assert_eq!(w.free.len(), w.entries.len());
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_slow_future_times_out_and_a_fast_one_does_not() {
        let started = Instant::now();
        let slow = timeout(
            Duration::from_millis(30),
            monoio::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert_eq!(slow, Err(Elapsed));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let fast = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(fast, Ok(7));
        let later = timeout(
            Duration::from_secs(5),
            monoio::time::sleep(Duration::from_millis(10)),
        )
        .await;
        assert_eq!(later, Ok(()));
        assert_eq!(with_wheel(|w| w.pending), 0);
    }

    #[test]
    fn a_timeout_future_is_small() {
        let f = timeout(Duration::from_secs(1), std::future::ready(()));
        // monoio's `timeout` around the same future is over 640 bytes.
        assert!(
            std::mem::size_of_val(&f) <= 32,
            "{}",
            std::mem::size_of_val(&f)
        );
    }
}
