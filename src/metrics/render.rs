//! Output of a scrape: the Prometheus text format (0.0.4) for `/metrics` and the JSON of
//! `/status`, from the merged worker counters plus [`Gauges`] read from the snapshot.
//!
//! Both are pure functions of their inputs, so tests compare exact text.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use super::{BUCKET_BOUNDS_US, Histogram, ServerCounts, ServerKey, StatsReport};
use crate::control::health::changes::ChangeCount;
use crate::snapshot::Snapshot;

/// How a server stands right now (`/status` "state").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Up,
    /// `down = true` in the configuration.
    Down,
    /// Unavailable after `max_fails` failures, or failing active checks.
    Failed,
}

impl ServerState {
    fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Failed => "failed",
        }
    }
}

/// One server's process-wide state, read from its marks at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerGauge {
    pub upstream: String,
    pub server: String,
    pub state: ServerState,
    pub active: u32,
    /// Ms until the server's busy mark (its own `Retry-After`) ends; 0 when not busy.
    pub busy_ms: u64,
}

/// One upstream group's wait queue, read at scrape time (process-wide, kept over reloads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueGauge {
    pub upstream: String,
    /// Requests waiting now.
    pub depth: usize,
    /// Requests refused because the queue was full.
    pub full: u64,
    /// Requests refused after waiting `queue.timeout`.
    pub timed_out: u64,
}

/// What a scrape reads directly from the process rather than from the workers.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub generation: u64,
    pub draining: bool,
    /// (succeeded, failed) reloads.
    pub reloads: (u64, u64),
    /// Listener names, in configuration order.
    pub listeners: Vec<String>,
    /// Upstream group names, in configuration order.
    pub upstreams: Vec<String>,
    /// Every group's queue, in configuration order (all zero for a group without `queue`).
    pub queues: Vec<QueueGauge>,
    /// Every server of every group, in configuration order; a group listing one address
    /// twice has it once here (the two are one series to Prometheus).
    pub servers: Vec<ServerGauge>,
    /// Workers that did not answer the scrape in time.
    pub missing_workers: usize,
    /// Access-log lines dropped because the log thread fell behind.
    pub access_log_dropped: u64,
    /// `ringway_upstream_health_changes_total`, from the prober's counts.
    pub health_changes: Vec<ChangeCount>,
}

impl Gauges {
    /// Reads `snap`'s servers at `now_ms` ([`crate::clock::now_ms`]) and the control state.
    pub fn read(snap: &Snapshot, now_ms: u64) -> Gauges {
        let control = crate::control::state::state();
        let mut servers: Vec<ServerGauge> = Vec::new();
        for group in &snap.groups {
            let peers = &group.peers;
            for (idx, s) in peers.servers().iter().enumerate() {
                let state = if s.down {
                    ServerState::Down
                } else if !peers.available(idx, now_ms) {
                    ServerState::Failed
                } else {
                    ServerState::Up
                };
                let server = s.addr.to_string();
                let twin = servers
                    .iter_mut()
                    .find(|g| g.upstream == group.name && g.server == server);
                match twin {
                    // Its share of the active requests is added; it is up if either is.
                    Some(g) => {
                        g.active += peers.active(idx);
                        g.busy_ms = g.busy_ms.max(peers.busy_ms(idx, now_ms));
                        if state == ServerState::Up {
                            g.state = state;
                        }
                    }
                    None => servers.push(ServerGauge {
                        upstream: group.name.clone(),
                        server,
                        state,
                        active: peers.active(idx),
                        busy_ms: peers.busy_ms(idx, now_ms),
                    }),
                }
            }
        }
        Gauges {
            generation: snap.generation,
            draining: control.draining(),
            reloads: control.reloads(),
            listeners: snap.listeners.iter().map(|l| l.name.clone()).collect(),
            upstreams: snap.groups.iter().map(|g| g.name.clone()).collect(),
            queues: snap
                .groups
                .iter()
                .map(|g| {
                    let queue = g.peers.queue();
                    let (full, timed_out) = queue.rejections();
                    QueueGauge {
                        upstream: g.name.clone(),
                        depth: queue.depth(),
                        full,
                        timed_out,
                    }
                })
                .collect(),
            servers,
            missing_workers: 0,
            access_log_dropped: crate::log::dropped_lines(),
            health_changes: crate::control::health::changes::changes().series(snap),
        }
    }
}

