//! The relay between two real socket pairs, with each copier: bytes both ways, half-close,
//! the idle limit, a reset cutting both sides.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use super::*;
use crate::testing::{joined, pattern, socket_pair};

const LIMITS: Timeouts = Timeouts {
    idle: Duration::from_secs(5),
    send: Duration::from_secs(5),
};

/// Copy buffers that count how many are out: what a relay holds at any moment.
#[derive(Default)]
struct CountingPool {
    out: std::cell::Cell<usize>,
}

impl Buffers for CountingPool {
    fn lend(&self) -> Vec<u8> {
        self.out.set(self.out.get() + 1);
        Vec::with_capacity(CHUNK)
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() > 0 {
            self.out.set(self.out.get() - 1);
        }
    }
}

const COPIERS: [Copier; 3] = [Copier::Buffer, Copier::Ready, Copier::Splice];

/// Client sends `up`, half-closes, then reads; the server reads until the half-close
/// arrives, answers `down`, closes. Returns what each side got and the totals.
async fn exchange(copier: Copier, up: Vec<u8>, down: Vec<u8>) -> (Vec<u8>, Vec<u8>, Totals) {
    let (client_near, mut client) = socket_pair();
    let (server_near, mut server) = socket_pair();
    let server_side = std::thread::spawn(move || {
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        server.write_all(&down).unwrap();
        server.shutdown(Shutdown::Write).unwrap();
        got
    });
    let client_side = std::thread::spawn(move || {
        client.write_all(&up).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    });
    let totals = relay(
        client_near,
        server_near,
        LIMITS,
        copier,
        &CountingPool::default(),
    )
    .await;
    (joined(client_side).await, joined(server_side).await, totals)
}

#[monoio::test_all(timer_enabled = true)]
async fn each_copier_moves_both_ways_and_passes_each_half_close_on() {
    for copier in COPIERS {
        let (up, down) = (pattern(3 << 20, 1), pattern(1 << 20, 2));
        let (client_got, server_got, totals) = exchange(copier, up.clone(), down.clone()).await;
        assert!(server_got == up, "{copier:?}: server got the request whole");
        assert!(
            client_got == down,
            "{copier:?}: client got the answer whole"
        );
        assert_eq!(
            totals,
            Totals {
                up: up.len() as u64,
                down: down.len() as u64,
                end: End::Closed
            }
        );
    }
}

#[monoio::test_all(timer_enabled = true)]
async fn a_server_that_closes_first_still_gets_the_rest_of_the_request() {
    for copier in COPIERS {
        let (client_near, mut client) = socket_pair();
        let (server_near, mut server) = socket_pair();
        let server_side = std::thread::spawn(move || {
            server.write_all(b"banner").unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            got
        });
        let client_side = std::thread::spawn(move || {
            let mut banner = [0u8; 6];
            client.read_exact(&mut banner).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "end of stream after the banner");
            client.write_all(b"late words").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            banner
        });
        let totals = relay(
            client_near,
            server_near,
            LIMITS,
            copier,
            &CountingPool::default(),
        )
        .await;
        assert_eq!(&joined(client_side).await, b"banner");
        assert_eq!(joined(server_side).await, b"late words", "{copier:?}");
        assert_eq!((totals.up, totals.down, totals.end), (10, 6, End::Closed));
    }
}

#[monoio::test_all(timer_enabled = true)]
async fn nothing_moving_for_the_idle_limit_ends_the_relay_and_closes_both() {
    for copier in COPIERS {
        let (client_near, mut client) = socket_pair();
        let (server_near, mut server) = socket_pair();
        let limits = Timeouts {
            idle: Duration::from_millis(150),
            send: Duration::from_secs(5),
        };
        let started = std::time::Instant::now();
        let totals = relay(
            client_near,
            server_near,
            limits,
            copier,
            &CountingPool::default(),
        )
        .await;
        assert_eq!(totals.end, End::Idle);
        assert!(started.elapsed() >= Duration::from_millis(150));
        let ends = std::thread::spawn(move || {
            [&mut client, &mut server].map(|side| {
                side.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                side.read(&mut [0u8; 1]).ok()
            })
        });
        assert_eq!(joined(ends).await, [Some(0), Some(0)], "{copier:?}: closed");
    }
}

