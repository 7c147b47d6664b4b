//! `[upstreams.NAME]` tables to [`Group`]s: servers, balancing policy and hash key, timeouts,
//! retry conditions (`next_upstream`) and the queue; `health_check` is read in [`super::health`],
//! `load_feedback` in [`super::feedback`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::check::{Zero, resolve};
use super::raw::{RawBalance, RawQueue, RawServer, RawUpstream};
use super::source::{Report, index, join};
use super::units::{Dur, RawNextUpstream};
use crate::balance::{MAX_SERVERS, Peers, Policy, Server};
use crate::snapshot::{Group, NextUpstream, Queue};
use crate::template::Template;

/// `prompt_prefix` when not set: long enough to hold a typical system prompt's opening.
const DEFAULT_PROMPT_PREFIX: u64 = 2048;

/// Highest server weight: keeps weight sums of [`MAX_SERVERS`] servers far inside `u32`.
const MAX_WEIGHT: i64 = 1_000_000;

/// Every group, in the order of their names (the map is sorted), which is `GroupId` order.
/// `workers` is how many workers will count requests (see [`Peers::with_workers`]).
pub fn groups(
    r: &mut Report<'_, '_>,
    raw: Option<&BTreeMap<Spanned<String>, Spanned<RawUpstream>>>,
    workers: usize,
) -> Vec<Arc<Group>> {
    raw.into_iter()
        .flatten()
        .map(|(name, table)| Arc::new(group(r, name, table, workers)))
        .collect()
}

fn group(
    r: &mut Report<'_, '_>,
    name: &Spanned<String>,
    table: &Spanned<RawUpstream>,
    workers: usize,
) -> Group {
    let base = join("upstreams", name.get_ref());
    r.name(name.get_ref(), &name.span(), &base);
    let raw = table.get_ref();
    let key = |k: &str| join(&base, k);
    let policy = policy(raw);
    let hash_key = hash_key(r, raw, &table.span(), &base, policy);
    let servers = servers(r, raw.servers.as_ref(), &table.span(), &base);
    // Every upstream timeout defaults to nginx's 60s.
    let timeout = |r: &mut Report<'_, '_>, v: &Option<Spanned<Dur>>, k: &str, zero: Zero| {
        r.dur(v, &join(&base, k), Duration::from_secs(60), zero)
    };
    let queue = raw.queue.as_ref().map(|q| queue(r, q, &key("queue")));
    // "0s" reads naturally as "no slow start".
    let slow_start = Some(r.dur(
        &raw.slow_start,
        &key("slow_start"),
        Duration::ZERO,
        Zero::Allowed,
    ))
    .filter(|d| !d.is_zero());
    let load_feedback = raw
        .load_feedback
        .as_ref()
        .map(|f| super::feedback::load_feedback(r, f, &key("load_feedback")));
    let read_timeout = timeout(r, &raw.read_timeout, "read_timeout", Zero::Rejected);
    // Varnish's first_byte_timeout: a non-streamed generation's whole run; by default
    // the head is waited for like any other read.
    let first_byte_timeout = r.dur(
        &raw.first_byte_timeout,
        &key("first_byte_timeout"),
        read_timeout,
        Zero::Rejected,
    );
    Group {
        name: name.get_ref().clone(),
        peers: Peers::new(policy, servers)
            .with_workers(workers)
            .with_slow_start(slow_start)
            .with_queue(queue.is_some())
            .with_balance_factor(balance_factor(r, raw, &base, policy))
            .with_balance_slack(balance_slack(r, raw, &base))
            .with_load_feedback(load_feedback.as_ref().map(|f| f.interval)),
        prompt_prefix: prompt_prefix(r, raw, &base, policy),
        first_byte_timeout,
        hash_key,
        keepalive: r.int(&raw.keepalive, &key("keepalive"), 64, 0..=100_000) as usize,
        keepalive_requests: r.int(
            &raw.keepalive_requests,
            &key("keepalive_requests"),
            1000,
            1..=u32::MAX.into(),
        ) as u32,
        // Zero is meaningful: idle connections are not kept.
        keepalive_timeout: timeout(
            r,
            &raw.keepalive_timeout,
            "keepalive_timeout",
            Zero::Allowed,
        ),
        connect_timeout: timeout(r, &raw.connect_timeout, "connect_timeout", Zero::Rejected),
        send_timeout: timeout(r, &raw.send_timeout, "send_timeout", Zero::Rejected),
        read_timeout,
        next_upstream: next_upstream(r, raw.next_upstream.as_ref(), &key("next_upstream")),
        next_upstream_tries: r.int(
            &raw.next_upstream_tries,
            &key("next_upstream_tries"),
            0,
            0..=MAX_SERVERS as i64,
        ) as u32,
        next_upstream_timeout: r.dur(
            &raw.next_upstream_timeout,
            &key("next_upstream_timeout"),
            Duration::ZERO,
            Zero::Allowed,
        ),
        retry_non_idempotent: raw.retry_non_idempotent.unwrap_or(false),
        health_check: raw
            .health_check
            .as_ref()
            .map(|h| super::health::health_check(r, h, &key("health_check"))),
        queue,
        slow_start,
        load_feedback,
    }
}

