//! One worker: its snapshot cache, pool and balancer cursors, and its accept loops.
//!
//! Everything here is `!Send` and owned by one thread. The only shared things a worker
//! touches per request are the snapshot (an `ArcSwap` load, refreshed when the generation
//! changes) and the process-wide balancer marks inside it.

use std::cell::RefCell;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use monoio::net::TcpListener;

use crate::balance::LocalCursor;
use crate::clock::now_ms;
use crate::snapshot::{Mode, Snapshot};
use crate::upstream::pool::LocalPool;

/// Client connections open in the whole process (for `runtime.max_connections`).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Spare streaming buffers a worker keeps (about 80 KiB each).
const SPARE_BUFFERS: usize = 256;
/// How often idle pooled connections are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Pause after an accept error (EMFILE and the like) so a full fd table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
    /// This worker's access-log lines, handed in batches to the log thread.
    pub access_log: crate::log::access::LocalAccessLog,
}

impl Worker {
    fn new(id: usize, driver: &'static str, current: Arc<ArcSwap<Snapshot>>) -> Worker {
        let local = RefCell::new(Rc::new(local_snapshot(current.load_full(), id)));
        Worker {
            id,
            driver,
            current,
            local,
            pool: RefCell::new(LocalPool::default()),
            buffers: RefCell::new(Vec::new()),
            access_log: crate::log::access::LocalAccessLog::new(),
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
        }
        local.clone()
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

/// The worker's main future: one accept loop per listener and the pool sweeper.
pub async fn run(
    id: usize,
    driver: &'static str,
    current: Arc<ArcSwap<Snapshot>>,
    listeners: Vec<StdListener>,
) {
    let worker = Rc::new(Worker::new(id, driver, current));
    let snap = worker.snapshot().snap.clone();
    let mut loops = Vec::new();
    for (index, std_listener) in listeners.into_iter().enumerate() {
        let spec = &snap.listeners[index];
        if spec.mode == Mode::Tcp {
            crate::warn!(
                "listener {:?}: tcp mode is not served yet; closing it",
                spec.name
            );
            continue;
        }
        match TcpListener::from_std(std_listener) {
            Ok(listener) => loops.push(monoio::spawn(accept_loop(worker.clone(), listener, index))),
            Err(e) => crate::error!("worker {id}: listener {:?}: {e}", spec.name),
        }
    }
    drop(snap);
    monoio::spawn(sweep_loop(worker.clone()));
    for handle in loops {
        handle.await;
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, index: usize) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                crate::warn!("worker {}: accept: {e}", worker.id);
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let max = worker.snapshot().snap.runtime.max_connections;
        let Some(slot) = ConnectionSlot::take(max) else {
            // Over the limit: closing at once is cheaper for everyone than queueing.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        monoio::spawn(async move {
            crate::http::proxy::serve(&worker, stream, peer, index).await;
            drop(slot);
        });
    }
}

async fn sweep_loop(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(SWEEP_EVERY).await;
        worker.pool.borrow_mut().sweep(now_ms());
        worker.access_log.tick();
    }
}

/// One counted client connection; the count goes down when it is dropped.
struct ConnectionSlot;

impl ConnectionSlot {
    fn take(max: usize) -> Option<ConnectionSlot> {
        if CONNECTIONS.fetch_add(1, Ordering::Relaxed) >= max {
            CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}
