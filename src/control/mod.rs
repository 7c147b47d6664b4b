//! Signals, handled on the main thread: SIGINT/SIGTERM stop now; the others are reserved
//! for reload, graceful drain and log reopening.
//!
//! Signals are blocked in every thread (the mask is set before any thread starts and is
//! inherited), and the main thread takes them synchronously with `sigwait`, so no handler
//! ever runs inside a worker's event loop.

pub mod log_thread;

use std::io;
use std::path::Path;

/// The signals ringway handles.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the handled signals in the calling thread and every thread it starts later.
/// Call first thing in `main`.
pub fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid, initialised set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for the next handled signal.
fn wait() -> libc::c_int {
    let set = signal_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: valid set and out pointer; sigwait only writes `sig`.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// Runs until a stop signal arrives, then removes the pid file and flushes the logs.
pub fn run(pid_file: Option<&Path>, log: Option<log_thread::LogHandle>) {
    loop {
        match wait() {
            libc::SIGINT | libc::SIGTERM | libc::SIGQUIT => {
                crate::info!("stopping");
                break;
            }
            libc::SIGHUP => crate::warn!(
                "SIGHUP: reload is not implemented yet; keeping the running configuration"
            ),
            libc::SIGUSR1 => match log.as_ref().map(log_thread::LogHandle::reopen) {
                Some(Ok(())) => crate::info!("SIGUSR1: log files reopened"),
                Some(Err(e)) => crate::error!("SIGUSR1: cannot reopen the logs: {e}"),
                None => crate::info!("SIGUSR1: no log files to reopen"),
            },
            other => crate::debug!("ignoring signal {other}"),
        }
    }
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Some(log) = log {
        log.flush_and_stop();
    }
}

/// Writes this process's pid to `path`.
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
}

/// `ringway -s NAME`: sends the signal for NAME to the pid in `pid_file`.
pub fn send(name: &str, pid_file: &Path) -> Result<(), String> {
    let sig = match name {
        "reload" => libc::SIGHUP,
        "stop" => libc::SIGTERM,
        "quit" => libc::SIGQUIT,
        "reopen" => libc::SIGUSR1,
        other => {
            return Err(format!(
                "unknown signal {other:?}: use reload, stop, quit or reopen"
            ));
        }
    };
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read pid file {}: {e}", pid_file.display()))?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file {} does not hold a pid", pid_file.display()))?;
    // SAFETY: kill(2) with a pid read from the pid file and a valid signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!(
            "cannot signal pid {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
