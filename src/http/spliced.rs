//! A long response body of known length relayed with `splice(2)`: from the server's socket
//! into a pipe and from the pipe into the client's socket, never through user space.
//!
//! Copying a body through a buffer costs the kernel two copies of every byte (out to the
//! buffer, back into the client's socket): at 64 KiB responses they were 23% of the proxy's
//! CPU in the profile (`_copy_to_iter`, `_copy_from_iter`). A splice moves page references
//! instead. It pays only for long bodies — each round is two syscalls and may need a
//! readiness wait — so the response head is read with a small read ([`HEAD_READ`]) that
//! leaves most of a long body in the socket, and only what is left after that read and is at
//! least [`SPLICE_FROM`] long goes through the pipe. Bodies that are compressed, re-framed
//! or chunked go through the buffer as before.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::http::stream::{CopyError, CopyEvent};
use crate::http::watch::unless_client_leaves;
use crate::splice::{Pipe, non_blocking};

/// Most bytes the read of a response head takes on a connection whose last body was long
/// ([`LONG_BODY`]): a head and a small body still fit (a 4 KiB body behind a usual head
/// arrives whole), and a long body stays in the socket for the splice. Other connections
/// read up to 64 KiB at once: capping every head read costs mid-size bodies (16-32 KiB) an
/// extra read, measured at 10-20% more CPU per request, more than a splice wins there.
pub const HEAD_READ: usize = 8 * 1024;

/// A body at least this long makes the next head read on the same server connection small
/// (a server connection's next answer is much like its last one: the same API).
pub const LONG_BODY: u64 = 56 * 1024;

/// The shortest body rest that is spliced; shorter ones go through the buffer (a rest of
/// 24 KiB measured ~10% more CPU spliced than copied: the syscalls and readiness waits cost
/// more than two copies of so few bytes; 56 KiB measured 15-25% less).
pub const SPLICE_FROM: u64 = 32 * 1024;

/// Deadlines of a spliced body: the longest gap between two reads from the server, and the
/// longest wait for the client to take more.
#[derive(Clone, Copy)]
pub struct Deadlines {
    pub read: Duration,
    pub send: Duration,
}

/// Relays the next `remaining` body bytes from `upstream` to `client`. `sent` counts the
/// body bytes taken from the server (as the buffered copy does); `events` hears of the first
/// body byte (when `sent` was 0) and of the server's part being over. `None`: the splice
/// could not start (no pipe, the sockets could not be made non-blocking): nothing was
/// moved, and the caller copies the body through its buffer instead.
pub async fn splice_body(
    upstream: &TcpStream,
    client: &TcpStream,
    mut remaining: u64,
    deadlines: Deadlines,
    sent: &mut u64,
    events: &dyn Fn(CopyEvent),
) -> Option<Result<(), CopyError>> {
    let ready = non_blocking(upstream).and_then(|()| non_blocking(client));
    let mut pipe = match ready.and_then(|()| Pipe::take()) {
        Ok(pipe) => pipe,
        Err(e) => {
            crate::debug!("splice: not used for this body: {e}");
            return None;
        }
    };
    loop {
        if remaining > 0 {
            let ask = usize::try_from(remaining).unwrap_or(usize::MAX);
            match pipe.fill_from(upstream, ask) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "server closed mid-body");
                    return Some(Err(CopyError::Upstream(e)));
                }
                Ok(n) => {
                    if *sent == 0 {
                        events(CopyEvent::FirstByte);
                    }
                    *sent += n as u64;
                    remaining -= n as u64;
                    if remaining == 0 {
                        events(CopyEvent::UpstreamDone);
                    }
                }
                // Nothing from the server yet: pass on what the pipe holds, or wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && pipe.held() > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = server_readable(upstream, client, deadlines.read).await {
                        return Some(Err(e));
                    }
                    continue;
                }
                Err(e) => return Some(Err(CopyError::Upstream(e))),
            }
        }
        if pipe.held() > 0 {
            match pipe.drain_to(client) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = client_writable(client, deadlines.send).await {
                        return Some(Err(e));
                    }
                }
                Err(e) => return Some(Err(CopyError::Client(e))),
            }
        }
        if remaining == 0 && pipe.held() == 0 {
            pipe.give_back();
            return Some(Ok(()));
        }
    }
}

/// Waits for the server's next bytes within `timeout`; a client that leaves meanwhile ends
/// the wait (as between two reads of the buffered copy).
async fn server_readable(
    upstream: &TcpStream,
    client: &TcpStream,
    timeout: Duration,
) -> Result<(), CopyError> {
    let wait = crate::http::io::readable_within(upstream, timeout);
    match unless_client_leaves(wait, client).await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(CopyError::Upstream(e)),
        None => {
            let e = io::Error::new(io::ErrorKind::ConnectionAborted, "client went away");
            Err(CopyError::Client(e))
        }
    }
}

/// Waits until the client's socket takes more, within `timeout`.
async fn client_writable(client: &TcpStream, timeout: Duration) -> Result<(), CopyError> {
    crate::http::io::writable_within(client, timeout)
        .await
        .map_err(CopyError::Client)
}

#[cfg(test)]
mod tests;
