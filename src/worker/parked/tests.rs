use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::*;
use crate::worker::Worker;
use crate::worker::tests::{admitted, test_worker};

fn bind() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// A connected pair: the server side as a socket to park, the client side to talk with.
fn pair() -> (OwnedFd, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (OwnedFd::from(server), client)
}

fn entry(worker: &Rc<Worker>, socket: OwnedFd, bind: SocketAddr, idle: Duration) -> Parked {
    let since = Instant::now().checked_sub(idle).unwrap();
    Parked {
        socket,
        peer: "127.0.0.9:9".parse().unwrap(),
        bind,
        held: admitted(worker, bind),
        local: worker.snapshot(),
        count: 7,
        since,
        expires_ms: crate::clock::now_ms() + 60_000,
    }
}

/// Readiness reaches the kernel's epoll list at once on loopback; a few tries cover a
/// loaded machine.
fn ready_within(set: &mut ParkedSet, want: usize) -> Vec<Parked> {
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(set.take_ready());
        if got.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}

#[monoio::test_all(timer_enabled = true)]
async fn a_parked_connection_comes_back_when_its_request_arrives_with_the_bytes_unread() {
    let worker = test_worker();
    let mut set = ParkedSet::default();
    let (socket, mut client) = pair();
    assert!(
        set.park(entry(&worker, socket, bind(), Duration::ZERO))
            .is_ok()
    );
    let (quiet, _quiet_client) = pair();
    assert!(
        set.park(entry(&worker, quiet, bind(), Duration::ZERO))
            .is_ok()
    );
    assert_eq!(set.len(), 2);
    assert!(set.take_ready().is_empty(), "nothing sent yet");

    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let ready = ready_within(&mut set, 1);
    assert_eq!(ready.len(), 1);
    assert_eq!(set.len(), 1, "the quiet one stays parked");
    let conn = ready.into_iter().next().unwrap();
    assert_eq!(conn.count, 7);
    assert_eq!(conn.peer, "127.0.0.9:9".parse::<SocketAddr>().unwrap());
    let mut server = std::net::TcpStream::from(conn.socket);
    let mut got = [0u8; 64];
    let n = server.read(&mut got).unwrap();
    assert_eq!(&got[..n], b"GET / HTTP/1.1\r\n\r\n", "waking took no byte");
    assert!(set.take_ready().is_empty(), "taken out once, not again");
}

#[monoio::test_all(timer_enabled = true)]
async fn a_client_that_leaves_wakes_its_parked_connection() {
    let worker = test_worker();
    let mut set = ParkedSet::default();
    let (socket, client) = pair();
    assert!(
        set.park(entry(&worker, socket, bind(), Duration::ZERO))
            .is_ok()
    );
    drop(client);
    let ready = ready_within(&mut set, 1);
    assert_eq!(ready.len(), 1);
    assert!(set.is_empty());
}

#[monoio::test_all(timer_enabled = true)]
async fn closing_takes_expired_and_drained_connections_but_not_a_waiting_request() {
    let worker = test_worker();
    let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let mut set = ParkedSet::default();
    let now = crate::clock::now_ms();
    let long = Duration::from_secs(5);

    let (expired, mut expired_client) = pair();
    let mut e = entry(&worker, expired, other, Duration::ZERO);
    e.expires_ms = now;
    set.park(e).ok().unwrap();
    let (drained, mut drained_client) = pair();
    set.park(entry(&worker, drained, bind(), long))
        .ok()
        .unwrap();
    let (young, _young_client) = pair();
    set.park(entry(&worker, young, bind(), Duration::ZERO))
        .ok()
        .unwrap();
    let (kept, _kept_client) = pair();
    set.park(entry(&worker, kept, other, long)).ok().unwrap();
    let (asking, mut asking_client) = pair();
    set.park(entry(&worker, asking, bind(), long)).ok().unwrap();
    asking_client.write_all(b"GET").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(worker.connections.get(), 5);

    let closing = |b: SocketAddr| b == bind();
    let closed = set.take_closing(now, closing, Duration::from_secs(1));
    assert_eq!(
        closed.len(),
        2,
        "the expired one and the one idle past the grace"
    );
    drop(closed);
    assert_eq!(worker.connections.get(), 3, "their counters went down");
    let mut byte = [0u8; 1];
    expired_client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    drained_client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(expired_client.read(&mut byte).unwrap(), 0, "closed");
    assert_eq!(drained_client.read(&mut byte).unwrap(), 0, "closed");
    // The young one is within its grace, the other listener's stays, the asking one is
    // left to be served (readiness will wake it).
    assert_eq!(set.len(), 3);
    let ready = ready_within(&mut set, 1);
    assert_eq!(ready.len(), 1);
}

/// The entry is what a parked connection costs beyond the kernel's socket and epoll
/// registration (nginx: its preallocated connection and event structures, 526 bytes in
/// `benches/idle`).
#[test]
fn a_parked_connection_is_an_entry_of_128_bytes() {
    let size = std::mem::size_of::<Option<Parked>>();
    assert!(size <= 128, "a parked connection's entry is {size} bytes");
}
