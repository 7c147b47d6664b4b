//! Backup and down servers through the real proxy, for every balancer: a backup gets traffic
//! only while every primary is unavailable, `down = true` never gets any, and when nothing
//! at all is available the answer is 502 at once.

use std::time::{Duration, Instant};

use crate::support::*;

/// Every balancer, with the extra upstream keys it needs.
const BALANCERS: [(&str, &str); 5] = [
    ("round_robin", ""),
    ("least_conn", ""),
    ("ip_hash", ""),
    ("hash", "hash_key = \"$request_uri\""),
    ("random_two", ""),
];

fn upstream(balance: &str, extra: &str) -> String {
    format!("balance = \"{balance}\"\n{extra}")
}

/// `GET /<n>` on fresh connections (so hash keys and ip_hash see several requests); the
/// name of the backend that answered each.
fn answers(p: &Proxy, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = get(p.addr, &format!("/{i}"));
            assert_eq!(r.status, 200, "GET /{i}:\n{}{}", r.head_text(), r.text());
            r.text()
        })
        .collect()
}

fn backup_is_idle_while_a_primary_is_usable(driver: &str) {
    let (a, b, spare) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("spare"),
    );
    for (balance, extra) in BALANCERS {
        let servers = [
            server(a.addr(), ""),
            server(b.addr(), ""),
            server(spare.addr(), "backup = true"),
        ];
        let p = Proxy::start(driver, &config("", &upstream(balance, extra), &servers));
        let got = answers(&p, 12);
        assert!(got.iter().all(|w| w != "spare"), "{balance}: {got:?}");
    }
    assert_eq!(spare.connections(), 0);
}
both_drivers!(backup_is_idle_while_a_primary_is_usable);

/// Primaries out two ways at once: one `down = true`, one marked failed by its first
/// error (refused connection, `max_fails = 1`). The backup then takes every request; the
/// down one is never even connected to.
fn backup_takes_over_when_every_primary_is_out(driver: &str) {
    let (down, spare) = (Backend::named("down"), Backend::named("spare"));
    for (balance, extra) in BALANCERS {
        let servers = [
            server(down.addr(), "down = true"),
            server(dead_addr(), "max_fails = 1, fail_timeout = \"30s\""),
            server(spare.addr(), "backup = true"),
        ];
        let p = Proxy::start(driver, &config("", &upstream(balance, extra), &servers));
        let got = answers(&p, 8);
        assert!(got.iter().all(|w| w == "spare"), "{balance}: {got:?}");
    }
    assert_eq!(down.connections(), 0);
}
both_drivers!(backup_takes_over_when_every_primary_is_out);

/// Two backups share the load between them (round robin) while the primaries are out.
fn backups_share_the_load_between_them(driver: &str) {
    let (x, y) = (Backend::named("x"), Backend::named("y"));
    for (balance, extra) in BALANCERS {
        let servers = [
            server(dead_addr(), "down = true"),
            server(x.addr(), "backup = true"),
            server(y.addr(), "backup = true"),
        ];
        let p = Proxy::start(driver, &config("", &upstream(balance, extra), &servers));
        let got = answers(&p, 8);
        let xs = got.iter().filter(|w| *w == "x").count();
        assert_eq!((xs, got.len() - xs), (4, 4), "{balance}: {got:?}");
    }
}
both_drivers!(backups_share_the_load_between_them);

/// Every primary `down`, the backup marked failed by its first refused connection: from
/// then on each request is answered 502 without any connect attempt, well within 100 ms.
fn all_servers_out_gives_502_within_100ms(driver: &str) {
    for (balance, extra) in BALANCERS {
        let servers = [
            server(dead_addr(), "down = true"),
            server(dead_addr(), "down = true"),
            server(
                dead_addr(),
                "backup = true, max_fails = 1, fail_timeout = \"30s\"",
            ),
        ];
        let p = Proxy::start(driver, &config("", &upstream(balance, extra), &servers));
        assert_eq!(get(p.addr, "/first").status, 502, "{balance}");
        for i in 0..5 {
            let started = Instant::now();
            let r = get(p.addr, &format!("/{i}"));
            let took = started.elapsed();
            assert_eq!(r.status, 502, "{balance}");
            assert!(took < Duration::from_millis(100), "{balance}: {took:?}");
        }
    }
}
both_drivers!(all_servers_out_gives_502_within_100ms);
