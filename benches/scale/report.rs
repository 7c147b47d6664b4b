//! The scaling benchmark's figures: one sample per wrk run, the machine's CPU counters, the
//! per-round ratios (two workers against one, least_conn against round robin) and the
//! Markdown tables.

use crate::configs::Shape;
use crate::measure::median;

/// One proxy in one shape: what a row of the first table is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub proxy: &'static str,
    pub shape: Shape,
}

impl Subject {
    pub fn balance(&self) -> &'static str {
        if self.shape.least_conn {
            "least_conn"
        } else {
            "round_robin"
        }
    }

    /// "ringway w2 least_conn": for messages and process names.
    pub fn name(&self) -> String {
        format!("{} w{} {}", self.proxy, self.shape.workers, self.balance())
    }

    /// "ringway-w2-least_conn": for file names (configs, logs, nginx's pid and temp paths).
    pub fn tag(&self) -> String {
        self.name().replace(' ', "-")
    }
}

/// The figures of one wrk run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub round: usize,
    pub rps: f64,
    pub p99_us: f64,
    pub errors: u64,
    /// The proxy's CPU (all its processes and threads) per request, µs.
    pub proxy_us: f64,
    /// wrk's and the backends' CPU per request, µs: the load shares the proxy's CPUs.
    pub load_us: f64,
    /// How busy the whole machine was over the run, 0 to 1 (1 = every CPU busy).
    pub busy: f64,
}

/// (busy, total) clock ticks of all CPUs so far, from /proc/stat's `cpu` line.
pub fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_machine_ticks(&text).unwrap_or((0, 0))
}

/// The `cpu` line's user, nice, system, idle, iowait, irq, softirq, steal: busy is all of
/// them but idle and iowait, total is all eight.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 8 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    Some((total - fields[3] - fields[4], total))
}

/// The share of the machine's CPU time that was busy between two [`machine_ticks`].
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1) as f64;
    if total > 0.0 { busy / total } else { f64::NAN }
}

/// `field(a) / field(b)` for each round both ran in (the two runs of a round ran minutes
/// apart at most, so what else loaded the machine weighs on both): median, lowest, highest.
pub fn paired_ratio(
    a: &[Sample],
    b: &[Sample],
    field: impl Fn(&Sample) -> f64,
) -> Option<(f64, f64, f64)> {
    let ratios: Vec<f64> = a
        .iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| y.round == x.round)?;
            let (fx, fy) = (field(x), field(y));
            (fy > 0.0 && fx.is_finite()).then(|| fx / fy)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&ratios), low, high))
}

fn ratio_text(r: Option<(f64, f64, f64)>) -> String {
    r.map_or("–".into(), |(m, lo, hi)| {
        format!("{m:.2} ({lo:.2}–{hi:.2})")
    })
}

fn med(samples: &[Sample], field: impl Fn(&Sample) -> f64) -> f64 {
    median(&samples.iter().map(field).collect::<Vec<_>>())
}

/// Every table of the report: each subject's medians, then two workers against one per
/// proxy and balancer, then least_conn against round robin per proxy and worker count.
pub fn tables(results: &[(Subject, Vec<Sample>)], workers: &[u32]) -> String {
    let mut text = String::from(
        "### Each proxy and shape (medians)\n\n| proxy | workers | balance | req/s | p99 | proxy \
         CPU µs/req | wrk + backends CPU µs/req | machine busy | errors |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (s, samples) in results {
        if samples.is_empty() {
            text.push_str(&format!(
                "| {} | {} | {} | failed | | | | | |\n",
                s.proxy,
                s.shape.workers,
                s.balance()
            ));
            continue;
        }
        text.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.1} | {:.1} | {:.0}% | {} |\n",
            s.proxy,
            s.shape.workers,
            s.balance(),
            med(samples, |x| x.rps),
            med(samples, |x| x.p99_us) / 1e3,
            med(samples, |x| x.proxy_us),
            med(samples, |x| x.load_us),
            med(samples, |x| x.busy) * 100.0,
            samples.iter().map(|x| x.errors).sum::<u64>(),
        ));
    }
    let find = |proxy: &str, workers: u32, least_conn: bool| {
        results
            .iter()
            .find(|(s, _)| {
                s.proxy == proxy
                    && s.shape
                        == Shape {
                            workers,
                            least_conn,
                        }
            })
            .map(|(_, samples)| samples.as_slice())
    };
    let mut proxies: Vec<&str> = results.iter().map(|(s, _)| s.proxy).collect();
    proxies.dedup();
    if let (Some(&one), Some(&many)) = (workers.iter().min(), workers.iter().max())
        && one != many
    {
        text.push_str(&format!(
            "\n### {many} workers against {one} (median of the rounds' own ratios, lowest–highest)\n\n\
             | proxy | balance | req/s ×{many} ÷ ×{one} | proxy CPU µs/req ×{many} ÷ ×{one} |\n\
             |---|---|---:|---:|\n"
        ));
        for &proxy in &proxies {
            for least_conn in [false, true] {
                let (Some(a), Some(b)) =
                    (find(proxy, many, least_conn), find(proxy, one, least_conn))
                else {
                    continue;
                };
                let balance = if least_conn {
                    "least_conn"
                } else {
                    "round_robin"
                };
                text.push_str(&format!(
                    "| {proxy} | {balance} | {} | {} |\n",
                    ratio_text(paired_ratio(a, b, |x| x.rps)),
                    ratio_text(paired_ratio(a, b, |x| x.proxy_us)),
                ));
            }
        }
    }
    let mut lc = String::new();
    for &proxy in &proxies {
        for &w in workers {
            if let (Some(a), Some(b)) = (find(proxy, w, true), find(proxy, w, false)) {
                lc.push_str(&format!(
                    "| {proxy} | {w} | {} | {} |\n",
                    ratio_text(paired_ratio(a, b, |x| x.rps)),
                    ratio_text(paired_ratio(a, b, |x| x.proxy_us)),
                ));
            }
        }
    }
    if !lc.is_empty() {
        text.push_str(
            "\n### least_conn against round_robin (median of the rounds' own ratios)\n\n\
             | proxy | workers | req/s lc ÷ rr | proxy CPU µs/req lc ÷ rr |\n|---|---:|---:|---:|\n",
        );
        text.push_str(&lc);
    }
    text
}
