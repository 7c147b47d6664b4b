//! Owned-buffer reads and writes with deadlines, the way monoio (io_uring) wants them.
//!
//! io_uring owns a buffer while an operation is in flight, so reads and writes move a `Vec`
//! in and get it back. When a timeout cancels an operation the buffer stays with the kernel
//! until it completes; the connection is then in an unknown state and the caller must close
//! it (monoio's io-cancel notes), which is why a timed-out `Inbound` comes back empty.

use std::io;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Body bytes behind a head from which a gathered write beats copying them after it.
pub const GATHER_FROM: usize = 8 * 1024;
/// Smallest free space offered to a read of a head or a request body.
pub const READ_CHUNK: usize = 16 * 1024;
/// Read size while streaming bodies: large reads mean fewer syscalls for big transfers.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// Bytes read from a socket and not yet consumed: `buf[pos..]`.
pub struct Inbound {
    buf: Vec<u8>,
    pos: usize,
}

impl Inbound {
    /// An empty inbound reading into `buf` (its contents are discarded).
    pub fn from_vec(mut buf: Vec<u8>) -> Inbound {
        buf.clear();
        Inbound { buf, pos: 0 }
    }

    /// An inbound whose pending bytes are all of `buf` (a parked head, see `http::scratch`).
    pub fn with_bytes(buf: Vec<u8>) -> Inbound {
        Inbound { buf, pos: 0 }
    }

    /// Gives the buffer back (for reuse elsewhere), leaving this one empty.
    pub fn take_vec(&mut self) -> Vec<u8> {
        self.pos = 0;
        std::mem::take(&mut self.buf)
    }

    /// The buffer's capacity (0: the connection holds no buffer, see `http::scratch`).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Marks the first `n` pending bytes as used.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len() - self.pos);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads at least one more byte (up to `want` free space) within `timeout`.
    /// `Ok(0)` is end of stream.
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        want: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.make_room(want);
        let room = self.buf.capacity() - self.buf.len();
        self.read_into_room(stream, room, timeout).await
    }

    /// [`Inbound::fill`], taking no more than `most` bytes: what is not taken stays in the
    /// socket (a long body, for `http::spliced`).
    pub async fn fill_at_most<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        most: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.make_room(most);
        self.read_into_room(stream, most, timeout).await
    }

    /// One read of at most `n` bytes into the free space after the pending bytes (which
    /// [`Inbound::make_room`] made at least `n`).
    async fn read_into_room<S: AsyncReadRent>(
        &mut self,
        stream: &mut S,
        n: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len();
        let read = stream.read(buf.slice_mut(len..len + n));
        match crate::timer::timeout(timeout, read).await {
            Ok((result, slice)) => {
                self.buf = slice.into_inner();
                result
            }
            Err(_) => {
                // The buffer went with the cancelled read; the caller closes this stream.
                self.pos = 0;
                Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
            }
        }
    }

    /// Ensures at least `want` bytes of free space after the pending bytes, moving them to
    /// the front first so the buffer does not grow while data flows through it.
    fn make_room(&mut self, want: usize) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < want {
            self.buf.reserve(want);
        }
    }

    /// Writes the first `n` pending bytes to `stream` within `timeout` and consumes them.
    pub async fn forward<S: AsyncWriteRent>(
        &mut self,
        stream: &mut S,
        n: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let (start, end) = (self.pos, self.pos + n);
        let write = stream.write_all(buf.slice(start..end));
        match crate::timer::timeout(timeout, write).await {
            Ok((result, slice)) => {
                self.buf = slice.into_inner();
                result?;
                self.consume(n);
                Ok(())
            }
            Err(_) => {
                self.pos = 0;
                Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))
            }
        }
    }

    /// Writes `head` and then the first `n` pending bytes in one gathered write (no copy of
    /// the body bytes), consumes them, and gives `head` back emptied.
    pub async fn forward_after<S: AsyncWriteRent>(
        &mut self,
        stream: &mut S,
        head: Vec<u8>,
        n: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        let body = std::mem::take(&mut self.buf);
        let range = self.pos..self.pos + n;
        let (result, mut head, body) = write_gathered(stream, head, body, range, timeout).await;
        self.buf = body;
        head.clear();
        if result.is_ok() {
            self.consume(n);
        } else {
            // Unknown how much went out; the caller closes this stream.
            self.pos = 0;
        }
        (result, head)
    }

    /// An inbound holding `bytes` as if they had been read (for tests of its users).
    #[cfg(test)]
    pub fn holding(bytes: &[u8]) -> Inbound {
        Inbound {
            buf: bytes.to_vec(),
            pos: 0,
        }
    }

    /// Drops everything (used when the stream this buffer belongs to is abandoned).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }
}

