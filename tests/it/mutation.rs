//! Seeded mutations of real requests thrown at the real proxy: whatever the bytes, the
//! proxy answers or closes within a bound, and keeps serving well-formed requests after.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

const SEEDS: &[&[u8]] = &[
    b"GET /v1/models?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: it\r\n\r\n",
    b"POST /chat HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"a\":\"bcd\"}",
    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n",
];

/// xorshift64*: small, seeded, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\r\n\0 :;,\t0123456789abcdefABCDEF-/%?=";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if at < out.len() => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 if at < out.len() => out[at] = rng.next() as u8,
            2 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < out.len() => {
                out.remove(at);
            }
            4 => out.truncate(at),
            _ => {
                // Splice in a piece of another seed.
                let other = SEEDS[rng.below(SEEDS.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(40)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    out
}

fn mutated_requests_never_break_the_proxy(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(req.path());
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ driver.len() as u64);
    let started = Instant::now();
    for case in 0..300 {
        let seed = SEEDS[case % SEEDS.len()];
        let bytes = mutate(&mut rng, seed);
        let mut s = TcpStream::connect(p.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let t = Instant::now();
        let read = s.read_to_end(&mut got);
        assert!(
            read.is_ok() || t.elapsed() < Duration::from_secs(3),
            "case {case}: no answer and no close within 3 s for {:?}",
            String::from_utf8_lossy(&bytes)
        );
        if !got.is_empty() {
            assert!(
                got.starts_with(b"HTTP/1.1 "),
                "case {case}: not an HTTP answer: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // Still serving, on every worker, after all that.
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/fine").text(), "/fine");
    }
}
both_drivers!(mutated_requests_never_break_the_proxy);
