//! [`Proxy`]: the real `ringway` binary as a child process, with its config in a temp dir,
//! stdout and stderr captured to files (stderr printed when a test fails), and SIGKILL on
//! drop.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::free_port;

/// How long the proxy may take to open its listener.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringway-it-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `text` to `name` inside the dir and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A running `ringway -c FILE`.
pub struct Proxy {
    child: Child,
    /// Where `$BIND` in the config was pointed: the first listener.
    pub addr: SocketAddr,
    /// `$BIND2`, `$BIND3`, ... in the order they appear, when used.
    pub extra: Vec<SocketAddr>,
    pub config: PathBuf,
    /// The generated `[runtime]` and `[log]` part of the config, kept for rewrites.
    header: String,
    /// Placeholder → address, so a rewritten config keeps every address it had.
    binds: Vec<(String, SocketAddr)>,
    stderr: PathBuf,
    stdout: PathBuf,
    pub dir: TempDir,
    exited: Option<ExitStatus>,
    /// The config and stderr went into a panic message already.
    described: bool,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

impl Proxy {
    /// Starts the proxy with one worker on `driver`. `toml` is everything but `[runtime]`;
    /// `$BIND` is replaced by a free 127.0.0.1 address (and `$BIND2`..`$BIND9` by others).
    pub fn start(driver: &str, toml: &str) -> Proxy {
        Proxy::start_workers(driver, 1, toml)
    }

    pub fn start_workers(driver: &str, workers: usize, toml: &str) -> Proxy {
        Proxy::start_runtime(
            driver,
            &format!("workers = {workers}\npin_workers = false"),
            toml,
        )
    }

    /// Like [`Proxy::start`] with `runtime` (lines of `[runtime]` keys, e.g. `workers = 2`)
    /// in the `[runtime]` table.
    pub fn start_runtime(driver: &str, runtime: &str, toml: &str) -> Proxy {
        Proxy::launch(driver, runtime, toml, None, &[])
    }

    /// Like [`Proxy::start_runtime`] with extra environment variables.
    pub fn start_env(driver: &str, runtime: &str, toml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::launch(driver, runtime, toml, None, env)
    }

    /// Like [`Proxy::start_runtime`], but started as a shell script starts a job with `&`:
    /// through `sh`, with `trap '' <signals>` (ignored dispositions, inherited by `exec`).
    pub fn start_with_ignored(driver: &str, runtime: &str, toml: &str, signals: &str) -> Proxy {
        let prelude = format!("trap '' {signals}");
        Proxy::launch(driver, runtime, toml, Some(&prelude), &[])
    }

    /// Like [`Proxy::start_runtime`], with the descriptor limit (`ulimit -n`) set to `fds`.
    pub fn start_with_fd_limit(driver: &str, runtime: &str, toml: &str, fds: u32) -> Proxy {
        let prelude = format!("ulimit -n {fds}");
        Proxy::launch(driver, runtime, toml, Some(&prelude), &[])
    }

    /// Starts ringway on `toml` (with a generated `[runtime]` and `[log]` header); with a
    /// `prelude`, through `sh -c '<prelude>; exec ringway ...'`.
    fn launch(
        driver: &str,
        runtime: &str,
        toml: &str,
        prelude: Option<&str>,
        env: &[(&str, &str)],
    ) -> Proxy {
        let dir = TempDir::new();
        let mut binds = Vec::new();
        let body = bind_placeholders(toml, &mut binds);
        let (addr, extra) = first_and_extra(&binds);
        let level = std::env::var("RINGWAY_IT_LOG").unwrap_or_else(|_| "info".into());
        let shutdown = if runtime.contains("shutdown_timeout") {
            ""
        } else {
            "shutdown_timeout = \"1s\"\n"
        };
        let header = format!(
            "[runtime]\ndriver = \"{driver}\"\n{runtime}\n\
             pid_file = \"{}\"\n{shutdown}\n[log]\nlevel = \"{level}\"\n\n",
            dir.path.join("ringway.pid").display()
        );
        let config = dir.write("ringway.toml", &format!("{header}{body}"));
        let stderr = dir.path.join("stderr.log");
        let stdout = dir.path.join("stdout.log");
        let mut command = match prelude {
            None => Command::new(binary()),
            Some(prelude) => {
                let mut sh = Command::new("sh");
                let script = format!("{prelude}; exec \"$0\" \"$@\"");
                sh.arg("-c").arg(script).arg(binary());
                sh
            }
        };
        let child = command
            .envs(env.iter().copied())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("create stdout file"))
            .stderr(fs::File::create(&stderr).expect("create stderr file"))
            .spawn()
            .expect("spawn ringway");
        let mut proxy = Proxy {
            child,
            addr,
            extra,
            config,
            header,
            binds,
            stderr,
            stdout,
            dir,
            exited: None,
            described: false,
        };
        proxy.wait_listening();
        proxy
    }

