//! One tcp-mode connection: choose a server with the group's balancer, connect (trying the
//! next server on a failed connect), send the PROXY header, relay, then one access-log line
//! and the metrics.
//!
//! The connection is counted on its server (`least_conn` by open connections, `max_conns`)
//! for as long as it is relayed, and runs to its end on the snapshot it started with: a
//! reload changes nothing for it, a removed listener only stops new connections.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::relay::{self, Copier, End, Timeouts};
use super::vars::{ConnectTry, SessionVars};
use crate::balance::{Pick, PickKey, Policy, Tried};
use crate::clock::now_ms;
use crate::http::io::write_all;
use crate::http::queued::{self, Slot};
use crate::snapshot::{Group, GroupId, ProxyProtocol};
use crate::upstream::connect::dial;
use crate::upstream::proxy_header;
use crate::worker::{LocalSnapshot, Worker};

/// Relays one client connection accepted on the listener bound to `bind`; `held` (the
/// connection's counters) is let go when it ends.
pub async fn serve<H>(
    worker: Rc<Worker>,
    client: TcpStream,
    peer: SocketAddr,
    bind: SocketAddr,
    held: H,
) {
    let worker = &worker;
    let local = worker.snapshot();
    let Some(index) = local.snap.listener_index(bind) else {
        return;
    };
    let spec = &local.snap.listeners[index];
    let group_id = spec.group;
    let group = &local.snap.groups[group_id];
    let mut vars = SessionVars::new(peer, worker.id);
    match connect(worker, &local, group_id, &client, &mut vars).await {
        Ok(server) => {
            vars.status = 200;
            let proxied = ProxiedTo {
                proxy_protocol: spec.proxy_protocol,
                group,
            };
            relay_to(worker, client, server, proxied, &mut vars).await;
        }
        Err(status) => vars.status = status,
    }
    vars.ended = Some(Instant::now());
    let upstream = Some((group_id, vars.upstream()));
    let snap = &local.snap;
    worker
        .stats
        .request(snap, index, upstream, vars.status, Some(vars.started));
    worker
        .access_log
        .write_with(&snap.log, &snap.log.tcp_access_format, &vars);
    drop(held);
}

/// What the relay needs to know about where the bytes go.
struct ProxiedTo<'a> {
    proxy_protocol: ProxyProtocol,
    group: &'a Group,
}

/// Sends the PROXY header (when configured), then relays until both sides are done.
async fn relay_to(
    worker: &Rc<Worker>,
    client: TcpStream,
    server: Connected,
    to: ProxiedTo<'_>,
    vars: &mut SessionVars,
) {
    let Connected {
        mut stream,
        counted,
    } = server;
    if to.proxy_protocol != ProxyProtocol::Off {
        // The address the client reached (a wildcard bind says nothing about it).
        let Ok(listener) = client.local_addr() else {
            return;
        };
        let mut header = Vec::with_capacity(proxy_header::V1_MAX);
        proxy_header::write(to.proxy_protocol, vars.peer, listener, &mut header);
        let (res, _) = write_all(&mut stream, header, to.group.send_timeout).await;
        if let Err(e) = res {
            crate::warn!("{}: PROXY header to {}: {e}", vars.peer, counted.addr());
            return;
        }
    }
    let timeouts = Timeouts {
        idle: to.group.read_timeout,
        send: to.group.send_timeout,
    };
    let totals = relay::relay(client, stream, timeouts, Copier::from_env(), &**worker).await;
    drop(counted);
    vars.received = totals.up;
    vars.sent = totals.down;
    match totals.end {
        End::Closed => {}
        End::Idle => crate::info!(
            "{}: tcp connection idle for {:?} (read_timeout); closed",
            vars.peer,
            timeouts.idle
        ),
        End::Failed => crate::debug!("{}: tcp connection cut", vars.peer),
    }
}

impl relay::Buffers for Worker {
    fn lend(&self) -> Vec<u8> {
        self.lend_buffer(relay::CHUNK)
    }

    fn give_back(&self, buf: Vec<u8>) {
        self.return_buffer(buf);
    }
}

/// A connected server, with the connection counted on it until dropped.
struct Connected {
    stream: TcpStream,
    counted: Counted,
}

/// One connection counted on server `idx` (`least_conn`, `max_conns`); uncounted on drop.
struct Counted {
    group: Arc<Group>,
    idx: usize,
}

impl Counted {
    fn addr(&self) -> SocketAddr {
        self.group.peers.servers()[self.idx].addr
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.group.peers.end(self.idx);
    }
}

