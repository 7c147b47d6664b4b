//! Idle keep-alive connections that are not tasks.
//!
//! A client that keeps its connection open between requests (SDKs do, for minutes) costs
//! a task while it waits: the task's header, the `serve` future, the socket's shared
//! descriptor and a pending readiness operation, about 1.4 KB. nginx keeps such a
//! connection as a preallocated structure in an event table (about 0.5 KB). Once a
//! connection has been idle for [`PARK_AFTER`], its task ends and what it needs to go on
//! (socket, addresses, counters, configuration, how many requests it served) becomes an
//! entry here, about 130 bytes. The sockets are watched by one epoll instance per worker
//! (the kernel's bookkeeping, not ours), itself waited on through the worker's runtime; a
//! socket that turns readable (a request, or the client leaving) is taken out and served
//! by a new task from where it stopped. The worker's ticks close entries whose
//! `keepalive_timeout` has passed, and a drain closes them as it closes waiting tasks.
//!
//! Hot keep-alive connections never come here: a request within [`PARK_AFTER`] finds its
//! task still waiting, so a busy connection pays nothing for this.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Admitted, LocalSnapshot};

/// How long a kept-alive connection waits as a task before it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(100);
/// How often parked connections are looked at for an expired `keepalive_timeout` (so an
/// idle connection closes at most this late).
pub const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 64;

/// One parked connection: all a new task needs to serve its next request.
pub struct Parked {
    pub socket: OwnedFd,
    pub peer: SocketAddr,
    pub bind: SocketAddr,
    pub held: Admitted,
    /// The configuration it was served with (kept, as a waiting task keeps it: a reload
    /// that removed its listener still lets it finish what it was promised).
    pub local: Rc<LocalSnapshot>,
    /// Requests served on it so far.
    pub count: u32,
    /// When it became idle.
    pub since: Instant,
    /// When its `keepalive_timeout` ends ([`crate::clock::now_ms`]).
    pub expires_ms: u64,
}

/// The parked connections of one worker and the epoll instance watching their sockets.
#[derive(Default)]
pub struct ParkedSet {
    epoll: Option<Rc<Epoll>>,
    slots: Vec<Option<Parked>>,
    free: Vec<usize>,
    /// The task waiting on the epoll instance runs.
    pub polling: bool,
}

/// An epoll instance, and the same descriptor as the runtime sees it (to wait until one
/// of the watched sockets is ready).
pub struct Epoll {
    fd: OwnedFd,
    /// monoio waits for readiness only through its socket types; `readable` is a PollAdd
    /// (io_uring) or a registration in its own epoll (legacy), valid for any pollable
    /// descriptor, so the epoll instance is handed to it as one. It owns a duplicate.
    waiter: monoio::net::UnixStream,
}

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory arguments; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let dup = fd.try_clone()?;
        let waiter = monoio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(dup))?;
        Ok(Epoll { fd, waiter })
    }

    /// Waits until some watched socket is ready, at most `limit`. A wait the runtime
    /// refuses (it should not) sleeps `limit` instead, so that the caller never spins.
    pub async fn wait(&self, limit: Duration) {
        if let Ok(Err(e)) = crate::timer::timeout(limit, self.waiter.readable(false)).await {
            crate::debug!("waiting on parked connections: {e}");
            crate::timer::sleep(limit).await;
        }
    }

    fn control(&self, op: libc::c_int, socket: &OwnedFd, slot: usize) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: slot as u64,
        };
        // SAFETY: both descriptors are open and owned by us; `event` lives for the call.
        let rc =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, socket.as_raw_fd(), &mut event) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl ParkedSet {
    /// The epoll instance, made on first use.
    pub fn epoll(&mut self) -> std::io::Result<Rc<Epoll>> {
        if let Some(e) = &self.epoll {
            return Ok(e.clone());
        }
        let e = Rc::new(Epoll::new()?);
        self.epoll = Some(e.clone());
        Ok(e)
    }

    /// Parks `conn`. A socket the kernel will not watch (no memory, or no epoll instance)
    /// comes back: the caller closes it, as it would at its keep-alive timeout.
    pub fn park(&mut self, conn: Parked) -> Result<(), Box<Parked>> {
        let epoll = match self.epoll() {
            Ok(e) => e,
            Err(_) => return Err(Box::new(conn)),
        };
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if let Err(e) = epoll.control(libc::EPOLL_CTL_ADD, &conn.socket, slot) {
            crate::debug!("{}: parking an idle connection: {e}", conn.peer);
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return Err(Box::new(conn));
        }
        if slot == self.slots.len() {
            self.slots.push(Some(conn));
        } else {
            self.slots[slot] = Some(conn);
        }
        Ok(())
    }

    /// Takes out the connections whose sockets are readable now (a request, or the client
    /// left): they go back to being tasks.
    pub fn take_ready(&mut self) -> Vec<Parked> {
        let Some(epoll) = self.epoll.clone() else {
            return Vec::new();
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut ready = Vec::new();
        loop {
            // SAFETY: `events` has room for EVENTS entries; a zero timeout never blocks.
            let n = unsafe {
                libc::epoll_wait(epoll.fd.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, 0)
            };
            if n <= 0 {
                break;
            }
            for event in &events[..n as usize] {
                if let Some(conn) = self.remove(event.u64 as usize) {
                    ready.push(conn);
                }
            }
            if (n as usize) < EVENTS {
                break;
            }
        }
        ready
    }

    /// Takes out the connections whose `keepalive_timeout` ended by `now_ms`, and those
    /// idle for `grace` or longer on a listener for which `closing` holds, unless their
    /// next request is already waiting in the socket: the caller drops them (which closes
    /// them).
    pub fn take_closing(
        &mut self,
        now_ms: u64,
        closing: impl Fn(SocketAddr) -> bool,
        grace: Duration,
    ) -> Vec<Parked> {
        let mut out = Vec::new();
        for slot in 0..self.slots.len() {
            let Some(conn) = &self.slots[slot] else {
                continue;
            };
            let expired = conn.expires_ms <= now_ms;
            let drained = conn.since.elapsed() >= grace
                && closing(conn.bind)
                && !super::idle::has_pending_bytes(conn.socket.as_raw_fd());
            if (expired || drained)
                && let Some(conn) = self.remove(slot)
            {
                out.push(conn);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&mut self, slot: usize) -> Option<Parked> {
        let conn = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        if let Some(epoll) = &self.epoll
            && let Err(e) = epoll.control(libc::EPOLL_CTL_DEL, &conn.socket, slot)
        {
            crate::debug!("{}: unparking: {e}", conn.peer);
        }
        Some(conn)
    }
}

#[cfg(test)]
mod tests;
