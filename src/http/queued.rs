//! A request that found every server of its group at `max_conns`: it waits in the group's
//! queue ([`crate::balance::queue`]) until a slot is granted, `queue.timeout` passes, or the
//! client goes away; without a queue, or with a full one, it is refused at once.
//!
//! The wait is three things raced on the worker's own event loop: the request's doorbell
//! (rung by whichever worker frees a slot for it), the deadline, and the client socket
//! (a client that closes leaves the queue at once, as `unless_client_leaves` does for a
//! request waiting on a server). When what keeps every server out is a busy mark (a
//! server's own `Retry-After`), no request ending frees that room: the waiter also looks
//! again when the first mark ends, keeping its place.
//!
//! A refusal's `Retry-After`: when every server is busy, the seconds until the first busy
//! mark ends; otherwise the queue's estimate from how fast it drains (1 s without a queue:
//! a capped server frees a slot as soon as one of its requests ends).

use std::time::Instant;

use monoio::io::AsyncReadRent;
use monoio::net::{TcpStream, UnixStream};

use crate::balance::{Peers, Pick, PickKey, Tried};
use crate::clock::now_ms;
use crate::http::retry_after;
use crate::http::watch::peek;
use crate::nowait::Peeked;
use crate::snapshot::{GroupId, Queue};
use crate::worker::LocalSnapshot;

/// `Retry-After` when a group has no queue: a capped server frees a slot in about that long.
const NO_QUEUE_RETRY_AFTER: u32 = 1;

/// How the wait for a slot ended.
pub enum Slot {
    /// The request is counted on server `idx` now: it may go ahead.
    Counted(usize),
    /// Queue full or timed out (or no queue): 503 with `Retry-After` in seconds.
    Refused { retry_after: u32 },
    /// Every server became unavailable meanwhile: 502.
    Unavailable,
    /// The client closed its connection while waiting.
    ClientLeft,
}

/// Waits for a slot on a server of group `group_id` not in `tried`.
pub async fn wait_for_slot(
    local: &LocalSnapshot,
    group_id: GroupId,
    key: PickKey<'_>,
    tried: &Tried,
    client: &TcpStream,
) -> Slot {
    let group = &local.snap.groups[group_id];
    let peers = &group.peers;
    let Some(queue) = &group.queue else {
        let busy = peers.busy_wait_ms(tried, now_ms());
        return Slot::Refused {
            retry_after: busy.map_or(NO_QUEUE_RETRY_AFTER, secs),
        };
    };
    let deadline = Instant::now() + queue.timeout;
    let mut watch_client = true;
    loop {
        let Some(mut ticket) = peers.join_queue(queue.max) else {
            return refused(peers, queue, tried);
        };
        let Some(mut bell) = ticket
            .take_bell()
            .and_then(|b| UnixStream::from_std(b).ok())
        else {
            return refused(peers, queue, tried);
        };
        loop {
            // A slot may have freed between the pick that found none and joining (nobody
            // rings for a slot freed before anybody waited), or a busy mark ended: look.
            let pick = {
                let mut cursor = local.cursors[group_id].borrow_mut();
                peers.pick(&mut cursor, key, tried, now_ms())
            };
            match pick {
                Pick::Server(idx) if peers.try_begin(idx) => {
                    let Some(grant) = ticket.leave() else {
                        return Slot::Counted(idx);
                    };
                    // Granted one meanwhile as well: this one goes back, the grant is used.
                    peers.end(idx);
                    match usable(peers, grant, tried) {
                        Some(idx) => return Slot::Counted(idx),
                        None => break,
                    }
                }
                Pick::Unavailable => return Slot::Unavailable,
                Pick::Server(_) | Pick::Busy => {}
            }
            let recheck = peers
                .busy_wait_ms(tried, now_ms())
                .map(|ms| Instant::now() + std::time::Duration::from_millis(ms));
            let waited =
                ring_or_deadline(&mut bell, deadline, recheck, client, &mut watch_client).await;
            match waited {
                // Dropping the ticket leaves the line (or passes on a slot granted just now).
                Waited::ClientLeft => return Slot::ClientLeft,
                // A cancelled read may have taken the ring: the ticket knows.
                Waited::Recheck if !ticket.granted() => continue,
                Waited::Recheck | Waited::Rang | Waited::Deadline => {}
            }
            return match ticket.leave() {
                Some(grant) => match usable(peers, grant, tried) {
                    Some(idx) => Slot::Counted(idx),
                    None if Instant::now() >= deadline => {
                        peers.queue().note_timeout();
                        refused(peers, queue, tried)
                    }
                    // The granted server is one this request tried already, or a reload
                    // removed it: the slot went on to the next waiter, and this request
                    // goes back in line.
                    None => break,
                },
                None => {
                    peers.queue().note_timeout();
                    refused(peers, queue, tried)
                }
            };
        }
    }
}

/// The refusal of a request the queue cannot take (full) or could not serve in time.
fn refused(peers: &Peers, queue: &Queue, tried: &Tried) -> Slot {
    let retry_after = match peers.busy_wait_ms(tried, now_ms()) {
        Some(ms) => secs(ms),
        None => peers.queue().retry_after(queue.timeout),
    };
    Slot::Refused { retry_after }
}

/// Whole seconds (rounded up) within the bounds of any `Retry-After` ringway sends.
fn secs(ms: u64) -> u32 {
    retry_after::clamp(ms.div_ceil(1000)) as u32
}

/// The granted slot as a server of this request's group it has not tried yet; otherwise
/// the slot is passed on.
fn usable(peers: &Peers, grant: crate::balance::queue::Grant, tried: &Tried) -> Option<usize> {
    let idx = peers.adopt(grant)?;
    if tried.contains(idx) {
        peers.end(idx);
        return None;
    }
    Some(idx)
}

enum Waited {
    /// The doorbell rang: a slot was granted.
    Rang,
    Deadline,
    /// The first busy mark ended: look at the servers again.
    Recheck,
    ClientLeft,
}

/// Waits for the doorbell until `deadline` (or `recheck`, when that comes first), watching
/// the client for a close while `watch_client` holds (bytes from the client end the watch:
/// a close would hide behind them, and a pipelined request is no reason to give up a place).
async fn ring_or_deadline(
    bell: &mut UnixStream,
    deadline: Instant,
    recheck: Option<Instant>,
    client: &TcpStream,
    watch_client: &mut bool,
) -> Waited {
    let (wake, at_wake) = match recheck {
        Some(at) if at < deadline => (at, Waited::Recheck),
        _ => (deadline, Waited::Deadline),
    };
    let mut ring = std::pin::pin!(bell.read(Vec::with_capacity(8)));
    let mut timer = std::pin::pin!(monoio::time::sleep_until(wake.into()));
    loop {
        if !*watch_client {
            monoio::select! {
                _ = &mut ring => return Waited::Rang,
                _ = &mut timer => return at_wake,
            }
        }
        monoio::select! {
            _ = &mut ring => return Waited::Rang,
            _ = &mut timer => return at_wake,
            ready = client.readable(false) => match (ready, peek(client)) {
                (Err(_), _) | (_, Peeked::Closed) => return Waited::ClientLeft,
                (_, Peeked::Data) => *watch_client = false,
                (_, Peeked::Nothing) => {}
            },
        }
    }
}
