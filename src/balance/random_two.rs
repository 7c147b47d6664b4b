//! random_two: two distinct weighted-random candidates, the less loaded wins ("power of two
//! choices").
//!
//! The fast path draws over all primaries by weight (binary search on cumulative weights)
//! and rejects draws that are unusable or repeat the first candidate: rejection sampling
//! keeps each candidate's chance proportional to its weight among the usable servers. When a
//! few draws in a row are rejected (many servers out, or one dominant weight), an exact scan
//! draws from the usable servers only. The random state is the worker's own xorshift.

use super::{Fit, LocalCursor, Peers, Tried};

/// Draws the fast path makes for one candidate before it gives up.
const FAST_DRAWS: usize = 8;

/// xorshift64*: a fast, well-spread generator; state is per worker and never zero.
pub(super) fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A number in `0..bound` (`bound > 0`), by multiply-shift (no division, negligible bias).
fn below(state: &mut u64, bound: u64) -> u64 {
    ((u128::from(next_random(state)) * u128::from(bound)) >> 64) as u64
}

/// Which of two candidates wins (`random_two`: [`less_loaded`]; least_time its own).
pub(super) type Better = fn(&Peers, usize, usize, u64) -> usize;

pub(super) fn pick(
    peers: &Peers,
    cursor: &mut LocalCursor,
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
    better: Better,
) -> Option<usize> {
    if let Some(first) = fast_draw(peers, cursor, tried, now_ms, None)
        && let Some(second) = fast_draw(peers, cursor, tried, now_ms, Some(first))
    {
        return Some(better(peers, first, second, now_ms));
    }
    exact(peers, cursor, tried, now_ms, busy, better)
}

/// The candidate with the lower load relative to weight (the first on a tie).
pub(super) fn less_loaded(peers: &Peers, a: usize, b: usize, now_ms: u64) -> usize {
    let (active_a, active_b) = (u64::from(peers.load(a)), u64::from(peers.load(b)));
    let (weight_a, weight_b) = (peers.weight(a, now_ms), peers.weight(b, now_ms));
    if active_a * weight_b <= active_b * weight_a {
        a
    } else {
        b
    }
}

/// A usable primary drawn by weight, not `other`; `None` after [`FAST_DRAWS`] rejections.
fn fast_draw(
    peers: &Peers,
    cursor: &mut LocalCursor,
    tried: &Tried,
    now_ms: u64,
    other: Option<usize>,
) -> Option<usize> {
    let total = peers.cumulative.last().copied()?;
    for _ in 0..FAST_DRAWS {
        let at = below(&mut cursor.random, total);
        let nth = peers.cumulative.partition_point(|&upto| upto <= at);
        let idx = *peers.primaries.get(nth)? as usize;
        if Some(idx) == other || peers.fit(idx, tried, now_ms) != Fit::Usable {
            continue;
        }
        // The draw is by full weight: a server ramping up (`slow_start`) is kept only with
        // the chance its current weight gives it (rejection sampling again).
        let (weight, full) = (peers.weight(idx, now_ms), peers.full_weight(idx));
        if weight < full && below(&mut cursor.random, full) >= weight {
            continue;
        }
        return Some(idx);
    }
    None
}

/// Scans the primaries: sums the usable weight, draws two distinct candidates from it.
fn exact(
    peers: &Peers,
    cursor: &mut LocalCursor,
    tried: &Tried,
    now_ms: u64,
    busy: &mut bool,
    better: Better,
) -> Option<usize> {
    let mut total = 0u64;
    let mut usable = 0usize;
    let mut last = None;
    for &idx in peers.primaries.iter() {
        match peers.fit(idx as usize, tried, now_ms) {
            Fit::Usable => {
                total += peers.weight(idx as usize, now_ms);
                usable += 1;
                last = Some(idx as usize);
            }
            Fit::Capped => *busy = true,
            Fit::Out => {}
        }
    }
    let only = last?;
    if usable == 1 {
        return Some(only);
    }
    let first = nth_usable(peers, tried, now_ms, below(&mut cursor.random, total), None);
    let Some(first) = first else {
        return Some(only);
    };
    let rest = total.saturating_sub(peers.weight(first, now_ms));
    let second = match rest {
        0 => None,
        _ => nth_usable(
            peers,
            tried,
            now_ms,
            below(&mut cursor.random, rest),
            Some(first),
        ),
    };
    Some(second.map_or(first, |second| better(peers, first, second, now_ms)))
}

