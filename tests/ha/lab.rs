//! The lab: network namespaces joined by a bridge, and the processes started in them.
//!
//! Everything a lab creates is named `rwha-<pid>-<n>-...`, so that a later run can tell a
//! crashed run's leftovers (its pid is gone) from a lab of a run still going, and remove
//! them. The bridge and the host ends of the veth pairs live in a namespace of their own
//! (`-sw`): nothing is added to the machine's own network namespace, and deleting the
//! namespaces deletes every link.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "rwha-";
/// How long a stopped process may take to exit before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

fn ip_bin() -> std::path::PathBuf {
    crate::find_tool("ip").expect("ip")
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new(ip_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_output(args: &[&str]) -> String {
    Command::new(ip_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we started or found in one of our own namespaces.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Kills whatever still runs inside namespace `ns` (by pid) and deletes it.
fn remove_namespace(ns: &str) {
    for pid in ip_output(&["netns", "pids", ns]).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            kill(pid, libc::SIGKILL);
        }
    }
    let _ = Command::new(ip_bin())
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Removes the namespaces (and with them links and processes) of earlier runs that died
/// without cleaning up: those whose creating process no longer exists.
pub fn sweep_crashed_runs() {
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if left_by_crashed_run(name) {
            eprintln!("ha: removing {name}, left by a run that crashed");
            remove_namespace(name);
        }
    }
    let Ok(dirs) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in dirs.flatten() {
        if left_by_crashed_run(&dir.file_name().to_string_lossy()) {
            let _ = fs::remove_dir_all(dir.path());
        }
    }
}

/// Whether `name` is `rwha-<pid>-...` of a process that no longer exists.
fn left_by_crashed_run(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Moves the calling thread into network namespace `ns` (threads it spawns inherit it).
pub fn enter(ns: &str) {
    let f = fs::File::open(format!("/run/netns/{ns}")).expect("open /run/netns entry");
    // SAFETY: setns(2) on an fd we own; it changes only this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("thread in namespace panicked")
}

/// A process started in a namespace, stopped by its pid.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        if self.exited.is_none() {
            kill(self.pid(), sig);
        }
    }

    pub fn running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_none()
    }

    /// Waits (bounded) for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.exited
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_GRACE`].
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        if self.wait_exit(STOP_GRACE).is_none() {
            self.signal(libc::SIGKILL);
            self.exited = self.child.wait().ok();
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

/// Namespaces, the bridge between them, and the processes started in them; all removed on
/// drop (also when a test panics).
pub struct Lab {
    pub tag: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    pub procs: Vec<Proc>,
}

impl Lab {
    pub fn new() -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        sweep_crashed_runs();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create lab dir");
        let mut lab = Lab {
            tag,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
        };
        let sw = lab.add_namespace("sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        lab
    }

    /// The full name of host `host`'s namespace.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    fn add_namespace(&mut self, host: &str) -> String {
        let ns = self.ns(host);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A host: a namespace whose `eth0` is plugged into the bridge as port `v<host>`, with
    /// `addrs` (CIDR) on it.
    pub fn host(&mut self, host: &str, addrs: &[&str]) -> String {
        let ns = self.add_namespace(host);
        let sw = self.ns("sw");
        let port = format!("v{host}");
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        for addr in addrs {
            ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        }
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Unplugs (`up = false`) or plugs back host `host`'s cable, at the bridge end: the
    /// host sees its link go down, as when a node's switch port or NIC fails.
    pub fn cable(&self, host: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("v{host}"),
            state,
        ]);
    }

    /// Writes `text` to `name` in the lab's directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write lab file");
        path
    }

    /// Starts `argv` in host `host`'s namespace, stdout and stderr to `<name>.log`; returns
    /// its index in `procs`.
    pub fn spawn(&mut self, host: &str, name: &str, argv: &[&str]) -> usize {
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log fd");
        let child = Command::new(ip_bin())
            .args(["netns", "exec", &self.ns(host)])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.procs.push(Proc {
            name: name.into(),
            child,
            log,
            exited: None,
        });
        self.procs.len() - 1
    }

    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .rev()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            let text = p.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s += &format!("--- {} (last {} lines)\n", p.name, tail.len());
            for line in tail.iter().rev() {
                s += line;
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        for ns in self.namespaces.iter().rev() {
            remove_namespace(ns);
        }
        if std::env::var_os("RINGWAY_HA_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
