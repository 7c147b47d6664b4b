//! One worker: its snapshot cache, pool and balancer cursors, its accept loops, and its
//! inbox of control messages.
//!
//! Everything here is `!Send` and owned by one thread. The only shared things a worker
//! touches per request are the snapshot (an `ArcSwap` load, refreshed when the generation
//! changes) and the process-wide balancer marks inside it. The control thread reaches a
//! worker only through its [`inbox`]: reloads (listeners to open and close), drains, flushes.

pub mod accept;
mod idle;
pub mod inbox;
mod parked;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::balance::LocalCursor;
use crate::clock::now_ms;
use crate::metrics::LocalStats;
use crate::snapshot::Snapshot;
use crate::upstream::pool::LocalPool;
use accept::{Acceptor, StopMode};
use idle::IdleSet;
pub use idle::IdleSlot;
use inbox::{Inbox, InboxEnd, WorkerMsg};
use parked::ParkedSet;
pub use parked::{PARK_AFTER, Parked};

/// Client connections open in the whole process (for `runtime.max_connections`).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Spare streaming buffers a worker keeps (about 80 KiB each).
const SPARE_BUFFERS: usize = 256;
/// How often idle pooled connections are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a connection idle while a drain (or a listener's removal) is under way may
/// still send its next request, to be answered with `Connection: close`, before it is
/// closed. Closing at once would race a request already on the wire, which the client
/// would see as a failure; HAProxy's `idle-close-on-response` makes the same trade.
const IDLE_GRACE: Duration = Duration::from_millis(1000);
/// How often idle connections are looked at while some must close.
const IDLE_SWEEP: Duration = Duration::from_millis(100);
/// How often a draining worker looks whether its last connection has ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// A snapshot as one worker sees it, with the worker's own balancer cursors for it.
pub struct LocalSnapshot {
    pub snap: Arc<Snapshot>,
    /// One cursor per group, same index as `snap.groups`.
    pub cursors: Vec<RefCell<LocalCursor>>,
}

/// Per-worker state shared by all connections of this worker.
pub struct Worker {
    pub id: usize,
    /// "io_uring" or "epoll".
    pub driver: &'static str,
    current: Arc<ArcSwap<Snapshot>>,
    local: RefCell<Rc<LocalSnapshot>>,
    pub pool: RefCell<LocalPool>,
    /// Spare streaming buffers, lent to a connection for the length of one request.
    pub buffers: RefCell<Vec<Vec<u8>>>,
    /// Spare per-request buffer sets, lent to a connection from its first byte to idle.
    pub scratch: RefCell<Vec<crate::http::scratch::Scratch>>,
    /// This worker's access-log lines, handed in batches to the log thread.
    pub access_log: crate::log::access::LocalAccessLog,
    /// Running accept loops, one per listening socket.
    acceptors: RefCell<Vec<Rc<Acceptor>>>,
    /// Accept loops whose task has not ended, stopped ones included: a drain waits for
    /// them, since a worker that ends with an io_uring accept still in flight leaves it in
    /// the socket's wait queue until the kernel tears the ring down, where it can take the
    /// wake-up of a connection the new binary of an upgrade should have accepted.
    pub(super) accept_loops: Cell<usize>,
    /// Listeners removed by a reload whose connections must close after their current
    /// request (rarely non-empty; a bind that comes back is taken off again).
    closing: RefCell<Vec<SocketAddr>>,
    /// A graceful stop has begun: every connection closes after its current request.
    draining: Cell<bool>,
    /// Client connections of this worker (a drain ends when none is left).
    connections: Cell<usize>,
    /// Connections waiting between keep-alive requests.
    idle: RefCell<IdleSet>,
    /// The task closing idle connections (`sweep_idle`) runs.
    idle_sweeping: Cell<bool>,
    /// Connections idle long enough to wait as table entries, not tasks.
    parked: RefCell<ParkedSet>,
    /// This worker's metrics counters (merged with the others' on a scrape).
    pub stats: LocalStats,
}

impl Worker {
    fn new(id: usize, driver: &'static str, current: Arc<ArcSwap<Snapshot>>) -> Worker {
        let local = RefCell::new(Rc::new(local_snapshot(current.load_full(), id)));
        let stats = LocalStats::new(local.borrow().snap.clone());
        Worker {
            id,
            driver,
            current,
            local,
            pool: RefCell::new(LocalPool::default()),
            buffers: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
            access_log: crate::log::access::LocalAccessLog::new(),
            acceptors: RefCell::new(Vec::new()),
            accept_loops: Cell::new(0),
            closing: RefCell::new(Vec::new()),
            draining: Cell::new(false),
            connections: Cell::new(0),
            idle: RefCell::new(IdleSet::default()),
            idle_sweeping: Cell::new(false),
            parked: RefCell::new(ParkedSet::default()),
            stats,
        }
    }