/// Waits until `stream` has bytes to read (or its end, or an error) within `timeout`,
/// holding no buffer. Unlike a read, this wait can be given up at any time without losing
/// data: nothing is taken from the socket. On epoll it asks the kernel (`relaxed = false`),
/// since monoio's cached readiness is still set after a read that did not drain the socket
/// to `EAGAIN`, which would make every wait end at once.
pub async fn readable_within(stream: &monoio::net::TcpStream, timeout: Duration) -> io::Result<()> {
    match crate::timer::timeout(timeout, stream.readable(false)).await {
        Ok(ready) => ready,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no bytes in time")),
    }
}

/// Waits until `stream` takes more bytes, within `timeout` (a write that would block, from a
/// copy that calls the kernel itself: a splice, a non-blocking send).
pub async fn writable_within(stream: &monoio::net::TcpStream, timeout: Duration) -> io::Result<()> {
    match crate::timer::timeout(timeout, stream.writable(false)).await {
        Ok(ready) => ready,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
    }
}

/// Writes `head`, then `body[range]`, starting with one `writev` so that the body bytes are
/// never copied behind the head; a short write is finished with plain writes. Both buffers
/// come back, except after a timeout, when they stay with the cancelled operation and come
/// back empty.
pub async fn write_gathered<S: AsyncWriteRent>(
    stream: &mut S,
    head: Vec<u8>,
    body: Vec<u8>,
    range: std::ops::Range<usize>,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
    let (start, end) = (range.start, range.end);
    let gather = Gather::new(head, body, start, end - start);
    let (result, gather) = match crate::timer::timeout(timeout, stream.writev(gather)).await {
        Ok(done) => done,
        Err(_) => {
            let e = io::Error::new(io::ErrorKind::TimedOut, "write timed out");
            return (Err(e), Vec::new(), Vec::new());
        }
    };
    let (head, body) = gather.into_parts();
    let written = match result {
        Ok(w) => w,
        // A socket made non-blocking for a splice (`http::spliced`): the io_uring of older
        // kernels answers a gathered write on a non-blocking file with EAGAIN instead of
        // waiting. The plain writes below (send operations) wait.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return (Err(e), head, body),
    };
    let head_len = head.len();
    let head = if written < head_len {
        let (res, slice) =
            match crate::timer::timeout(timeout, stream.write_all(head.slice(written..))).await {
                Ok(done) => done,
                Err(_) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "write timed out");
                    return (Err(e), Vec::new(), body);
                }
            };
        let head = slice.into_inner();
        if let Err(e) = res {
            return (Err(e), head, body);
        }
        head
    } else {
        head
    };
    let body_from = start + written.saturating_sub(head_len).min(end - start);
    if body_from == end {
        return (Ok(()), head, body);
    }
    match crate::timer::timeout(timeout, stream.write_all(body.slice(body_from..end))).await {
        Ok((res, slice)) => (res.map(|_| ()), head, slice.into_inner()),
        Err(_) => {
            let e = io::Error::new(io::ErrorKind::TimedOut, "write timed out");
            (Err(e), head, Vec::new())
        }
    }
}

