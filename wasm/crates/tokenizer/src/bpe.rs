//! Byte-level BPE: merges a pre-tokenized piece, one symbol per byte to start with, always
//! applying the lowest-ranked merge available and the leftmost one among equals — the order
//! Hugging Face's priority queue produces.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard};

use rustc_hash::FxHashMap;

/// No merge for this pair.
const NONE: u64 = u64::MAX;

/// Pieces at least this many bytes long are merged with a priority queue (O(n log n)) instead
/// of rescanning all pairs after every merge (O(n²) but faster on short pieces).
const HEAP_MIN_LEN: usize = 48;
/// Pieces longer than this are not cached (Hugging Face uses the same bound).
const CACHE_MAX_LEN: usize = 256;
/// The cache is emptied when it holds this many pieces, bounding memory on endless input.
const CACHE_MAX_ENTRIES: usize = 200_000;

/// (left id, right id) → (rank, merged id), packed as `rank << 32 | merged`, in an
/// open-addressing table: it is looked up for every pair of every uncached piece.
pub struct MergeMap {
    /// (`left << 32 | right`, value) with key NONE for an empty slot: key and value share a
    /// cache line. Length is a power of two, at most 60% full.
    slots: Vec<(u64, u64)>,
    shift: u32,
    len: usize,
}

