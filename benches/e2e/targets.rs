//! Issue 6's targets and the best peer they are set against. A peer is an HTTP proxy doing
//! the same job as ringway (tuned nginx, HAProxy in HTTP mode); for each size and each metric
//! the best peer is whichever of them did best on that metric, so ringway is never judged
//! against the weaker one. HAProxy in `mode tcp` does less work and is never a peer.

use crate::report::{Cell, Summary, latency, size_name};
use std::fmt::Write as _;

/// The proxies ringway's figures are judged against.
pub const PEERS: [&str; 2] = ["nginx", "haproxy"];

/// CPU per request at most this times the best peer's (full core).
pub const CPU_TARGET: f64 = 0.75;
/// Requests/s at half a core at least this times the best peer's.
pub const RPS_TARGET: f64 = 1.33;
/// p99 at most this times the best peer's (full core: at half a core p99 is the cgroup's
/// throttling period, the same for everyone).
pub const P99_TARGET: f64 = 1.0;

/// One metric's best peer and its figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub proxy: &'static str,
    pub value: f64,
}

/// The best peer per metric at one size; each metric may have a different winner.
#[derive(Debug, Clone, PartialEq)]
pub struct BestPeer {
    /// Lowest CPU µs per request.
    pub cpu: Best,
    /// Highest requests/s.
    pub rps: Best,
    /// Lowest p99 latency, µs.
    pub p99: Best,
}

/// The best peer at `size` among the peers that have runs in `cells`; None when none has.
/// Ties go to the peer first in [`PEERS`]. A zero or non-finite figure (a failed reading,
/// not a fast proxy) never wins.
pub fn best_peer(cells: &[Cell], size: u64) -> Option<BestPeer> {
    let peers: Vec<(&'static str, Summary)> = PEERS
        .iter()
        .filter_map(|&peer| cells.iter().find(|c| c.size == size && c.proxy == peer))
        .filter_map(|c| Some((c.proxy, c.summary()?)))
        .collect();
    let pick = |value: fn(&Summary) -> f64, better: fn(f64, f64) -> bool| {
        let mut best: Option<Best> = None;
        for (proxy, s) in &peers {
            let v = value(s);
            if !(v.is_finite() && v > 0.0) {
                continue;
            }
            if best.as_ref().is_none_or(|b| better(v, b.value)) {
                best = Some(Best { proxy, value: v });
            }
        }
        best
    };
    Some(BestPeer {
        cpu: pick(|s| s.cpu, |a, b| a < b)?,
        rps: pick(|s| s.rps, |a, b| a > b)?,
        p99: pick(|s| s.p99_us, |a, b| a < b)?,
    })
}

/// `figure ÷ best`, or None when there is no best to divide by.
pub fn ratio(figure: f64, best: Option<&Best>) -> Option<f64> {
    best.filter(|b| b.value > 0.0).map(|b| figure / b.value)
}

/// One judged target: the ratio, the best peer it was taken against, and whether it is met.
struct Judged {
    ratio: f64,
    best: Best,
    met: bool,
}

impl Judged {
    fn new(figure: f64, best: &Best, met: impl Fn(f64) -> bool) -> Judged {
        let ratio = figure / best.value;
        Judged {
            ratio,
            best: best.clone(),
            met: met(ratio),
        }
    }

    fn word(&self) -> &'static str {
        if self.met { "met" } else { "missed" }
    }
}

/// One line per size: ringway's CPU per request and p99 (from `full`) and requests/s at half
/// a core (from `half`, None when that pass did not run) against the best peer, each with its
/// target and whether it is met.
pub fn verdicts(full: &[Cell], half: Option<&[Cell]>, sizes: &[u64]) -> String {
    let mut out = format!(
        "### Targets against the best peer (issue 6)\n\nCPU µs/req ≤ {CPU_TARGET:.2}× and p99 ≤ \
         {P99_TARGET:.2}× the best peer at one full core; req/s ≥ {RPS_TARGET:.2}× the best \
         peer at half a core. Peers: {}; the best peer is taken per size and per metric.\n\n",
        PEERS.join(", ")
    );
    for &size in sizes {
        let _ = writeln!(out, "- {}: {}", size_name(size), verdict(full, half, size));
    }
    out
}

/// The verdict at one size, without the size.
pub fn verdict(full: &[Cell], half: Option<&[Cell]>, size: u64) -> String {
    let ringway = |cells: &[Cell]| {
        cells
            .iter()
            .find(|c| c.proxy == "ringway" && c.size == size)
            .and_then(Cell::summary)
    };
    let (Some(mine), Some(best)) = (ringway(full), best_peer(full, size)) else {
        return "not judged: ringway or every peer has no runs at one full core".into();
    };
    let cpu = Judged::new(mine.cpu, &best.cpu, |r| r <= CPU_TARGET);
    let p99 = Judged::new(mine.p99_us, &best.p99, |r| r <= P99_TARGET);
    let rps = match half {
        None => Err("not measured (half-core pass off or unavailable)"),
        Some(cells) => match (ringway(cells), best_peer(cells, size)) {
            (Some(mine), Some(best)) => Ok(Judged::new(mine.rps, &best.rps, |r| r >= RPS_TARGET)),
            _ => Err("not judged: ringway or every peer has no runs at half a core"),
        },
    };
    let mut judged = vec![&cpu, &p99];
    if let Ok(r) = &rps {
        judged.push(r);
    }
    let missed = judged.iter().filter(|j| !j.met).count();
    let overall = match (missed, rps.is_ok()) {
        (0, true) => "**all met**".to_string(),
        (0, false) => "**met so far**".to_string(),
        (n, _) => format!("**{n} missed**"),
    };
    let rps_text = match &rps {
        Ok(j) => format!(
            "half-core req/s {:.3}× {} ({:.0}): ≥ {RPS_TARGET:.2}, {}",
            j.ratio,
            j.best.proxy,
            j.best.value,
            j.word()
        ),
        Err(why) => format!("half-core req/s {why}"),
    };
    // What the kernel does for ringway (system calls, TCP over loopback, wake-ups) is the
    // part user-space work cannot shrink: next to the CPU target, how much of the best
    // peer's whole CPU it alone takes.
    let kernel = mine.kernel / best.cpu.value;
    format!(
        "{overall} — CPU {:.3}× {} ({:.1} µs/req): ≤ {CPU_TARGET:.2}, {} (ringway's kernel \
         time alone {kernel:.3}×); p99 {:.3}× {} ({}): ≤ {P99_TARGET:.2}, {}; {rps_text}",
        cpu.ratio,
        cpu.best.proxy,
        cpu.best.value,
        cpu.word(),
        p99.ratio,
        p99.best.proxy,
        latency(p99.best.value),
        p99.word(),
    )
}
