//! The splice copier, driven by readiness: the bytes go from one socket into a pipe and from
//! the pipe to the other socket without entering user space, and no kernel thread waits.
//!
//! Both sockets stay non-blocking. A direction waits for its source to be readable with the
//! event loop's readiness wait (an io_uring `PollAdd`, a poll on epoll), then calls
//! `splice(2)` itself with `SPLICE_F_NONBLOCK`; it waits for the destination to be writable
//! only when that returns `EAGAIN`. io_uring's own splice cannot do this: it has no
//! readiness wait for splice and hands every one to an io-wq kernel thread, which then
//! blocks on a blocking socket, one thread per waiting connection.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use monoio::net::TcpStream;

use super::{CHUNK, Direction};
use crate::clock::now_ms;

/// Makes both sockets non-blocking, which a splice that must never park the event loop
/// needs: on io_uring monoio opens and accepts sockets blocking (its operations never block
/// either way), and a splice on a blocking socket would wait in the syscall. Sockets from the
/// epoll driver are non-blocking already.
pub(super) fn non_blocking(sockets: [&TcpStream; 2]) -> io::Result<()> {
    if monoio::utils::is_legacy() {
        return Ok(());
    }
    for socket in sockets {
        let mut on: libc::c_int = 1;
        // SAFETY: FIONBIO reads one int, which lives on the stack for the call.
        if unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONBIO, &mut on) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pipe whose two ends are non-blocking: the kernel-side buffer a direction splices
/// through. Empty between two relayed chunks (a chunk is drained before the next is read).
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array, which outlives the call.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened by pipe2 and are owned by no one else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }
}

/// One non-blocking `splice(2)` of up to `len` bytes; `EAGAIN` is `WouldBlock`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    loop {
        // SAFETY: both descriptors are open for the call (the relay owns the sockets, the
        // direction its pipe); null offsets are what splice takes for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                flags,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
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
        let pipe = Pipe::new()?;
        let mut wait = wait_first;
        loop {
            if wait {
                // relaxed = false: on epoll ask the kernel, since the event loop's cached
                // readiness is not cleared by our own splice's EAGAIN.
                from.readable(false).await?;
            }
            let n = match splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK) {
                Ok(0) => {
                    self.end_of_stream_now(to)?;
                    return Ok(Vec::new());
                }
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
            wait = n < CHUNK / 4;
            self.activity.set(now_ms());
            self.drain(&pipe, to, n).await?;
        }
    }

    /// Moves the `left` bytes in `pipe` out to `to`, waiting for room when the socket's
    /// send buffer is full; no progress within `send` fails the direction.
    async fn drain(&self, pipe: &Pipe, to: &TcpStream, mut left: usize) -> io::Result<()> {
        while left > 0 {
            match splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    left -= written;
                    self.moved.set(self.moved.get() + written as u64);
                    self.activity.set(now_ms());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match crate::timer::timeout(self.send, to.writable(false)).await {
                        Ok(ready) => ready?,
                        Err(_) => {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled"));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
