//! Socket calls that never wait, made straight to the kernel.
//!
//! The readiness-driven copiers (`tcp::relay::ready`, `splice`) and the peeks that tell
//! whether a client left or a pooled connection has something to say call `recv`, `send`
//! and `splice` themselves, outside the event loop, with the flags that keep them from
//! blocking. glibc's wrappers of these calls are thread-cancellation points: around every
//! call they switch asynchronous cancellation on and off, about 1% of ringway's CPU on
//! small tcp exchanges (`perf`, keep-alive at L4). ringway never cancels a thread, so the
//! calls go through `syscall(2)`, which is no cancellation point. An interrupted call
//! (`EINTR`) is made again; `EAGAIN` comes back as `WouldBlock`.

use std::io;
use std::os::fd::RawFd;

/// What a look at a socket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peeked {
    /// End of stream or an error: the peer is gone.
    Closed,
    /// Bytes wait to be read.
    Data,
    /// Nothing yet.
    Nothing,
}

/// Looks at `fd` without taking anything from it (`MSG_PEEK`).
pub fn peek(fd: RawFd) -> Peeked {
    let mut byte = 0u8;
    // SAFETY: at most one byte is written, into `byte`, which outlives the call.
    match unsafe { recv_raw(fd, &mut byte, 1, libc::MSG_PEEK) } {
        Ok(0) => Peeked::Closed,
        Ok(_) => Peeked::Data,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Peeked::Nothing,
        Err(_) => Peeked::Closed,
    }
}

/// One `recv(2)` into `buf`'s spare room, at most `max` bytes (the buffer grows to hold
/// them); `buf` holds what came.
pub fn recv(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.clear();
    buf.reserve(max);
    // SAFETY: the spare capacity is at least `max` bytes; the length is set to what the
    // kernel wrote.
    let n = unsafe { recv_raw(fd, buf.as_mut_ptr(), max, 0)? };
    // SAFETY: the first n bytes were just written by the kernel.
    unsafe { buf.set_len(n) };
    Ok(n)
}

/// One `send(2)` of `bytes` that raises no SIGPIPE.
pub fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: the kernel reads `bytes.len()` bytes from a live slice; no address.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                bytes.as_ptr(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                std::ptr::null::<libc::sockaddr>(),
                0,
            )
        }
    })
}

/// One `splice(2)` of up to `len` bytes between a socket and a pipe (null offsets, as
/// splice takes for both), moving pages where it can.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    retry(|| {
        // SAFETY: both descriptors are the caller's and open; null offsets are allowed.
        unsafe {
            libc::syscall(
                libc::SYS_splice,
                from,
                std::ptr::null_mut::<libc::loff_t>(),
                to,
                std::ptr::null_mut::<libc::loff_t>(),
                len,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        }
    })
}

/// `recvfrom(2)` of at most `len` bytes to `ptr`, never waiting, plus `flags`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize, flags: libc::c_int) -> io::Result<usize> {
    retry(|| {
        // SAFETY: the caller vouches for `ptr` and `len`; no address is asked for.
        unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                ptr,
                len,
                flags | libc::MSG_DONTWAIT,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        }
    })
}

fn retry(mut call: impl FnMut() -> libc::c_long) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    /// Waits (bounded) until `fd` has something to say.
    fn until_not_nothing(fd: RawFd) -> Peeked {
        for _ in 0..200 {
            match peek(fd) {
                Peeked::Nothing => std::thread::sleep(std::time::Duration::from_millis(5)),
                other => return other,
            }
        }
        Peeked::Nothing
    }

    #[test]
    fn peek_tells_nothing_from_data_from_an_end_and_takes_no_byte() {
        let (mut a, mut b) = pair();
        assert_eq!(peek(b.as_raw_fd()), Peeked::Nothing);
        a.write_all(b"x").unwrap();
        assert_eq!(until_not_nothing(b.as_raw_fd()), Peeked::Data);
        let mut got = [0u8; 1];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x", "the peek left the byte in the socket");
        drop(a);
        assert_eq!(until_not_nothing(b.as_raw_fd()), Peeked::Closed);
    }

    #[test]
    fn recv_and_send_move_bytes_and_an_empty_socket_would_block() {
        let (a, b) = pair();
        let mut buf = Vec::new();
        let e = recv(b.as_raw_fd(), &mut buf, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(send(a.as_raw_fd(), b"hello").unwrap(), 5);
        let mut n = 0;
        for _ in 0..200 {
            match recv(b.as_raw_fd(), &mut buf, 16) {
                Ok(got) => {
                    n = got;
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
    }

    #[test]
    fn send_to_a_reset_peer_is_an_error_not_a_sigpipe() {
        let (a, b) = pair();
        drop(b);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The first send may still be taken (the RST answers it); a later one must fail.
        let failed = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            send(a.as_raw_fd(), b"x").is_err()
        });
        assert!(failed);
    }
}
