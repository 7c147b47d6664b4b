//! Balancers through the real proxy: smooth weighted round robin, least_conn, ip_hash,
//! hash, random_two; `down`, `backup`, and passive health (`max_fails`/`fail_timeout`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::support::*;

/// The name of the backend that answered one `GET path`.
fn who(p: &Proxy, path: &str) -> String {
    let r = get(p.addr, path);
    assert_eq!(r.status, 200, "GET {path}:\n{}{}", r.head_text(), r.text());
    r.text()
}

fn round_robin_5_1_1_is_smooth(driver: &str) {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let servers = [
        server(a.addr(), "weight = 5"),
        server(b.addr(), "weight = 1"),
        server(c.addr(), "weight = 1"),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    let order: Vec<String> = (0..14).map(|_| who(&p, "/")).collect();
    assert_eq!(
        order,
        [
            "a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"
        ]
    );
}
both_drivers!(round_robin_5_1_1_is_smooth);

fn weights_3_2_split_100_requests_exactly_60_40(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let servers = [
        server(a.addr(), "weight = 3"),
        server(b.addr(), "weight = 2"),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    let responses =
        Client::connect(p.addr).request_many(&["GET / HTTP/1.1\r\nHost: t\r\n\r\n"; 100]);
    assert!(responses.iter().all(|r| r.status == 200));
    assert_eq!((a.request_count(), b.request_count()), (60, 40));
}
both_drivers!(weights_3_2_split_100_requests_exactly_60_40);

/// One slow request in flight on one server; quick ones must all go to the other.
fn least_conn_check(driver: &str, workers: usize) {
    let handler = |name: &'static str| {
        move |req: &Request, c: &mut Conn| {
            if req.path() == "/slow" {
                c.sleep_ms(1000);
            }
            c.respond(200, &[("X-Backend", name)], name.as_bytes());
        }
    };
    let (a, b) = (Backend::start(handler("a")), Backend::start(handler("b")));
    let servers = [server(a.addr(), ""), server(b.addr(), "")];
    let p = Proxy::start_workers(
        driver,
        workers,
        &config("", "balance = \"least_conn\"", &servers),
    );
    let addr = p.addr;
    let started = Instant::now();
    let slow = std::thread::spawn(move || get(addr, "/slow").text());
    let one_seen = || a.request_count() + b.request_count() == 1;
    assert!(wait_until(Duration::from_secs(2), one_seen));
    let busy = if a.request_count() == 1 { "a" } else { "b" };
    // Only answers that came back while the slow request surely ran count (a loaded
    // machine may take a while over six requests).
    let mut quick = Vec::new();
    for _ in 0..6 {
        // A worker may send the last byte of a response a moment before it counts the
        // request as over; another worker picking in that moment sees a tie. Let it settle.
        std::thread::sleep(Duration::from_millis(20));
        let name = who(&p, "/quick");
        if started.elapsed() < Duration::from_millis(800) {
            quick.push(name);
        }
    }
    assert!(
        quick.len() >= 2,
        "too slow to observe: {:?}",
        started.elapsed()
    );
    assert!(
        quick.iter().all(|w| w != busy),
        "{busy} is busy, yet got {quick:?}"
    );
    assert_eq!(slow.join().expect("slow request thread"), busy);
}

fn least_conn_avoids_the_server_busy_with_a_slow_request(driver: &str) {
    least_conn_check(driver, 1);
}
both_drivers!(least_conn_avoids_the_server_busy_with_a_slow_request);

/// With two workers, the quick requests land on both (SO_REUSEPORT spreads connections):
/// the count of the slow one must be seen by the other worker too.
fn least_conn_counts_are_per_process_not_per_worker(driver: &str) {
    least_conn_check(driver, 2);
}
both_drivers!(least_conn_counts_are_per_process_not_per_worker);

fn three_named() -> [Backend; 3] {
    [
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    ]
}

fn servers_of(backends: &[Backend]) -> Vec<String> {
    backends.iter().map(|b| server(b.addr(), "")).collect()
}

fn ip_hash_is_stable_per_client_network_and_spreads_networks(driver: &str) {
    let backends = three_named();
    let p = Proxy::start(
        driver,
        &config("", "balance = \"ip_hash\"", &servers_of(&backends)),
    );
    let from = |ip: Ipv4Addr| {
        let r = Client::connect_from(ip, p.addr)
            .request("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
        r.text()
    };
    let mut chosen = BTreeSet::new();
    for net in 0..24u8 {
        let first = from(Ipv4Addr::new(127, 0, net, 1));
        for host in [1u8, 2, 77] {
            // Same /24 (nginx hashes the first three octets): same server, every time.
            assert_eq!(
                from(Ipv4Addr::new(127, 0, net, host)),
                first,
                "127.0.{net}.{host}"
            );
        }
        chosen.insert(first);
    }
    assert!(chosen.len() >= 2, "24 networks all went to {chosen:?}");
}
both_drivers!(ip_hash_is_stable_per_client_network_and_spreads_networks);

fn hash_on_a_header_is_stable_per_key_and_spreads_keys(driver: &str) {
    let backends = three_named();
    let upstream = "balance = \"hash\"\nhash_key = \"$http_x_session_id\"";
    let p = Proxy::start(driver, &config("", upstream, &servers_of(&backends)));
    let mut c = Client::connect(p.addr);
    let mut by_key = BTreeMap::new();
    for round in 0..3 {
        for session in 0..30 {
            let r = c.request(format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Session-Id: sess-{session}\r\n\r\n"
            ));
            let first = by_key.entry(session).or_insert_with(|| r.text());
            assert_eq!(*first, r.text(), "session {session} moved in round {round}");
        }
    }
    let used: BTreeSet<&String> = by_key.values().collect();
    assert!(used.len() >= 2, "30 sessions all went to {used:?}");
}
both_drivers!(hash_on_a_header_is_stable_per_key_and_spreads_keys);

fn random_two_serves_every_request_and_uses_several_servers(driver: &str) {
    let backends = three_named();
    let p = Proxy::start(
        driver,
        &config("", "balance = \"random_two\"", &servers_of(&backends)),
    );
    let mut c = Client::connect(p.addr);
    for _ in 0..60 {
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    }
    let counts: Vec<usize> = backends.iter().map(Backend::request_count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60);
    assert!(counts.iter().filter(|&&n| n > 0).count() >= 2, "{counts:?}");
}
both_drivers!(random_two_serves_every_request_and_uses_several_servers);

fn down_server_is_never_used(driver: &str) {
    let [a, b, c] = three_named();
    let servers = [
        server(a.addr(), "down = true"),
        server(b.addr(), ""),
        server(c.addr(), ""),
    ];
    for balance in ["round_robin", "least_conn", "random_two", "ip_hash"] {
        let p = Proxy::start(
            driver,
            &config("", &format!("balance = \"{balance}\""), &servers),
        );
        for _ in 0..10 {
            assert_ne!(who(&p, "/"), "a", "{balance}");
        }
    }
    assert_eq!(a.connections(), 0);
}
both_drivers!(down_server_is_never_used);

fn backup_serves_only_when_every_primary_fails(driver: &str) {
    let (primary, backup) = (Backend::named("primary"), Backend::named("backup"));
    let servers = [
        server(primary.addr(), ""),
        server(backup.addr(), "backup = true"),
    ];
    let p = Proxy::start(driver, &config("", "", &servers));
    for _ in 0..5 {
        assert_eq!(who(&p, "/"), "primary");
    }
    assert_eq!(backup.connections(), 0);
    drop(p);
    let servers = [
        server(dead_addr(), "max_fails = 1, fail_timeout = \"10s\""),
        server(backup.addr(), "backup = true"),
    ];
    let p = Proxy::start(driver, &config("", "", &servers));
    for _ in 0..3 {
        assert_eq!(who(&p, "/"), "backup");
    }
}
both_drivers!(backup_serves_only_when_every_primary_fails);

/// A server that accepts and closes at once: every attempt on it is an `error`.
fn slammer() -> Backend {
    Backend::start(|_, c| c.close())
}

fn max_fails_marks_a_server_unavailable_for_fail_timeout(driver: &str) {
    let (flaky, good) = (slammer(), Backend::named("good"));
    let servers = [
        server(flaky.addr(), "max_fails = 1, fail_timeout = \"1s\""),
        server(good.addr(), ""),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    let started = Instant::now();
    for _ in 0..6 {
        assert_eq!(who(&p, "/"), "good");
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "test too slow to observe the window"
    );
    assert_eq!(
        flaky.request_count(),
        1,
        "a server marked failed was tried again within fail_timeout"
    );
    // After fail_timeout it is tried again.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..4 {
        assert_eq!(who(&p, "/"), "good");
    }
    assert_eq!(flaky.request_count(), 2);
}
both_drivers!(max_fails_marks_a_server_unavailable_for_fail_timeout);

fn max_fails_zero_never_marks_a_server(driver: &str) {
    let (flaky, good) = (slammer(), Backend::named("good"));
    let servers = [
        server(flaky.addr(), "max_fails = 0"),
        server(good.addr(), ""),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    for _ in 0..6 {
        assert_eq!(who(&p, "/"), "good");
    }
    assert!(
        flaky.request_count() >= 3,
        "tried {} times",
        flaky.request_count()
    );
}
both_drivers!(max_fails_zero_never_marks_a_server);

fn every_server_unavailable_gives_502_at_once(driver: &str) {
    let servers = [
        server(dead_addr(), "max_fails = 1, fail_timeout = \"10s\""),
        server(dead_addr(), "max_fails = 1, fail_timeout = \"10s\""),
    ];
    let p = Proxy::start(driver, &config("", "", &servers));
    assert_eq!(get(p.addr, "/").status, 502);
    let started = Instant::now();
    assert_eq!(get(p.addr, "/").status, 502);
    assert!(started.elapsed() < Duration::from_millis(500));
}
both_drivers!(every_server_unavailable_gives_502_at_once);

/// How many answers on one keep-alive connection came from backend `name`, of how many:
/// requests go one after another until `until`, or `count` of them if given.
fn share_until(
    addr: std::net::SocketAddr,
    c: &mut Client,
    name: &str,
    until: Instant,
    count: Option<usize>,
) -> (usize, usize) {
    let (mut mine, mut n) = (0, 0);
    while count.map_or(Instant::now() < until, |count| n < count) {
        let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);
        mine += usize::from(r.text() == name);
        n += 1;
        if r.says_close() {
            // keepalive_requests (1000) reached.
            *c = Client::connect(addr);
        }
    }
    (mine, n)
}

/// A server whose `down` a reload lifts comes back with `slow_start = "2s"`: over the
/// first half second its share is a fraction of the half it gets once the ramp is over.
fn slow_start_ramps_a_returning_server_up_to_its_weight(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let servers = |b_extra: &str| [server(a.addr(), ""), server(b.addr(), b_extra)];
    let upstream = "balance = \"round_robin\"\nslow_start = \"2s\"";
    let mut p = Proxy::start(driver, &config("", upstream, &servers("down = true")));
    p.reload(&config("", upstream, &servers("")));
    let back = Instant::now();
    let mut c = Client::connect(p.addr);
    let (early, n) = share_until(p.addr, &mut c, "b", back + Duration::from_millis(500), None);
    assert!(n >= 20, "only {n} requests in the first half second");
    // Weight ramps to a quarter by then: about 11% of the picks on average, never 50%.
    assert!(
        (early as f64) < 0.25 * n as f64,
        "b got {early} of the first {n}"
    );
    std::thread::sleep(
        (back + Duration::from_millis(2100)).saturating_duration_since(Instant::now()),
    );
    let (late, n) = share_until(p.addr, &mut c, "b", Instant::now(), Some(200));
    assert!(
        (80..=120).contains(&late),
        "b got {late} of {n} after the ramp"
    );
}
both_drivers!(slow_start_ramps_a_returning_server_up_to_its_weight);
