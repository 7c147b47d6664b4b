//! The wait queue of one upstream group (`queue = { max, timeout }`): requests that found
//! every available server at its `max_conns` wait here, first in, first out, and a slot
//! freed on any worker goes straight to the oldest of them.
//!
//! Hand-off: the side that frees a slot ([`super::Peers::end`], on whichever worker) takes the
//! oldest waiter, counts a request on the freed server on the waiter's behalf (so a request
//! arriving meanwhile cannot take the slot first), records the [`Grant`] and rings the
//! waiter's doorbell: one end of a socket pair whose other end the waiting task reads
//! through its own event loop (io_uring or epoll alike). A request queued on worker 0 is
//! thus served by a slot freed on worker 1 without worker 0 polling anything, and without
//! monoio's cross-thread wakers (its `sync` feature, which ringway does not build with:
//! without it a foreign-thread wake panics).
//!
//! Locking: this is the one lock a worker takes, a short critical section around a
//! `VecDeque`, entered only when a group has a queue and every server is at its cap (to
//! join) or somebody waits (to grant or leave). A group with a queue but nobody waiting
//! costs a freed slot one fence and one atomic load; a group without a queue nothing.
//!
//! No lost wake-up: a waiter joins, then looks at the servers once more; a freeing side
//! uncounts its request, then looks at the queue. A `SeqCst` fence on each side between
//! the two steps means at least one of them sees the other.
//!
//! Limits: waiters are served by requests that end. Room that appears otherwise (a server
//! coming back, a reload raising `max_conns`) is found by the next request's pick, not
//! handed to the line; the line moves again with the next request that ends, or times out.
//! Each waiter holds a socket pair (two descriptors) while it waits; `queue.max` bounds them.
//!
//! Reloads: the queue belongs to the group's name, as marks belong to a server, and a
//! reload hands the same queue to the new snapshot (`Peers::inherit`): a request queued
//! before is served by a slot freed after, and the new `max` and `timeout` apply to requests
//! that join after the reload (a waiter keeps the deadline it joined with). A grant names its
//! server by its marks, which are shared the same way, so a waiter finds the server in its
//! own snapshot's list.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::marks::ServerMarks;

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const LEFT: u8 = 2;

/// Longest `Retry-After` ringway suggests: beyond a few minutes an estimate means little.
const MAX_RETRY_AFTER: u64 = crate::http::retry_after::MAX_SECS;

/// One group's queue. Shared by every worker and every snapshot that has the group.
#[derive(Default)]
pub struct WaitQueue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    /// Entries in `waiters`, readable without the lock (freed slots, `ringway_queue_depth`).
    len: AtomicUsize,
    /// Moving average of how long a granted waiter waited per place in line (itself and
    /// those ahead when it joined), in µs: the drain rate `Retry-After` is estimated from.
    /// 0 until a first waiter was served.
    per_place_us: AtomicU64,
    /// Requests turned away because the queue was full.
    full: AtomicU64,
    /// Requests that waited `queue.timeout` without a slot.
    timed_out: AtomicU64,
}

/// One queued request, as the queue sees it.
struct Waiter {
    /// `WAITING`, then `GRANTED` (by a freeing side) or `LEFT` (by the waiter): whoever
    /// moves it first decides.
    state: AtomicU8,
    /// Written before `state` becomes `GRANTED`.
    grant: OnceLock<(usize, Arc<ServerMarks>, u32)>,
    /// The write end of the waiter's doorbell.
    bell: UnixStream,
    joined: Instant,
    /// Waiters ahead of this one when it joined.
    ahead: usize,
}

/// A slot freed on one server: its index in the freeing side's group, its marks, its cap.
pub(super) struct FreedSlot<'a> {
    pub idx: usize,
    pub marks: &'a Arc<ServerMarks>,
    pub max_conns: u32,
}