#[monoio::test_all(timer_enabled = true)]
async fn traffic_in_one_direction_keeps_the_other_open() {
    for copier in COPIERS {
        one_way_traffic(copier).await;
    }
}

async fn one_way_traffic(copier: Copier) {
    let (client_near, mut client) = socket_pair();
    let (server_near, mut server) = socket_pair();
    let limits = Timeouts {
        idle: Duration::from_millis(400),
        send: Duration::from_secs(5),
    };
    // The server streams for two and a half idle periods while the client sends nothing
    // (a tick every 50 ms: a loaded machine may delay one by a good deal, never by 400 ms).
    let server_side = std::thread::spawn(move || {
        for _ in 0..20 {
            server.write_all(b"tick").unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        server.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
    });
    let client_side = std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        got.len()
    });
    let totals = relay(
        client_near,
        server_near,
        limits,
        copier,
        &CountingPool::default(),
    )
    .await;
    assert_eq!(joined(client_side).await, 80, "{copier:?}");
    joined(server_side).await;
    assert_eq!(totals.end, End::Closed);
}

#[monoio::test_all(timer_enabled = true)]
async fn a_reset_on_one_side_cuts_the_other() {
    for copier in COPIERS {
        reset_cuts(copier).await;
    }
}

async fn reset_cuts(copier: Copier) {
    let (client_near, client) = socket_pair();
    let (server_near, mut server) = socket_pair();
    // SO_LINGER 0 makes the close a reset.
    let sock = socket_ref(&client);
    set_linger_zero(sock);
    drop(client);
    let totals = relay(
        client_near,
        server_near,
        LIMITS,
        copier,
        &CountingPool::default(),
    )
    .await;
    assert_eq!(totals.end, End::Failed, "{copier:?}");
    let got = joined(std::thread::spawn(move || {
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        server.read(&mut [0u8; 1]).map_err(|e| e.kind())
    }))
    .await;
    // A timed-out read (WouldBlock) would mean the server side was left open.
    assert!(
        matches!(got, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "server side closed: {got:?}"
    );
}

#[monoio::test_all(timer_enabled = true)]
async fn a_write_stalled_past_the_send_limit_cuts_the_relay() {
    for copier in COPIERS {
        let (client_near, mut client) = socket_pair();
        let (server_near, server) = socket_pair();
        let limits = Timeouts {
            idle: Duration::from_secs(30),
            send: Duration::from_millis(200),
        };
        // The server reads nothing: once its receive buffer and the relay's send buffer are
        // full, the relay's write stalls.
        let client_side = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..256 {
                if client.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let started = std::time::Instant::now();
        let totals = relay(
            client_near,
            server_near,
            limits,
            copier,
            &CountingPool::default(),
        )
        .await;
        assert_eq!(totals.end, End::Failed, "{copier:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{copier:?}");
        joined(client_side).await;
        drop(server);
    }
}

#[monoio::test_all(timer_enabled = true)]
async fn splice_leaves_both_sockets_non_blocking() {
    use std::os::fd::AsRawFd;
    let (client_near, mut client) = socket_pair();
    let (server_near, mut server) = socket_pair();
    let fds = [client_near.as_raw_fd(), server_near.as_raw_fd()];
    // Looked at while the relay runs: a blocking socket would mean a splice parked in a
    // kernel thread (io_uring's splice) instead of one called when the socket is ready.
    let sides = std::thread::spawn(move || {
        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"pong").unwrap();
        client.read_exact(&mut got).unwrap();
        // SAFETY: fcntl(F_GETFL) on descriptors the relay still holds open (neither side
        // has ended yet); no memory is passed.
        let flags = fds.map(|fd| unsafe { libc::fcntl(fd, libc::F_GETFL) });
        client.shutdown(Shutdown::Write).unwrap();
        server.shutdown(Shutdown::Write).unwrap();
        (got, flags)
    });
    let totals = relay(
        client_near,
        server_near,
        LIMITS,
        Copier::Splice,
        &CountingPool::default(),
    )
    .await;
    let (got, flags) = joined(sides).await;
    assert_eq!(&got, b"pong");
    assert_eq!((totals.up, totals.down, totals.end), (4, 4, End::Closed));
    for flag in flags {
        assert!(flag >= 0 && flag & libc::O_NONBLOCK != 0, "flags {flag:#x}");
    }
}

fn socket_ref(s: &std::net::TcpStream) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    s.as_raw_fd()
}

