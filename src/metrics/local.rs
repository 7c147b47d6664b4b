//! One worker's counters: [`LocalStats`], updated on the data path, reported by name.
//!
//! The counters of the current snapshot generation live in [`Tables`], addressed by the
//! snapshot's own indexes (listener, group, server): a request costs a few integer
//! compares and additions, no atomics, no string hashing. A reload renumbers listeners,
//! groups and servers, so when the worker moves to a newer generation the tables are folded
//! into a name-keyed archive and rebuilt empty; the report is archive + tables, by name, so
//! every counter only ever goes up. A request still running on an older snapshot when its
//! event arrives is counted by name straight into the archive (rare: only across a reload).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Histogram, RequestKey, ServerCounts, StatsReport};
use crate::snapshot::{Group, GroupId, Snapshot};

/// Counters of one worker. `!Send`: owned by `worker::Worker`, touched only on its thread.
pub struct LocalStats {
    inner: RefCell<Inner>,
}

struct Inner {
    tables: Tables,
    /// Folded tables of earlier generations, by name (no connection gauges here).
    archive: StatsReport,
    /// `ringway_request_duration_seconds` has no labels: nothing to renumber.
    duration: Histogram,
    /// Open client connections by listener name. A connection holds its listener's cell
    /// (see [`ConnectionGauge`]) for as long as it lives, across any reload.
    gauges: Vec<(String, Rc<Cell<u64>>)>,
}

/// The counters of one snapshot generation, by index.
///
/// Slots: 0 is "no upstream chosen"; group `g` owns `base[g]` ("no server chosen") and
/// `base[g] + 1 + i` for its server `i`.
struct Tables {
    snap: Arc<Snapshot>,
    base: Vec<usize>,
    slots: usize,
    /// Per group, its servers' addresses sorted, with their index: a response is
    /// attributed to a server by the address of its last attempt.
    by_addr: Vec<Vec<(SocketAddr, usize)>>,
    /// `listeners × slots` short lists of (status code, count): a listener/server pair
    /// sees a handful of distinct codes, so a linear scan beats any map.
    requests: Vec<Vec<(u16, u64)>>,
    /// One per slot; only server slots are used.
    servers: Vec<ServerCounts>,
    /// Open-connection gauge of each listener, same index as `snap.listeners`.
    connections: Vec<Rc<Cell<u64>>>,
}

