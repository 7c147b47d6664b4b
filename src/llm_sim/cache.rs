//! The simulated server's prefix (KV) cache: an LRU of prompt blocks, each named by a hash
//! of its bytes *and every block before it* (vLLM's block hashing), so a hit on block `i`
//! means the whole prompt up to the end of block `i` was seen before.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The hashes of the full `block`-byte blocks of `prompt`, each chained to the one before.
/// A partial last block has no hash: like vLLM, only full blocks are cached.
pub fn block_hashes(prompt: &[u8], block: usize) -> Vec<u64> {
    let mut parent = 0u64;
    prompt
        .chunks_exact(block.max(1))
        .map(|bytes| {
            // DefaultHasher::new() has fixed keys: the same prompt hashes alike in every
            // process, so tests and several simulators agree.
            let mut h = DefaultHasher::new();
            parent.hash(&mut h);
            bytes.hash(&mut h);
            parent = h.finish();
            parent
        })
        .collect()
}

/// Cached blocks, least recently used evicted first, at most `capacity` of them.
#[derive(Debug)]
pub struct PrefixCache {
    capacity: usize,
    /// Block hash → the stamp of its last use.
    stamps: HashMap<u64, u64>,
    /// Stamp → block hash: the eviction order (smallest stamp goes first).
    order: BTreeMap<u64, u64>,
    /// Source of stamps; grows by one per touch.
    clock: u64,
}

impl PrefixCache {
    /// A cache of `capacity` blocks (0 turns caching off).
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            stamps: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Blocks held now.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many leading blocks of a prompt (given by its [`block_hashes`]) are cached; those
    /// count as used now. The run stops at the first miss: a block is only useful with all
    /// of its prefix.
    pub fn lookup(&mut self, hashes: &[u64]) -> usize {
        let hit = hashes
            .iter()
            .take_while(|h| self.stamps.contains_key(h))
            .count();
        self.touch_all(&hashes[..hit]);
        hit
    }

    /// Caches a prompt's blocks (all of them that fit), evicting the least recently used.
    pub fn insert(&mut self, hashes: &[u64]) {
        let fit = hashes.len().min(self.capacity);
        self.touch_all(&hashes[..fit]);
        while self.stamps.len() > self.capacity {
            let Some((_, hash)) = self.order.pop_first() else {
                break;
            };
            self.stamps.remove(&hash);
        }
    }

    /// Marks blocks as just used, the *first* block newest: when a conversation's blocks
    /// age out, its tail goes before its head (vLLM frees a request's blocks in reverse
    /// order for the same reason), so a shared system prompt outlives the chats under it.
    fn touch_all(&mut self, hashes: &[u64]) {
        for &hash in hashes.iter().rev() {
            self.clock += 1;
            if let Some(old) = self.stamps.insert(hash, self.clock) {
                self.order.remove(&old);
            }
            self.order.insert(self.clock, hash);
        }
        debug_assert_eq!(self.stamps.len(), self.order.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hashes_cover_full_blocks_and_chain_on_the_prefix() {
        let a = block_hashes(b"0123456789abcdefXYZ", 8);
        assert_eq!(a.len(), 2, "a partial last block has no hash");
        // The same second block after a different first one hashes differently.
        let b = block_hashes(b"X1234567" as &[u8], 8);
        let c = block_hashes(b"01234567X1234567", 8);
        let d = block_hashes(b"abcdefghX1234567", 8);
        assert_eq!(c[0], a[0]);
        assert_ne!(c[1], d[1]);
        assert_ne!(b[0], c[1]);
        // Deterministic: the same prompt, the same hashes.
        assert_eq!(block_hashes(b"0123456789abcdef", 8), a);
    }

    #[test]
    fn lookup_counts_the_leading_run_of_cached_blocks() {
        let mut cache = PrefixCache::new(100);
        let turn1 = block_hashes(&[b'a'; 64 * 3], 64);
        assert_eq!(cache.lookup(&turn1), 0);
        cache.insert(&turn1);
        assert_eq!(cache.lookup(&turn1), 3);
        // A follow-up turn extends the prompt: its first three blocks hit.
        let mut longer = vec![b'a'; 64 * 3];
        longer.extend_from_slice(&[b'b'; 64 * 2]);
        assert_eq!(cache.lookup(&block_hashes(&longer, 64)), 3);
        // A prompt that differs in its first block hits nothing, even with equal tails.
        let mut other = longer.clone();
        other[0] = b'z';
        assert_eq!(cache.lookup(&block_hashes(&other, 64)), 0);
    }

    #[test]
    fn least_recently_used_blocks_are_evicted_tail_first() {
        let mut cache = PrefixCache::new(4);
        let p = block_hashes(&(0..=255u8).collect::<Vec<_>>(), 64);
        let q = block_hashes(&[7u8; 128], 64);
        cache.insert(&p);
        assert_eq!(cache.len(), 4);
        cache.insert(&q);
        assert_eq!(cache.len(), 4);
        // q pushed out p's last two blocks, not its first two.
        assert_eq!(cache.lookup(&p), 2);
        assert_eq!(cache.lookup(&q), 2);
        // Using q again makes p the oldest: a new prompt evicts p's blocks.
        cache.lookup(&q);
        cache.insert(&block_hashes(&[9u8; 128], 64));
        assert_eq!(cache.lookup(&p), 0);
        assert_eq!(cache.lookup(&q), 2);
    }

    #[test]
    fn a_prompt_larger_than_the_cache_keeps_its_head_and_zero_capacity_caches_nothing() {
        let mut cache = PrefixCache::new(2);
        let long = block_hashes(&[1u8; 64 * 5], 64);
        cache.insert(&long);
        assert_eq!(cache.lookup(&long), 2);
        let mut off = PrefixCache::new(0);
        off.insert(&long);
        assert!(off.is_empty());
        assert_eq!(off.lookup(&long), 0);
    }
}
