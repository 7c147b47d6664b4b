//! systemd's readiness protocol (`sd_notify`), for `Type=notify` units.
//!
//! ringway tells systemd when it serves (`READY=1`), when a reload begins and ends
//! (`RELOADING=1` … `READY=1`, as `Type=notify-reload` expects), when it stops
//! (`STOPPING=1`), and, in the new process of a binary upgrade, that the service's main
//! process is now this one (`MAINPID=`; the unit needs `NotifyAccess=all`). Without the
//! last one systemd would take the old process's exit for the end of the service and stop
//! the new one with it. Outside systemd (`NOTIFY_SOCKET` unset) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where systemd listens, read once at start-up.
pub struct Notifier {
    socket: Option<PathBuf>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`. Abstract sockets (`@name`) are not supported and ignored with a
    /// warning: systemd itself uses a path.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from);
        if socket
            .as_ref()
            .is_some_and(|p| p.as_os_str().as_encoded_bytes().starts_with(b"@"))
        {
            crate::warn!("NOTIFY_SOCKET names an abstract socket; not notifying systemd");
            return Notifier { socket: None };
        }
        Notifier { socket }
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        let Some(path) = &self.socket else {
            return;
        };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to(state.as_bytes(), path));
        if let Err(e) = sent {
            crate::debug!("sd_notify to {}: {e}", path.display());
        }
    }

    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_arrive_as_datagrams_on_the_socket() {
        let path = std::env::temp_dir().join(format!("ringway-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let n = Notifier {
            socket: Some(path.clone()),
        };
        n.ready();
        n.reloading();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert_eq!(text, format!("READY=1\nMAINPID={}", std::process::id()));
        let len = listener.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..len]).starts_with("RELOADING=1\nMONOTONIC_USEC="));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        Notifier { socket: None }.ready();
    }
}
