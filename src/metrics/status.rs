//! The `/status` JSON: what the status page (and any script) polls. A pure function of
//! the merged worker counters, the [`Gauges`] and [`Layout`] read from the snapshot, and
//! the [`Process`] facts, so tests compare exact text.
//!
//! Counters are totals since the process started (they survive reloads by name); the page
//! turns them into rates from the difference between two polls. The first-byte histogram
//! goes out as its buckets (per bucket, not cumulative, bounds in `first_byte_bounds_ms`)
//! so that a poller can take percentiles over any window, plus `p50_ms`/`p99_ms` over the
//! whole life of the process ([`quantile_us`]). Fields are only ever added: the keys of
//! the first version (`generation`, `draining`, `missing_workers`, `upstreams[].name`,
//! `servers[].address/state/active_requests/requests/failures/busy_until_ms`) keep their
//! meaning (`busy_until_ms` is the time *left*, 0 when not busy).

use std::fmt::Write;

use super::render::{Gauges, ServerGauge, json_string};
use super::{BUCKET_BOUNDS_US, Histogram, ServerKey, StatsReport};
use crate::control::state::{LastReload, state, unix_ms};
use crate::snapshot::{Mode, Snapshot};

/// Facts about the process rather than its traffic.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub version: &'static str,
    pub pid: u32,
    /// When the process began serving, ms since the Unix epoch (0 = unknown).
    pub started_ms: u64,
    /// The wall clock when this was read, ms since the Unix epoch.
    pub now_ms: u64,
    /// The event-loop driver of each worker, by worker id.
    pub drivers: Vec<&'static str>,
    pub last_reload: Option<LastReload>,
}

impl Process {
    /// Reads the control state and the clock now; `drivers` is `Running::drivers`.
    pub fn read(drivers: &[&'static str]) -> Process {
        let control = state();
        Process {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started_ms: control.started_ms(),
            now_ms: unix_ms(),
            drivers: drivers.to_vec(),
            last_reload: control.last_reload(),
        }
    }
}

/// The parts of the configuration the page shows beside the counters.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub listeners: Vec<ListenerInfo>,
    pub groups: Vec<GroupInfo>,
}

#[derive(Clone, Debug)]
pub struct ListenerInfo {
    pub name: String,
    pub bind: String,
    pub mode: &'static str,
}

#[derive(Clone, Debug)]
pub struct GroupInfo {
    pub name: String,
    pub balance: &'static str,
    /// `queue.max`; `None` for a group without a queue.
    pub queue_max: Option<usize>,
    pub health_check: bool,
    /// 0 = no `slow_start`.
    pub slow_start_ms: u64,
}

impl Layout {
    pub fn read(snap: &Snapshot) -> Layout {
        Layout {
            listeners: snap
                .listeners
                .iter()
                .map(|l| ListenerInfo {
                    name: l.name.clone(),
                    bind: l.bind.to_string(),
                    mode: match l.mode {
                        Mode::Http => "http",
                        Mode::Tcp => "tcp",
                    },
                })
                .collect(),
            groups: snap
                .groups
                .iter()
                .map(|g| GroupInfo {
                    name: g.name.clone(),
                    balance: g.peers.policy().name(),
                    queue_max: g.queue.as_ref().map(|q| q.max),
                    health_check: g.health_check.is_some(),
                    slow_start_ms: g.peers.slow_start_ms(),
                })
                .collect(),
        }
    }
}

/// The value below which a share `q` (0..=1) of the observations fall, in microseconds,
/// interpolated linearly inside its bucket as Prometheus' `histogram_quantile` does. An
/// answer in the open-ended last bucket is given as the largest finite bound. `None` for
/// an empty histogram.
pub fn quantile_us(h: &Histogram, q: f64) -> Option<u64> {
    let total = h.count();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in h.counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = BUCKET_BOUNDS_US.get(i) else {
                break;
            };
            let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_US[i - 1] };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + ((upper - lower) as f64 * within).round() as u64);
        }
        below += n;
    }
    BUCKET_BOUNDS_US.last().copied()
}

/// Microseconds as milliseconds in plain decimal ("27.5", "5").
fn ms(us: u64) -> String {
    let (whole, frac) = (us / 1000, us % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
type Classes = [u64; 5];

fn add_class(classes: &mut Classes, code: u16, n: u64) {
    if let Some(slot) = classes.get_mut(usize::from(code / 100).wrapping_sub(1)) {
        *slot += n;
    }
}

fn write_classes(out: &mut String, c: &Classes) {
    let _ = write!(
        out,
        "{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}}",
        c[0], c[1], c[2], c[3], c[4]
    );
}

/// The whole `/status` document.
pub fn status_json(report: &StatsReport, g: &Gauges, layout: &Layout, p: &Process) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "{{\"generation\":{},\"draining\":{},\"missing_workers\":{},",
        g.generation, g.draining, g.missing_workers
    );
    write_process(&mut out, g, p);
    out.push_str(",\"first_byte_bounds_ms\":[");
    for (i, us) in BUCKET_BOUNDS_US.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&ms(*us));
    }
    out.push_str("],\"listeners\":[");
    for (i, l) in layout.listeners.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_listener(&mut out, report, l);
    }
    out.push_str("],\"upstreams\":[");
    for (i, upstream) in g.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let info = layout.groups.iter().find(|x| &x.name == upstream);
        write_upstream(&mut out, report, g, upstream, info);
    }
    out.push_str("]}\n");
    out
}

