//! Per-worker idle keep-alive connections to servers.
//!
//! The contract, after pingora's: a connection is checked in explicitly, and only after an
//! exchange that ended cleanly (whole response read, nothing extra arrived). Dropping a
//! `Pooled` closes it, so a connection whose exchange was cut, timed out or cancelled can
//! never be reused by accident. Checkout says whether the connection is reused, because only
//! a failure on a reused connection is retried silently.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

use monoio::net::TcpStream;

/// A connection reused this soon after its checkin counts as just idled (see
/// [`Pooled::just_idled`]): it went in during this millisecond of `clock::now_ms` or the one
/// before, so it was idle for less than two.
const JUST_IDLED_MS: u64 = 1;

/// One upstream connection, fresh or from the pool.
pub struct Pooled {
    pub stream: TcpStream,
    /// Requests already sent on this connection (for `keepalive_requests`).
    pub requests: u32,
    /// When an idle connection stops being worth reusing (`clock::now_ms` at checkin plus the
    /// group's `keepalive_timeout`); meaningful only while idle.
    expires_ms: u64,
    /// `clock::now_ms` at its last checkin; meaningful only once reused.
    idle_since_ms: u64,
    /// Came out of the pool rather than from a fresh dial.
    pub reused: bool,
    /// The last response on it had a long body (see `http::spliced::HEAD_READ`).
    pub long_bodies: bool,
}

impl Pooled {
    /// A freshly dialed connection.
    pub fn fresh(stream: TcpStream) -> Pooled {
        Pooled {
            stream,
            requests: 0,
            expires_ms: 0,
            idle_since_ms: 0,
            reused: false,
            long_bodies: false,
        }
    }

    /// Came out of the pool less than two milliseconds after it went in.
    pub fn just_idled(&self, now_ms: u64) -> bool {
        self.reused && now_ms.saturating_sub(self.idle_since_ms) <= JUST_IDLED_MS
    }
}

/// Idle connections of one worker, per server address, most recently used last.
#[derive(Default)]
pub struct LocalPool {
    idle: HashMap<SocketAddr, Vec<Pooled>, BuildHasherDefault<AddrHasher>>,
}

