//! Watching a client while the proxy waits on its behalf — queued, waiting for the
//! server's response head, or between two reads of a streamed body — so that a client
//! that goes away has its server connection closed at once (the server then stops working
//! on an answer nobody will read: a GPU generation, say).
//!
//! Only a peek decides that the client left: `recv(MSG_PEEK)` giving end of stream or a
//! reset. Bytes from the client (a pipelined request) end the watch and stay in the socket.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

/// How long the proxy waits before it also watches the client: quick answers and quick
/// reads never pay for the watch, and a client that leaves is noticed within this much of
/// leaving (well inside the 100 ms the SPEC allows for closing the server connection).
pub const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(50);

/// Awaits `work`; if it runs longer than [`WATCH_CLIENT_AFTER`], also watches `client`, and
/// gives `None` when the client closes its connection meanwhile (nginx's "client
/// prematurely closed connection"). Bytes the client sends (a pipelined request) stay
/// in the socket for later.
pub async fn unless_client_leaves<F: std::future::Future>(
    work: F,
    client: &TcpStream,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    // On the worker's timer wheel: every response head waits here, and a monoio `Sleep`
    // would put a 640-byte timer entry into each wait (see `timer`).
    monoio::select! {
        out = &mut work => return Some(out),
        _ = crate::timer::sleep(WATCH_CLIENT_AFTER) => {}
    }
    loop {
        monoio::select! {
            out = &mut work => return Some(out),
            ready = client.readable(false) => match (ready, peek(client)) {
                (_, Peeked::Closed) => return None,
                // A readiness error is no proof the client left (only the peek is): stop
                // watching rather than abort a request whose client may still wait.
                (Err(_), _) | (_, Peeked::Data) => return Some(work.await),
                (Ok(()), Peeked::Nothing) => {}
            },
        }
    }
}

/// What a look at the client socket found.
pub enum Peeked {
    /// End of stream or an error: the client is gone.
    Closed,
    /// Bytes wait to be read.
    Data,
    /// Nothing yet.
    Nothing,
}

/// Looks at the client socket without taking anything from it.
pub fn peek(client: &TcpStream) -> Peeked {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a valid socket fd and a one-byte buffer we own; MSG_PEEK leaves the data
    // queued, MSG_DONTWAIT never blocks the event loop.
    let n = unsafe {
        libc::recv(
            client.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Data,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Peeked::Nothing,
            _ => Peeked::Closed,
        },
    }
}
