//! qvq-image against the Python references in tests/fixtures (made by
//! tests/tools/make_image_refs.py and by transformers 5.17 for the model fixture).

use qvq_image::{
    Backend, ImageError, ProcessorConfig, RgbImage, decode, dimensions, preprocess, preprocess_rgb,
    resize_bicubic, smart_resize,
};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// (height, width, 3) u8 hash noise, the same as `noise()` in make_image_refs.py.
fn noise(height: usize, width: usize, seed: u32) -> RgbImage {
    let mut data = Vec::with_capacity(height * width * 3);
    for y in 0..height as u32 {
        for x in 0..width as u32 {
            for c in 0..3u32 {
                let mut v = x.wrapping_mul(73856093)
                    ^ y.wrapping_mul(19349663)
                    ^ (c + 3 * seed).wrapping_mul(83492791);
                v = (v ^ (v >> 13)).wrapping_mul(0x5bd1e995);
                v ^= v >> 15;
                data.push(v as u8);
            }
        }
    }
    RgbImage::new(width, height, data)
}

/// (max, mean) absolute difference of two equal-length byte buffers.
fn byte_diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    (max, sum as f64 / a.len() as f64)
}

#[test]
fn decode_matches_transformers_convert_to_rgb_for_every_reference_image() {
    for case in json("images/decode_cases.json").as_array().unwrap() {
        let file = &format!("images/{}", case["file"].as_str().unwrap());
        let img = decode(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (img.width as u64, img.height as u64),
            (num(case, "width"), num(case, "height")),
            "{file}"
        );
        // The headers alone give the same size.
        assert_eq!(
            dimensions(&read(file)),
            Ok((img.width, img.height)),
            "{file}"
        );
        let expected = read(&format!("images/{}", case["expected"].as_str().unwrap()));
        // PNG is lossless, image-webp decodes lossy WebP with libwebp's own fancy upsampling and
        // YUV → RGB arithmetic, and our JPEG decoder does libjpeg-turbo's arithmetic: all three
        // must match PIL exactly.
        assert_eq!(byte_diff(&img.data, &expected), (0, 0.0), "{file}");
    }
}

