//! The reload benchmark's table: per proxy a row without reloads and a row with a reload
//! every interval (medians over rounds; failures and reloads summed), the throughput each
//! proxy loses to reloading, and whether ringway meets its goal.

use super::driver::{Driven, Tally};
use crate::measure::median;
use crate::report::{Sample, latency};
use std::fmt::Write as _;

/// ringway's goal under reloads: less than this share of its no-reload throughput lost ...
pub const GOAL_MAX_LOSS_PCT: f64 = 5.0;

/// One wrk run and, for a reload run, what the reloads did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The round it ran in: the loss pairs the two runs of one proxy in the same round.
    pub round: usize,
    pub sample: Sample,
    pub driven: Driven,
    /// Reloads done / refused during the run by the proxy's own count; None where the proxy
    /// gives no count.
    pub tally: Option<Tally>,
    /// After a reload run: whether the proxy then served the variant written last.
    pub in_effect: Option<bool>,
}

/// All runs of one proxy with or without reloads.
#[derive(Debug, Clone)]
pub struct Line {
    pub proxy: &'static str,
    pub reloading: bool,
    pub runs: Vec<Run>,
    /// Why runs are missing (the proxy died, wrk failed), if they are.
    pub failure: Option<String>,
}

impl Line {
    fn pick(&self, f: fn(&Run) -> f64) -> f64 {
        median(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn rps(&self) -> f64 {
        self.pick(|r| r.sample.wrk.rps)
    }

    fn failed_requests(&self) -> u64 {
        self.runs.iter().map(|r| r.sample.wrk.errors).sum()
    }

    fn sent(&self) -> u64 {
        self.runs.iter().map(|r| r.driven.sent).sum()
    }

    /// Summed tally, None if any run lacks one.
    fn tally(&self) -> Option<Tally> {
        self.runs
            .iter()
            .try_fold(Tally { ok: 0, failed: 0 }, |acc, r| {
                r.tally.map(|t| Tally {
                    ok: acc.ok + t.ok,
                    failed: acc.failed + t.failed,
                })
            })
    }
}

/// The table and the summary lines under it.
pub fn table(lines: &[Line], interval_ms: u64) -> String {
    let mut out = String::from(
        "| proxy | reload | req/s | p99 | failed requests | reloads sent | reloads done \
         (refused) | CPU µs/req | req/s loss |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for line in lines {
        let mode = if line.reloading {
            format!("every {interval_ms} ms")
        } else {
            "none".to_string()
        };
        if line.runs.is_empty() {
            let why = line.failure.as_deref().unwrap_or("no runs");
            let _ = writeln!(out, "| {} | {mode} | failed: {why} |||||||", line.proxy);
            continue;
        }
        let (sent, done, loss) = if line.reloading {
            let done = line
                .tally()
                .map_or("–".to_string(), |t| format!("{} ({})", t.ok, t.failed));
            let loss = loss_pct(lines, line.proxy).map_or("–".into(), |l| format!("{l:.1}%"));
            (line.sent().to_string(), done, loss)
        } else {
            ("0".to_string(), "–".to_string(), "–".to_string())
        };
        let _ = writeln!(
            out,
            "| {} | {mode} | {:.0} | {} | {} | {sent} | {done} | {:.1} | {loss} |",
            line.proxy,
            line.rps(),
            latency(line.pick(|r| r.sample.wrk.p99_us)),
            line.failed_requests(),
            line.pick(|r| r.sample.cpu_us_per_req),
        );
    }
    out.push('\n');
    out.push_str(&summary(lines));
    out
}

fn find<'a>(lines: &'a [Line], proxy: &str, reloading: bool) -> Option<&'a Line> {
    lines
        .iter()
        .find(|l| l.proxy == proxy && l.reloading == reloading && !l.runs.is_empty())
}

