//! The wait queue through `Peers`: order, grants on behalf of a waiter, doorbells, leaving,
//! limits, reloads, and a threaded run of the join / look again / wait protocol.

use std::io::Read;
use std::time::Duration;

use super::super::tests::{group, server};
use super::super::{LocalCursor, Peers, Pick, PickKey, Policy, Tried};
use super::*;

/// One server taking one request at a time, with a queue.
fn one_slot() -> Peers {
    let mut s = server(1);
    s.max_conns = 1;
    group(Policy::RoundRobin, vec![s]).with_queue(true)
}

fn join(peers: &Peers) -> Ticket {
    peers.join_queue(10).expect("room in the queue")
}

/// Whether the ticket's doorbell has rung (a byte is waiting on it).
fn rung(bell: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!((&*bell).read(&mut byte), Ok(1))
}

#[test]
fn freed_slots_go_to_waiters_in_the_order_they_joined() {
    let peers = one_slot();
    peers.begin(0);
    let mut tickets: Vec<Ticket> = (0..3).map(|_| join(&peers)).collect();
    let bells: Vec<UnixStream> = tickets.iter_mut().map(|t| t.take_bell().unwrap()).collect();
    assert_eq!(peers.queue().depth(), 3);
    let mut order = Vec::new();
    for _ in 0..3 {
        peers.end(0);
        let next = tickets
            .iter()
            .position(Ticket::granted)
            .expect("one granted");
        assert_eq!(tickets.iter().filter(|t| t.granted()).count(), 1);
        assert!(rung(&bells[order.len()]), "the granted waiter's bell rings");
        // The slot was counted for the waiter: nobody else could take it meanwhile.
        assert_eq!(peers.active(0), 1);
        let grant = tickets.remove(next).leave().expect("a grant");
        assert_eq!(peers.adopt(grant), Some(0));
        order.push(next);
    }
    // Each time the oldest left in the line (index 0 of what remained).
    assert_eq!(order, [0, 0, 0]);
    assert_eq!(peers.queue().depth(), 0);
    peers.end(0);
    assert_eq!(peers.active(0), 0);
}

#[test]
fn a_waiter_that_leaves_gives_up_its_place_at_once() {
    let peers = one_slot();
    peers.begin(0);
    let first = join(&peers);
    let second = join(&peers);
    assert!(first.leave().is_none());
    assert_eq!(peers.queue().depth(), 1);
    peers.end(0);
    assert!(second.granted());
}

#[test]
fn a_grant_to_a_request_that_is_gone_passes_to_the_next() {
    let peers = one_slot();
    peers.begin(0);
    let first = join(&peers);
    let second = join(&peers);
    peers.end(0);
    assert!(first.granted());
    drop(first);
    assert!(second.granted());
    assert_eq!(peers.active(0), 1);
    drop(second);
    assert_eq!(peers.active(0), 0);
}

#[test]
fn a_full_queue_turns_requests_away_and_counts_them() {
    let peers = one_slot();
    let _kept: Vec<Ticket> = (0..2).map(|_| peers.join_queue(2).unwrap()).collect();
    assert!(peers.join_queue(2).is_none());
    assert_eq!(peers.queue().rejections(), (1, 0));
    peers.queue().note_timeout();
    assert_eq!(peers.queue().rejections(), (1, 1));
}

#[test]
fn a_slot_on_a_failed_server_is_not_granted() {
    let peers = one_slot();
    peers.begin(0);
    let waiter = join(&peers);
    peers.failed(0, crate::clock::now_ms());
    peers.end(0);
    assert!(!waiter.granted());
    assert_eq!(peers.active(0), 0);
}

#[test]
fn without_a_queue_setting_freed_slots_are_just_uncounted() {
    let mut s = server(1);
    s.max_conns = 1;
    let peers = group(Policy::RoundRobin, vec![s]);
    peers.begin(0);
    let waiter = join(&peers);
    peers.end(0);
    assert!(!waiter.granted());
}

