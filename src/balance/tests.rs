//! Behaviour shared by every policy (down, backup, max_conns, tried, passive marks,
//! concurrency, a seeded randomized check), and the helpers the policies' own tests use.

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

/// Runs `f` on a thread of its own that counts as worker `id` (see `marks::enter_worker`).
pub(crate) fn as_worker<T: Send>(id: usize, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                super::enter_worker(id);
                f()
            })
            .join()
            .expect("worker thread")
    })
}

#[test]
fn counts_split_by_worker_only_where_no_pick_reads_them() {
    let lanes = |peers: &Peers| peers.marks.server(0).map(|m| m.lane_count());
    for policy in POLICIES {
        let peers = group(policy, vec![server(1), server(1)]).with_workers(4);
        let reads = matches!(
            policy,
            Policy::LeastConn | Policy::RandomTwo | Policy::LeastTime | Policy::Prompt
        );
        assert_eq!(lanes(&peers), Some(if reads { 1 } else { 4 }), "{policy:?}");
    }
    // A bound on hashed loads reads every count on every pick, whichever order it is set in.
    let bounded = group(Policy::Hash, vec![server(1)])
        .with_workers(4)
        .with_balance_factor(150);
    assert_eq!(lanes(&bounded), Some(1));
    let many = group(Policy::RoundRobin, vec![server(1)]).with_workers(1000);
    assert_eq!(lanes(&many), Some(super::MAX_LANES));
}

#[test]
fn round_robin_counts_are_per_process_across_workers() {
    // Each worker counts on its own lane; /metrics, /status and max_conns see the sum.
    let peers = group(Policy::RoundRobin, vec![server(1), server(1)]).with_workers(2);
    as_worker(0, || (0..3).for_each(|_| peers.begin(0)));
    as_worker(1, || peers.begin(0));
    // Worker 5 of a 2-lane group shares lane 1 with worker 1.
    as_worker(5, || peers.begin(1));
    assert_eq!((peers.active(0), peers.active(1)), (4, 1));
    // A request begun on worker 0 may end on worker 1 (a queue grant): the sum stays right.
    as_worker(1, || (0..3).for_each(|_| peers.end(0)));
    assert_eq!(peers.active(0), 1);
    as_worker(0, || peers.end(0));
    assert_eq!(peers.active(0), 0);
}

