//! TCP mode (`mode = "tcp"` listeners): each client connection is relayed byte for byte
//! to one server chosen by the group's balancer.
//!
//! [`session::serve`] is one connection (pick, connect with failover, PROXY header, relay,
//! log line, metrics); [`relay`] copies both ways with half-close and time limits;
//! [`vars`] renders the connection's hash key and access-log line. The PROXY header itself
//! is written by [`crate::upstream::proxy_header`] (HTTP listeners send it too).

pub mod relay;
pub mod session;
pub mod vars;

pub use session::serve;
