//! Token strings by id and ids by token string, stored without one allocation per token: all
//! strings live in one buffer, and the string → id index is an open-addressing table whose slots
//! hold a token's first bytes inline. Loading resolves 300k merge strings through the index, so a
//! probe should not chase a pointer for every candidate: three tokens in four fit in a slot whole.

use std::hash::Hasher;

use rustc_hash::FxHasher;

const ABSENT: u32 = u32::MAX;

/// Bytes of a token kept in its index slot.
const INLINE: usize = 11;

/// One slot of the index: the token's length (saturated at 255) and first INLINE bytes (zero
/// padded), and its id (ABSENT for an empty slot). 16 bytes: four to a cache line.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot {
    key: [u8; INLINE + 1],
    id: u32,
}

const EMPTY: Slot = Slot {
    key: [0; INLINE + 1],
    id: ABSENT,
};

fn key(token: &[u8]) -> [u8; INLINE + 1] {
    let mut k = [0u8; INLINE + 1];
    k[0] = token.len().min(255) as u8;
    let n = token.len().min(INLINE);
    k[1..1 + n].copy_from_slice(&token[..n]);
    k
}

fn hash(s: &[u8]) -> usize {
    let mut h = FxHasher::default();
    h.write(s);
    h.finish() as usize
}

/// A two-way map between token strings and ids.
#[derive(Default)]
pub struct Vocab {
    /// Every token string, back to back.
    text: String,
    /// (start, end) of id's string in `text`; start == ABSENT where the id has no token.
    spans: Vec<(u32, u32)>,
    /// Open-addressing index; length is a power of two, at most 60% full.
    slots: Vec<Slot>,
    len: usize,
}

impl Vocab {
    /// An empty map sized for about `n` tokens of `bytes` total length.
    pub fn with_capacity(n: usize, bytes: usize) -> Vocab {
        Vocab {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(n),
            slots: vec![EMPTY; (n * 5 / 3 + 1).next_power_of_two().max(16)],
            len: 0,
        }
    }

    /// Number of distinct token strings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// One more than the largest id.
    pub fn id_end(&self) -> u32 {
        self.spans.len() as u32
    }

    /// The string of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        let &(a, b) = self.spans.get(id as usize)?;
        (a != ABSENT).then(|| &self.text[a as usize..b as usize])
    }

    fn token_bytes(&self, id: u32) -> &[u8] {
        match self.spans.get(id as usize) {
            Some(&(a, b)) if a != ABSENT => &self.text.as_bytes()[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Whether `id` has a string and it is `a` followed by `b`.
    pub fn is_concat(&self, id: u32, a: &str, b: &str) -> bool {
        let t = self.token_bytes(id);
        self.token(id).is_some()
            && t.len() == a.len() + b.len()
            && t.starts_with(a.as_bytes())
            && t.ends_with(b.as_bytes())
    }

    /// The id of `token`.
    // Not inlined: a separate function tiers up in the wasm engine while loading runs.
    #[inline(never)]
    pub fn get(&self, token: &str) -> Option<u32> {
        let t = token.as_bytes();
        let k = key(t);
        let mask = self.slots.len() - 1;
        let mut i = hash(t) & mask;
        loop {
            let slot = self.slots[i];
            if slot.id == ABSENT {
                return None;
            }
            if slot.key == k && (t.len() <= INLINE || self.token_bytes(slot.id) == t) {
                return Some(slot.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Maps `token` to `id` and back. Returns false, changing nothing, when either is taken.
    #[inline(never)]
    pub fn insert(&mut self, token: &str, id: u32) -> bool {
        if self.token(id).is_some() || self.get(token).is_some() {
            return false;
        }
        if (self.len + 1) * 5 > self.slots.len() * 3 {
            self.slots = vec![EMPTY; self.slots.len() * 2];
            for other in 0..self.spans.len() as u32 {
                if self.spans[other as usize].0 != ABSENT {
                    self.place(other);
                }
            }
        }
        let start = self.text.len() as u32;
        self.text.push_str(token);
        if self.spans.len() <= id as usize {
            self.spans.resize(id as usize + 1, (ABSENT, 0));
        }
        self.spans[id as usize] = (start, self.text.len() as u32);
        self.place(id);
        self.len += 1;
        true
    }

    /// Puts `id` in the first free slot of its string's probe sequence.
    fn place(&mut self, id: u32) {
        let t = self.token_bytes(id);
        let slot = Slot { key: key(t), id };
        let mask = self.slots.len() - 1;
        let mut i = hash(t) & mask;
        while self.slots[i].id != ABSENT {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_token_round_trip() {
        let mut v = Vocab::with_capacity(2, 8);
        for (i, t) in [
            "a",
            "Ġb",
            "中",
            "",
            "a long token over eleven bytes",
            "a long token over ELEVEN",
        ]
        .iter()
        .enumerate()
        {
            assert!(v.insert(t, i as u32 * 2));
        }
        for _ in 0..100 {
            assert!(v.insert(&format!("x{}", v.id_end()), v.id_end()));
        }
        assert_eq!(v.get("Ġb"), Some(2));
        assert_eq!(v.get(""), Some(6));
        assert_eq!(v.get("a long token over eleven bytes"), Some(8));
        assert_eq!(v.get("a long token over ELEVEN"), Some(10));
        assert_eq!(v.get("a long token over eleven bytez"), None);
        assert_eq!(v.get("x11"), Some(11));
        assert_eq!(v.get("nope"), None);
        assert_eq!(v.token(4), Some("中"));
        assert_eq!(v.token(1), None);
        assert_eq!(v.token(10_000), None);
        assert_eq!(v.len(), 106);
        assert!(v.is_concat(2, "Ġ", "b"));
        assert!(!v.is_concat(2, "Ġ", "c"));
        assert!(!v.is_concat(2, "Ġb", "b"));
        assert!(!v.is_concat(1, "", ""));
    }

    #[test]
    fn insert_refuses_a_taken_string_or_id() {
        let mut v = Vocab::with_capacity(4, 8);
        assert!(v.insert("a", 0));
        assert!(!v.insert("a", 5));
        assert!(!v.insert("b", 0));
        assert_eq!(v.get("a"), Some(0));
        assert_eq!(v.get("b"), None);
        assert_eq!(v.id_end(), 1);
    }
}
