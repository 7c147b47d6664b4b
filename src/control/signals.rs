//! The signals ringway handles, taken synchronously on the control thread.
//!
//! Every handled signal is blocked in every thread (the mask is set in `main` before any
//! thread starts and is inherited), and the control thread takes them with `sigtimedwait`,
//! so no handler ever runs inside a worker's event loop.
//!
//! A process started with `&` from a non-interactive shell, or under `nohup`, inherits
//! SIGINT and SIGQUIT (or SIGHUP) as *ignored*, and the kernel discards an ignored signal
//! when it is sent, blocked or not: `-s quit` would then do nothing. So the dispositions
//! are reset to the default first; with the signals blocked the default action never runs.

use std::io;
use std::time::Duration;

/// The signals ringway handles.
pub const HANDLED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What a signal asks the control thread to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGINT, SIGTERM.
    Stop,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Reload,
    /// SIGUSR1.
    Reopen,
    /// SIGUSR2.
    Upgrade,
}

impl Request {
    fn from_signal(sig: libc::c_int) -> Option<Request> {
        match sig {
            libc::SIGINT | libc::SIGTERM => Some(Request::Stop),
            libc::SIGQUIT => Some(Request::Quit),
            libc::SIGHUP => Some(Request::Reload),
            libc::SIGUSR1 => Some(Request::Reopen),
            libc::SIGUSR2 => Some(Request::Upgrade),
            _ => None,
        }
    }

    /// The signal `ringway -s NAME` sends.
    pub fn signal_for(name: &str) -> Option<libc::c_int> {
        Some(match name {
            "reload" => libc::SIGHUP,
            "stop" => libc::SIGTERM,
            "quit" => libc::SIGQUIT,
            "reopen" => libc::SIGUSR1,
            "upgrade" => libc::SIGUSR2,
            _ => return None,
        })
    }
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Resets the handled signals to their default disposition (undoing an inherited
/// SIG_IGN) and blocks them in the calling thread and every thread it starts later.
/// Call first thing in `main`.
pub fn block() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: a valid, initialised set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    for sig in HANDLED {
        // SAFETY: SIG_DFL for a catchable signal; blocked above, so the default action
        // cannot run before sigtimedwait takes the signal.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits up to `timeout` for a handled signal.
pub fn wait(timeout: Duration) -> Option<Request> {
    let set = handled_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    if sig < 0 {
        return None;
    }
    Request::from_signal(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_line_name_maps_to_a_handled_signal() {
        for name in ["reload", "stop", "quit", "reopen", "upgrade"] {
            let sig = Request::signal_for(name).expect(name);
            assert!(HANDLED.contains(&sig), "{name}");
            assert!(Request::from_signal(sig).is_some());
        }
        assert_eq!(Request::signal_for("restart"), None);
    }

    #[test]
    fn a_blocked_signal_sent_to_the_thread_is_taken_by_wait() {
        block().unwrap();
        // SAFETY: raise a blocked signal at this very thread; it stays pending for wait.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR1) };
        assert_eq!(wait(Duration::from_secs(1)), Some(Request::Reopen));
        assert_eq!(wait(Duration::from_millis(1)), None);
    }
}