    /// A streaming buffer of at least `capacity` bytes, reused when one is spare.
    pub fn lend_buffer(&self, capacity: usize) -> Vec<u8> {
        match self.buffers.borrow_mut().pop() {
            Some(buf) if buf.capacity() >= capacity => buf,
            _ => Vec::with_capacity(capacity),
        }
    }

    /// Takes back a buffer from `lend_buffer`; beyond `SPARE_BUFFERS` it is freed.
    pub fn return_buffer(&self, mut buf: Vec<u8>) {
        let mut spare = self.buffers.borrow_mut();
        if spare.len() < SPARE_BUFFERS && buf.capacity() > 0 {
            buf.clear();
            spare.push(buf);
        }
    }

    /// The snapshot to use for the next request: the current one, with this worker's cursors.
    /// Cheap when nothing changed (one `ArcSwap` load and a generation compare).
    pub fn snapshot(&self) -> Rc<LocalSnapshot> {
        let generation = self.current.load().generation;
        let mut local = self.local.borrow_mut();
        if local.snap.generation != generation {
            *local = Rc::new(local_snapshot(self.current.load_full(), self.id));
            self.stats.follow(&local.snap);
        }
        local.clone()
    }

    /// Whether a connection accepted on `bind` must close after its current request: a
    /// graceful stop has begun (already during `shutdown_delay`, so that keep-alive clients
    /// reconnect and reach whichever node holds a moved virtual IP by then), or a reload
    /// removed the listener.
    pub fn must_close(&self, bind: SocketAddr) -> bool {
        self.draining.get() || crate::control::state::state().draining() || {
            let closing = self.closing.borrow();
            !closing.is_empty() && closing.contains(&bind)
        }
    }

    /// Registers a connection as idle between requests (see [`IdleSet`]).
    /// `since` is when the wait began ([`crate::clock::ms_at`]).
    pub fn enter_idle(&self, bind: SocketAddr, fd: std::os::fd::RawFd, since_ms: u64) -> IdleSlot {
        self.idle.borrow_mut().enter(bind, fd, since_ms)
    }

    pub fn leave_idle(&self, slot: IdleSlot) {
        self.idle.borrow_mut().leave(slot);
    }

    /// Keeps an idle keep-alive connection as an entry instead of a task (see
    /// [`parked`]); it is served again when its socket turns readable.
    /// A connection that cannot be parked is closed, as at its keep-alive timeout.
    pub fn park(self: &Rc<Self>, conn: Parked) {
        let mut parked = self.parked.borrow_mut();
        if let Err(conn) = parked.park(conn) {
            drop(parked);
            drop(conn);
            return;
        }
        if !parked.polling {
            parked.polling = true;
            monoio::spawn(poll_parked(self.clone()));
        }
    }

    /// Handles one control message. Returns the drain deadline when the worker must end.
    fn apply(self: &Rc<Self>, msg: WorkerMsg) -> Option<(Instant, bool)> {
        match msg {
            WorkerMsg::Reload { listen, unlisten } => {
                // Refresh now, not on the next request: an idle worker must also let go of
                // pooled connections to removed servers.
                let local = self.snapshot();
                self.pool
                    .borrow_mut()
                    .retain_servers(|addr| local.snap.has_server(addr));
                self.closing
                    .borrow_mut()
                    .retain(|b| local.snap.listener_by_bind(*b).is_none());
                for bind in unlisten {
                    self.stop_accepting(|b| b == bind, StopMode::Close);
                    self.closing.borrow_mut().push(bind);
                }
                self.sweep_idle();
                for (bind, listener) in listen {
                    self.start_accepting(bind, listener);
                }
                None
            }
            WorkerMsg::Drain { handover, deadline } => {
                self.draining.set(true);
                let mode = if handover {
                    StopMode::Handover
                } else {
                    StopMode::Close
                };
                self.stop_accepting(|_| true, mode);
                self.sweep_idle();
                Some((deadline, handover))
            }
            WorkerMsg::Flush(done) => {
                self.access_log.tick();
                let _ = done.send(());
                None
            }
            WorkerMsg::Report(to) => {
                self.stats.report_to(&to);
                None
            }
        }
    }

