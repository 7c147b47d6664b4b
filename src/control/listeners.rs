//! The listening sockets, owned by the control thread.
//!
//! Each listener is bound once per worker (`SO_REUSEPORT`: the kernel spreads connections
//! over the workers' own accept queues). The control thread keeps its own descriptor of
//! every socket and gives each worker a duplicate, so it can:
//! - stop the whole process from accepting at once (`shutdown`, even while an io_uring
//!   accept is still pending on a worker's duplicate);
//! - open listeners added by a reload before anything else changes (a port in use fails the
//!   reload, not the running configuration);
//! - hand the very same sockets to a new binary on upgrade (`RINGWAY_LISTEN_FDS`), so no
//!   connection waiting in an accept queue is lost.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::snapshot::Snapshot;

/// Environment variable naming the sockets a new binary inherits on upgrade:
/// `BIND=FD,FD;BIND=FD` (for example `127.0.0.1:1700=5,6;[::1]:80=7`).
pub const LISTEN_FDS_ENV: &str = "RINGWAY_LISTEN_FDS";

/// One bound address: a socket per worker (more when an upgrade handed over more).
struct Bound {
    bind: SocketAddr,
    /// (worker, socket): the control thread's own descriptors.
    sockets: Vec<(usize, OwnedFd)>,
}

/// Sockets handed over by the previous binary, not yet claimed by a listener.
#[derive(Default)]
pub struct Inherited {
    sockets: Vec<(SocketAddr, OwnedFd)>,
}

