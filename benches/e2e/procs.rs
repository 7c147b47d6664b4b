//! Child processes of the harness: finding and installing tools, spawning pinned children in
//! their own process group, bounded waits, and killing every child by PID on any exit path.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM; every wait loop checks it so the harness unwinds and its `Drop`s
/// kill the children (which sit in their own process groups and do not see the terminal's ^C).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`] instead of killing the harness outright.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Fails once SIGINT/SIGTERM arrived, so loops can `?` out of the run.
pub fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    Ok(())
}

/// Where to look for a tool besides `$PATH` (nginx and haproxy live in sbin, which a
/// non-login shell's PATH may lack).
const EXTRA_DIRS: [&str; 5] = [
    "/usr/sbin",
    "/sbin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/bin",
];

/// Full path of the executable `name`, if it is installed.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// Installs the missing tools among `names` with apt-get (Debian package name = tool name),
/// running `apt-get update` and retrying once if the first install fails. Returns the paths
/// of the tools that are there afterwards; a tool that is still missing is simply absent.
pub fn ensure_tools(names: &[&str], log_dir: &Path) -> Vec<(String, PathBuf)> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| find_tool(n).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("e2e: installing {} with apt-get", missing.join(", "));
        if apt(&["install", "-y"], &missing, log_dir).is_err() {
            let _ = apt(&["update"], &[], log_dir);
            if let Err(e) = apt(&["install", "-y"], &missing, log_dir) {
                eprintln!("e2e: apt-get install failed: {e}");
            }
        }
    }
    names
        .iter()
        .filter_map(|n| find_tool(n).map(|p| (n.to_string(), p)))
        .collect()
}

fn apt(verb: &[&str], packages: &[&str], log_dir: &Path) -> Result<String, String> {
    let Some(apt_get) = find_tool("apt-get") else {
        return Err("apt-get not found".into());
    };
    let mut cmd = Command::new(apt_get);
    cmd.args(verb)
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_bounded(cmd, &log_dir.join("apt.log"), Duration::from_secs(600))
}

/// Runs `cmd` to completion within `limit`, its stdout and stderr going to `log`; returns
/// that output. Fails (after killing it) when it overruns, exits non-zero or is interrupted.
pub fn run_bounded(cmd: Command, log: &Path, limit: Duration) -> Result<String, String> {
    let (status, text) = run_capture(cmd, log, limit)?;
    if !status.success() {
        return Err(format!("{status}: {}", tail(&text, 600)));
    }
    Ok(text)
}

/// Like [`run_bounded`] but also returns the output of a non-zero exit (`wrk -v` exits 1).
pub fn run_capture(
    mut cmd: Command,
    log: &Path,
    limit: Duration,
) -> Result<(ExitStatus, String), String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut proc = Proc::spawn_command(&name, cmd, log)?;
    let status = proc.wait_exit(limit)?;
    Ok((status, std::fs::read_to_string(log).unwrap_or_default()))
}

/// `program args` pinned to `cpu` with taskset, which execs the program, so the PID of the
/// child is the program's own. `cpu` is a taskset CPU list: `1`, or `0,1` for either.
pub fn pinned(cpu: impl std::fmt::Display, program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(find_tool("taskset").unwrap_or_else(|| "taskset".into()));
    cmd.arg("-c").arg(cpu.to_string()).arg(program).args(args);
    cmd
}

/// One child process, started in its own process group. Dropping it kills the whole group
/// (nginx's master and worker alike), so no exit path of the harness leaves a child behind.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    reaped: bool,
}

impl Proc {
    /// Starts `program args` pinned to `cpu` with taskset, output appended to `log`.
    pub fn spawn(
        name: &str,
        cpu: impl std::fmt::Display,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Proc, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = pinned(cpu, program, args);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        Proc::spawn_command(name, cmd, log)
    }

    /// Starts a prepared command (its output already routed) in its own process group.
    pub fn spawn_command(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
        // kernel kill the child if the harness itself is killed without running its Drops.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(format!(
                    "{} exited ({status}): {}",
                    self.name,
                    self.log_tail()
                ))
            }
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 800)
    }

    /// Waits for the process to exit by itself within `limit`; kills it otherwise.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                return Ok(status);
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not finish within {limit:?}; killed",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `addr` accepts TCP connections, failing early if the process dies.
    pub fn wait_listening(&mut self, addr: SocketAddr, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(why) = self.exited() {
                return Err(why);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not listening on {addr} after {limit:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        if !self.reaped {
            // SAFETY: plain syscall on a process group this harness created.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    self.reaped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left of the group (a worker whose master died first) goes too.
        // SAFETY: as above; ESRCH for an empty group is harmless.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if !self.reaped {
            let _ = self.child.wait();
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1, all held open together so none repeats.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
        held.push(l);
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

/// One `GET path` with `Connection: close`; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    parse_response(&raw)
}

/// Splits a raw response into status and body (Content-Length or read-until-close framing;
/// the harness only needs to know the proxy answers and roughly what).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response head")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    Ok((status, raw[end + 4..].to_vec()))
}

/// The last `max` bytes of `text` (on a char boundary), trimmed, for error messages.
pub fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].trim().replace('\n', " | ")
}

/// nginx's command line for `conf`, with every path it writes under `dir`.
pub fn nginx_args(dir: &Path, conf: &Path, tag: &str) -> Vec<String> {
    let error_log = dir.join(format!("{tag}-error.log"));
    // -e: the log nginx writes before it has read the config (not /var/log/nginx).
    [("-p", dir), ("-e", error_log.as_path()), ("-c", conf)]
        .iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `GET /size/N` answers 200 with at least N body bytes, for every size.
pub fn expect_sizes(addr: SocketAddr, sizes: &[u64]) -> Result<(), String> {
    for &size in sizes {
        let (status, body) = http_get(addr, &format!("/size/{size}"))?;
        if status != 200 || (body.len() as u64) < size {
            return Err(format!(
                "GET /size/{size}: status {status}, {} body bytes",
                body.len()
            ));
        }
    }
    Ok(())
}
