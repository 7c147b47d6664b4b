//! nginx's smooth weighted round robin, over a worker's own current weights.
//!
//! Every pick adds each participating server's weight to its current weight, takes the
//! highest, and subtracts the participants' total from the winner. Weights 5,1,1 thus give
//! a,a,b,a,c,a,a: each server's share is spread out instead of sent in one burst. Servers
//! that are down, failed, tried or at `max_conns` do not take part in that pick (their current
//! weight is left alone), exactly as in nginx. The current weights live in the worker's
//! [`LocalCursor`](super::LocalCursor), so rotation never touches shared memory; each worker
//! is a smooth round robin of its own.

use super::{Fit, Peers, Tried};

/// One smooth step among the servers of `set` (indexes into the group) for which `takes_part`
/// says yes, with their weights at `now_ms`. `None` when none takes part.
#[inline]
pub(super) fn step(
    peers: &Peers,
    set: &[u32],
    current: &mut [i64],
    now_ms: u64,
    mut takes_part: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for &idx in set {
        let idx = idx as usize;
        if !takes_part(idx) {
            continue;
        }
        let Some(weight) = current.get_mut(idx) else {
            continue;
        };
        // At most 2^30 per server (weight 1e6 scaled by 2^10): sums stay far inside i64.
        let w = peers.weight(idx, now_ms) as i64;
        *weight += w;
        total += w;
        if best.is_none_or(|(_, top)| *weight > top) {
            best = Some((idx, *weight));
        }
    }
    let (idx, _) = best?;
    if let Some(weight) = current.get_mut(idx) {
        *weight -= total;
    }
    Some(idx)
}

/// Round robin among the usable servers of `set`; sets `busy` when one was skipped only
/// because it is at `max_conns`.
pub(super) fn pick(
    peers: &Peers,
    set: &[u32],
    current: &mut [i64],
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
) -> Option<usize> {
    step(peers, set, current, now_ms, |idx| {
        match peers.fit(idx, tried, now_ms) {
            Fit::Usable => true,
            Fit::Capped => {
                *busy = true;
                false
            }
            Fit::Out => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{group, server};
    use super::super::{LocalCursor, Pick, PickKey, Policy, Tried};

    fn sequence(weights: &[u32], picks: usize) -> Vec<usize> {
        let peers = group(
            Policy::RoundRobin,
            weights.iter().map(|&w| server(w)).collect(),
        );
        let mut cursor = LocalCursor::new(&peers, 0);
        (0..picks)
            .map(
                |_| match peers.pick(&mut cursor, PickKey::None, &Tried::default(), 1) {
                    Pick::Server(idx) => idx,
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_the_smooth_nginx_sequence() {
        let once = [0, 0, 1, 0, 2, 0, 0];
        let got = sequence(&[5, 1, 1], 21);
        assert_eq!(got, [once, once, once].concat());
    }

    #[test]
    fn weights_60_40_give_exactly_600_400_of_1000() {
        let got = sequence(&[60, 40], 1000);
        let first = got.iter().filter(|&&idx| idx == 0).count();
        assert_eq!((first, 1000 - first), (600, 400));
        // Smooth: never more than two picks of the heavier one in a row.
        assert!(got.windows(3).all(|w| w != [0, 0, 0]));
    }

    #[test]
    fn equal_weights_rotate() {
        assert_eq!(sequence(&[1, 1, 1], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skipped_server_does_not_take_part_and_others_keep_their_proportions() {
        let peers = group(Policy::RoundRobin, vec![server(2), server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 0);
        let mut tried = Tried::default();
        tried.insert(0);
        let mut counts = [0; 3];
        for _ in 0..100 {
            match peers.pick(&mut cursor, PickKey::None, &tried, 1) {
                Pick::Server(idx) => counts[idx] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counts, [0, 50, 50]);
    }

    #[test]
    fn differently_seeded_cursors_start_at_different_servers() {
        let peers = group(Policy::RoundRobin, vec![server(1), server(1), server(1)]);
        let first: Vec<Pick> = (0..3)
            .map(|seed| {
                let mut cursor = LocalCursor::new(&peers, seed);
                peers.pick(&mut cursor, PickKey::None, &Tried::default(), 1)
            })
            .collect();
        assert_eq!(first, [Pick::Server(0), Pick::Server(1), Pick::Server(2)]);
    }
}