const POLICIES: [Policy; 7] = [
    Policy::RoundRobin,
    Policy::LeastConn,
    Policy::IpHash,
    Policy::Hash,
    Policy::RandomTwo,
    Policy::LeastTime,
    Policy::Prompt,
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
fn try_begin_never_takes_a_server_past_max_conns() {
    let mut servers = vec![server(1), server(1)];
    servers[0].max_conns = 2;
    let peers = group(Policy::RoundRobin, servers);
    assert!(peers.try_begin(0) && peers.try_begin(0));
    assert!(!peers.try_begin(0), "a third on a cap of two");
    assert_eq!(peers.active(0), 2);
    // No cap: always counted.
    assert!((0..5).all(|_| peers.try_begin(1)));
    assert_eq!(peers.active(1), 5);
    peers.end(0);
    assert!(peers.try_begin(0));
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

#[test]
fn inherit_shares_marks_of_servers_that_stay_and_only_those() {
    let (a, b, c) = (server(1), server(1), server(1));
    let old = group(Policy::LeastConn, vec![a.clone(), b.clone()]);
    old.begin(0);
    old.failed(1, 1000);
    let mut new = group(Policy::RoundRobin, vec![c, b.clone(), a.clone()]);
    new.inherit(&old);
    // a (now index 2) keeps its active request; b (now 1) keeps its failure mark.
    assert_eq!(new.active(2), 1);
    assert!(!new.available(1, 1001));
    assert_eq!(new.active(0), 0);
    assert!(new.available(0, 1001));
    // A request begun on the old snapshot ends on the counter the new one reads.
    old.end(0);
    assert_eq!(new.active(2), 0);
    new.begin(2);
    assert_eq!(old.active(0), 1);
}

#[test]
fn inherit_matches_a_repeated_address_by_occurrence() {
    let a = server(1);
    let old = group(Policy::RoundRobin, vec![a.clone(), a.clone()]);
    old.begin(1);
    let mut new = group(Policy::RoundRobin, vec![a.clone()]);
    new.inherit(&old);
    assert_eq!(new.active(0), 0, "the first occurrence matches the first");
}

#[test]
fn a_busy_server_is_skipped_by_every_policy_until_its_mark_ends() {
    for policy in POLICIES {
        let peers = group(policy, vec![server(1), server(1)]);
        peers.mark_busy(0, 1000, 500);
        let during = picks(&peers, &Tried::default(), 1200, 20);
        assert!(
            during.iter().all(|p| *p == Pick::Server(1)),
            "{policy:?}: {during:?}"
        );
        assert!(peers.available(0, 1200), "busy is not failed");
        assert_eq!(peers.busy_ms(0, 1200), 300);
        let after = picks(&peers, &Tried::default(), 1500, 40);
        assert!(after.contains(&Pick::Server(0)), "{policy:?}: {after:?}");
        assert_eq!(peers.busy_ms(0, 1500), 0);
    }
}

#[test]
fn every_server_busy_is_a_busy_pick_that_says_when_room_comes_back() {
    let peers = group(Policy::LeastConn, vec![server(1), server(1)]);
    peers.mark_busy(0, 1000, 3000);
    peers.mark_busy(1, 1000, 2000);
    assert_eq!(picks(&peers, &Tried::default(), 1000, 1), [Pick::Busy]);
    assert_eq!(peers.busy_wait_ms(&Tried::default(), 1500), Some(1500));
    let mut tried = Tried::default();
    tried.insert(1);
    assert_eq!(
        peers.busy_wait_ms(&tried, 1500),
        Some(2500),
        "tried ones do not count"
    );
    assert_eq!(peers.busy_wait_ms(&Tried::default(), 4000), None, "over");
    // A server that is merely at max_conns frees a slot when a request ends: no wait known.
    let mut capped = server(1);
    capped.max_conns = 1;
    let peers = group(Policy::LeastConn, vec![capped, server(1)]);
    peers.begin(0);
    peers.mark_busy(1, 1000, 2000);
    assert_eq!(picks(&peers, &Tried::default(), 1000, 1), [Pick::Busy]);
    assert_eq!(peers.busy_wait_ms(&Tried::default(), 1000), None);
}

#[test]
fn reported_load_beyond_our_own_steers_least_conn_and_random_two() {
    for policy in [Policy::LeastConn, Policy::RandomTwo] {
        let peers = group(policy, vec![server(1), server(1)])
            .with_load_feedback(Some(Duration::from_millis(100)));
        // Server 0 runs 6 requests for someone else; one of ours runs on each.
        peers.begin(0);
        peers.begin(1);
        peers.report_load(0, 7, 1000);
        peers.report_load(1, 1, 1000);
        assert_eq!((peers.load(0, 1000), peers.load(1, 1000)), (7, 1));
        let chosen = picks(&peers, &Tried::default(), 1100, 20);
        assert!(
            chosen.iter().all(|p| *p == Pick::Server(1)),
            "{policy:?}: {chosen:?}"
        );
        assert_eq!(peers.reported_load(0, 1100), Some(7));
        // Our own new requests count at once, on top of the others' reported ones.
        for _ in 0..6 {
            peers.begin(1);
        }
        assert_eq!(peers.load(1, 1100), 7);
    }
}

#[test]
fn a_stale_report_is_ignored_and_feedback_off_reads_nothing() {
    let peers = group(Policy::LeastConn, vec![server(1), server(1)])
        .with_load_feedback(Some(Duration::from_millis(100)));
    peers.report_load(0, 50, 1000);
    assert_eq!(
        peers.load(0, 1300),
        50,
        "three intervals old is still fresh"
    );
    assert_eq!(peers.load(0, 1301), 0, "older is ignored");
    assert_eq!(peers.reported_load(0, 1301), None);
    let chosen = picks(&peers, &Tried::default(), 1301, 4);
    assert!(chosen.contains(&Pick::Server(0)), "{chosen:?}");
    // Never polled: nothing to add.
    assert_eq!(
        (peers.load(1, 1000), peers.reported_load(1, 1000)),
        (0, None)
    );
    // Without load_feedback a report (there is none in practice) is never read.
    let plain = group(Policy::LeastConn, vec![server(1)]);
    plain.report_load(0, 50, 1000);
    assert_eq!(
        (plain.load(0, 1000), plain.reported_load(0, 1000)),
        (0, None)
    );
}
