//! Keyed policies: `hash` (a consistent, ketama-style ring) and `ip_hash` (nginx's).
//!
//! `hash`: every primary server owns about 160 points per unit of weight on a ring of 64-bit
//! hashes (at most [`MAX_POINTS`] in all, shared out by weight when the weights ask for more).
//! A point's hash comes from the server's address, not its position in the list, so adding
//! or removing a server moves only the keys that land on its points: about 1/N of them. A key
//! goes to the owner of the first point at or after its hash (binary search); when that server
//! is down, failed, tried or at `max_conns`, the walk goes on clockwise to the next distinct
//! server, so each key still has a stable order of servers to fall back to. Down servers
//! keep their points, so marking one down moves only its own keys.
//!
//! `ip_hash`: nginx's hash over the first three octets of an IPv4 address (clients of one /24
//! stay together) or all sixteen of an IPv6 one, mapped onto the primaries by weight. The same
//! arithmetic as nginx, so a configuration moved from nginx keeps its client-to-server
//! mapping. An IPv4-mapped IPv6 address (a dual-stack listener) counts as its IPv4 address. An
//! unusable choice is rehashed, up to 20 times, then round robin decides (as nginx does), or
//! with a `hash_balance_factor`, a walk through the primaries that keeps within the bound.

use std::net::{IpAddr, SocketAddr};

use super::{Fit, Peers, Server, Tried, round_robin};

/// Points per unit of weight (ketama's 160, like nginx's `hash ... consistent`).
pub(super) const POINTS_PER_WEIGHT: u64 = 160;
/// At most this many points in a ring (about 2 MB); heavier groups share them by weight.
pub(super) const MAX_POINTS: u64 = 160 * 1024;
/// nginx rehashes an unusable ip_hash choice this many times before falling back.
const IP_HASH_TRIES: usize = 20;

/// A fast 64-bit hash: eight bytes at a time through a multiply-rotate round, then the
/// murmur3 finalizer so that every input bit moves every output bit. Not for adversarial
/// keys (nothing here needs it: a key only chooses among servers the operator listed).
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0xCBF2_9CE4_8422_2325 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    fmix64(h)
}

