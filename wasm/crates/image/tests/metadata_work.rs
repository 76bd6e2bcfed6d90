//! The work [`dimensions`] (what the server runs on its main thread) does on a file's metadata,
//! counted in bytes allocated on this thread: bounded by the file's size or by PIL's own limits,
//! whatever the metadata holds.

use qvq_image::dimensions;
use qvq_fuzz_support::allocated;
use std::sync::OnceLock;

// The system allocator, counting the bytes each thread asks of it.
qvq_fuzz_support::counting_allocator!();

/// `dimensions(bytes)` and the bytes it allocated.
fn dimensions_allocating(bytes: &[u8]) -> ((usize, usize), usize) {
    let before = allocated();
    let size = dimensions(bytes).unwrap();
    (size, allocated() - before)
}

const MIB: usize = 1 << 20;

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    // The CRCs are left 0: only IHDR's is checked, to read the size.
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &[0; 4]].concat()
}

/// A 1 x 1 gray PNG with `chunks` between its image data and IEND.
fn png(chunks: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x00\0\0\0".to_vec();
    b.extend_from_slice(&[0x3a, 0x7e, 0x9b, 0x55]); // IHDR's CRC
    b.extend(png_chunk(
        b"IDAT",
        &miniz_oxide::deflate::compress_to_vec_zlib(&[0, 0], 6),
    ));
    chunks.into_iter().for_each(|c| b.extend(c));
    b.extend(png_chunk(b"IEND", &[]));
    b
}

/// A zTXt chunk: `keyword` and 1 MiB of zeros, compressed (about 1 KB).
fn ztxt_mib(keyword: &[u8]) -> Vec<u8> {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    let z = ZEROS.get_or_init(|| miniz_oxide::deflate::compress_to_vec_zlib(&vec![0; MIB], 9));
    png_chunk(b"zTXt", &[keyword, b"\0\0", z].concat())
}

#[test]
fn dimensions_inflates_no_compressed_text_but_the_exif_and_xmp() {
    // 200 MiB of compressed comments: nothing reads them, nothing inflates them.
    let comment = ztxt_mib(b"Comment");
    let comments = png((0..200).map(|_| comment.clone()));
    let (size, allocated) = dimensions_allocating(&comments);
    assert_eq!(size, (1, 1));
    assert!(allocated < MIB, "{allocated} bytes allocated");
}

#[test]
fn dimensions_inflates_no_more_text_than_pils_max_text_memory() {
    // 63 MiB of plain text, then 200 XMP chunks of 1 MiB each, inflated until the text passes
    // 64 MiB (PIL's MAX_TEXT_MEMORY), at the second; so too where zlib fails on each at its end.
    let comment = png_chunk(
        b"tEXt",
        &[&b"Comment\0"[..], &vec![b'q'; 63 * MIB]].concat(),
    );
    let xmp = ztxt_mib(b"XML:com.adobe.xmp");
    let mut bad_checksum = xmp.clone();
    let n = bad_checksum.len();
    bad_checksum[n - 5] ^= 1; // the Adler-32's last byte (before the chunk's CRC)
    for chunk in [xmp, bad_checksum] {
        let file = png([comment.clone()]
            .into_iter()
            .chain((0..200).map(|_| chunk.clone())));
        let (size, allocated) = dimensions_allocating(&file);
        assert_eq!(size, (1, 1));
        assert!(allocated < 10 * MIB, "{allocated} bytes allocated");
    }
}

#[test]
fn dimensions_allocates_little_for_each_small_xmp_chunk() {
    // 5,000 XMP chunks of an empty zlib stream (39 bytes each): a few bytes allocated for each,
    // not a new decompressor's tables (11 KB).
    let empty = miniz_oxide::deflate::compress_to_vec_zlib(&[], 6);
    let xmp = png_chunk(b"zTXt", &[&b"XML:com.adobe.xmp\0\0"[..], &empty].concat());
    let file = png((0..5_000).map(|_| xmp.clone()));
    let (size, allocated) = dimensions_allocating(&file);
    assert_eq!(size, (1, 1));
    assert!(
        allocated < 4 * file.len(),
        "{allocated} bytes allocated for {} bytes",
        file.len()
    );
}

#[test]
fn dimensions_joins_a_jpegs_exif_segments_in_linear_work() {
    // 300 Exif APP1 segments of 64 KB (19.6 MB joined): the joined EXIF grows in one buffer,
    // doubling, so the bytes allocated stay under 4 times its size (a copy of all joined so far
    // at each segment would allocate 150 times its size).
    let mut file = vec![0xff, 0xd8];
    for k in 0..300u16 {
        let payload = [&b"Exif\0\0"[..], &k.to_be_bytes().repeat(32_760)].concat();
        file.extend_from_slice(&[0xff, 0xe1]);
        file.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        file.extend_from_slice(&payload);
    }
    file.extend_from_slice(b"\xff\xc0\0\x0b\x08\0\x02\0\x03\x01\x01\x11\0"); // SOF0: 3 x 2, gray
    file.extend_from_slice(b"\xff\xda\0\x08\x01\x01\0\0\x3f\0"); // SOS
    let (size, allocated) = dimensions_allocating(&file);
    assert_eq!(size, (3, 2));
    assert!(
        allocated < 4 * file.len(),
        "{allocated} bytes allocated for {} bytes",
        file.len()
    );
}