/// Req/s lost to reloading in each round, in % of the same round's no-reload run. The two
/// runs of a round ran back to back, so load drifting on a shared machine cancels out more
/// than it does between medians over all rounds.
pub fn round_losses(lines: &[Line], proxy: &str) -> Vec<f64> {
    let (Some(calm), Some(busy)) = (find(lines, proxy, false), find(lines, proxy, true)) else {
        return Vec::new();
    };
    calm.runs
        .iter()
        .filter(|c| c.sample.wrk.rps > 0.0)
        .filter_map(|c| {
            let b = busy.runs.iter().find(|b| b.round == c.round)?;
            Some((c.sample.wrk.rps - b.sample.wrk.rps) / c.sample.wrk.rps * 100.0)
        })
        .collect()
}

/// "35372 → 37244 (-5.3%)" for each round that has both runs, in round order: the spread
/// behind the median, so one disturbed round can be told from a steady loss.
fn round_pairs(lines: &[Line], proxy: &str) -> Vec<String> {
    let (Some(calm), Some(busy)) = (find(lines, proxy, false), find(lines, proxy, true)) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, String)> = calm
        .runs
        .iter()
        .filter(|c| c.sample.wrk.rps > 0.0)
        .filter_map(|c| {
            let b = busy.runs.iter().find(|b| b.round == c.round)?;
            let (before, after) = (c.sample.wrk.rps, b.sample.wrk.rps);
            let loss = (before - after) / before * 100.0;
            Some((c.round, format!("{before:.0} → {after:.0} ({loss:.1}%)")))
        })
        .collect();
    pairs.sort_by_key(|(round, _)| *round);
    pairs.into_iter().map(|(_, text)| text).collect()
}

/// The median of [`round_losses`].
pub fn loss_pct(lines: &[Line], proxy: &str) -> Option<f64> {
    let losses = round_losses(lines, proxy);
    (!losses.is_empty()).then(|| median(&losses))
}

fn summary(lines: &[Line]) -> String {
    let mut out = String::new();
    let mut proxies: Vec<&str> = lines.iter().map(|l| l.proxy).collect();
    proxies.dedup();
    let losses: Vec<String> = proxies
        .iter()
        .map(|p| {
            let each = round_losses(lines, p);
            let (lo, hi) = each
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            match loss_pct(lines, p) {
                Some(l) => format!("{p} {l:.1}% ({lo:.1}% to {hi:.1}%)"),
                None => format!("{p} –"),
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "- req/s lost to reloading, median of the rounds (lowest to highest): {}",
        losses.join(", ")
    );
    for p in &proxies {
        let each = round_pairs(lines, p);
        if !each.is_empty() {
            let _ = writeln!(
                out,
                "- {p} per round, req/s none → reloading: {}",
                each.join(", ")
            );
        }
    }
    let effect: Vec<String> = proxies
        .iter()
        .filter_map(|p| find(lines, p, true))
        .map(|l| {
            let yes = l.runs.iter().filter(|r| r.in_effect == Some(true)).count();
            format!("{} {yes} of {}", l.proxy, l.runs.len())
        })
        .collect();
    let _ = writeln!(
        out,
        "- runs after which the proxy served the config written last: {}",
        effect.join(", ")
    );
    if let Some(calm) = find(lines, "ringway", false) {
        let _ = writeln!(
            out,
            "- ringway CPU per request without reloads: {:.2} µs (the hot path must not get \
             slower: compare before/after the reload feature)",
            calm.pick(|r| r.sample.cpu_us_per_req)
        );
    }
    if let (Some(loss), Some(busy)) = (loss_pct(lines, "ringway"), find(lines, "ringway", true)) {
        let failed = busy.failed_requests();
        // Cheap reloads that never happened prove nothing: the goal counts only when every
        // run ended on the config written last.
        let applied = busy.runs.iter().all(|r| r.in_effect == Some(true));
        let verdict = match (applied, loss < GOAL_MAX_LOSS_PCT && failed == 0) {
            (false, _) => "not shown (ringway did not take up the configs written)",
            (true, true) => "met",
            (true, false) => "not met",
        };
        let _ = writeln!(
            out,
            "- goal (ringway loses < {GOAL_MAX_LOSS_PCT:.0}% req/s and fails 0 requests under \
             reloads): {verdict} ({loss:.1}%, {failed} failed)"
        );
    }
    out
}
