//! Deterministic mutation fuzzing of the decoders' public entry points ([`decode`],
//! [`dimensions`], [`preprocess`]) on hostile bytes: every input must give `Ok` or `Err`, never a
//! panic (a trap in WebAssembly, which can leave the module unusable), never a hang, and never an
//! allocation far beyond what the file's size justifies.
//!
//! The seeds are the small PNG, JPEG and WebP files of tests/fixtures/images (with and without
//! EXIF / XMP metadata); each case applies one to four mutations that know the container's layout
//! (PNG chunks with their CRCs recomputed, so the mutation reaches the decoder; JPEG segments;
//! WebP's RIFF chunks). A failure names the seed file, the case's RNG seed and its mutations, and
//! writes the input to the target directory. `cargo test --release -- --ignored` runs many more.

use qvq_fuzz_support::{
    Rng, crc32, delete, flip_bit, guarded, insert_random, mutations, randomize, report, set_byte,
    silence_panics, truncate,
};
use qvq_image::{ProcessorConfig, decode, dimensions, preprocess};
use std::path::{Path, PathBuf};
use std::time::Duration;

qvq_fuzz_support::counting_allocator!();

// ---- container layouts ----

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Png,
    Jpeg,
    WebP,
}

/// A chunk or segment: where its length field is and where its data is.
#[derive(Clone, Copy, Debug)]
struct Part {
    start: usize,
    len_at: usize,
    len_size: usize,
    big_endian: bool,
    data: (usize, usize),
    end: usize,
}

fn parts(kind: Kind, b: &[u8]) -> Vec<Part> {
    let mut out = Vec::new();
    match kind {
        Kind::Png => {
            let mut i = 8;
            while i + 12 <= b.len() {
                let n = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
                let end = i.saturating_add(12).saturating_add(n);
                if end > b.len() {
                    break;
                }
                out.push(Part {
                    start: i,
                    len_at: i,
                    len_size: 4,
                    big_endian: true,
                    data: (i + 8, i + 8 + n),
                    end,
                });
                i = end;
            }
        }
        Kind::Jpeg => {
            let mut i = 2;
            while i + 4 <= b.len() && b[i] == 0xff {
                let m = b[i + 1];
                if m == 0xd9 || (0xd0..=0xd7).contains(&m) || m == 0x01 {
                    i += 2;
                    continue;
                }
                let n = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                let end = i + 2 + n;
                if n < 2 || end > b.len() {
                    break;
                }
                out.push(Part {
                    start: i,
                    len_at: i + 2,
                    len_size: 2,
                    big_endian: true,
                    data: (i + 4, end),
                    end,
                });
                if m == 0xda {
                    break; // entropy-coded data follows
                }
                i = end;
            }
        }
        Kind::WebP => {
            let mut i = 12;
            while i + 8 <= b.len() {
                let n = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
                let end = i.saturating_add(8).saturating_add(n).saturating_add(n & 1);
                if end > b.len() {
                    break;
                }
                out.push(Part {
                    start: i,
                    len_at: i + 4,
                    len_size: 4,
                    big_endian: false,
                    data: (i + 8, i + 8 + n),
                    end,
                });
                i = end;
            }
        }
    }
    out
}

