//! The immutable, validated state every worker reads: listeners, routes, upstream groups.
//!
//! A `Snapshot` is built once by [`crate::config::load`] on the control path, then shared
//! read-only (`Arc<Snapshot>`). Nothing in it is mutated afterwards except the process-wide
//! atomics inside [`crate::balance::Peers`] (active counts, failure marks) that balancing needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::Peers;
use crate::template::Template;

/// Index of a group in [`Snapshot::groups`].
pub type GroupId = usize;

/// One validated configuration.
pub struct Snapshot {
    /// Goes up by one on every successful reload; workers compare it to refresh local state.
    pub generation: u64,
    /// The file this snapshot was read from (for messages and reloads).
    pub source: PathBuf,
    pub runtime: RuntimeSettings,
    pub log: LogSettings,
    pub admin: Option<AdminSettings>,
    pub listeners: Vec<Listener>,
    /// Upstream groups, in the order of their names; listeners and routes refer to them by index.
    pub groups: Vec<Arc<Group>>,
}

impl Snapshot {
    /// Carries per-server state (active counts, failure marks, probe verdicts) over from
    /// `old` for every server that stays: same upstream name, same address; and each group's
    /// wait queue for every group that stays (same name). Call on a snapshot
    /// nobody else holds yet (a group already shared is left as it is).
    pub fn inherit(&mut self, old: &Snapshot) {
        for group in &mut self.groups {
            let Some(old_group) = old.groups.iter().find(|g| g.name == group.name) else {
                continue;
            };
            if let Some(group) = Arc::get_mut(group) {
                group.peers.inherit(&old_group.peers);
            }
        }
    }

    /// Decides each listener's [`Needs`] from its routes and the templates that may render
    /// for it: the access format (when the access log is on), its header rules, every hash key.
    pub fn find_needs(&mut self) {
        use crate::template::{Template, Var};
        let model = |v: &Var| *v == Var::RequestModel;
        let times = |v: &Var| {
            matches!(
                v,
                Var::UpstreamConnectTime | Var::UpstreamResponseTime | Var::UpstreamFirstTokenTime
            )
        };
        let access = self
            .log
            .access_log
            .is_some()
            .then_some(&self.log.access_format);
        let keys: Vec<&Template> = self
            .groups
            .iter()
            .filter_map(|g| g.hash_key.as_ref())
            .collect();
        for listener in &mut self.listeners {
            let rules = listener
                .request_headers
                .iter()
                .chain(&listener.response_headers);
            let templates: Vec<&Template> = access
                .into_iter()
                .chain(rules.map(|r| &r.value))
                .chain(keys.iter().copied())
                .collect();
            let model_routes = listener.routes.iter().any(|r| r.model.is_some());
            let reachable =
                std::iter::once(listener.group).chain(listener.routes.iter().map(|r| r.group));
            let prompt_prefix = reachable
                .filter_map(|g| self.groups.get(g))
                .filter(|g| g.peers.policy() == crate::balance::Policy::Prompt)
                .map(|g| g.prompt_prefix)
                .max()
                .unwrap_or(0);
            listener.needs = Needs {
                model: model_routes || templates.iter().any(|t| t.uses(model)),
                prompt_prefix,
                upstream_times: templates.iter().any(|t| t.uses(times)),
            };
        }
    }

    /// The index in `listeners` of the listener bound to `bind`.
    pub fn listener_index(&self, bind: SocketAddr) -> Option<usize> {
        self.listeners.iter().position(|l| l.bind == bind)
    }

    /// The listener bound to `bind`, if this snapshot has one.
    pub fn listener_by_bind(&self, bind: SocketAddr) -> Option<&Listener> {
        self.listener_index(bind).map(|i| &self.listeners[i])
    }

    /// Whether any group has a server at `addr`.
    pub fn has_server(&self, addr: SocketAddr) -> bool {
        self.groups
            .iter()
            .any(|g| g.peers.servers().iter().any(|s| s.addr == addr))
    }

    /// The group with this name, if any.
    pub fn group_by_name(&self, name: &str) -> Option<GroupId> {
        self.groups.iter().position(|g| g.name == name)
    }
}