fn policy(raw: &RawUpstream) -> Policy {
    match raw.balance.as_ref().map(|b| *b.get_ref()) {
        None | Some(RawBalance::RoundRobin) => Policy::RoundRobin,
        Some(RawBalance::LeastConn) => Policy::LeastConn,
        Some(RawBalance::IpHash) => Policy::IpHash,
        Some(RawBalance::Hash) => Policy::Hash,
        Some(RawBalance::RandomTwo) => Policy::RandomTwo,
        Some(RawBalance::LeastTime) => Policy::LeastTime,
        Some(RawBalance::Prompt) => Policy::Prompt,
    }
}

/// `hash_balance_factor`: 0 (off) or a percentage of the mean load of at least 100 (below
/// it, the servers together could not take every request); only keyed policies have it.
fn balance_factor(r: &mut Report<'_, '_>, raw: &RawUpstream, base: &str, policy: Policy) -> u32 {
    let Some(value) = &raw.hash_balance_factor else {
        return 0;
    };
    let key = join(base, "hash_balance_factor");
    if !matches!(policy, Policy::Hash | Policy::IpHash | Policy::Prompt) {
        let message = "is used only with balance = \"hash\", \"ip_hash\" or \"prompt\"";
        r.at(&value.span(), &key, message);
        return 0;
    }
    match *value.get_ref() {
        0 => 0,
        n @ 100..=100_000 => n as u32,
        n => {
            let message = format!("must be 0 (off) or a percentage from 100 to 100000, found {n}");
            r.at(&value.span(), &key, message);
            0
        }
    }
}

/// `hash_balance_slack`: requests a server takes past the bound of `hash_balance_factor`.
/// Without a factor there is no bound to add to, so a slack alone is an error rather than
/// a setting that silently does nothing.
/// (A factor that is itself wrong is reported once, as the factor's error.)
fn balance_slack(r: &mut Report<'_, '_>, raw: &RawUpstream, base: &str) -> u32 {
    let key = join(base, "hash_balance_slack");
    let slack = r.int(&raw.hash_balance_slack, &key, 0, 0..=100_000) as u32;
    let no_factor = (raw.hash_balance_factor.as_ref()).is_none_or(|f| *f.get_ref() == 0);
    if let Some(value) = &raw.hash_balance_slack
        && no_factor
    {
        let message = "adds to the bound of `hash_balance_factor`, which is not set (or 0)";
        r.at(&value.span(), &key, message);
        return 0;
    }
    slack
}

/// `prompt_prefix`: how many leading bytes of a bare `prompt` string form the key of
/// `balance = "prompt"` (which alone uses it).
fn prompt_prefix(r: &mut Report<'_, '_>, raw: &RawUpstream, base: &str, policy: Policy) -> usize {
    let key = join(base, "prompt_prefix");
    if let Some(value) = &raw.prompt_prefix
        && policy != Policy::Prompt
    {
        r.at(
            &value.span(),
            &key,
            "is used only with balance = \"prompt\"",
        );
    }
    r.size(&raw.prompt_prefix, &key, DEFAULT_PROMPT_PREFIX, 1..=1 << 30) as usize
}

/// `hash_key` belongs to `balance = "hash"` and nothing else.
fn hash_key(
    r: &mut Report<'_, '_>,
    raw: &RawUpstream,
    table: &Range<usize>,
    base: &str,
    policy: Policy,
) -> Option<Template> {
    match (&raw.hash_key, policy) {
        (None, Policy::Hash) => {
            let span = raw.balance.as_ref().map_or(table.clone(), |b| b.span());
            let message = "balance = \"hash\" needs `hash_key`, e.g. \"$remote_addr\"";
            r.at(&span, &join(base, "balance"), message);
            None
        }
        (None, _) => None,
        (Some(key), Policy::Hash) => match Template::parse(key.get_ref()) {
            Ok(t) if t.is_literal() => {
                let message = "has no variables, so every request would go to the same server";
                r.at(&key.span(), &join(base, "hash_key"), message);
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                r.at(
                    &key.span(),
                    &join(base, "hash_key"),
                    format!("invalid template: {e}"),
                );
                None
            }
        },
        (Some(key), _) => {
            let message = "`hash_key` is used only with balance = \"hash\"";
            r.at(&key.span(), &join(base, "hash_key"), message);
            None
        }
    }
}

fn servers(
    r: &mut Report<'_, '_>,
    raw: Option<&Spanned<Vec<Spanned<RawServer>>>>,
    table: &Range<usize>,
    base: &str,
) -> Vec<Server> {
    let key = join(base, "servers");
    let Some(list) = raw else {
        r.at(table, &key, "missing key `servers`");
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        r.at(&list.span(), &key, "must list at least one server");
    } else if list.get_ref().len() > MAX_SERVERS {
        let message = format!("at most {MAX_SERVERS} servers are allowed in one group");
        r.at(&list.span(), &key, message);
    } else if list
        .get_ref()
        .iter()
        .all(|s| s.get_ref().backup == Some(true))
    {
        let message = "needs at least one server that is not a backup";
        r.at(&list.span(), &key, message);
    }
    list.get_ref()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| server(r, s, &index(&key, i)))
        .collect()
}

