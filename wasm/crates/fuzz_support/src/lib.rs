//! The harness the crates' `tests/fuzz.rs` (and image's tests/metadata_work.rs) share: a deterministic PRNG, an allocator that
//! records the largest single allocation of the thread, a guard that runs one case under
//! `catch_unwind` and a time limit, the failure report, and format-blind mutations of bytes.
//! Format-aware mutations (PNG chunks and CRCs, JPEG segments, JSON junk...) stay with their
//! tests. A dev-dependency only: nothing that ships links it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

// ---- the largest single allocation of this thread ----

/// The system allocator, recording for each thread the largest single allocation since
/// [`guarded`] last started a case, and the bytes asked of it in all ([`allocated`]). Install it
/// with [`counting_allocator!`].
pub struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(bytes)));
    let _ = ALLOCATED.try_with(|a| a.set(a.get() + bytes));
}

/// The bytes this thread has asked of [`Counting`] so far (allocations and reallocations' new
/// sizes; frees not subtracted).
pub fn allocated() -> usize {
    ALLOCATED.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Declares [`Counting`] the test binary's global allocator (a test binary must declare it
/// itself; without it the largest allocation [`guarded`] reports is 0).
#[macro_export]
macro_rules! counting_allocator {
    () => {
        #[global_allocator]
        static COUNTING: $crate::Counting = $crate::Counting;
    };
}

// ---- a small deterministic PRNG ----

/// xorshift64*: the same cases from the same seed on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// CRC-32 (ISO 3309, as PNG's chunks and zlib's gzip use it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

// ---- running a case ----

pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs one case: Ok(its value, the largest single allocation it made) or Err("panicked: …")
/// or Err("took …") past `limit`.
pub fn guarded<T>(limit: Duration, f: impl FnOnce() -> T) -> Result<(T, usize), String> {
    let start = Instant::now();
    LARGEST.with(|l| l.set(0));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let (elapsed, largest) = (start.elapsed(), LARGEST.with(Cell::get));
    let value = outcome.map_err(|p| format!("panicked: {}", panic_message(p)))?;
    if elapsed > limit {
        return Err(format!("took {elapsed:?}"));
    }
    Ok((value, largest))
}

/// Quiets the panic hook while the cases run (a caught panic is a failure to list, not noise).
pub fn silence_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// The default panic hook again, then fails listing (the first 20 of) `failures`.
#[track_caller]
pub fn report(failures: &[String]) {
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

/// One to `most` mutations of `b` by `mutate`; their descriptions.
pub fn mutations(
    b: &mut Vec<u8>,
    rng: &mut Rng,
    most: usize,
    mut mutate: impl FnMut(&mut Vec<u8>, &mut Rng) -> String,
) -> Vec<String> {
    (0..1 + rng.below(most)).map(|_| mutate(b, rng)).collect()
}

// ---- mutations of bytes that know no format (`b` not empty) ----

/// Flips a random bit of byte `i`.
pub fn flip_bit(b: &mut [u8], i: usize, rng: &mut Rng) -> String {
    let bit = rng.below(8);
    b[i] ^= 1 << bit;
    format!("flip bit {bit} of byte {i}")
}

pub fn set_byte(b: &mut [u8], i: usize, v: u8) -> String {
    b[i] = v;
    format!("byte {i} = {v:#04x}")
}

pub fn truncate(b: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = rng.below(b.len());
    b.truncate(at);
    format!("truncate at {at}")
}

/// Deletes 1 to `most` bytes at a random place.
pub fn delete(b: &mut Vec<u8>, rng: &mut Rng, most: usize) -> String {
    let i = rng.below(b.len());
    let n = (1 + rng.below(most)).min(b.len() - i);
    b.drain(i..i + n);
    format!("delete {n} bytes at {i}")
}

/// Copies a span of 1 to `most` bytes to a random place.
pub fn copy_span(b: &mut Vec<u8>, rng: &mut Rng, most: usize) -> String {
    let i = rng.below(b.len());
    let n = (1 + rng.below(most)).min(b.len() - i);
    let copy = b[i..i + n].to_vec();
    let at = rng.below(b.len() + 1);
    b.splice(at..at, copy);
    format!("copy {n} bytes at {i} to {at}")
}

/// Inserts one of `pieces` at a random place.
pub fn insert_piece(b: &mut Vec<u8>, rng: &mut Rng, pieces: &[&str]) -> String {
    let i = rng.below(b.len() + 1);
    let j = *rng.pick(pieces);
    b.splice(i..i, j.bytes());
    format!("insert {j:?} at {i}")
}

/// Inserts 1 to `most` random bytes at `i`.
pub fn insert_random(b: &mut Vec<u8>, i: usize, rng: &mut Rng, most: usize) -> String {
    let n = 1 + rng.below(most);
    let junk: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
    b.splice(i..i, junk);
    format!("insert {n} random bytes at {i}")
}

/// Overwrites 1 to `most` bytes from `i` with random ones.
pub fn randomize(b: &mut [u8], i: usize, rng: &mut Rng, most: usize) -> String {
    let n = (1 + rng.below(most)).min(b.len() - i);
    for x in &mut b[i..i + n] {
        *x = rng.byte();
    }
    format!("randomize {n} bytes at {i}")
}

/// Replaces a random run of ASCII digits with one of `numbers`.
pub fn replace_number(b: &mut Vec<u8>, rng: &mut Rng, numbers: &[&str]) -> String {
    let starts: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return "no number".into();
    }
    let s = *rng.pick(&starts);
    let mut e = s;
    while e < b.len() && b[e].is_ascii_digit() {
        e += 1;
    }
    let n = *rng.pick(numbers);
    b.splice(s..e, n.bytes());
    format!("number at {s} = {n}")
}
