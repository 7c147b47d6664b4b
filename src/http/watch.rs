//! Watching a client while the proxy waits on its behalf — queued, waiting for the
//! server's response head, or between two reads of a streamed body — so that a client
//! that goes away has its server connection closed at once (the server then stops working
//! on an answer nobody will read: a GPU generation, say).
//!
//! Only a peek decides that the client left: `recv(MSG_PEEK)` giving end of stream or a
//! reset. Bytes from the client (a pipelined request) end the watch and stay in the socket.

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

use crate::nowait::Peeked;

/// Looks at the client socket without taking anything from it.
pub fn peek(client: &TcpStream) -> Peeked {
    use std::os::fd::AsRawFd;
    crate::nowait::peek(client.as_raw_fd())
}
