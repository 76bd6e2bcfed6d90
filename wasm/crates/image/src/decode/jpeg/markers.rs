//! JPEG markers and the header segments we read (ITU T.81 Annex B): SOF (the frame: size,
//! components, sampling), DQT, DHT, DRI, SOS (a scan), and the APP0 (JFIF) and APP14 (Adobe)
//! markers libjpeg guesses the colour space from.

use super::corrupt;
use super::huffman::Huffman;
use crate::error::ImageError;

pub(super) const SOI: u8 = 0xd8;
pub(super) const EOI: u8 = 0xd9;
pub(super) const SOS: u8 = 0xda;
pub(super) const DQT: u8 = 0xdb;
pub(super) const DHT: u8 = 0xc4;
pub(super) const DRI: u8 = 0xdd;
pub(super) const APP0: u8 = 0xe0;
pub(super) const APP14: u8 = 0xee;

/// libjpeg's `JPEG_MAX_DIMENSION`: a larger side is refused (by PIL too).
const MAX_DIMENSION: usize = 65500;

/// A marker and its segment's payload (after the 2-byte length; empty for markers without one).
pub(super) struct Segment<'a> {
    pub marker: u8,
    pub payload: &'a [u8],
    /// The offset just after the segment.
    pub end: usize,
}

/// Whether `marker` stands alone, without a length: SOI, EOI, RSTn, TEM.
fn standalone(marker: u8) -> bool {
    matches!(marker, SOI | EOI | 0x01 | 0xd0..=0xd7)
}

/// The segment of the marker at or after `pos` (skipping stray bytes and 0xFF fill bytes, as
/// libjpeg's `next_marker` does).
pub(super) fn segment(bytes: &[u8], mut pos: usize) -> Result<Segment<'_>, ImageError> {
    let truncated = || corrupt("the file ends inside its headers (truncated?)");
    loop {
        while *bytes.get(pos).ok_or_else(truncated)? != 0xff {
            pos += 1;
        }
        while *bytes.get(pos).ok_or_else(truncated)? == 0xff {
            pos += 1;
        }
        let marker = bytes[pos];
        pos += 1;
        if marker != 0 {
            break marker_segment(bytes, marker, pos);
        }
    }
}

/// The segment of `marker`, whose code ends just before `pos`.
pub(super) fn marker_segment(
    bytes: &[u8],
    marker: u8,
    pos: usize,
) -> Result<Segment<'_>, ImageError> {
    if standalone(marker) {
        return Ok(Segment {
            marker,
            payload: &[],
            end: pos,
        });
    }
    let truncated = || {
        corrupt(format!(
            "the file ends inside a 0xFF{marker:02X} segment (truncated?)"
        ))
    };
    let len = bytes.get(pos..pos + 2).ok_or_else(truncated)?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    if len < 2 {
        return Err(corrupt(format!(
            "a 0xFF{marker:02X} segment of length {len}"
        )));
    }
    let payload = bytes.get(pos + 2..pos + len).ok_or_else(truncated)?;
    Ok(Segment {
        marker,
        payload,
        end: pos + len,
    })
}

/// A frame component: its id, sampling factors and quantization table slot.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FrameComponent {
    pub id: u8,
    pub h: usize,
    pub v: usize,
    pub tq: usize,
}

/// The SOF segment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Frame {
    pub width: usize,
    pub height: usize,
    pub progressive: bool,
    pub components: Vec<FrameComponent>,
}

/// Reads an SOF segment, refusing what libjpeg (or PIL in front of it) refuses or what we do
/// not decode: lossless, hierarchical and arithmetic-coded processes, precision other than 8
/// bits, component counts other than 1, 3 and 4, sampling factors outside 1..=4.
pub(super) fn frame(marker: u8, p: &[u8]) -> Result<Frame, ImageError> {
    let process = match marker {
        0xc0 | 0xc1 => None,
        0xc2 => None,
        0xc3 => Some("lossless (SOF3)"),
        0xc5..=0xc7 => Some("hierarchical (SOF5-7)"),
        _ => Some("arithmetic-coded (SOF9-15)"),
    };
    if let Some(process) = process {
        return Err(corrupt(format!(
            "a {process} JPEG, which PIL's usual builds do not decode either"
        )));
    }
    let short = || corrupt("a frame header (SOF) shorter than its components");
    let head = p.get(..6).ok_or_else(short)?;
    if head[0] != 8 {
        return Err(corrupt(format!(
            "{}-bit samples: only 8-bit JPEG is decoded (PIL refuses other precisions too)",
            head[0]
        )));
    }
    let height = u16::from_be_bytes([head[1], head[2]]) as usize;
    let width = u16::from_be_bytes([head[3], head[4]]) as usize;
    let n = head[5] as usize;
    if !matches!(n, 1 | 3 | 4) {
        return Err(corrupt(format!(
            "{n} components: PIL reads only 1 (gray), 3 (colour) and 4 (CMYK)"
        )));
    }
    let components = p
        .get(6..6 + 3 * n)
        .ok_or_else(short)?
        .chunks_exact(3)
        .map(|c| {
            let (h, v, tq) = ((c[1] >> 4) as usize, (c[1] & 15) as usize, c[2] as usize);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
                return Err(corrupt(format!(
                    "component {} sampled {h}x{v} with quantization table {tq}: factors go \
                     from 1 to 4, tables from 0 to 3",
                    c[0]
                )));
            }
            Ok(FrameComponent { id: c[0], h, v, tq })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Frame {
        width,
        height,
        progressive: marker == 0xc2,
        components,
    })
}

