//! `ringway demo`: three demo LLM-like backends and a proxy in front of them.

use std::net::SocketAddr;

/// Starts demo backends on `addrs` (one thread with its own runtime) and returns at once.
pub fn spawn_backends(_addrs: Vec<SocketAddr>) -> std::io::Result<std::thread::JoinHandle<()>> {
    todo!()
}

/// `ringway demo`: backends on 127.0.0.1:1701-1703, proxy on 127.0.0.1:1700, until Ctrl-C.
pub fn run() -> Result<(), String> {
    todo!()
}
