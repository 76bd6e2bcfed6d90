#!/usr/bin/env python3
"""Regenerates tests/fixtures/images/: small encoded test images with the RGB pixels PIL decodes
from them, bicubic-resize references from torchvision and Pillow, and smart_resize cases from
transformers' Qwen2-VL image processor.

CI never runs this; it documents where the committed references came from. Run it from the
project root with the exact versions the model references were made with:

    python3 -m venv /tmp/pyenv
    /tmp/pyenv/bin/pip install torch torchvision transformers==5.17.0 pillow pypng numpy
    /tmp/pyenv/bin/python tests/tools/make_image_refs.py

Outputs (all under tests/fixtures/images/):
  decode/<name>.<ext>      the encoded image
  decode/<name>.rgb        what transformers' convert_to_rgb makes of `Image.open(f)` (to_rgb below):
                           (height, width, 3) u8
  decode_cases.json        [{file, expected, width, height, pil_mode}]
  resize/<name>.rgb        resized noise image, (out_h, out_w, 3) u8
  resize_cases.json        [{backend, in_h, in_w, out_h, out_w, seed, expected}]
  smart_resize_cases.json  [{height, width, factor, min_pixels, max_pixels, expected | error}]
  bad/*                    headers that announce absurd sizes (decompression bombs) and
                           other malformed files, for the error tests
"""

