//! The spliced body copy between real socket pairs, on both drivers: every byte arrives,
//! nothing after the body is taken, and each way it can fail is told apart.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;

use super::*;
use crate::testing::{joined, pattern, socket_pair};

const DEADLINES: Deadlines = Deadlines {
    read: Duration::from_secs(5),
    send: Duration::from_secs(5),
};

#[monoio::test_all(timer_enabled = true)]
async fn a_long_body_arrives_whole_and_what_follows_it_stays_in_the_socket() {
    let (mut up, mut server) = socket_pair();
    let (client, mut reader) = socket_pair();
    let body = pattern(700 * 1024, 7);
    let sent_body = body.clone();
    // The body comes in pieces with pauses (readiness waits), then the next response.
    let server_side = std::thread::spawn(move || {
        for piece in sent_body.chunks(200 * 1024) {
            server.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        server
    });
    let n = body.len();
    let client_side = std::thread::spawn(move || {
        let mut got = vec![0u8; n];
        reader.read_exact(&mut got).unwrap();
        got
    });
    // What the copy reports, in order.
    let log = RefCell::new(Vec::new());
    let mut sent = 0;
    let events = |e| log.borrow_mut().push(e);
    let done = splice_body(&up, &client, n as u64, DEADLINES, &mut sent, &events).await;
    assert!(matches!(done, Some(Ok(()))), "{done:?}");
    assert_eq!(sent, n as u64);
    assert!(
        joined(client_side).await == body,
        "the client got the body unchanged"
    );
    assert_eq!(
        *log.borrow(),
        [CopyEvent::FirstByte, CopyEvent::UpstreamDone]
    );
    let _server = joined(server_side).await;
    // The next response's first bytes were not taken with the body.
    let (res, next) = up.read(vec![0u8; 64]).await;
    assert_eq!(&next[..res.unwrap()], b"HTTP/1.1 200 OK\r\n");
}

#[monoio::test_all(timer_enabled = true)]
async fn a_server_that_closes_mid_body_is_the_servers_failure() {
    let (up, mut server) = socket_pair();
    let (client, mut reader) = socket_pair();
    let server_side = std::thread::spawn(move || {
        server.write_all(&pattern(100 * 1024, 1)).unwrap();
    });
    let client_side = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got);
        got.len()
    });
    let mut sent = 0;
    let done = splice_body(&up, &client, 300 * 1024, DEADLINES, &mut sent, &|_| {}).await;
    joined(server_side).await;
    match done {
        Some(Err(CopyError::Upstream(e))) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert_eq!(sent, 100 * 1024);
    drop(client);
    assert_eq!(
        joined(client_side).await,
        100 * 1024,
        "what came was passed on"
    );
}

#[monoio::test_all(timer_enabled = true)]
async fn a_client_that_takes_nothing_is_let_go_after_the_send_timeout() {
    let (up, mut server) = socket_pair();
    let (client, reader) = socket_pair();
    // A small send buffer: the body backs up after the receiver's window, not after MiBs.
    let small: libc::c_int = 16 * 1024;
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a pointer to an int on the stack, for a socket we own.
    unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const small).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let total = 16 * 1024 * 1024;
    let server_side = std::thread::spawn(move || {
        let piece = pattern(256 * 1024, 3);
        let mut written = 0;
        while written < total && server.write_all(&piece).is_ok() {
            written += piece.len();
        }
    });
    let deadlines = Deadlines {
        read: Duration::from_secs(5),
        send: Duration::from_millis(300),
    };
    let started = Instant::now();
    let mut sent = 0;
    let done = splice_body(&up, &client, total as u64, deadlines, &mut sent, &|_| {}).await;
    match done {
        Some(Err(CopyError::Client(e))) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((up, client, reader));
    joined(server_side).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn a_server_that_goes_quiet_times_out_as_the_servers_failure() {
    let (up, mut server) = socket_pair();
    let (client, mut reader) = socket_pair();
    let server_side = std::thread::spawn(move || {
        server.write_all(&pattern(40 * 1024, 5)).unwrap();
        std::thread::sleep(Duration::from_millis(800));
    });
    // The client stays (a client that leaves is a different ending).
    let client_side = std::thread::spawn(move || {
        let mut got = vec![0u8; 40 * 1024];
        reader.read_exact(&mut got).unwrap();
        reader
    });
    let deadlines = Deadlines {
        read: Duration::from_millis(200),
        send: Duration::from_secs(5),
    };
    let mut sent = 0;
    let done = splice_body(&up, &client, 100 * 1024, deadlines, &mut sent, &|_| {}).await;
    match done {
        Some(Err(CopyError::Upstream(e))) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
        other => panic!("{other:?}"),
    }
    drop(joined(client_side).await);
    joined(server_side).await;
}

#[monoio::test_all(timer_enabled = true)]
async fn a_client_that_leaves_while_the_server_is_quiet_ends_the_copy_at_once() {
    let (up, mut server) = socket_pair();
    let (client, mut reader) = socket_pair();
    let server_side = std::thread::spawn(move || {
        server.write_all(&pattern(40 * 1024, 9)).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    });
    // The client takes the first bytes and hangs up while the server says nothing more.
    let client_side = std::thread::spawn(move || {
        let mut got = vec![0u8; 40 * 1024];
        reader.read_exact(&mut got).unwrap();
    });
    let started = Instant::now();
    let mut sent = 0;
    let done = splice_body(&up, &client, 100 * 1024, DEADLINES, &mut sent, &|_| {}).await;
    match done {
        Some(Err(CopyError::Client(e))) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "noticed before the server's next bytes, not at the read deadline"
    );
    joined(client_side).await;
    joined(server_side).await;
}