#[test]
fn decode_matches_pil_byte_for_byte_on_every_jpeg_of_the_corpus() {
    // tests/tools/make_jpeg_refs.py: every sampling layout, size, progression, restart interval,
    // quality extreme and colour space, decoded by PIL (libjpeg-turbo 3.2); and files refused.
    let cases = json("images/jpeg_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 80);
    for case in cases {
        let file = &format!("images/{}", case["file"].as_str().unwrap());
        let bytes = read(file);
        let got = decode(&bytes);
        if let Some(word) = case["error"].as_str() {
            let err = got.err().unwrap_or_else(|| panic!("{file} decoded"));
            assert!(err.to_string().contains(word), "{file}: {err}");
            continue;
        }
        let img = got.unwrap_or_else(|e| panic!("{file}: {e}"));
        let size = (num(case, "width") as usize, num(case, "height") as usize);
        assert_eq!((img.width, img.height), size, "{file}");
        assert_eq!(dimensions(&bytes), Ok(size), "{file}");
        let expected = read(&format!("images/{}", case["expected"].as_str().unwrap()));
        assert_eq!(byte_diff(&img.data, &expected), (0, 0.0), "{file}");
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn decode_turns_images_upright_as_transformers_load_image_does() {
    // PIL's exif_transpose of each file, then convert("RGB"): every orientation of every format,
    // EXIF in each place PIL reads it, and EXIF it reads past.
    let cases = json("images/orientation_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 35);
    for case in cases {
        let file = &format!("images/{}", case["file"].as_str().unwrap());
        let bytes = read(file);
        let img = decode(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let size = (num(case, "width") as usize, num(case, "height") as usize);
        assert_eq!((img.width, img.height), size, "{file}");
        assert_eq!(dimensions(&bytes), Ok(size), "{file}");
        let expected = hex(case["expected"].as_str().unwrap());
        assert_eq!(byte_diff(&img.data, &expected), (0, 0.0), "{file}");
    }
}

#[test]
fn resize_bicubic_is_bit_exact_with_torchvision_and_pillow() {
    for case in json("images/resize_cases.json").as_array().unwrap() {
        let backend = match case["backend"].as_str().unwrap() {
            "torchvision" => Backend::Torchvision,
            "pillow" => Backend::Pillow,
            other => panic!("backend {other}"),
        };
        let input = noise(
            num(case, "in_h") as usize,
            num(case, "in_w") as usize,
            num(case, "seed") as u32,
        );
        let (out_h, out_w) = (num(case, "out_h") as usize, num(case, "out_w") as usize);
        let out = resize_bicubic(&input, out_w, out_h, backend);
        let expected = read(&format!("images/{}", case["expected"].as_str().unwrap()));
        assert_eq!(byte_diff(&out.data, &expected), (0, 0.0), "{case}");
    }
}

#[test]
fn smart_resize_agrees_with_transformers_on_every_case() {
    for case in json("images/smart_resize_cases.json").as_array().unwrap() {
        let got = smart_resize(
            num(case, "height"),
            num(case, "width"),
            num(case, "factor"),
            num(case, "min_pixels"),
            num(case, "max_pixels"),
        );
        match (&case["expected"], got) {
            // transformers returns a 0x0 size when min_pixels = 0 lets a tiny image round to
            // nothing (and then fails later); we refuse it up front.
            (Value::Array(hw), Err(ImageError::ResizedToNothing { .. })) => {
                assert!(hw.iter().any(|v| v == 0), "{case}")
            }
            (Value::Array(hw), Ok((h, w))) => {
                assert_eq!(
                    [h, w],
                    [hw[0].as_u64().unwrap(), hw[1].as_u64().unwrap()],
                    "{case}"
                )
            }
            (Value::Null, Err(ImageError::AspectRatio { .. })) => {
                assert!(
                    case["error"].as_str().unwrap().contains("aspect ratio"),
                    "{case}"
                )
            }
            (_, got) => panic!("{case}: got {got:?}"),
        }
    }
}

/// The f32 tensor `name` of a safetensors file (little-endian, as the format stores it).
fn safetensors_f32(bytes: &[u8], name: &str) -> Vec<f32> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[name]["dtype"], "F32");
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    bytes[8 + header_len + a..8 + header_len + b]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn preprocess_reproduces_transformers_pixel_values_for_the_model_fixture() {
    let root = "tiny-qwen2vl/reference";
    let cases = json(&format!("{root}/cases.json"));
    let config = ProcessorConfig {
        max_pixels: 12845056,
        min_pixels: 3136,
        ..ProcessorConfig::default()
    };
    for (i, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let Some(image) = case["images"].as_array().unwrap().first() else {
            continue;
        };
        let out = preprocess(
            &read(&format!("{root}/{}", image.as_str().unwrap())),
            &config,
        )
        .unwrap();
        let grid: Vec<u64> = case["grid_thw"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(out.grid_thw.map(|v| v as u64).to_vec(), grid, "case {i}");
        let expected = safetensors_f32(
            &read(&format!("{root}/case{i}.safetensors")),
            "pixel_values",
        );
        assert_eq!(out.pixel_values.len(), expected.len(), "case {i}");
        // Same decoder output, same integer resize, same f32 operations in the same order: the
        // values must be identical, not merely close.
        let max = out
            .pixel_values
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(max, 0.0, "case {i}");
    }
}

#[test]
fn decode_refuses_headers_that_announce_too_many_pixels() {
    for (file, format) in [
        ("png_bomb.png", "PNG"),
        ("jpeg_bomb.jpg", "JPEG"),
        ("webp_bomb.webp", "WebP"),
    ] {
        match decode(&read(&format!("images/bad/{file}"))) {
            Err(ImageError::TooLarge { format: f, .. }) => assert_eq!(f, format),
            other => panic!("{file}: {other:?}"),
        }
    }
    match decode(&read("images/bad/png_zero_width.png")) {
        // The png crate itself rejects a zero width in IHDR.
        Err(ImageError::Corrupt { format: "PNG", .. }) | Err(ImageError::ZeroSize { .. }) => {}
        other => panic!("zero width: {other:?}"),
    }
}

#[test]
fn decode_names_unsupported_formats() {
    let err = decode(&read("images/bad/gif_1x1.gif")).unwrap_err();
    assert_eq!(err, ImageError::UnsupportedFormat { detected: "GIF" });
    assert!(err.to_string().contains("PNG, JPEG or WebP"), "{err}");
}

#[test]
fn decode_refuses_truncated_files_of_every_format() {
    for file in [
        "decode/png_rgb8_interlaced.png",
        "decode/jpeg_420.jpg",
        "decode/jpeg_progressive.jpg",
        "decode/webp_lossy.webp",
        "decode/webp_lossless.webp",
    ] {
        let bytes = read(&format!("images/{file}"));
        for keep in [bytes.len() / 2, bytes.len() - 20, 30] {
            match decode(&bytes[..keep]) {
                Err(ImageError::Corrupt { .. }) => {}
                other => panic!("{file} cut to {keep} bytes: {other:?}"),
            }
        }
    }
}

#[test]
fn preprocess_survives_every_single_byte_corruption_of_small_png_jpeg_and_webp_files() {
    // Flipping bytes must give an image or an error, never a panic (a panic aborts the wasm).
    for file in [
        "decode/png_palette4_trns.png",
        "decode/jpeg_gray.jpg",
        "decode/webp_lossy.webp",
        // and their EXIF, XMP and text chunks
        "orientation/jpeg_6_big_endian.jpg",
        "orientation/png_raw_profile_5.png",
        "orientation/webp_xmp_8.webp",
    ] {
        let bytes = read(&format!("images/{file}"));
        let config = ProcessorConfig::default();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            // Whatever size a corrupt header claims, the resize and patch steps must cope too.
            if let Ok(out) = preprocess(&bad, &config) {
                let [t, h, w] = out.grid_thw;
                assert_eq!(out.pixel_values.len(), t * h * w * 1176, "{file} byte {i}");
            }
        }
    }
}

#[test]
fn preprocess_rgb_of_decoded_pixels_equals_preprocess_of_the_file() {
    let root = "tiny-qwen2vl/reference";
    let config = ProcessorConfig {
        max_pixels: 12845056,
        min_pixels: 3136,
        ..ProcessorConfig::default()
    };
    for file in ["case0_0.png", "case1_0.png"] {
        let bytes = read(&format!("{root}/{file}"));
        let whole = preprocess(&bytes, &config).unwrap();
        let split = preprocess_rgb(&decode(&bytes).unwrap(), &config).unwrap();
        assert_eq!(whole, split, "{file}");
    }
    // Sizes decode() would refuse are refused here too.
    let empty = RgbImage::new(0, 5, vec![]);
    assert!(matches!(
        preprocess_rgb(&empty, &config),
        Err(ImageError::ZeroSize { .. })
    ));
    let side = 1usize << 13;
    let huge = RgbImage {
        width: side + 1,
        height: side,
        data: vec![],
    };
    assert!(matches!(
        preprocess_rgb(&huge, &config),
        Err(ImageError::TooLarge { .. })
    ));
}
