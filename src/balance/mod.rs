//! Choosing a server: the policies, per-server process-wide marks, and per-worker cursors.
//!
//! `Peers` is immutable except for its atomics (active counts and passive-health marks, which
//! are process-wide by contract). Anything a policy mutates on every pick lives in a
//! `LocalCursor` owned by one worker, so no cache line bounces between cores per request.
//!
//! Files: `round_robin.rs` (smooth weighted, also used for backups and as every policy's
//! fallback), `least_conn.rs`, `hash.rs` (consistent ring and ip_hash), `random_two.rs`,
//! `marks.rs` (the atomics), `slow_start.rs` (the weight of a server ramping back up),
//! `queue.rs` (requests waiting for a slot when every server is at `max_conns`),
//! `standing.rs` (how a server stands, read for `/status`). Every
//! policy picks among the primaries first; backups are chosen, by round robin among
//! themselves, only when no primary is usable. *Usable* means not `down`, not marked by
//! failures or probes, not tried for this request, and below `max_conns`. A pick allocates
//! nothing and takes no lock; [`Peers::try_begin`] then counts the request unless another
//! worker took the last slot meanwhile, so `max_conns` is never exceeded.
//!
//! Keys: `hash` hashes `PickKey::Bytes` (or the address bytes of `PickKey::Ip`) onto its ring;
//! `ip_hash` hashes `PickKey::Ip` the nginx way (or all bytes of `PickKey::Bytes`). Either
//! with `PickKey::None` falls back to round robin. Other policies ignore the key.

mod hash;
mod least_conn;
mod least_time;
mod marks;
pub mod queue;
mod random_two;
mod round_robin;
mod slow_start;
mod standing;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use marks::Marks;
pub use marks::{MAX_LANES, enter_worker};
use queue::{FreedSlot, Grant, JoinError, Ticket, WaitQueue};
pub use standing::{Ramp, Standing};

/// Upper bound on servers in one group (keeps `Tried` a fixed-size bitset on the stack).
pub const MAX_SERVERS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// nginx's smooth weighted round robin.
    RoundRobin,
    /// Fewest active requests relative to weight, process-wide; ties by round robin.
    LeastConn,
    /// nginx ip_hash: first three octets of IPv4, whole IPv6.
    IpHash,
    /// Consistent (ketama-style) ring over the rendered `hash_key`.
    Hash,
    /// Two random candidates (weighted), the less loaded wins.
    RandomTwo,
    /// Two random candidates (weighted), the lower (load + 1) × time to first byte wins.
    LeastTime,
    /// The consistent ring over a key read from the JSON body's prompt; least_time without.
    Prompt,
}

impl Policy {
    /// The policy reads the servers' time to first byte (least_time, and prompt's fallback):
    /// only then are the times recorded.
    pub fn times(self) -> bool {
        matches!(self, Policy::LeastTime | Policy::Prompt)
    }
}

/// One configured server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub addr: SocketAddr,
    pub weight: u32,
    /// 0 disables passive health for this server.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
    /// 0 = unlimited; caps active requests process-wide.
    pub max_conns: u32,
}

/// What a pick is keyed on.
#[derive(Clone, Copy, Debug)]
pub enum PickKey<'a> {
    None,
    Ip(IpAddr),
    Bytes(&'a [u8]),
}

/// The outcome of a pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Server(usize),
    /// Some server is available but every available one is at `max_conns` (queue or 503).
    Busy,
    /// No server is available (all down, failed or already tried): 502.
    Unavailable,
}

/// Servers already tried for this request.
#[derive(Clone, Debug)]
pub struct Tried {
    bits: [u64; MAX_SERVERS / 64],
}

impl Default for Tried {
    fn default() -> Self {
        Tried {
            bits: [0; MAX_SERVERS / 64],
        }
    }
}

impl Tried {
    /// Indexes at or above [`MAX_SERVERS`] are ignored (a group never has them).
    pub fn insert(&mut self, idx: usize) {
        if let Some(word) = self.bits.get_mut(idx / 64) {
            *word |= 1 << (idx % 64);
        }
    }
    pub fn contains(&self, idx: usize) -> bool {
        self.bits
            .get(idx / 64)
            .is_some_and(|word| word & (1 << (idx % 64)) != 0)
    }
}