/// murmur3's 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// The bytes of an address, for hashing it as a key (4 for IPv4, 16 for IPv6).
pub(super) fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut bytes = [0u8; 16];
    match canonical(ip) {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (bytes, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

/// nginx's ip_hash key: the first three octets of IPv4, all of IPv6.
pub(super) fn ip_hash_key(ip: IpAddr) -> ([u8; 16], usize) {
    let (bytes, len) = ip_bytes(ip);
    (bytes, if len == 4 { 3 } else { len })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The consistent hash ring of one group: sorted point hashes and, alongside, their owners.
/// Two arrays rather than pairs so that the search walks dense `u64`s. A binary search over
/// tens of thousands of points mispredicts at every level, so `starts` buckets the points by
/// the top bits of their hash (about four points a bucket): a lookup reads one bucket.
#[derive(Default)]
pub(super) struct Ring {
    points: Box<[u64]>,
    owners: Box<[u32]>,
    /// `starts[b]`: the index of the first point whose top bits are `b` or more; one more
    /// entry than there are buckets, the last being `points.len()`.
    starts: Box<[u32]>,
    /// `64 - bucket bits`: `hash >> shift` is a hash's bucket (bits are 1 or more).
    shift: u32,
}

impl Ring {
    /// Places the points of `primaries` (indexes into `servers`).
    pub(super) fn build(servers: &[Server], primaries: &[u32]) -> Ring {
        let weight = |idx: u32| {
            servers
                .get(idx as usize)
                .map_or(1, |s| u64::from(s.weight.max(1)))
        };
        let total: u64 = primaries.iter().map(|&idx| weight(idx)).sum();
        let mut ring: Vec<(u64, u32)> = Vec::new();
        for (nth, &idx) in primaries.iter().enumerate() {
            let Some(server) = servers.get(idx as usize) else {
                continue;
            };
            let points = if total.saturating_mul(POINTS_PER_WEIGHT) <= MAX_POINTS {
                weight(idx) * POINTS_PER_WEIGHT
            } else {
                (weight(idx) * MAX_POINTS / total).max(1)
            };
            // The same address listed twice still gets two sets of points.
            let twin = primaries[..nth]
                .iter()
                .filter(|&&other| servers.get(other as usize).map(|s| s.addr) == Some(server.addr))
                .count() as u32;
            for point in 0..points as u32 {
                ring.push((point_hash(server.addr, twin, point), idx));
            }
        }
        ring.sort_unstable();
        let points: Box<[u64]> = ring.iter().map(|&(hash, _)| hash).collect();
        let bits = (points.len() / 4)
            .max(2)
            .next_power_of_two()
            .trailing_zeros();
        let shift = 64 - bits;
        let starts = (0..=1u64 << bits)
            .map(|bucket| points.partition_point(|&point| point >> shift < bucket) as u32)
            .collect();
        Ring {
            points,
            owners: ring.iter().map(|&(_, idx)| idx).collect(),
            starts,
            shift,
        }
    }

    /// The index of the first point at or after `hash`, wrapping to 0 past the last one.
    /// Call only on a non-empty ring.
    #[inline]
    fn position(&self, hash: u64) -> usize {
        let bucket = (hash >> self.shift) as usize;
        let (Some(&lo), Some(&hi)) = (self.starts.get(bucket), self.starts.get(bucket + 1)) else {
            return 0;
        };
        let (lo, hi) = (lo as usize, hi as usize);
        let within = self.points.get(lo..hi).unwrap_or_default();
        let pos = lo + within.iter().take_while(|&&point| point < hash).count();
        if pos >= self.points.len() { 0 } else { pos }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.points.len()
    }
}

/// The hash of one point: the server's address, which of its twins it is, and the point's
/// number — never its position in the list, which changes when servers are added.
fn point_hash(addr: SocketAddr, twin: u32, point: u32) -> u64 {
    let mut buf = [0u8; 26];
    let (ip, len) = ip_bytes(addr.ip());
    buf[..len].copy_from_slice(&ip[..len]);
    buf[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    buf[len + 2..len + 6].copy_from_slice(&twin.to_le_bytes());
    buf[len + 6..len + 10].copy_from_slice(&point.to_le_bytes());
    hash64(&buf[..len + 10])
}

/// `hash_balance_factor` (consistent hashing with bounded loads, Mirrokni et al.): a server
/// takes a new request only while its load is below `factor`% of its weighted share of
/// (all load + 1), rounded up. Measured once per pick, over the primaries that can take a
/// request now: not down or failed, and not marked busy by their own `Retry-After` (a busy
/// server takes nothing until its mark ends, so counting its weight would shrink every
/// other server's share and spill keys off servers that have room).
pub(super) struct Bound {
    /// `factor` × (the load of every available primary + 1).
    scaled_total: u64,
    /// 100 × the weights of the available primaries.
    scaled_weights: u64,
}

impl Bound {
    /// `None` when the group has no `hash_balance_factor`.
    pub(super) fn measure(peers: &Peers, now_ms: u64) -> Option<Bound> {
        if peers.balance_factor == 0 {
            return None;
        }
        let (mut load, mut weights) = (0u64, 0u64);
        for &idx in peers.primaries.iter() {
            if peers.available(idx as usize, now_ms) && peers.busy_ms(idx as usize, now_ms) == 0 {
                load += u64::from(peers.load(idx as usize, now_ms));
                weights += peers.weight(idx as usize, now_ms);
            }
        }
        Some(Bound {
            scaled_total: u64::from(peers.balance_factor) * (load + 1),
            scaled_weights: 100 * weights.max(1),
        })
    }

    /// Server `idx` is below its bound.
    pub(super) fn has_room(&self, peers: &Peers, idx: usize, now_ms: u64) -> bool {
        let weight = u128::from(peers.weight(idx, now_ms));
        let cap =
            (u128::from(self.scaled_total) * weight).div_ceil(u128::from(self.scaled_weights));
        u128::from(peers.load(idx, now_ms)) < cap
    }
}

/// The first usable server clockwise from `key_hash` (with a `hash_balance_factor`, the
/// first one below its bound); `None` (after seeing every primary) when there is none.
pub(super) fn ring_pick(
    peers: &Peers,
    key_hash: u64,
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
) -> Option<usize> {
    let ring = &peers.ring;
    let len = ring.points.len();
    if len == 0 {
        return None;
    }
    let bound = Bound::measure(peers, now_ms);
    let room = |idx: usize| {
        bound
            .as_ref()
            .is_none_or(|b| b.has_room(peers, idx, now_ms))
    };
    let start = ring.position(key_hash);
    // The common case: the key's own server is usable; skip setting up the walk.
    if let Some(&idx) = ring.owners.get(start)
        && peers.fit(idx as usize, tried, now_ms) == Fit::Usable
        && room(idx as usize)
    {
        return Some(idx as usize);
    }
    let mut seen = Tried::default();
    let mut distinct = 0;
    // The first usable server over its bound: taken when every one is (loads moved since
    // the bound was measured).
    let mut over = None;
    for step in 0..len {
        let pos = if start + step >= len {
            start + step - len
        } else {
            start + step
        };
        let idx = ring.owners[pos] as usize;
        if seen.contains(idx) {
            continue;
        }
        match peers.fit(idx, tried, now_ms) {
            Fit::Usable if room(idx) => return Some(idx),
            Fit::Usable => {
                over.get_or_insert(idx);
            }
            Fit::Capped => *busy = true,
            Fit::Out => {}
        }
        seen.insert(idx);
        distinct += 1;
        if distinct == peers.primaries.len() {
            break;
        }
    }
    over
}

/// nginx's ip_hash over `key` (see [`ip_hash_key`]), weighted over the primaries: the
/// choice is rehashed while it cannot be used, up to [`IP_HASH_TRIES`] times. Then, without
/// a `hash_balance_factor`, round robin decides, as in nginx; with one, the walk goes on
/// through the primaries in list order from the key's first choice, so the key still has
/// one stable order of servers and no server is taken past its bound while another has
/// room (round robin would ignore the bound).
pub(super) fn ip_hash_pick(
    peers: &Peers,
    current: &mut [i64],
    key: &[u8],
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
) -> Option<usize> {
    let total = peers.cumulative.last().copied().unwrap_or(0);
    let bound = Bound::measure(peers, now_ms);
    let room = |idx: usize| {
        bound
            .as_ref()
            .is_none_or(|b| b.has_room(peers, idx, now_ms))
    };
    let mut first = None;
    if total > 0 {
        let mut hash: u32 = 89;
        for _ in 0..IP_HASH_TRIES {
            for &byte in key {
                hash = (hash * 113 + u32::from(byte)) % 6271;
            }
            let w = u64::from(hash) % total;
            let nth = peers.cumulative.partition_point(|&upto| upto <= w);
            let Some(&idx) = peers.primaries.get(nth) else {
                break;
            };
            first.get_or_insert(nth);
            match peers.fit(idx as usize, tried, now_ms) {
                Fit::Usable if room(idx as usize) => return Some(idx as usize),
                // Over its bound: rehash, as for a server that cannot be used.
                Fit::Usable | Fit::Out => {}
                Fit::Capped => *busy = true,
            }
        }
    }
    match (&bound, first) {
        (Some(_), Some(first)) => bounded_walk(peers, first, tried, now_ms, busy, room),
        _ => round_robin::pick(peers, &peers.primaries, current, tried, now_ms, busy),
    }
}

/// The primaries from the `first`-th on, wrapping: the first usable one with room, else
/// the first usable one over its bound (every one is: loads moved since it was measured).
fn bounded_walk(
    peers: &Peers,
    first: usize,
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
    room: impl Fn(usize) -> bool,
) -> Option<usize> {
    let count = peers.primaries.len();
    let mut over = None;
    for step in 0..count {
        let Some(&idx) = peers.primaries.get((first + step) % count) else {
            break;
        };
        match peers.fit(idx as usize, tried, now_ms) {
            Fit::Usable if room(idx as usize) => return Some(idx as usize),
            Fit::Usable => {
                over.get_or_insert(idx as usize);
            }
            Fit::Capped => *busy = true,
            Fit::Out => {}
        }
    }
    over
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::super::tests::{group, server, server_at};
    use super::super::{LocalCursor, Peers, Pick, PickKey, Policy, Server, Tried};
    use super::*;

    fn pick(peers: &Peers, cursor: &mut LocalCursor, key: PickKey<'_>) -> usize {
        match peers.pick(cursor, key, &Tried::default(), 1) {
            Pick::Server(idx) => idx,
            other => panic!("{other:?}"),
        }
    }

    fn servers(ports: &[u16]) -> Vec<Server> {
        ports.iter().map(|&port| server_at(port, 1)).collect()
    }

    /// The port of the server each of `keys` goes to.
    fn owners(peers: &Peers, keys: &[String]) -> Vec<u16> {
        let mut cursor = LocalCursor::new(peers, 0);
        keys.iter()
            .map(|key| {
                peers.servers()[pick(peers, &mut cursor, PickKey::Bytes(key.as_bytes()))]
                    .addr
                    .port()
            })
            .collect()
    }

    fn keys() -> Vec<String> {
        (0..10_000)
            .map(|i| format!("/v1/chat/completions?session={i}"))
            .collect()
    }

    #[test]
    fn hash64_spreads_similar_keys_over_all_bits() {
        let a = hash64(b"/item/1");
        let b = hash64(b"/item/2");
        assert!((a ^ b).count_ones() > 16);
        assert_ne!(hash64(b""), hash64(b"\0"));
        assert_ne!(hash64(b"12345678"), hash64(b"12345678\0"));
    }

    #[test]
    fn ring_has_160_points_per_weight_and_a_bound() {
        let peers = group(Policy::Hash, vec![server_at(1, 1), server_at(2, 3)]);
        assert_eq!(peers.ring.len(), 4 * 160);
        let heavy: Vec<Server> = (0..8).map(|port| server_at(port, 1000)).collect();
        let peers = group(Policy::Hash, heavy);
        assert!(peers.ring.len() as u64 <= MAX_POINTS);
        assert!(peers.ring.len() as u64 >= MAX_POINTS - 8);
    }

    #[test]
    fn bucketed_lookup_agrees_with_binary_search() {
        for count in [1, 3, 64] {
            let peers = group(
                Policy::Hash,
                (0..count).map(|p| server_at(p, 1 + p as u32 % 3)).collect(),
            );
            let ring = &peers.ring;
            let mut state = 0x1234_5678_9ABC_DEF0u64;
            let probes = (0..20_000).map(|_| super::super::random_two::next_random(&mut state));
            let edges = ring
                .points
                .iter()
                .flat_map(|&p| [p.wrapping_sub(1), p, p.wrapping_add(1)]);
            for hash in probes.chain(edges).chain([0, u64::MAX]) {
                let want = ring.points.partition_point(|&point| point < hash) % ring.len();
                assert_eq!(ring.position(hash), want, "{count} servers, hash {hash:#x}");
            }
        }
    }

    #[test]
    fn hash_is_stable_for_the_same_key() {
        let peers = group(Policy::Hash, servers(&[1, 2, 3, 4, 5]));
        let keys = keys();
        assert_eq!(owners(&peers, &keys), owners(&peers, &keys));
        // Another worker's cursor, another seed: same answers.
        let mut cursor = LocalCursor::new(&peers, 99);
        let again: Vec<u16> = keys
            .iter()
            .map(|k| {
                peers.servers()[pick(&peers, &mut cursor, PickKey::Bytes(k.as_bytes()))]
                    .addr
                    .port()
            })
            .collect();
        assert_eq!(again, owners(&peers, &keys));
    }

    #[test]
    fn hash_spreads_keys_evenly_and_by_weight() {
        let peers = group(Policy::Hash, servers(&[1, 2, 3, 4, 5]));
        let got = owners(&peers, &keys());
        for port in 1..=5 {
            let share = got.iter().filter(|&&p| p == port).count();
            assert!((1600..=2400).contains(&share), "port {port}: {share}");
        }
        let peers = group(Policy::Hash, vec![server_at(1, 3), server_at(2, 1)]);
        let got = owners(&peers, &keys());
        let heavy = got.iter().filter(|&&p| p == 1).count();
        assert!((7000..=8000).contains(&heavy), "{heavy}");
    }

    #[test]
    fn adding_a_sixth_server_moves_about_a_sixth_of_keys_and_only_to_it() {
        let keys = keys();
        let before = owners(&group(Policy::Hash, servers(&[1, 2, 3, 4, 5])), &keys);
        let after = owners(&group(Policy::Hash, servers(&[1, 2, 3, 4, 5, 6])), &keys);
        let moved: Vec<usize> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
        let fraction = moved.len() as f64 / keys.len() as f64;
        assert!((fraction - 1.0 / 6.0).abs() < 0.04, "{fraction}");
        assert!(moved.iter().all(|&i| after[i] == 6));
    }

    #[test]
    fn removing_one_of_five_moves_only_its_keys() {
        let keys = keys();
        let before = owners(&group(Policy::Hash, servers(&[1, 2, 3, 4, 5])), &keys);
        let after = owners(&group(Policy::Hash, servers(&[1, 2, 4, 5])), &keys);
        let moved: Vec<usize> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
        let fraction = moved.len() as f64 / keys.len() as f64;
        assert!((fraction - 1.0 / 5.0).abs() < 0.04, "{fraction}");
        assert!(moved.iter().all(|&i| before[i] == 3));
    }

    #[test]
    fn unusable_server_sends_its_keys_clockwise_and_others_stay() {
        let keys = keys();
        let peers = group(Policy::Hash, servers(&[1, 2, 3, 4, 5]));
        let before = owners(&peers, &keys);
        let mut tried = Tried::default();
        tried.insert(2); // port 3
        let mut cursor = LocalCursor::new(&peers, 0);
        for (key, &was) in keys.iter().zip(&before) {
            let Pick::Server(idx) =
                peers.pick(&mut cursor, PickKey::Bytes(key.as_bytes()), &tried, 1)
            else {
                panic!("no server");
            };
            let port = peers.servers()[idx].addr.port();
            assert_ne!(port, 3);
            if was != 3 {
                assert_eq!(port, was);
            }
        }
    }

    #[test]
    fn hash_group_without_a_key_uses_round_robin_and_ip_keys_are_hashed() {
        let peers = group(Policy::Hash, servers(&[1, 2, 3]));
        let mut cursor = LocalCursor::new(&peers, 0);
        let rr: Vec<usize> = (0..3)
            .map(|_| pick(&peers, &mut cursor, PickKey::None))
            .collect();
        assert_eq!(rr, [0, 1, 2]);
        let ip = PickKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let first = pick(&peers, &mut cursor, ip);
        assert!((0..5).all(|_| pick(&peers, &mut cursor, ip) == first));
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> PickKey<'static> {
        PickKey::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[test]
    fn ip_hash_keeps_a_slash_24_on_one_server() {
        let peers = group(Policy::IpHash, servers(&[1, 2, 3, 4]));
        let mut cursor = LocalCursor::new(&peers, 0);
        let first = pick(&peers, &mut cursor, v4(192, 168, 7, 1));
        for last in 0..=255 {
            assert_eq!(pick(&peers, &mut cursor, v4(192, 168, 7, last)), first);
        }
        let mapped = Ipv4Addr::new(192, 168, 7, 9).to_ipv6_mapped();
        assert_eq!(
            pick(&peers, &mut cursor, PickKey::Ip(IpAddr::V6(mapped))),
            first
        );
    }

    #[test]
    fn ip_hash_matches_nginx_arithmetic() {
        // nginx: hash = 89; for 3 octets hash = (hash * 113 + octet) % 6271; w = hash % total.
        let mut hash = 89u32;
        for octet in [10u32, 0, 0] {
            hash = (hash * 113 + octet) % 6271;
        }
        let peers = group(Policy::IpHash, vec![server(2), server(1), server(3)]);
        let expected = match hash % 6 {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        let mut cursor = LocalCursor::new(&peers, 0);
        assert_eq!(pick(&peers, &mut cursor, v4(10, 0, 0, 77)), expected);
    }

    #[test]
    fn ip_hash_spreads_many_networks_by_weight() {
        let peers = group(Policy::IpHash, vec![server(1), server(1), server(2)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        let mut counts = [0usize; 3];
        for b in 0..40u8 {
            for c in 0..=255u8 {
                counts[pick(&peers, &mut cursor, v4(10, b, c, 1))] += 1;
            }
        }
        let total: usize = counts.iter().sum();
        for (idx, want) in [(0, 0.25), (1, 0.25), (2, 0.5)] {
            let share = counts[idx] as f64 / total as f64;
            assert!((share - want).abs() < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn ip_hash_hashes_whole_ipv6_addresses() {
        let peers = group(Policy::IpHash, servers(&[1, 2, 3, 4, 5]));
        let mut cursor = LocalCursor::new(&peers, 0);
        let chosen: HashSet<usize> = (0..64u16)
            .map(|last| {
                let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last);
                pick(&peers, &mut cursor, PickKey::Ip(IpAddr::V6(ip)))
            })
            .collect();
        assert!(chosen.len() >= 4, "{chosen:?}");
    }

    #[test]
    fn ip_hash_rehashes_away_from_an_unusable_server_and_stays_stable() {
        let peers = group(Policy::IpHash, servers(&[1, 2, 3]));
        let mut cursor = LocalCursor::new(&peers, 0);
        let key = v4(172, 16, 5, 5);
        let usual = pick(&peers, &mut cursor, key);
        let mut tried = Tried::default();
        tried.insert(usual);
        let Pick::Server(other) = peers.pick(&mut cursor, key, &tried, 1) else {
            panic!("no server");
        };
        assert_ne!(other, usual);
        assert_eq!(peers.pick(&mut cursor, key, &tried, 1), Pick::Server(other));
    }

    /// Where `n` requests of one key land when each stays in flight (counted) after its pick.
    fn flood(policy: Policy, factor: u32, key: PickKey<'_>, n: usize) -> Vec<u32> {
        let peers = group(policy, servers(&[1, 2, 3, 4])).with_balance_factor(factor);
        let mut cursor = LocalCursor::new(&peers, 0);
        for _ in 0..n {
            let idx = pick(&peers, &mut cursor, key);
            peers.begin(idx);
        }
        (0..4).map(|idx| peers.active(idx)).collect()
    }

    #[test]
    fn a_bounded_key_spills_to_the_next_servers_only_past_its_share() {
        for policy in [Policy::Hash, Policy::Prompt] {
            let key = PickKey::Bytes(b"one conversation");
            let unbounded = flood(policy, 0, key, 20);
            assert_eq!(
                unbounded.iter().filter(|&&n| n > 0).count(),
                1,
                "{unbounded:?}"
            );
            // 125%: the k-th request finds a server full at ceil(1.25 x (k + 1) / 4).
            let bounded = flood(policy, 125, key, 20);
            assert_eq!(bounded.iter().sum::<u32>(), 20);
            assert!(bounded.iter().all(|&n| n <= 7), "{bounded:?}");
            // The key's own server is the fullest: it takes every request it has room for.
            let home = unbounded.iter().position(|&n| n > 0).unwrap();
            assert_eq!(bounded[home], *bounded.iter().max().unwrap(), "{bounded:?}");
        }
        let ip = PickKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(
            flood(Policy::IpHash, 0, ip, 20)
                .iter()
                .filter(|&&n| n > 0)
                .count(),
            1
        );
        let bounded = flood(Policy::IpHash, 125, ip, 20);
        assert!(bounded.iter().all(|&n| n <= 7), "{bounded:?}");
    }

    #[test]
    fn bounded_ip_hash_walks_on_to_the_server_with_room_after_its_rehashes() {
        // 64 servers: nginx's 20 rehashes of one key reach at most 20 of them.
        let peers = group(Policy::IpHash, (1..=64).map(|p| server_at(p, 1)).collect())
            .with_balance_factor(100);
        let key = [10u8, 1, 2];
        let mut reached = HashSet::new();
        let mut hash: u32 = 89;
        for _ in 0..IP_HASH_TRIES {
            for &byte in &key {
                hash = (hash * 113 + u32::from(byte)) % 6271;
            }
            reached.insert(hash as usize % 64);
        }
        let free = (0..64).find(|idx| !reached.contains(idx)).unwrap();
        // Every other server is at its bound: ceil(1.0 x (126 + 1) / 64) = 2.
        for idx in (0..64).filter(|&idx| idx != free) {
            peers.begin(idx);
            peers.begin(idx);
        }
        let ip = v4(10, 1, 2, 200);
        for seed in [0, 7, 33] {
            let mut cursor = LocalCursor::new(&peers, seed);
            assert_eq!(pick(&peers, &mut cursor, ip), free, "seed {seed}");
        }
        // Once every server is full, the key still gets one answer whatever the cursor:
        // the first server of its walk.
        peers.begin(free);
        peers.begin(free);
        let mut answers = HashSet::new();
        for seed in [0, 7, 33] {
            let mut cursor = LocalCursor::new(&peers, seed);
            answers.insert(pick(&peers, &mut cursor, ip));
        }
        assert_eq!(answers.len(), 1, "{answers:?}");
        // Without a bound, nginx's round robin fallback is kept.
        let plain = group(Policy::IpHash, (1..=64).map(|p| server_at(p, 1)).collect());
        let mut all_tried = Tried::default();
        for idx in reached.iter().copied() {
            all_tried.insert(idx);
        }
        let mut cursor = LocalCursor::new(&plain, 0);
        let Pick::Server(idx) = plain.pick(&mut cursor, ip, &all_tried, 1) else {
            panic!("no server");
        };
        assert!(!reached.contains(&idx));
    }

    #[test]
    fn busy_servers_are_out_of_the_bound_as_if_they_were_not_listed() {
        // Ports 2 and 4 busy: a flood spreads over 1 and 3 exactly as in a group of those two.
        for policy in [Policy::Hash, Policy::Prompt] {
            let key = PickKey::Bytes(b"one conversation");
            let peers = group(policy, servers(&[1, 2, 3, 4])).with_balance_factor(150);
            peers.mark_busy(1, 1, 60_000);
            peers.mark_busy(3, 1, 60_000);
            let pair = group(policy, servers(&[1, 3])).with_balance_factor(150);
            let (mut c4, mut c2) = (LocalCursor::new(&peers, 0), LocalCursor::new(&pair, 0));
            for _ in 0..12 {
                let got = pick(&peers, &mut c4, key);
                let want = pick(&pair, &mut c2, key);
                assert_eq!(peers.servers()[got].addr, pair.servers()[want].addr);
                peers.begin(got);
                pair.begin(want);
            }
            // Both took a share: ceil(1.5 x 12 / 2) = 9 at most on the key's own server.
            let loads = [peers.active(0), peers.active(2)];
            assert!(loads.iter().all(|&n| (3..=9).contains(&n)), "{loads:?}");
        }
    }

    #[test]
    fn a_lone_request_is_never_turned_away_by_the_bound() {
        // ceil(1.0 x (0 + 1) / 4) = 1: an idle group takes the key at home.
        let peers = group(Policy::Prompt, servers(&[1, 2, 3, 4])).with_balance_factor(100);
        let plain = group(Policy::Prompt, servers(&[1, 2, 3, 4]));
        let mut cursor = LocalCursor::new(&peers, 0);
        for key in keys().iter().take(500) {
            let key = PickKey::Bytes(key.as_bytes());
            assert_eq!(
                pick(&peers, &mut cursor, key),
                pick(&plain, &mut cursor, key)
            );
        }
    }
}
