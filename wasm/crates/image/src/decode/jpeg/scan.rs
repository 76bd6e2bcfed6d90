//! One scan's entropy-coded data → coefficients (T.81 Annex F and G, Huffman coding only):
//! sequential blocks go straight through the IDCT into their component's plane; progressive
//! scans (DC first and refinement, AC first with end-of-band runs, AC refinement) accumulate
//! coefficients that the IDCT reads once every scan is in. Restart markers reset the DC
//! predictions and the end-of-band run, as libjpeg does.

use super::corrupt;
use super::huffman::{BitReader, Huffman};
use super::idct::{idct_dc_only, idct_islow};
use super::markers::{Scan, ZIGZAG};
use super::upsample::Plane;
use crate::error::ImageError;

/// A frame component as the decoder fills it.
pub(super) struct Component {
    pub h: usize,
    pub v: usize,
    pub tq: usize,
    /// Blocks that hold image samples, across and down (libjpeg's `width_in_blocks`,
    /// `height_in_blocks`).
    pub width_in_blocks: usize,
    pub height_in_blocks: usize,
    /// Blocks across and down in `plane` / `coefs`: whole MCUs, so interleaved scans' padding
    /// blocks fit.
    pub blocks_across: usize,
    pub blocks_down: usize,
    /// Its quantization table (natural order), latched when the component's first scan starts,
    /// as libjpeg latches it (a later DQT for the same slot does not change it).
    pub quant: Option<[u16; 64]>,
    /// Its samples, (blocks down × 8, blocks across × 8); empty until its first scan
    /// (sequential) or the IDCT once every scan is in (progressive).
    pub plane: Plane,
    /// Progressive only: (blocks down, blocks across) of 64 coefficients in zigzag order (so an
    /// AC band is contiguous); empty until its first scan.
    pub coefs: Vec<[i16; 64]>,
    /// Progressive only: per block of `coefs`, bit k clear where zigzag AC coefficient k is
    /// zero (set where a scan coded it).
    pub nonzero: Vec<u64>,
    /// Progressive only: per zigzag coefficient, the Al of the last scan that coded it, -1 where
    /// none has (libjpeg's `coef_bits`).
    pub coef_bits: [i8; 64],
}

/// What the scan decoder needs besides its components.
pub(super) struct Tables<'a> {
    pub dc: &'a [Option<Huffman>; 4],
    pub ac: &'a [Option<Huffman>; 4],
    pub quant: &'a [Option<[u16; 64]>; 4],
    pub restart_interval: usize,
    /// Whole MCUs across and down of an interleaved scan.
    pub mcus: (usize, usize),
    pub progressive: bool,
}

/// Huffman table `slot` of `class` ("DC" / "AC"), which the scan needs.
fn table<'a>(
    tables: &'a [Option<Huffman>; 4],
    slot: usize,
    class: &str,
) -> Result<Option<&'a Huffman>, ImageError> {
    match &tables[slot] {
        Some(h) => Ok(Some(h)),
        None => Err(corrupt(format!(
            "a scan uses {class} Huffman table {slot}, which no DHT defines"
        ))),
    }
}

/// The kind of scan, which picks the block decoder.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

/// (across, down) of the MCUs a scan goes through: a single-component scan's MCU is one block
/// and it covers only the blocks that hold samples; an interleaved scan covers whole MCUs
/// (`mcus`), padding blocks included.
fn extent(scan: &Scan, comps: &[Component], mcus: (usize, usize)) -> (usize, usize) {
    match &scan.components[..] {
        [only] => {
            let c = &comps[only.index];
            (c.width_in_blocks, c.height_in_blocks)
        }
        _ => mcus,
    }
}

