//! Token strings by id and ids by token string, stored without one allocation per token: all
//! strings live in one buffer, and the string → id index is an open-addressing table of ids.

use std::hash::Hasher;

use rustc_hash::FxHasher;

const ABSENT: u32 = u32::MAX;

/// A two-way map between token strings and ids.
#[derive(Default)]
pub struct Vocab {
    /// Every token string, back to back.
    text: String,
    /// (start, end) of id's string in `text`; start == ABSENT where the id has no token.
    spans: Vec<(u32, u32)>,
    /// Open-addressing index: slot → id, ABSENT for empty; length is a power of two.
    slots: Vec<u32>,
    len: usize,
}

fn hash(s: &str) -> usize {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish() as usize
}

impl Vocab {
    /// An empty map sized for about `n` tokens of `bytes` total length.
    pub fn with_capacity(n: usize, bytes: usize) -> Vocab {
        Vocab {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(n),
            slots: vec![ABSENT; (n * 2).next_power_of_two().max(16)],
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

    /// The id of `token`.
    pub fn get(&self, token: &str) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = hash(token) & mask;
        loop {
            let id = self.slots[i];
            if id == ABSENT {
                return None;
            }
            if self.token(id) == Some(token) {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Maps `token` to `id` and back. Returns false, changing nothing, when either is taken.
    pub fn insert(&mut self, token: &str, id: u32) -> bool {
        if self.token(id).is_some() || self.get(token).is_some() {
            return false;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
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
        let mask = self.slots.len() - 1;
        let mut i = hash(self.token(id).unwrap()) & mask;
        while self.slots[i] != ABSENT {
            i = (i + 1) & mask;
        }
        self.slots[i] = id;
    }

    fn grow(&mut self) {
        self.slots = vec![ABSENT; self.slots.len() * 2];
        for id in 0..self.spans.len() as u32 {
            if self.spans[id as usize].0 != ABSENT {
                self.place(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_token_round_trip() {
        let mut v = Vocab::with_capacity(2, 8);
        for (i, t) in ["a", "Ġb", "中", ""].iter().enumerate() {
            assert!(v.insert(t, i as u32 * 2));
        }
        for _ in 0..100 {
            assert!(v.insert(&format!("x{}", v.id_end()), v.id_end()));
        }
        assert_eq!(v.get("Ġb"), Some(2));
        assert_eq!(v.get(""), Some(6));
        assert_eq!(v.get("x7"), Some(7));
        assert_eq!(v.get("nope"), None);
        assert_eq!(v.token(4), Some("中"));
        assert_eq!(v.token(1), None);
        assert_eq!(v.token(10_000), None);
        assert_eq!(v.len(), 104);
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
