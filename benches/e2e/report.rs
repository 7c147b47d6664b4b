//! The markdown tables: medians over rounds per (proxy, size), with ratios to the best peer
//! ([`crate::targets`]) and to nginx and HAProxy each, and the results file under
//! benches/results/.

use crate::measure::{WrkReport, median};
use crate::targets::{self, best_peer};
use std::fmt::Write as _;
use std::path::PathBuf;

/// One wrk run against one proxy.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The round it ran in: runs of two proxies in the same round ran back to back.
    pub round: usize,
    pub wrk: WrkReport,
    /// CPU seconds the proxy's processes used during the run, per request, in µs.
    pub cpu_us_per_req: f64,
    /// The part of `cpu_us_per_req` spent in the kernel (system time).
    pub kernel_us_per_req: f64,
}

/// All runs of one proxy at one size, in one pass.
#[derive(Debug, Clone)]
pub struct Cell {
    pub proxy: &'static str,
    pub size: u64,
    pub samples: Vec<Sample>,
    /// Why runs are missing (the proxy died, wrk failed), if they are.
    pub failure: Option<String>,
}

/// Medians of a [`Cell`]'s samples.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu: f64,
    /// Median kernel (system) part of the CPU per request.
    pub kernel: f64,
    pub errors: u64,
}

impl Cell {
    pub fn summary(&self) -> Option<Summary> {
        if self.samples.is_empty() {
            return None;
        }
        let pick = |f: fn(&Sample) -> f64| median(&self.samples.iter().map(f).collect::<Vec<_>>());
        Some(Summary {
            rps: pick(|s| s.wrk.rps),
            p50_us: pick(|s| s.wrk.p50_us),
            p99_us: pick(|s| s.wrk.p99_us),
            cpu: pick(|s| s.cpu_us_per_req),
            kernel: pick(|s| s.kernel_us_per_req),
            errors: self.samples.iter().map(|s| s.wrk.errors).sum(),
        })
    }
}

/// One pass's table: a row per proxy and size, in the order of `sizes` then `proxies`, then
/// which peer was best per size and metric.
pub fn table(title: &str, cells: &[Cell], sizes: &[u64], proxies: &[&str]) -> String {
    let mut out = format!("### {title}\n\n");
    out.push_str(
        "| proxy | size | req/s | p50 | p99 | CPU µs/req | of it kernel | errors \
         | CPU ÷ best peer | req/s ÷ best peer | p99 ÷ best peer | CPU ÷ nginx | CPU ÷ HAProxy |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let find = |proxy: &str, size: u64| {
        cells
            .iter()
            .find(|c| c.proxy == proxy && c.size == size)
            .and_then(Cell::summary)
    };
    let mut best_lines = Vec::new();
    for &size in sizes {
        let best = best_peer(cells, size);
        let nginx = find("nginx", size);
        let haproxy = find("haproxy", size);
        for &proxy in proxies {
            let Some(cell) = cells.iter().find(|c| c.proxy == proxy && c.size == size) else {
                continue;
            };
            let shown = proxy_label(proxy);
            let Some(s) = cell.summary() else {
                let why = cell.failure.as_deref().unwrap_or("no runs");
                let _ = writeln!(
                    out,
                    "| {shown} | {} | failed: {why} |||||||||||",
                    size_name(size)
                );
                continue;
            };
            let show = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}"));
            let to = |reference: &Option<Summary>| {
                reference
                    .as_ref()
                    .filter(|r| r.cpu > 0.0)
                    .map(|r| s.cpu / r.cpu)
            };
            let _ = writeln!(
                out,
                "| {shown} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
                size_name(size),
                s.rps,
                latency(s.p50_us),
                latency(s.p99_us),
                s.cpu,
                s.kernel,
                s.errors,
                show(targets::ratio(s.cpu, best.as_ref().map(|b| &b.cpu))),
                show(targets::ratio(s.rps, best.as_ref().map(|b| &b.rps))),
                show(targets::ratio(s.p99_us, best.as_ref().map(|b| &b.p99))),
                show(to(&nginx)),
                show(to(&haproxy)),
            );
        }
        if let Some(b) = best {
            best_lines.push(format!(
                "{}: CPU {} ({:.1} µs/req), req/s {} ({:.0}), p99 {} ({})",
                size_name(size),
                b.cpu.proxy,
                b.cpu.value,
                b.rps.proxy,
                b.rps.value,
                b.p99.proxy,
                latency(b.p99.value),
            ));
        }
    }
    if !best_lines.is_empty() {
        let _ = write!(out, "\nBest peer per size: {}.\n", best_lines.join("; "));
    }
    if proxies.contains(&crate::HAPROXY_TCP) {
        out.push_str(
            "\nhaproxy-tcp is HAProxy in `mode tcp`, relaying bytes without any HTTP work: a \
             reference line, never a peer.\n",
        );
    }
    out
}

