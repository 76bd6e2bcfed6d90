//! The entropy-coded segment's bits and the Huffman codes in them (ITU T.81 Annex C and F.2.2):
//! a bit reader that drops stuffed zero bytes and stops at a marker, and canonical Huffman tables
//! decoded through a 9-bit lookup with a per-length fallback for longer codes.

use super::corrupt;
use crate::error::ImageError;

/// Bits of an entropy-coded segment, most significant first.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte to load; at a marker it stays on the marker's 0xFF.
    pos: usize,
    /// Unread bits, left-aligned.
    bits: u64,
    count: u32,
    /// Zero bits appended past the end of the segment (a marker, or the end of the file) so
    /// that decoding can run ahead; reading any of them means the data ended early.
    pad: u32,
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader {
            data,
            pos,
            bits: 0,
            count: 0,
            pad: 0,
            at_marker: false,
        }
    }

    /// Tops the buffer up to at least 57 bits.
    #[inline(always)]
    fn refill(&mut self) {
        // Fast path: four bytes with no 0xFF among them load at once.
        if self.count <= 32
            && !self.at_marker
            && let Some(b) = self.data.get(self.pos..self.pos + 4)
            && !b.contains(&0xff)
        {
            let word = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
            self.bits |= word << (32 - self.count);
            self.count += 32;
            self.pos += 4;
        }
        while self.count <= 56 {
            let byte = self.next_byte();
            self.bits |= (byte as u64) << (56 - self.count);
            self.count += 8;
        }
    }

    /// The next data byte: 0xFF 0x00 is a stuffed 0xFF (after any 0xFF fill bytes); any other
    /// 0xFF xx, or the end of the data, is where the segment ends, and zeros follow.
    fn next_byte(&mut self) -> u8 {
        if !self.at_marker {
            match self.data.get(self.pos) {
                Some(&0xff) => {
                    let mut p = self.pos + 1;
                    while self.data.get(p) == Some(&0xff) {
                        p += 1;
                    }
                    if self.data.get(p) == Some(&0) {
                        self.pos = p + 1;
                        return 0xff;
                    }
                    self.at_marker = true;
                }
                Some(&b) => {
                    self.pos += 1;
                    return b;
                }
                None => self.at_marker = true,
            }
        }
        self.pad += 8;
        0
    }

    #[inline(always)]
    fn ensure(&mut self, n: u32) {
        if self.count < n {
            self.refill();
        }
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.bits >> (64 - n)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.bits <<= n;
        self.count -= n;
    }

    /// `n` (0..=16) raw bits.
    #[inline(always)]
    pub fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        self.ensure(n);
        let v = self.peek(n);
        self.consume(n);
        v
    }

    pub fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    /// `n` bits read as a signed magnitude-category value (T.81 F.2.2.1 `EXTEND`).
    #[inline(always)]
    pub fn receive_extend(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        extend(self.bits(n) as i32, n)
    }

    /// Whether decoding has read past the end of the segment: the stream is truncated or
    /// corrupt (libjpeg would go on with zeros and a warning; PIL without
    /// `LOAD_TRUNCATED_IMAGES` refuses a truncated file, and so do we).
    pub fn overran(&self) -> bool {
        self.count < self.pad
    }

    /// Drops the buffered bits and finds the next marker from where reading stopped, skipping
    /// stray bytes as libjpeg does: (its code, the offset just after it).
    pub fn next_marker(&mut self) -> Option<(u8, usize)> {
        self.bits = 0;
        self.count = 0;
        self.pad = 0;
        self.at_marker = false;
        let mut p = self.pos;
        loop {
            while *self.data.get(p)? != 0xff {
                p += 1;
            }
            while *self.data.get(p)? == 0xff {
                p += 1;
            }
            let code = *self.data.get(p)?;
            if code != 0 {
                self.pos = p + 1;
                return Some((code, p + 1));
            }
        }
    }
}

/// `v`, the `n` (1..=16) extra bits of a magnitude category, as the signed value they code.
#[inline(always)]
fn extend(v: i32, n: u32) -> i32 {
    if v < 1 << (n - 1) {
        v - (1 << n) + 1
    } else {
        v
    }
}

const LOOKUP_BITS: u32 = 9;

/// A decoding table built from a DHT segment's code counts and symbols.
pub(super) struct Huffman {
    /// For every 9-bit prefix: `length << 8 | symbol` of the code it starts with, 0 where the
    /// code is longer.
    lookup: Vec<u16>,
    /// The largest code of each length 0..=16 (-1 where none), and the index into `symbols` of
    /// that length's first code minus the code (libjpeg's `maxcode` / `valoffset`).
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    symbols: Vec<u8>,
    /// For every 9-bit prefix that holds a whole AC code (run, size > 0) and its `size` extra
    /// bits: `value << 16 | run << 8 | bits used`, else 0; one lookup decodes most coefficients.
    ac_lookup: Vec<i32>,
}