import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import png  # pypng: writes the 16-bit, low-bit-depth and interlaced PNGs PIL cannot
import torch
import torchvision
import transformers
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def noise(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width, 3) u8 hash noise; src/image_test.ts and the Rust tests compute the same."""
    y, x, c = np.meshgrid(
        np.arange(height, dtype=np.uint64),
        np.arange(width, dtype=np.uint64),
        np.arange(3, dtype=np.uint64),
        indexing="ij",
    )
    m = np.uint64(0xFFFFFFFF)
    v = ((x * np.uint64(73856093)) ^ (y * np.uint64(19349663)) ^ ((c + np.uint64(3 * seed)) * np.uint64(83492791))) & m
    v = ((v ^ (v >> np.uint64(13))) * np.uint64(0x5BD1E995)) & m
    v = v ^ (v >> np.uint64(15))
    return (v & np.uint64(255)).astype(np.uint8)


def picture(height: int, width: int) -> np.ndarray:
    """(height, width, 3) u8: gradients, a disc and a little noise, so lossy codecs behave as on photos."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
    disc = (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(height, width) * 0.3) ** 2
    img = np.stack([r, g, b], axis=-1)
    img[disc] = [250, 30, 60]
    img += noise(height, width, 7).astype(np.float64) / 16 - 8
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pypng_bytes(rows, **kw) -> bytes:
    buf = io.BytesIO()
    png.Writer(**kw).write(buf, rows)
    return buf.getvalue()


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def cjpeg_bytes(img: np.ndarray, *args: str) -> bytes:
    """libjpeg-turbo's cjpeg (Debian's libjpeg-turbo-progs) on `img`: the layouts PIL cannot write."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        Image.fromarray(img).save(f"{d}/in.ppm")
        scans = f"{d}/scans.txt"
        Path(scans).write_text("0;\n1;\n2;\n")  # one scan a component (non-interleaved)
        args = tuple(scans if a == "SCANS" else a for a in args)
        subprocess.run(["cjpeg", "-quality", "90", *args, "-outfile", f"{d}/out.jpg", f"{d}/in.ppm"], check=True)
        return Path(f"{d}/out.jpg").read_bytes()


def decode_images() -> list[tuple[str, bytes]]:
    """(file name, encoded bytes) for every decoder path we support."""
    h, w = 23, 37  # odd sizes: partial JPEG MCUs, partial PNG bytes at low bit depths
    rgb = picture(h, w)
    gray = (rgb.astype(np.uint32) @ np.array([299, 587, 114]) // 1000).astype(np.uint8)
    alpha = noise(h, w, 3)[:, :, 0]
    g16 = np.minimum(gray.astype(np.uint32) * 257 + noise(h, w, 4)[:, :, 0], 65535)  # spans 0..65535
    rgb16 = np.minimum(rgb.astype(np.uint32) * 257 + noise(h, w, 5), 65535)
    rows = lambda a: a.reshape(h, -1).tolist()  # noqa: E731
    out = []
    out.append(("png_rgb8_interlaced.png", pypng_bytes(rows(rgb), width=w, height=h, greyscale=False, interlace=True)))
    out.append(("png_rgba8.png", pil_bytes(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG")))
    out.append(("png_l8.png", pil_bytes(Image.fromarray(gray, "L"), "PNG")))
    out.append(("png_la8.png", pil_bytes(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG")))
    # 16-bit grayscale opens as PIL mode I;16, whose convert("RGB") saturates at 255 (not >> 8).
    out.append(("png_l16.png", pypng_bytes(rows(g16), width=w, height=h, greyscale=True, bitdepth=16)))
    la16 = np.dstack([g16, alpha.astype(np.uint32) * 257])
    out.append(("png_la16.png", pypng_bytes(rows(la16), width=w, height=h, greyscale=True, alpha=True, bitdepth=16)))
    out.append(("png_rgb16.png", pypng_bytes(rows(rgb16), width=w, height=h, greyscale=False, bitdepth=16)))
    rgba16 = np.dstack([rgb16, alpha.astype(np.uint32) * 257])
    out.append(("png_rgba16_interlaced.png", pypng_bytes(rows(rgba16), width=w, height=h, greyscale=False, alpha=True, bitdepth=16, interlace=True)))
    for bits in (1, 2, 4):
        levels = (gray.astype(np.uint32) * ((1 << bits) - 1) + 127) // 255
        out.append((f"png_gray{bits}.png", pypng_bytes(rows(levels), width=w, height=h, greyscale=True, bitdepth=bits)))
    palette = [(i * 16, 255 - i * 16, (i * 97) % 256, (i * 40) % 256) for i in range(16)]
    idx = (gray.astype(np.uint32) // 16).tolist()
    out.append(("png_palette4_trns.png", pypng_bytes(idx, width=w, height=h, palette=palette, bitdepth=4)))
    out.append(("png_palette8.png", pil_bytes(Image.fromarray(rgb).quantize(colors=200), "PNG")))
    out.append(("png_rgb8_trns.png", pypng_bytes(rows(rgb), width=w, height=h, greyscale=False, transparent=tuple(int(v) for v in rgb[0, 0]))))
    out.append(("png_l8_trns.png", pypng_bytes(rows(gray), width=w, height=h, greyscale=True, transparent=int(gray[0, 0]))))
    out.append(("png_l16_trns.png", pypng_bytes(rows(g16), width=w, height=h, greyscale=True, bitdepth=16, transparent=int(g16[0, 0]))))
    # tRNS keys PIL reads its own way (src: wasm/crates/image/src/decode/png.rs): a 4-bit key matches
    # no scaled gray but 0; a 16-bit key by its low byte, against the clipped gray or the high
    # bytes of RGB.
    levels4 = (gray.astype(np.uint32) * 15 + 127) // 255
    out.append(("png_gray4_trns.png", pypng_bytes(rows(levels4), width=w, height=h, greyscale=True, bitdepth=4, transparent=int(levels4[0, 0]) or 1)))
    out.append(("png_gray2_trns0.png", pypng_bytes(rows((levels4 // 5).astype(np.uint32)), width=w, height=h, greyscale=True, bitdepth=2, transparent=0)))
    y, x = np.mgrid[0:h, 0:w]
    small16 = ((x * 7 + y * 13) % 300).astype(np.uint32)  # some under 256
    out.append(("png_l16_trns_low.png", pypng_bytes(rows(small16), width=w, height=h, greyscale=True, bitdepth=16, transparent=356)))
    key16 = tuple(int(c >> 8) + 256 for c in rgb16[0, 0])
    out.append(("png_rgb16_trns_low.png", pypng_bytes(rows(rgb16), width=w, height=h, greyscale=False, bitdepth=16, transparent=key16)))

    im = Image.fromarray(rgb)
    out.append(("jpeg_420.jpg", pil_bytes(im, "JPEG", quality=90, subsampling="4:2:0")))
    out.append(("jpeg_422.jpg", pil_bytes(im, "JPEG", quality=90, subsampling="4:2:2")))
    out.append(("jpeg_444.jpg", pil_bytes(im, "JPEG", quality=95, subsampling="4:4:4")))
    out.append(("jpeg_progressive.jpg", pil_bytes(im, "JPEG", quality=90, progressive=True)))
    out.append(("jpeg_restart.jpg", pil_bytes(im, "JPEG", quality=90, restart_marker_blocks=1)))
    out.append(("jpeg_gray.jpg", pil_bytes(Image.fromarray(gray, "L"), "JPEG", quality=90)))
    out.append(("jpeg_cmyk.jpg", pil_bytes(im.convert("CMYK"), "JPEG", quality=95)))
    # EXIF orientation 6 (rotate 90°): transformers does not apply it, so neither do we.
    exif = Image.Exif()
    exif[0x0112] = 6
    out.append(("jpeg_exif_rotated.jpg", pil_bytes(im, "JPEG", quality=90, exif=exif.tobytes())))
    # Legal layouts zune-jpeg misdecodes (src: wasm/crates/image/src/decode/jpeg.rs): chroma sampled
    # more finely than luma, baseline and progressive; 4:2:0 in one scan a component.
    out.append(("jpeg_chroma_finer.jpg", cjpeg_bytes(rgb, "-sample", "1x1,2x2,2x2")))
    out.append(("jpeg_chroma_finer_progressive.jpg", cjpeg_bytes(rgb, "-sample", "1x2,2x1,1x1", "-progressive")))
    out.append(("jpeg_420_separate_scans.jpg", cjpeg_bytes(rgb, "-sample", "2x2", "-scans", "SCANS")))

    out.append(("webp_lossless.webp", pil_bytes(im, "WEBP", lossless=True)))
    out.append(("webp_lossless_alpha.webp", pil_bytes(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "WEBP", lossless=True, exact=True)))
    out.append(("webp_lossy.webp", pil_bytes(im, "WEBP", quality=90)))
    out.append(("webp_lossy_alpha.webp", pil_bytes(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "WEBP", quality=90)))
    return out


def to_rgb(im: Image.Image) -> np.ndarray:
    """transformers' convert_to_rgb (5.24; 5.17 dropped the alpha): transparent images composited
    onto white with Image.alpha_composite, the rest through convert("RGB")."""
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def write_decode_cases() -> None:
    folder = OUT / "decode"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, data in decode_images():
        (folder / name).write_bytes(data)
        im = Image.open(io.BytesIO(data))
        mode = im.mode
        rgb = to_rgb(im)
        expected = name.rsplit(".", 1)[0] + ".rgb"
        (folder / expected).write_bytes(rgb.tobytes())
        cases.append({
            "file": f"decode/{name}", "expected": f"decode/{expected}",
            "width": im.width, "height": im.height, "pil_mode": mode,
        })
    (OUT / "decode_cases.json").write_text(json.dumps(cases, indent=1) + "\n")


def torchvision_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """What Qwen2VLImageProcessor (transformers 5.17, torchvision backend) does to a uint8 image."""
    t = torch.stack([tvF.pil_to_tensor(Image.fromarray(img))])  # (1, 3, H, W) u8, as the processor batches
    r = tvF.resize(t, [out_h, out_w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    contiguous = tvF.resize(t.contiguous(), [out_h, out_w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(r, contiguous), "memory format changed the result"
    return r[0].permute(1, 2, 0).numpy()


def pillow_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """What the PIL backend (Qwen2VLImageProcessorPil) does: Image.resize(BICUBIC)."""
    return np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.BICUBIC))


def write_resize_cases() -> None:
    folder = OUT / "resize"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [
        # (in_h, in_w, out_h, out_w)
        (23, 37, 28, 56),     # small upscale
        (5, 7, 28, 56),       # 8x upscale: largest int16 weights, lowest torchvision precision
        (560, 40, 28, 28),    # 20x downscale vertically: many small taps
        (100, 77, 28, 84),    # mixed, non-integer ratios
        (31, 29, 31, 56),     # horizontal pass only
        (45, 28, 28, 28),     # vertical pass only
        (333, 250, 56, 28),   # heavy downscale both ways
    ]
    cases = []
    for backend, fn in (("torchvision", torchvision_resize), ("pillow", pillow_resize)):
        for i, (ih, iw, oh, ow) in enumerate(sizes):
            seed = 11 + i
            out = fn(noise(ih, iw, seed), oh, ow)
            assert out.shape == (oh, ow, 3)
            name = f"{backend}_{ih}x{iw}_to_{oh}x{ow}.rgb"
            (folder / name).write_bytes(np.ascontiguousarray(out).tobytes())
            cases.append({"backend": backend, "in_h": ih, "in_w": iw, "out_h": oh, "out_w": ow,
                          "seed": seed, "expected": f"resize/{name}"})
    (OUT / "resize_cases.json").write_text(json.dumps(cases, indent=1) + "\n")


def write_smart_resize_cases() -> None:
    qwen = (3136, 12845056)  # the fixture's min_pixels / max_pixels
    default = (56 * 56, 28 * 28 * 1280)  # the processor's defaults (size.shortest_edge/longest_edge)
    inputs = []
    for h, w in [(56, 56), (77, 123), (336, 448), (960, 1280), (1080, 1920), (3024, 4032),
                 (1, 1), (1, 200), (1, 201), (3, 600), (2, 401), (28, 5600), (10, 10), (27, 29),
                 (42, 42), (70, 70), (98, 126), (14, 14), (41, 43), (6000, 8000), (8192, 8192),
                 (4000, 30), (20000, 150), (17, 3000)]:
        for mn, mx in (qwen, default, (256 * 28 * 28, 1280 * 28 * 28), (0, 28 * 28)):
            inputs.append((h, w, 28, mn, mx))
    # Banker's rounding: x.5 multiples of the factor round to the even neighbour.
    for k in range(1, 12):
        inputs.append((14 * (2 * k + 1), 28 * 3, 28, *qwen))
    inputs.append((70, 98, 32, 1024, 16384 * 32 * 32))  # another factor (patch 16, merge 2)
    cases = []
    for h, w, f, mn, mx in inputs:
        case = {"height": h, "width": w, "factor": f, "min_pixels": mn, "max_pixels": mx}
        try:
            case["expected"] = list(smart_resize(h, w, factor=f, min_pixels=mn, max_pixels=mx))
        except ValueError as e:
            case["error"] = str(e)
        cases.append(case)
    (OUT / "smart_resize_cases.json").write_text(json.dumps(cases, indent=1) + "\n")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bad_files() -> None:
    folder = OUT / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    sig = b"\x89PNG\r\n\x1a\n"
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    iend = png_chunk(b"IEND", b"")
    ihdr = lambda w, h: png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))  # noqa: E731
    (folder / "png_bomb.png").write_bytes(sig + ihdr(100000, 100000) + idat + iend)
    (folder / "png_zero_width.png").write_bytes(sig + ihdr(0, 10) + idat + iend)
    # JPEG: a valid 8x8 file whose SOF0 is patched to announce 65000 x 65000.
    jpeg = bytearray(pil_bytes(Image.fromarray(picture(8, 8)), "JPEG", quality=90))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    (folder / "jpeg_bomb.jpg").write_bytes(bytes(jpeg))
    # WebP: a valid 8x8 lossless file whose VP8L header is patched to 16383 x 16383 (268 Mpx).
    webp = bytearray(pil_bytes(Image.fromarray(picture(8, 8)), "WEBP", lossless=True))
    assert webp[12:16] == b"VP8L" and webp[20] == 0x2F
    bits = struct.unpack("<I", webp[21:25])[0] & ~((1 << 28) - 1)  # keep alpha and version bits
    webp[21:25] = struct.pack("<I", bits | 16382 | (16382 << 14))
    (folder / "webp_bomb.webp").write_bytes(bytes(webp))
    (folder / "gif_1x1.gif").write_bytes(
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def main() -> None:
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"transformers {transformers.__version__}, pillow {Image.__version__}")
    assert transformers.__version__ == "5.17.0", "the model references were made with transformers 5.17.0"
    write_decode_cases()
    write_resize_cases()
    write_smart_resize_cases()
    write_bad_files()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
