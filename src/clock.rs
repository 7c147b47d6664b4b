//! A cheap process-wide monotonic clock in milliseconds, shared by workers and marks.
//!
//! Balancer marks (fail windows, down-until times) are atomics holding milliseconds since
//! process start, so they can be compared without locks and passed into pure code as `now_ms`.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process (monotonic, never 0 after start-up).
pub fn now_ms() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}