fn server(r: &mut Report<'_, '_>, table: &Spanned<RawServer>, base: &str) -> Option<Server> {
    let raw = table.get_ref();
    let key = |k: &str| join(base, k);
    let weight = r.int(&raw.weight, &key("weight"), 1, 1..=MAX_WEIGHT) as u32;
    let max_fails = r.int(&raw.max_fails, &key("max_fails"), 1, 0..=1_000_000) as u32;
    let fail_timeout = r.dur(
        &raw.fail_timeout,
        &key("fail_timeout"),
        Duration::from_secs(10),
        Zero::Rejected,
    );
    let max_conns = r.int(&raw.max_conns, &key("max_conns"), 0, 0..=10_000_000) as u32;
    let addr = r.required(&raw.addr, &table.span(), base, "addr")?;
    let addr = match resolve(addr.get_ref(), Zero::Rejected) {
        Ok(a) => a,
        Err(e) => {
            r.at(&addr.span(), &key("addr"), e);
            return None;
        }
    };
    Some(Server {
        addr,
        weight,
        max_fails,
        fail_timeout,
        backup: raw.backup.unwrap_or(false),
        down: raw.down.unwrap_or(false),
        max_conns,
    })
}

/// Whether `name` is one of the `next_upstream` conditions (for translating other
/// proxies' configurations: the same list as the loader's).
pub fn is_next_upstream_condition(name: &str) -> bool {
    condition(&mut NextUpstream::default(), name).is_some()
}

/// The conditions nginx's `proxy_next_upstream` knows, by name.
fn condition<'n>(n: &'n mut NextUpstream, name: &str) -> Option<&'n mut bool> {
    Some(match name {
        "error" => &mut n.error,
        "timeout" => &mut n.timeout,
        "invalid_header" => &mut n.invalid_header,
        "http_500" => &mut n.http_500,
        "http_502" => &mut n.http_502,
        "http_503" => &mut n.http_503,
        "http_504" => &mut n.http_504,
        "http_403" => &mut n.http_403,
        "http_404" => &mut n.http_404,
        "http_429" => &mut n.http_429,
        "non_idempotent" => &mut n.non_idempotent,
        _ => return None,
    })
}

fn next_upstream(
    r: &mut Report<'_, '_>,
    raw: Option<&Spanned<RawNextUpstream>>,
    key: &str,
) -> NextUpstream {
    let mut result = NextUpstream::default();
    let Some(raw) = raw else {
        result.error = true;
        result.timeout = true;
        return result;
    };
    // (name, where it is written, its key path): a single word stands for a list of one.
    let items: Vec<(&str, Range<usize>, String)> = match raw.get_ref() {
        RawNextUpstream::One(name) => vec![(name.as_str(), raw.span(), key.to_string())],
        RawNextUpstream::Many(list) => list
            .iter()
            .enumerate()
            .map(|(i, n)| (n.get_ref().as_str(), n.span(), index(key, i)))
            .collect(),
    };
    if items.is_empty() {
        let message = "must not be empty: list conditions, or \"off\" to never retry";
        r.at(&raw.span(), key, message);
    }
    for (name, span, path) in &items {
        if *name == "off" {
            if items.len() > 1 {
                let message = "\"off\" cannot be combined with other conditions";
                r.at(span, path, message);
            }
            continue;
        }
        match condition(&mut result, name) {
            Some(flag) => *flag = true,
            None => {
                let message = format!(
                    "unknown condition {name:?}: expected error, timeout, invalid_header, \
                     http_500, http_502, http_503, http_504, http_403, http_404, http_429, \
                     non_idempotent or \"off\""
                );
                r.at(span, path, message);
            }
        }
    }
    result
}

fn queue(r: &mut Report<'_, '_>, table: &Spanned<RawQueue>, base: &str) -> Queue {
    let raw = table.get_ref();
    let max = match r.required(&raw.max, &table.span(), base, "max") {
        Some(_) => r.int(&raw.max, &join(base, "max"), 1, 1..=1_000_000) as usize,
        None => 1,
    };
    Queue {
        max,
        timeout: r.dur(
            &raw.timeout,
            &join(base, "timeout"),
            Duration::from_secs(60),
            Zero::Rejected,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_name_sets_its_own_flag() {
        let names = [
            "error",
            "timeout",
            "invalid_header",
            "http_500",
            "http_502",
            "http_503",
            "http_504",
            "http_403",
            "http_404",
            "http_429",
            "non_idempotent",
        ];
        let mut seen = Vec::new();
        for name in names {
            let mut n = NextUpstream::default();
            *condition(&mut n, name).unwrap() = true;
            assert_ne!(n, NextUpstream::default(), "{name}");
            assert!(!seen.contains(&n), "{name} sets the same flag as another");
            seen.push(n);
        }
        assert!(condition(&mut NextUpstream::default(), "off").is_none());
    }
}
