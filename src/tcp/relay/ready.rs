//! The ready copier: `recv(2)` and `send(2)` called from the event loop when a socket is
//! ready, through a buffer lent for one chunk only, so an idle connection holds none.
//!
//! A direction waits until its source is readable (an io_uring `PollAdd`, a poll on
//! epoll) holding nothing, then borrows a buffer, reads what is there with `MSG_DONTWAIT`,
//! sends it on (waiting for room only when the destination says `EAGAIN`), and gives the
//! buffer back before it waits again. The buffer copier instead keeps a read operation,
//! with its 64 KiB buffer, pending on each direction for the connection's whole life.
//!
//! A direction that turns out to carry a bulk transfer ([`SPLICE_AFTER`] bytes read in
//! full chunks without the source ever running dry) goes on as the splice copier: splicing
//! costs a quarter of the CPU of copying through user space on large transfers and 10-25%
//! more on small exchanges (README, "TCP mode benchmark"), so each direction starts here
//! and moves only once it has shown which kind it is. It stays spliced to its end.

use std::io;
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;

use super::{Buffers, CHUNK, Direction};
use crate::clock::now_ms;
use crate::splice::Pipe;

/// Bytes a direction reads in full chunks in a row (its source never empty) before it
/// moves to splicing: 16 chunks, long past any HTTP exchange's answer that fits a socket
/// buffer, and a small share of the multi-megabyte transfers that gain from the move.
pub(super) const SPLICE_AFTER: u64 = 16 * CHUNK as u64;

impl Direction<'_> {
    /// One direction, `from` to `to`. `wait_first` as for the splice copier: wait for the
    /// source before the first read when it is not expected to have bytes yet.
    pub(super) async fn copy_ready(
        self,
        from: &TcpStream,
        to: &TcpStream,
        pool: &dyn Buffers,
        wait_first: bool,
    ) -> io::Result<Vec<u8>> {
        let mut wait = wait_first;
        // Bytes read in full chunks in a row; `None` once the move to splicing failed.
        let mut streak = Some(0u64);
        loop {
            if streak.is_some_and(|s| s >= SPLICE_AFTER) {
                match to_splice(from, to) {
                    // Boxed: only bulk transfers get here, and every idle connection's task
                    // would otherwise carry room for this future.
                    Ok(pipe) => return Box::pin(self.splice_through(pipe, from, to, false)).await,
                    // No descriptor for a pipe: copying on as before is as correct.
                    Err(_) => streak = None,
                }
            }
            if wait {
                // relaxed = false: on epoll ask the kernel, since the event loop's cached
                // readiness is not cleared by our own recv's EAGAIN.
                from.readable(false).await?;
            }
            let mut buf = pool.lend();
            let moved = match recv(from, &mut buf) {
                Ok(0) => {
                    pool.give_back(buf);
                    self.end_of_stream_now(to)?;
                    return Ok(Vec::new());
                }
                Ok(n) => {
                    self.activity.set(now_ms());
                    let sent = self.send_all(to, &buf[..n]).await;
                    pool.give_back(buf);
                    sent.map(|()| n)
                }
                Err(e) => {
                    pool.give_back(buf);
                    if e.kind() != io::ErrorKind::WouldBlock {
                        return Err(e);
                    }
                    wait = true;
                    streak = streak.map(|_| 0);
                    continue;
                }
            };
            // A short read most likely emptied the socket: wait for the next bytes rather
            // than make a recv that would only say so.
            let moved = moved?;
            wait = moved < CHUNK;
            streak = streak.map(|s| if wait { 0 } else { s + moved as u64 });
        }
    }

    /// Sends all of `bytes`, waiting for room when the socket's send buffer is full; no
    /// progress within `send` fails the direction.
    async fn send_all(&self, to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        // The read just before stamped the activity; only bytes that leave after a wait
        // for room stamp it again (a clock read per send was ~1% of a small exchange).
        let mut waited = false;
        while !bytes.is_empty() {
            match send(to, bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    bytes = &bytes[n..];
                    self.moved.set(self.moved.get() + n as u64);
                    if waited {
                        self.activity.set(now_ms());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::http::io::writable_within(to, self.send).await?;
                    waited = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A pipe for a direction moving to splicing, with both sockets made non-blocking (which
/// the other direction, if it still copies here, does not mind: its calls never wait
/// either way).
fn to_splice(from: &TcpStream, to: &TcpStream) -> io::Result<Pipe> {
    super::splice::non_blocking([from, to])?;
    Pipe::take()
}

/// One `recv(2)` that never waits (monoio's io_uring sockets are blocking), into `buf`
/// up to [`CHUNK`].
fn recv(from: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    crate::nowait::recv(from.as_raw_fd(), buf, CHUNK)
}

/// One `send(2)` that never waits and raises no SIGPIPE.
fn send(to: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    crate::nowait::send(to.as_raw_fd(), bytes)
}