fn write_process(out: &mut String, g: &Gauges, p: &Process) {
    out.push_str("\"version\":");
    json_string(out, p.version);
    let uptime = p.now_ms.saturating_sub(p.started_ms);
    let _ = write!(
        out,
        ",\"pid\":{},\"started_at_ms\":{},\"now_ms\":{},\"uptime_ms\":{},\"workers\":[",
        p.pid, p.started_ms, p.now_ms, uptime
    );
    for (id, driver) in p.drivers.iter().enumerate() {
        if id > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"id\":{id},\"driver\":");
        json_string(out, driver);
        out.push('}');
    }
    let _ = write!(
        out,
        "],\"reloads\":{{\"ok\":{},\"error\":{},\"last\":",
        g.reloads.0, g.reloads.1
    );
    match &p.last_reload {
        None => out.push_str("null"),
        Some(last) => {
            let _ = write!(
                out,
                "{{\"at_ms\":{},\"generation\":{},\"ok\":{},\"error\":",
                last.at_ms,
                last.generation,
                last.error.is_none()
            );
            match &last.error {
                Some(e) => json_string(out, e),
                None => out.push_str("null"),
            }
            out.push('}');
        }
    }
    out.push('}');
}

fn write_listener(out: &mut String, report: &StatsReport, l: &ListenerInfo) {
    let mut classes = Classes::default();
    let mut requests = 0;
    for (k, n) in report.requests.iter().filter(|(k, _)| k.listener == l.name) {
        requests += n;
        add_class(&mut classes, k.code, *n);
    }
    out.push_str("{\"name\":");
    json_string(out, &l.name);
    out.push_str(",\"bind\":");
    json_string(out, &l.bind);
    let connections = report.connections.get(&l.name).copied().unwrap_or(0);
    let _ = write!(
        out,
        ",\"mode\":\"{}\",\"active_connections\":{connections},\"requests\":{requests},\"responses\":",
        l.mode
    );
    write_classes(out, &classes);
    out.push('}');
}

fn write_upstream(
    out: &mut String,
    report: &StatsReport,
    g: &Gauges,
    name: &str,
    info: Option<&GroupInfo>,
) {
    out.push_str("{\"name\":");
    json_string(out, name);
    if let Some(info) = info {
        let _ = write!(
            out,
            ",\"balance\":\"{}\",\"health_check\":{},\"slow_start_ms\":{}",
            info.balance, info.health_check, info.slow_start_ms
        );
    }
    let queue = g.queues.iter().find(|q| q.upstream == name);
    let (depth, full, timed_out) = queue.map_or((0, 0, 0), |q| (q.depth, q.full, q.timed_out));
    let _ = write!(out, ",\"queue\":{{\"depth\":{depth},\"max\":");
    match info.and_then(|i| i.queue_max) {
        Some(max) => {
            let _ = write!(out, "{max}");
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"full\":{full},\"timed_out\":{timed_out}}},\"requests_without_server\":{}",
        report.requests_for(name, "")
    );
    out.push_str(",\"servers\":[");
    let checks = info.is_some_and(|i| i.health_check);
    for (j, s) in g.servers.iter().filter(|s| s.upstream == name).enumerate() {
        if j > 0 {
            out.push(',');
        }
        write_server(out, report, s, checks);
    }
    out.push_str("]}");
}

fn write_server(out: &mut String, report: &StatsReport, s: &ServerGauge, checks: bool) {
    let key = ServerKey {
        upstream: s.upstream.clone(),
        server: s.server.clone(),
    };
    let counts = report.servers.get(&key).cloned().unwrap_or_default();
    let mut classes = Classes::default();
    let mut requests = 0;
    for (k, n) in report
        .requests
        .iter()
        .filter(|(k, _)| k.upstream == s.upstream && k.server == s.server)
    {
        requests += n;
        add_class(&mut classes, k.code, *n);
    }
    out.push_str("{\"address\":");
    json_string(out, &s.server);
    let _ = write!(
        out,
        ",\"state\":\"{}\",\"active_requests\":{},\"requests\":{requests},\"failures\":{},\
         \"busy_until_ms\":{},\"retries\":{},\"weight\":{},\"backup\":{},\"max_conns\":{}",
        s.state.as_str(),
        s.active,
        counts.failures,
        s.busy_ms,
        counts.retries,
        s.weight,
        s.backup,
        s.max_conns
    );
    if checks {
        let verdict = if s.standing.probe_down {
            "failing"
        } else {
            "passing"
        };
        let _ = write!(out, ",\"health_check\":\"{verdict}\"");
    }
    if let Some(left) = s.standing.failed_for_ms {
        let _ = write!(out, ",\"failed_for_ms\":{left}");
    }
    if let Some(ramp) = s.standing.ramp {
        let _ = write!(
            out,
            ",\"slow_start\":{{\"percent\":{},\"left_ms\":{}}}",
            ramp.percent, ramp.left_ms
        );
    }
    out.push_str(",\"responses\":");
    write_classes(out, &classes);
    write_first_byte(out, &counts.first_byte);
    out.push('}');
}

fn write_first_byte(out: &mut String, h: &Histogram) {
    let quantile = |q| quantile_us(h, q).map_or("null".to_string(), ms);
    let _ = write!(
        out,
        ",\"first_byte\":{{\"count\":{},\"sum_ms\":{},\"p50_ms\":{},\"p99_ms\":{},\"buckets\":[",
        h.count(),
        ms(h.sum_us),
        quantile(0.5),
        quantile(0.99)
    );
    for (i, n) in h.counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}");
    }
    out.push_str("]}");
}
