//! Accepting on one listening socket, and stopping that without losing a connection.
//!
//! An io_uring accept that is merely dropped may still complete in the kernel, and the
//! connection it took would then be lost (and, at exit, a pending accept keeps the socket
//! accepting until the ring is torn down). So stopping is explicit: [`Acceptor::stop`]
//! cancels the pending accept, the loop awaits it to the end (a connection that raced the
//! cancel is served), takes whatever else waits in its queue, and only then lets go of the
//! socket: shut (refusing new connections at once) when the listener goes away, or merely
//! closed when a new binary has the same socket and will accept from its queue.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::Canceller;
use monoio::net::{TcpListener, TcpStream};

use super::Worker;
use crate::log::throttle::Throttle;
use crate::snapshot::Mode;

/// Pause after an accept error (EMFILE and the like) so a full fd table does not spin:
/// the connection stays in the kernel's queue and is taken on a later try, once a
/// descriptor is free again (at most this late).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Accept errors repeat every `ACCEPT_BACKOFF` while the cause lasts: one line per this.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// How an accept loop lets go of its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// The listener is gone: take what is queued, then shut the socket.
    Close,
    /// A new binary shares the socket: stop accepting and leave the queue to it.
    Handover,
}

/// The control side of one running accept loop.
pub struct Acceptor {
    pub bind: SocketAddr,
    stop: Cell<Option<StopMode>>,
    canceller: RefCell<Canceller>,
    errors: Throttle,
}

impl Acceptor {
    /// Starts accepting on `listener` (a duplicate of a control-thread socket for `bind`).
    pub fn spawn(
        worker: &Rc<Worker>,
        bind: SocketAddr,
        listener: StdListener,
    ) -> Option<Rc<Acceptor>> {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                crate::error!("worker {}: listener {bind}: {e}", worker.id);
                return None;
            }
        };
        let acceptor = Rc::new(Acceptor {
            bind,
            stop: Cell::new(None),
            canceller: RefCell::new(Canceller::new()),
            errors: Throttle::new(ACCEPT_ERROR_LOG_EVERY),
        });
        worker.accept_loops.set(worker.accept_loops.get() + 1);
        monoio::spawn(accept_loop(worker.clone(), listener, acceptor.clone()));
        Some(acceptor)
    }

    /// Asks the loop to stop; it finishes on its own (see the module doc).
    pub fn stop(&self, mode: StopMode) {
        if self.stop.get().is_none() {
            self.stop.set(Some(mode));
            let canceller = std::mem::take(&mut *self.canceller.borrow_mut());
            drop(canceller.cancel());
        }
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, ctl: Rc<Acceptor>) {
    while ctl.stop.get().is_none() {
        let handle = ctl.canceller.borrow().handle();
        match listener.cancelable_accept(handle).await {
            Ok((stream, peer)) => admit(&worker, stream, peer, ctl.bind),
            Err(_) if ctl.stop.get().is_some() => break,
            // The control thread shut the socket: the process is stopping now.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => {
                if let Some(left_out) = ctl.errors.admit(std::time::Instant::now()) {
                    let more = match left_out {
                        0 => String::new(),
                        n => format!(" ({n} more since the last line)"),
                    };
                    crate::warn!(
                        "worker {}: accept on {}: {e}{more}; retrying every {:?}",
                        worker.id,
                        ctl.bind,
                        ACCEPT_BACKOFF
                    );
                }
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    if ctl.stop.get() == Some(StopMode::Close) {
        take_queued(&worker, &listener, ctl.bind);
        // SAFETY: shutdown(2) on the listening socket this loop owns; nothing else of
        // this worker uses it any more.
        unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
    worker.accept_loops.set(worker.accept_loops.get() - 1);
}

/// Accepts, without waiting, every connection already in the socket's queue.
fn take_queued(worker: &Rc<Worker>, listener: &TcpListener, bind: SocketAddr) {
    use std::os::fd::FromRawFd;
    // SAFETY: a second view of the listening socket for a non-blocking accept(2); it is
    // never dropped (ManuallyDrop), so the descriptor stays owned by `listener`.
    let std_view =
        std::mem::ManuallyDrop::new(unsafe { StdListener::from_raw_fd(listener.as_raw_fd()) });
    if std_view.set_nonblocking(true).is_err() {
        return;
    }
    while let Ok((stream, peer)) = std_view.accept() {
        match TcpStream::from_std(stream) {
            Ok(stream) => admit(worker, stream, peer, bind),
            Err(e) => crate::warn!("worker {}: queued connection from {peer}: {e}", worker.id),
        }
    }
}

/// Counts the connection against `runtime.max_connections` and serves it.
fn admit(worker: &Rc<Worker>, stream: TcpStream, peer: SocketAddr, bind: SocketAddr) {
    let snap = worker.snapshot().snap.clone();
    let Some(slot) = super::ConnectionSlot::take(worker, snap.runtime.max_connections) else {
        // Over the limit: closing at once is cheaper for everyone than queueing.
        return;
    };
    let _ = stream.set_nodelay(true);
    let tcp = snap.listener_by_bind(bind).map(|l| l.mode) == Some(Mode::Tcp);
    // The gauge is opened against the snapshot just read; it is not held beyond that.
    let open = worker.stats.open_connection(&snap, bind);
    drop(snap);
    // Spawned as is, not wrapped in another future: a wrapper would keep a second copy of
    // the socket and addresses in every connection's task.
    let held = super::Admitted {
        _open: open,
        _slot: slot,
    };
    if tcp {
        monoio::spawn(crate::tcp::serve(worker.clone(), stream, peer, bind, held));
        return;
    }
    let serve = crate::http::proxy::serve(worker.clone(), stream, peer, bind, held);
    monoio::spawn(serve);
}