impl Inherited {
    /// Reads and clears [`LISTEN_FDS_ENV`]. Descriptors that are not listening TCP sockets
    /// are ignored (and left alone), so a stale variable cannot hijack unrelated files.
    pub fn from_env() -> Inherited {
        let Some(text) = std::env::var_os(LISTEN_FDS_ENV) else {
            return Inherited::default();
        };
        // SAFETY: called on the main thread at start-up, before any other thread exists.
        unsafe { std::env::remove_var(LISTEN_FDS_ENV) };
        let mut sockets = Vec::new();
        for (bind, fd) in parse_env(&text.to_string_lossy()) {
            if is_listening_socket(fd) {
                // SAFETY: the previous binary passed this descriptor to us open, and it is
                // a listening socket nobody else in this process owns.
                sockets.push((bind, unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        Inherited { sockets }
    }

    /// Takes every inherited socket bound to `bind`.
    pub fn take(&mut self, bind: SocketAddr) -> Vec<OwnedFd> {
        let mut taken = Vec::new();
        let mut i = 0;
        while i < self.sockets.len() {
            if self.sockets[i].0 == bind {
                taken.push(self.sockets.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        taken
    }

    /// How many inherited sockets no listener claimed (they are closed on drop).
    pub fn unclaimed(&self) -> usize {
        self.sockets.len()
    }
}

fn parse_env(text: &str) -> Vec<(SocketAddr, RawFd)> {
    let mut out = Vec::new();
    for entry in text.split(';').filter(|e| !e.is_empty()) {
        let Some((bind, fds)) = entry.rsplit_once('=') else {
            continue;
        };
        let Ok(bind) = bind.parse::<SocketAddr>() else {
            continue;
        };
        out.extend(
            fds.split(',')
                .filter_map(|fd| fd.parse::<RawFd>().ok())
                .map(|fd| (bind, fd)),
        );
    }
    out
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on any descriptor number is harmless; it fails on a non-socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value == 1
}

/// Every listening socket of the running configuration.
pub struct ListenerSet {
    workers: usize,
    bound: Vec<Bound>,
}

/// What a reload changed: sockets each worker must start accepting on, and binds to stop.
pub struct ListenerChange {
    /// Indexed by worker.
    pub added: Vec<Vec<(SocketAddr, TcpListener)>>,
    pub removed: Vec<SocketAddr>,
}

impl ListenerSet {
    /// Binds every listener of `snapshot` once per worker, taking inherited sockets first.
    pub fn open(
        snapshot: &Snapshot,
        workers: usize,
        inherited: &mut Inherited,
    ) -> io::Result<ListenerSet> {
        let mut set = ListenerSet {
            workers: workers.max(1),
            bound: Vec::new(),
        };
        for l in &snapshot.listeners {
            let bound = set
                .bind(l.bind, inherited)
                .map_err(|e| annotate(e, &l.name, l.bind))?;
            set.bound.push(bound);
        }
        Ok(set)
    }

    fn bind(&self, bind: SocketAddr, inherited: &mut Inherited) -> io::Result<Bound> {
        let mut sockets: Vec<(usize, OwnedFd)> = inherited
            .take(bind)
            .into_iter()
            .enumerate()
            .map(|(i, fd)| (i % self.workers, fd))
            .collect();
        for worker in sockets.len()..self.workers {
            sockets.push((worker, OwnedFd::from(crate::runtime::bind_reuseport(bind)?)));
        }
        Ok(Bound { bind, sockets })
    }

    /// Duplicates of worker `worker`'s sockets, for it to accept on.
    pub fn for_worker(&self, worker: usize) -> io::Result<Vec<(SocketAddr, TcpListener)>> {
        let mut out = Vec::new();
        for b in &self.bound {
            for (w, fd) in &b.sockets {
                if *w == worker {
                    out.push((b.bind, TcpListener::from(fd.try_clone()?)));
                }
            }
        }
        Ok(out)
    }

    /// Makes the set match `snapshot`: binds new listeners (all of them, or none on error)
    /// and forgets removed ones. The workers' duplicates keep removed sockets open until they
    /// have stopped accepting on them.
    pub fn update(&mut self, snapshot: &Snapshot) -> io::Result<ListenerChange> {
        let mut fresh = Vec::new();
        for l in &snapshot.listeners {
            if !self.bound.iter().any(|b| b.bind == l.bind)
                && !fresh.iter().any(|b: &Bound| b.bind == l.bind)
            {
                let bound = self
                    .bind(l.bind, &mut Inherited::default())
                    .map_err(|e| annotate(e, &l.name, l.bind))?;
                fresh.push(bound);
            }
        }
        let mut change = ListenerChange {
            added: (0..self.workers).map(|_| Vec::new()).collect(),
            removed: Vec::new(),
        };
        for b in &fresh {
            for (w, fd) in &b.sockets {
                change.added[*w].push((b.bind, TcpListener::from(fd.try_clone()?)));
            }
        }
        self.bound.retain(|b| {
            let keep = snapshot.listener_by_bind(b.bind).is_some();
            if !keep {
                change.removed.push(b.bind);
            }
            keep
        });
        self.bound.extend(fresh);
        Ok(change)
    }

    /// Stops every socket from accepting: new connections are refused at once, also while
    /// a worker still has an accept pending on it. For a stop, never for an upgrade (the new
    /// binary shares these sockets).
    pub fn shutdown_all(&self) {
        for b in &self.bound {
            for (_, fd) in &b.sockets {
                // SAFETY: shutdown(2) on a socket descriptor we own.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
    }

    /// The [`LISTEN_FDS_ENV`] value for a new binary, and the descriptors it names (to be
    /// left open across `exec`).
    pub fn export(&self) -> (String, Vec<RawFd>) {
        let mut text = String::new();
        let mut fds = Vec::new();
        for b in &self.bound {
            if !text.is_empty() {
                text.push(';');
            }
            let list: Vec<String> = b
                .sockets
                .iter()
                .map(|(_, fd)| fd.as_raw_fd().to_string())
                .collect();
            fds.extend(b.sockets.iter().map(|(_, fd)| fd.as_raw_fd()));
            text.push_str(&format!("{}={}", b.bind, list.join(",")));
        }
        (text, fds)
    }
}

fn annotate(e: io::Error, name: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("listener {name:?}: cannot listen on {addr}: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_round_trips_binds_and_descriptors() {
        let parsed = parse_env("127.0.0.1:1700=5,6;[::1]:80=7;garbage;x=1;1.2.3.4:5=");
        let v4: SocketAddr = "127.0.0.1:1700".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(parsed, vec![(v4, 5), (v4, 6), (v6, 7)]);
    }

    #[test]
    fn only_listening_sockets_are_inherited() {
        let listener = crate::runtime::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(is_listening_socket(listener.as_raw_fd()));
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(!is_listening_socket(file.as_raw_fd()));
        assert!(!is_listening_socket(-1));
    }
}
