//! High availability: two ringway nodes behind one keepalived virtual IP, in network
//! namespaces on 198.18.0.0/24 (the benchmarking range, never routed off the lab's bridge).
//!
//! ```text
//!            client 198.18.0.100 ──┐
//!   node a 198.18.0.11 ringway+keepalived ──┤ br0 ├── backends 198.18.0.31:8001, :8002
//!   node b 198.18.0.12 ringway+keepalived ──┘
//!   VIP 198.18.0.10 (and 198.18.0.20 in the active-active pair)
//! ```
//!
//! keepalived runs with `tuning/keepalived.conf.example` (and the active-active example)
//! as shipped, addresses mapped from 192.0.2. to 198.18.0.: the examples are what is
//! tested. Each scenario runs clients at a steady rate (a new connection per request, and
//! keep-alive connections) plus SSE streams, makes something happen to the master, and
//! prints the failover time and the failed requests (`-- --nocapture` shows them).
//!
//! Needs root, `ip`, `keepalived` and `/usr/bin/curl` (the examples' check scripts call it);
//! without them every test says why and passes, except under RINGWAY_REQUIRE_TOOLS=1 (CI),
//! where it fails. RINGWAY_HA_KEEP=1 keeps each lab's configs and logs (under the temp
//! dir, `rwha-<pid>-<n>`, until the next run); namespaces and processes are removed
//! regardless. Scenarios run one at a time: a failover is timed, and the machine may be
//! small and busy.

mod lab;
mod scenarios;
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The tools a lab needs, found on PATH or in the sbin directories (where `ip` and
/// `keepalived` live, and which a non-login root shell may not have on PATH).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Whether the lab can run here. Without root or a tool, skips with the reason (or fails
/// under RINGWAY_REQUIRE_TOOLS=1).
pub fn lab_ready() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces)".to_string());
    }
    for tool in ["ip", "keepalived"] {
        if find_tool(tool).is_none() {
            missing.push(format!("`{tool}` (apt-get install iproute2 keepalived)"));
        }
    }
    if !Path::new("/usr/bin/curl").is_file() {
        missing.push("/usr/bin/curl (the check scripts call it)".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("HA lab needs {}", missing.join(", "));
    if std::env::var("RINGWAY_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{why}; RINGWAY_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("skipped: {why}");
    false
}

/// One scenario at a time (see the module doc).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn keepalived_bin() -> PathBuf {
    find_tool("keepalived").expect("keepalived")
}