/// The usable primary (other than `skip`) at weight offset `at` among the usable ones. Marks
/// may change under us (other workers); then the last usable one seen is as good a draw.
fn nth_usable(
    peers: &Peers,
    tried: &Tried,
    now_ms: u64,
    mut at: u64,
    skip: Option<usize>,
) -> Option<usize> {
    let mut last = None;
    for &idx in peers.primaries.iter() {
        let idx = idx as usize;
        if Some(idx) == skip || peers.fit(idx, tried, now_ms) != Fit::Usable {
            continue;
        }
        let weight = peers.weight(idx, now_ms);
        if at < weight {
            return Some(idx);
        }
        at -= weight;
        last = Some(idx);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::super::tests::{group, server};
    use super::super::{LocalCursor, Pick, PickKey, Policy, Server, Tried};

    fn counts(servers: Vec<Server>, tried: &Tried, picks: usize) -> Vec<usize> {
        let peers = group(Policy::RandomTwo, servers);
        let mut cursor = LocalCursor::new(&peers, 7);
        let mut counts = vec![0; peers.servers().len()];
        for _ in 0..picks {
            match peers.pick(&mut cursor, PickKey::None, tried, 1) {
                Pick::Server(idx) => counts[idx] += 1,
                other => panic!("{other:?}"),
            }
        }
        counts
    }

    #[test]
    fn idle_servers_are_chosen_roughly_by_weight() {
        let got = counts(
            vec![server(1), server(2), server(5)],
            &Tried::default(),
            16_000,
        );
        for (idx, want) in [(0, 2000.0), (1, 4000.0), (2, 10_000.0)] {
            let share = got[idx] as f64;
            assert!((share - want).abs() < want * 0.1, "{got:?}");
        }
    }

    #[test]
    fn less_loaded_candidate_wins() {
        let peers = group(Policy::RandomTwo, vec![server(1), server(1)]);
        let mut cursor = LocalCursor::new(&peers, 3);
        peers.begin(0);
        for _ in 0..100 {
            assert_eq!(
                peers.pick(&mut cursor, PickKey::None, &Tried::default(), 1),
                Pick::Server(1)
            );
        }
    }

    #[test]
    fn loaded_server_loses_every_comparison_with_an_idle_one() {
        let peers = group(
            Policy::RandomTwo,
            vec![server(1), server(1), server(1), server(1)],
        );
        let mut cursor = LocalCursor::new(&peers, 11);
        for _ in 0..5 {
            peers.begin(0);
        }
        let mut zero = 0;
        for _ in 0..4000 {
            if peers.pick(&mut cursor, PickKey::None, &Tried::default(), 1) == Pick::Server(0) {
                zero += 1;
            }
        }
        // Candidates are distinct, so server 0 always meets an idle rival and loses.
        assert_eq!(zero, 0);
    }

    #[test]
    fn exact_path_handles_a_dominant_weight_and_excluded_servers() {
        let mut tried = Tried::default();
        tried.insert(1);
        tried.insert(2);
        let got = counts(
            vec![server(1000), server(1), server(1), server(1)],
            &tried,
            2000,
        );
        assert_eq!((got[1], got[2]), (0, 0));
        // Two usable, both idle: the first candidate drawn (by weight) wins.
        assert!(got[0] > 1900 && got[0] + got[3] == 2000, "{got:?}");
    }

    #[test]
    fn a_single_usable_server_is_chosen() {
        let mut tried = Tried::default();
        tried.insert(0);
        let got = counts(vec![server(1), server(1)], &tried, 10);
        assert_eq!(got, [0, 10]);
    }
}
