//! How a server stands right now, read from its shared marks for `/status` and the status
//! page: failing active checks, a passive failure mark and when it ends, a `slow_start`
//! ramp and how far along it is. Reads only (relaxed loads of the marks every pick reads
//! anyway): a scrape never writes a line the workers use.

use super::{Peers, Policy, slow_start};

/// One server's marks at one moment (`Peers::standing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Active health checks have it down.
    pub probe_down: bool,
    /// Milliseconds left of a passive mark (`max_fails` reached); `None` when not marked.
    pub failed_for_ms: Option<u64>,
    /// The server is ramping up after coming back (only in groups with `slow_start`).
    pub ramp: Option<Ramp>,
}

/// A `slow_start` ramp under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramp {
    /// The share of its full weight the server has now, in percent (0..=99).
    pub percent: u8,
    /// Milliseconds until it has its full weight.
    pub left_ms: u64,
}

impl Policy {
    /// The name `balance` takes in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastConn => "least_conn",
            Policy::IpHash => "ip_hash",
            Policy::Hash => "hash",
            Policy::RandomTwo => "random_two",
            Policy::LeastTime => "least_time",
            Policy::Prompt => "prompt",
        }
    }
}

impl Peers {
    /// How server `idx` stands at `now_ms` ([`crate::clock::now_ms`]). An index out of
    /// range stands like a server that was never out.
    pub fn standing(&self, idx: usize, now_ms: u64) -> Standing {
        if idx >= self.servers.len() {
            return Standing::default();
        }
        let down_until = self.marks.down_until(idx);
        let ramp = (self.slow_start_ms > 0 && self.marks.healthy(idx, now_ms))
            .then(|| ramp(self, idx, now_ms))
            .flatten();
        Standing {
            probe_down: self.marks.probe_down(idx),
            failed_for_ms: (down_until > now_ms).then(|| down_until - now_ms),
            ramp,
        }
    }

    /// The group's `slow_start` in ms (0 = off).
    pub fn slow_start_ms(&self) -> u64 {
        self.slow_start_ms
    }
}

/// The ramp of a healthy server, when it has less than its full weight.
fn ramp(peers: &Peers, idx: usize, now_ms: u64) -> Option<Ramp> {
    let full = peers.full_weight(idx);
    let since = peers.marks.back_since(idx);
    let weight = slow_start::ramped(full, since, now_ms, peers.slow_start_ms);
    if weight >= full {
        return None;
    }
    Some(Ramp {
        percent: (weight * 100 / full).min(99) as u8,
        left_ms: (since + peers.slow_start_ms).saturating_sub(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{group, server};
    use super::*;

    #[test]
    fn a_server_never_out_stands_clear() {
        let peers = group(Policy::RoundRobin, vec![server(1)]);
        assert_eq!(peers.standing(0, 5_000), Standing::default());
        assert_eq!(peers.standing(7, 5_000), Standing::default());
    }

    #[test]
    fn a_passive_mark_shows_the_time_left_until_it_ends() {
        let peers = group(Policy::RoundRobin, vec![server(1)]);
        // max_fails 1, fail_timeout 10 s (the test servers' settings).
        peers.failed(0, 1_000);
        assert_eq!(peers.standing(0, 4_000).failed_for_ms, Some(7_000));
        assert_eq!(peers.standing(0, 11_000).failed_for_ms, None);
    }

    #[test]
    fn failing_probes_are_told_apart_from_a_passive_mark() {
        let peers = group(Policy::RoundRobin, vec![server(1)]);
        peers.set_probe_up(0, false);
        let standing = peers.standing(0, crate::clock::now_ms());
        assert!(standing.probe_down);
        assert_eq!(standing.failed_for_ms, None);
        peers.set_probe_up(0, true);
        assert!(!peers.standing(0, crate::clock::now_ms()).probe_down);
    }

    #[test]
    fn a_ramp_shows_its_share_and_time_left_and_ends() {
        let ramp = Some(Duration::from_secs(10));
        let peers = group(Policy::RoundRobin, vec![server(2), server(1)]).with_slow_start(ramp);
        // Server 0's passive mark ends at 11 s: it ramps from there until 21 s.
        peers.failed(0, 1_000);
        assert_eq!(peers.standing(0, 5_000).ramp, None, "not back yet");
        let quarter = peers.standing(0, 13_500).ramp;
        assert_eq!(
            quarter,
            Some(Ramp {
                percent: 25,
                left_ms: 7_500
            })
        );
        assert_eq!(peers.standing(0, 21_000).ramp, None);
        assert_eq!(peers.standing(1, 13_500).ramp, None, "never out");
    }

    #[test]
    fn without_slow_start_nothing_ramps() {
        let peers = group(Policy::RoundRobin, vec![server(1)]);
        peers.failed(0, 1_000);
        assert_eq!(peers.standing(0, 12_000).ramp, None);
    }

    #[test]
    fn policy_names_are_the_configuration_names() {
        let names: Vec<&str> = [
            Policy::RoundRobin,
            Policy::LeastConn,
            Policy::IpHash,
            Policy::Hash,
            Policy::RandomTwo,
            Policy::LeastTime,
            Policy::Prompt,
        ]
        .iter()
        .map(|p| p.name())
        .collect();
        assert_eq!(
            names,
            [
                "round_robin",
                "least_conn",
                "ip_hash",
                "hash",
                "random_two",
                "least_time",
                "prompt"
            ]
        );
    }
}
