//! The TOML schema as serde structs: every key optional (defaults and "required" are decided
//! in validation, so a removed bad value never causes a second, misleading error), unknown
//! keys rejected, and values wrapped in `Spanned` where validation must point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::units::{Dur, RawNextUpstream, RawProxyProtocol, Size, Workers};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub runtime: Option<Spanned<RawRuntime>>,
    pub log: Option<Spanned<RawLog>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub listener: Option<Vec<Spanned<RawListener>>>,
    pub upstreams: Option<BTreeMap<Spanned<String>, Spanned<RawUpstream>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub workers: Option<Spanned<Workers>>,
    pub pin_workers: Option<bool>,
    pub driver: Option<RawDriver>,
    pub pid_file: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<Dur>>,
    pub shutdown_delay: Option<Spanned<Dur>>,
    pub max_connections: Option<Spanned<i64>>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDriver {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<RawLevel>,
    pub error_log: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub access_format: Option<Spanned<String>>,
    pub tcp_access_format: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: Option<Spanned<String>>,
}

/// `[[listener]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<Spanned<String>>,
    pub bind: Option<Spanned<String>>,
    pub mode: Option<Spanned<RawMode>>,
    pub upstream: Option<Spanned<String>>,
    pub client_max_body_size: Option<Spanned<Size>>,
    pub client_header_timeout: Option<Spanned<Dur>>,
    pub client_body_timeout: Option<Spanned<Dur>>,
    pub client_body_buffer_size: Option<Spanned<Size>>,
    pub keepalive_timeout: Option<Spanned<Dur>>,
    pub keepalive_requests: Option<Spanned<i64>>,
    pub max_header_size: Option<Spanned<Size>>,
    pub proxy_protocol: Option<Spanned<RawProxyProtocol>>,
    pub gzip: Option<Spanned<RawGzip>>,
    pub request_headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub response_headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub hide_response_headers: Option<Spanned<Vec<Spanned<String>>>>,
    pub route: Option<Vec<Spanned<RawRoute>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    Http,
    Tcp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGzip {
    pub level: Option<Spanned<i64>>,
    pub min_length: Option<Spanned<Size>>,
    pub types: Option<Spanned<Vec<Spanned<String>>>>,
    pub http_version: Option<Spanned<String>>,
}

/// `[[listener.route]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path_prefix: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    /// The top-level `"model"` string of a JSON request body.
    pub model: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub balance: Option<Spanned<RawBalance>>,
    pub hash_key: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<i64>>,
    pub keepalive_requests: Option<Spanned<i64>>,
    pub keepalive_timeout: Option<Spanned<Dur>>,
    pub connect_timeout: Option<Spanned<Dur>>,
    pub send_timeout: Option<Spanned<Dur>>,
    pub read_timeout: Option<Spanned<Dur>>,
    pub next_upstream: Option<Spanned<RawNextUpstream>>,
    pub next_upstream_tries: Option<Spanned<i64>>,
    pub next_upstream_timeout: Option<Spanned<Dur>>,
    pub retry_non_idempotent: Option<bool>,
    pub servers: Option<Spanned<Vec<Spanned<RawServer>>>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub queue: Option<Spanned<RawQueue>>,
    pub slow_start: Option<Spanned<Dur>>,
    pub first_byte_timeout: Option<Spanned<Dur>>,
    pub hash_balance_factor: Option<Spanned<i64>>,
    pub hash_balance_slack: Option<Spanned<i64>>,
    pub prompt_prefix: Option<Spanned<Size>>,
    pub load_feedback: Option<Spanned<RawLoadFeedback>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawBalance {
    RoundRobin,
    LeastConn,
    IpHash,
    Hash,
    RandomTwo,
    LeastTime,
    Prompt,
}

/// One entry of `servers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub addr: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<Dur>>,
    pub backup: Option<bool>,
    pub down: Option<bool>,
    pub max_conns: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub expect: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadFeedback {
    pub preset: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub waiting: Option<Spanned<String>>,
    pub running: Option<Spanned<String>>,
    pub interval: Option<Spanned<Dur>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<Dur>>,
}
