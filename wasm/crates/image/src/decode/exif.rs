//! A file's EXIF orientation, read where PIL 13 reads it for `ImageOps.exif_transpose`
//! (`Image.getexif()`, then tag 0x0112 of the first IFD):
//!
//! - JPEG: the APP1 `Exif\0\0` segments before the first scan (each after the first joined to
//!   it), else the last XMP APP1.
//! - PNG: the last `eXIf` chunk (or tEXt `exif`), else a text chunk `Raw profile type exif` (hex,
//!   as ImageMagick writes it), else the last text chunk `XML:com.adobe.xmp` (an iTXt's where it
//!   is UTF-8) or, where that is empty, the last iTXt `XML:com.adobe.xmp` whatever its encoding
//!   (PIL's `info["xmp"]`); chunks after the image data count (`exif_transpose` loads the image
//!   first). Compressed text is inflated under those keywords only, within PIL's limits (1 MiB
//!   a chunk, 64 MiB of text in all: PIL refuses a file past them; we read none of its
//!   metadata); a stream cut short gives what zlib inflates of it, as for PIL.
//! - WebP: the first `EXIF` chunk where VP8X's EXIF flag is set, else the first `XMP ` chunk
//!   where its flag is set (libwebp ignores the chunks its flags do not announce).
//!
//! The XMP is looked at only when the EXIF has no orientation entry at all, with PIL's pattern
//! `tiff:Orientation(="|>)([0-9])`.
//!
//! Metadata never fails an image: what cannot be read counts as upright. PIL itself raises on
//! some of it (a TIFF header that is not one, a bad hex profile, PNG text past its limits), and
//! transformers then refuses the image; where PIL reads on, skips or stops, this module does the
//! same, entry by entry. Where it still differs from PIL 13, in files PIL refuses or near its
//! limits:
//!
//! - PNG text under other keywords than those read is never inflated: it is neither counted
//!   toward the 64 MiB nor refused past 1 MiB a chunk, where PIL refuses the file (we read its
//!   orientation). The bytes a stream gave before zlib failed on it count, where PIL counts
//!   none, and an iTXt counts its bytes whether or not PIL keeps it, where PIL counts the
//!   characters of those it keeps: a file near 64 MiB of text may be upright here and turned
//!   by PIL. These keep the work bounded: no file makes us inflate more than 64 MiB and a chunk.
//! - A zTXt or iTXt keyed `exif` is ignored, an earlier `eXIf` still read; PIL keeps its text as
//!   the EXIF and raises on it.

use super::Format;
use super::orientation::Orientation;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use std::borrow::Cow;
use std::collections::HashSet;

/// The orientation `exif_transpose` applies to the file (`format` as sniffed).
pub(crate) fn orientation(bytes: &[u8], format: Format) -> Orientation {
    let meta = match format {
        Format::Jpeg => jpeg_metadata(bytes),
        Format::Png => png_metadata(bytes),
        Format::WebP => webp_metadata(bytes),
    };
    let tag = match &meta.exif {
        Some(exif) => tiff_orientation(exif),
        None => Tag::Absent,
    };
    let value = match tag {
        Tag::Value(v) => v,
        Tag::Absent => meta.xmp.as_deref().and_then(xmp_orientation),
        Tag::Unreadable => None,
    };
    value
        .and_then(Orientation::from_tag)
        .unwrap_or(Orientation::Upright)
}

/// The EXIF (a TIFF stream, maybe behind `Exif\0\0`) and XMP packet a file carries.
#[derive(Debug, Default, PartialEq)]
struct Metadata<'a> {
    exif: Option<Cow<'a, [u8]>>,
    xmp: Option<Cow<'a, [u8]>>,
}

/// What the first IFD says of the orientation.
#[derive(Debug, PartialEq)]
enum Tag {
    /// No orientation entry PIL keeps (none, an unknown type, empty, or lost to corruption).
    Absent,
    /// The entry's first value where it is a number equal to an integer (PIL compares the
    /// decoded value with 1..8, so 6 as LONG, RATIONAL 12/2 or FLOAT 6.0 all turn the image),
    /// None where it is not one (BYTE, ASCII and UNDEFINED decode to strings of bytes).
    Value(Option<i64>),
    /// Not a TIFF stream PIL reads (a bad header, BigTIFF's `II+\0`, or one cut short): PIL
    /// raises, or (reading a JPEG's DPI first) keeps an empty EXIF and ignores the XMP.
    Unreadable,
}

