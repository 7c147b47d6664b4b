//! HTTP/1.x at L7: pure head parsing and body framing (sans-io), and the proxy loop.

pub mod attempt;
pub mod body;
pub mod gzip;
pub mod head;
pub mod io;
pub mod model;
pub mod prompt_key;
pub mod proxy;
pub mod queued;
pub mod retry_after;
pub mod rewrite;
pub mod scratch;
pub mod spliced;
pub mod stream;
pub mod vars;
pub mod watch;
