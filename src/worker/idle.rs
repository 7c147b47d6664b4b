//! Client connections of one worker that sit idle between keep-alive requests.
//!
//! A drain (or a listener removed by a reload) must close these soon (after a short grace,
//! see `worker::IDLE_GRACE`), not after `keepalive_timeout`. Cancelling their pending read would risk losing bytes a read had
//! already taken (a cancelled operation may still complete), so instead the socket's
//! receive side is shut: the pending read then ends with end-of-file and the connection
//! closes through its normal path. A connection whose next request has already arrived is
//! left alone: it is served, then closed.

use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Registered idle connections, by slot.
#[derive(Default)]
pub struct IdleSet {
    /// (listener, socket, idle since `clock::now_ms`).
    slots: Vec<Option<(SocketAddr, RawFd, u64)>>,
    free: Vec<usize>,
}

/// A connection's place in the [`IdleSet`] while it waits.
#[derive(Debug)]
pub struct IdleSlot(usize);

impl IdleSet {
    /// Registers the connection on `fd`, accepted on listener `bind`, as idle from `now_ms`.
    pub fn enter(&mut self, bind: SocketAddr, fd: RawFd, now_ms: u64) -> IdleSlot {
        let entry = Some((bind, fd, now_ms));
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = entry;
                IdleSlot(i)
            }
            None => {
                self.slots.push(entry);
                IdleSlot(self.slots.len() - 1)
            }
        }
    }

    /// The connection is no longer idle (a request arrived, or it closed).
    pub fn leave(&mut self, slot: IdleSlot) {
        if let Some(entry) = self.slots.get_mut(slot.0)
            && entry.take().is_some()
        {
            self.free.push(slot.0);
        }
    }

    /// Closes every connection idle since `idle_before` or earlier and accepted on a
    /// listener for which `closing` holds, unless its next request is already waiting in
    /// the socket.
    pub fn close_where(&mut self, closing: impl Fn(SocketAddr) -> bool, idle_before: u64) -> usize {
        let mut closed = 0;
        for entry in self.slots.iter_mut() {
            let Some((bind, fd, since)) = *entry else {
                continue;
            };
            if since <= idle_before && closing(bind) && !has_pending_bytes(fd) {
                // SAFETY: `fd` is a connected socket owned by a task of this worker that is
                // parked in a read; the entry is removed before that task can close it.
                unsafe { libc::shutdown(fd, libc::SHUT_RD) };
                closed += 1;
            }
        }
        closed
    }

    /// Whether any idle connection was accepted on a listener for which `closing` holds.
    pub fn any_where(&self, closing: impl Fn(SocketAddr) -> bool) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|(bind, _, _)| closing(*bind))
    }

    /// Connections registered as idle.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(super) fn has_pending_bytes(fd: RawFd) -> bool {
    crate::nowait::peek(fd) == crate::nowait::Peeked::Data
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    }

    #[test]
    fn slots_are_reused_and_counted() {
        let bind: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut set = IdleSet::default();
        let a = set.enter(bind, 10, 1);
        let b = set.enter(bind, 11, 1);
        assert_eq!(set.len(), 2);
        set.leave(a);
        assert_eq!(set.len(), 1);
        let c = set.enter(bind, 12, 1);
        assert_eq!(c.0, 0, "a freed slot is reused");
        assert!(set.any_where(|b| b == bind));
        assert!(!set.any_where(|b| b != bind));
        set.leave(b);
        set.leave(c);
        assert!(set.is_empty());
        assert!(!set.any_where(|_| true));
    }

    #[test]
    fn closing_shuts_reads_of_idle_sockets_on_matching_listeners_only() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let (_client1, mut server1) = pair();
        let (_client2, mut server2) = pair();
        let (mut client3, mut server3) = pair();
        client3.write_all(b"GET").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut set = IdleSet::default();
        let (_client4, server4) = pair();
        set.enter(a, server1.as_raw_fd(), 100);
        set.enter(b, server2.as_raw_fd(), 100);
        set.enter(a, server3.as_raw_fd(), 100);
        set.enter(a, server4.as_raw_fd(), 150);
        assert_eq!(set.close_where(|bind| bind == a, 120), 1);
        let mut buf = [0u8; 8];
        assert_eq!(server1.read(&mut buf).unwrap(), 0, "shut: reads end");
        server2.set_nonblocking(true).unwrap();
        assert!(
            server2.read(&mut buf).is_err(),
            "other listener: still open, no data"
        );
        assert_eq!(
            server3.read(&mut buf).unwrap(),
            3,
            "a waiting request is left to be served"
        );
    }
}