impl Frame {
    /// libjpeg's limit on a side, checked after the crate's own pixel limit.
    pub fn check_sides(&self) -> Result<(), ImageError> {
        if self.width > MAX_DIMENSION || self.height > MAX_DIMENSION {
            return Err(corrupt(format!(
                "{}x{} pixels: libjpeg (and so PIL) refuses a side over {MAX_DIMENSION}",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// Reads a DQT segment into `tables` (natural order), 8- or 16-bit entries.
pub(super) fn quant_tables(
    p: &[u8],
    tables: &mut [Option<[u16; 64]>; 4],
) -> Result<(), ImageError> {
    let mut p = p;
    while let Some((&pq_tq, rest)) = p.split_first() {
        let (wide, slot) = (pq_tq >> 4, (pq_tq & 15) as usize);
        if wide > 1 || slot > 3 {
            return Err(corrupt(format!(
                "a quantization table (DQT) with Pq {wide} Tq {slot}"
            )));
        }
        let size = if wide == 1 { 128 } else { 64 };
        let body = rest
            .get(..size)
            .ok_or_else(|| corrupt("a quantization table (DQT) cut short"))?;
        let mut table = [0u16; 64];
        for (k, &natural) in ZIGZAG.iter().enumerate() {
            table[natural] = if wide == 1 {
                u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
            } else {
                body[k] as u16
            };
        }
        tables[slot] = Some(table);
        p = &rest[size..];
    }
    Ok(())
}

/// Reads a DHT segment into the DC (class 0) and AC (class 1) slots.
pub(super) fn huffman_tables(
    p: &[u8],
    dc: &mut [Option<Huffman>; 4],
    ac: &mut [Option<Huffman>; 4],
) -> Result<(), ImageError> {
    let short = || corrupt("a Huffman table (DHT) cut short");
    let mut p = p;
    while let Some((&tc_th, rest)) = p.split_first() {
        let (class, slot) = (tc_th >> 4, (tc_th & 15) as usize);
        if class > 1 || slot > 3 {
            return Err(corrupt(format!(
                "a Huffman table (DHT) with Tc {class} Th {slot}"
            )));
        }
        let counts: [u8; 16] = rest.get(..16).ok_or_else(short)?.try_into().unwrap();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 {
            return Err(corrupt(format!(
                "a Huffman table (DHT) of {total} codes (at most 256)"
            )));
        }
        let symbols = rest.get(16..16 + total).ok_or_else(short)?;
        if class == 0 && symbols.iter().any(|&s| s > 15) {
            return Err(corrupt(
                "a DC Huffman table with a magnitude category over 15",
            ));
        }
        let table = Some(Huffman::new(&counts, symbols)?);
        if class == 0 {
            dc[slot] = table;
        } else {
            ac[slot] = table;
        }
        p = &rest[16 + total..];
    }
    Ok(())
}

/// One component of a scan: its index in the frame and its DC / AC table slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ScanComponent {
    pub index: usize,
    pub dc: usize,
    pub ac: usize,
}

/// The SOS segment: components, spectral band `ss..=se`, successive approximation `ah`, `al`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scan {
    pub components: Vec<ScanComponent>,
    pub ss: usize,
    pub se: usize,
    pub ah: u8,
    pub al: u8,
}

/// Reads an SOS segment for `frame`; refuses the progressions libjpeg refuses
/// (`start_pass_phuff_decoder`) and MCUs over its 10 blocks.
pub(super) fn scan(p: &[u8], frame: &Frame) -> Result<Scan, ImageError> {
    let bad = |what: String| corrupt(format!("a scan header (SOS) with {what}"));
    let n = *p.first().ok_or_else(|| bad("no component count".into()))? as usize;
    if !(1..=4).contains(&n) || p.len() < 4 + 2 * n {
        return Err(bad(format!("{n} components in {} bytes", p.len())));
    }
    let mut components = Vec::with_capacity(n);
    for c in p[1..1 + 2 * n].chunks_exact(2) {
        let index = frame
            .components
            .iter()
            .position(|f| f.id == c[0])
            .ok_or_else(|| bad(format!("component id {} not in the frame", c[0])))?;
        let (dc, ac) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
        if dc > 3 || ac > 3 || components.iter().any(|s: &ScanComponent| s.index == index) {
            return Err(bad(format!(
                "component {} repeated or with tables {dc}/{ac}",
                c[0]
            )));
        }
        components.push(ScanComponent { index, dc, ac });
    }
    let tail = &p[1 + 2 * n..];
    let (ss, se, ah, al) = (
        tail[0] as usize,
        tail[1] as usize,
        tail[2] >> 4,
        tail[2] & 15,
    );
    if frame.progressive {
        let dc_band = ss == 0;
        if (dc_band && se != 0)
            || (!dc_band && (ss > se || se > 63 || n != 1))
            || (ah != 0 && al + 1 != ah)
            || al > 13
        {
            return Err(bad(format!(
                "an invalid progression Ss={ss} Se={se} Ah={ah} Al={al}"
            )));
        }
    }
    if n > 1 {
        let blocks: usize = components
            .iter()
            .map(|s| frame.components[s.index].h * frame.components[s.index].v)
            .sum();
        if blocks > 10 {
            return Err(bad(format!("{blocks} blocks per MCU (at most 10)")));
        }
    }
    Ok(Scan {
        components,
        ss,
        se,
        ah,
        al,
    })
}

/// Whether an APP0 payload is a JFIF header (libjpeg needs its 14 bytes).
pub(super) fn is_jfif(p: &[u8]) -> bool {
    p.len() >= 14 && p.starts_with(b"JFIF\0")
}

/// The colour transform of an Adobe APP14 payload (libjpeg needs its 12 bytes).
pub(super) fn adobe_transform(p: &[u8]) -> Option<u8> {
    (p.len() >= 12 && p.starts_with(b"Adobe")).then(|| p[11])
}

/// The typical Huffman tables of T.81 Annex K.3 as one DHT payload: DC and AC for luminance
/// (slot 0) and chrominance (slot 1). Motion-JPEG frames leave them out; libjpeg's sequential
/// decoder (`jinit_huff_decoder`) puts them in whichever of those slots no DHT has filled by the
/// first scan, and so do we (its progressive decoder does not).
pub(super) const STANDARD_DHT: [u8; 416] = [
    0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x00, 0x02,
    0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01, 0x02,
    0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71,
    0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33,
    0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53,
    0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73,
    0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92,
    0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
    0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4,
    0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x11, 0x00, 0x02,
    0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02, 0x77, 0x00, 0x01,
    0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22,
    0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62,
    0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
    0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3,
    0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
];

/// `ZIGZAG[k]`: the natural (row-major) index of the k-th coefficient in zigzag order.
pub(super) const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_reads_size_and_sampling_and_refuses_what_pil_refuses() {
        let sof = [8, 0, 23, 0, 37, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
        let f = frame(0xc0, &sof).unwrap();
        assert_eq!((f.width, f.height, f.progressive), (37, 23, false));
        assert_eq!(
            f.components[0],
            FrameComponent {
                id: 1,
                h: 2,
                v: 2,
                tq: 0
            }
        );
        assert!(frame(0xc2, &sof).unwrap().progressive);
        let mut twelve = sof;
        twelve[0] = 12;
        assert!(
            frame(0xc0, &twelve)
                .unwrap_err()
                .to_string()
                .contains("12-bit")
        );
        assert!(
            frame(0xc9, &sof)
                .unwrap_err()
                .to_string()
                .contains("arithmetic")
        );
        assert!(
            frame(0xc3, &sof)
                .unwrap_err()
                .to_string()
                .contains("lossless")
        );
        let mut five = sof;
        five[7] = 0x51;
        assert!(frame(0xc0, &five).is_err());
    }

    #[test]
    fn quant_tables_store_natural_order() {
        let mut p = vec![0x01];
        p.extend(0..64u8); // zigzag position k holds k
        let mut tables = [None; 4];
        quant_tables(&p, &mut tables).unwrap();
        let t = tables[1].unwrap();
        assert_eq!([t[0], t[1], t[8], t[16], t[9], t[63]], [0, 1, 2, 3, 4, 63]);
    }

    #[test]
    fn scan_refuses_bad_progressions() {
        let sof = [8, 0, 8, 0, 8, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0];
        let f = frame(0xc2, &sof).unwrap();
        let s = scan(&[1, 2, 0x11, 1, 5, 0x10], &f).unwrap();
        assert_eq!(
            (s.components[0].index, s.ss, s.se, s.ah, s.al),
            (1, 1, 5, 1, 0)
        );
        assert!(scan(&[1, 2, 0x11, 0, 5, 0], &f).is_err()); // DC band with Se 5
        assert!(scan(&[2, 1, 0, 2, 0, 1, 5, 0], &f).is_err()); // AC scan of two components
        assert!(scan(&[1, 2, 0x11, 1, 5, 0x20], &f).is_err()); // Ah 2, Al 0
        assert!(scan(&[1, 9, 0x11, 0, 0, 0], &f).is_err()); // no component 9
    }
}