/// How many blocks a scan visits, each once, whatever its data says (end-of-band runs skip a
/// block's bits, not the visit).
pub(super) fn blocks_visited(scan: &Scan, comps: &[Component], mcus: (usize, usize)) -> usize {
    let (across, down) = extent(scan, comps, mcus);
    let per_mcu: usize = match &scan.components[..] {
        [_] => 1,
        all => all
            .iter()
            .map(|sc| comps[sc.index].h * comps[sc.index].v)
            .sum(),
    };
    across * down * per_mcu
}

/// Refuses, before anything is allocated for it, a scan of `blocks` blocks whose data cannot
/// hold the bits they need, given the `available` bytes from its data to the end of the file.
/// Every Huffman code is at least 1 bit: a sequential block holds two codes (DC, then an AC
/// code or end-of-block), a DC first scan's block one, a DC refinement's block one bit. AC scans
/// give no useful bound (an end-of-band run codes 32,767 blocks in 15 bits). A scan that reads
/// more bits than its data holds is refused as truncated anyway (`BitReader::overran`), so this
/// refuses no file that would decode: it only refuses it before its header's size costs memory.
fn refuse_short_data(kind: Kind, blocks: usize, available: usize) -> Result<(), ImageError> {
    let bits_per_block = match kind {
        Kind::Sequential => 2,
        Kind::DcFirst | Kind::DcRefine => 1,
        Kind::AcFirst | Kind::AcRefine => 0,
    };
    let needed = (bits_per_block * blocks).div_ceil(8);
    if needed > available {
        return Err(corrupt(format!(
            "a scan of {blocks} blocks needs at least {needed} bytes of data, and the file has \
             {available} left (truncated file?)"
        )));
    }
    Ok(())
}

