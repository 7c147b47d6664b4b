//! Load feedback (`load_feedback`): the prober thread polls each server's metrics page
//! and publishes the requests the server reports (waiting + running) in the server's
//! shared marks ([`crate::balance::Peers::report_load`]), where every balancer adds them
//! to the load it sees. Nothing runs on the workers.
//!
//! A poll is one `GET` (`Connection: close`, at most [`MAX_PAGE`] bytes, within the
//! group's interval); its page is read with [`super::prom_text`]. A poll that fails (no
//! connection, a status other than 200, neither metric on the page) publishes nothing: the
//! last value stands until it is stale (three intervals old), then the balancers ignore
//! it — never fatal, the server stays in the rotation.
//!
//! Scheduling mirrors the health probes ([`super::targets`]): one poller per (upstream
//! name, address), its first poll at a random point of its first interval, later ones one
//! interval apart (± 10%), never two at once for one server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::prom_text;
use super::targets::Key;
use crate::http::body::ChunkedDecoder;
use crate::http::head::{ResponseBody, parse_response};
use crate::snapshot::{LoadFeedback, Snapshot};

/// Largest metrics page read: vLLM's, histograms and all, is well under this.
pub const MAX_PAGE: usize = 4 << 20;

/// How to poll one server, built when the poller learns of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poll {
    pub addr: SocketAddr,
    pub request: Bytes,
    pub waiting: Option<String>,
    pub running: Option<String>,
    pub timeout: Duration,
}

/// One polled server.
struct Poller {
    poll: Poll,
    interval: Duration,
    next: Instant,
    /// Set while a poll runs (its number), so a server is never polled twice at once.
    running: Option<u64>,
}

/// Every polled server.
pub struct Pollers {
    map: BTreeMap<Key, Poller>,
    /// xorshift64 state, never zero.
    random: super::Jitter,
    polls: u64,
}

/// A poll to start now; hand its result back with [`Pollers::finish`].
pub struct DuePoll {
    pub key: Key,
    pub poll: Poll,
    pub id: u64,
}

impl Poll {
    pub fn new(addr: SocketAddr, feedback: &LoadFeedback) -> Poll {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringway-feedback\r\n\
             Accept: text/plain\r\nConnection: close\r\n\r\n",
            feedback.path
        );
        Poll {
            addr,
            request: Bytes::from(request),
            waiting: feedback.waiting.clone(),
            running: feedback.running.clone(),
            timeout: feedback.interval,
        }
    }

    /// Polls the server: the requests it reports (waiting + running), or why not.
    pub async fn run(&self) -> Result<u64, String> {
        let page = match monoio::time::timeout(self.timeout, self.fetch()).await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("timed out after {:?}", self.timeout)),
        };
        self.read(&page)
    }

    /// The load a page reports: the named metrics summed (a missing one counts 0, both
    /// missing is a failure), rounded, never negative.
    pub fn read(&self, page: &[u8]) -> Result<u64, String> {
        let get = |name: &Option<String>| name.as_deref().and_then(|n| prom_text::sum(page, n));
        match (get(&self.waiting), get(&self.running)) {
            (None, None) => Err("the page has none of the configured metrics".into()),
            (w, r) => Ok((w.unwrap_or(0.0) + r.unwrap_or(0.0)).round().max(0.0) as u64),
        }
    }

    /// The body of a 200 answer to the poll.
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        let mut stream = TcpStream::connect_addr(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (written, _) = stream.write_all(self.request.clone()).await;
        written.map_err(|e| format!("send: {e}"))?;
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        loop {
            let (read, chunk) = stream.read(Vec::with_capacity(16 * 1024)).await;
            match read.map_err(|e| format!("read: {e}"))? {
                0 => break,
                _ => buf.extend_from_slice(&chunk),
            }
            if buf.len() > MAX_PAGE {
                return Err(format!("page larger than {MAX_PAGE} bytes"));
            }
        }
        body(&buf)
    }
}

/// The body of a whole response in `buf` (the server closed after it), if its status is 200.
fn body(buf: &[u8]) -> Result<Vec<u8>, String> {
    let head = parse_response(buf, false, 64 * 1024)
        .map_err(|_| "malformed response head".to_string())?
        .ok_or("connection closed before a whole response head")?;
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    let rest = &buf[head.len..];
    match head.body {
        ResponseBody::None => Ok(Vec::new()),
        ResponseBody::Length(n) => usize::try_from(n)
            .ok()
            .and_then(|n| rest.get(..n))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "body shorter than its Content-Length".into()),
        ResponseBody::Eof => Ok(rest.to_vec()),
        ResponseBody::Chunked => {
            let mut ranges = Vec::new();
            let decoded = ChunkedDecoder::new()
                .decode(rest, &mut ranges)
                .map_err(|_| "malformed chunked body".to_string())?;
            if !decoded.done {
                return Err("chunked body cut short".into());
            }
            Ok(ranges.into_iter().flat_map(|r| &rest[r]).copied().collect())
        }
    }
}

