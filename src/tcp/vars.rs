//! Template variables of one tcp-mode connection: its hash key (`$remote_addr`) and its
//! access-log line (`log.tcp_access_format`: bytes both ways, duration, servers tried).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::vars::{Stamp, push_addr, push_ip, push_now, push_opt_secs, push_secs, push_u64};
use crate::template::{Var, VarSource};

/// One connect attempt on a server.
#[derive(Clone, Copy, Debug)]
pub struct ConnectTry {
    pub addr: SocketAddr,
    /// How long the connect took; `None` when it failed.
    pub connect: Option<Duration>,
}

/// What is known about one tcp connection while it is relayed.
pub struct SessionVars {
    pub peer: SocketAddr,
    pub worker: usize,
    pub started: Instant,
    /// nginx stream's `$status`: 200 relayed, 502 no server could be connected (504 when
    /// the last connect timed out), 503 every server at `max_conns`, 499 the client left
    /// while waiting for a slot; 0 while unknown.
    pub status: u16,
    /// Client → server bytes.
    pub received: u64,
    /// Server → client bytes.
    pub sent: u64,
    /// Every connect attempt, in order (`$upstream_addr`, `$upstream_connect_time`).
    pub tries: Vec<ConnectTry>,
    /// When the relay ended (the session time stops there).
    pub ended: Option<Instant>,
}

impl SessionVars {
    pub fn new(peer: SocketAddr, worker: usize) -> SessionVars {
        SessionVars {
            peer,
            worker,
            started: Instant::now(),
            status: 0,
            received: 0,
            sent: 0,
            tries: Vec::new(),
            ended: None,
        }
    }

    /// The server the bytes went to, once one was connected.
    pub fn upstream(&self) -> Option<SocketAddr> {
        self.tries
            .iter()
            .rev()
            .find(|t| t.connect.is_some())
            .map(|t| t.addr)
    }

    fn duration(&self) -> Duration {
        self.ended.unwrap_or_else(Instant::now) - self.started
    }

    /// `a, b, c` as nginx lists the attempts of one request.
    fn per_try(&self, out: &mut Vec<u8>, each: impl Fn(&ConnectTry, &mut Vec<u8>)) {
        for (i, t) in self.tries.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            each(t, out);
        }
    }
}

impl VarSource for SessionVars {
    /// Request-only variables (`$request`, `$http_NAME`, ...) have no value here (`-`).
    fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
        match var {
            Var::RemoteAddr => push_ip(out, self.peer.ip()),
            Var::RemotePort => push_u64(out, u64::from(self.peer.port())),
            Var::TimeLocal => push_now(out, Stamp::Local),
            Var::TimeIso8601 => push_now(out, Stamp::Iso8601),
            Var::Worker => push_u64(out, self.worker as u64),
            Var::Scheme => out.extend_from_slice(b"tcp"),
            Var::Status => push_u64(out, u64::from(self.status)),
            Var::BytesSent | Var::BodyBytesSent => push_u64(out, self.sent),
            Var::BytesReceived | Var::RequestLength => push_u64(out, self.received),
            Var::SessionTime | Var::RequestTime => push_secs(out, self.duration()),
            Var::UpstreamAddr => self.per_try(out, |t, out| push_addr(out, t.addr)),
            Var::UpstreamConnectTime => self.per_try(out, |t, out| push_opt_secs(out, t.connect)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn render(format: &str, vars: &SessionVars) -> String {
        let mut out = Vec::new();
        Template::parse(format).unwrap().render(vars, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_relayed_connection_renders_bytes_both_ways_time_and_servers() {
        let mut vars = SessionVars::new("192.0.2.1:4000".parse().unwrap(), 3);
        vars.status = 200;
        vars.received = 10;
        vars.sent = 2048;
        vars.tries.push(ConnectTry {
            addr: "127.0.0.1:9".parse().unwrap(),
            connect: None,
        });
        vars.tries.push(ConnectTry {
            addr: "127.0.0.1:10".parse().unwrap(),
            connect: Some(Duration::from_millis(2)),
        });
        vars.ended = Some(vars.started + Duration::from_millis(1500));
        let line = render(
            "$remote_addr:$remote_port $status $bytes_sent $bytes_received $session_time \
             $upstream_addr|$upstream_connect_time $worker",
            &vars,
        );
        assert_eq!(
            line,
            "192.0.2.1:4000 200 2048 10 1.500 127.0.0.1:9, 127.0.0.1:10|-, 0.002 3"
        );
        assert_eq!(vars.upstream(), Some("127.0.0.1:10".parse().unwrap()));
    }

    #[test]
    fn request_only_variables_are_empty() {
        let vars = SessionVars::new("[::1]:5".parse().unwrap(), 0);
        assert_eq!(render("[$request$http_host$uri]", &vars), "[]");
        assert_eq!(vars.upstream(), None);
    }
}