/// The orientation entry of the first IFD of `data`, as `PIL.Image.Exif.load` reads it.
fn tiff_orientation(data: &[u8]) -> Tag {
    let mut d = data;
    for _ in 0..2 {
        d = d.strip_prefix(b"Exif\0\0").unwrap_or(d); // re.sub(b"^(Exif\x00\x00){1,2}", b"", data)
    }
    if d.is_empty() {
        return Tag::Absent;
    }
    let big = match d.get(..4) {
        // PIL spots BigTIFF by its byte 2 (43): in `II+\0` (then raises), not in `MM\0+`.
        Some(b"MM\0*" | b"MM*\0" | b"MM\0+") => true,
        Some(b"II*\0" | b"II\0*") => false,
        _ => return Tag::Unreadable,
    };
    if d.len() < 8 {
        return Tag::Unreadable;
    }
    let u16_at = |b: &[u8]| {
        let b = [b[0], b[1]];
        if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let ifd = u32_at(&d[4..]) as usize;
    let Some(count) = d.get(ifd..ifd.saturating_add(2)).map(u16_at) else {
        return Tag::Absent;
    };
    // ImageFileDirectory_v2.load: an entry of a tag already kept is skipped; out-of-line values
    // count against the stream's length (an entry past that budget is skipped); a value or an
    // entry that runs past the end ends the IFD (the entries kept so far stay).
    let mut kept = HashSet::new();
    let mut out_of_line = 0u64;
    for k in 0..count as usize {
        let Some(entry) = d.get(ifd + 2 + 12 * k..ifd + 14 + 12 * k) else {
            return Tag::Absent;
        };
        let (tag, typ, n) = (u16_at(entry), u16_at(&entry[2..]), u32_at(&entry[4..]));
        if kept.contains(&tag) {
            continue;
        }
        let unit: u64 = match typ {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 => 8,
            _ => continue, // a type PIL does not know
        };
        let size = n as u64 * unit;
        let value = if size > 4 {
            out_of_line += size;
            if out_of_line > d.len() as u64 {
                continue;
            }
            let at = u32_at(&entry[8..]) as u64;
            if at + size > d.len() as u64 {
                return Tag::Absent;
            }
            &d[at as usize..(at + size) as usize]
        } else {
            &entry[8..8 + size as usize]
        };
        if value.is_empty() {
            continue;
        }
        if tag == 0x0112 {
            return Tag::Value(first_integer(typ, value, big));
        }
        kept.insert(tag);
    }
    Tag::Absent
}

/// The first value of a TIFF entry of type `typ` (its bytes `v`) where it equals an integer.
fn first_integer(typ: u16, v: &[u8], big: bool) -> Option<i64> {
    // The `n`-byte unsigned word at `at`, in the stream's byte order.
    let word = |at: usize, n: usize| -> u64 {
        let bytes = v[at..at + n].iter();
        let push = |acc: u64, &b: &u8| acc << 8 | b as u64;
        if big {
            bytes.fold(0, push)
        } else {
            bytes.rev().fold(0, push)
        }
    };
    let whole = |f: f64| (f.fract() == 0.0 && f.abs() < 1e18).then_some(f as i64);
    let ratio = |num: i64, den: i64| (den != 0 && num % den == 0).then(|| num / den);
    let signed32 = |w: u64| w as u32 as i32 as i64;
    match typ {
        3 => Some(word(0, 2) as i64),
        4 | 13 => Some(word(0, 4) as i64),
        16 => i64::try_from(word(0, 8)).ok(),
        6 => Some(v[0] as i8 as i64),
        8 => Some(word(0, 2) as u16 as i16 as i64),
        9 => Some(signed32(word(0, 4))),
        // RATIONAL / SRATIONAL: numerator, then denominator (PIL: NaN for a zero denominator).
        5 => ratio(word(0, 4) as i64, word(4, 4) as i64),
        10 => ratio(signed32(word(0, 4)), signed32(word(4, 4))),
        11 => whole(f32::from_bits(word(0, 4) as u32) as f64),
        12 => whole(f64::from_bits(word(0, 8))),
        _ => None, // BYTE, ASCII, UNDEFINED: bytes, never equal to a number
    }
}

/// The first `tiff:Orientation="d` or `tiff:Orientation>d` of an XMP packet: d.
fn xmp_orientation(xmp: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"tiff:Orientation";
    (0..xmp.len().saturating_sub(KEY.len())).find_map(|i| {
        let rest = xmp[i..].strip_prefix(KEY)?;
        let rest = rest
            .strip_prefix(b"=\"")
            .or_else(|| rest.strip_prefix(b">"))?;
        rest.first()
            .filter(|c| c.is_ascii_digit())
            .map(|c| (c - b'0') as i64)
    })
}

/// JPEG: the APP1 segments before the first scan, walked as PIL's `JpegImageFile._open` walks
/// markers (junk between them skipped; a walk PIL would refuse simply ends).
fn jpeg_metadata(bytes: &[u8]) -> Metadata<'_> {
    const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    let mut meta = Metadata::default();
    let mut i = 2; // after SOI
    while let Some(&b) = bytes.get(i) {
        if b != 0xff {
            i += 1;
            continue;
        }
        let Some(&marker) = bytes.get(i + 1) else {
            break;
        };
        match marker {
            0xff => i += 1,                                    // fill byte
            0x00 | 0xc8 | 0xd0..=0xd9 | 0xf0..=0xfd => i += 2, // no length
            0xc0..=0xfe => {
                let Some(len) = bytes.get(i + 2..i + 4) else {
                    break;
                };
                let n = (u16::from_be_bytes([len[0], len[1]]) as usize).saturating_sub(2);
                let Some(seg) = bytes.get(i + 4..i + 4 + n) else {
                    break;
                };
                if marker == 0xda {
                    break; // start of scan
                }
                if marker == 0xe1 && seg.starts_with(b"Exif\0\0") {
                    // PIL joins each later Exif segment to the first, without its header (one
                    // buffer grown in place: a copy of all joined so far each time would take
                    // time quadratic in the segments).
                    match &mut meta.exif {
                        None => meta.exif = Some(Cow::Borrowed(seg)),
                        Some(exif) => exif.to_mut().extend_from_slice(&seg[6..]),
                    }
                } else if marker == 0xe1 && seg.starts_with(XMP) {
                    meta.xmp = Some(Cow::Borrowed(&seg[XMP.len()..]));
                }
                i += 4 + n;
            }
            _ => break, // not a marker: PIL refuses the file
        }
    }
    meta
}