    /// Starts (once) the task that closes connections idle for [`IDLE_GRACE`] on listeners
    /// that must close. It runs until the worker ends when draining; after a listener's
    /// removal, until no idle connection of it is left (the others close after their
    /// current request, their responses saying `Connection: close`).
    fn sweep_idle(self: &Rc<Self>) {
        if self.idle_sweeping.replace(true) {
            return;
        }
        let worker = self.clone();
        monoio::spawn(async move {
            let grace = IDLE_GRACE.as_millis() as u64;
            let started = now_ms();
            loop {
                monoio::time::sleep(IDLE_SWEEP).await;
                let now = now_ms();
                let mut idle = worker.idle.borrow_mut();
                let must_close = |bind| worker.must_close(bind);
                idle.close_where(must_close, now.saturating_sub(grace));
                let settled =
                    now.saturating_sub(started) > 2 * grace && !idle.any_where(must_close);
                if !worker.draining.get() && settled {
                    break;
                }
            }
            worker.idle_sweeping.set(false);
        });
    }

    fn start_accepting(self: &Rc<Self>, bind: SocketAddr, listener: std::net::TcpListener) {
        if let Some(acceptor) = Acceptor::spawn(self, bind, listener) {
            self.acceptors.borrow_mut().push(acceptor);
        }
    }

    fn stop_accepting(&self, which: impl Fn(SocketAddr) -> bool, mode: StopMode) {
        self.acceptors.borrow_mut().retain(|a| {
            let stop = which(a.bind);
            if stop {
                a.stop(mode);
            }
            !stop
        });
    }
}

fn local_snapshot(snap: Arc<Snapshot>, worker: usize) -> LocalSnapshot {
    let cursors = snap
        .groups
        .iter()
        // The worker index as seed: worker 0 starts where nginx would, the others further
        // along, so workers do not send their first requests to the same server.
        .map(|g| RefCell::new(LocalCursor::new(&g.peers, worker as u64)))
        .collect();
    LocalSnapshot { snap, cursors }
}

/// The worker's main future: accept loops on `listeners`, the pool sweeper, and the inbox.
/// Returns when a drain is over (or the control thread is gone).
pub async fn run(
    id: usize,
    driver: &'static str,
    current: Arc<ArcSwap<Snapshot>>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    inbox: InboxEnd,
) {
    // Requests this thread counts on a server go on this worker's lane (`balance::marks`).
    crate::balance::enter_worker(id);
    let worker = Rc::new(Worker::new(id, driver, current));
    for (bind, listener) in listeners {
        worker.start_accepting(bind, listener);
    }
    monoio::spawn(sweep_loop(worker.clone()));
    let inbox: Inbox = match inbox.open() {
        Ok(inbox) => inbox,
        Err(e) => {
            crate::error!("worker {id}: control inbox: {e}");
            return;
        }
    };
    serve_inbox(&worker, inbox).await;
}

/// Applies the control thread's messages until a drain is over.
async fn serve_inbox(worker: &Rc<Worker>, mut inbox: Inbox) {
    while let Some(msg) = inbox.next().await {
        if let Some((deadline, handover)) = worker.apply(msg) {
            drain(worker, &mut inbox, deadline, handover).await;
            // The runtime may never drop its tasks (and with them the last `Rc<Worker>`):
            // hand over the lines of the requests served so far explicitly.
            worker.access_log.flush();
            return;
        }
    }
}

/// Waits until the worker's last connection and accept loop have ended or `deadline`
/// passes. Messages that still arrive (a flush) are answered meanwhile.
async fn drain(worker: &Rc<Worker>, inbox: &mut Inbox, deadline: Instant, handover: bool) {
    crate::debug!(
        "worker {}: draining {} connection(s){}",
        worker.id,
        worker.connections.get(),
        if handover { " after handing over" } else { "" }
    );
    let watch = async {
        let busy = || worker.connections.get() > 0 || worker.accept_loops.get() > 0;
        while busy() && Instant::now() < deadline {
            monoio::time::sleep(DRAIN_POLL).await;
        }
    };
    let mut watch = std::pin::pin!(watch);
    loop {
        monoio::select! {
            _ = &mut watch => break,
            msg = inbox.next() => match msg {
                Some(msg) => { worker.apply(msg); }
                None => { (&mut watch).await; break; }
            },
        }
    }
    let left = worker.connections.get();
    if left > 0 {
        crate::warn!(
            "worker {}: shutdown_timeout reached with {left} connection(s) open; closing them",
            worker.id
        );
    }
}

