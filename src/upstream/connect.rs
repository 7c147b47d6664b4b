//! Dialing a server with a timeout.
//!
//! Addresses were resolved on the control path when the snapshot was built, so dialing never
//! does DNS on a worker.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::TcpStream;

/// Opens a TCP connection to `addr` within `timeout`, with Nagle off (heads and small chunks
/// must leave at once: SSE tokens, pipelined responses).
pub async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match crate::timer::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            // A failure here only costs latency, never correctness.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}
