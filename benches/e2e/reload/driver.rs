//! The reload driver and the ways the harness sees what a reload did: a thread that rewrites a
//! proxy's config file and signals it every interval, a bounded number of times; the proxy's
//! own count of reloads done and failed (nginx's and HAProxy's logs, ringway's metrics); and
//! which config variant the proxy serves, read from how requests split over the backends.

use super::configs::WEIGHTS;
use crate::procs::{self, check_interrupted};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a proxy is told to reload once its config file holds the new variant.
pub enum Trigger {
    /// A signal to one pid: SIGHUP to ringway, SIGUSR2 to HAProxy's master.
    Signal { pid: u32, signal: libc::c_int },
    /// A command run to completion on the load CPU: `nginx -s reload` (which itself reads
    /// the pid file and sends SIGHUP to the master).
    Command {
        program: PathBuf,
        args: Vec<String>,
        cpu: usize,
        log: PathBuf,
    },
}

/// One proxy's config file, its two variants, and how to make it reread the file.
pub struct Reloader {
    pub conf: PathBuf,
    pub variants: [String; 2],
    /// The variant last written to `conf`: the one the proxy should serve once reloaded.
    pub current: usize,
    pub trigger: Trigger,
}

impl Reloader {
    /// Writes the other variant, then triggers the reload. The file is replaced by a rename,
    /// so a proxy that rereads it while the harness writes never sees half a file.
    pub fn reload_once(&mut self) -> Result<(), String> {
        let next = 1 - self.current;
        write_atomically(&self.conf, &self.variants[next])?;
        self.current = next;
        match &self.trigger {
            Trigger::Signal { pid, signal } => {
                let pid = libc::pid_t::try_from(*pid).map_err(|e| e.to_string())?;
                // SAFETY: kill(2) on a child this harness started, with a valid signal.
                if unsafe { libc::kill(pid, *signal) } != 0 {
                    return Err(format!("kill: {}", std::io::Error::last_os_error()));
                }
                Ok(())
            }
            Trigger::Command {
                program,
                args,
                cpu,
                log,
            } => {
                let cmd = procs::pinned(*cpu, program, args);
                procs::run_bounded(cmd, log, Duration::from_secs(5)).map(|_| ())
            }
        }
    }
}

pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the driver did during one run.
#[derive(Debug, Default, Clone)]
pub struct Driven {
    /// Reloads triggered without error (signal delivered, `nginx -s reload` exited 0).
    pub sent: u64,
    /// Triggers that failed, with the first error kept for the notes.
    pub trigger_errors: u64,
    pub first_error: Option<String>,
}