/// Decodes the scan whose data starts at `pos`; returns the marker after it (its code and the
/// offset after the code), None where the file ends instead.
pub(super) fn decode_scan(
    bytes: &[u8],
    pos: usize,
    scan: &Scan,
    comps: &mut [Component],
    t: &Tables,
) -> Result<Option<(u8, usize)>, ImageError> {
    let kind = match (t.progressive, scan.ss, scan.ah) {
        (false, _, _) => Kind::Sequential,
        (true, 0, 0) => Kind::DcFirst,
        (true, 0, _) => Kind::DcRefine,
        (true, _, 0) => Kind::AcFirst,
        (true, _, _) => Kind::AcRefine,
    };
    refuse_short_data(
        kind,
        blocks_visited(scan, comps, t.mcus),
        bytes.len().saturating_sub(pos),
    )?;
    // Latch quantization tables, find the Huffman tables, record the progression, and make room
    // for the coefficients (or samples) of a component's first scan.
    let mut huff: Vec<(Option<&Huffman>, Option<&Huffman>)> = Vec::new();
    for sc in &scan.components {
        let c = &mut comps[sc.index];
        if c.quant.is_none() {
            c.quant = Some(t.quant[c.tq].ok_or_else(|| {
                corrupt(format!(
                    "a scan uses quantization table {} before any DQT defines it",
                    c.tq
                ))
            })?);
        }
        let dc = match kind {
            Kind::Sequential | Kind::DcFirst => table(t.dc, sc.dc, "DC")?,
            _ => None,
        };
        let ac = match kind {
            Kind::Sequential | Kind::AcFirst | Kind::AcRefine => table(t.ac, sc.ac, "AC")?,
            _ => None,
        };
        huff.push((dc, ac));
        if t.progressive {
            // libjpeg only warns (JWRN_BOGUS_PROGRESSION) and goes on; we refuse it, which
            // also keeps a few bytes of AC scans from allocating a component's coefficients.
            if scan.ss > 0 && c.coef_bits[0] < 0 {
                return Err(corrupt(
                    "an AC scan of a component before its DC scan (T.81 G.1.1.1.1: \
                     a first DC scan shall precede any AC scans)",
                ));
            }
            for k in scan.ss..=scan.se {
                c.coef_bits[k] = scan.al as i8;
            }
            if c.coefs.is_empty() {
                c.coefs = vec![[0; 64]; c.blocks_across * c.blocks_down];
                c.nonzero = vec![0; c.coefs.len()];
            }
        } else if c.plane.data.is_empty() {
            c.plane.data = vec![0; c.plane.stride * c.blocks_down * 8];
        }
    }

    let single = scan.components.len() == 1;
    let (across, down) = extent(scan, comps, t.mcus);
    let mut r = BitReader::new(bytes, pos);
    let mut preds = [0i32; 4];
    let mut eobrun = 0u32;
    for m in 0..across * down {
        if t.restart_interval > 0 && m > 0 && m % t.restart_interval == 0 {
            let expected = 0xd0 + ((m / t.restart_interval - 1) % 8) as u8;
            match r.next_marker() {
                Some((code, _)) if code == expected => {}
                found => {
                    return Err(corrupt(format!(
                        "restart marker RST{} missing after MCU {m} (found {})",
                        expected - 0xd0,
                        found.map_or("the end of the file".into(), |f| format!("0xFF{:02X}", f.0))
                    )));
                }
            }
            preds = [0; 4];
            eobrun = 0;
        }
        let (mx, my) = (m % across, m / across);
        for (si, sc) in scan.components.iter().enumerate() {
            let c = &mut comps[sc.index];
            let (bh, bv) = if single { (1, 1) } else { (c.h, c.v) };
            let (dc, ac) = huff[si];
            for by in 0..bv {
                for bx in 0..bh {
                    let (x, y) = (mx * bh + bx, my * bv + by);
                    match kind {
                        Kind::Sequential => {
                            let mut block = [0i16; 64];
                            let (dc, ac) = (dc.unwrap(), ac.unwrap());
                            let has_ac = sequential(&mut r, dc, ac, &mut preds[si], &mut block)?;
                            let stride = c.plane.stride;
                            let out = &mut c.plane.data[y * 8 * stride + x * 8..];
                            let quant = c.quant.as_ref().unwrap();
                            if has_ac {
                                idct_islow(&block, quant, out, stride);
                            } else {
                                idct_dc_only(block[0], quant[0], out, stride);
                            }
                        }
                        Kind::DcFirst => {
                            let s = dc.unwrap().decode(&mut r)?;
                            preds[si] = preds[si].wrapping_add(r.receive_extend(s as u32));
                            c.coefs[y * c.blocks_across + x][0] =
                                preds[si].wrapping_shl(scan.al as u32) as i16;
                        }
                        Kind::DcRefine => {
                            if r.bit() {
                                c.coefs[y * c.blocks_across + x][0] |= 1 << scan.al;
                            }
                        }
                        Kind::AcFirst => {
                            let i = y * c.blocks_across + x;
                            let blk = (&mut c.coefs[i], &mut c.nonzero[i]);
                            ac_first(&mut r, ac.unwrap(), scan, &mut eobrun, blk)?;
                        }
                        Kind::AcRefine => {
                            let i = y * c.blocks_across + x;
                            let blk = (&mut c.coefs[i], &mut c.nonzero[i]);
                            ac_refine(&mut r, ac.unwrap(), scan, &mut eobrun, blk)?;
                        }
                    }
                }
            }
        }
        if r.overran() {
            return Err(corrupt(format!(
                "the scan's data ends after {m} of {} MCUs (truncated file?)",
                across * down
            )));
        }
    }
    Ok(r.next_marker())
}

/// A sequential block: DC difference, then (run, size) AC codes up to end-of-block; whether any
/// AC coefficient was coded.
#[inline(always)]
fn sequential(
    r: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i16; 64],
) -> Result<bool, ImageError> {
    let s = dc.decode(r)?;
    *pred = pred.wrapping_add(r.receive_extend(s as u32));
    block[0] = *pred as i16;
    let mut k = 1;
    while k < 64 {
        if let Some((run, value)) = ac.decode_ac_fast(r) {
            k += run;
            if k > 63 {
                return Err(past_the_band(63));
            }
            block[ZIGZAG[k]] = value as i16;
            k += 1;
            continue;
        }
        let rs = ac.decode(r)?;
        let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
        if size == 0 {
            if run != 15 {
                break;
            }
            k += 16;
            continue;
        }
        k += run;
        if k > 63 {
            return Err(past_the_band(63));
        }
        block[ZIGZAG[k]] = r.receive_extend(size) as i16;
        k += 1;
    }
    Ok(k > 1)
}