/// A request counted on a server on a waiter's behalf. Dropping it uncounts the request
/// and offers the slot to the next waiter; [`super::Peers::adopt`] keeps it counted.
pub struct Grant {
    /// The server's index in the group that granted it (a hint: reloads may move it).
    pub(super) idx: usize,
    pub(super) marks: Arc<ServerMarks>,
    max_conns: u32,
    queue: Arc<WaitQueue>,
    /// Still to be released on drop.
    live: bool,
}

impl Grant {
    /// The request stays counted; its owner ends it like any other (`Peers::end`).
    pub(super) fn keep(mut self) {
        self.live = false;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.live {
            self.marks.end(self.max_conns);
            if !self.queue.has_waiters() {
                return;
            }
            self.queue.freed(&FreedSlot {
                idx: self.idx,
                marks: &self.marks,
                max_conns: self.max_conns,
            });
        }
    }
}

/// A place in the queue, held by the waiting request. Dropping it leaves the queue (and
/// passes on a slot granted meanwhile), so a cancelled wait never keeps a place or a slot.
pub struct Ticket {
    queue: Arc<WaitQueue>,
    waiter: Arc<Waiter>,
    /// The read end of the doorbell, until the waiting task takes it.
    bell: Option<UnixStream>,
    /// `leave` ran: nothing left to do on drop.
    done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in the critical sections panics; a poisoned queue is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WaitQueue {
    /// Requests waiting now (`ringway_queue_depth`).
    pub fn depth(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// (turned away because full, timed out), since the process started.
    pub fn rejections(&self) -> (u64, u64) {
        (self.full.load(Relaxed), self.timed_out.load(Relaxed))
    }

    /// Counts a waiter that gave up at its deadline.
    pub fn note_timeout(&self) {
        self.timed_out.fetch_add(1, Relaxed);
    }

    /// Seconds a refused client should wait before trying again: how long the queue takes
    /// to serve as many requests as wait now plus one, at the rate it has been serving them;
    /// `timeout` (the longest anyone waits) before any was served. At least 1.
    pub fn retry_after(&self, timeout: Duration) -> u32 {
        let per_place = self.per_place_us.load(Relaxed);
        let us = if per_place == 0 {
            u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX)
        } else {
            (self.depth() as u64 + 1).saturating_mul(per_place)
        };
        us.div_ceil(1_000_000).clamp(1, MAX_RETRY_AFTER) as u32
    }

    /// Takes a place at the back of the queue unless `max` are waiting. `Err` is counted.
    pub fn join(self: &Arc<Self>, max: usize) -> Result<Ticket, JoinError> {
        let (bell, ours) = doorbell().map_err(JoinError::Io)?;
        let mut waiters = lock(&self.waiters);
        if waiters.len() >= max {
            drop(waiters);
            self.full.fetch_add(1, Relaxed);
            return Err(JoinError::Full);
        }
        let waiter = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            grant: OnceLock::new(),
            bell,
            joined: Instant::now(),
            ahead: waiters.len(),
        });
        waiters.push_back(waiter.clone());
        self.len.fetch_add(1, Relaxed);
        drop(waiters);
        // Pairs with the fence in `has_waiters`: after this, either a freeing side sees us
        // queued, or the caller's next look at the servers sees the slot it freed.
        fence(SeqCst);
        Ok(Ticket {
            queue: self.clone(),
            waiter,
            bell: Some(ours),
            done: false,
        })
    }

    /// Whether anybody waits, as seen after a slot was uncounted (see the module doc).
    #[inline]
    pub(super) fn has_waiters(&self) -> bool {
        fence(SeqCst);
        self.len.load(Relaxed) != 0
    }

    /// A slot was uncounted on `slot`'s server and `has_waiters` said yes: grants it to the
    /// oldest waiter if the server still has room (a request arriving meanwhile may have
    /// taken it).
    pub(super) fn freed(&self, slot: &FreedSlot<'_>) {
        let granted = {
            let mut waiters = lock(&self.waiters);
            self.grant_oldest(&mut waiters, slot)
        };
        if let Some(waiter) = granted {
            // Outside the lock: a write to a socket, never blocking (a full one holds a
            // ring already, and one is all the waiter needs).
            let _ = (&waiter.bell).write(&[1]);
        }
    }

    fn grant_oldest(
        &self,
        waiters: &mut VecDeque<Arc<Waiter>>,
        slot: &FreedSlot<'_>,
    ) -> Option<Arc<Waiter>> {
        loop {
            let front = waiters.front()?;
            // One that left but has not taken itself out yet is only taken out for it.
            if front.state.load(Acquire) == WAITING {
                if !slot.marks.try_begin(slot.max_conns) {
                    return None;
                }
                let _ = front
                    .grant
                    .set((slot.idx, slot.marks.clone(), slot.max_conns));
            }
            let waiter = waiters.pop_front()?;
            self.len.fetch_sub(1, Relaxed);
            let granted = waiter
                .state
                .compare_exchange(WAITING, GRANTED, AcqRel, Acquire)
                .is_ok();
            if granted {
                self.note_served(&waiter);
                return Some(waiter);
            }
            if waiter.grant.get().is_some() {
                // It left between our look and the grant: the slot goes to the next one.
                slot.marks.end(slot.max_conns);
            }
        }
    }

    /// Folds a served waiter's wait into the drain rate (called under the lock).
    fn note_served(&self, waiter: &Waiter) {
        let waited = u64::try_from(waiter.joined.elapsed().as_micros()).unwrap_or(u64::MAX);
        let sample = (waited / (waiter.ahead as u64 + 1)).max(1);
        let old = self.per_place_us.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old.saturating_mul(7).saturating_add(sample)) / 8
        };
        self.per_place_us.store(new.max(1), Relaxed);
    }

    /// Takes `waiter` out of the line (if a freeing side has not already).
    fn remove(&self, waiter: &Arc<Waiter>) {
        let mut waiters = lock(&self.waiters);
        if let Some(pos) = waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            waiters.remove(pos);
            self.len.fetch_sub(1, Relaxed);
        }
    }
}