#[test]
fn retry_after_follows_the_drain_rate_and_is_at_least_a_second() {
    let queue = Arc::new(WaitQueue::default());
    // Nothing served yet: the longest anyone would wait.
    assert_eq!(queue.retry_after(Duration::from_secs(30)), 30);
    assert_eq!(queue.retry_after(Duration::from_millis(10)), 1);
    queue.per_place_us.store(400_000, Relaxed);
    let _waiting: Vec<Ticket> = (0..9).map(|_| queue.join(100).unwrap()).collect();
    // Ten places (nine waiting, and the one asking) at 0.4 s each.
    assert_eq!(queue.retry_after(Duration::from_secs(30)), 4);
}

#[test]
fn serving_a_waiter_measures_the_wait_per_place() {
    let peers = one_slot();
    peers.begin(0);
    let _first = join(&peers);
    std::thread::sleep(Duration::from_millis(20));
    peers.end(0);
    let per_place = peers.queue().per_place_us.load(Relaxed);
    assert!((20_000..2_000_000).contains(&per_place), "{per_place}");
}

#[test]
fn a_reload_keeps_the_line_and_maps_the_grant_to_the_new_list() {
    let (mut a, mut b) = (server(1), server(1));
    a.max_conns = 1;
    b.max_conns = 1;
    let old = group(Policy::RoundRobin, vec![a.clone(), b.clone()]).with_queue(true);
    old.begin(1);
    let waiter = join(&old);
    // The new list has b first and a new server before it.
    let mut new = group(Policy::RoundRobin, vec![server(1), b.clone(), a.clone()]).with_queue(true);
    new.inherit(&old);
    assert_eq!(new.queue().depth(), 1);
    // The request that began on the old snapshot ends there; the waiter gets b.
    old.end(1);
    let grant = waiter.leave().expect("granted");
    assert_eq!(new.adopt(grant), Some(1));
    assert_eq!(new.active(1), 1);
    new.end(1);
    assert_eq!(old.active(1), 0);
}

#[test]
fn a_grant_for_a_server_a_reload_removed_is_passed_on() {
    let mut a = server(1);
    a.max_conns = 1;
    let old = group(Policy::RoundRobin, vec![a]).with_queue(true);
    old.begin(0);
    let (first, second) = (join(&old), join(&old));
    let mut new = group(Policy::RoundRobin, vec![server(1)]).with_queue(true);
    new.inherit(&old);
    old.end(0);
    let grant = first.leave().expect("granted");
    assert_eq!(new.adopt(grant), None);
    assert!(second.granted(), "the slot went on to the next waiter");
}

/// What a queued request does (`http::queued`): join, look at the servers once more, else
/// wait for the bell; then serve and end. Several threads at once, one slot: every one is
/// served, never two at a time, and no wake-up is lost between a look and a join.
#[test]
fn threads_waiting_for_one_slot_are_all_served_one_at_a_time() {
    let peers = Arc::new(one_slot());
    let serving = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|seed| {
            let (peers, serving) = (peers.clone(), serving.clone());
            std::thread::spawn(move || {
                let mut cursor = LocalCursor::new(&peers, seed);
                for _ in 0..50 {
                    let idx = take_slot(&peers, &mut cursor);
                    assert_eq!(serving.fetch_add(1, SeqCst), 0, "two served at once");
                    std::thread::yield_now();
                    serving.fetch_sub(1, SeqCst);
                    peers.end(idx);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a waiter thread failed");
    }
    assert_eq!((peers.active(0), peers.queue().depth()), (0, 0));
}

fn take_slot(peers: &Peers, cursor: &mut LocalCursor) -> usize {
    let pick = |cursor: &mut LocalCursor| {
        peers.pick(
            cursor,
            PickKey::None,
            &Tried::default(),
            crate::clock::now_ms(),
        )
    };
    if let Pick::Server(idx) = pick(cursor)
        && peers.try_begin(idx)
    {
        return idx;
    }
    let mut ticket = join(peers);
    if let Pick::Server(idx) = pick(cursor)
        && peers.try_begin(idx)
    {
        let Some(grant) = ticket.leave() else {
            return idx;
        };
        // Granted meanwhile as well: keep one slot, give the other back.
        peers.end(idx);
        return peers.adopt(grant).expect("same group");
    }
    let bell = ticket.take_bell().unwrap();
    bell.set_nonblocking(false).unwrap();
    bell.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    let _ = (&bell).read(&mut byte);
    let grant = ticket.leave().expect("the bell rang for a grant");
    peers.adopt(grant).expect("same group")
}
