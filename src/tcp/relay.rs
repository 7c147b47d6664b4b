//! Copying bytes both ways between a client and a server until both directions have ended.
//!
//! Each direction reads from one socket and writes what it read to the other; an end of
//! stream is passed on as a half-close (`shutdown(SHUT_WR)`), so a client that closes its
//! sending side still gets the rest of the answer, and a server that finishes first still
//! gets the rest of the request. The relay as a whole ends:
//! - when both directions have ended (the normal end),
//! - when a read or write fails, or a write does not progress within `send` (the other
//!   direction is then cut too: both sockets close),
//! - when no byte moved in either direction for `idle`. One watchdog looks at a shared
//!   activity stamp instead of a timeout per read: a read interrupted by a timeout may
//!   already have taken bytes in the kernel (io_uring), which would then be lost.
//!
//! Three copiers exist and `benches/tcp`/the README compare them: [`Copier::Ready`] (the
//! default: recv/send when the socket is ready, through a buffer lent per chunk, so an
//! idle connection holds none; a direction that carries a bulk transfer moves on to
//! splicing; `ready.rs`), [`Copier::Buffer`] (read and write operations
//! of the event loop, each direction holding its buffer throughout) and [`Copier::Splice`]
//! (splice through a pipe when the socket is ready: no copy through user space;
//! `splice.rs`).

use std::cell::Cell;
use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::clock::now_ms;

/// Bytes moved per read (buffer) or per splice into the pipe.
pub const CHUNK: usize = 64 * 1024;

/// Where copy buffers come from and go back to: the worker's spare buffers.
pub trait Buffers {
    /// A buffer with room for at least [`CHUNK`] bytes.
    fn lend(&self) -> Vec<u8>;
    /// Takes a buffer back (an empty one, left with a cancelled read, is dropped).
    fn give_back(&self, buf: Vec<u8>);
}

/// How bytes go from one socket to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copier {
    /// read(2) into a buffer, write(2) it out, as io_uring (or epoll) operations; each
    /// direction holds its buffer for the connection's whole life.
    Buffer,
    /// recv(2) and send(2) called from the event loop when the socket is ready, through a
    /// buffer lent for one chunk: an idle connection holds none. A direction that reads
    /// `ready::SPLICE_AFTER` bytes in full chunks in a row goes on as [`Copier::Splice`].
    Ready,
    /// splice(2) into a pipe and out of it, called from the event loop when the socket is
    /// ready: the bytes stay in the kernel.
    Splice,
}

impl Copier {
    /// The one the relay uses: as cheap in CPU as the buffer copier within the benchmark's
    /// noise, and an idle connection costs about 7 KB instead of 138 KB (README, "TCP mode").
    pub const DEFAULT: Copier = Copier::Ready;

    /// `RINGWAY_TCP_COPIER=splice|ready|buffer` overrides the default (for the benchmark that
    /// compares them); anything else is the default. Read once per process: the
    /// environment is behind a lock, which a worker must not take per connection.
    pub fn from_env() -> Copier {
        static CHOSEN: std::sync::OnceLock<Copier> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| match std::env::var("RINGWAY_TCP_COPIER").as_deref() {
            Ok("splice") => Copier::Splice,
            Ok("buffer") => Copier::Buffer,
            Ok("ready") => Copier::Ready,
            _ => Copier::DEFAULT,
        })
    }
}

/// The relay's time limits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No byte in either direction for this long ends the relay.
    pub idle: Duration,
    /// One write may not stall longer than this.
    pub send: Duration,
}

/// How a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides ended their sending (each end of stream was passed on).
    Closed,
    /// Nothing moved for `Timeouts::idle`.
    Idle,
    /// A read or write failed or stalled; both connections were closed.
    Failed,
}

/// What a relay moved, and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    pub end: End,
}