/// Reloads `count` times, the k-th at `start + k × interval`, stopping early once `done` is
/// set (wrk finished) or the harness is interrupted. A reload that overruns its slot delays
/// the next one rather than letting them bunch up.
pub fn drive(r: &mut Reloader, count: u64, interval: Duration, done: &AtomicBool) -> Driven {
    let start = Instant::now();
    let mut out = Driven::default();
    for k in 1..=count {
        let at = start + interval * k as u32;
        loop {
            if done.load(Ordering::SeqCst) || check_interrupted().is_err() {
                return out;
            }
            let now = Instant::now();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(10)));
        }
        match r.reload_once() {
            Ok(()) => out.sent += 1,
            Err(e) => {
                out.trigger_errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// Where the proxy says how many reloads it did.
pub enum Witness {
    /// nginx's error log at `notice`: one `reconfiguring` line per reload it started;
    /// `[emerg]` lines when a new config was refused.
    NginxLog(PathBuf),
    /// HAProxy's master output: `Loading success.` per worker started from a (re)load,
    /// `Loading failure!` per reload that kept the old worker.
    HaproxyLog(PathBuf),
    /// ringway's admin `/metrics`: `ringway_config_reloads_total{result="ok"|"error"}`.
    RingwayMetrics(SocketAddr),
}

/// Reloads done and refused so far, by the proxy's own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
}

impl Witness {
    /// The proxy's cumulative tally, or None where it gives none (today's ringway has no
    /// admin listener yet).
    pub fn tally(&self) -> Option<Tally> {
        match self {
            Witness::NginxLog(path) => Some(nginx_tally(&std::fs::read_to_string(path).ok()?)),
            Witness::HaproxyLog(path) => Some(haproxy_tally(&std::fs::read_to_string(path).ok()?)),
            Witness::RingwayMetrics(admin) => {
                let (status, body) = procs::http_get(*admin, "/metrics").ok()?;
                if status != 200 {
                    return None;
                }
                ringway_tally(&String::from_utf8_lossy(&body))
            }
        }
    }
}

pub fn nginx_tally(log: &str) -> Tally {
    let count = |f: &dyn Fn(&str) -> bool| log.lines().filter(|l| f(l)).count() as u64;
    Tally {
        // The signal line ends in ", reconfiguring"; the master's own step in ": reconfiguring".
        ok: count(&|l| l.ends_with(": reconfiguring")),
        failed: count(&|l| l.contains("[emerg]")),
    }
}

pub fn haproxy_tally(log: &str) -> Tally {
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count() as u64;
    Tally {
        // The first success is the start, not a reload.
        ok: count("Loading success.").saturating_sub(1),
        failed: count("Loading failure!"),
    }
}

/// Reads both `ringway_config_reloads_total` series; None when the metric is absent.
pub fn ringway_tally(metrics: &str) -> Option<Tally> {
    let value = |result: &str| {
        let name = format!("ringway_config_reloads_total{{result=\"{result}\"}}");
        metrics.lines().find_map(|l| {
            let rest = l.strip_prefix(&name)?;
            rest.trim().parse::<f64>().ok().map(|v| v as u64)
        })
    };
    let (ok, failed) = (value("ok"), value("error"));
    if ok.is_none() && failed.is_none() {
        return None;
    }
    Some(Tally {
        ok: ok.unwrap_or(0),
        failed: failed.unwrap_or(0),
    })
}

/// Requests per probe: with weights 4:1, a smooth weighted round robin gives 8 and 2.
const PROBE_REQUESTS: usize = 10;

/// The variant `listen` serves now: the one whose heavy server got at least 7 of 10 fresh
/// connections' requests; None for a split that matches neither.
pub fn variant_in_effect(listen: SocketAddr, backends: &[SocketAddr; 2]) -> Option<usize> {
    let mut hits = [0usize; 2];
    for _ in 0..PROBE_REQUESTS {
        let port = backend_port(listen).ok()?;
        if let Some(i) = backends.iter().position(|b| b.port() == port) {
            hits[i] += 1;
        }
    }
    variant_of_split(hits)
}

pub fn variant_of_split(hits: [usize; 2]) -> Option<usize> {
    let heavy = PROBE_REQUESTS * 7 / 10;
    (0..WEIGHTS.len()).find(|&v| {
        let big = if WEIGHTS[v][0] > WEIGHTS[v][1] { 0 } else { 1 };
        hits[big] >= heavy
    })
}

/// Polls until `listen` serves `want` (a reload takes effect after the signal), within `limit`.
pub fn await_variant(
    listen: SocketAddr,
    backends: &[SocketAddr; 2],
    want: usize,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if variant_in_effect(listen, backends) == Some(want) {
            return true;
        }
        if Instant::now() >= deadline || check_interrupted().is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `GET /` on a new connection; the backend's port from the `X-Backend` header that
/// `ringway backend` and the static nginx backends set on every answer.
fn backend_port(listen: SocketAddr) -> Result<u16, String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&listen, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!("GET / HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    header_port(&String::from_utf8_lossy(&raw)).ok_or_else(|| "no X-Backend header".into())
}

pub fn header_port(response: &str) -> Option<u16> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("x-backend") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}