fn past_the_band(se: usize) -> ImageError {
    corrupt(format!(
        "a run of zero coefficients past the block's last coefficient ({se})"
    ))
}

/// A progressive AC first scan's block (`decode_mcu_AC_first`): coefficients `ss..=se` scaled
/// by 2^al, or one block of an end-of-band run.
fn ac_first(
    r: &mut BitReader,
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
    (blk, nonzero): (&mut [i16; 64], &mut u64),
) -> Result<(), ImageError> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = ac.decode(r)?;
        let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
        if size == 0 {
            if run != 15 {
                // EOBn: this block and 2^n + (n bits) - 1 more end here.
                *eobrun = (1 << run) + r.bits(run as u32) - 1;
                break;
            }
            k += 16;
            continue;
        }
        k += run;
        if k > scan.se {
            return Err(past_the_band(scan.se));
        }
        blk[k] = r.receive_extend(size).wrapping_shl(scan.al as u32) as i16;
        *nonzero |= 1 << k;
        k += 1;
    }
    Ok(())
}

/// A progressive AC refinement scan's block (`decode_mcu_AC_refine`): one more bit of every
/// nonzero coefficient in the band, and newly nonzero coefficients of ±2^al placed after runs of
/// still-zero ones.
fn ac_refine(
    r: &mut BitReader,
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
    (blk, nonzero): (&mut [i16; 64], &mut u64),
) -> Result<(), ImageError> {
    let p1 = 1i16 << scan.al;
    let m1 = (-1i16).wrapping_shl(scan.al as u32);
    // A correction bit of 1 moves a nonzero coefficient one step away from zero.
    let refine = |r: &mut BitReader, coef: &mut i16| {
        if r.bit() && *coef & p1 == 0 {
            *coef = coef.wrapping_add(if *coef >= 0 { p1 } else { m1 });
        }
    };
    let mut k = scan.ss;
    if *eobrun == 0 {
        while k <= scan.se {
            let rs = ac.decode(r)?;
            let (mut run, size) = ((rs >> 4) as i32, rs & 15);
            let mut value = 0i16;
            if size != 0 {
                if size != 1 {
                    return Err(corrupt(format!(
                        "a refinement scan code of size {size} (only 1 is possible)"
                    )));
                }
                value = if r.bit() { p1 } else { m1 };
            } else if run != 15 {
                *eobrun = (1 << run) + r.bits(run as u32);
                break;
            }
            // Skip `run` still-zero coefficients, refining the nonzero ones passed on the way.
            while k <= scan.se {
                let coef = &mut blk[k];
                if *coef != 0 {
                    refine(r, coef);
                } else {
                    run -= 1;
                    if run < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                if k > scan.se {
                    return Err(past_the_band(scan.se));
                }
                blk[k] = value;
                *nonzero |= 1 << k;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // Inside an end-of-band run: only the nonzero coefficients get their bit. An end-of-band
        // run costs a few bits for thousands of blocks, so this is the visit a file's size does
        // not pay for; most blocks of a run have no nonzero coefficient in the band, and the
        // block's mask says so without reading its 128 bytes of coefficients.
        let band = (u64::MAX >> (63 - scan.se)) & u64::MAX.checked_shl(k as u32).unwrap_or(0);
        if *nonzero & band != 0 {
            for coef in &mut blk[k..=scan.se] {
                if *coef != 0 {
                    refine(r, coef);
                }
            }
        }
        *eobrun -= 1;
    }
    Ok(())
}