/// `[runtime]`.
pub struct RuntimeSettings {
    /// Resolved number of event loops ("auto" already replaced by the online core count).
    pub workers: usize,
    pub pin_workers: bool,
    pub driver: Driver,
    pub pid_file: Option<PathBuf>,
    /// How long in-flight requests and streams may run once a graceful stop drains.
    pub shutdown_timeout: Duration,
    /// On a graceful stop, how long to keep accepting (with `/healthz` at 503) before draining,
    /// so a load balancer or keepalived has time to move traffic away.
    pub shutdown_delay: Duration,
    /// Client connections for the whole process; beyond it new ones are closed at once.
    pub max_connections: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, or epoll when io_uring is unavailable.
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// `[log]`.
pub struct LogSettings {
    pub level: LogLevel,
    pub error_log: LogTarget,
    /// `None` when `access_log = "off"`.
    pub access_log: Option<LogTarget>,
    /// "combined" and "upstream" are expanded to their templates at load time.
    pub access_format: Template,
    /// One line per tcp-mode connection (`log.tcp_access_format`).
    pub tcp_access_format: Template,
}

/// `[admin]`.
pub struct AdminSettings {
    pub bind: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
}

/// `listener.gzip`.
pub struct Gzip {
    pub level: u32,
    pub min_length: u64,
    /// Lower-cased media types, without parameters.
    pub types: Vec<String>,
    /// `http_version = "1.0"`: HTTP/1.0 clients get compressed bodies too (ended by the
    /// close, as they cannot take chunks); otherwise they get the identity body, as with
    /// nginx's default `gzip_http_version 1.1`.
    pub http10: bool,
}

/// One header set on the way up (`request_headers`) or down (`response_headers`).
pub struct HeaderRule {
    /// As written in the config (the case sent on the wire).
    pub name: String,
    /// Lower-cased, for replacing a header of the same name.
    pub lower: String,
    pub value: Template,
}

/// `[[listener.route]]`: first match wins.
pub struct Route {
    pub path_prefix: Option<String>,
    /// Lower-cased host without port.
    pub host: Option<String>,
    /// The body's top-level `"model"` string, compared as raw JSON text (see
    /// [`crate::http::model`]).
    pub model: Option<String>,
    pub group: GroupId,
}

/// `[[listener]]`.
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub mode: Mode,
    /// Where requests go when no route matches.
    pub group: GroupId,
    pub routes: Vec<Route>,
    pub client_max_body_size: u64,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub client_body_buffer_size: usize,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
    pub max_header_size: usize,
    pub proxy_protocol: ProxyProtocol,
    pub gzip: Option<Gzip>,
    pub request_headers: Vec<HeaderRule>,
    pub response_headers: Vec<HeaderRule>,
    /// Lower-cased names.
    pub hide_response_headers: Vec<String>,
    /// What requests on this listener must record for the templates that render them.
    pub needs: Needs,
}

/// Per-request work that only some configurations use, decided once at load time so
/// that a request does not scan templates to find out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `$request_model` is rendered somewhere, or a route matches on the model: read the body
    /// into the replay copy until its `"model"` is found (or the copy is full, or the body
    /// ends) before a server is chosen.
    pub model: bool,
    /// A group this listener can send to balances by prompt: the longest `prompt_prefix`
    /// among them (0: none). The body is then read into the replay copy until its prompt key
    /// is found (or the copy is full, or the body ends) before a server is chosen.
    pub prompt_prefix: usize,
    /// `$upstream_connect_time`, `$upstream_response_time` or `$upstream_first_token_time`
    /// is rendered: time those moments (the first byte is always timed, for metrics).
    pub upstream_times: bool,
}

