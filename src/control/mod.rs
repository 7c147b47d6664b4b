//! The control plane, on the main thread: signals → reload / drain / upgrade / reopen.
//!
//! Read top to bottom, the way `http/` reads for the data path:
//! - [`signals`]: the handled signals are blocked everywhere and taken here with
//!   `sigtimedwait`; inherited "ignore" dispositions are undone.
//! - [`listeners`]: the control thread owns every listening socket; workers accept on
//!   duplicates.
//! - [`reload`]: SIGHUP → `config::load` → `Snapshot::inherit` → `ListenerSet::update` →
//!   `ArcSwap::store` → `WorkerMsg::Reload` to each worker.
//! - [`stop`]: SIGTERM/SIGINT (stop now) and SIGQUIT (drain), both closing the listening
//!   sockets before the process exits.
//! - [`upgrade`]: SIGUSR2 → start the binary again with the listening sockets → drain.
//! - [`log_thread`]: the thread that owns the log files (access and error log): workers
//!   hand it batches of lines; it writes them and reopens the files on SIGUSR1.
//! - [`state`]: what the admin listener reads (draining, reload counts).
//! - [`notify`]: systemd's `sd_notify` (ready, reloading, stopping, a new main pid).
//! - [`fd_limit`]: the open-files limit raised to the hard limit at start.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/status`) on its own threads.
//! - [`health`]: active health checks on the prober thread (`ringway-health`): it follows
//!   the snapshot and sets each server's shared probe mark; stopped when [`run`] returns.
//!
//! Threads: the main thread runs [`run`] and owns everything here. Workers only ever see
//! the snapshot (`ArcSwap`) and their inbox ([`crate::worker::inbox`]).

pub mod admin;
pub mod fd_limit;
pub mod health;
pub mod listeners;
pub mod log_thread;
pub mod notify;
pub mod reload;
pub mod signals;
pub mod state;
pub mod stop;
pub mod upgrade;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::runtime::Running;
use crate::snapshot::Snapshot;
use listeners::ListenerSet;
use signals::Request;

/// What a previous binary handed over on upgrade; empty in a process started otherwise.
#[derive(Default)]
pub struct Handover {
    pub inherited: listeners::Inherited,
    pub ready: Option<upgrade::ReadyPipe>,
}

impl Handover {
    /// Takes the sockets and the ready pipe from the environment. Call first thing in
    /// `main`, before any other thread starts.
    pub fn from_env() -> Handover {
        Handover {
            inherited: listeners::Inherited::from_env(),
            ready: upgrade::ReadyPipe::from_env(),
        }
    }
}

/// How often the control thread looks up from `sigtimedwait` (an upgrade's progress).
const TICK: Duration = Duration::from_millis(50);

/// Everything the control thread owns while the process serves.
pub struct Control {
    pub current: Arc<ArcSwap<Snapshot>>,
    pub listeners: ListenerSet,
    pub running: Running,
    /// The binary this process was started from, resolved at start-up (the file may be
    /// replaced by the time of an upgrade).
    pub exe: Option<PathBuf>,
    /// Generation numbers are never reused, also after a failed reload.
    generation: u64,
    pub notify: notify::Notifier,
    /// The log thread; flushed and stopped when the process exits.
    pub log: Option<log_thread::LogHandle>,
    /// The admin listener's socket, handed to the new binary on upgrade.
    pub admin: Option<admin::AdminHandle>,
    /// The prober thread; stopped before the log is flushed, so its last lines are kept.
    pub health: Option<health::Prober>,
}

impl Control {
    pub fn new(
        current: Arc<ArcSwap<Snapshot>>,
        listeners: ListenerSet,
        running: Running,
        log: Option<log_thread::LogHandle>,
        admin: Option<admin::AdminHandle>,
        health: Option<health::Prober>,
    ) -> Control {
        let generation = current.load().generation;
        Control {
            current,
            listeners,
            running,
            exe: std::env::current_exe().ok(),
            generation,
            notify: notify::Notifier::from_env(),
            log,
            admin,
            health,
        }
    }

    /// A new generation number for a reload attempt.
    fn new_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// SIGUSR1: reopen the log files (logrotate's move-then-signal).
    fn reopen_logs(&self) {
        match self.log.as_ref().map(log_thread::LogHandle::reopen) {
            Some(Ok(())) => crate::info!("SIGUSR1: log files reopened"),
            Some(Err(e)) => crate::error!("SIGUSR1: cannot reopen the logs: {e}"),
            None => crate::info!("SIGUSR1: no log files to reopen"),
        }
    }

    fn pid_file(&self) -> Option<PathBuf> {
        self.current.load().runtime.pid_file.clone()
    }
}

/// Serves until a stop: handles every signal on this thread. Returns when the process
/// should exit (listeners already closed, pid file removed when it is still ours).
pub fn run(mut ctl: Control) {
    ctl.notify.ready();
    loop {
        let Some(request) = signals::wait(TICK) else {
            continue;
        };
        match request {
            Request::Stop => {
                crate::info!("stopping");
                ctl.notify.stopping();
                stop::now(&ctl);
                break;
            }
            Request::Quit => {
                crate::info!("graceful stop: draining");
                ctl.notify.stopping();
                stop::drain(&ctl, false);
                break;
            }
            Request::Reload => {
                ctl.notify.reloading();
                reload::reload(&mut ctl);
                ctl.notify.ready();
            }
            Request::Reopen => ctl.reopen_logs(),
            Request::Upgrade => {
                if upgrade::upgrade(&ctl) {
                    if let Some(admin) = &ctl.admin {
                        admin.stop();
                    }
                    stop::drain(&ctl, true);
                    break;
                }
            }
        }
    }
    if let Some(path) = ctl.pid_file() {
        remove_pid_file_if_ours(&path);
    }
    if let Some(prober) = ctl.health.take() {
        prober.stop();
    }
    if let Some(log) = ctl.log.take() {
        log.flush_and_stop();
    }
}

/// Runs until a stop signal, with nothing to reload or drain (the `backend` subcommand).
pub fn wait_for_stop() {
    loop {
        if matches!(signals::wait(TICK), Some(Request::Stop | Request::Quit)) {
            return;
        }
    }
}

/// Writes this process's pid to `path` (replaced atomically: an upgrade's old process may
/// read it at any moment).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}

/// The pid in `path`, if it holds one.
pub fn read_pid_file(path: &Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Removes the pid file unless another process (a new binary after an upgrade) owns it now.
fn remove_pid_file_if_ours(path: &Path) {
    if read_pid_file(path) == Some(std::process::id() as libc::pid_t) {
        let _ = std::fs::remove_file(path);
    }
}

/// `ringway -s NAME`: sends the signal for NAME to the pid in `pid_file`.
pub fn send(name: &str, pid_file: &Path) -> Result<(), String> {
    let sig = Request::signal_for(name).ok_or_else(|| {
        format!("unknown signal {name:?}: use reload, stop, quit, reopen or upgrade")
    })?;
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "no running instance: cannot read pid file {}: {e}",
            pid_file.display()
        )
    })?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file {} does not hold a pid", pid_file.display()))?;
    // SAFETY: kill(2) with a pid read from the pid file and a valid signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!(
            "no running instance: cannot signal pid {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
