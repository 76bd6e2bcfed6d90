//! JPEG → RGB bit for bit as PIL gives it: `Image.open(f).convert("RGB")` with Pillow's bundled
//! libjpeg-turbo (3.x) under Pillow's settings (ISLOW IDCT, fancy upsampling, no DCT scaling,
//! colour space guessed by libjpeg, CMYK read as `CMYK;I`), which is what transformers'
//! `load_image` feeds the model. Each stage follows libjpeg's arithmetic exactly: [`huffman`] and
//! [`scan`] decode baseline, extended and progressive Huffman-coded scans (interleaved or not,
//! with restart intervals, sampling factors 1 to 4 in any combination libjpeg accepts, chroma
//! finer than luma included, Annex K tables where a sequential file has none), [`idct`] is
//! `jidctint.c`, [`upsample`] is `jdsample.c`'s choice of method per component, [`color`] is
//! `jdcolor.c` plus PIL's own CMYK → RGB. tests/tools/make_jpeg_refs.py makes the corpus that
//! holds it to PIL byte for byte.
//!
//! Refused with [`ImageError::Corrupt`], as PIL refuses them: precision other than 8 bits,
//! lossless and hierarchical JPEG, 2-component images, fractional sampling ratios, sides over
//! 65500, truncated files (data cut short, or no EOI; PIL refuses them unless
//! `LOAD_TRUNCATED_IMAGES`). Refused where PIL decodes: arithmetic-coded JPEG (rare; libjpeg-turbo
//! decodes it), corrupt entropy-coded data (libjpeg goes on with a warning and PIL returns what
//! it made of it; we keep the strictness zune-jpeg had), a progressive file whose scans stop
//! before its first AC coefficients are complete, which libjpeg block-smooths
//! (`do_block_smoothing`; no common encoder writes one), an AC scan of a component before its
//! DC scan (T.81 forbids it; libjpeg warns and goes on), and a file whose scans together visit
//! its blocks more than [`VISITS_PER_BLOCK`] times over (a bound on decoding time that no
//! encoder's scan script comes near).

mod color;
mod huffman;
mod idct;
mod markers;
mod scan;
mod upsample;

use super::{Format, RgbImage, check_dimensions};
use crate::error::ImageError;
use color::ColorSpace;
use huffman::Huffman;
use markers::{APP0, APP14, DHT, DQT, DRI, EOI, Frame, SOS, Segment};
use scan::{Component, Tables};
use upsample::{Method, Plane};

fn corrupt(e: impl std::fmt::Display) -> ImageError {
    ImageError::Corrupt {
        format: "JPEG",
        detail: e.to_string(),
    }
}

/// Whether `marker` starts a frame: SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(marker: u8) -> bool {
    (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc)
}

/// A frame header read and checked as [`dimensions`] and [`decode`] both refuse it: the pixel
/// limit first (TooLarge), then libjpeg's 65500 per side.
fn read_frame(marker: u8, payload: &[u8]) -> Result<markers::Frame, ImageError> {
    let f = markers::frame(marker, payload)?;
    check_dimensions(Format::Jpeg, f.width as u64, f.height as u64)?;
    f.check_sides()?;
    Ok(f)
}

/// (width, height) from the frame header, nothing decoded.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), ImageError> {
    let mut pos = 2; // after SOI
    loop {
        let seg = markers::segment(bytes, pos)?;
        if is_sof(seg.marker) {
            let f = read_frame(seg.marker, seg.payload)?;
            return Ok((f.width, f.height));
        }
        if matches!(seg.marker, SOS | EOI) {
            return Err(corrupt("no frame header before the first scan"));
        }
        pos = seg.end;
    }
}

/// Everything read so far: tables, markers, and once the frame header is in, its components.
#[derive(Default)]
struct Decoder {
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    jfif: bool,
    adobe: Option<u8>,
    frame: Option<Frame>,
    comps: Vec<Component>,
    mcus: (usize, usize),
    max: (usize, usize),
    scans: usize,
    /// The frame's blocks, all components (padding blocks of whole MCUs included).
    blocks: usize,
    /// Blocks the scans so far have visited, all scans together.
    visits: usize,
}