impl MergeMap {
    /// An empty map for about `n` merges.
    pub fn with_capacity(n: usize) -> MergeMap {
        let size = (n * 5 / 3 + 1).next_power_of_two().max(16);
        MergeMap {
            slots: vec![(NONE, NONE); size],
            shift: 64 - size.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Records the merge of (`left`, `right`) into `merged` at `rank`; a later rank for the same
    /// pair replaces the earlier, as in Hugging Face's map. Grows as needed.
    // Not inlined: a separate function tiers up in the wasm engine while loading runs.
    #[inline(never)]
    pub fn insert(&mut self, left: u32, right: u32, rank: u32, merged: u32) {
        if (self.len + 1) * 5 > self.slots.len() * 3 {
            self.grow();
        }
        let key = (left as u64) << 32 | right as u64;
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        while self.slots[i].0 != NONE && self.slots[i].0 != key {
            i = (i + 1) & mask;
        }
        if self.slots[i].0 == NONE {
            self.len += 1;
        }
        self.slots[i] = (key, (rank as u64) << 32 | merged as u64);
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(
            self,
            MergeMap {
                slots: vec![(NONE, NONE); size],
                shift: 64 - size.trailing_zeros(),
                len: 0,
            },
        );
        for (k, v) in old.slots {
            if k != NONE {
                self.insert((k >> 32) as u32, k as u32, (v >> 32) as u32, v as u32);
            }
        }
    }

    /// `rank << 32 | merged` for the pair, or NONE.
    #[inline]
    pub fn get(&self, left: u32, right: u32) -> u64 {
        let key = (left as u64) << 32 | right as u64;
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        loop {
            let (k, v) = self.slots[i];
            if k == key {
                return v;
            }
            if k == NONE {
                return NONE;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Remembers the ids of pieces already merged: text repeats the same words.
#[derive(Default)]
pub struct Cache {
    /// piece bytes → (start, end) in `ids`.
    index: FxHashMap<Box<[u8]>, (u32, u32)>,
    ids: Vec<u32>,
}

/// The BPE model of a byte-level tokenizer.
pub struct Bpe {
    merges: MergeMap,
    /// Id of the token of each single byte (its byte-level character), or None when the vocab
    /// lacks it (such a byte is dropped, as Hugging Face does without an unk token).
    byte_ids: [Option<u32>; 256],
    cache: Mutex<Cache>,
}

impl Bpe {
    /// A model from its merge table and the ids of the 256 single-byte tokens.
    pub fn new(merges: MergeMap, byte_ids: [Option<u32>; 256]) -> Bpe {
        Bpe {
            merges,
            byte_ids,
            cache: Mutex::default(),
        }
    }

    /// The word cache, for one encode call; None while another thread holds it (that call then
    /// runs uncached rather than waiting).
    pub fn cache(&self) -> Option<MutexGuard<'_, Cache>> {
        match self.cache.try_lock() {
            Ok(guard) => Some(guard),
            // A panic mid-update can only have left a cache whose entries are all complete.
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Appends the ids of one pre-tokenized piece (raw bytes, before the byte-level mapping).
    // Not inlined into encode's loop, so the wasm engine optimizes it during a long first call.
    #[inline(never)]
    pub fn encode_piece(&self, piece: &[u8], cache: Option<&mut Cache>, out: &mut Vec<u32>) {
        if piece.len() == 1 {
            out.extend(self.byte_ids[piece[0] as usize]);
            return;
        }
        let Some(cache) = cache.filter(|_| piece.len() <= CACHE_MAX_LEN) else {
            return self.merge(piece, out);
        };
        if let Some(&(a, b)) = cache.index.get(piece) {
            out.extend_from_slice(&cache.ids[a as usize..b as usize]);
            return;
        }
        let start = out.len();
        self.merge(piece, out);
        if cache.index.len() >= CACHE_MAX_ENTRIES {
            cache.index.clear();
            cache.ids.clear();
        }
        let a = cache.ids.len() as u32;
        cache.ids.extend_from_slice(&out[start..]);
        let b = cache.ids.len() as u32;
        cache.index.insert(piece.into(), (a, b));
    }

    /// Appends the merged ids of `piece`, uncached.
    pub fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        let start = out.len();
        out.extend(piece.iter().filter_map(|&b| self.byte_ids[b as usize]));
        let symbols = &mut out[start..];
        let n = if symbols.len() < HEAP_MIN_LEN {
            self.merge_scan(symbols, &mut [NONE; HEAP_MIN_LEN])
        } else {
            self.merge_heap(symbols)
        };
        out.truncate(start + n);
    }

    /// Merges `syms` in place by rescanning the pair ranks; returns the new length. `ranks` is
    /// scratch space at least as long as `syms`.
    fn merge_scan(&self, syms: &mut [u32], ranks: &mut [u64]) -> usize {
        let mut n = syms.len();
        // ranks[i] = merge of (syms[i], syms[i + 1])
        for i in 0..n.saturating_sub(1) {
            ranks[i] = self.merges.get(syms[i], syms[i + 1]);
        }
        while n > 1 {
            let mut best = 0;
            for i in 1..n - 1 {
                if ranks[i] < ranks[best] {
                    best = i;
                }
            }
            if ranks[best] == NONE {
                break;
            }
            syms[best] = ranks[best] as u32;
            syms.copy_within(best + 2..n, best + 1);
            ranks.copy_within(best + 1..n - 1, best);
            n -= 1;
            if best > 0 {
                ranks[best - 1] = self.merges.get(syms[best - 1], syms[best]);
            }
            if best + 1 < n {
                ranks[best] = self.merges.get(syms[best], syms[best + 1]);
            }
        }
        n
    }

    /// Merges `syms` in place with a priority queue over a linked list of symbols (Hugging
    /// Face's algorithm); returns the new length.
    fn merge_heap(&self, syms: &mut [u32]) -> usize {
        let n = syms.len();
        const END: usize = usize::MAX;
        // next[i] / prev[i]: neighbours of live symbol i; alive[i] false once merged into prev.
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { END } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { END } else { i - 1 }).collect();
        let mut alive = vec![true; n];
        // Min-heap of (rank, position, merged id) — position breaks rank ties leftmost first.
        let mut heap = BinaryHeap::with_capacity(n);
        let push = |heap: &mut BinaryHeap<_>, pos: usize, m: u64| {
            if m != NONE {
                heap.push(Reverse(((m >> 32) as u32, pos, m as u32)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, i, self.merges.get(syms[i], syms[i + 1]));
        }
        while let Some(Reverse((_, pos, merged))) = heap.pop() {
            let right = next[pos];
            // Skip entries made stale by an earlier merge of either symbol: a pair at `pos` that
            // merges into the same id can only be the same pair.
            if !alive[pos] || right == END {
                continue;
            }
            let m = self.merges.get(syms[pos], syms[right]);
            if m == NONE || m as u32 != merged {
                continue;
            }
            syms[pos] = merged;
            alive[right] = false;
            next[pos] = next[right];
            if next[pos] != END {
                prev[next[pos]] = pos;
            }
            if prev[pos] != END {
                push(
                    &mut heap,
                    prev[pos],
                    self.merges.get(syms[prev[pos]], syms[pos]),
                );
            }
            if next[pos] != END {
                push(&mut heap, pos, self.merges.get(syms[pos], syms[next[pos]]));
            }
        }
        let mut w = 0;
        for r in 0..n {
            if alive[r] {
                syms[w] = syms[r];
                w += 1;
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes are their own ids; merges build ids from 256 up.
    fn model(merges: &[(u32, u32)]) -> Bpe {
        let mut m = MergeMap::with_capacity(merges.len());
        for (rank, &(a, b)) in merges.iter().enumerate() {
            m.insert(a, b, rank as u32, 256 + rank as u32);
        }
        let mut byte_ids = [None; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            *id = Some(b as u32);
        }
        Bpe::new(m, byte_ids)
    }

    fn ids(bpe: &Bpe, s: &[u8]) -> Vec<u32> {
        let mut v = Vec::new();
        bpe.encode_piece(s, bpe.cache().as_deref_mut(), &mut v);
        v
    }

    #[test]
    fn merge_applies_lowest_rank_first() {
        // rank 0: b c → 256, rank 1: a b → 257, rank 2: a 256 → 258
        let bpe = model(&[(98, 99), (97, 98), (97, 256)]);
        assert_eq!(ids(&bpe, b"abc"), [258]);
        assert_eq!(ids(&bpe, b"abd"), [257, 100]);
        assert_eq!(ids(&bpe, b"x"), [120]);
    }

    #[test]
    fn merge_takes_leftmost_of_equal_ranks() {
        let bpe = model(&[(97, 97)]);
        assert_eq!(ids(&bpe, b"aaa"), [256, 97]);
        assert_eq!(ids(&bpe, b"aaaa"), [256, 256]);
    }

    #[test]
    fn merge_heap_agrees_with_merge_scan() {
        // A small merge table over a 4-letter alphabet, merged tokens merging further.
        let mut merges = Vec::new();
        let mut next = 256u32;
        let mut seed = 12345u64;
        let mut rnd = |k: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % k as u64) as u32
        };
        let mut pool: Vec<u32> = vec![97, 98, 99, 100];
        for _ in 0..60 {
            let (a, b) = (
                pool[rnd(pool.len() as u32) as usize],
                pool[rnd(pool.len() as u32) as usize],
            );
            if !merges.contains(&(a, b)) {
                merges.push((a, b));
                pool.push(next);
                next += 1;
            }
        }
        let bpe = model(&merges);
        for len in [2usize, 5, 47, 48, 49, 120, 300] {
            for _ in 0..20 {
                let word: Vec<u8> = (0..len).map(|_| b"abcd"[rnd(4) as usize]).collect();
                let mut a: Vec<u32> = word.iter().map(|&b| b as u32).collect();
                let mut b = a.clone();
                let n = bpe.merge_scan(&mut a, &mut vec![NONE; len]);
                a.truncate(n);
                let n = bpe.merge_heap(&mut b);
                b.truncate(n);
                assert_eq!(a, b, "{}", String::from_utf8_lossy(&word));
            }
        }
    }

    #[test]
    fn merge_map_grows_and_keeps_the_last_rank_of_a_pair() {
        let mut m = MergeMap::with_capacity(1);
        for i in 0..1000 {
            m.insert(i, i + 1, i, 5000 + i);
        }
        m.insert(7, 8, 99_999, 1);
        assert_eq!(m.get(3, 4), 3 << 32 | 5003);
        assert_eq!(m.get(7, 8), 99_999 << 32 | 1);
        assert_eq!(m.get(4, 3), NONE);
        assert_eq!(m.len, 1000);
    }

    #[test]
    fn cache_returns_what_merge_computed() {
        let bpe = model(&[(97, 98)]);
        assert_eq!(ids(&bpe, b"abab"), [256, 256]);
        assert_eq!(ids(&bpe, b"abab"), [256, 256]);
        assert_eq!(ids(&bpe, b"aba"), [256, 97]);
    }
}
