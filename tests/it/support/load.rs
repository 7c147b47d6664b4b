//! [`Load`]: keep-alive clients sending `GET /` in a loop until stopped, recording every
//! failure, as a steady load during a reload, a drain or an upgrade.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::Client;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// Running load clients.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    /// `clients` threads, each on its own keep-alive connection to `addr`, opening a new one
    /// after `per_connection` requests, after a `Connection: close` answer (as every
    /// keep-alive client does) and after a failure.
    pub fn start(addr: SocketAddr, clients: usize, per_connection: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|i| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || client(i, addr, per_connection, &stop, &ok))
            })
            .collect();
        Load { stop, ok, clients }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; gives the 200s and every failure.
    pub fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .clients
            .into_iter()
            .flat_map(|t| {
                t.join()
                    .unwrap_or_else(|_| vec!["a client panicked".into()])
            })
            .collect();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

fn client(
    i: usize,
    addr: SocketAddr,
    per_connection: usize,
    stop: &AtomicBool,
    ok: &AtomicUsize,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut c = Client::connect(addr);
    let mut on_connection = 0;
    while !stop.load(Ordering::Relaxed) {
        let result = c
            .try_send(GET)
            .map_err(|e| e.to_string())
            .and_then(|_| c.try_read_response());
        on_connection += 1;
        let fresh = match result {
            Ok(r) if r.status == 200 => {
                ok.fetch_add(1, Ordering::Relaxed);
                r.says_close()
            }
            Ok(r) => {
                failures.push(format!("client {i}: status {}", r.status));
                false
            }
            Err(e) => {
                failures.push(format!("client {i}: {e}"));
                true
            }
        };
        if fresh || on_connection == per_connection {
            c = Client::connect(addr);
            on_connection = 0;
        }
    }
    failures
}