/// The proxy column: the TCP relay is marked where it stands, not only in a footnote.
fn proxy_label(proxy: &str) -> String {
    if proxy == crate::HAPROXY_TCP {
        format!("{proxy} (reference)")
    } else {
        proxy.to_string()
    }
}

/// ringway against the older binary run as `ringway-before`, per size: each one's CPU per
/// request and req/s as the median and the lowest to highest round, and after ÷ before as
/// the median of the per-round ratios (the two ran back to back in a round, so load that
/// drifts on a shared machine cancels out more than between medians) with their range.
pub fn before_after(title: &str, cells: &[Cell], sizes: &[u64]) -> String {
    let mut out = format!("### {title}\n\n");
    out.push_str(
        "| size | CPU µs/req before | CPU µs/req after | CPU after ÷ before \
         | req/s before | req/s after | req/s after ÷ before | rounds |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let find = |proxy: &str, size: u64| cells.iter().find(|c| c.proxy == proxy && c.size == size);
    for &size in sizes {
        let (Some(before), Some(after)) = (find(crate::BASELINE, size), find("ringway", size))
        else {
            continue;
        };
        let cpu = |s: &Sample| s.cpu_us_per_req;
        let rps = |s: &Sample| s.wrk.rps;
        let pairs = paired(before, after);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            size_name(size),
            spread(&before.samples, cpu, 1),
            spread(&after.samples, cpu, 1),
            ratio_spread(&pairs, cpu),
            spread(&before.samples, rps, 0),
            spread(&after.samples, rps, 0),
            ratio_spread(&pairs, rps),
            pairs.len(),
        );
    }
    out.push_str(
        "\nEach figure: median (lowest–highest round); after ÷ before: median of the rounds' \
         ratios (lowest–highest). CPU: lower is better.\n",
    );
    out
}

/// The runs of `before` and `after` that ran in the same round.
fn paired<'a>(before: &'a Cell, after: &'a Cell) -> Vec<(&'a Sample, &'a Sample)> {
    before
        .samples
        .iter()
        .filter_map(|b| Some((b, after.samples.iter().find(|a| a.round == b.round)?)))
        .collect()
}

/// "9.6 (9.4–9.9)": median and range of `f` over `samples`, with `digits` decimals.
pub fn spread(samples: &[Sample], f: fn(&Sample) -> f64, digits: usize) -> String {
    let values: Vec<f64> = samples.iter().map(f).collect();
    if values.is_empty() {
        return "–".into();
    }
    let (lo, hi) = min_max(&values);
    format!("{:.digits$} ({lo:.digits$}–{hi:.digits$})", median(&values))
}

/// "1.02 (0.98–1.05)": median and range of after ÷ before of `f` over the pairs.
fn ratio_spread(pairs: &[(&Sample, &Sample)], f: fn(&Sample) -> f64) -> String {
    let ratios: Vec<f64> = pairs
        .iter()
        .filter(|(b, _)| f(b) > 0.0)
        .map(|(b, a)| f(a) / f(b))
        .collect();
    if ratios.is_empty() {
        return "–".into();
    }
    let (lo, hi) = min_max(&ratios);
    format!("{:.3} ({lo:.3}–{hi:.3})", median(&ratios))
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// "16 B", "4 KiB", "64 KiB".
pub fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Latency with the unit wrk would pick.
pub fn latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// UTC "YYYYMMDD-HHMMSS" for the results file name (no date crate needed).
pub fn timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = ringway::clock::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Writes `text` to benches/results/<kind>-<timestamp>.md and returns the path.
pub fn write_results(kind: &str, text: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("results");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{kind}-{}.md", timestamp(now)));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