/// How many times over, on average, a file's scans may visit the frame's blocks: the bound on
/// decoding work that a file's size does not give. A progressive AC scan skips any number of
/// blocks with end-of-band runs (32,767 blocks for two bytes), yet each skipped block is still
/// visited and, in a refinement scan, has its coefficients checked, so a 200 KB file of
/// a thousand such scans held a decoder for over a minute. Each scan visits each block of its
/// components at most once, so the visits of a file are at most (the most scans one component is
/// in) × the frame's blocks. The encoders' scripts are far below 64: libjpeg's and jpegtran's
/// `jpeg_simple_progression` puts luma in 6 scans and each chroma component in 4 (10 scans in
/// all), mozjpeg picks among scripts of that kind, hand-written successive approximation scripts
/// put a component in about 20; even a script that gives every AC coefficient its own scan (63
/// scans and the DC one) fits. The worst file it admits at the pixel limit (8192 × 8192, 4
/// components: 4M blocks, 256M visits, all refinement scans of one component over zero
/// coefficients, the cheapest visit per byte of file) is 157 KB and decodes in about 9 s natively
/// (x86-64 release build, two busy cores; 27 s before `Component::nonzero` let such a visit skip
/// the block's coefficients), where a 1000-scan file took 85 s before this bound.
const VISITS_PER_BLOCK: usize = 64;

/// A block's coefficients in natural (row-major) order from zigzag order.
fn natural_order(zigzag: &[i16; 64]) -> [i16; 64] {
    let mut block = [0; 64];
    for (&z, &c) in markers::ZIGZAG.iter().zip(zigzag) {
        block[z] = c;
    }
    block
}

/// The file's pixels as stored (the caller turns them upright by their EXIF orientation): reads
/// the markers in order, decoding each scan as it comes, then upsamples and converts to RGB.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut d = Decoder::default();
    d.read(bytes)?;
    d.finish()
}