fn set_linger_zero(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a correctly sized linger on the stack.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[monoio::test_all(timer_enabled = true)]
async fn an_idle_connection_holds_no_buffer_with_the_ready_copier() {
    // The buffer copier is the contrast: its two reads wait with their buffers.
    for (copier, held_when_idle) in [(Copier::Ready, 0), (Copier::Buffer, 2)] {
        let (client_near, mut client) = socket_pair();
        let (server_near, mut server) = socket_pair();
        let pool = CountingPool::default();
        let relayed = relay(client_near, server_near, LIMITS, copier, &pool);
        let watched = async {
            let (client, server) = joined(std::thread::spawn(move || {
                client.write_all(b"ping").unwrap();
                let mut got = [0u8; 4];
                server.read_exact(&mut got).unwrap();
                server.write_all(b"pong").unwrap();
                client.read_exact(&mut got).unwrap();
                (client, server)
            }))
            .await;
            // The exchange is over and both sides are quiet.
            monoio::time::sleep(Duration::from_millis(50)).await;
            let held = pool.out.get();
            for side in [&client, &server] {
                side.shutdown(Shutdown::Write).unwrap();
            }
            (held, client, server)
        };
        let (totals, (held, _client, _server)) = monoio::join!(relayed, watched);
        assert_eq!(held, held_when_idle, "{copier:?}: buffers held while idle");
        assert_eq!((totals.up, totals.down, totals.end), (4, 4, End::Closed));
        assert_eq!(pool.out.get(), 0, "{copier:?}: every buffer came back");
    }
}

/// A bulk transfer starts on the ready copier and moves to splicing (the pipe it used comes
/// back to the thread's spares); a small exchange never does.
#[monoio::test_all(timer_enabled = true)]
async fn a_bulk_transfer_on_the_ready_copier_moves_to_splicing_and_a_small_one_does_not() {
    for (size, spliced) in [(4 << 10, false), (8 << 20, true)] {
        let before = crate::splice::spare_pipes();
        let (client_near, mut client) = socket_pair();
        let (server_near, mut server) = socket_pair();
        let down = pattern(size, 5);
        let sent = down.clone();
        let server_side = std::thread::spawn(move || {
            server.write_all(&sent).unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).unwrap();
        });
        let client_side = std::thread::spawn(move || {
            // Reading late lets the server's bytes pile up, as a backend's do behind a
            // client slower than loopback: the source is never empty when read.
            std::thread::sleep(Duration::from_millis(200));
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            got
        });
        let pool = CountingPool::default();
        let totals = relay(client_near, server_near, LIMITS, Copier::Ready, &pool).await;
        let got = joined(client_side).await;
        joined(server_side).await;
        assert!(got == down, "{size} bytes: the client got them whole");
        assert_eq!((totals.down, totals.end), (size as u64, End::Closed));
        let used_pipe = crate::splice::spare_pipes() > before;
        assert_eq!(used_pipe, spliced, "{size} bytes: spliced");
        assert_eq!(pool.out.get(), 0, "{size} bytes: every buffer came back");
    }
}