/// Why a request could not join.
#[derive(Debug)]
pub enum JoinError {
    /// `max` requests wait already.
    Full,
    /// No doorbell (out of file descriptors): treated like a full queue.
    Io(io::Error),
}

/// A connected, non-blocking socket pair: (the queue's write end, the waiter's read end).
fn doorbell() -> io::Result<(UnixStream, UnixStream)> {
    let (ring, hear) = UnixStream::pair()?;
    ring.set_nonblocking(true)?;
    hear.set_nonblocking(true)?;
    Ok((ring, hear))
}

impl Ticket {
    /// The read end of the doorbell: a byte arrives on it once a slot is granted. Given once.
    pub fn take_bell(&mut self) -> Option<UnixStream> {
        self.bell.take()
    }

    /// Whether a slot was granted (then `leave` hands it over).
    pub fn granted(&self) -> bool {
        self.waiter.state.load(Acquire) == GRANTED
    }

    /// Leaves the queue. `Some` when a slot was granted first: the caller now holds it.
    pub fn leave(mut self) -> Option<Grant> {
        self.done = true;
        self.settle()
    }

    fn settle(&self) -> Option<Grant> {
        let left = self
            .waiter
            .state
            .compare_exchange(WAITING, LEFT, AcqRel, Acquire);
        match left {
            Ok(_) => {
                self.queue.remove(&self.waiter);
                None
            }
            Err(_) => {
                let (idx, marks, max_conns) = self.waiter.grant.get()?.clone();
                Some(Grant {
                    idx,
                    marks,
                    max_conns,
                    queue: self.queue.clone(),
                    live: true,
                })
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            // A grant that arrived for a request that is gone is passed on (Grant's drop).
            drop(self.settle());
        }
    }
}

#[cfg(test)]
mod tests;