    /// Waits (bounded) until the first listener accepts; panics with stderr if it exits.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                self.described = true;
                panic!(
                    "ringway exited during start-up ({status})\n{}",
                    self.describe()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                self.described = true;
                panic!(
                    "ringway did not listen on {} in {START_TIMEOUT:?}\n{}",
                    self.addr,
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the config file with `toml` in place of the body it was started with (same
    /// `[runtime]`; `$BIND`.. placeholders keep their addresses, new ones get fresh ports).
    /// The running proxy sees it only when told (`reload`).
    pub fn rewrite(&mut self, toml: &str) {
        let body = bind_placeholders(toml, &mut self.binds);
        (self.addr, self.extra) = first_and_extra(&self.binds);
        fs::write(&self.config, format!("{}{body}", self.header)).expect("rewrite config");
    }

    /// Writes raw text (not even a `[runtime]` table) as the config file.
    pub fn rewrite_raw(&self, text: &str) {
        fs::write(&self.config, text).expect("rewrite config");
    }

    /// The address a placeholder (`$BIND`, `$BIND2`, ..) stands for.
    pub fn bind(&self, placeholder: &str) -> SocketAddr {
        self.binds
            .iter()
            .find(|(k, _)| k == placeholder)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {placeholder} in this proxy's config"))
    }

    /// Lines of stderr containing `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }

    /// Rewrites the config, sends SIGHUP and waits (bounded) until the proxy logs that
    /// the reload took effect; panics with stderr if it did not.
    pub fn reload(&mut self, toml: &str) {
        let before = self.stderr_count("reloaded ");
        self.rewrite(toml);
        self.signal(libc::SIGHUP);
        if !super::wait_until(Duration::from_secs(5), || {
            self.stderr_count("reloaded ") > before
        }) {
            self.described = true;
            panic!("the reload did not take effect\n{}", self.describe());
        }
    }

    /// The pid in the pid file (after an upgrade, the new process's).
    pub fn pid_file_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.path.join("ringway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (libc::SIGTERM, ...) to the proxy.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// Waits up to `within` for the proxy to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.poll_exit(within, Some(Duration::from_millis(10)))
    }

    /// Waits up to `within` for the proxy to exit, polling without sleeping, so the caller
    /// learns of the exit within microseconds (what a supervisor's `waitpid` sees).
    pub fn wait_exit_closely(&mut self, within: Duration) -> Option<ExitStatus> {
        self.poll_exit(within, None)
    }

    /// Polls for the exit every `pause` (or as often as the scheduler allows) until `within`.
    fn poll_exit(&mut self, within: Duration, pause: Option<Duration>) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            match pause {
                Some(pause) => std::thread::sleep(pause),
                None => std::thread::yield_now(),
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything the proxy wrote to stdout so far (`access_log = "stdout"`).
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn describe(&self) -> String {
        let config = fs::read_to_string(&self.config).unwrap_or_default();
        format!(
            "---- config {} ----\n{config}\n---- ringway stderr ----\n{}",
            self.config.display(),
            self.stderr()
        )
    }

    /// Runs the binary with `args` (`-t -c FILE`, `--version`, ...) to completion, with
    /// stdout and stderr captured; killed (and the test failed) after 10 s.
    pub fn spawn_raw(args: &[&str]) -> Output {
        run_command(Command::new(binary()).args(args), Duration::from_secs(10))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Whether the proxy was still alive when the test ended tells a crash from a bug.
        let state = match self.wait_exit(Duration::ZERO) {
            Some(status) => format!("ringway had already exited ({status})"),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "ringway was still running (killed)".to_string()
            }
        };
        // After an upgrade the process serving is the one the pid file names.
        if let Some(pid) = self.pid_file_pid()
            && pid != self.child.id()
        {
            // SAFETY: kill(2) on the process a test's own proxy started by upgrading.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if std::thread::panicking() && !self.described {
            eprintln!("{state}\n{}", self.describe());
        }
    }
}

/// Replaces `$BIND` and `$BIND2`..`$BIND9` with 127.0.0.1 addresses: the ones already in
/// `binds`, or fresh ones (then recorded there).
fn bind_placeholders(toml: &str, binds: &mut Vec<(String, SocketAddr)>) -> String {
    let mut text = toml.to_string();
    let mut address = |key: &str| -> SocketAddr {
        if let Some((_, a)) = binds.iter().find(|(k, _)| k == key) {
            return *a;
        }
        let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
        binds.push((key.to_string(), a));
        a
    };
    for n in 2..=9 {
        let key = format!("$BIND{n}");
        if text.contains(&key) {
            let addr = address(&key);
            text = text.replace(&key, &addr.to_string());
        }
    }
    let addr = address("$BIND");
    text.replace("$BIND", &addr.to_string())
}

/// `$BIND` and the numbered ones in order.
fn first_and_extra(binds: &[(String, SocketAddr)]) -> (SocketAddr, Vec<SocketAddr>) {
    let mut numbered: Vec<&(String, SocketAddr)> =
        binds.iter().filter(|(k, _)| k != "$BIND").collect();
    numbered.sort_by_key(|(k, _)| k[5..].parse::<u32>().unwrap_or(0));
    let first = binds
        .iter()
        .find(|(k, _)| k == "$BIND")
        .map(|(_, a)| *a)
        .expect("$BIND is always assigned");
    (first, numbered.into_iter().map(|(_, a)| *a).collect())
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it after `within`.
pub fn run_command(cmd: &mut Command, within: Duration) -> Output {
    let dir = TempDir::new();
    let out_path = dir.path.join("stdout");
    let err_path = dir.path.join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            let err = fs::read_to_string(&err_path).unwrap_or_default();
            panic!("{cmd:?} did not finish in {within:?} ({status}); stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}
