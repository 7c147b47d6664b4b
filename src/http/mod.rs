//! HTTP/1.x at L7: pure head parsing and body framing (sans-io), and the proxy loop.

pub mod body;
pub mod head;
pub mod proxy;
