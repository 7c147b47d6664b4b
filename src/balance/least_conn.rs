//! least_conn: the fewest active requests relative to weight, ties by smooth round robin.
//!
//! Active counts are process-wide (every worker's requests count), read from the marks,
//! plus what the servers report with `load_feedback` ([`Peers::load`]). As in
//! nginx, one pass finds the best ratio, then one smooth weighted round robin step runs among
//! the servers that share it. Ratios are compared by cross-multiplying (`active_a * weight_b`
//! vs `active_b * weight_a`): exact, no division. The tied servers are remembered on the stack
//! (up to [`TIE_SLOTS`]), so the round robin step uses the same counts the first pass saw and
//! does not scan the group again. With more ties than that, a second scan takes part every
//! server whose ratio is still at most the best (counts may have moved meanwhile; if every one
//! got worse, the first pass's best is used).

use super::{Fit, Peers, Tried, round_robin};

/// Ties remembered without a second scan (256 bytes of stack).
const TIE_SLOTS: usize = 64;

pub(super) fn pick(
    peers: &Peers,
    set: &[u32],
    current: &mut [i64],
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
) -> Option<usize> {
    // (active, weight) of the best ratio so far, and the servers that share it.
    let mut best: Option<(u64, u64)> = None;
    let mut tied = [0u32; TIE_SLOTS];
    let mut ties = 0usize;
    for &idx in set {
        match peers.fit(idx as usize, tried, now_ms) {
            Fit::Usable => {}
            Fit::Capped => {
                *busy = true;
                continue;
            }
            Fit::Out => continue,
        }
        let active = u64::from(peers.load(idx as usize, now_ms));
        let weight = peers.weight(idx as usize, now_ms);
        let better = match best {
            Some((best_active, best_weight)) => {
                let (this, top) = (active * best_weight, best_active * weight);
                if this > top {
                    continue;
                }
                this < top
            }
            None => true,
        };
        if better {
            best = Some((active, weight));
            ties = 0;
        }
        if let Some(slot) = tied.get_mut(ties) {
            *slot = idx;
        }
        ties += 1;
    }
    let (best_active, best_weight) = best?;
    if ties == 1 {
        return Some(tied[0] as usize);
    }
    if let Some(tied) = tied.get(..ties) {
        return round_robin::step(peers, tied, current, now_ms, |_| true);
    }
    let chosen = round_robin::step(peers, set, current, now_ms, |idx| {
        peers.fit(idx, tried, now_ms) == Fit::Usable
            && u64::from(peers.load(idx, now_ms)) * best_weight
                <= best_active * peers.weight(idx, now_ms)
    });
    Some(chosen.unwrap_or(tied[0] as usize))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{as_worker, group, server};
    use super::super::{LocalCursor, Pick, PickKey, Policy, Tried};

    fn next(peers: &super::Peers, cursor: &mut LocalCursor) -> usize {
        match peers.pick(cursor, PickKey::None, &Tried::default(), 1) {
            Pick::Server(idx) => idx,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_with_fewest_active_requests_is_chosen() {
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        peers.begin(0);
        peers.begin(0);
        peers.begin(2);
        for _ in 0..5 {
            assert_eq!(next(&peers, &mut cursor), 1);
        }
    }

    #[test]
    fn active_counts_are_compared_relative_to_weight() {
        // 3 active at weight 4 (0.75) beats 1 active at weight 1 (1.0).
        let peers = group(Policy::LeastConn, vec![server(4), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        for _ in 0..3 {
            peers.begin(0);
        }
        peers.begin(1);
        assert_eq!(next(&peers, &mut cursor), 0);
        // A fourth makes it 1.0 vs 1.0: a tie, broken by weight (4:1).
        peers.begin(0);
        let picks: Vec<usize> = (0..5).map(|_| next(&peers, &mut cursor)).collect();
        assert_eq!(picks.iter().filter(|&&idx| idx == 0).count(), 4);
    }

    #[test]
    fn ties_rotate_by_round_robin() {
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        let picks: Vec<usize> = (0..6).map(|_| next(&peers, &mut cursor)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn picks_spread_load_when_requests_stay_open() {
        let peers = group(Policy::LeastConn, vec![server(1), server(2), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        for _ in 0..40 {
            let idx = next(&peers, &mut cursor);
            peers.begin(idx);
        }
        assert_eq!(
            [peers.active(0), peers.active(1), peers.active(2)],
            [10, 20, 10]
        );
    }

    #[test]
    fn more_ties_than_slots_still_rotate_over_all_of_them() {
        let peers = group(Policy::LeastConn, (0..100).map(|_| server(1)).collect());
        let mut cursor = LocalCursor::new(&peers, 0);
        let picks: Vec<usize> = (0..200).map(|_| next(&peers, &mut cursor)).collect();
        let once: Vec<usize> = (0..100).collect();
        assert_eq!(picks, [once.clone(), once].concat());
        // Loaded servers drop out of the tie, still more than the slots: the scanned path.
        (0..30).for_each(|idx| peers.begin(idx));
        assert!((0..100).all(|_| next(&peers, &mut cursor) >= 30));
    }

    #[test]
    fn counts_are_per_process_across_workers() {
        // Two workers, each counting on its own lane: what one has open, the other's pick sees.
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]).with_workers(2);
        as_worker(0, || {
            peers.begin(0);
            peers.begin(0);
            peers.begin(1);
        });
        as_worker(1, || {
            let mut cursor = LocalCursor::new(&peers, 1);
            assert_eq!(next(&peers, &mut cursor), 2);
            peers.begin(2);
            peers.begin(2);
            // 2, 1, 2 open: server 1 has the fewest, whichever worker opened them.
            assert_eq!(next(&peers, &mut cursor), 1);
        });
        assert_eq!(
            [peers.active(0), peers.active(1), peers.active(2)],
            [2, 1, 2]
        );
    }

    #[test]
    fn a_request_may_end_on_another_worker_than_it_began() {
        // A queue grant counted by the worker that freed the slot ends on the waiter's.
        let peers = group(Policy::LeastConn, vec![server(1), server(1)]).with_workers(2);
        as_worker(0, || (0..3).for_each(|_| peers.begin(0)));
        as_worker(1, || (0..2).for_each(|_| peers.end(0)));
        assert_eq!(peers.active(0), 1);
        let mut cursor = LocalCursor::new(&peers, 0);
        assert_eq!(next(&peers, &mut cursor), 1);
        as_worker(1, || peers.end(0));
        assert_eq!(peers.active(0), 0);
    }

    #[test]
    fn only_tied_servers_take_part_in_the_rotation() {
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        peers.begin(1);
        let picks: Vec<usize> = (0..4).map(|_| next(&peers, &mut cursor)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }
}
