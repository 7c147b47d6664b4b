//! Moving bytes from one socket to another through a pipe with `splice(2)`, called from the
//! event loop when a socket is ready: the bytes never enter user space (no copy out of the
//! kernel and back in), and no kernel thread waits.
//!
//! io_uring's own splice cannot do this: it has no readiness wait for splice and hands every
//! one to an io-wq kernel thread. So the event loop waits for readiness itself (an io_uring
//! `PollAdd`, or a poll on epoll) and calls `splice(2)` non-blocking. `SPLICE_F_NONBLOCK`
//! covers only the pipe's side: the sockets themselves must be non-blocking
//! ([`non_blocking`]), which on io_uring monoio does not make them.
//!
//! Pipes are kept per thread while empty (a pipe is two descriptors and three syscalls to
//! make and close): a copy that ends with bytes still in its pipe closes it instead.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::nowait;

/// The most one splice asks for: the default pipe holds 16 pages (64 KiB on x86-64), and a
/// splice into a full pipe would only come back with `EAGAIN`.
pub const PIPE_CHUNK: usize = 64 * 1024;

/// Empty pipes a thread keeps for the next copy.
const SPARE_PIPES: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Makes a socket non-blocking. Sockets from the epoll driver are already; on io_uring
/// monoio opens and accepts them blocking (its operations never block either way), and a
/// splice on a blocking socket would wait inside the syscall, stalling the event loop.
pub fn non_blocking(socket: &impl AsRawFd) -> io::Result<()> {
    if monoio::utils::is_legacy() {
        return Ok(());
    }
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int, which lives on the stack for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONBIO, &mut on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe with both ends non-blocking, and how many bytes it holds.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    held: usize,
}

impl Pipe {
    /// An empty pipe: a spare of this thread's, or a new one.
    pub fn take() -> io::Result<Pipe> {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .ok()
            .flatten();
        match spare {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array, which outlives the call.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened by pipe2 and belong to no one else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }

    /// Bytes in the pipe.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Splices up to `len` bytes from `from` into the pipe; `Ok(0)` is the end of stream,
    /// `WouldBlock` nothing to take now or a full pipe. A socket gives no more than `len`, so
    /// a body's end is never read past.
    pub fn fill_from(&mut self, from: &impl AsRawFd, len: usize) -> io::Result<usize> {
        let room = PIPE_CHUNK - self.held;
        if room == 0 || len == 0 {
            // A splice of nothing gives 0, which would read as the end of stream.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = nowait::splice(from.as_raw_fd(), self.write.as_raw_fd(), len.min(room))?;
        self.held += n;
        Ok(n)
    }

    /// Splices what the pipe holds into `to`; gives how much went.
    pub fn drain_to(&mut self, to: &impl AsRawFd) -> io::Result<usize> {
        let n = nowait::splice(self.read.as_raw_fd(), to.as_raw_fd(), self.held)?;
        self.held -= n;
        Ok(n)
    }

    /// Gives an empty pipe back for the next copy; one still holding bytes is closed (they
    /// belong to a copy that did not finish).
    pub fn give_back(self) {
        if self.held != 0 {
            return;
        }
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < SPARE_PIPES
            {
                s.push(self);
            }
        });
    }
}

/// Empty pipes this thread keeps (for tests: a copy that spliced gives one back).
#[cfg(test)]
pub fn spare_pipes() -> usize {
    SPARE.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn bytes_go_from_socket_to_socket_and_no_further_than_asked() {
        let (mut src_peer, src) = pair();
        let (dst, mut dst_peer) = pair();
        src.set_nonblocking(true).unwrap();
        dst.set_nonblocking(true).unwrap();
        src_peer
            .write_all(b"hello world, and the next response")
            .unwrap();
        let mut pipe = Pipe::take().unwrap();
        let mut n = 0;
        for _ in 0..1000 {
            match pipe.fill_from(&src, 11 - n) {
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if n == 11 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(pipe.held(), 11);
        assert_eq!(pipe.drain_to(&dst).unwrap(), 11);
        assert_eq!(pipe.held(), 0);
        let mut got = [0u8; 11];
        dst_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
        // What was not asked for is still in the source socket.
        let mut rest = [0u8; 23];
        let mut src = src;
        src.set_nonblocking(false).unwrap();
        src.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b", and the next response");
        pipe.give_back();
    }

    #[test]
    fn an_empty_source_is_would_block_not_a_wait() {
        let (_peer, src) = pair();
        src.set_nonblocking(true).unwrap();
        let mut pipe = Pipe::take().unwrap();
        let e = pipe.fill_from(&src, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn only_empty_pipes_are_kept() {
        let mut full = Pipe::new().unwrap();
        full.held = 1;
        let spares = || SPARE.with(|s| s.borrow().len());
        let before = spares();
        full.give_back();
        assert_eq!(spares(), before);
        Pipe::new().unwrap().give_back();
        assert_eq!(spares(), before + 1);
    }

    #[test]
    fn a_full_pipe_is_would_block_never_an_end_of_stream() {
        let (mut peer, src) = pair();
        src.set_nonblocking(true).unwrap();
        peer.write_all(&[1u8; 100]).unwrap();
        let mut pipe = Pipe::new().unwrap();
        pipe.held = PIPE_CHUNK;
        let e = pipe.fill_from(&src, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        pipe.held = 0;
        let e = pipe.fill_from(&src, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