impl Listener {
    /// The group for a request with this path, port-less host (any letter case) and body
    /// `"model"` string (`None`: the body has none, or not within the replay copy).
    pub fn route(&self, path: &[u8], host: Option<&[u8]>, model: Option<&[u8]>) -> GroupId {
        for route in &self.routes {
            if let Some(want) = &route.model
                && model != Some(want.as_bytes())
            {
                continue;
            }
            if let Some(prefix) = &route.path_prefix
                && !path.starts_with(prefix.as_bytes())
            {
                continue;
            }
            if let Some(want) = &route.host
                && !host.is_some_and(|h| h.eq_ignore_ascii_case(want.as_bytes()))
            {
                continue;
            }
            return route.group;
        }
        self.group
    }
}

/// Which failures of an attempt may be retried on another server (nginx `proxy_next_upstream`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    pub invalid_header: bool,
    pub http_500: bool,
    pub http_502: bool,
    pub http_503: bool,
    pub http_504: bool,
    pub http_403: bool,
    pub http_404: bool,
    pub http_429: bool,
    /// nginx's `non_idempotent`: also retry POST/LOCK/PATCH.
    pub non_idempotent: bool,
}

impl NextUpstream {
    /// Whether a response with this status counts as a failed attempt.
    pub fn on_status(&self, status: u16) -> bool {
        match status {
            500 => self.http_500,
            502 => self.http_502,
            503 => self.http_503,
            504 => self.http_504,
            403 => self.http_403,
            404 => self.http_404,
            429 => self.http_429,
            _ => false,
        }
    }
}

/// `health_check`: active probes of every server of a group, run by the prober thread
/// ([`crate::control::health`]).
pub struct HealthCheck {
    /// The request target of an HTTP probe; `None` makes the probe a TCP connect.
    pub path: Option<String>,
    /// "GET" unless configured (a body needs an explicit method).
    pub method: String,
    /// Sent with a `Content-Length`: a 1-token generation proves the engine answers, where
    /// a `/health` may still say 200 with the engine dead.
    pub body: Option<String>,
    /// Extra request headers, as written (a `Host` here replaces the server's address).
    pub headers: Vec<(String, String)>,
    /// Time between the starts of two probes of one server (jittered by the prober).
    pub interval: Duration,
    /// The whole probe (connect, request, response head) must finish within this.
    pub timeout: Duration,
    /// Consecutive passed probes that bring a down server back.
    pub rise: u32,
    /// Consecutive failed probes that take an up server out.
    pub fall: u32,
    /// Inclusive status range counted as healthy.
    pub expect: (u16, u16),
}

/// `load_feedback`: the prober polls each server's metrics page
/// ([`crate::control::health::feedback`]) and the balancers add what it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFeedback {
    /// The metrics page, `/metrics` unless configured.
    pub path: String,
    /// The metric counting requests waiting in the server's queue (summed over labels).
    pub waiting: Option<String>,
    /// The metric counting requests the server is running.
    pub running: Option<String>,
    /// Time between two polls of one server; also each poll's time limit. A report older
    /// than three intervals is ignored.
    pub interval: Duration,
}

/// `queue`: how many requests may wait for a server below `max_conns`, and how long each.
/// The line itself is `Peers::queue` (process-wide, kept over reloads by group name).
pub struct Queue {
    pub max: usize,
    pub timeout: Duration,
}

/// `[upstreams.NAME]`: servers, their balancer and how to talk to them.
pub struct Group {
    pub name: String,
    pub peers: Peers,
    /// For `balance = "hash"`.
    pub hash_key: Option<Template>,
    /// Idle pooled connections kept per worker per server.
    pub keepalive: usize,
    pub keepalive_requests: u32,
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    /// Longest gap between two reads from the server.
    pub read_timeout: Duration,
    /// Longest wait for the response head once the request is sent (default `read_timeout`).
    pub first_byte_timeout: Duration,
    /// `balance = "prompt"`: leading bytes of a bare `prompt` string that form the key.
    pub prompt_prefix: usize,
    pub next_upstream: NextUpstream,
    /// 0 = as many as there are servers.
    pub next_upstream_tries: u32,
    /// Zero = no limit.
    pub next_upstream_timeout: Duration,
    pub retry_non_idempotent: bool,
    pub health_check: Option<HealthCheck>,
    pub queue: Option<Queue>,
    pub slow_start: Option<Duration>,
    pub load_feedback: Option<LoadFeedback>,
}
