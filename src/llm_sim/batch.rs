//! The simulated server's continuous-batching scheduler, sans-io: every call takes `now`
//! (microseconds on the engine's clock), so tests drive it with an injected clock.
//!
//! The model, kept simple on purpose:
//! - At most `slots` requests run at once (vLLM's `max_num_seqs`); the rest wait FIFO.
//! - A running request first needs its prompt prefilled. Prefill is compute-bound, so the
//!   engine prefills one prompt at a time, FIFO, at `prefill_ns_per_byte` for every byte
//!   the prefix cache does not already hold. Its first token comes out when its prefill
//!   ends.
//! - Decoding is memory-bound: every running request gets its next token each
//!   `decode_us_per_token`, whatever the batch size, until it has `max_tokens`; its slot
//!   frees with the last token.
//! - Requests join and leave the batch at any token: that is the "continuous" in
//!   continuous batching; nobody waits for a batch to finish.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::cache::{PrefixCache, block_hashes};

/// Microseconds on the engine's clock.
pub type Micros = u64;

/// Bytes of prompt per "token" in the counters that vLLM keeps in tokens (vLLM's block
/// of 16 tokens is about 64 bytes of English text).
pub const BYTES_PER_TOKEN: usize = 4;

/// What work costs on the simulated GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    pub prefill_ns_per_byte: u64,
    pub decode_us_per_token: u64,
}

/// One request's work: its prompt (after the chat template) and how many tokens to emit.
#[derive(Clone, Debug)]
pub struct Job {
    pub prompt: Vec<u8>,
    pub max_tokens: u32,
}

/// Where a request is, and when it moves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// In the server's queue, without a slot.
    Waiting,
    /// Holding a slot, waiting for the prefill engine.
    Queued,
    /// Being prefilled until `ends`.
    Prefill { ends: Micros },
    /// Emitting tokens: the first at `first`, the last at `last`.
    Decode { first: Micros, last: Micros },
    /// Every token emitted; the slot is free.
    Done { first: Micros, last: Micros },
}

#[derive(Debug)]
struct Entry {
    prompt_len: usize,
    hashes: Vec<u64>,
    tokens: u32,
    phase: Phase,
    timing: Timing,
}

/// Where one request's time to first token went, on the engine's clock: what a benchmark
/// needs to tell a queue from a cache miss (the answer carries it, see `api::timing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub submitted: Micros,
    /// Got a slot (left the server's queue).
    pub slotted: Micros,
    /// The prefill engine took it (after the prefills ahead of it).
    pub prefill_start: Micros,
    /// Its prefill ended: the first token.
    pub first: Micros,
    /// Prompt bytes the prefix cache did not hold.
    pub uncached: u64,
}

/// What a request's connection needs to know at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Tokens emitted so far.
    pub ready: u32,
    /// Tokens the request will get in all.
    pub total: u32,
    /// Every token is out.
    pub done: bool,
    /// When this request's state changes next, if the scheduler can tell: its prefill's
    /// end or next token. While it waits, the engine's next event (which may free a slot).
    pub next_at: Option<Micros>,
    /// When its last token comes out, once decoding.
    pub last_at: Option<Micros>,
    /// Where its time went so far (complete once it decodes).
    pub timing: Timing,
}

/// Running totals, as vLLM exports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Prompt tokens looked up in the prefix cache, and found there.
    pub cache_queries: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub finished: u64,
    pub cancelled: u64,
}

/// The batching scheduler of one simulated server.
#[derive(Debug)]
pub struct Scheduler {
    costs: Costs,
    slots: usize,
    block: usize,
    cache: PrefixCache,
    /// Events up to here are applied.
    now: Micros,
    entries: HashMap<u64, Entry>,
    next_id: u64,
    waiting: VecDeque<u64>,
    /// Holding a slot, not yet prefilled, in prefill order.
    queued: VecDeque<u64>,
    prefilling: Option<u64>,
    /// (last token time, id) of the decoding requests: the next to finish first.
    decoding: BTreeSet<(Micros, u64)>,
    stats: Stats,
}

impl Scheduler {
    /// `cache_blocks` blocks of `block` bytes make the prefix cache.
    pub fn new(costs: Costs, slots: usize, block: usize, cache_blocks: usize) -> Self {
        Scheduler {
            costs,
            slots: slots.max(1),
            block: block.max(1),
            cache: PrefixCache::new(cache_blocks),
            now: 0,
            entries: HashMap::new(),
            next_id: 0,
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            prefilling: None,
            decoding: BTreeSet::new(),
            stats: Stats::default(),
        }
    }