impl Pollers {
    pub fn new(seed: u64) -> Pollers {
        Pollers {
            map: BTreeMap::new(),
            random: super::Jitter::new(seed),
            polls: 0,
        }
    }

    /// Follows `snap`: learns the servers of groups with `load_feedback`, takes new
    /// settings for those that stay, forgets the rest.
    pub fn follow(&mut self, snap: &Snapshot, now: Instant) {
        let mut seen = std::collections::BTreeSet::new();
        for group in &snap.groups {
            let Some(feedback) = &group.load_feedback else {
                continue;
            };
            for server in group.peers.servers() {
                let key = (group.name.clone(), server.addr);
                if !seen.insert(key.clone()) {
                    continue;
                }
                let poll = Poll::new(server.addr, feedback);
                let interval = feedback.interval;
                let ms = interval.as_millis().max(1) as u64;
                let first = now + Duration::from_millis(self.random.draw() % ms);
                let poller = self.map.entry(key).or_insert_with(|| Poller {
                    poll: poll.clone(),
                    interval,
                    next: first,
                    running: None,
                });
                if poller.interval != interval {
                    poller.next = poller.next.min(first);
                }
                (poller.poll, poller.interval) = (poll, interval);
            }
        }
        self.map.retain(|key, _| seen.contains(key));
    }

    /// The polls to start at `now`.
    pub fn start_due(&mut self, now: Instant) -> Vec<DuePoll> {
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, p)| p.running.is_none() && p.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut due = Vec::with_capacity(keys.len());
        for key in keys {
            self.polls += 1;
            let id = self.polls;
            let jitter = self.random.draw();
            let Some(poller) = self.map.get_mut(&key) else {
                continue;
            };
            let ms = poller.interval.as_millis() as u64;
            let spread = ms / 10;
            poller.next = now + Duration::from_millis(ms - spread + jitter % (2 * spread + 1));
            poller.running = Some(id);
            due.push(DuePoll {
                key,
                poll: poller.poll.clone(),
                id,
            });
        }
        due
    }

    /// Poll `id` of `key` is over; `false` when the server was forgotten (or learnt again)
    /// meanwhile, and its result must be dropped.
    pub fn finish(&mut self, key: &Key, id: u64, now: Instant) -> bool {
        match self.map.get_mut(key) {
            Some(poller) if poller.running == Some(id) => {
                poller.running = None;
                poller.next = poller.next.max(now);
                true
            }
            _ => false,
        }
    }

    /// The earliest start among servers not being polled now.
    pub fn next_start(&self) -> Option<Instant> {
        self.map
            .values()
            .filter(|p| p.running.is_none())
            .map(|p| p.next)
            .min()
    }
}

/// Publishes `load` (waiting + running, as the server reported it at `now_ms`) to every
/// server of `snap` under `key`.
pub fn publish(snap: &Snapshot, key: &Key, load: u64, now_ms: u64) {
    let (upstream, addr) = key;
    let Some(group) = snap.group_by_name(upstream).map(|id| &snap.groups[id]) else {
        return;
    };
    for (idx, server) in group.peers.servers().iter().enumerate() {
        if server.addr == *addr {
            group.peers.report_load(idx, load, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(waiting: Option<&str>, running: Option<&str>) -> Poll {
        let feedback = LoadFeedback {
            path: "/metrics".into(),
            waiting: waiting.map(str::to_string),
            running: running.map(str::to_string),
            interval: Duration::from_secs(1),
        };
        Poll::new("127.0.0.1:8000".parse().unwrap(), &feedback)
    }

    #[test]
    fn the_poll_asks_for_the_text_format_and_closes() {
        assert_eq!(
            poll(Some("w"), None).request,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: ringway-feedback\r\n\
             Accept: text/plain\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn waiting_and_running_add_up_and_one_may_be_missing() {
        let page = b"w{e=\"0\"} 2\nw{e=\"1\"} 3\nr 4.4\n";
        assert_eq!(poll(Some("w"), Some("r")).read(page), Ok(9));
        assert_eq!(poll(Some("w"), Some("absent")).read(page), Ok(5));
        assert_eq!(poll(None, Some("r")).read(page), Ok(4));
        assert!(poll(Some("x"), Some("y")).read(page).is_err());
        assert_eq!(poll(Some("n"), None).read(b"n -3\n"), Ok(0));
    }

    #[test]
    fn only_a_whole_200_answer_has_a_page() {
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nq 1\nextra";
        assert_eq!(body(length).unwrap(), b"q 1\n");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nq \r\n2\r\n1\n\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), b"q 1\n");
        let eof = b"HTTP/1.0 200 OK\r\n\r\nq 1\n";
        assert_eq!(body(eof).unwrap(), b"q 1\n");
        assert_eq!(
            body(b"HTTP/1.1 503 x\r\nContent-Length: 0\r\n\r\n").unwrap_err(),
            "status 503"
        );
        assert!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nq 1\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nq ").is_err());
        assert!(body(b"HTTP/1.1 200").is_err());
        assert!(body(b"garbage\r\n\r\n").is_err());
    }
}
