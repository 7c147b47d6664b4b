//! Stopping: now (SIGTERM, SIGINT) or gracefully (SIGQUIT, and the old process of an
//! upgrade). Either way no connection is accepted by a process that is going away: the
//! listening sockets are shut (or, on upgrade, left to the new binary) before exit.
//!
//! Graceful stop, in order: `/healthz` answers 503 at once; the listeners keep accepting for
//! `runtime.shutdown_delay` (so a load balancer or keepalived moves traffic away); then each
//! worker stops accepting, closes its idle keep-alive connections, and lets in-flight
//! requests and streams finish up to `runtime.shutdown_timeout`.

use std::time::{Duration, Instant};

use super::signals::{self, Request};
use super::state::state;
use super::{Control, TICK};
use crate::worker::inbox::WorkerMsg;

/// How long the workers get to flush buffered log lines on a stop.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// Beyond `shutdown_timeout`, how long to wait for a worker thread to end.
const JOIN_GRACE: Duration = Duration::from_secs(2);

/// Stop now: refuse new connections at once, let the workers flush, return.
pub fn now(ctl: &Control) {
    ctl.listeners.shutdown_all();
    flush_workers(ctl);
}

/// Graceful stop. With `handover` (after an upgrade) the sockets belong to the new binary:
/// no delay, and they are left open. Returns when every worker has ended, the timeout has
/// passed, or a stop-now signal cut the drain short.
pub fn drain(ctl: &Control, handover: bool) {
    // After an upgrade the service goes on in the new process: health stays good.
    if !handover {
        state().begin_draining();
    }
    let runtime = &ctl.current.load().runtime;
    let (delay, timeout) = (runtime.shutdown_delay, runtime.shutdown_timeout);
    if !handover && !delay.is_zero() {
        crate::info!("shutdown_delay: accepting for {delay:?} more");
        if !wait_out(ctl, Instant::now() + delay, || false) {
            return;
        }
    }
    let deadline = Instant::now() + timeout;
    for link in &ctl.running.links {
        let _ = link.send(WorkerMsg::Drain { handover, deadline });
    }
    let finished = || ctl.running.workers.iter().all(|w| w.is_finished());
    if !wait_out(ctl, deadline + JOIN_GRACE, finished) {
        return;
    }
    if !handover {
        ctl.listeners.shutdown_all();
    }
    crate::info!("drained; exiting");
}

/// Waits until `done` holds or `until` passes, answering signals meanwhile. Returns false
/// when a stop-now signal ended the wait (the listeners are then already shut).
fn wait_out(ctl: &Control, until: Instant, done: impl Fn() -> bool) -> bool {
    while !done() && Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now()).min(TICK);
        match signals::wait(left) {
            Some(Request::Stop) => {
                crate::info!("stopping now");
                now(ctl);
                return false;
            }
            Some(Request::Reopen) => ctl.reopen_logs(),
            Some(other) => crate::info!("{other:?} ignored: a graceful stop is under way"),
            None => {}
        }
    }
    true
}

/// Asks every worker to flush what it buffers and waits (bounded) for their answers.
fn flush_workers(ctl: &Control) {
    let (tx, rx) = crossbeam_channel::bounded(ctl.running.links.len());
    let asked = ctl
        .running
        .links
        .iter()
        .filter(|link| link.send(WorkerMsg::Flush(tx.clone())).is_ok())
        .count();
    let deadline = Instant::now() + FLUSH_WAIT;
    for _ in 0..asked {
        if rx.recv_deadline(deadline).is_err() {
            break;
        }
    }
}