    /// Takes `job` into the queue at `now`; it runs as soon as a slot is free.
    pub fn submit(&mut self, job: Job, now: Micros) -> u64 {
        self.advance(now);
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                prompt_len: job.prompt.len(),
                hashes: block_hashes(&job.prompt, self.block),
                tokens: job.max_tokens.max(1),
                phase: Phase::Waiting,
                timing: Timing {
                    submitted: now,
                    ..Timing::default()
                },
            },
        );
        self.stats.prompt_tokens += job.prompt.len().div_ceil(BYTES_PER_TOKEN) as u64;
        self.waiting.push_back(id);
        self.advance(now);
        id
    }

    /// Drops a request wherever it is (its client went away); its slot, or its place in
    /// the queue or on the prefill engine, goes to the next request at `now`.
    pub fn cancel(&mut self, id: u64, now: Micros) {
        self.advance(now);
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        match entry.phase {
            Phase::Waiting => self.waiting.retain(|&w| w != id),
            Phase::Queued => self.queued.retain(|&q| q != id),
            Phase::Prefill { .. } => self.prefilling = None,
            Phase::Decode { last, .. } => {
                self.decoding.remove(&(last, id));
            }
            Phase::Done { .. } => return,
        }
        self.stats.cancelled += 1;
        self.advance(now);
    }

    /// Forgets a finished request (its connection has sent everything).
    pub fn release(&mut self, id: u64) {
        if let Some(Entry {
            phase: Phase::Done { .. },
            ..
        }) = self.entries.get(&id)
        {
            self.entries.remove(&id);
        }
    }

    /// Requests holding a slot (prefilling or decoding): `vllm:num_requests_running`.
    pub fn running(&self) -> usize {
        self.queued.len() + usize::from(self.prefilling.is_some()) + self.decoding.len()
    }

    /// Requests in the server's queue: `vllm:num_requests_waiting`.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes of KV the running requests hold (prompt and tokens so far), over the cache's
    /// size: `vllm:kv_cache_usage_perc` (capped at 1).
    pub fn kv_usage(&self) -> f64 {
        let capacity = self.cache.capacity() * self.block;
        if capacity == 0 {
            return 0.0;
        }
        let held: usize = self
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Waiting | Phase::Done { .. }))
            .map(|(_, e)| e.prompt_len + self.ready(e) as usize * BYTES_PER_TOKEN)
            .sum();
        (held as f64 / capacity as f64).min(1.0)
    }

    /// Where request `id` is at `now` (after applying every event up to `now`).
    pub fn view(&mut self, id: u64, now: Micros) -> Option<View> {
        self.advance(now);
        let entry = self.entries.get(&id)?;
        let ready = self.ready(entry);
        let (next_at, last_at) = match entry.phase {
            Phase::Waiting | Phase::Queued => (self.next_event(), None),
            Phase::Prefill { ends } => (Some(ends), None),
            Phase::Decode { first, last } => {
                let next = first + u64::from(ready) * self.costs.decode_us_per_token;
                (Some(next.min(last)), Some(last))
            }
            Phase::Done { last, .. } => (None, Some(last)),
        };
        Some(View {
            ready,
            total: entry.tokens,
            done: matches!(entry.phase, Phase::Done { .. }),
            next_at,
            last_at,
            timing: entry.timing,
        })
    }

    /// The engine's next event (a prefill or a request ending), if any is scheduled.
    pub fn next_event(&self) -> Option<Micros> {
        let prefill = self
            .prefilling
            .and_then(|id| match self.entries.get(&id)?.phase {
                Phase::Prefill { ends } => Some(ends),
                _ => None,
            });
        let finish = self.decoding.first().map(|&(last, _)| last);
        match (prefill, finish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tokens out by `self.now`.
    fn ready(&self, entry: &Entry) -> u32 {
        match entry.phase {
            Phase::Decode { first, .. } if self.now >= first => {
                let step = self.costs.decode_us_per_token.max(1);
                let n = (self.now - first) / step + 1;
                n.min(u64::from(entry.tokens)) as u32
            }
            Phase::Done { .. } => entry.tokens,
            _ => 0,
        }
    }

    /// Applies every event up to `now`, in time order.
    pub fn advance(&mut self, now: Micros) {
        loop {
            self.fill_slots();
            self.start_prefill();
            match self.next_event() {
                Some(at) if at <= now => {
                    self.now = self.now.max(at);
                    self.apply_event(at);
                }
                _ => break,
            }
        }
        self.now = self.now.max(now);
    }

    /// Moves waiting requests into free slots.
    fn fill_slots(&mut self) {
        while self.running() < self.slots {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.phase = Phase::Queued;
                entry.timing.slotted = self.now;
                self.queued.push_back(id);
            }
        }
    }

    /// Starts the next prefill if the engine is free: only the bytes past the cached prefix
    /// cost time (at least one byte is always computed, as in vLLM).
    fn start_prefill(&mut self) {
        if self.prefilling.is_some() {
            return;
        }
        let Some(id) = self.queued.pop_front() else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let hit_blocks = self.cache.lookup(&entry.hashes);
        let cached = (hit_blocks * self.block).min(entry.prompt_len.saturating_sub(1));
        let uncached = (entry.prompt_len - cached) as u64;
        self.stats.cache_queries += entry.prompt_len.div_ceil(BYTES_PER_TOKEN) as u64;
        self.stats.cache_hits += (cached / BYTES_PER_TOKEN) as u64;
        let ends = self.now + (uncached * self.costs.prefill_ns_per_byte).div_ceil(1000);
        entry.phase = Phase::Prefill { ends };
        entry.timing.prefill_start = self.now;
        entry.timing.uncached = uncached;
        self.prefilling = Some(id);
    }

    /// The event at `at`: a prefill ends (its blocks enter the cache, decoding starts) or
    /// a request emits its last token (its slot frees).
    fn apply_event(&mut self, at: Micros) {
        if let Some(&(last, id)) = self.decoding.first()
            && last <= at
        {
            self.decoding.pop_first();
            if let Some(entry) = self.entries.get_mut(&id)
                && let Phase::Decode { first, last } = entry.phase
            {
                entry.phase = Phase::Done { first, last };
                self.stats.finished += 1;
                self.stats.generation_tokens += u64::from(entry.tokens);
            }
            return;
        }
        let Some(id) = self.prefilling.take() else {
            return;
        };
        if let Some(entry) = self.entries.get_mut(&id) {
            self.cache.insert(&entry.hashes);
            let last = at + u64::from(entry.tokens - 1) * self.costs.decode_us_per_token;
            entry.phase = Phase::Decode { first: at, last };
            entry.timing.first = at;
            self.decoding.insert((last, id));
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