/// Picks servers and connects until one accepts, within `next_upstream_tries` and
/// `next_upstream_timeout` (a failed connect sent nothing, so trying on is always safe;
/// `next_upstream` still decides whether errors and timeouts go on). `Err` is the status
/// the connection is logged with.
async fn connect(
    worker: &Rc<Worker>,
    local: &LocalSnapshot,
    group_id: GroupId,
    client: &TcpStream,
    vars: &mut SessionVars,
) -> Result<Connected, u16> {
    let group = &local.snap.groups[group_id];
    let peers = &group.peers;
    let servers = peers.servers().len() as u32;
    let mut tries_left = match group.next_upstream_tries {
        0 => servers,
        n => n.min(servers.max(1)),
    };
    let deadline = (!group.next_upstream_timeout.is_zero())
        .then(|| vars.started + group.next_upstream_timeout);
    let mut key = Vec::new();
    if let Some(template) = &group.hash_key {
        template.render(vars, &mut key);
    }
    let mut tried = Tried::default();
    let mut last_status = 502;
    let mut retried_from = None;
    loop {
        let pick_key = match peers.policy() {
            Policy::IpHash => PickKey::Ip(vars.peer.ip()),
            Policy::Hash => PickKey::Bytes(&key),
            _ => PickKey::None,
        };
        let pick = {
            let mut cursor = local.cursors[group_id].borrow_mut();
            peers.pick(&mut cursor, pick_key, &tried, now_ms())
        };
        let idx = match pick {
            Pick::Server(idx) if peers.try_begin(idx) => idx,
            // Another worker took the last slot since the pick: look again.
            Pick::Server(_) => continue,
            Pick::Busy => {
                // Boxed: queueing is the rare path, and its future would otherwise make
                // every connection's task larger (and every spawn copy more).
                let wait = queued::wait_for_slot(local, group_id, pick_key, &tried, client);
                match Box::pin(wait).await {
                    Slot::Counted(idx) => idx,
                    Slot::Refused { .. } => return Err(503),
                    Slot::ClientLeft => return Err(499),
                    Slot::Unavailable => return Err(last_status),
                }
            }
            Pick::Unavailable => return Err(last_status),
        };
        if let Some(from) = retried_from.take() {
            worker.stats.retry(group_id, group, from);
        }
        let counted = Counted {
            group: group.clone(),
            idx,
        };
        tried.insert(idx);
        tries_left = tries_left.saturating_sub(1);
        let addr = counted.addr();
        let began = Instant::now();
        let error = match dial(addr, group.connect_timeout).await {
            Ok(stream) => {
                // The attempt's connect time: what `least_time` scores in tcp mode (there
                // is no response to time; HAProxy's and nginx's L4 least_time do the same).
                let took = began.elapsed();
                peers.succeeded(idx);
                peers.observe_first_byte(idx, took, now_ms());
                vars.tries.push(ConnectTry {
                    addr,
                    connect: Some(took),
                });
                return Ok(Connected { stream, counted });
            }
            Err(e) => e,
        };
        drop(counted);
        vars.tries.push(ConnectTry {
            addr,
            connect: None,
        });
        peers.failed(idx, now_ms());
        peers.observe_failure(idx, now_ms());
        worker.stats.failure(group_id, group, idx);
        let timed_out = error.kind() == std::io::ErrorKind::TimedOut;
        last_status = if timed_out { 504 } else { 502 };
        let why_not = no_retry(group, timed_out, tries_left, deadline);
        if let Some(why) = why_not {
            crate::warn!(
                "{}: tcp connect to {addr} failed: {error}; not retried: {why}",
                vars.peer
            );
            return Err(last_status);
        }
        crate::warn!(
            "{}: tcp connect to {addr} failed: {error}; trying another server",
            vars.peer
        );
        retried_from = Some(idx);
    }
}

/// Why a failed connect is not tried on another server (`None`: it is).
fn no_retry(
    group: &Group,
    timed_out: bool,
    tries_left: u32,
    deadline: Option<Instant>,
) -> Option<&'static str> {
    let listed = if timed_out {
        group.next_upstream.timeout
    } else {
        group.next_upstream.error
    };
    if !listed {
        Some("next_upstream does not list it")
    } else if tries_left == 0 {
        Some("tries exhausted (next_upstream_tries)")
    } else if deadline.is_some_and(|d| Instant::now() >= d) {
        Some("next_upstream_timeout spent")
    } else {
        None
    }
}
