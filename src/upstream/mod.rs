//! Connections to servers: dialing with a timeout and the per-worker keep-alive pool.

pub mod connect;
pub mod pool;
pub mod proxy_header;