/// Recomputes each PNG chunk's CRC, so the mutated chunk reaches the decoder.
fn fix_png_crcs(b: &mut [u8]) {
    for p in parts(Kind::Png, b) {
        let crc = crc32(&b[p.start + 4..p.data.1]);
        b[p.data.1..p.data.1 + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Sets the RIFF size to the file's.
fn fix_riff_size(b: &mut [u8]) {
    if b.len() >= 8 {
        let n = (b.len() - 8) as u32;
        b[4..8].copy_from_slice(&n.to_le_bytes());
    }
}

fn write_len(b: &mut [u8], p: &Part, v: u64) {
    let bytes = v.to_be_bytes();
    let field = &bytes[8 - p.len_size..];
    let dst = &mut b[p.len_at..p.len_at + p.len_size];
    dst.copy_from_slice(field);
    if !p.big_endian {
        dst.reverse();
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// One mutation of `b`; returns its description.
fn mutate(kind: Kind, b: &mut Vec<u8>, rng: &mut Rng) -> String {
    let ps = parts(kind, b);
    // Positions in the headers (before the entropy / compressed data) matter most.
    let header_end = ps.last().map_or(b.len(), |p| p.end).max(1).min(b.len());
    let pos = |rng: &mut Rng, len: usize| {
        if rng.below(3) > 0 {
            rng.below(header_end)
        } else {
            rng.below(len)
        }
    };
    if b.is_empty() {
        b.push(rng.byte());
        return "push".into();
    }
    match rng.below(11) {
        0 => {
            let i = pos(rng, b.len());
            flip_bit(b, i, rng)
        }
        1 => {
            let i = pos(rng, b.len());
            let v = [0x00, 0xff, 0x80, 0x7f, 0x01, rng.byte()][rng.below(6)];
            set_byte(b, i, v)
        }
        2 => truncate(b, rng),
        3 | 4 if !ps.is_empty() => {
            let p = ps[rng.below(ps.len())];
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let v = match rng.below(4) {
                0 => v,
                1 => (p.data.1 - p.data.0) as u64 + 1,
                2 => (p.data.1 - p.data.0) as u64 ^ (1 << rng.below(8 * p.len_size)),
                _ => ((p.data.1 - p.data.0) as u64).wrapping_sub(1),
            };
            let v = v & (u64::MAX >> (64 - 8 * p.len_size));
            write_len(b, &p, v);
            format!("length of part at {} = {v:#x}", p.start)
        }
        5 if !ps.is_empty() => {
            let p = ps[rng.below(ps.len())];
            let copy = b[p.start..p.end].to_vec();
            let at = ps[rng.below(ps.len())].start;
            b.splice(at..at, copy);
            format!("duplicate part at {} before {at}", p.start)
        }
        6 if ps.len() > 1 => {
            let p = ps[rng.below(ps.len())];
            b.drain(p.start..p.end);
            format!("remove part at {}", p.start)
        }
        7 if !ps.is_empty() => {
            // A 1-, 2- or 4-byte field in a part's data set to an extreme value.
            let p = ps[rng.below(ps.len())];
            let n = [1, 2, 4][rng.below(3)];
            if p.data.1 - p.data.0 < n {
                return "nothing".into();
            }
            let i = p.data.0 + rng.below(p.data.1 - p.data.0 - n + 1);
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let bytes = v.to_be_bytes();
            let mut field = bytes[8 - n..].to_vec();
            if kind == Kind::WebP {
                field.reverse();
            }
            b[i..i + n].copy_from_slice(&field);
            format!("{n}-byte field at {i} = {v:#x}")
        }
        8 => {
            let i = pos(rng, b.len());
            insert_random(b, i, rng, 16)
        }
        9 => delete(b, rng, 64),
        _ => {
            let i = pos(rng, b.len());
            randomize(b, i, rng, 8)
        }
    }
}

// ---- running a case ----

/// Each entry point, in debug mode, may take this long on one of the small seeds.
const CASE_LIMIT: Duration = Duration::from_secs(3);

/// The largest allocation a case may make: the pixel buffers a file's headers justify stay well
/// below this for the seeds (tens of pixels); a mutated header announcing a larger image must be
/// refused, or be backed by data, before its buffers exist.
fn allocation_limit(input_len: usize) -> usize {
    // 1032: deflate's largest ratio; 32: a 1-bit palette pixel expanded to RGBA.
    (64 << 20).max(input_len * 1032 * 32)
}

fn seeds(dirs: &[&str]) -> Vec<(String, Kind, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/images");
    let mut out = Vec::new();
    for &dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let kind = match f.extension().and_then(|e| e.to_str()) {
                Some("png") => Kind::Png,
                Some("jpg") => Kind::Jpeg,
                Some("webp") => Kind::WebP,
                _ => continue,
            };
            let bytes = std::fs::read(&f).unwrap();
            if bytes.len() > 8000 {
                continue;
            }
            out.push((
                format!("{dir}/{}", f.file_name().unwrap().to_str().unwrap()),
                kind,
                bytes,
            ));
        }
    }
    out
}

/// Runs every entry point on `bytes`: Ok(whether it decoded), or Err(why) on a panic, a hang or
/// an oversized allocation.
fn run(bytes: &[u8], preprocess_too: bool) -> Result<bool, String> {
    let (decoded, largest) = guarded(CASE_LIMIT, || {
        let _ = dimensions(bytes);
        let decoded = decode(bytes);
        if let Ok(img) = &decoded
            && preprocess_too
            && img.width * img.height < 1 << 16
        {
            let _ = preprocess(bytes, &ProcessorConfig::default());
        }
        decoded.is_ok()
    })?;
    // A simple (not VP8X) WebP file may hold a huge image in a few bytes (a lossless one of a
    // single colour codes each pixel in no bits), so its buffers are allowed up to its declared
    // size (at most qvq_image::MAX_DECODED_PIXELS), RGBA and an RGB copy; everywhere else, a
    // buffer must be justified by the file's size.
    let mut limit = allocation_limit(bytes.len());
    if bytes.starts_with(b"RIFF")
        && bytes.get(12..16).is_some_and(|c| c != b"VP8X")
        && let Ok((w, h)) = dimensions(bytes)
    {
        limit = limit.max(w * h * 8);
    }
    if largest > limit {
        return Err(format!(
            "allocated {largest} bytes at once for {} bytes of input",
            bytes.len()
        ));
    }
    Ok(decoded)
}

fn save(name: &str, bytes: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name.replace('/', "_"));
    let _ = std::fs::write(&path, bytes);
    path.display().to_string()
}

/// The fixture folders whose files seed the default tests; the long one adds jpeg/ (89 JPEGs
/// of every sampling layout).
const SEED_DIRS: &[&str] = &["decode", "orientation", "bad"];

/// `cases` mutated inputs from each seed file of `dirs`, RNG seeds `first..first + cases`.
fn fuzz(dirs: &[&str], first: u64, cases: u64) {
    silence_panics();
    let mut failures = Vec::new();
    let (mut total, mut decoded) = (0, 0);
    for (name, kind, seed) in seeds(dirs) {
        for s in first..first + cases {
            let mut rng = Rng::new(s ^ crc32(name.as_bytes()) as u64);
            let mut b = seed.clone();
            let steps = mutations(&mut b, &mut rng, 4, |b, rng| mutate(kind, b, rng));
            match kind {
                Kind::Png if rng.below(8) > 0 => fix_png_crcs(&mut b),
                Kind::WebP if rng.below(2) > 0 => fix_riff_size(&mut b),
                _ => {}
            }
            total += 1;
            match run(&b, s % 16 == 0) {
                Ok(ok) => decoded += ok as usize,
                Err(why) => {
                    let path = save(&format!("{name}.{s}"), &b);
                    failures.push(format!(
                        "{name} seed {s} [{}]: {why} (input: {path})",
                        steps.join("; ")
                    ));
                }
            }
        }
    }
    report(&failures);
    // Most mutations break a file; enough must still decode for the pixel paths to be reached.
    assert!(
        decoded * 20 > total,
        "only {decoded} of {total} mutated images decoded"
    );
    eprintln!("{decoded} of {total} mutated images decoded");
}

#[test]
fn mutated_images_give_errors_not_panics() {
    fuzz(SEED_DIRS, 0, 60);
}

#[test]
#[ignore = "minutes: cargo test --release -p qvq-image --test fuzz -- --ignored"]
fn mutated_images_give_errors_not_panics_long() {
    // QVQ_FUZZ_FIRST=<n> starts at other RNG seeds.
    let first: u64 = std::env::var("QVQ_FUZZ_FIRST").map_or(1_000_000, |v| v.parse().unwrap());
    fuzz(SEED_DIRS, first, 20_000);
    fuzz(&["jpeg"], first + 1_000_000, 5_000);
}

#[test]
fn truncated_images_give_errors_not_panics() {
    silence_panics();
    let mut failures = Vec::new();
    for (name, _, seed) in seeds(SEED_DIRS) {
        // Every offset through the headers, then a stride through the rest.
        let step = (seed.len() / 150).max(1);
        let mut at = 0;
        while at < seed.len() {
            if let Err(why) = run(&seed[..at], false) {
                failures.push(format!("{name} cut at {at}: {why}"));
            }
            at += if at < 400 { 1 } else { step };
        }
    }
    report(&failures);
}
