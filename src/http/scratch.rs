//! What a client connection needs only while a request is read or served, lent by the
//! worker and given back when the connection goes idle.
//!
//! An idle keep-alive connection then holds its socket and a few empty `Vec` headers,
//! nothing else: no read buffer (it waits for readiness before it takes one), no head copy,
//! no hash key, no attempt records. Ten thousand idle SDK clients cost what their sockets
//! cost, as with nginx, which frees a keep-alive connection's request pool and buffers in
//! the same way (`ngx_http_set_keepalive`). A busy worker reuses the same few scratch sets,
//! so lending is a `Vec` pop and push, not an allocation.
//!
//! A head that stops part-way (a slow client, a slowloris attack) is parked while it waits
//! for its next bytes: they move to a `Vec` of their own size and the scratch set goes
//! back, so such a connection holds its few hundred bytes, not a 16 KiB read buffer (nginx
//! starts a head in a 1 KiB `client_header_buffer_size` for the same reason). A head that
//! arrives whole in one read, the usual case, is never parked and copies nothing.

use crate::http::io::{Inbound, READ_CHUNK};
use crate::http::proxy::Downstream;
use crate::http::vars::UpstreamTry;
use crate::worker::Worker;

/// Scratch sets a worker keeps for reuse; more than this many requests in flight at once
/// allocate their own and free them afterwards.
const SPARE_SCRATCH: usize = 1024;
/// A read buffer that grew beyond this (a long head, a large pipelined burst) is not kept.
const KEEP_READ_BUFFER: usize = 4 * READ_CHUNK;
/// A head copy that grew beyond this is not kept.
const KEEP_HEAD_BUFFER: usize = 16 * 1024;

/// The largest partial head that is parked: beyond it the head keeps its read buffer (a
/// head that long is about to need it, and copying it back and forth would cost more).
pub const PARK_HEAD_UP_TO: usize = 2 * 1024;

/// The per-request buffers of one connection.
#[derive(Default)]
pub struct Scratch {
    /// Backing store of `Downstream::inbound`.
    read: Vec<u8>,
    head: Vec<u8>,
    key: Vec<u8>,
    tries: Vec<UpstreamTry>,
}

impl Scratch {
    fn fresh() -> Scratch {
        Scratch {
            read: Vec::with_capacity(READ_CHUNK),
            ..Scratch::default()
        }
    }

    /// Whether this set is worth keeping for the next connection.
    fn reusable(&self) -> bool {
        self.read.capacity() >= READ_CHUNK
            && self.read.capacity() <= KEEP_READ_BUFFER
            && self.head.capacity() <= KEEP_HEAD_BUFFER
    }
}

impl Worker {
    fn lend_scratch(&self) -> Scratch {
        self.scratch
            .borrow_mut()
            .pop()
            .unwrap_or_else(Scratch::fresh)
    }

    fn return_scratch(&self, mut s: Scratch) {
        let mut spare = self.scratch.borrow_mut();
        if spare.len() < SPARE_SCRATCH && s.reusable() {
            s.read.clear();
            s.head.clear();
            s.key.clear();
            s.tries.clear();
            spare.push(s);
        }
    }
}

impl Downstream {
    /// Whether the connection holds a scratch set (a full-size read buffer: not none, not
    /// a parked head's).
    pub fn has_scratch(&self) -> bool {
        self.inbound.capacity() >= READ_CHUNK
    }

    /// Takes a scratch set from the worker before reading (no-op if one is held); bytes
    /// already read (a parked head) move into its read buffer.
    pub fn take_scratch(&mut self, worker: &Worker) {
        if self.has_scratch() {
            return;
        }
        let mut s = worker.lend_scratch();
        s.read.clear();
        s.read.extend_from_slice(self.inbound.pending());
        self.inbound = Inbound::with_bytes(s.read);
        self.head_buf = s.head;
        self.key = s.key;
        self.tries = s.tries;
    }

    /// While a partial head waits for more bytes: when it is short and nothing more has
    /// arrived yet, keeps its bytes in a `Vec` of their own size and gives the scratch set
    /// back. Says whether it did (the caller then waits for readiness, holding no buffer).
    pub fn park_head(&mut self, worker: &Worker) -> bool {
        use crate::http::watch::peek;
        use crate::nowait::Peeked;
        let pending = self.inbound.pending();
        if !self.has_scratch()
            || pending.is_empty()
            || pending.len() > PARK_HEAD_UP_TO
            || !matches!(peek(&self.stream), Peeked::Nothing)
        {
            return false;
        }
        let parked = pending.to_vec();
        self.inbound.reset();
        self.return_scratch(worker);
        self.inbound = Inbound::with_bytes(parked);
        true
    }

    /// Gives the scratch set back while the connection waits for its next request. Only an
    /// empty inbound can go: pipelined bytes already read stay with the connection.
    pub fn give_scratch(&mut self, worker: &Worker) {
        if !self.has_scratch() || !self.inbound.is_empty() {
            return;
        }
        self.return_scratch(worker);
    }

    /// Hands the scratch set (read buffer, head copy, key, attempts) back to the worker.
    fn return_scratch(&mut self, worker: &Worker) {
        let s = Scratch {
            read: self.inbound.take_vec(),
            head: std::mem::take(&mut self.head_buf),
            key: std::mem::take(&mut self.key),
            tries: std::mem::take(&mut self.tries),
        };
        worker.return_scratch(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_buffers_are_not_kept() {
        let mut s = Scratch::fresh();
        assert!(s.reusable());
        s.read.reserve(KEEP_READ_BUFFER * 2);
        assert!(!s.reusable());
        let mut s = Scratch::fresh();
        s.head.reserve(KEEP_HEAD_BUFFER * 2);
        assert!(!s.reusable());
        assert!(
            !Scratch::default().reusable(),
            "a set without a read buffer"
        );
    }
}