/// One open client connection counted on its listener; the count goes down on drop.
pub struct ConnectionGauge(Rc<Cell<u64>>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl LocalStats {
    pub fn new(snap: Arc<Snapshot>) -> LocalStats {
        let mut gauges = Vec::new();
        let tables = Tables::new(snap, &mut gauges);
        LocalStats {
            inner: RefCell::new(Inner {
                tables,
                archive: StatsReport::default(),
                duration: Histogram::default(),
                gauges,
            }),
        }
    }

    /// Moves the tables to `snap` when it is newer than theirs (call when the worker's
    /// snapshot changes; the recording calls also check).
    pub fn follow(&self, snap: &Arc<Snapshot>) {
        self.inner.borrow_mut().follow(snap);
    }

    /// A client connection accepted on `bind` is open until the gauge is dropped.
    pub fn open_connection(&self, snap: &Arc<Snapshot>, bind: SocketAddr) -> ConnectionGauge {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.follow(snap);
        let t = &inner.tables;
        let cell = if Arc::ptr_eq(snap, &t.snap) {
            t.snap
                .listener_index(bind)
                .map(|i| t.connections[i].clone())
        } else {
            snap.listener_by_bind(bind)
                .map(|l| gauge_for(&mut inner.gauges, &l.name))
        };
        // A bind no listener has (cannot happen while accepting) is counted nowhere.
        let cell = cell.unwrap_or_default();
        cell.set(cell.get() + 1);
        ConnectionGauge(cell)
    }

    /// A request on listener `listener` (its index in `snap`) was answered with `code`.
    /// `upstream` is the group it was routed to and the address of the server of its last
    /// attempt (None when ringway answered before routing, or no server was tried).
    /// `started` is when its head was read (None for a head that never arrived whole: not
    /// in the histogram).
    pub fn request(
        &self,
        snap: &Arc<Snapshot>,
        listener: usize,
        upstream: Option<(GroupId, Option<SocketAddr>)>,
        code: u16,
        started: Option<Instant>,
    ) {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        if let Some(started) = started {
            inner.duration.observe(started.elapsed());
        }
        inner.follow(snap);
        let t = &mut inner.tables;
        if Arc::ptr_eq(snap, &t.snap) {
            if listener >= t.snap.listeners.len() {
                return;
            }
            let slot = match upstream {
                None => 0,
                Some((group, addr)) => t.server_slot(group, addr),
            };
            count_code(&mut t.requests[listener * t.slots + slot], code);
        } else if let Some(key) = request_key(snap, listener, upstream, code) {
            *inner.archive.requests.entry(key).or_default() += 1;
        }
    }

    /// A failed attempt on `server` of `group` is retried on another server.
    pub fn retry(&self, group_id: GroupId, group: &Group, server: usize) {
        self.server_event(group_id, group, server, |c| c.retries += 1);
    }

    /// A failed attempt on `server` counts against its `max_fails`.
    pub fn failure(&self, group_id: GroupId, group: &Group, server: usize) {
        self.server_event(group_id, group, server, |c| c.failures += 1);
    }

    /// `server` answered with a response head `waited` after the request was sent.
    pub fn first_byte(&self, group_id: GroupId, group: &Group, server: usize, waited: Duration) {
        self.server_event(group_id, group, server, |c| c.first_byte.observe(waited));
    }

    fn server_event(
        &self,
        group_id: GroupId,
        group: &Group,
        server: usize,
        count: impl FnOnce(&mut ServerCounts),
    ) {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let t = &mut inner.tables;
        // The group is this generation's (same object, not merely the same index) or the
        // event belongs to an older snapshot and is counted by name.
        let current = t
            .snap
            .groups
            .get(group_id)
            .is_some_and(|g| std::ptr::eq(&**g, group));
        if current && server < group.peers.servers().len() {
            count(&mut t.servers[t.base[group_id] + 1 + server]);
        } else if let Some(s) = group.peers.servers().get(server) {
            count(inner.archive.server_mut(&group.name, &s.addr.to_string()));
        }
    }

    /// Everything counted so far, by name.
    pub fn report(&self) -> StatsReport {
        let inner = self.inner.borrow();
        let mut report = inner.archive.clone();
        inner.tables.add_to(&mut report);
        report.duration.merge(&inner.duration);
        for (name, cell) in &inner.gauges {
            *report.connections.entry(name.clone()).or_default() += cell.get();
        }
        report
    }

    /// Answers a scrape (`WorkerMsg::Report`). Never blocks: the channel has room for
    /// every worker's answer, and one whose collector gave up is simply dropped.
    pub fn report_to(&self, to: &crossbeam_channel::Sender<StatsReport>) {
        let _ = to.try_send(self.report());
    }
}

impl Inner {
    fn follow(&mut self, snap: &Arc<Snapshot>) {
        if snap.generation <= self.tables.snap.generation {
            return;
        }
        let tables = Tables::new(snap.clone(), &mut self.gauges);
        std::mem::replace(&mut self.tables, tables).add_to(&mut self.archive);
    }
}

impl Tables {
    fn new(snap: Arc<Snapshot>, gauges: &mut Vec<(String, Rc<Cell<u64>>)>) -> Tables {
        let mut base = Vec::with_capacity(snap.groups.len());
        let mut slots = 1;
        let mut by_addr = Vec::with_capacity(snap.groups.len());
        for group in &snap.groups {
            base.push(slots);
            let servers = group.peers.servers();
            slots += 1 + servers.len();
            let mut sorted: Vec<(SocketAddr, usize)> = servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.addr, i))
                .collect();
            sorted.sort_unstable();
            by_addr.push(sorted);
        }
        let connections = snap
            .listeners
            .iter()
            .map(|l| gauge_for(gauges, &l.name))
            .collect();
        Tables {
            requests: vec![Vec::new(); snap.listeners.len() * slots],
            servers: vec![ServerCounts::default(); slots],
            snap,
            base,
            slots,
            by_addr,
            connections,
        }
    }

    /// The slot of the server at `addr` in `group`, or the group's "no server" slot.
    fn server_slot(&self, group: GroupId, addr: Option<SocketAddr>) -> usize {
        let (Some(&base), Some(sorted)) = (self.base.get(group), self.by_addr.get(group)) else {
            return 0;
        };
        let found = addr.and_then(|addr| {
            sorted
                .binary_search_by(|(a, _)| a.cmp(&addr))
                .ok()
                .map(|i| sorted[i].1)
        });
        found.map_or(base, |idx| base + 1 + idx)
    }

    /// (upstream, server) label values of every slot.
    fn slot_names(&self) -> Vec<(String, String)> {
        let mut names = vec![(String::new(), String::new())];
        for group in &self.snap.groups {
            names.push((group.name.clone(), String::new()));
            for s in group.peers.servers() {
                names.push((group.name.clone(), s.addr.to_string()));
            }
        }
        names
    }

    /// Adds these tables' counters, by name, into `report`.
    fn add_to(&self, report: &mut StatsReport) {
        let names = self.slot_names();
        for (i, codes) in self.requests.iter().enumerate() {
            let listener = &self.snap.listeners[i / self.slots].name;
            let (upstream, server) = &names[i % self.slots];
            for &(code, n) in codes {
                let key = RequestKey {
                    listener: listener.clone(),
                    upstream: upstream.clone(),
                    server: server.clone(),
                    code,
                };
                *report.requests.entry(key).or_default() += n;
            }
        }
        for (counts, (upstream, server)) in self.servers.iter().zip(&names) {
            if *counts != ServerCounts::default() {
                report.server_mut(upstream, server).merge(counts);
            }
        }
    }
}

fn count_code(codes: &mut Vec<(u16, u64)>, code: u16) {
    match codes.iter_mut().find(|(c, _)| *c == code) {
        Some((_, n)) => *n += 1,
        None => codes.push((code, 1)),
    }
}

/// The gauge cell of listener `name`, created at zero the first time.
fn gauge_for(gauges: &mut Vec<(String, Rc<Cell<u64>>)>, name: &str) -> Rc<Cell<u64>> {
    if let Some((_, cell)) = gauges.iter().find(|(n, _)| n == name) {
        return cell.clone();
    }
    let cell = Rc::new(Cell::new(0));
    gauges.push((name.to_string(), cell.clone()));
    cell
}

/// The names of a request counted against a snapshot the tables are not for.
fn request_key(
    snap: &Snapshot,
    listener: usize,
    upstream: Option<(GroupId, Option<SocketAddr>)>,
    code: u16,
) -> Option<RequestKey> {
    let listener = snap.listeners.get(listener)?.name.clone();
    let (upstream, server) = match upstream {
        None => (String::new(), String::new()),
        Some((group, addr)) => (
            snap.groups.get(group)?.name.clone(),
            addr.map(|a| a.to_string()).unwrap_or_default(),
        ),
    };
    Some(RequestKey {
        listener,
        upstream,
        server,
        code,
    })
}
