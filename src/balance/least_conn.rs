//! least_conn: the fewest active requests relative to weight, ties by smooth round robin.
//!
//! Active counts are process-wide (every worker's requests count), read from the marks. As in
//! nginx, a first pass finds the best ratio and a second pass, only when several servers share
//! it, runs one smooth weighted round robin step among those tied. Ratios are compared by
//! cross-multiplying (`active_a * weight_b` vs `active_b * weight_a`): exact, no division.
//! Counts may move between the two passes (other workers); a server that got better in the
//! meantime joins the tie, and if every tied server got worse the first pass's best is used.

use super::{Fit, Peers, Tried, round_robin};

pub(super) fn pick(
    peers: &Peers,
    set: &[u32],
    current: &mut [i64],
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
) -> Option<usize> {
    // (index, active, weight) of the best so far, and how many share its ratio.
    let mut best: Option<(usize, u64, u64)> = None;
    let mut ties = 0usize;
    for &idx in set {
        let idx = idx as usize;
        match peers.fit(idx, tried, now_ms) {
            Fit::Usable => {}
            Fit::Capped => {
                *busy = true;
                continue;
            }
            Fit::Out => continue,
        }
        let active = u64::from(peers.marks.active(idx));
        let weight = u64::from(peers.weight(idx));
        match best {
            Some((_, best_active, best_weight)) => {
                let (this, top) = (active * best_weight, best_active * weight);
                if this < top {
                    best = Some((idx, active, weight));
                    ties = 1;
                } else if this == top {
                    ties += 1;
                }
            }
            None => {
                best = Some((idx, active, weight));
                ties = 1;
            }
        }
    }
    let (first, best_active, best_weight) = best?;
    if ties == 1 {
        return Some(first);
    }
    let tied = round_robin::step(peers, set, current, |idx| {
        peers.fit(idx, tried, now_ms) == Fit::Usable
            && u64::from(peers.marks.active(idx)) * best_weight
                <= best_active * u64::from(peers.weight(idx))
    });
    Some(tied.unwrap_or(first))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{group, server};
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
    fn only_tied_servers_take_part_in_the_rotation() {
        let peers = group(Policy::LeastConn, vec![server(1), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        peers.begin(1);
        let picks: Vec<usize> = (0..4).map(|_| next(&peers, &mut cursor)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }
}
