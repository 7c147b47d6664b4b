//! Control messages for one worker: a crossbeam channel plus a wake-up socket.
//!
//! The control thread pushes a [`WorkerMsg`] on the channel, then writes one byte to a
//! socket pair; the worker's [`Inbox`] task reads that byte through its own event loop
//! (io_uring or epoll alike) and drains the channel with `try_recv`. So a worker learns of a
//! reload or a drain without polling, and never blocks or takes a lock to do so.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use monoio::io::AsyncReadRent;
use monoio::net::UnixStream;

/// What the control thread asks of a worker.
pub enum WorkerMsg {
    /// A new snapshot is current: start accepting on `listen`, stop accepting on `unlisten`
    /// (connections already accepted finish; idle keep-alive ones close), and close pooled
    /// connections to servers the snapshot no longer has.
    Reload {
        listen: Vec<(SocketAddr, TcpListener)>,
        unlisten: Vec<SocketAddr>,
    },
    /// Graceful stop: stop accepting, close idle keep-alive connections, let the others
    /// finish until `deadline`, then end the worker. With `handover` the listening sockets
    /// belong to a new binary now: they are left open, and their queues are its to accept.
    Drain { handover: bool, deadline: Instant },
    /// The process stops now: flush what is buffered (access log lines), then answer.
    Flush(Sender<()>),
    /// A scrape of the admin listener: answer with this worker's counters, by name.
    Report(Sender<crate::metrics::StatsReport>),
}

/// The control thread's end of one worker's inbox.
pub struct WorkerLink {
    tx: Sender<WorkerMsg>,
    wake: StdUnixStream,
}

/// The worker's end, before its event loop exists.
pub struct InboxEnd {
    rx: Receiver<WorkerMsg>,
    wake: StdUnixStream,
}

/// A new inbox: the control thread keeps the link, the worker takes the end.
pub fn pair() -> io::Result<(WorkerLink, InboxEnd)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ours, theirs) = StdUnixStream::pair()?;
    ours.set_nonblocking(true)?;
    theirs.set_nonblocking(true)?;
    Ok((WorkerLink { tx, wake: ours }, InboxEnd { rx, wake: theirs }))
}

impl WorkerLink {
    /// Queues `msg` and wakes the worker. Never blocks: a full wake-up socket means the
    /// worker has unread wake-ups already and will drain the channel anyway.
    pub fn send(&self, msg: WorkerMsg) -> Result<(), WorkerGone> {
        self.tx.send(msg).map_err(|_| WorkerGone)?;
        match (&self.wake).write(&[1]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(_) => Err(WorkerGone),
        }
    }
}

impl WorkerLink {
    /// A second link to the same worker, for another thread (the admin listener's
    /// collector). The worker then sees its inbox close only when every link is gone.
    pub fn try_clone(&self) -> io::Result<WorkerLink> {
        Ok(WorkerLink {
            tx: self.tx.clone(),
            wake: self.wake.try_clone()?,
        })
    }
}

/// The worker has ended (its end of the inbox is gone).
#[derive(Debug)]
pub struct WorkerGone;

/// The worker's inbox inside its event loop.
pub struct Inbox {
    rx: Receiver<WorkerMsg>,
    wake: UnixStream,
    buf: Vec<u8>,
}

impl InboxEnd {
    /// Registers the wake-up socket with the current runtime.
    pub fn open(self) -> io::Result<Inbox> {
        Ok(Inbox {
            rx: self.rx,
            wake: UnixStream::from_std(self.wake)?,
            buf: Vec::with_capacity(64),
        })
    }
}

impl Inbox {
    /// The next message; `None` once the control thread is gone.
    pub async fn next(&mut self) -> Option<WorkerMsg> {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => return Some(msg),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            // A read dropped mid-way (a `select!`) took the buffer with it.
            let buf = match std::mem::take(&mut self.buf) {
                buf if buf.capacity() > 0 => buf,
                _ => Vec::with_capacity(64),
            };
            let (res, mut buf) = self.wake.read(buf).await;
            buf.clear();
            self.buf = buf;
            if !matches!(res, Ok(1..)) {
                // The link was dropped; what is still queued is delivered first.
                return self.rx.try_recv().ok();
            }
        }
    }
}