/// Relays between `client` and `server` until the relay ends (see the module doc); copy
/// buffers come from `pool`.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    timeouts: Timeouts,
    copier: Copier,
    pool: &dyn Buffers,
) -> Totals {
    let activity = Cell::new(now_ms());
    let (up, down) = (Cell::new(0u64), Cell::new(0u64));
    let ended = Cell::new(false);
    let a = Direction {
        send: timeouts.send,
        activity: &activity,
        moved: &up,
        other_ended: &ended,
    };
    let b = Direction { moved: &down, ..a };
    let copier = match copier {
        Copier::Splice => match splice::non_blocking([&client, &server]) {
            Ok(()) => Copier::Splice,
            Err(e) => {
                crate::warn!("tcp relay: cannot make the sockets non-blocking for splice: {e}");
                Copier::Ready
            }
        },
        other => other,
    };
    let end = match copier {
        Copier::Buffer => {
            let (buf_up, buf_down) = (pool.lend(), pool.lend());
            let (mut client_r, mut client_w) = client.into_split();
            let (mut server_r, mut server_w) = server.into_split();
            let a = a.copy_buffered(&mut client_r, &mut server_w, buf_up);
            let b = b.copy_buffered(&mut server_r, &mut client_w, buf_down);
            let (end, buffers) = both(a, b, timeouts.idle, &activity).await;
            // Whole again, the sockets are closed without the `shutdown(2)` a dropped write
            // half makes (the ends of stream were passed on already, or the relay was cut).
            drop((client_r.reunite(client_w), server_r.reunite(server_w)));
            buffers.into_iter().for_each(|buf| pool.give_back(buf));
            end
        }
        // Each direction boxed on its own: `both` (an `async fn` moving its arguments into
        // pinned locals) would otherwise hold each of them twice, a 3.5 KiB allocation per
        // connection where the three boxes take about 1.4 KiB.
        Copier::Ready => {
            let a = Box::pin(a.copy_ready(&client, &server, pool, false));
            let b = Box::pin(b.copy_ready(&server, &client, pool, true));
            Box::pin(both(a, b, timeouts.idle, &activity)).await.0
        }
        Copier::Splice => {
            // The client usually has sent its first bytes by the time the server is
            // connected; the server usually speaks when asked.
            let a = Box::pin(a.copy_spliced(&client, &server, false));
            let b = Box::pin(b.copy_spliced(&server, &client, true));
            Box::pin(both(a, b, timeouts.idle, &activity)).await.0
        }
    };
    Totals {
        up: up.get(),
        down: down.get(),
        end,
    }
}

/// Runs both directions and the idle watchdog; the first failure or the watchdog ends
/// everything. Returns the buffers the directions gave back (empty ones when cut).
async fn both<A, B, T: Default>(a: A, b: B, idle: Duration, activity: &Cell<u64>) -> (End, [T; 2])
where
    A: std::future::Future<Output = io::Result<T>>,
    B: std::future::Future<Output = io::Result<T>>,
{
    let directions = async {
        let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
        monoio::select! {
            first = &mut a => match first {
                Ok(spare_a) => b.await.map(|spare_b| [spare_a, spare_b]),
                Err(e) => Err(e),
            },
            first = &mut b => match first {
                Ok(spare_b) => a.await.map(|spare_a| [spare_a, spare_b]),
                Err(e) => Err(e),
            },
        }
    };
    monoio::select! {
        done = directions => match done {
            Ok(spare) => (End::Closed, spare),
            Err(_) => (End::Failed, Default::default()),
        },
        _ = watchdog(idle, activity) => (End::Idle, Default::default()),
    }
}

/// Returns once nothing has moved for `idle` (per the shared activity stamp).
async fn watchdog(idle: Duration, activity: &Cell<u64>) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let quiet = now_ms().saturating_sub(activity.get());
        if quiet >= idle_ms {
            return;
        }
        crate::timer::sleep(Duration::from_millis(idle_ms - quiet)).await;
    }
}

/// One direction's share of the relay's state.
#[derive(Clone, Copy)]
struct Direction<'a> {
    send: Duration,
    activity: &'a Cell<u64>,
    moved: &'a Cell<u64>,
    /// Set by the direction that ends first. The second one then skips its half-close:
    /// the relay closes both sockets right after, and the close sends the same FIN.
    other_ended: &'a Cell<bool>,
}

impl Direction<'_> {
    /// Passes an end of stream on as a half-close, unless the other direction is over
    /// too (then the relay's close follows at once).
    async fn end_of_stream<W: AsyncWriteRent>(&self, to: &mut W) -> io::Result<()> {
        if self.other_ended.replace(true) {
            return Ok(());
        }
        to.shutdown().await
    }

    /// [`Direction::end_of_stream`] on a whole socket: `shutdown(SHUT_WR)` is a plain
    /// syscall (monoio's is the same).
    fn end_of_stream_now(&self, to: &TcpStream) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.other_ended.replace(true) {
            return Ok(());
        }
        // SAFETY: shutdown(2) on a socket the relay owns; no memory is passed.
        if unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One direction through a user-space buffer. Gives the buffer back when the
    /// direction ends with an end of stream.
    async fn copy_buffered<R: AsyncReadRent, W: AsyncWriteRent>(
        self,
        from: &mut R,
        to: &mut W,
        mut buf: Vec<u8>,
    ) -> io::Result<Vec<u8>> {
        if buf.capacity() < CHUNK {
            buf.reserve(CHUNK - buf.len());
        }
        loop {
            buf.clear();
            let (res, b) = from.read(buf).await;
            buf = b;
            let n = res?;
            if n == 0 {
                self.end_of_stream(to).await?;
                return Ok(buf);
            }
            self.activity.set(now_ms());
            let (res, b) = match crate::timer::timeout(self.send, to.write_all(buf)).await {
                Ok(r) => r,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
            };
            buf = b;
            res?;
            self.moved.set(self.moved.get() + n as u64);
            self.activity.set(now_ms());
        }
    }
}

mod ready;
mod splice;
#[cfg(test)]
mod tests;