/// The servers of one group, their policy and their process-wide marks.
pub struct Peers {
    policy: Policy,
    servers: Vec<Server>,
    /// Indexes of the non-backup servers (down ones included: they keep their hash share).
    primaries: Box<[u32]>,
    /// Indexes of the backup servers.
    backups: Box<[u32]>,
    /// Running total of the primaries' weights, in `primaries` order (ip_hash, random_two).
    cumulative: Box<[u64]>,
    /// The consistent ring; empty unless the policy is `Hash`.
    ring: hash::Ring,
    /// Active counts and health marks, shared by every worker.
    marks: Marks,
    /// `slow_start` in ms; 0 = off (weights are never ramped, nothing extra is read).
    slow_start_ms: u64,
    /// `load_feedback`: a reported load older than this (ms) is ignored; 0 = off (the load
    /// is the active count alone, nothing extra is read).
    feedback_stale_ms: u64,
    /// Requests waiting for a slot; shared by every snapshot that has this group.
    queue: Arc<WaitQueue>,
    /// The group has `queue` set: a freed slot is offered to the queue first.
    queued: bool,
    /// `hash_balance_factor` in percent; 0 = off (keyed policies only).
    balance_factor: u32,
    /// `hash_balance_slack`: requests a server takes past its bound (only with a factor).
    balance_slack: u32,
    /// Workers that count requests on this group (see `with_workers`).
    workers: usize,
}

/// Per-worker balancing state for one group (smooth weights, tie cursor, random seed).
pub struct LocalCursor {
    /// Smooth round robin current weights, one per server (primaries and backups). Also
    /// breaks least_conn ties and drives every policy's round robin fallback.
    current: Vec<i64>,
    /// xorshift64* state for random_two; never zero.
    random: u64,
}