/// A multiply-rotate hash (rustc's Fx) for the pool's keys. The default SipHash costs about
/// two hundred instructions per lookup, twice per request; its flooding resistance buys
/// nothing here, the keys being the configuration's own server addresses.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl AddrHasher {
    fn add(&mut self, word: u64) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl LocalPool {
    /// The most recently idled connection to `addr` that has not expired; expired ones are
    /// closed on the way.
    pub fn checkout(&mut self, addr: SocketAddr, now_ms: u64) -> Option<Pooled> {
        let list = self.idle.get_mut(&addr)?;
        while let Some(mut conn) = list.pop() {
            if now_ms < conn.expires_ms {
                conn.reused = true;
                return Some(conn);
            }
            // Expired: the server has likely closed it already; dropping closes our end.
        }
        None
    }

    /// Keeps `conn` for reuse for up to `timeout_ms`; when `addr` already has `max_idle` idle
    /// connections here the oldest is closed.
    pub fn checkin(
        &mut self,
        addr: SocketAddr,
        mut conn: Pooled,
        max_idle: usize,
        timeout_ms: u64,
        now_ms: u64,
    ) {
        if max_idle == 0 {
            return;
        }
        let list = self.idle.entry(addr).or_default();
        if list.len() >= max_idle {
            // Keep the newest: the oldest is the most likely to be closed by the server.
            list.remove(0);
        }
        conn.expires_ms = now_ms.saturating_add(timeout_ms);
        conn.idle_since_ms = now_ms;
        list.push(conn);
    }

    /// Closes expired idle connections, so idle sockets do not pile up on a worker that gets
    /// no traffic for a server.
    pub fn sweep(&mut self, now_ms: u64) {
        for list in self.idle.values_mut() {
            list.retain(|c| now_ms < c.expires_ms);
        }
        self.idle.retain(|_, list| !list.is_empty());
    }

    /// Closes idle connections to every server for which `keep` does not hold (servers a
    /// reload removed).
    pub fn retain_servers(&mut self, keep: impl Fn(SocketAddr) -> bool) {
        self.idle.retain(|addr, _| keep(*addr));
    }

    /// Idle connections to `addr` (for tests and status).
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.get(&addr).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (TcpStream::from_std(client).unwrap(), server)
    }

    #[test]
    fn addr_hash_separates_addresses_that_differ_in_port_or_ip() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<AddrHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for ip in ["127.0.0.1", "127.0.0.2", "10.0.0.1", "::1", "fe80::1"] {
            for port in [80u16, 1701, 1702, 1703, 8080] {
                let addr = SocketAddr::new(ip.parse().unwrap(), port);
                assert!(seen.insert(build.hash_one(addr)), "{addr} collides");
            }
        }
    }

    #[monoio::test_all]
    async fn checkin_then_checkout_returns_the_connection_marked_reused() {
        let (s, _peer) = pair();
        let addr = s.peer_addr().unwrap();
        let mut pool = LocalPool::default();
        pool.checkin(addr, Pooled::fresh(s), 4, 1000, 100);
        let conn = pool.checkout(addr, 200).expect("pooled");
        assert!(!conn.just_idled(200), "idle for 100 ms");
        assert!(!conn.just_idled(102), "idle for 2 ms or more");
        assert!(conn.just_idled(100) && conn.just_idled(101));
        assert!(conn.reused);
        assert_eq!(pool.idle_count(addr), 0);
        assert!(!Pooled::fresh(conn.stream).just_idled(0), "never pooled");
    }

    #[monoio::test_all]
    async fn expired_connections_are_not_handed_out() {
        let (s, _peer) = pair();
        let addr = s.peer_addr().unwrap();
        let mut pool = LocalPool::default();
        pool.checkin(addr, Pooled::fresh(s), 4, 50, 100);
        assert!(pool.checkout(addr, 200).is_none());
    }

    #[monoio::test_all]
    async fn pool_keeps_at_most_max_idle_and_sweep_drops_expired() {
        let mut peers = Vec::new();
        let mut pool = LocalPool::default();
        let mut addr = None;
        for i in 0..3 {
            let (s, p) = pair();
            peers.push(p);
            let a = s.peer_addr().unwrap();
            // Different listeners, same key: what matters is the cap per key.
            let key = *addr.get_or_insert(a);
            pool.checkin(key, Pooled::fresh(s), 2, 10, 100 + i);
        }
        let key = addr.unwrap();
        assert_eq!(pool.idle_count(key), 2);
        pool.sweep(111);
        assert_eq!(pool.idle_count(key), 1);
        pool.sweep(1000);
        assert_eq!(pool.idle_count(key), 0);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn retain_servers_closes_idle_connections_to_removed_servers() {
        let (a, mut peer_a) = pair();
        let (b, _peer_b) = pair();
        let (addr_a, addr_b) = (a.peer_addr().unwrap(), b.peer_addr().unwrap());
        let mut pool = LocalPool::default();
        pool.checkin(addr_a, Pooled::fresh(a), 4, 1000, 1);
        pool.checkin(addr_b, Pooled::fresh(b), 4, 1000, 1);
        pool.retain_servers(|addr| addr == addr_b);
        assert_eq!(pool.idle_count(addr_a), 0);
        assert_eq!(pool.idle_count(addr_b), 1);
        // Let the runtime carry out the close before looking from the other side.
        monoio::time::sleep(std::time::Duration::from_millis(20)).await;
        peer_a
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!(
            peer_a.read(&mut buf).unwrap(),
            0,
            "the server sees the close"
        );
    }

    #[monoio::test_all]
    async fn zero_keepalive_keeps_nothing() {
        let (s, _peer) = pair();
        let addr = s.peer_addr().unwrap();
        let mut pool = LocalPool::default();
        pool.checkin(addr, Pooled::fresh(s), 0, 10, 1);
        assert_eq!(pool.idle_count(addr), 0);
    }
}
