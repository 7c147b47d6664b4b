//! `slow_start`: a server that becomes available again ramps from a small share to its full
//! weight, linearly over the configured time (nginx-plus semantics), so a backend that just
//! restarted (cold caches, a model still loading) is not handed its whole share at once.
//!
//! "Available again" is read from the server's marks ([`super::marks`]): the end of a passive
//! failure mark (`down_until`, which needs no write to be over), or `back_since`, set when
//! active probes bring the server back, when a reload adds it to a group that stays or lifts
//! its `down`. The marks are process-wide and shared across reloads, so every worker and
//! every snapshot sees the same ramp. A server that never was out never ramps: at start-up
//! every server has its full weight.
//!
//! Every policy weighs servers in units of `1 << SCALE_BITS` per configured weight, so a
//! ramping server of weight 1 still has a share well below that of its peers (scaling every
//! weight alike changes no policy's choices). `hash` and `ip_hash` do not ramp: their choice
//! is a function of the key, which a changing weight would break (nginx refuses the
//! combination; here it is simply without effect).

/// Weight units per unit of configured weight (1024): room for a ramp below weight 1.
pub(super) const SCALE_BITS: u32 = 10;

/// The weight of a server whose full (scaled) weight is `full`, back since `since_ms`
/// (0 = never out), at `now_ms`, ramping over `ramp_ms`: grows linearly from 1 unit to
/// `full`. Outside the ramp (never out, not back yet, or the ramp is over) it is `full`.
#[inline]
pub(super) fn ramped(full: u64, since_ms: u64, now_ms: u64, ramp_ms: u64) -> u64 {
    if since_ms == 0 || now_ms < since_ms {
        return full;
    }
    let elapsed = now_ms - since_ms;
    if elapsed >= ramp_ms {
        return full;
    }
    let part = u128::from(full) * u128::from(elapsed) / u128::from(ramp_ms);
    (part as u64).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{group, server};
    use super::super::{LocalCursor, Peers, Pick, PickKey, Policy, Tried};
    use super::*;

    const FULL: u64 = 3 << SCALE_BITS;

    #[test]
    fn weight_grows_linearly_from_one_unit_to_full() {
        assert_eq!(ramped(FULL, 1000, 1000, 10_000), 1);
        assert_eq!(ramped(FULL, 1000, 3500, 10_000), FULL / 4);
        assert_eq!(ramped(FULL, 1000, 6000, 10_000), FULL / 2);
        assert_eq!(ramped(FULL, 1000, 10_999, 10_000), FULL * 9999 / 10_000);
        assert_eq!(ramped(FULL, 1000, 11_000, 10_000), FULL);
        let curve: Vec<u64> = (0..=10)
            .map(|tenth| ramped(FULL, 1000, 1000 + tenth * 1000, 10_000))
            .collect();
        assert!(curve.windows(2).all(|w| w[0] < w[1]), "{curve:?}");
    }

    #[test]
    fn never_out_or_not_yet_back_is_full_weight() {
        assert_eq!(ramped(FULL, 0, 5, 10_000), FULL);
        assert_eq!(ramped(FULL, 2000, 1999, 10_000), FULL);
    }

    /// Server 1's share of `picks` picks at `now_ms`, with server 0 beside it (equal weights).
    fn share(peers: &Peers, now_ms: u64, picks: usize) -> f64 {
        let mut cursor = LocalCursor::new(peers, 0);
        let mut ones = 0;
        for _ in 0..picks {
            match peers.pick(&mut cursor, PickKey::None, &Tried::default(), now_ms) {
                Pick::Server(1) => ones += 1,
                Pick::Server(_) => {}
                other => panic!("{other:?}"),
            }
        }
        ones as f64 / picks as f64
    }

    fn ramping_pair(policy: Policy) -> Peers {
        group(policy, vec![server(1), server(1)]).with_slow_start(Some(Duration::from_secs(10)))
    }

    #[test]
    fn a_server_the_probes_bring_back_ramps_in_every_weighted_policy() {
        for policy in [Policy::RoundRobin, Policy::LeastConn, Policy::RandomTwo] {
            let peers = ramping_pair(policy);
            peers.marks.set_probe_up(1, false, 500);
            peers.marks.set_probe_up(1, true, 1000);
            // 10% into the ramp: weight 0.1 against 1, about 9% of the picks.
            let early = share(&peers, 2000, 2000);
            assert!(early > 0.04 && early < 0.15, "{policy:?}: {early}");
            let half = share(&peers, 6000, 2000);
            assert!(half > 0.25 && half < 0.42, "{policy:?}: {half}");
            let done = share(&peers, 11_000, 2000);
            assert!((done - 0.5).abs() < 0.05, "{policy:?}: {done}");
        }
    }

    #[test]
    fn a_server_ramps_from_the_end_of_its_passive_mark() {
        let peers = ramping_pair(Policy::RoundRobin);
        // max_fails 1, fail_timeout 10s: out until 11s, then ramping until 21s.
        peers.failed(1, 1000);
        assert_eq!(share(&peers, 10_999, 100), 0.0);
        let early = share(&peers, 12_000, 2000);
        assert!(early > 0.04 && early < 0.15, "{early}");
        assert!((share(&peers, 21_000, 2000) - 0.5).abs() < 0.01);
    }

    #[test]
    fn without_slow_start_a_returning_server_gets_its_full_share_at_once() {
        let peers = group(Policy::RoundRobin, vec![server(1), server(1)]);
        peers.marks.set_probe_up(1, false, 500);
        peers.marks.set_probe_up(1, true, 1000);
        assert!((share(&peers, 1001, 1000) - 0.5).abs() < 0.01);
    }

    #[test]
    fn reload_ramps_added_servers_and_lifted_downs_but_not_servers_that_stay() {
        let (a, b, c) = (server(1), server(1), server(1));
        let mut down_c = c.clone();
        down_c.down = true;
        let old = group(Policy::RoundRobin, vec![a.clone(), down_c]);
        let ramp = Some(Duration::from_secs(10));
        let mut new = group(Policy::RoundRobin, vec![a, b, c]).with_slow_start(ramp);
        new.inherit_at(&old, 1000);
        assert_eq!(new.marks.back_since(0), 0, "a stays as it was");
        assert_eq!(new.marks.back_since(1), 1000, "b is new");
        assert_eq!(new.marks.back_since(2), 1000, "c is no longer down");
        let full = 1 << SCALE_BITS;
        assert_eq!(new.weight(0, 2000), full);
        assert_eq!(new.weight(1, 2000), full / 10);
    }
}