impl Decoder {
    /// Reads the markers up to EOI, decoding each scan as it comes.
    fn read(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let mut next: Option<Segment> = None;
        let mut pos = 2; // after SOI (the format sniff saw it)
        loop {
            let seg = match next.take() {
                Some(seg) => seg,
                None => markers::segment(bytes, pos)?,
            };
            pos = seg.end;
            match seg.marker {
                m if is_sof(m) => {
                    if self.frame.is_some() {
                        return Err(corrupt("a second frame header (SOF)"));
                    }
                    let f = read_frame(m, seg.payload)?;
                    self.start_frame(f);
                }
                DHT => markers::huffman_tables(seg.payload, &mut self.dc, &mut self.ac)?,
                DQT => markers::quant_tables(seg.payload, &mut self.quant)?,
                DRI => {
                    let [hi, lo] = seg.payload[..] else {
                        return Err(corrupt("a restart interval (DRI) segment not 2 bytes long"));
                    };
                    self.restart_interval = u16::from_be_bytes([hi, lo]) as usize;
                }
                APP0 => self.jfif |= markers::is_jfif(seg.payload),
                APP14 => self.adobe = markers::adobe_transform(seg.payload).or(self.adobe),
                SOS => match self.scan(bytes, &seg)? {
                    Some((code, after)) => {
                        next = Some(markers::marker_segment(bytes, code, after)?)
                    }
                    // PIL refuses a file that ends without EOI ("image file is truncated"), even
                    // where every scan is complete.
                    None => {
                        return Err(corrupt(
                            "the file ends without its end-of-image marker (truncated?)",
                        ));
                    }
                },
                EOI => break,
                0xdc => {
                    return Err(corrupt(
                        "a DNL marker (height given after the scan), which libjpeg does not decode",
                    ));
                }
                _ => {} // APPn, COM, RSTn between scans, DAC: nothing we need
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, f: Frame) {
        let max =
            |k: fn(&markers::FrameComponent) -> usize| f.components.iter().map(k).max().unwrap();
        let (max_h, max_v) = (max(|c| c.h), max(|c| c.v));
        let ceil = |a: usize, b: usize| a.div_ceil(b);
        self.mcus = (ceil(f.width, 8 * max_h), ceil(f.height, 8 * max_v));
        self.max = (max_h, max_v);
        self.comps = f
            .components
            .iter()
            .map(|c| {
                let blocks_across = self.mcus.0 * c.h;
                let blocks_down = self.mcus.1 * c.v;
                Component {
                    h: c.h,
                    v: c.v,
                    tq: c.tq,
                    width_in_blocks: ceil(f.width * c.h, 8 * max_h),
                    height_in_blocks: ceil(f.height * c.v, 8 * max_v),
                    blocks_across,
                    blocks_down,
                    quant: None,
                    // Allocated by the component's first scan, not here: a header of a few bytes
                    // declares up to 8192 × 8192 × 4 components (768 MB of coefficients and
                    // samples), and wasm memory, once grown, stays grown.
                    plane: Plane {
                        data: Vec::new(),
                        stride: blocks_across * 8,
                        width: ceil(f.width * c.h, max_h),
                        height: ceil(f.height * c.v, max_v),
                    },
                    coefs: Vec::new(),
                    nonzero: Vec::new(),
                    coef_bits: [-1; 64],
                }
            })
            .collect();
        self.blocks = self
            .comps
            .iter()
            .map(|c| c.blocks_across * c.blocks_down)
            .sum();
        self.frame = Some(f);
    }

    /// Reads the SOS header in `seg` and decodes its scan.
    fn scan(&mut self, bytes: &[u8], seg: &Segment) -> Result<Option<(u8, usize)>, ImageError> {
        let frame = self
            .frame
            .as_ref()
            .ok_or_else(|| corrupt("a scan (SOS) before the frame header (SOF)"))?;
        let scan = markers::scan(seg.payload, frame)?;
        self.visits += scan::blocks_visited(&scan, &self.comps, self.mcus);
        if self.visits > VISITS_PER_BLOCK * self.blocks {
            return Err(corrupt(format!(
                "too many scans for its size: {} block visits in {} scans, more than \
                 {VISITS_PER_BLOCK}× its {} blocks; encoders' progressive scripts visit each \
                 block 6 to 20 times",
                self.visits,
                self.scans + 1,
                self.blocks
            )));
        }
        if self.scans == 0 && !frame.progressive {
            let (mut dc, mut ac) = Default::default();
            markers::huffman_tables(&markers::STANDARD_DHT, &mut dc, &mut ac)?;
            let fill = |ours: &mut [Option<Huffman>; 4], std: [Option<Huffman>; 4]| {
                for (slot, table) in ours.iter_mut().zip(std) {
                    if slot.is_none() {
                        *slot = table;
                    }
                }
            };
            fill(&mut self.dc, dc);
            fill(&mut self.ac, ac);
        }
        let tables = Tables {
            dc: &self.dc,
            ac: &self.ac,
            quant: &self.quant,
            restart_interval: self.restart_interval,
            mcus: self.mcus,
            progressive: frame.progressive,
        };
        let next = scan::decode_scan(bytes, seg.end, &scan, &mut self.comps, &tables)?;
        self.scans += 1;
        Ok(next)
    }

    /// The IDCT of progressive coefficients, then upsampling and colour conversion.
    fn finish(mut self) -> Result<RgbImage, ImageError> {
        let frame = self
            .frame
            .take()
            .ok_or_else(|| corrupt("no frame header (SOF)"))?;
        if self.scans == 0 {
            return Err(corrupt("no image data (no scan before the end)"));
        }
        if frame.progressive {
            self.refuse_block_smoothing()?;
            for c in &mut self.comps {
                let quant = c.quant.unwrap_or([0; 64]);
                let stride = c.plane.stride;
                c.plane.data = vec![0; stride * c.blocks_down * 8];
                // A component no scan reached has no coefficients: all zero, mid-grey, as libjpeg
                // leaves it. A block whose AC mask is empty has only its DC: idct_block would find
                // that by looking at all 63 (after reordering them), the mask already says it.
                for y in 0..c.height_in_blocks {
                    for x in 0..c.width_in_blocks {
                        let out = &mut c.plane.data[y * 8 * stride + x * 8..];
                        let i = y * c.blocks_across + x;
                        if c.nonzero.get(i).is_none_or(|&m| m == 0) {
                            let dc = c.coefs.get(i).map_or(0, |b| b[0]);
                            idct::idct_dc_only(dc, quant[0], out, stride);
                        } else {
                            idct::idct_block(&natural_order(&c.coefs[i]), &quant, out, stride);
                        }
                    }
                }
                c.coefs = Vec::new();
                c.nonzero = Vec::new();
            }
        } else if let Some(i) = self.comps.iter().position(|c| c.quant.is_none()) {
            return Err(corrupt(format!(
                "component {} has no scan (truncated file?)",
                frame.components[i].id
            )));
        }
        let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
        let space = ColorSpace::guess(&ids, self.jfif, self.adobe);
        let methods = self
            .comps
            .iter()
            .map(|c| Method::choose((c.h, c.v), self.max, c.plane.width))
            .collect::<Result<Vec<_>, _>>()?;
        let (w, h) = (frame.width, frame.height);
        // Room for whole MCUs across, so the upsamplers write whole groups.
        let padded = self.mcus.0 * 8 * self.max.0;
        let mut scratch = vec![vec![0u8; padded]; self.comps.len()];
        let mut out = vec![0u8; w * h * 3];
        for (y, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
            let mut rows: [&[u8]; 4] = [&[]; 4];
            for (((m, c), s), row) in methods
                .iter()
                .zip(&self.comps)
                .zip(&mut scratch)
                .zip(&mut rows)
            {
                *row = m.row(&c.plane, y, s);
            }
            color::convert_row(space, &rows[..self.comps.len()], out_row);
        }
        Ok(RgbImage::new(w, h, out))
    }

    /// libjpeg smooths the blocks of a progressive image whose coefficients 1..=9 (zigzag) are
    /// not all complete once the file ends (`smoothing_ok` in jdcoefct.c); we refuse those.
    fn refuse_block_smoothing(&self) -> Result<(), ImageError> {
        const LOW: [usize; 10] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24];
        let possible = self.comps.iter().all(|c| {
            c.coef_bits[0] >= 0 && c.quant.is_some_and(|q| LOW.iter().all(|&i| q[i] != 0))
        });
        let useful = self
            .comps
            .iter()
            .any(|c| c.coef_bits[1..10].iter().any(|&b| b != 0));
        if possible && useful {
            return Err(corrupt(
                "a progressive JPEG whose scans end before its first AC coefficients are \
                 complete, which libjpeg block-smooths and we do not reproduce",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xff, marker];
        s.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// SOI, a quantization table of ones, a frame header (`sof`: SOF0 sequential, SOF2
    /// progressive) of `side` × `side` with `comps` components sampled 1×1, and Huffman tables
    /// of one 1-bit code each: DC symbol 0 (no difference), AC symbol 0xE0 (EOB14).
    fn head(sof: u8, side: u16, comps: u8) -> Vec<u8> {
        let mut f = vec![0xff, 0xd8];
        f.extend(segment(DQT, &[[0u8].as_slice(), &[1; 64]].concat()));
        let [hi, lo] = side.to_be_bytes();
        let ids = (1..=comps).flat_map(|id| [id, 0x11, 0]);
        f.extend(segment(
            sof,
            &[8, hi, lo, hi, lo, comps]
                .into_iter()
                .chain(ids)
                .collect::<Vec<_>>(),
        ));
        let one_code = |class: u8, symbol: u8| [&[class, 1][..], &[0; 15], &[symbol]].concat();
        f.extend(segment(DHT, &one_code(0x00, 0)));
        f.extend(segment(DHT, &one_code(0x10, 0xe0)));
        f
    }

    /// A `side` × `side` progressive JPEG whose coefficients are all zero (mid-grey): a DC scan
    /// of component 1 (a 1-bit code a block), then `refinements` AC refinement scans (1..=63) of
    /// it that skip every block with end-of-band runs of 32,767 blocks (EOB14 and its 14 bits), a
    /// few bytes a scan: the CPU-time bomb /tmp/jfuzz/mk.py made, small.
    fn refinement_bomb(side: u16, comps: u8, refinements: usize) -> Vec<u8> {
        let blocks = (side as usize).div_ceil(8).pow(2);
        let mut f = head(0xc2, side, comps);
        f.extend(segment(SOS, &[1, 1, 0x00, 0, 0, 0]));
        f.extend(vec![0u8; blocks.div_ceil(8)]);
        // Each code '0' + 14 one bits runs 2^14 + 16383 blocks; zero bits pad the last byte.
        let runs = blocks.div_ceil(32767);
        let bits: Vec<bool> = (0..runs).flat_map(|_| (0..15).map(|i| i > 0)).collect();
        let mut data = Vec::new();
        for byte in bits.chunks(8) {
            let b = (0..8).fold(0u8, |b, i| {
                b << 1 | byte.get(i).copied().unwrap_or(false) as u8
            });
            data.push(b);
            if b == 0xff {
                data.push(0); // byte stuffing
            }
        }
        for _ in 0..refinements {
            f.extend(segment(SOS, &[1, 1, 0x00, 1, 63, 0x10]));
            f.extend(&data);
        }
        f.extend([0xff, EOI]);
        f
    }

    fn nothing_allocated(d: &Decoder) -> bool {
        d.comps
            .iter()
            .all(|c| c.coefs.is_empty() && c.nonzero.is_empty() && c.plane.data.is_empty())
    }

    #[test]
    fn decode_allows_scans_up_to_64_visits_per_block() {
        // The DC scan and 63 refinements: 64 visits of each of the 64 blocks.
        let image = decode(&refinement_bomb(64, 1, 63)).unwrap();
        assert_eq!((image.width, image.height), (64, 64));
        assert!(image.data.iter().all(|&v| v == 128));
    }

    #[test]
    fn decode_refuses_scans_past_64_visits_per_block() {
        let bomb = refinement_bomb(64, 1, 64);
        assert!(bomb.len() < 1000, "{} bytes", bomb.len());
        let err = decode(&bomb).expect_err("refused").to_string();
        assert!(
            err.contains("too many scans for its size: 4160 block visits in 65 scans, more than 64× its 64 blocks"),
            "{err}"
        );
    }

    #[test]
    fn read_allocates_nothing_for_a_frame_header_alone() {
        // /tmp/jfuzz/hdr.jpg: 8192 × 8192 with 4 components declared, then EOI (it held 526 MB).
        let mut f = head(0xc2, 8192, 4);
        f.extend([0xff, EOI]);
        let mut d = Decoder::default();
        d.read(&f).unwrap();
        assert_eq!((d.comps.len(), d.blocks), (4, 4 << 20));
        assert!(nothing_allocated(&d));
        let err = d.finish().expect_err("refused").to_string();
        assert!(err.contains("no image data"), "{err}");
    }

    #[test]
    fn read_refuses_a_scan_too_short_for_its_blocks_before_allocating() {
        // A DC scan needs a bit a block, a sequential scan two: 2^20 blocks, 128 KiB / 256 KiB.
        for (sof, dc_scan, needed) in [
            (0xc2, [1, 1, 0x00, 0, 0, 0], 131072),
            (0xc0, [1, 1, 0x00, 0, 63, 0], 262144),
        ] {
            let mut f = head(sof, 8192, 1);
            f.extend(segment(SOS, &dc_scan));
            f.extend([0; 1000]);
            f.extend([0xff, EOI]);
            let mut d = Decoder::default();
            let err = d.read(&f).expect_err("refused").to_string();
            let want = format!(
                "a scan of 1048576 blocks needs at least {needed} bytes of data, and the file has 1002 left"
            );
            assert!(err.contains(&want), "{err}");
            assert!(nothing_allocated(&d));
        }
    }

    #[test]
    fn read_refuses_an_ac_scan_before_the_dc_scan_before_allocating() {
        let mut f = head(0xc2, 8192, 1);
        f.extend(segment(SOS, &[1, 1, 0x00, 1, 63, 0x00]));
        f.extend([0x7f, 0xfe, 0xff, EOI]);
        let mut d = Decoder::default();
        let err = d.read(&f).expect_err("refused").to_string();
        assert!(
            err.contains("an AC scan of a component before its DC scan"),
            "{err}"
        );
        assert!(nothing_allocated(&d));
    }

    #[test]
    fn decode_leaves_a_component_no_scan_reached_mid_grey() {
        // Y gets its DC scan, Cb and Cr none: all three planes 128, grey once converted.
        let image = decode(&refinement_bomb(16, 3, 0)).unwrap();
        assert_eq!(image.data, vec![128; 16 * 16 * 3]);
    }
}
