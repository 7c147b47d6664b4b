//! Choosing a server: the policies, per-server process-wide marks, and per-worker cursors.
//!
//! `Peers` is immutable except for its atomics (active counts and passive-health marks, which
//! are process-wide by contract). Anything a policy mutates on every pick lives in a
//! `LocalCursor` owned by one worker, so no cache line bounces between cores per request.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
    pub fn insert(&mut self, idx: usize) {
        self.bits[idx / 64] |= 1 << (idx % 64);
    }
    pub fn contains(&self, idx: usize) -> bool {
        self.bits[idx / 64] & (1 << (idx % 64)) != 0
    }
}

/// The servers of one group, their policy and their process-wide marks.
pub struct Peers {
    policy: Policy,
    servers: Vec<Server>,
}

/// Per-worker balancing state for one group (smooth weights, tie cursor, random seed).
pub struct LocalCursor {
    _todo: (),
}

impl Peers {
    /// Builds the peers (and the hash ring for `Policy::Hash`). Servers are already validated.
    pub fn new(policy: Policy, servers: Vec<Server>) -> Peers {
        Peers { policy, servers }
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
        _cursor: &mut LocalCursor,
        _key: PickKey<'_>,
        _tried: &Tried,
        _now_ms: u64,
    ) -> Pick {
        todo!()
    }

    /// A request starts on server `idx` (least_conn / max_conns count).
    pub fn begin(&self, _idx: usize) {
        todo!()
    }

    /// The request started with `begin(idx)` is over.
    pub fn end(&self, _idx: usize) {
        todo!()
    }

    /// An attempt on `idx` failed (nginx semantics: `max_fails` within `fail_timeout`).
    pub fn failed(&self, _idx: usize, _now_ms: u64) {
        todo!()
    }

    /// An attempt on `idx` succeeded: its failure count starts over.
    pub fn succeeded(&self, _idx: usize) {
        todo!()
    }

    /// Whether `idx` is currently usable (not down, not marked failed) at `now_ms`.
    pub fn available(&self, _idx: usize, _now_ms: u64) -> bool {
        todo!()
    }

    /// Active requests on `idx`, process-wide.
    pub fn active(&self, _idx: usize) -> u32 {
        todo!()
    }
}

impl LocalCursor {
    /// A fresh cursor for `peers`, seeded so that workers do not move in lockstep.
    pub fn new(_peers: &Peers, _seed: u64) -> LocalCursor {
        todo!()
    }
}
