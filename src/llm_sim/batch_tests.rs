//! The batching scheduler against an injected clock: slots and the queue, prefill cost per
//! uncached byte, decode cost per token, cancellation.

use super::*;

/// 1 µs per prompt byte, 10 µs per token, 64-byte blocks.
const COSTS: Costs = Costs {
    prefill_ns_per_byte: 1000,
    decode_us_per_token: 10,
};

fn job(prompt: &[u8], tokens: u32) -> Job {
    Job {
        prompt: prompt.to_vec(),
        max_tokens: tokens,
    }
}

#[test]
fn first_token_after_prefill_then_one_token_per_decode_step() {
    let mut s = Scheduler::new(COSTS, 4, 64, 100);
    let id = s.submit(job(&[b'a'; 1000], 5), 0);
    assert_eq!(s.running(), 1);
    let v = s.view(id, 999).unwrap();
    assert_eq!((v.ready, v.next_at), (0, Some(1000)));
    let v = s.view(id, 1000).unwrap();
    assert_eq!((v.ready, v.last_at), (1, Some(1040)));
    assert_eq!(s.view(id, 1025).unwrap().ready, 3);
    assert_eq!(s.view(id, 1025).unwrap().next_at, Some(1030));
    let v = s.view(id, 1040).unwrap();
    assert!(v.done && v.ready == 5);
    assert_eq!(s.running(), 0);
    s.release(id);
    assert!(s.view(id, 2000).is_none());
    assert_eq!(s.stats().finished, 1);
    assert_eq!(s.stats().generation_tokens, 5);
}

#[test]
fn a_repeated_prompt_prefills_only_its_uncached_tail() {
    let mut s = Scheduler::new(COSTS, 4, 64, 100);
    let prompt = vec![b'x'; 640];
    let a = s.submit(job(&prompt, 1), 0);
    assert_eq!(s.view(a, 0).unwrap().next_at, Some(640));
    assert!(s.view(a, 640).unwrap().done);
    // Ten blocks cached; at least one byte is always computed.
    let b = s.submit(job(&prompt, 1), 1000);
    assert_eq!(s.view(b, 1000).unwrap().next_at, Some(1001));
    // The next turn: the old prompt plus 100 new bytes costs 100 µs, not 740.
    let mut longer = prompt.clone();
    longer.extend_from_slice(&[b'y'; 100]);
    let c = s.submit(job(&longer, 1), 2000);
    assert_eq!(s.view(c, 2000).unwrap().next_at, Some(2100));
    let st = s.stats();
    assert_eq!(st.cache_queries, (640 + 640 + 740) / 4);
    assert_eq!(st.cache_hits, (639 + 640) / 4);
}

#[test]
fn requests_beyond_the_slots_wait_and_start_when_one_finishes() {
    let mut s = Scheduler::new(COSTS, 2, 64, 100);
    let ids: Vec<u64> = (0..4u8).map(|i| s.submit(job(&[i; 10], 3), 0)).collect();
    assert_eq!((s.running(), s.waiting()), (2, 2));
    // Prefills are one at a time: the second starts when the first ends.
    assert_eq!(s.view(ids[0], 0).unwrap().next_at, Some(10));
    assert_eq!(s.view(ids[1], 10).unwrap().next_at, Some(20));
    // The first finishes at 10 + 2*10 = 30; the third request takes its slot then.
    assert_eq!(s.view(ids[2], 29).unwrap().ready, 0);
    assert_eq!((s.running(), s.waiting()), (2, 2));
    s.advance(30);
    assert_eq!((s.running(), s.waiting()), (2, 1));
    assert_eq!(s.view(ids[2], 30).unwrap().next_at, Some(40));
    s.advance(1000);
    assert_eq!((s.running(), s.waiting()), (0, 0));
    for id in ids {
        assert!(s.view(id, 1000).unwrap().done);
    }
}

#[test]
fn advancing_late_applies_events_at_their_own_times() {
    // Nothing looks at the scheduler for a long while: the chain of events (prefill,
    // finish, next admission, its prefill) still happens at the right virtual times.
    let mut s = Scheduler::new(COSTS, 1, 64, 100);
    let a = s.submit(job(&[1; 100], 2), 0);
    let b = s.submit(job(&[2; 50], 2), 0);
    let v = s.view(b, 10_000).unwrap();
    assert!(v.done);
    // a: prefill 0..100, tokens at 100 and 110; b admitted at 110, prefill to 160,
    // tokens at 160 and 170.
    assert_eq!(v.last_at, Some(170));
    assert_eq!(s.view(a, 10_000).unwrap().last_at, Some(110));
}

#[test]
fn cancelling_frees_the_slot_or_the_queue_place_at_once() {
    let mut s = Scheduler::new(COSTS, 1, 64, 100);
    let a = s.submit(job(&[1; 100], 50), 0);
    let b = s.submit(job(&[2; 100], 50), 0);
    let c = s.submit(job(&[3; 100], 50), 0);
    assert_eq!((s.running(), s.waiting()), (1, 2));
    s.cancel(b, 5);
    assert_eq!((s.running(), s.waiting()), (1, 1));
    // a is mid-prefill: cancelling it hands the engine to c right away.
    s.cancel(a, 50);
    assert_eq!((s.running(), s.waiting()), (1, 0));
    assert_eq!(s.view(c, 50).unwrap().next_at, Some(150));
    s.cancel(c, 200);
    assert_eq!((s.running(), s.waiting()), (0, 0));
    assert_eq!(s.stats().cancelled, 3);
    assert_eq!(s.stats().finished, 0);
    // Cancelling twice, or an unknown id, changes nothing.
    s.cancel(c, 300);
    assert_eq!(s.stats().cancelled, 3);
}

#[test]
fn kv_usage_counts_what_running_requests_hold() {
    let mut s = Scheduler::new(COSTS, 1, 64, 10);
    assert_eq!(s.kv_usage(), 0.0);
    let a = s.submit(job(&[1; 320], 100), 0);
    let _queued = s.submit(job(&[2; 320], 100), 0);
    // Only the running request counts: 320 of 640 bytes.
    assert!((s.kv_usage() - 0.5).abs() < 1e-9, "{}", s.kv_usage());
    s.view(a, 320 + 10 * 10);
    assert!(s.kv_usage() > 0.5);
    s.advance(1_000_000);
    assert_eq!(s.kv_usage(), 0.0);
}

#[test]
fn timing_splits_the_wait_for_a_slot_the_wait_for_prefill_and_the_prefill() {
    // Slots 2: a and b run at once (b's prefill waits for a's), c waits for a slot.
    let mut s = Scheduler::new(COSTS, 2, 64, 100);
    let a = s.submit(job(&[1; 100], 2), 0);
    let b = s.submit(job(&[2; 50], 2), 0);
    let c = s.submit(job(&[1; 130], 1), 5);
    s.advance(10_000);
    let mut t = |id| s.view(id, 10_000).unwrap().timing;
    let ta = t(a);
    assert_eq!((ta.slotted, ta.prefill_start, ta.first), (0, 0, 100));
    assert_eq!(ta.uncached, 100);
    let tb = t(b);
    assert_eq!((tb.slotted, tb.prefill_start, tb.first), (0, 100, 150));
    // a ends at 110 (tokens at 100, 110): c gets its slot then; a's first 64 bytes are
    // cached (one whole block), so 66 bytes are prefilled.
    let tc = t(c);
    assert_eq!(tc.submitted, 5);
    assert_eq!((tc.slotted, tc.prefill_start), (110, 150));
    assert_eq!((tc.uncached, tc.first), (66, 216));
}