/// The `Content-Type` of [`prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole `/metrics` page.
pub fn prometheus(report: &StatsReport, g: &Gauges) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "ringway_requests_total",
        "counter",
        "Requests answered, by listener, upstream group, server of the last attempt and status code (\"\" where ringway answered before choosing one).",
    );
    for (k, n) in &report.requests {
        let code = k.code.to_string();
        let labels = [
            ("listener", k.listener.as_str()),
            ("upstream", k.upstream.as_str()),
            ("server", k.server.as_str()),
            ("code", code.as_str()),
        ];
        sample(&mut out, "ringway_requests_total", &labels, n);
    }
    server_families(&mut out, report, g);
    family(
        &mut out,
        "ringway_request_duration_seconds",
        "histogram",
        "Time from a request head read to its response done.",
    );
    histogram(
        &mut out,
        "ringway_request_duration_seconds",
        &[],
        &report.duration,
    );
    gauge_families(&mut out, report, g);
    out
}

/// The per-server counters and histogram: every configured server, plus any server that
/// is gone from the configuration but was counted.
fn server_families(out: &mut String, report: &StatsReport, g: &Gauges) {
    let mut servers: BTreeMap<ServerKey, ServerCounts> = report.servers.clone();
    for s in &g.servers {
        servers
            .entry(ServerKey {
                upstream: s.upstream.clone(),
                server: s.server.clone(),
            })
            .or_default();
    }
    fn labels(k: &ServerKey) -> [(&'static str, &str); 2] {
        [("upstream", &k.upstream), ("server", &k.server)]
    }
    family(
        out,
        "ringway_upstream_retries_total",
        "counter",
        "Failed attempts on a server that were retried on another server.",
    );
    for (k, c) in &servers {
        sample(out, "ringway_upstream_retries_total", &labels(k), c.retries);
    }
    family(
        out,
        "ringway_upstream_failures_total",
        "counter",
        "Failed attempts on a server that count against its max_fails.",
    );
    for (k, c) in &servers {
        sample(
            out,
            "ringway_upstream_failures_total",
            &labels(k),
            c.failures,
        );
    }
    family(
        out,
        "ringway_upstream_first_byte_seconds",
        "histogram",
        "Time from a request sent to a server to its response head.",
    );
    for (k, c) in &servers {
        histogram(
            out,
            "ringway_upstream_first_byte_seconds",
            &labels(k),
            &c.first_byte,
        );
    }
}

/// The connection and server gauges, then [`process_families`].
fn gauge_families(out: &mut String, report: &StatsReport, g: &Gauges) {
    family(
        out,
        "ringway_active_connections",
        "gauge",
        "Client connections open now, by listener.",
    );
    let mut listeners: BTreeMap<&str, u64> = report
        .connections
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (name.as_str(), *n))
        .collect();
    for name in &g.listeners {
        listeners.entry(name.as_str()).or_default();
    }
    for (name, n) in listeners {
        sample(out, "ringway_active_connections", &[("listener", name)], n);
    }
    family(
        out,
        "ringway_upstream_server_up",
        "gauge",
        "1 if the server takes requests, 0 while it is down, failed max_fails or failing active checks.",
    );
    for s in &g.servers {
        let up = u8::from(s.state == ServerState::Up);
        let labels = [
            ("upstream", s.upstream.as_str()),
            ("server", s.server.as_str()),
        ];
        sample(out, "ringway_upstream_server_up", &labels, up);
    }
    family(
        out,
        "ringway_upstream_server_busy",
        "gauge",
        "1 while the server is skipped because it answered 429 or 503 with Retry-After (busy, not failed).",
    );
    for s in &g.servers {
        let labels = [
            ("upstream", s.upstream.as_str()),
            ("server", s.server.as_str()),
        ];
        let busy = u8::from(s.busy_ms > 0);
        sample(out, "ringway_upstream_server_busy", &labels, busy);
    }
    family(
        out,
        "ringway_upstream_health_changes_total",
        "counter",
        "Times active health checks took a server down or brought it back, by the state it changed to.",
    );
    for c in &g.health_changes {
        let labels = [
            ("upstream", c.upstream.as_str()),
            ("server", c.server.as_str()),
            ("to", c.to),
        ];
        sample(
            out,
            "ringway_upstream_health_changes_total",
            &labels,
            c.count,
        );
    }
    family(
        out,
        "ringway_upstream_active_requests",
        "gauge",
        "Requests in flight on the server, process-wide.",
    );
    for s in &g.servers {
        let labels = [
            ("upstream", s.upstream.as_str()),
            ("server", s.server.as_str()),
        ];
        sample(out, "ringway_upstream_active_requests", &labels, s.active);
    }
    process_families(out, g);
}