/// Most bytes one compressed PNG text chunk may inflate to: PIL's `MAX_TEXT_CHUNK`
/// (`ImageFile.SAFEBLOCK`, 1 MiB). PIL refuses a file with a larger one.
const MAX_TEXT_CHUNK: usize = 1 << 20;

/// Most bytes of text a PNG's text chunks may hold together: PIL's `MAX_TEXT_MEMORY` (64 MiB).
/// PIL refuses a file with more.
const MAX_TEXT_MEMORY: usize = 64 * MAX_TEXT_CHUNK;

/// The text chunk keywords `getexif` reads (`xmp` is where PIL also keeps an iTXt XMP's bytes):
/// compressed text under any other is not inflated.
const KEYWORDS: [&[u8]; 3] = [b"Raw profile type exif", b"XML:com.adobe.xmp", b"xmp"];

/// PIL refuses the PNG for its text chunks (see [`PngText`]).
#[derive(Debug, PartialEq)]
struct Refused;

/// PNG: every chunk up to IEND (for an animation, up to the second frame), as PIL reads them
/// when it opens and then loads the file; none where PIL refuses the file for its text.
fn png_metadata(bytes: &[u8]) -> Metadata<'_> {
    png_chunks(bytes).unwrap_or_default()
}

fn png_chunks(bytes: &[u8]) -> Result<Metadata<'_>, Refused> {
    let mut meta = Metadata::default();
    let mut raw_profile: Option<Cow<[u8]>> = None;
    // PIL's info["XML:com.adobe.xmp"] and info["xmp"].
    let mut xml: Option<Cow<[u8]>> = None;
    let mut xmp: Option<Cow<[u8]>> = None;
    let mut text_chunks = PngText::default();
    let (mut i, mut image_data, mut animated) = (8, false, false);
    while let Some(head) = bytes.get(i..i + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(data) = bytes.get(i + 8..(i + 8).saturating_add(len)) else {
            break;
        };
        let kind = &head[4..8];
        i += 12 + len;
        match kind {
            b"IEND" => break,
            b"IDAT" => image_data = true,
            b"acTL" if data.len() >= 8 => {
                let frames = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                animated = (2..=0x8000_0000).contains(&frames);
            }
            b"fcTL" if image_data && animated => break,
            b"eXIf" => meta.exif = Some(Cow::Owned([b"Exif\0\0", data].concat())),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                let Some(chunk) = text_chunks.read(kind, data)? else {
                    continue;
                };
                let TextChunk {
                    keyword,
                    text,
                    kept,
                } = chunk;
                // PIL keeps an iTXt XMP's bytes as info["xmp"] too, UTF-8 or not.
                if kind == b"iTXt" && keyword == b"XML:com.adobe.xmp" {
                    xmp = Some(text.clone());
                }
                match keyword {
                    _ if !kept => {}
                    // A tEXt "exif" is kept as bytes, as the eXIf chunk (PIL's quirk); its
                    // other chunks' values are text, which PIL cannot read as EXIF.
                    b"exif" if kind == b"tEXt" => meta.exif = Some(text),
                    b"Raw profile type exif" => raw_profile = Some(text),
                    b"XML:com.adobe.xmp" => xml = Some(text),
                    // Text as info["xmp"]: empty, or PIL raises searching it with a bytes pattern.
                    b"xmp" => xmp = None,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if meta.exif.is_none() {
        meta.exif = raw_profile.and_then(|p| hex_profile(&p)).map(Cow::Owned);
    }
    // getexif: `if not xmp_tags and (xmp_tags := self.info.get("xmp"))`.
    meta.xmp = xml.filter(|x| !x.is_empty()).or(xmp);
    Ok(meta)
}

/// A text chunk as PIL reads it.
struct TextChunk<'a> {
    keyword: &'a [u8],
    text: Cow<'a, [u8]>,
    /// Whether PIL keeps the text under its keyword: an iTXt's only where it, its language and
    /// its translated keyword are UTF-8.
    kept: bool,
}

/// A text chunk's value: its bytes, or a zlib stream of them.
enum Text<'a> {
    Plain(&'a [u8]),
    Zlib(&'a [u8]),
}

/// A PNG's text chunks read one after the other as PIL reads them, within PIL's limits.
#[derive(Default)]
struct PngText {
    /// PIL's `text_memory`: the bytes of text read so far, refused past [`MAX_TEXT_MEMORY`].
    /// Unlike PIL's, it counts what a stream gave before zlib failed on it (PIL counts none of
    /// it) and not the compressed text of other keywords than [`KEYWORDS`] (never inflated; PIL
    /// counts it): so no file makes us inflate more than `MAX_TEXT_MEMORY` and one chunk.
    memory: usize,
    /// One zlib decompressor for every chunk (each new one clears 11 KB of tables).
    zlib: Option<Box<DecompressorOxide>>,
}

impl PngText {
    /// A tEXt, zTXt or iTXt chunk's keyword and text; None where PIL skips the chunk, and where
    /// the text is compressed under a keyword not in [`KEYWORDS`] (left compressed). Err where
    /// PIL refuses the file: text past [`MAX_TEXT_MEMORY`] in all, or a stream past
    /// [`MAX_TEXT_CHUNK`].
    fn read<'a>(&mut self, kind: &[u8], data: &'a [u8]) -> Result<Option<TextChunk<'a>>, Refused> {
        // `header_utf8`, for an iTXt: whether its language and translated keyword are UTF-8.
        let parsed = match kind {
            b"tEXt" => split_nul(data).map(|(k, v)| (k, Text::Plain(v), None)),
            b"zTXt" => split_nul(data).and_then(|(k, v)| match v {
                [] => Some((k, Text::Plain(v), None)),
                [0, z @ ..] => Some((k, Text::Zlib(z), None)),
                _ => None, // another compression method: PIL refuses the file
            }),
            _ => international_text(data),
        };
        let Some((keyword, text, header_utf8)) = parsed else {
            return Ok(None);
        };
        let (text, len) = match text {
            Text::Plain(v) => (Some(Cow::Borrowed(v)), v.len()),
            Text::Zlib(_) if !KEYWORDS.contains(&keyword) => return Ok(None),
            Text::Zlib(z) => {
                let zlib = self.zlib.get_or_insert_default();
                zlib.init();
                let (text, len) = inflate(zlib, z);
                if len > MAX_TEXT_CHUNK {
                    return Err(Refused);
                }
                // Where zlib fails, a zTXt keeps an empty text, an iTXt none.
                let text = match text {
                    None if kind == b"zTXt" => Some(Cow::Borrowed(&[][..])),
                    text => text.map(Cow::Owned),
                };
                (text, len)
            }
        };
        self.memory += len;
        if self.memory > MAX_TEXT_MEMORY {
            return Err(Refused);
        }
        Ok(text.map(|text| {
            let utf8 = |b: &[u8]| std::str::from_utf8(b).is_ok();
            let kept = header_utf8.is_none_or(|header| header && utf8(&text));
            TextChunk {
                keyword,
                text,
                kept,
            }
        }))
    }
}