/// A head and a slice of a body, written with one `writev`. It owns both buffers while the
/// kernel may read them (io_uring), and its iovecs live on the heap so moving it is safe.
struct Gather {
    iov: Box<[libc::iovec; 2]>,
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Gather {
    fn new(head: Vec<u8>, body: Vec<u8>, start: usize, n: usize) -> Gather {
        let body_slice = &body[start..start + n];
        let iov = Box::new([
            libc::iovec {
                iov_base: head.as_ptr() as *mut _,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: body_slice.as_ptr() as *mut _,
                iov_len: n,
            },
        ]);
        Gather { iov, head, body }
    }

    fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.head, self.body)
    }
}

// SAFETY: the iovecs point into `head` and `body`, heap buffers owned by the Gather and
// never touched while it exists; the iovec array itself is boxed, so it does not move
// when the Gather does.
unsafe impl monoio::buf::IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        2
    }
}

/// Writes all of `buf` within `timeout`; gives the buffer back (empty after a timeout).
pub async fn write_all<S: AsyncWriteRent>(
    stream: &mut S,
    buf: Vec<u8>,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    match crate::timer::timeout(timeout, stream.write_all(buf)).await {
        Ok((result, buf)) => (result.map(|_| ()), buf),
        Err(_) => (
            Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::AsyncWriteRent;
    use monoio::net::TcpStream;
    use std::io::Write;

    #[monoio::test_all(timer_enabled = true)]
    async fn fill_appends_and_consume_keeps_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect_addr(addr).await.unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"hello world").unwrap();
        let mut inbound = Inbound::from_vec(Vec::with_capacity(READ_CHUNK));
        while inbound.pending().len() < 11 {
            let n = inbound
                .fill(&mut client, READ_CHUNK, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(n > 0);
        }
        inbound.consume(6);
        assert_eq!(inbound.pending(), b"world");
        drop(server);
        let n = inbound
            .fill(&mut client, READ_CHUNK, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(n, 0, "end of stream");
        assert_eq!(inbound.pending(), b"world");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_readiness_wait_takes_nothing_and_can_time_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect_addr(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let err = readable_within(&client, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // A wait given up left the socket as it was: the next bytes all arrive.
        server.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        readable_within(&client, Duration::from_secs(5))
            .await
            .unwrap();
        // Ready twice in a row without a read in between: readiness is not consumed.
        readable_within(&client, Duration::from_secs(5))
            .await
            .unwrap();
        let mut inbound = Inbound::from_vec(Vec::new());
        assert_eq!(inbound.capacity(), 0);
        while inbound.pending().len() < 18 {
            let n = inbound
                .fill(&mut client, READ_CHUNK, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(n > 0);
        }
        assert_eq!(inbound.pending(), b"GET / HTTP/1.1\r\n\r\n");
        // After a read that took everything, the wait blocks again (no stale readiness).
        let err = readable_within(&client, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn forward_after_sends_head_then_body_even_across_short_writes() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Big enough that the socket buffer forces partial writes.
        let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expect_len = 5 + body.len();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let mut out = TcpStream::connect_addr(addr).await.unwrap();
        let mut inbound = Inbound::from_vec(Vec::with_capacity(body.len() + 3));
        // Simulate bytes already read: three to skip, then the body.
        inbound.buf.extend_from_slice(b"xyz");
        inbound.buf.extend_from_slice(&body);
        inbound.consume(3);
        let n = inbound.pending().len();
        let (res, head) = inbound
            .forward_after(&mut out, b"HEAD\n".to_vec(), n, Duration::from_secs(10))
            .await;
        res.unwrap();
        assert!(head.is_empty());
        assert!(inbound.is_empty());
        // With io_uring a dropped socket closes only when the ring next submits, so end
        // the stream explicitly before blocking on the reader.
        out.shutdown().await.unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expect_len);
        assert_eq!(&got[..5], b"HEAD\n");
        assert!(got[5..] == body[..]);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_read_that_times_out_reports_timed_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect_addr(listener.local_addr().unwrap())
            .await
            .unwrap();
        let _server = listener.accept().unwrap();
        let mut inbound = Inbound::from_vec(Vec::with_capacity(READ_CHUNK));
        let err = inbound
            .fill(&mut client, READ_CHUNK, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(inbound.is_empty());
    }
}
