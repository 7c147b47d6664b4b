//! `ringway_upstream_health_changes_total`: how often active checks flipped each server,
//! written by the prober thread, read by the admin threads at scrape time.
//!
//! Neither of them is a worker, so a mutex is fine here; it is taken once per state
//! change and once per scrape.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::snapshot::Snapshot;

/// Changes by (upstream, server address, changed to up).
pub struct ChangeCounts {
    counts: Mutex<BTreeMap<(String, String, bool), u64>>,
}

/// One series of `ringway_upstream_health_changes_total`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeCount {
    pub upstream: String,
    pub server: String,
    /// "up" or "down".
    pub to: &'static str,
    pub count: u64,
}

static CHANGES: ChangeCounts = ChangeCounts::new();

/// The process's counts (a test may bring its own [`ChangeCounts`]).
pub fn changes() -> &'static ChangeCounts {
    &CHANGES
}

impl Default for ChangeCounts {
    fn default() -> ChangeCounts {
        ChangeCounts::new()
    }
}

impl ChangeCounts {
    pub const fn new() -> ChangeCounts {
        ChangeCounts {
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String, bool), u64>> {
        // A counter map stays consistent whatever a panicking holder was doing.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count(&self, upstream: &str, server: &str, up: bool) {
        *self
            .lock()
            .entry((upstream.to_string(), server.to_string(), up))
            .or_default() += 1;
    }

    /// What a scrape shows: every series counted so far (servers removed since keep
    /// theirs: counters never go back) plus a zero for each direction of every server
    /// `snap` health-checks, so a first change shows as an increase; in label order.
    pub fn series(&self, snap: &Snapshot) -> Vec<ChangeCount> {
        let mut all = self.lock().clone();
        for group in snap.groups.iter().filter(|g| g.health_check.is_some()) {
            for server in group.peers.servers() {
                for up in [false, true] {
                    let key = (group.name.clone(), server.addr.to_string(), up);
                    all.entry(key).or_default();
                }
            }
        }
        Self::listed(&all)
    }

    /// Every series counted so far, in label order.
    pub fn read(&self) -> Vec<ChangeCount> {
        Self::listed(&self.lock())
    }

    fn listed(counts: &BTreeMap<(String, String, bool), u64>) -> Vec<ChangeCount> {
        counts
            .iter()
            .map(|((upstream, server, up), count)| ChangeCount {
                upstream: upstream.clone(),
                server: server.clone(),
                to: if *up { "up" } else { "down" },
                count: *count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_counted_per_server_and_direction() {
        let counts = ChangeCounts::new();
        counts.count("u", "127.0.0.1:1", false);
        counts.count("u", "127.0.0.1:1", true);
        counts.count("u", "127.0.0.1:1", false);
        counts.count("v", "127.0.0.1:1", false);
        let all = counts.read();
        let read: Vec<(&str, &str, &str, u64)> = all
            .iter()
            .map(|c| (c.upstream.as_str(), c.server.as_str(), c.to, c.count))
            .collect();
        assert_eq!(
            read,
            [
                ("u", "127.0.0.1:1", "down", 2),
                ("u", "127.0.0.1:1", "up", 1),
                ("v", "127.0.0.1:1", "down", 1)
            ]
        );
    }

    #[test]
    fn a_scrape_shows_zeros_for_checked_servers_and_keeps_removed_ones() {
        let text = "[[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"u\"\n\
                    [upstreams.u]\nservers = [{ addr = \"127.0.0.1:2\" }]\nhealth_check = {}\n\
                    [upstreams.p]\nservers = [{ addr = \"127.0.0.1:3\" }]\n";
        let snap = crate::config::load_str(text, std::path::Path::new("t.toml"), 1).unwrap();
        let counts = ChangeCounts::new();
        counts.count("gone", "127.0.0.1:1", false);
        counts.count("u", "127.0.0.1:2", false);
        let all = counts.series(&snap);
        let series: Vec<String> = all
            .iter()
            .map(|c| format!("{} {} {} {}", c.upstream, c.server, c.to, c.count))
            .collect();
        assert_eq!(
            series,
            [
                "gone 127.0.0.1:1 down 1",
                "u 127.0.0.1:2 down 1",
                "u 127.0.0.1:2 up 0"
            ]
        );
    }
}