/// A text chunk's keyword and value, split at the first NUL (PIL takes a chunk without one as
/// a keyword alone).
fn split_nul(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (k, v) = match data.iter().position(|&c| c == 0) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &data[data.len()..]),
    };
    (!k.is_empty()).then_some((k, v))
}

/// An iTXt chunk's keyword, text and whether its language and translated keyword are UTF-8:
/// keyword, NUL, compression flag and method, language, NUL, translated keyword, NUL, text
/// (zlib when flagged); None where PIL skips the chunk.
fn international_text(data: &[u8]) -> Option<(&[u8], Text<'_>, Option<bool>)> {
    let p = data.iter().position(|&c| c == 0)?;
    let (k, r) = (&data[..p], &data[p + 1..]);
    let [flag, method, r @ ..] = r else {
        return None;
    };
    let mut parts = r.splitn(3, |&c| c == 0);
    let (lang, translated, v) = (parts.next()?, parts.next()?, parts.next()?);
    let header_utf8 = std::str::from_utf8(lang).is_ok() && std::str::from_utf8(translated).is_ok();
    match (flag, method) {
        (0, _) => Some((k, Text::Plain(v), Some(header_utf8))),
        (_, 0) => Some((k, Text::Zlib(v), Some(header_utf8))),
        _ => None,
    }
}

/// A zlib stream inflated by `zlib` (just initialised) as zlib inflates it for PIL's
/// `_safe_zlib_decompress`: the text (None where zlib fails on the stream; as far as it goes
/// where it is cut short) and how many bytes it inflated, stopping past [`MAX_TEXT_CHUNK`].
/// Checked against Python's zlib at every cut of 20 streams and on 20,000 cut, corrupted or
/// padded ones: the same text, or the same failure.
fn inflate(zlib: &mut DecompressorOxide, z: &[u8]) -> (Option<Vec<u8>>, usize) {
    let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
        | inflate_flags::TINFL_FLAG_COMPUTE_ADLER32
        | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
        // The whole output in one buffer: what catches a distance back past its start.
        | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut out = vec![0; z.len().saturating_mul(2).clamp(64, MAX_TEXT_CHUNK + 1)];
    let (mut read, mut written) = (0, 0);
    loop {
        let (status, r, w) = decompress(zlib, &z[read..], &mut out, written, flags);
        (read, written) = (read + r, written + w);
        match status {
            // Cut short: zlib hands out what it inflated, and PIL keeps it.
            TINFLStatus::Done | TINFLStatus::NeedsMoreInput => break,
            TINFLStatus::HasMoreOutput if out.len() <= MAX_TEXT_CHUNK => {
                out.resize((2 * out.len()).min(MAX_TEXT_CHUNK + 1), 0);
            }
            // Not zlib, or too large (`written` then passes MAX_TEXT_CHUNK).
            _ => return (None, written),
        }
    }
    out.truncate(written);
    (Some(out), written)
}