/// Per upstream queues, reloads, generation, and how complete this scrape is.
fn process_families(out: &mut String, g: &Gauges) {
    family(
        out,
        "ringway_queue_depth",
        "gauge",
        "Requests waiting for a server below max_conns.",
    );
    for q in &g.queues {
        let labels = [("upstream", q.upstream.as_str())];
        sample(out, "ringway_queue_depth", &labels, q.depth);
    }
    family(
        out,
        "ringway_queue_rejected_total",
        "counter",
        "Requests answered 503 by the queue: it was full, or they waited queue.timeout.",
    );
    for q in &g.queues {
        for (reason, n) in [("full", q.full), ("timeout", q.timed_out)] {
            let labels = [("upstream", q.upstream.as_str()), ("reason", reason)];
            sample(out, "ringway_queue_rejected_total", &labels, n);
        }
    }
    family(
        out,
        "ringway_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    sample(
        out,
        "ringway_config_reloads_total",
        &[("result", "ok")],
        g.reloads.0,
    );
    sample(
        out,
        "ringway_config_reloads_total",
        &[("result", "error")],
        g.reloads.1,
    );
    family(
        out,
        "ringway_config_generation",
        "gauge",
        "Generation of the configuration serving now (1 at start; every reload attempt takes the next number).",
    );
    sample(out, "ringway_config_generation", &[], g.generation);
    family(
        out,
        "ringway_scrape_missing_workers",
        "gauge",
        "Workers that did not answer this scrape in time; their counters are missing from it.",
    );
    sample(
        out,
        "ringway_scrape_missing_workers",
        &[],
        g.missing_workers,
    );
    family(
        out,
        "ringway_access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the log thread fell behind (workers never wait for it).",
    );
    sample(
        out,
        "ringway_access_log_dropped_total",
        &[],
        g.access_log_dropped,
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    // HELP text escapes only backslash and line feed.
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            escape_label(out, val);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value: backslash, double quote and line feed are escaped.
pub fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `_bucket` lines (cumulative, `le` last, ending with `+Inf`), then `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let bounds: Vec<String> = BUCKET_BOUNDS_US.iter().map(|us| seconds(*us)).collect();
    let mut with_le: Vec<(&str, &str)> = labels.to_vec();
    let mut cumulative = 0;
    for (i, le) in bounds.iter().enumerate() {
        cumulative += h.counts[i];
        with_le.push(("le", le));
        sample(out, &bucket, &with_le, cumulative);
        with_le.pop();
    }
    cumulative += h.counts[BUCKET_BOUNDS_US.len()];
    with_le.push(("le", "+Inf"));
    sample(out, &bucket, &with_le, cumulative);
    sample(out, &format!("{name}_sum"), labels, seconds(h.sum_us));
    sample(out, &format!("{name}_count"), labels, cumulative);
}

/// Microseconds as seconds in plain decimal ("0.005", "1", "2.5").
fn seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// The `/status` document: generation, draining, and per upstream per server its address,
/// state, active requests, requests answered, failures and `busy_until_ms` (ms until its
/// busy mark ends, 0 when not busy).
pub fn status_json(report: &StatsReport, g: &Gauges) -> String {
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "{{\"generation\":{},\"draining\":{},\"missing_workers\":{},\"upstreams\":[",
        g.generation, g.draining, g.missing_workers
    );
    for (i, upstream) in g.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_string(&mut out, upstream);
        out.push_str(",\"servers\":[");
        let servers = g.servers.iter().filter(|s| &s.upstream == upstream);
        for (j, s) in servers.enumerate() {
            if j > 0 {
                out.push(',');
            }
            let failures = report
                .servers
                .get(&ServerKey {
                    upstream: s.upstream.clone(),
                    server: s.server.clone(),
                })
                .map_or(0, |c| c.failures);
            out.push_str("{\"address\":");
            json_string(&mut out, &s.server);
            let _ = write!(
                out,
                ",\"state\":\"{}\",\"active_requests\":{},\"requests\":{},\"failures\":{},\
                 \"busy_until_ms\":{}}}",
                s.state.as_str(),
                s.active,
                report.requests_for(&s.upstream, &s.server),
                failures,
                s.busy_ms
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// A JSON string literal: quote, backslash and control characters escaped.
pub fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