/// Serves parked connections whose sockets turn readable, and closes those whose
/// keep-alive ended or whose listener must close (after [`IDLE_GRACE`], as waiting tasks
/// are). Runs while any connection is parked.
async fn poll_parked(worker: Rc<Worker>) {
    let mut next_tick = now_ms();
    loop {
        let epoll = match worker.parked.borrow_mut().epoll() {
            Ok(epoll) => epoll,
            Err(_) => break,
        };
        epoll.wait(parked::EXPIRY_TICK).await;
        let ready = worker.parked.borrow_mut().take_ready();
        for conn in ready {
            crate::http::proxy::resume(worker.clone(), conn);
        }
        let now = now_ms();
        if now >= next_tick {
            next_tick = now + parked::EXPIRY_TICK.as_millis() as u64;
            let must_close = |bind| worker.must_close(bind);
            let closed = worker
                .parked
                .borrow_mut()
                .take_closing(now, must_close, IDLE_GRACE);
            // Dropped here, outside the borrow: their counters go down as they close.
            drop(closed);
        }
        if worker.parked.borrow().is_empty() {
            break;
        }
    }
    worker.parked.borrow_mut().polling = false;
}

async fn sweep_loop(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(SWEEP_EVERY).await;
        worker.pool.borrow_mut().sweep(now_ms());
        worker.access_log.tick();
    }
}

/// What an admitted client connection holds until it closes: its place in the listener's
/// open-connections gauge and in `runtime.max_connections`.
pub struct Admitted {
    _open: crate::metrics::ConnectionGauge,
    _slot: ConnectionSlot,
}

/// One counted client connection; the counts go down when it is dropped.
struct ConnectionSlot {
    worker: Rc<Worker>,
}

impl ConnectionSlot {
    fn take(worker: &Rc<Worker>, max: usize) -> Option<ConnectionSlot> {
        if CONNECTIONS.fetch_add(1, Ordering::Relaxed) >= max {
            CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        worker.connections.set(worker.connections.get() + 1);
        Some(ConnectionSlot {
            worker: worker.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
        let n = &self.worker.connections;
        n.set(n.get().saturating_sub(1));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A worker for one listener on 127.0.0.1:1, outside any running worker loop.
    pub(super) fn test_worker() -> Rc<Worker> {
        let text = r#"
            [[listener]]
            name = "a"
            bind = "127.0.0.1:1"
            upstream = "u"
            [upstreams.u]
            servers = [{ addr = "127.0.0.1:2" }]
        "#;
        let snap = crate::config::load_str(text, std::path::Path::new("t.toml"), 1).unwrap();
        let current = Arc::new(ArcSwap::from_pointee(snap));
        Rc::new(Worker::new(0, "test", current))
    }

    /// A connection's counters, as `accept` makes them.
    pub(super) fn admitted(worker: &Rc<Worker>, bind: SocketAddr) -> Admitted {
        let snap = worker.snapshot().snap.clone();
        Admitted {
            _open: worker.stats.open_connection(&snap, bind),
            _slot: ConnectionSlot::take(worker, usize::MAX).unwrap(),
        }
    }

    /// A worker ends only after its accept loops have: an io_uring accept still pending when
    /// the ring goes could take the wake-up meant for the new binary of an upgrade.
    #[monoio::test_all(timer_enabled = true)]
    async fn a_drain_ends_after_the_accept_loops_it_stopped() {
        for handover in [true, false] {
            let worker = test_worker();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let bind = listener.local_addr().unwrap();
            worker.start_accepting(bind, listener);
            // Lets the loop issue its accept.
            monoio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(worker.accept_loops.get(), 1);
            let (link, end) = inbox::pair().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            link.send(WorkerMsg::Drain { handover, deadline }).unwrap();
            let started = Instant::now();
            serve_inbox(&worker, end.open().unwrap()).await;
            assert_eq!(worker.accept_loops.get(), 0, "handover: {handover}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "handover: {handover}"
            );
        }
    }

    /// An idle keep-alive connection's task holds the `serve` future; with thousands of
    /// idle clients its size is most of what each costs (see `http::scratch`). It was
    /// 6 KiB when each request's state lived in it and 2.5 KiB with monoio's timers.
    #[monoio::test_all(timer_enabled = true)]
    async fn an_idle_connection_task_stays_small() {
        let worker = test_worker();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = monoio::net::TcpStream::connect_addr(addr).await.unwrap();
        let bind: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let held = admitted(&worker, bind);
        let serve = crate::http::proxy::serve(worker, stream, addr, bind, held);
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 640, "serve future is {size} bytes");
    }
}
