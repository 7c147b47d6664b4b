//! The splice copier, driven by readiness: the bytes go from one socket into a pipe and from
//! the pipe to the other socket without entering user space, and no kernel thread waits.
//!
//! A direction waits for its source to be readable with the event loop's readiness wait (an
//! io_uring `PollAdd`, a poll on epoll), then splices with [`crate::splice::Pipe`]
//! (non-blocking `splice(2)` from the event loop); it waits for the destination to be
//! writable only when that returns `EAGAIN`. io_uring's own splice cannot do this: it hands
//! every splice to an io-wq kernel thread, one blocked thread per waiting connection.

use std::io;

use monoio::net::TcpStream;

use super::Direction;
use crate::clock::now_ms;
use crate::splice::{PIPE_CHUNK, Pipe};

/// Makes both sockets non-blocking, which a splice that must never park the event loop
/// needs (see [`crate::splice::non_blocking`]).
pub(super) fn non_blocking(sockets: [&TcpStream; 2]) -> io::Result<()> {
    sockets
        .into_iter()
        .try_for_each(crate::splice::non_blocking)
}

impl Direction<'_> {
    /// One direction, `from` to `to`, through a pipe. `wait_first`: the source is not
    /// expected to have bytes yet (a server usually speaks when asked), so wait for it
    /// before the first splice instead of trying one that would find nothing.
    pub(super) async fn copy_spliced(
        self,
        from: &TcpStream,
        to: &TcpStream,
        wait_first: bool,
    ) -> io::Result<Vec<u8>> {
        self.splice_through(Pipe::take()?, from, to, wait_first)
            .await
    }

    /// Splices through `pipe` until the end of stream (passed on) or an error, then gives
    /// the pipe back; `wait` as `wait_first`. Also where the ready copier goes on when a
    /// direction turns out to carry a bulk transfer.
    pub(super) async fn splice_through(
        &self,
        mut pipe: Pipe,
        from: &TcpStream,
        to: &TcpStream,
        wait: bool,
    ) -> io::Result<Vec<u8>> {
        let copied = self.splice_loop(from, to, &mut pipe, wait).await;
        // Empty after a whole chunk went out, so it is kept for the next connection.
        pipe.give_back();
        copied.map(|()| Vec::new())
    }

    async fn splice_loop(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        pipe: &mut Pipe,
        mut wait: bool,
    ) -> io::Result<()> {
        loop {
            if wait {
                // relaxed = false: on epoll ask the kernel, since the event loop's cached
                // readiness is not cleared by our own splice's EAGAIN.
                from.readable(false).await?;
            }
            let n = match pipe.fill_from(from, PIPE_CHUNK) {
                Ok(0) => return self.end_of_stream_now(to),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A small read most likely emptied the socket, and a splice would only say so:
            // wait for the next bytes instead. A large one may have stopped at the pipe's
            // slots (one per page piece), so try again at once.
            wait = n < PIPE_CHUNK / 4;
            self.activity.set(now_ms());
            self.drain(pipe, to).await?;
        }
    }

    /// Moves what `pipe` holds out to `to`, waiting for room when the socket's send buffer
    /// is full; no progress within `send` fails the direction.
    async fn drain(&self, pipe: &mut Pipe, to: &TcpStream) -> io::Result<()> {
        while pipe.held() > 0 {
            match pipe.drain_to(to) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.moved.set(self.moved.get() + written as u64);
                    self.activity.set(now_ms());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::http::io::writable_within(to, self.send).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