/// ImageMagick's "Raw profile type exif" text: `\nexif\n<length>\n<hex lines>`; PIL joins the
/// lines after the third newline and reads them with `bytes.fromhex`. None where that fails
/// (PIL raises).
fn hex_profile(text: &[u8]) -> Option<Vec<u8>> {
    let hex: Vec<u8> = text
        .split(|&c| c == b'\n')
        .skip(3)
        .flatten()
        .copied()
        .collect();
    let digit = |c: &u8| (*c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(hex.len() / 2);
    let mut i = 0;
    while i < hex.len() {
        // fromhex skips whitespace (Python's: with \x0b) before a pair, not inside one.
        if hex[i].is_ascii_whitespace() || hex[i] == 0x0b {
            i += 1;
            continue;
        }
        out.push(digit(&hex[i])? << 4 | digit(hex.get(i + 1)?)?);
        i += 2;
    }
    Some(out)
}

/// WebP: the chunks after VP8X of an extended file; a simple (VP8 / VP8L) file has none.
fn webp_metadata(bytes: &[u8]) -> Metadata<'_> {
    let mut meta = Metadata::default();
    // libwebp reads no further than the RIFF header's size.
    let Some(size) = bytes.get(4..8) else {
        return meta;
    };
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    let bytes = &bytes[..bytes.len().min(size.saturating_add(8))];
    let chunk = |i: usize| -> Option<(&[u8], &[u8])> {
        let head = bytes.get(i..i + 8)?;
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        Some((&head[..4], bytes.get(i + 8..(i + 8).checked_add(len)?)?))
    };
    let Some((b"VP8X", vp8x)) = chunk(12) else {
        return meta;
    };
    let flags = vp8x.first().copied().unwrap_or(0);
    let mut i = 12 + 8 + vp8x.len() + (vp8x.len() & 1);
    while let Some((kind, data)) = chunk(i) {
        match kind {
            b"EXIF" if flags & 0x08 != 0 && meta.exif.is_none() => {
                meta.exif = Some(Cow::Borrowed(data))
            }
            b"XMP " if flags & 0x04 != 0 && meta.xmp.is_none() => {
                meta.xmp = Some(Cow::Borrowed(data))
            }
            _ => {}
        }
        i += 8 + data.len() + (data.len() & 1); // chunks are padded to even sizes
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A little-endian TIFF stream whose IFD0 holds one SHORT orientation `v`.
    fn tiff6(v: u16) -> Vec<u8> {
        let mut t = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        t.extend_from_slice(&[v as u8, 0, 0, 0, 0, 0, 0, 0]);
        t
    }

    #[test]
    fn tiff_orientation_reads_every_blob_as_pil_does() {
        // tests/fixtures/images/exif_cases.json: PIL 13's Image.Exif().load() of each blob.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/fixtures/images/exif_cases.json"
        );
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let cases = cases.as_array().unwrap();
        assert!(cases.len() >= 50);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let orientation = case["orientation"].as_i64().unwrap();
            let got = tiff_orientation(&hex(case["tiff"].as_str().unwrap()));
            match (case["tag"].as_str().unwrap(), got) {
                ("absent", Tag::Absent) | ("raises", Tag::Unreadable) => assert_eq!(orientation, 1),
                ("present", Tag::Value(v)) => {
                    let applied = v
                        .and_then(Orientation::from_tag)
                        .unwrap_or(Orientation::Upright);
                    assert_eq!(
                        applied,
                        Orientation::from_tag(orientation).unwrap(),
                        "{name}: {v:?}"
                    );
                }
                (tag, got) => panic!("{name}: PIL {tag}, got {got:?}"),
            }
        }
    }

    #[test]
    fn xmp_orientation_takes_the_first_attribute_or_element_with_a_digit() {
        let cases: [(&[u8], Option<i64>); 7] = [
            (b"<rdf:Description tiff:Orientation=\"6\"/>", Some(6)),
            (b"<tiff:Orientation>8</tiff:Orientation>", Some(8)),
            (b"tiff:Orientation='6' tiff:Orientation=\"3\"", Some(3)),
            (b"tiff:Orientation=\"x\" then tiff:Orientation>9", Some(9)),
            (b"tiff:Orientation = \"6\"", None),
            (b"exif:Orientation=\"6\"", None),
            (b"tiff:Orientation=\"", None),
        ];
        for (xmp, expected) in cases {
            assert_eq!(
                xmp_orientation(xmp),
                expected,
                "{}",
                String::from_utf8_lossy(xmp)
            );
        }
    }

    /// SOI, the segments (marker, payload), then a frame and scan header (no data needed).
    fn jpeg(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0xff, 0xd8];
        for (marker, payload) in segments {
            b.extend_from_slice(&[0xff, *marker]);
            b.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
            b.extend_from_slice(payload);
        }
        b.extend_from_slice(&[0xff, 0xda, 0, 2]);
        b
    }

    fn exif_app1(tiff: &[u8]) -> (u8, Vec<u8>) {
        (0xe1, [b"Exif\0\0", tiff].concat())
    }

    fn xmp_app1(v: u8) -> (u8, Vec<u8>) {
        let xmp = format!("http://ns.adobe.com/xap/1.0/\0<x tiff:Orientation=\"{v}\"/>");
        (0xe1, xmp.into_bytes())
    }

    #[test]
    fn jpeg_joins_exif_segments_and_takes_the_last_xmp_before_the_scan() {
        let o = |b: &[u8]| orientation(b, Format::Jpeg);
        assert_eq!(
            o(&jpeg(&[(0xe0, b"JFIF\0".to_vec()), exif_app1(&tiff6(6))])),
            Orientation::Rotate270
        );
        // A second Exif segment continues the first (its offsets count from the first's TIFF
        // header): the orientation stays the first's.
        let two = jpeg(&[exif_app1(&tiff6(6)), exif_app1(&tiff6(3))]);
        assert_eq!(o(&two), Orientation::Rotate270);
        let joined = jpeg_metadata(&two).exif.unwrap();
        assert_eq!(joined.len(), 6 + 2 * tiff6(6).len());
        // Any number of them, each (but the first) without its header.
        let parts: Vec<Vec<u8>> = (0..300u16).map(|k| k.to_be_bytes().repeat(100)).collect();
        let many: Vec<_> = parts.iter().map(|p| exif_app1(p)).collect();
        let many = jpeg(&many);
        let joined = jpeg_metadata(&many).exif.unwrap();
        assert_eq!(joined, [&b"Exif\0\0"[..], &parts.concat()].concat());
        // The XMP only without an EXIF orientation; the last XMP segment.
        assert_eq!(o(&jpeg(&[xmp_app1(5), xmp_app1(8)])), Orientation::Rotate90);
        assert_eq!(
            o(&jpeg(&[xmp_app1(5), exif_app1(&tiff6(2))])),
            Orientation::FlipLeftRight
        );
        // Junk bytes and fill bytes between segments are stepped over, as PIL does.
        let mut junk = jpeg(&[exif_app1(&tiff6(4))]);
        junk.splice(2..2, [0x00, 0x13, 0xff, 0xff, 0xff, 0x00]);
        assert_eq!(o(&junk), Orientation::FlipTopBottom);
        // Segments after the scan header, or past a broken marker, are not read.
        let mut late = jpeg(&[]);
        late.extend_from_slice(&jpeg(&[exif_app1(&tiff6(6))])[2..]);
        assert_eq!(o(&late), Orientation::Upright);
        let mut broken = jpeg(&[(0xe0, vec![])]);
        broken.splice(2..2, [0xff, 0x42]);
        broken.splice(4..4, jpeg(&[exif_app1(&tiff6(6))])[2..].to_vec());
        assert_eq!(o(&broken), Orientation::Upright);
        // A segment running past the end is no EXIF.
        let cut = jpeg(&[exif_app1(&tiff6(6))]);
        assert_eq!(o(&cut[..cut.len() - 10]), Orientation::Upright);
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        // The CRC is left 0: PIL does not check it past the image data, nor do we anywhere.
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &[0; 4]].concat()
    }

    fn png(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        b.extend(png_chunk(b"IHDR", &[0; 13]));
        b.extend(png_chunk(b"IDAT", &[]));
        chunks.iter().for_each(|c| b.extend(c));
        b.extend(png_chunk(b"IEND", &[]));
        b
    }

    #[test]
    fn png_takes_the_last_exif_chunk_then_the_raw_profile_then_the_xmp() {
        let o = |chunks: &[Vec<u8>]| orientation(&png(chunks), Format::Png);
        let exif = |v| png_chunk(b"eXIf", &tiff6(v));
        assert_eq!(o(&[exif(6), exif(8)]), Orientation::Rotate90);
        // PIL keeps a tEXt "exif" as raw bytes, like an eXIf chunk.
        let text_exif = png_chunk(b"tEXt", &[b"exif\0", &tiff6(7)[..]].concat());
        assert_eq!(o(&[exif(6), text_exif]), Orientation::Transverse);
        let profile = |v: u16| {
            let hex: String = [b"Exif\0\0", &tiff6(v)[..]]
                .concat()
                .iter()
                .map(|b| format!("{b:02x} "))
                .collect();
            png_chunk(
                b"tEXt",
                format!("Raw profile type exif\0\nexif\n  26\n{hex}\n").as_bytes(),
            )
        };
        assert_eq!(o(&[profile(5)]), Orientation::Transpose);
        assert_eq!(o(&[profile(5), exif(3)]), Orientation::Rotate180);
        let itxt = |flag: u8, text: &[u8]| {
            png_chunk(
                b"iTXt",
                &[b"XML:com.adobe.xmp\0", &[flag, 0][..], b"en\0\0", text].concat(),
            )
        };
        let xmp = b"<x tiff:Orientation=\"4\"/>";
        assert_eq!(o(&[itxt(0, xmp)]), Orientation::FlipTopBottom);
        // A compressed iTXt (zlib: the stored block of `xmp`).
        let mut z = vec![
            0x78,
            0x01,
            0x01,
            xmp.len() as u8,
            0,
            !(xmp.len() as u8),
            0xff,
        ];
        z.extend_from_slice(xmp);
        let adler = xmp.iter().fold((1u32, 0u32), |(a, b), &c| {
            ((a + c as u32) % 65521, (b + a + c as u32) % 65521)
        });
        z.extend_from_slice(&(adler.1 << 16 | adler.0).to_be_bytes());
        assert_eq!(o(&[itxt(1, &z)]), Orientation::FlipTopBottom);
        // Cut in its Adler-32, the stream still gives all its text (as zlib does for PIL); with
        // a wrong Adler-32 it gives none.
        assert_eq!(o(&[itxt(1, &z[..z.len() - 3])]), Orientation::FlipTopBottom);
        let mut wrong = z.clone();
        *wrong.last_mut().unwrap() ^= 1;
        assert_eq!(o(&[itxt(1, &wrong)]), Orientation::Upright);
        let ztxt = png_chunk(b"zTXt", &[b"XML:com.adobe.xmp\0\0", &z[..]].concat());
        assert_eq!(o(&[ztxt]), Orientation::FlipTopBottom);
        // An EXIF with no orientation tag leaves it to the XMP; an unreadable one does not.
        let software = b"II*\0\x08\0\0\0\x01\0\x31\x01\x02\0\x04\0\0\0qvq\0\0\0\0\0";
        assert_eq!(
            o(&[png_chunk(b"eXIf", software), itxt(0, xmp)]),
            Orientation::FlipTopBottom
        );
        assert_eq!(
            o(&[png_chunk(b"eXIf", b"XX*\0\x08\0\0\0"), itxt(0, xmp)]),
            Orientation::Upright
        );
        // A bad hex profile, a chunk running past the end: upright, no error.
        let bad = png_chunk(b"tEXt", b"Raw profile type exif\0\nexif\n 2\n4g45\n");
        assert_eq!(o(&[bad]), Orientation::Upright);
        let mut cut = png(&[exif(6)]);
        cut.truncate(cut.len() - 20);
        assert_eq!(orientation(&cut, Format::Png), Orientation::Upright);
    }

    #[test]
    fn png_falls_back_to_the_last_itxt_xmp_where_the_xmp_text_is_empty() {
        // PIL 13 gives 6, 6, nothing, TypeError (so transformers refuses the image), 6, 3, 6:
        // getexif reads info["xmp"] (an iTXt XMP's bytes, UTF-8 or not) where
        // info["XML:com.adobe.xmp"] (the last XMP text kept) is empty; a chunk keyed "xmp"
        // replaces those bytes with text, where it is kept.
        let o = |chunks: &[Vec<u8>]| orientation(&png(chunks), Format::Png);
        const X: &[u8] = b"XML:com.adobe.xmp";
        let x = |v: u8| format!("<x tiff:Orientation=\"{v}\"/>").into_bytes();
        let itxt = |k: &[u8], t: &[u8]| png_chunk(b"iTXt", &[k, b"\0\0\0\0\0", t].concat());
        let text = |k: &[u8], t: &[u8]| png_chunk(b"tEXt", &[k, b"\0", t].concat());
        let (xmp6, empty) = (itxt(X, &x(6)), text(X, b""));
        let bad_ztxt = png_chunk(b"zTXt", &[X, b"\0\0\0\0"].concat()); // zlib fails: ""
        let cases = [
            (vec![xmp6.clone(), empty.clone()], Orientation::Rotate270),
            (vec![xmp6.clone(), bad_ztxt], Orientation::Rotate270),
            (
                vec![xmp6.clone(), empty.clone(), text(b"xmp", b"")],
                Orientation::Upright,
            ),
            (
                vec![xmp6.clone(), empty.clone(), text(b"xmp", b"a")],
                Orientation::Upright,
            ),
            (
                vec![xmp6.clone(), empty, itxt(b"xmp", b"\xe9")],
                Orientation::Rotate270,
            ),
            (
                vec![text(X, &x(3)), itxt(X, &[&x(6)[..], b"\xe9"].concat())],
                Orientation::Rotate180,
            ),
            (
                vec![itxt(X, &[&x(6)[..], b"\xe9"].concat())],
                Orientation::Rotate270,
            ),
        ];
        for (k, (chunks, expected)) in cases.into_iter().enumerate() {
            assert_eq!(o(&chunks), expected, "case {k}");
        }
    }

    #[test]
    fn inflate_keeps_what_zlib_gives_of_a_cut_stream_and_refuses_more_than_max_text_chunk() {
        // zlib.compress(b"tiff:Orientation=\"6\" " * 4, 9) (Python)
        let z = [
            0x78, 0xda, 0x2b, 0xc9, 0x4c, 0x4b, 0xb3, 0xf2, 0x2f, 0xca, 0x4c, 0xcd, 0x2b, 0x49,
            0x2c, 0xc9, 0xcc, 0xcf, 0xb3, 0x55, 0x32, 0x53, 0x52, 0x28, 0xa1, 0x4c, 0x10, 0x00,
            0xf6, 0xd0, 0x1d, 0x19,
        ];
        let text = b"tiff:Orientation=\"6\" ".repeat(4);
        let inflated = |z: &[u8]| inflate(&mut DecompressorOxide::new(), z).0;
        assert_eq!(inflated(&z).unwrap(), text);
        // What Python's zlib.decompressobj().decompress(z[:cut]) gives at each cut: no error,
        // the text as far as it is decoded (all of it once the last block is in).
        let zlib = [
            0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
            22, 22, 84, 84, 84, 84, 84,
        ];
        for (cut, len) in zlib.into_iter().enumerate() {
            assert_eq!(inflated(&z[..cut]).unwrap(), text[..len], "cut at {cut}");
        }
        // zlib refuses a wrong checksum, and a distance back past the start (here: the same
        // text compressed against itself as a preset dictionary the header does not announce).
        let mut wrong = z;
        wrong[31] ^= 1;
        assert_eq!(inflated(&wrong), None);
        let too_far = [0x78, 0xda, 0xa3, 0x85, 0x20, 0x00, 0xf6, 0xd0, 0x1d, 0x19];
        assert_eq!(inflated(&too_far), None);
        // 2 MiB of zeros (stored blocks): past the bound, refused.
        let mut big = vec![0x78, 0x01];
        for _ in 0..64 {
            big.extend_from_slice(&[0x00, 0x00, 0x80, 0xff, 0x7f]); // a stored block of 32768
            big.extend(std::iter::repeat_n(0, 32768));
        }
        big.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1]);
        let big = inflate(&mut DecompressorOxide::new(), &big);
        assert_eq!(big, (None, MAX_TEXT_CHUNK + 1));
    }

    #[test]
    fn png_text_past_pils_limits_leaves_the_image_upright() {
        // PIL 13 gives 6 for the first file and refuses the other two (ValueError: "Too much
        // memory used in text chunks", "Decompressed data too large").
        let o = |chunks: &[Vec<u8>]| orientation(&png(chunks), Format::Png);
        let xmp = |len: usize| {
            let mut text = b"<x tiff:Orientation=\"6\"/>".to_vec();
            text.resize(len, b' ');
            let z = miniz_oxide::deflate::compress_to_vec_zlib(&text, 6);
            png_chunk(b"zTXt", &[b"XML:com.adobe.xmp\0\0", &z[..]].concat())
        };
        let comment =
            |len: usize| png_chunk(b"tEXt", &[&b"Comment\0"[..], &vec![b'q'; len]].concat());
        let filled = [
            comment(MAX_TEXT_MEMORY - MAX_TEXT_CHUNK),
            xmp(MAX_TEXT_CHUNK),
        ];
        assert_eq!(o(&filled), Orientation::Rotate270);
        assert_eq!(
            o(&[&filled[..], &[comment(1)]].concat()),
            Orientation::Upright
        );
        assert_eq!(o(&[xmp(MAX_TEXT_CHUNK + 1)]), Orientation::Upright);
    }

    #[test]
    fn png_stops_at_the_second_frame_of_an_animation() {
        let actl = |frames: u32| png_chunk(b"acTL", &[&frames.to_be_bytes()[..], &[0; 4]].concat());
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        b.extend(png_chunk(b"IHDR", &[0; 13]));
        b.extend(actl(2));
        b.extend(png_chunk(b"IDAT", &[]));
        b.extend(png_chunk(b"fcTL", &[0; 26]));
        b.extend(png_chunk(b"eXIf", &tiff6(6)));
        assert_eq!(orientation(&b, Format::Png), Orientation::Upright);
        let one_frame = [&b[..33], &actl(1), &b[33 + 20..]].concat();
        assert_eq!(orientation(&one_frame, Format::Png), Orientation::Rotate270);
    }

    fn webp(flags: u8, chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WEBPVP8X\x0a\0\0\0".to_vec();
        body.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        for (kind, data) in chunks {
            body.extend_from_slice(*kind);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        [b"RIFF", &(body.len() as u32).to_le_bytes()[..], &body].concat()
    }

    #[test]
    fn webp_takes_the_first_exif_and_xmp_chunks_its_vp8x_flags_announce() {
        let o = |b: Vec<u8>| orientation(&b, Format::WebP);
        let (t6, t3) = (tiff6(6), [&tiff6(3)[..], b"\0"].concat()); // an odd size: padded
        let xmp: &[u8] = b"<x tiff:Orientation=\"8\"/>";
        assert_eq!(
            o(webp(
                0x08,
                &[(b"VP8L", b"\0"), (b"EXIF", &t3), (b"EXIF", &t6)]
            )),
            Orientation::Rotate180
        );
        assert_eq!(o(webp(0x00, &[(b"EXIF", &t6)])), Orientation::Upright);
        assert_eq!(
            o(webp(0x04, &[(b"EXIF", &t6), (b"XMP ", xmp)])),
            Orientation::Rotate90
        );
        assert_eq!(
            o(webp(0x0c, &[(b"XMP ", xmp), (b"EXIF", &t6)])),
            Orientation::Rotate270
        );
        // Nothing past the RIFF size; no metadata in a simple (VP8L-first) file.
        let mut past = webp(0x08, &[]);
        past.extend_from_slice(&webp(0x08, &[(b"EXIF", &t6)])[30..]);
        assert_eq!(o(past), Orientation::Upright);
        let mut simple = webp(0x08, &[(b"EXIF", &t6)]);
        simple[12..16].copy_from_slice(b"VP8L");
        assert_eq!(o(simple), Orientation::Upright);
    }
}
