//! Metrics: per-worker counters on the data path, merged by name when the admin listener
//! is scraped, and rendered as Prometheus text or `/status` JSON.
//!
//! - [`local`]: [`LocalStats`], one per worker (`!Send`, plain integers behind one
//!   `RefCell`, addressed by the snapshot's listener/group/server indexes: no atomics and no
//!   string hashing per request). When the worker's snapshot generation changes, the
//!   index tables are folded into a name-keyed archive, so counters survive reloads.
//! - [`collect`]: [`Collector`], held by the admin thread: sends `WorkerMsg::Report` to
//!   every worker, waits a bounded time, and merges the name-keyed [`StatsReport`]s.
//! - [`render`]: the process-wide gauges read straight from the snapshot at scrape time
//!   ([`render::Gauges`]) and the Prometheus text.
//! - [`status`]: the `/status` JSON (what the status page polls) and first-byte
//!   percentiles from the histogram buckets.
//!
//! Label values: `listener` and `upstream` are configuration names, `server` is the
//! server's address as configured (`127.0.0.1:1701`), `code` the status sent to the
//! client. ringway's own answers where no upstream or no server was chosen carry `""`.

pub mod collect;
pub mod local;
pub mod render;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

pub use collect::Collector;
pub use local::{ConnectionGauge, LocalStats};

/// Upper bounds of the histogram buckets, in microseconds (the `+Inf` bucket is implicit).
/// From a cached answer (5 ms) to a long non-streamed generation (5 min): LLM backends
/// span that whole range.
pub const BUCKET_BOUNDS_US: [u64; 15] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
];

/// Buckets including `+Inf`.
const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// A fixed-bucket histogram of durations. Counts are per bucket (not cumulative; the
/// renderer accumulates), the sum is kept in whole microseconds so merging stays exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS],
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

/// `ringway_requests_total` labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    pub listener: String,
    pub upstream: String,
    pub server: String,
    pub code: u16,
}

/// `{upstream, server}` labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerKey {
    pub upstream: String,
    pub server: String,
}

/// What one worker counted for one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Failed attempts that were retried on another server.
    pub retries: u64,
    /// Failed attempts that count against `max_fails` (errors, timeouts, bad heads, 5xx/429
    /// named in `next_upstream`).
    pub failures: u64,
    /// Request sent → response head.
    pub first_byte: Histogram,
}

impl ServerCounts {
    fn merge(&mut self, other: &ServerCounts) {
        self.retries += other.retries;
        self.failures += other.failures;
        self.first_byte.merge(&other.first_byte);
    }
}

/// Counters keyed by names: what a worker reports, what the archive of past generations
/// holds, and what a scrape merges. `Send`, unlike [`LocalStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsReport {
    pub requests: BTreeMap<RequestKey, u64>,
    pub servers: BTreeMap<ServerKey, ServerCounts>,
    /// Head read → response done, every request whose head was read.
    pub duration: Histogram,
    /// Client connections open now, by listener name (a gauge: reported, never archived).
    pub connections: BTreeMap<String, u64>,
}

impl StatsReport {
    /// Adds `other` into `self` (counters and histograms sum; so do the connection gauges,
    /// which come from different workers).
    pub fn merge(&mut self, other: &StatsReport) {
        for (key, n) in &other.requests {
            *self.requests.entry(key.clone()).or_default() += n;
        }
        for (key, counts) in &other.servers {
            self.servers.entry(key.clone()).or_default().merge(counts);
        }
        self.duration.merge(&other.duration);
        for (name, n) in &other.connections {
            *self.connections.entry(name.clone()).or_default() += n;
        }
    }

    pub fn server_mut(&mut self, upstream: &str, server: &str) -> &mut ServerCounts {
        self.servers
            .entry(ServerKey {
                upstream: upstream.to_string(),
                server: server.to_string(),
            })
            .or_default()
    }

    /// Requests answered through `server` of `upstream`, over every listener and code.
    pub fn requests_for(&self, upstream: &str, server: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.upstream == upstream && k.server == server)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;