/// How a server stands for one pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    /// Down, marked failed, or already tried: not a candidate.
    Out,
    /// Otherwise usable but at `max_conns`, or marked busy by its own `Retry-After`: room
    /// comes back by itself (the request may queue, or is refused with `Retry-After`).
    Capped,
    Usable,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Peers {
    /// Builds the peers (and the hash ring for `Policy::Hash`). Servers are already validated;
    /// any beyond [`MAX_SERVERS`] are dropped (validation rejects such groups).
    pub fn new(policy: Policy, mut servers: Vec<Server>) -> Peers {
        servers.truncate(MAX_SERVERS);
        let indexes = |backup: bool| -> Box<[u32]> {
            (0..servers.len() as u32)
                .filter(|&idx| servers[idx as usize].backup == backup)
                .collect()
        };
        let (primaries, backups) = (indexes(false), indexes(true));
        let cumulative = primaries
            .iter()
            .scan(0u64, |sum, &idx| {
                *sum += u64::from(servers[idx as usize].weight.max(1));
                Some(*sum)
            })
            .collect();
        let ring = match policy {
            Policy::Hash | Policy::Prompt => hash::Ring::build(&servers, &primaries),
            _ => hash::Ring::default(),
        };
        let marks = Marks::new(servers.len(), 1);
        Peers {
            policy,
            servers,
            primaries,
            backups,
            cumulative,
            ring,
            marks,
            slow_start_ms: 0,
            feedback_stale_ms: 0,
            queue: Arc::default(),
            queued: false,
            balance_factor: 0,
            balance_slack: 0,
            workers: 1,
        }
    }

    /// `workers` count requests on this group: where no pick reads the active counts, each
    /// server's count is split into one lane per worker (up to [`MAX_LANES`]), so counting a
    /// request writes a cache line no other worker writes (see `marks.rs`). Call while
    /// building, before `inherit` and before any request is counted.
    pub fn with_workers(mut self, workers: usize) -> Peers {
        self.workers = workers;
        self.marks = Marks::new(self.servers.len(), self.lanes());
        self
    }

    /// Lanes per server count. A policy that reads the counts on every pick (least_conn,
    /// random_two, least_time, prompt's fallback, a `hash_balance_factor` bound) gets one,
    /// shared by every worker: a pick then reads one line per server, where lanes would make
    /// it read one per worker, each of them missing whenever its worker counted a request
    /// since (measured slower than the shared word: README "Scaling"). Round robin, hash
    /// and ip_hash read counts only for `max_conns` and `/metrics`, so they get a lane per
    /// worker, and counting a request writes no shared line.
    fn lanes(&self) -> usize {
        let reads_counts = self.balance_factor > 0
            || matches!(
                self.policy,
                Policy::LeastConn | Policy::RandomTwo | Policy::LeastTime | Policy::Prompt
            );
        if reads_counts { 1 } else { self.workers }
    }

    /// Sets `hash_balance_factor` (percent, 0 = off): `hash`, `ip_hash` and `prompt` send a
    /// key past a server whose load is at its bound (see [`hash::Bound`]).
    pub fn with_balance_factor(mut self, percent: u32) -> Peers {
        self.balance_factor = percent;
        // The bound reads every server's count on every pick: see `lanes`.
        self.marks = Marks::new(self.servers.len(), self.lanes());
        self
    }

    /// Sets `hash_balance_slack`: with a `hash_balance_factor`, a server takes this many
    /// requests past its bound before a key spills (see [`hash::Bound`]).
    pub fn with_balance_slack(mut self, requests: u32) -> Peers {
        self.balance_slack = requests;
        self
    }

    /// `hash_balance_factor` and `hash_balance_slack`, as configured.
    #[cfg(test)]
    pub(crate) fn balance_bound(&self) -> (u32, u32) {
        (self.balance_factor, self.balance_slack)
    }

    /// The group has a wait queue (`queue = { .. }`): freed slots go to its waiters first.
    pub fn with_queue(mut self, queued: bool) -> Peers {
        self.queued = queued;
        self
    }

    /// Sets the group's `slow_start`: servers that come back ramp up to their weight over it.
    pub fn with_slow_start(mut self, ramp: Option<Duration>) -> Peers {
        self.slow_start_ms = ramp.map_or(0, millis);
        self
    }

    /// Sets the group's `load_feedback` poll interval: what the servers report counts in
    /// their load (`load`) until it is three intervals old.
    pub fn with_load_feedback(mut self, interval: Option<Duration>) -> Peers {
        self.feedback_stale_ms = interval.map_or(0, |i| millis(i).saturating_mul(3).max(1));
        self
    }

    /// Carries per-server state over a reload: every server of `self` that `old` also has
    /// (same address; the n-th occurrence of an address matches the n-th) shares `old`'s marks
    /// from now on: active counts, passive failure marks and probe verdicts. Call while
    /// building the new snapshot, before any worker sees it.
    ///
    /// A server `old` does not have, or had as `down`, comes back now: with `slow_start` it
    /// ramps up from here.
    pub fn inherit(&mut self, old: &Peers) {
        self.inherit_at(old, crate::clock::now_ms());
    }

    fn inherit_at(&mut self, old: &Peers, now_ms: u64) {
        // Requests queued on the old snapshot wait on in the same line.
        self.queue = old.queue.clone();
        for idx in 0..self.servers.len() {
            let addr = self.servers[idx].addr;
            let nth = self.servers[..idx]
                .iter()
                .filter(|s| s.addr == addr)
                .count();
            let from = old
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.addr == addr)
                .nth(nth)
                .map(|(i, _)| i);
            match from {
                Some(from) => {
                    self.marks.share(idx, &old.marks, from);
                    if old.servers[from].down && !self.servers[idx].down {
                        self.marks.came_back(idx, now_ms);
                    }
                }
                None => self.marks.came_back(idx, now_ms),
            }
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// Chooses a server not in `tried`, available at `now_ms` (see [`crate::clock::now_ms`]).
    /// Backups are chosen only when no primary is available.
    pub fn pick(
        &self,
        cursor: &mut LocalCursor,
        key: PickKey<'_>,
        tried: &Tried,
        now_ms: u64,
    ) -> Pick {
        cursor.fit_to(self);
        let mut busy = false;
        let chosen = self
            .pick_primary(cursor, key, tried, now_ms, &mut busy)
            .or_else(|| {
                round_robin::pick(
                    self,
                    &self.backups,
                    &mut cursor.current,
                    tried,
                    now_ms,
                    &mut busy,
                )
            });
        match chosen {
            Some(idx) => Pick::Server(idx),
            None if busy => Pick::Busy,
            None => Pick::Unavailable,
        }
    }

    /// The policy's choice among the primaries. `None` only after every primary was looked
    /// at, so `busy` is complete.
    fn pick_primary(
        &self,
        cursor: &mut LocalCursor,
        key: PickKey<'_>,
        tried: &Tried,
        now_ms: u64,
        busy: &mut bool,
    ) -> Option<usize> {
        let current = &mut cursor.current;
        match (self.policy, key) {
            (Policy::RoundRobin, _) | (Policy::IpHash | Policy::Hash, PickKey::None) => {
                round_robin::pick(self, &self.primaries, current, tried, now_ms, busy)
            }
            (Policy::LeastConn, _) => {
                least_conn::pick(self, &self.primaries, current, tried, now_ms, busy)
            }
            (Policy::RandomTwo, _) => {
                random_two::pick(self, cursor, tried, now_ms, busy, random_two::less_loaded)
            }
            (Policy::LeastTime, _) | (Policy::Prompt, PickKey::None | PickKey::Ip(_)) => {
                random_two::pick(self, cursor, tried, now_ms, busy, least_time::faster)
            }
            (Policy::Prompt, PickKey::Bytes(bytes)) => {
                hash::ring_pick(self, hash::hash64(bytes), tried, now_ms, busy)
            }
            (Policy::IpHash, PickKey::Ip(ip)) => {
                let (bytes, len) = hash::ip_hash_key(ip);
                hash::ip_hash_pick(self, current, &bytes[..len], tried, now_ms, busy)
            }
            (Policy::IpHash, PickKey::Bytes(bytes)) => {
                hash::ip_hash_pick(self, current, bytes, tried, now_ms, busy)
            }
            (Policy::Hash, PickKey::Bytes(bytes)) => {
                hash::ring_pick(self, hash::hash64(bytes), tried, now_ms, busy)
            }
            (Policy::Hash, PickKey::Ip(ip)) => {
                let (bytes, len) = hash::ip_bytes(ip);
                hash::ring_pick(self, hash::hash64(&bytes[..len]), tried, now_ms, busy)
            }
        }
    }

    /// How `idx` stands for this pick. Loads the active count only when it is capped, and
    /// the health marks from a line that is written only on failures.
    #[inline]
    fn fit(&self, idx: usize, tried: &Tried, now_ms: u64) -> Fit {
        let Some(server) = self.servers.get(idx) else {
            return Fit::Out;
        };
        if server.down || tried.contains(idx) || !self.marks.healthy(idx, now_ms) {
            Fit::Out
        } else if (server.max_conns != 0 && self.marks.active(idx) >= server.max_conns)
            || self.marks.busy_until(idx) > now_ms
        {
            Fit::Capped
        } else {
            Fit::Usable
        }
    }

    /// The configured weight (at least 1) in the policies' units (see [`slow_start`]).
    #[inline]
    fn full_weight(&self, idx: usize) -> u64 {
        let weight = self
            .servers
            .get(idx)
            .map_or(1, |server| server.weight.max(1));
        u64::from(weight) << slow_start::SCALE_BITS
    }

    /// The weight balancing uses at `now_ms`: the full weight, or less while the server
    /// ramps up after coming back (only groups with `slow_start` read the marks for it).
    #[inline]
    fn weight(&self, idx: usize, now_ms: u64) -> u64 {
        let full = self.full_weight(idx);
        if self.slow_start_ms == 0 {
            return full;
        }
        slow_start::ramped(full, self.marks.back_since(idx), now_ms, self.slow_start_ms)
    }

    /// The load the load-aware policies weigh (least_conn, least_time, random_two, and the
    /// bound of `hash_balance_factor`): requests active on `idx` in this process, plus,
    /// with `load_feedback`, the requests the server last reported that are not this
    /// process's (other ringway nodes, other clients) — unless that report is stale.
    /// The one place to add other signals of how busy a server is.
    #[inline]
    pub fn load(&self, idx: usize, now_ms: u64) -> u32 {
        let active = self.marks.active(idx);
        if self.feedback_stale_ms == 0 {
            return active;
        }
        let (others, at) = self.marks.feedback(idx);
        if at == 0 || now_ms.saturating_sub(at) > self.feedback_stale_ms {
            return active;
        }
        // `others` has 24 bits: no overflow.
        active.saturating_add(others as u32)
    }

    /// A poll of server `idx`'s own metrics found `reported` requests (waiting + running)
    /// at `now_ms`. Those beyond this process's active ones are someone else's: they are
    /// what `load` adds from now on (this process's own keep counting live).
    pub fn report_load(&self, idx: usize, reported: u64, now_ms: u64) {
        let own = u64::from(self.marks.active(idx));
        self.marks
            .set_feedback(idx, reported.saturating_sub(own), reported, now_ms);
    }

    /// What server `idx` reported at its last poll, unless that is stale or it was never
    /// polled (`ringway_upstream_reported_load`).
    pub fn reported_load(&self, idx: usize, now_ms: u64) -> Option<u64> {
        let (_, at) = self.marks.feedback(idx);
        let fresh = self.feedback_stale_ms != 0
            && at != 0
            && now_ms.saturating_sub(at) <= self.feedback_stale_ms;
        fresh.then(|| self.marks.reported(idx))
    }

    /// A request starts on server `idx` (least_conn / max_conns count), cap or not.
    pub fn begin(&self, idx: usize) {
        self.marks.begin(idx);
    }

    /// A request starts on server `idx` unless that takes it past `max_conns`: a pick
    /// only saw room, and another worker may have taken the last slot since. `false` =
    /// not counted; pick again.
    pub fn try_begin(&self, idx: usize) -> bool {
        let max_conns = self.servers.get(idx).map_or(0, |server| server.max_conns);
        self.marks.try_begin(idx, max_conns)
    }

    /// The request started with `begin(idx)` (or adopted with `adopt`) is over. With a
    /// queue, the freed slot goes to the oldest waiter when the server can still take it.
    pub fn end(&self, idx: usize) {
        let max_conns = self.servers.get(idx).map_or(0, |server| server.max_conns);
        self.marks.end(idx, max_conns);
        if self.queued && self.queue.has_waiters() {
            self.offer(idx);
        }
    }

    #[cold]
    fn offer(&self, idx: usize) {
        let (Some(server), Some(marks)) = (self.servers.get(idx), self.marks.server(idx)) else {
            return;
        };
        let now_ms = crate::clock::now_ms();
        if server.down || !self.marks.healthy(idx, now_ms) || self.marks.busy_until(idx) > now_ms {
            return;
        }
        self.queue.freed(&FreedSlot {
            idx,
            marks,
            max_conns: server.max_conns,
        });
    }

    /// Joins the group's wait queue unless `max` requests wait already (or no doorbell can
    /// be made): `None` then, and the request is refused.
    pub fn join_queue(&self, max: usize) -> Option<Ticket> {
        match self.queue.join(max) {
            Ok(ticket) => Some(ticket),
            Err(JoinError::Full) => None,
            Err(JoinError::Io(e)) => {
                crate::warn!("wait queue: no doorbell: {e}");
                None
            }
        }
    }

    /// Takes over a granted slot: the server's index in this group, the request counted
    /// on it (end it with `end`). `None` when this group no longer has that server (a
    /// reload removed it); the slot is then passed on.
    pub fn adopt(&self, grant: Grant) -> Option<usize> {
        let same = |idx: usize| {
            self.marks
                .server(idx)
                .is_some_and(|marks| Arc::ptr_eq(marks, &grant.marks))
        };
        let idx = if same(grant.idx) {
            grant.idx
        } else {
            (0..self.servers.len()).find(|&idx| same(idx))?
        };
        grant.keep();
        Some(idx)
    }

    /// The group's wait queue (depth, rejections, `Retry-After` estimate).
    pub fn queue(&self) -> &WaitQueue {
        &self.queue
    }

    /// An attempt on `idx` failed (nginx semantics: `max_fails` within `fail_timeout`).
    ///
    /// The count restarts when `fail_timeout` has passed since the first failure it counted;
    /// reaching `max_fails` makes the server unavailable until `now_ms + fail_timeout`. After
    /// that it gets traffic again, and (as in nginx) one more failure before any success marks
    /// it again at once. `max_fails = 0` never marks.
    pub fn failed(&self, idx: usize, now_ms: u64) {
        if let Some(server) = self.servers.get(idx) {
            self.marks
                .failed(idx, now_ms, server.max_fails, millis(server.fail_timeout));
        }
    }

    /// An attempt on `idx` succeeded: its failure count starts over. (nginx forgets failures
    /// only on a success after `fail_timeout`; any success is taken as proof here.) A down
    /// period already running is not cut short.
    pub fn succeeded(&self, idx: usize) {
        self.marks.succeeded(idx);
    }

    /// Server `idx` answered 429 or 503 with `Retry-After`: new requests skip it for
    /// `for_ms` from `now_ms`. It is busy, not failed: `available` (and `server_up`) and the
    /// failure count do not change.
    pub fn mark_busy(&self, idx: usize, now_ms: u64, for_ms: u64) {
        self.marks.set_busy(idx, now_ms.saturating_add(for_ms));
    }

    /// How long `idx` stays busy from `now_ms`, in ms (0: not busy).
    pub fn busy_ms(&self, idx: usize, now_ms: u64) -> u64 {
        self.marks.busy_until(idx).saturating_sub(now_ms)
    }

    /// When every server a pick could still use (not down, failed or tried) is marked busy,
    /// the ms until the first mark ends: room comes back then, not when a request ends.
    /// `None` when some such server is merely at `max_conns`, or none is busy.
    pub fn busy_wait_ms(&self, tried: &Tried, now_ms: u64) -> Option<u64> {
        let mut first: Option<u64> = None;
        for idx in 0..self.servers.len() {
            if self.fit(idx, tried, now_ms) == Fit::Out {
                continue;
            }
            match self.busy_ms(idx, now_ms) {
                0 => return None,
                ms => first = Some(first.map_or(ms, |f| f.min(ms))),
            }
        }
        first
    }

    /// Whether `idx` is currently usable (not down, not marked failed) at `now_ms`.
    /// "Failed" covers passive marks and active probes (`set_probe_up`); this is what
    /// `ringway_upstream_server_up` reports.
    pub fn available(&self, idx: usize, now_ms: u64) -> bool {
        self.servers.get(idx).is_some_and(|server| !server.down) && self.marks.healthy(idx, now_ms)
    }

    /// Active requests on `idx`, process-wide.
    pub fn active(&self, idx: usize) -> u32 {
        self.marks.active(idx)
    }

    /// A response from `idx` began `waited` after its request was sent (its first body
    /// byte, or its head when it has no body): least_time's sample.
    pub fn observe_first_byte(&self, idx: usize, waited: Duration, now_ms: u64) {
        if self.policy.times()
            && let Some(mark) = self.marks.time(idx)
        {
            mark.observe(waited, now_ms);
        }
    }

    /// An attempt on `idx` failed (error, timeout, a 429 or 5xx answer): to least_time it
    /// counts as a slow answer, never as a fast one.
    pub fn observe_failure(&self, idx: usize, now_ms: u64) {
        if self.policy.times()
            && let Some(mark) = self.marks.time(idx)
        {
            mark.failed(now_ms);
        }
    }

    /// Active health checks: after `fall` bad probes `set_probe_up(idx, false)` takes the
    /// server out of every pick, after `rise` good ones `set_probe_up(idx, true)` brings it
    /// back. Independent of the passive marks.
    /// A server brought back is back since now (`slow_start` ramps it from here).
    pub fn set_probe_up(&self, idx: usize, up: bool) {
        self.marks.set_probe_up(idx, up, crate::clock::now_ms());
    }
}

impl LocalCursor {
    /// A fresh cursor for `peers`, seeded so that workers do not move in lockstep.
    ///
    /// Give each worker a different seed (its index will do): the round robin starts `seed`
    /// steps along (modulo the total weight, at most 256 steps) so that workers do not all
    /// send their first request to the same server, and the random state comes from it.
    pub fn new(peers: &Peers, seed: u64) -> LocalCursor {
        let mut cursor = LocalCursor {
            current: vec![0; peers.servers.len()],
            random: splitmix64(seed).max(1),
        };
        let total = peers.cumulative.last().copied().unwrap_or(0);
        if total > 0 {
            for _ in 0..seed % total.min(256) {
                round_robin::step(peers, &peers.primaries, &mut cursor.current, 0, |_| true);
            }
        }
        cursor
    }

    /// A cursor belongs to one `Peers`; one built for another group (say, before a reload)
    /// starts over instead of indexing out of bounds. Allocates only in that case.
    fn fit_to(&mut self, peers: &Peers) {
        if self.current.len() != peers.servers.len() {
            self.current.clear();
            self.current.resize(peers.servers.len(), 0);
        }
    }
}

/// splitmix64: turns any seed (0, 1, 2, ...) into a well-mixed random state.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
