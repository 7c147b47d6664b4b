//! Choosing a server: the policies, per-server process-wide marks, and per-worker cursors.
//!
//! `Peers` is immutable except for its atomics (active counts and passive-health marks, which
//! are process-wide by contract). Anything a policy mutates on every pick lives in a
//! `LocalCursor` owned by one worker, so no cache line bounces between cores per request.
//!
//! Files: `round_robin.rs` (smooth weighted, also used for backups and as every policy's
//! fallback), `least_conn.rs`, `hash.rs` (consistent ring and ip_hash), `random_two.rs`,
//! `marks.rs` (the atomics). Every policy picks among the primaries first; backups are chosen,
//! by round robin among themselves, only when no primary is usable. *Usable* means not
//! `down`, not marked by failures or probes, not tried for this request, and below
//! `max_conns`. A pick allocates nothing and takes no lock.
//!
//! Keys: `hash` hashes `PickKey::Bytes` (or the address bytes of `PickKey::Ip`) onto its ring;
//! `ip_hash` hashes `PickKey::Ip` the nginx way (or all bytes of `PickKey::Bytes`). Either
//! with `PickKey::None` falls back to round robin. Other policies ignore the key.

mod hash;
mod least_conn;
mod marks;
mod random_two;
mod round_robin;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use marks::Marks;

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
    /// Otherwise usable but at `max_conns`.
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
            Policy::Hash => hash::Ring::build(&servers, &primaries),
            _ => hash::Ring::default(),
        };
        let marks = Marks::new(servers.len());
        Peers {
            policy,
            servers,
            primaries,
            backups,
            cumulative,
            ring,
            marks,
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
            (Policy::RandomTwo, _) => random_two::pick(self, cursor, tried, now_ms, busy),
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
        } else if server.max_conns != 0 && self.marks.active(idx) >= server.max_conns {
            Fit::Capped
        } else {
            Fit::Usable
        }
    }

    /// The weight balancing uses (at least 1).
    #[inline]
    fn weight(&self, idx: usize) -> u32 {
        self.servers
            .get(idx)
            .map_or(1, |server| server.weight.max(1))
    }

    /// A request starts on server `idx` (least_conn / max_conns count).
    pub fn begin(&self, idx: usize) {
        self.marks.begin(idx);
    }

    /// The request started with `begin(idx)` is over.
    pub fn end(&self, idx: usize) {
        self.marks.end(idx);
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

    /// Whether `idx` is currently usable (not down, not marked failed) at `now_ms`.
    pub fn available(&self, idx: usize, now_ms: u64) -> bool {
        self.servers.get(idx).is_some_and(|server| !server.down) && self.marks.healthy(idx, now_ms)
    }

    /// Active requests on `idx`, process-wide.
    pub fn active(&self, idx: usize) -> u32 {
        self.marks.active(idx)
    }

    /// Active health checks: after `fall` bad probes `set_probe_up(idx, false)` takes the
    /// server out of every pick, after `rise` good ones `set_probe_up(idx, true)` brings it
    /// back. Independent of the passive marks.
    pub fn set_probe_up(&self, idx: usize, up: bool) {
        self.marks.set_probe_up(idx, up);
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
                round_robin::step(peers, &peers.primaries, &mut cursor.current, |_| true);
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
pub(super) mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU16, Ordering};

    use super::*;

    static NEXT_PORT: AtomicU16 = AtomicU16::new(10_000);

    /// A server at `127.0.0.1:port`: max_fails 1, fail_timeout 10s, nothing else set.
    pub(crate) fn server_at(port: u16, weight: u32) -> Server {
        Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
        }
    }

    /// A server with an address of its own.
    pub(crate) fn server(weight: u32) -> Server {
        server_at(NEXT_PORT.fetch_add(1, Ordering::Relaxed), weight)
    }

    pub(crate) fn group(policy: Policy, servers: Vec<Server>) -> Peers {
        Peers::new(policy, servers)
    }

    const POLICIES: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::IpHash,
        Policy::Hash,
        Policy::RandomTwo,
    ];

    fn keys() -> [PickKey<'static>; 4] {
        [
            PickKey::None,
            PickKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            PickKey::Bytes(b"/a"),
            PickKey::Bytes(b"/b/c?d=e"),
        ]
    }

    /// Picks `n` times with every key kind, returning what was chosen.
    fn picks(peers: &Peers, tried: &Tried, now_ms: u64, n: usize) -> Vec<Pick> {
        let mut cursor = LocalCursor::new(peers, 1);
        let mut out = Vec::new();
        for round in 0..n {
            let key = keys()[round % 4];
            let key = match key {
                PickKey::Ip(_) => PickKey::Ip(IpAddr::V4(Ipv4Addr::new(10, round as u8, 0, 1))),
                key => key,
            };
            out.push(peers.pick(&mut cursor, key, tried, now_ms));
        }
        out
    }

    fn chosen(picks: &[Pick]) -> Vec<usize> {
        picks
            .iter()
            .map(|pick| match pick {
                Pick::Server(idx) => *idx,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn peers_are_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Peers>();
    }

    #[test]
    fn down_server_is_never_chosen() {
        for policy in POLICIES {
            let mut servers = vec![server(5), server(1), server(1)];
            servers[0].down = true;
            let peers = group(policy, servers);
            let got = chosen(&picks(&peers, &Tried::default(), 1, 400));
            assert!(!got.contains(&0), "{policy:?}");
            assert!(got.contains(&1) && got.contains(&2), "{policy:?}");
            assert!(!peers.available(0, 1));
        }
    }

    #[test]
    fn tried_servers_are_excluded() {
        for policy in POLICIES {
            let peers = group(policy, vec![server(1), server(3), server(1)]);
            let mut tried = Tried::default();
            tried.insert(1);
            let got = chosen(&picks(&peers, &tried, 1, 400));
            assert!(!got.contains(&1), "{policy:?}");
            tried.insert(0);
            tried.insert(2);
            assert_eq!(
                peers.pick(&mut LocalCursor::new(&peers, 0), PickKey::None, &tried, 1),
                Pick::Unavailable
            );
        }
    }

    fn with_backups(policy: Policy) -> Peers {
        let mut servers = vec![server(1), server(1), server(1), server(1)];
        servers[2].backup = true;
        servers[3].backup = true;
        group(policy, servers)
    }

    #[test]
    fn backups_get_nothing_while_a_primary_is_usable() {
        for policy in POLICIES {
            let peers = with_backups(policy);
            let got = chosen(&picks(&peers, &Tried::default(), 1, 200));
            assert!(got.iter().all(|&idx| idx < 2), "{policy:?}");
            // One primary left is still preferred over the backups.
            peers.failed(0, 1);
            let got = chosen(&picks(&peers, &Tried::default(), 2, 200));
            assert!(got.iter().all(|&idx| idx == 1), "{policy:?}");
        }
    }

    #[test]
    fn backups_share_by_round_robin_when_no_primary_is_usable() {
        for policy in POLICIES {
            let peers = with_backups(policy);
            let mut tried = Tried::default();
            tried.insert(0);
            tried.insert(1);
            let got = chosen(&picks(&peers, &tried, 1, 6));
            assert_eq!(got, [2, 3, 2, 3, 2, 3], "{policy:?}");
            // Primaries failed-marked or down count as unusable too.
            peers.failed(0, 1);
            peers.failed(1, 1);
            let got = chosen(&picks(&peers, &Tried::default(), 2, 4));
            assert!(got.iter().all(|&idx| idx >= 2), "{policy:?}");
            // And they come back after fail_timeout.
            let got = chosen(&picks(&peers, &Tried::default(), 10_001, 20));
            assert!(got.iter().all(|&idx| idx < 2), "{policy:?}");
        }
    }

    #[test]
    fn every_server_at_max_conns_is_busy_and_a_free_slot_is_used() {
        for policy in POLICIES {
            let mut servers = vec![server(1), server(2)];
            servers.iter_mut().for_each(|s| s.max_conns = 1);
            let peers = group(policy, servers);
            peers.begin(0);
            peers.begin(1);
            assert!(
                picks(&peers, &Tried::default(), 1, 8)
                    .iter()
                    .all(|&p| p == Pick::Busy)
            );
            peers.end(1);
            assert!(
                picks(&peers, &Tried::default(), 1, 8)
                    .iter()
                    .all(|&p| p == Pick::Server(1))
            );
        }
    }

    #[test]
    fn capped_primaries_spill_to_backups_before_busy() {
        for policy in POLICIES {
            let mut servers = vec![server(1), server(1)];
            servers[0].max_conns = 1;
            servers[1].backup = true;
            servers[1].max_conns = 2;
            let peers = group(policy, servers);
            peers.begin(0);
            assert_eq!(
                chosen(&picks(&peers, &Tried::default(), 1, 4)),
                [1, 1, 1, 1]
            );
            peers.begin(1);
            peers.begin(1);
            assert!(
                picks(&peers, &Tried::default(), 1, 4)
                    .iter()
                    .all(|&p| p == Pick::Busy)
            );
        }
    }

    #[test]
    fn capped_and_down_is_busy_but_down_and_tried_is_unavailable() {
        let mut servers = vec![server(1), server(1), server(1)];
        servers[0].down = true;
        servers[1].max_conns = 1;
        let peers = group(Policy::RoundRobin, servers);
        peers.begin(1);
        let mut tried = Tried::default();
        tried.insert(2);
        let mut cursor = LocalCursor::new(&peers, 0);
        assert_eq!(
            peers.pick(&mut cursor, PickKey::None, &tried, 1),
            Pick::Busy
        );
        tried.insert(1);
        assert_eq!(
            peers.pick(&mut cursor, PickKey::None, &tried, 1),
            Pick::Unavailable
        );
        assert_eq!(
            group(Policy::Hash, Vec::new()).pick(&mut cursor, PickKey::None, &tried, 1),
            Pick::Unavailable
        );
    }

    fn flaky(max_fails: u32) -> Peers {
        let mut servers = vec![server(1), server(1)];
        servers[0].max_fails = max_fails;
        servers[0].fail_timeout = Duration::from_secs(10);
        group(Policy::RoundRobin, servers)
    }

    #[test]
    fn max_fails_within_fail_timeout_marks_the_server_for_fail_timeout() {
        let peers = flaky(3);
        peers.failed(0, 1_000);
        peers.failed(0, 4_000);
        assert!(peers.available(0, 4_001));
        peers.failed(0, 10_999);
        assert!(!peers.available(0, 11_000));
        assert!(
            chosen(&picks(&peers, &Tried::default(), 15_000, 10))
                .iter()
                .all(|&i| i == 1)
        );
        assert!(!peers.available(0, 20_998));
        assert!(peers.available(0, 20_999));
        assert!(chosen(&picks(&peers, &Tried::default(), 21_000, 10)).contains(&0));
    }

    #[test]
    fn failures_further_apart_than_fail_timeout_do_not_add_up() {
        let peers = flaky(3);
        peers.failed(0, 1_000);
        peers.failed(0, 6_000);
        // The window that began at 1_000 is over: this one starts a new count.
        peers.failed(0, 11_000);
        peers.failed(0, 12_000);
        assert!(peers.available(0, 12_001));
        peers.failed(0, 13_000);
        assert!(!peers.available(0, 13_001));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let peers = flaky(2);
        peers.failed(0, 1_000);
        peers.succeeded(0);
        peers.failed(0, 2_000);
        assert!(peers.available(0, 2_001));
        peers.failed(0, 3_000);
        assert!(!peers.available(0, 3_001));
    }

    #[test]
    fn max_fails_zero_never_marks() {
        let peers = flaky(0);
        for now in 0..1_000 {
            peers.failed(0, now);
        }
        assert!(peers.available(0, 1_000));
        assert!(chosen(&picks(&peers, &Tried::default(), 1_000, 10)).contains(&0));
    }

    #[test]
    fn probe_marks_take_a_server_out_and_back() {
        let peers = flaky(1);
        peers.set_probe_up(0, false);
        assert!(!peers.available(0, 1));
        assert!(
            chosen(&picks(&peers, &Tried::default(), 1, 10))
                .iter()
                .all(|&i| i == 1)
        );
        peers.set_probe_up(0, true);
        assert!(peers.available(0, 1));
    }

    #[test]
    fn concurrent_begin_and_end_keep_counts_exact() {
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        const THREADS: usize = 4;
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for k in 0..30_000 {
                        peers.begin(k % 3);
                        if k % 2 == 1 {
                            peers.end((k - 1) % 3);
                        }
                    }
                });
            }
        });
        // Each thread left one open request per even k: 15_000 in all, 5_000 per server.
        let expected = (THREADS * 5_000) as u32;
        assert_eq!(
            [peers.active(0), peers.active(1), peers.active(2)],
            [expected; 3]
        );
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| (0..15_000).for_each(|k| peers.end(k % 3)));
            }
        });
        assert_eq!([peers.active(0), peers.active(1), peers.active(2)], [0; 3]);
    }

    #[test]
    fn out_of_range_indexes_and_foreign_cursors_do_not_panic() {
        let small = group(Policy::LeastConn, vec![server(1)]);
        let big = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&small, 0);
        assert!(matches!(
            big.pick(&mut cursor, PickKey::None, &Tried::default(), 1),
            Pick::Server(_)
        ));
        big.begin(99);
        big.end(99);
        big.failed(99, 1);
        big.succeeded(99);
        assert!(!big.available(99, 1));
        assert_eq!(big.active(99), 0);
        let mut tried = Tried::default();
        tried.insert(MAX_SERVERS + 5);
        assert!(!tried.contains(MAX_SERVERS + 5));
        let many = group(
            Policy::RoundRobin,
            (0..MAX_SERVERS + 3).map(|_| server(1)).collect(),
        );
        assert_eq!(many.servers().len(), MAX_SERVERS);
    }

    /// The reference: how a server stands, from the public API only.
    fn standing(peers: &Peers, idx: usize, tried: &Tried, now_ms: u64) -> Fit {
        let server = &peers.servers()[idx];
        if !peers.available(idx, now_ms) || tried.contains(idx) {
            Fit::Out
        } else if server.max_conns != 0 && peers.active(idx) >= server.max_conns {
            Fit::Capped
        } else {
            Fit::Usable
        }
    }

    fn check_pick(peers: &Peers, pick: Pick, tried: &Tried, now_ms: u64) {
        let fits: Vec<Fit> = (0..peers.servers().len())
            .map(|idx| standing(peers, idx, tried, now_ms))
            .collect();
        let primary_usable =
            (0..fits.len()).any(|idx| fits[idx] == Fit::Usable && !peers.servers()[idx].backup);
        match pick {
            Pick::Server(idx) => {
                assert_eq!(fits[idx], Fit::Usable, "{idx} {fits:?}");
                assert!(
                    !primary_usable || !peers.servers()[idx].backup,
                    "{idx} {fits:?}"
                );
            }
            Pick::Busy => {
                assert!(
                    !fits.contains(&Fit::Usable) && fits.contains(&Fit::Capped),
                    "{fits:?}"
                );
            }
            Pick::Unavailable => assert!(fits.iter().all(|&f| f == Fit::Out), "{fits:?}"),
        }
    }

    fn random_group(rng: &mut u64) -> Peers {
        let mut roll = |n: u64| random_two::next_random(rng) % n;
        let policy = POLICIES[roll(5) as usize];
        let servers = (0..1 + roll(12))
            .map(|_| {
                let mut s = server(1 + roll(5) as u32);
                s.down = roll(7) == 0;
                s.backup = roll(5) == 0;
                s.max_conns = [0, 0, 1, 2, 3][roll(5) as usize];
                s.max_fails = roll(3) as u32;
                s.fail_timeout = Duration::from_millis(100);
                s
            })
            .collect();
        group(policy, servers)
    }

    #[test]
    fn seeded_random_operations_never_yield_an_unusable_server() {
        // [servers, backups, busy, unavailable]: every outcome must have been exercised.
        let mut outcomes = [0usize; 4];
        for seed in 1..=300u64 {
            let mut rng = splitmix64(seed);
            let peers = random_group(&mut rng);
            let n = peers.servers().len() as u64;
            let mut cursor = LocalCursor::new(&peers, seed);
            let mut now = 1u64;
            for _ in 0..200 {
                let mut roll = |m: u64| random_two::next_random(&mut rng) % m;
                let idx = roll(n) as usize;
                match roll(6) {
                    0 => peers.begin(idx),
                    1 => peers.end(idx),
                    2 => peers.failed(idx, now),
                    3 => peers.succeeded(idx),
                    _ => now += roll(60),
                }
                let mut tried = Tried::default();
                (0..n as usize)
                    .filter(|_| roll(4) == 0)
                    .for_each(|i| tried.insert(i));
                let key_bytes = roll(1000).to_le_bytes();
                let key = match roll(3) {
                    0 => PickKey::None,
                    1 => PickKey::Ip(IpAddr::V4(Ipv4Addr::from(roll(u64::from(u32::MAX)) as u32))),
                    _ => PickKey::Bytes(&key_bytes),
                };
                let pick = peers.pick(&mut cursor, key, &tried, now);
                check_pick(&peers, pick, &tried, now);
                outcomes[match pick {
                    Pick::Server(idx) if peers.servers()[idx].backup => 1,
                    Pick::Server(_) => 0,
                    Pick::Busy => 2,
                    Pick::Unavailable => 3,
                }] += 1;
            }
        }
        assert!(outcomes.iter().all(|&n| n > 500), "{outcomes:?}");
    }
}