impl Huffman {
    /// The table for `counts[l]` codes of length l + 1 and their `symbols` in code order;
    /// refused (as libjpeg refuses) where the counts overfill the code space.
    pub fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, ImageError> {
        let bad = || corrupt("a Huffman table (DHT) whose code lengths overflow the code space");
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut lookup = vec![0u16; 1 << LOOKUP_BITS];
        let (mut code, mut k) = (0u32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            if n > 0 {
                valoffset[len as usize] = k as i32 - code as i32;
                for _ in 0..n {
                    if code >= 1 << len {
                        return Err(bad());
                    }
                    if len <= LOOKUP_BITS {
                        let shift = LOOKUP_BITS - len;
                        let entry = (len as u16) << 8 | symbols[k] as u16;
                        let first = (code << shift) as usize;
                        lookup[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    k += 1;
                }
                maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX; // sentinel, as libjpeg's
        let ac_lookup = (0..1u32 << LOOKUP_BITS)
            .map(|prefix| {
                let entry = lookup[prefix as usize];
                let (len, run, size) = (
                    (entry >> 8) as u32,
                    (entry >> 4) as u8 & 15,
                    entry as u32 & 15,
                );
                if entry == 0 || size == 0 || len + size > LOOKUP_BITS {
                    return 0;
                }
                let bits = (prefix >> (LOOKUP_BITS - len - size)) & ((1 << size) - 1);
                extend(bits as i32, size) << 16 | (run as i32) << 8 | (len + size) as i32
            })
            .collect();
        Ok(Huffman {
            lookup,
            maxcode,
            valoffset,
            symbols: symbols.to_vec(),
            ac_lookup,
        })
    }

    /// An AC coefficient decoded whole from the next 9 bits, where they hold its code and its
    /// extra bits: (run of zeros before it, its value); None for anything else (EOB, ZRL,
    /// longer codes), which [`Huffman::decode`] then reads.
    #[inline(always)]
    pub fn decode_ac_fast(&self, r: &mut BitReader) -> Option<(usize, i32)> {
        r.ensure(32);
        let e = self.ac_lookup[r.peek(LOOKUP_BITS) as usize];
        if e == 0 {
            return None;
        }
        r.consume((e & 255) as u32);
        Some(((e >> 8 & 15) as usize, e >> 16))
    }

    /// The next symbol from `r`.
    #[inline(always)]
    pub fn decode(&self, r: &mut BitReader) -> Result<u8, ImageError> {
        r.ensure(32);
        let entry = self.lookup[r.peek(LOOKUP_BITS) as usize];
        if entry != 0 {
            r.consume((entry >> 8) as u32);
            return Ok(entry as u8);
        }
        for len in LOOKUP_BITS + 1..=16 {
            let code = r.peek(len) as i32;
            if code <= self.maxcode[len as usize] {
                r.consume(len);
                return Ok(self.symbols[(code + self.valoffset[len as usize]) as usize]);
            }
        }
        Err(corrupt(
            "a bit pattern that is no code of its Huffman table",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_reader_unstuffs_ff00_and_pads_at_a_marker() {
        let data = [0b1010_0000, 0xff, 0x00, 0x12, 0xff, 0xd9];
        let mut r = BitReader::new(&data, 0);
        assert_eq!(r.bits(3), 0b101);
        assert_eq!(r.bits(5), 0);
        assert_eq!(r.bits(8), 0xff);
        assert_eq!(r.bits(8), 0x12);
        assert!(!r.overran());
        assert_eq!(r.bits(1), 0);
        assert!(r.overran());
        assert_eq!(r.next_marker(), Some((0xd9, 6)));
    }

    #[test]
    fn receive_extend_gives_negative_values_below_half_the_range() {
        let data = [0b0011_1000, 0b0100_0000];
        let mut r = BitReader::new(&data, 0);
        // 3 bits 001 → 1 - 8 + 1 = -6; 3 bits 110 → 6; 3 bits 000 → -7; 2 bits 10 → 2
        assert_eq!(r.receive_extend(3), -6);
        assert_eq!(r.receive_extend(3), 6);
        assert_eq!(r.receive_extend(3), -7);
        assert_eq!(r.receive_extend(2), 2);
    }

    #[test]
    fn huffman_decodes_short_and_long_codes() {
        // Lengths: one code of 1 bit (0 → 'a'), one of 2 (10 → 'b'), one of 12
        // (110000000000 → 'c').
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[1] = 1;
        counts[11] = 1;
        let h = Huffman::new(&counts, b"abc").unwrap();
        let data = [0b0101_1000, 0b0000_0000, 0b1000_0000];
        let mut r = BitReader::new(&data, 0);
        let got: Vec<u8> = (0..4).map(|_| h.decode(&mut r).unwrap()).collect();
        assert_eq!(got, b"abca");
        assert!(
            h.decode(&mut BitReader::new(&[0xff, 0x00, 0xff, 0x00], 0))
                .is_err()
        );
        // AC symbols: 0x02 (run 0, size 2) coded 0, 0x31 (run 3, size 1) coded 10.
        let mut ac_counts = [0u8; 16];
        ac_counts[0] = 1;
        ac_counts[1] = 1;
        let ac = Huffman::new(&ac_counts, &[0x02, 0x31]).unwrap();
        let data = [0b0010_1010, 0b0101_0000]; // 0 01, 0 10, 10 0, 10 1
        let mut r = BitReader::new(&data, 0);
        assert_eq!(ac.decode_ac_fast(&mut r), Some((0, -2)));
        assert_eq!(ac.decode_ac_fast(&mut r), Some((0, 2)));
        assert_eq!(ac.decode_ac_fast(&mut r), Some((3, -1)));
        assert_eq!(ac.decode_ac_fast(&mut r), Some((3, 1)));
        counts[0] = 3; // three 1-bit codes cannot exist
        assert!(Huffman::new(&counts, b"abcde").is_err());
    }
}
