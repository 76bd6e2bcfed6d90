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
  decode/<name>.rgb        what transformers' load_image and convert_to_rgb make of the file (load
                           and to_rgb below): (height, width, 3) u8
  decode_cases.json        [{file, expected, width, height, pil_mode}]
  orientation/<name>.<ext> 7x4 images with an EXIF orientation in each place PIL reads one
  orientation_cases.json   [{file, width, height, expected: hex of (height, width, 3) u8}]
  exif_cases.json          [{name, tiff: hex, tag: absent | present | raises, orientation}]: EXIF
                           blobs, well-formed and not, and what PIL's exif_transpose makes of them
  resize/<name>.rgb        resized noise image, (out_h, out_w, 3) u8
  resize_cases.json        [{backend, in_h, in_w, out_h, out_w, seed, expected}]
  smart_resize_cases.json  [{height, width, factor, min_pixels, max_pixels, expected | error}]
  bad/*                    headers that announce absurd sizes (decompression bombs) and
                           other malformed files, for the error tests
"""

import io
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import png  # pypng: writes the 16-bit, low-bit-depth and interlaced PNGs PIL cannot
import torch
import torchvision
import transformers
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo
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
    # EXIF orientation 6 (a quarter turn clockwise): transformers' load_image turns it upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    out.append(("jpeg_exif_rotated.jpg", pil_bytes(im, "JPEG", quality=90, exif=exif.tobytes())))
    # Rarer legal layouts (zune-jpeg, our earlier decoder, misread them): chroma sampled more
    # finely than luma, baseline and progressive; 4:2:0 in one scan a component. make_jpeg_refs.py
    # covers JPEG layouts far more widely.
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


def load(data: bytes) -> Image.Image:
    """transformers' load_image before its convert: `PIL.ImageOps.exif_transpose(Image.open(f))`."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data)))


def write_decode_cases() -> None:
    folder = OUT / "decode"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, data in decode_images():
        (folder / name).write_bytes(data)
        im = load(data)
        rgb = to_rgb(im)
        expected = name.rsplit(".", 1)[0] + ".rgb"
        (folder / expected).write_bytes(rgb.tobytes())
        cases.append({
            "file": f"decode/{name}", "expected": f"decode/{expected}",
            "width": im.width, "height": im.height, "pil_mode": Image.open(io.BytesIO(data)).mode,
        })
    (OUT / "decode_cases.json").write_text(json.dumps(cases, indent=1) + "\n")


def tiff(order: str, entries: list[tuple[int, int, int, bytes]], ifd: int = 8, tail: bytes = b"",
         count: int | None = None) -> bytes:
    """A TIFF stream (EXIF without its `Exif\\0\\0`): header, IFD0 at `ifd` with `entries`
    (tag, type, count, the 4 value bytes) or `count` claimed, then `tail` (out-of-line values
    start at 8 + 2 + 12 * len(entries) + 4 with ifd = 8)."""
    e = "<" if order == "II" else ">"
    head = order.encode() + struct.pack(e + "HL", 42, ifd) + b"\0" * (ifd - 8)
    body = struct.pack(e + "H", len(entries) if count is None else count)
    for tag, typ, n, value in entries:
        body += struct.pack(e + "HHL", tag, typ, n) + value
    return head + body + struct.pack(e + "L", 0) + tail


def orientation_tiff(value: int, order: str = "II") -> bytes:
    e = "<" if order == "II" else ">"
    return tiff(order, [(0x0112, 3, 1, struct.pack(e + "HH", value, 0))])


XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>'


def png_after_idat(png_bytes: bytes, kind: bytes, data: bytes) -> bytes:
    """`png_bytes` with a chunk put after its image data, just before IEND."""
    iend = png_bytes.rindex(b"IEND") - 4
    return png_bytes[:iend] + png_chunk(kind, data) + png_bytes[iend:]


def orientation_images() -> list[tuple[str, bytes]]:
    """(file name, encoded bytes): every orientation in every format, in each place PIL reads one,
    and EXIF PIL reads past, stops in or refuses."""
    im = Image.fromarray(picture(4, 7))  # not square: each transpose gives another picture
    exif = lambda t: b"Exif\0\0" + t  # noqa: E731
    jpeg = lambda **kw: pil_bytes(im, "JPEG", quality=95, **kw)  # noqa: E731 (4:2:0, as phones)
    out = []
    for o in range(1, 9):
        out.append((f"png_{o}.png", pil_bytes(im, "PNG", exif=exif(orientation_tiff(o)))))
        out.append((f"jpeg_{o}.jpg", jpeg(exif=exif(orientation_tiff(o)))))
        out.append((f"webp_{o}.webp", pil_bytes(im, "WEBP", lossless=True, exif=exif(orientation_tiff(o)))))
    # Big-endian EXIF (as Canon and Nikon write it); a PNG's eXIf after the image data.
    out.append(("jpeg_6_big_endian.jpg", jpeg(exif=exif(orientation_tiff(6, "MM")))))
    out.append(("png_8_after_idat_big_endian.png", png_after_idat(pil_bytes(im, "PNG"), b"eXIf", orientation_tiff(8, "MM"))))
    # The XMP counts only where the EXIF has no orientation tag.
    out.append(("jpeg_xmp_5.jpg", jpeg(xmp=(XMP % 5).encode())))
    no_tag = tiff("II", [(0x0131, 2, 4, b"qvq\0")])  # Software = "qvq"
    out.append(("jpeg_exif_without_orientation_xmp_7.jpg", jpeg(exif=exif(no_tag), xmp=(XMP % 7).encode())))
    out.append(("jpeg_3_xmp_6.jpg", jpeg(exif=exif(orientation_tiff(3)), xmp=(XMP % 6).encode())))
    itxt = PngInfo()
    itxt.add_itxt("XML:com.adobe.xmp", XMP % 7)
    out.append(("png_xmp_7.png", pil_bytes(im, "PNG", pnginfo=itxt)))
    out.append(("webp_xmp_8.webp", pil_bytes(im, "WEBP", lossless=True, xmp=(XMP % 8).encode())))
    # ImageMagick's "Raw profile type exif" (zTXt, hex lines) in a PNG without eXIf.
    hexed = exif(orientation_tiff(5)).hex()
    raw = PngInfo()
    raw.add_text("Raw profile type exif", f"\nexif\n{len(hexed) // 2:8}\n" + "\n".join(re.findall(".{1,72}", hexed)) + "\n", zip=True)
    out.append(("png_raw_profile_5.png", pil_bytes(im, "PNG", pnginfo=raw)))
    # A zlib stream cut short keeps what zlib inflates of it (PIL's _safe_zlib_decompress does not
    # ask for its end): cut in its Adler-32, or just after the orientation's digit; one whose
    # Adler-32 is wrong is refused (an empty zTXt).
    z = zlib.compress((XMP % 7).encode(), 9)
    digit = next(n for n in range(len(z)) if b'Orientation="7' in zlib.decompressobj().decompress(z[:n]))
    plain = pil_bytes(im, "PNG")
    out.append(("png_xmp_cut_in_adler32_7.png", png_after_idat(plain, b"zTXt", b"XML:com.adobe.xmp\0\0" + z[:-2])))
    out.append(("png_xmp_cut_after_digit_7.png", png_after_idat(plain, b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + z[:digit])))
    out.append(("png_xmp_bad_adler32_1.png", png_after_idat(plain, b"zTXt", b"XML:com.adobe.xmp\0\0" + z[:-1] + bytes([z[-1] ^ 1]))))
    # Where the last XML:com.adobe.xmp text is empty, PIL reads the last iTXt XMP's bytes (its
    # info["xmp"]); an iTXt XMP that is not UTF-8 is not kept as the XML:com.adobe.xmp text.
    out.append(("png_xmp_7_then_empty_xmp.png", png_after_idat(pil_bytes(im, "PNG", pnginfo=itxt), b"tEXt", b"XML:com.adobe.xmp\0")))
    latin1 = png_after_idat(plain, b"tEXt", b"XML:com.adobe.xmp\0" + (XMP % 3).encode())
    out.append(("png_xmp_3_then_latin1_itxt_xmp_6.png", png_after_idat(latin1, b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + (XMP % 6).encode() + b"\xe9")))
    # A WebP EXIF chunk whose VP8X flag is off: libwebp, so PIL, does not see it.
    webp = bytearray(pil_bytes(im, "WEBP", lossless=True, exif=exif(orientation_tiff(6))))
    assert webp[12:16] == b"VP8X" and webp[20] & 0x08
    webp[20] &= ~0x08
    out.append(("webp_6_unflagged.webp", bytes(webp)))
    # EXIF PIL reads past or stops in: an IFD that claims 5 entries and holds 1 (kept), an
    # orientation of 9 (left as it is), RATIONAL 12/2 (equal to 6), a header that is no TIFF's
    # (PIL, reading the DPI first, keeps an empty EXIF, and ignores the XMP).
    out.append(("jpeg_6_cut_ifd.jpg", jpeg(exif=exif(tiff("II", [(0x0112, 3, 1, b"\x06\0\0\0")], count=5)[:-4]))))
    out.append(("jpeg_9.jpg", jpeg(exif=exif(orientation_tiff(9)))))
    out.append(("jpeg_6_rational.jpg", jpeg(exif=exif(tiff("II", [(0x0112, 5, 1, struct.pack("<L", 26))], tail=struct.pack("<LL", 12, 2))))))
    out.append(("jpeg_bad_header_xmp_6.jpg", jpeg(exif=exif(b"XX*\0" + orientation_tiff(6)[4:]), xmp=(XMP % 6).encode())))
    return out


def exif_blobs() -> list[tuple[str, bytes]]:
    """(name, TIFF stream): the orientation entry of every type, count and placement, and the ways
    an IFD breaks."""
    le = lambda fmt, *v: struct.pack("<" + fmt, *v)  # noqa: E731
    ool = 8 + 2 + 12 + 4  # where the one entry's out-of-line value starts
    short = lambda v: (0x0112, 3, 1, le("HH", v, 0))  # noqa: E731
    return [
        ("short 6 little-endian", orientation_tiff(6)),
        ("short 6 big-endian", orientation_tiff(6, "MM")),
        ("short 6, header MM*\\0", b"MM*\0" + orientation_tiff(6, "MM")[4:]),
        ("short 6, header II\\0*", b"II\0*" + orientation_tiff(6)[4:]),
        ("byte 6", tiff("II", [(0x0112, 1, 1, b"\x06\0\0\0")])),
        ("sbyte 6", tiff("II", [(0x0112, 6, 1, b"\x06\0\0\0")])),
        ("ascii 6", tiff("II", [(0x0112, 2, 2, b"6\0\0\0")])),
        ("undefined 6", tiff("II", [(0x0112, 7, 1, b"\x06\0\0\0")])),
        ("long 6", tiff("II", [(0x0112, 4, 1, le("L", 6))])),
        ("long 6 big-endian", tiff("MM", [(0x0112, 4, 1, struct.pack(">L", 6))])),
        ("long 65542", tiff("II", [(0x0112, 4, 1, le("L", 65542))])),
        ("sshort 6", tiff("II", [(0x0112, 8, 1, le("hh", 6, 0))])),
        ("sshort -6", tiff("II", [(0x0112, 8, 1, le("hh", -6, 0))])),
        ("slong 8", tiff("II", [(0x0112, 9, 1, le("l", 8))])),
        ("ifd 6", tiff("II", [(0x0112, 13, 1, le("L", 6))])),
        ("long8 6", tiff("II", [(0x0112, 16, 1, le("L", ool))], tail=le("Q", 6))),
        ("rational 12/2", tiff("II", [(0x0112, 5, 1, le("L", ool))], tail=le("LL", 12, 2))),
        ("rational 12/2 big-endian", tiff("MM", [(0x0112, 5, 1, struct.pack(">L", ool))], tail=struct.pack(">LL", 12, 2))),
        ("rational 13/2", tiff("II", [(0x0112, 5, 1, le("L", ool))], tail=le("LL", 13, 2))),
        ("rational 6/0", tiff("II", [(0x0112, 5, 1, le("L", ool))], tail=le("LL", 6, 0))),
        ("srational -12/-2", tiff("II", [(0x0112, 10, 1, le("L", ool))], tail=le("ll", -12, -2))),
        ("float 6.0", tiff("II", [(0x0112, 11, 1, le("f", 6.0))])),
        ("float 6.5", tiff("II", [(0x0112, 11, 1, le("f", 6.5))])),
        ("double 3.0", tiff("II", [(0x0112, 12, 1, le("L", ool))], tail=le("d", 3.0))),
        ("unknown type 99", tiff("II", [(0x0112, 99, 1, le("HH", 6, 0))])),
        ("short, two values 6 3", tiff("II", [(0x0112, 3, 2, le("HH", 6, 3))])),
        ("short, three values out of line 8 3 3", tiff("II", [(0x0112, 3, 3, le("L", ool))], tail=le("HHH", 8, 3, 3))),
        ("short, no values", tiff("II", [(0x0112, 3, 0, le("HH", 6, 0))])),
        ("short values past the end", tiff("II", [(0x0112, 3, 3, le("L", 1000))])),
        ("short values cut by the end", tiff("II", [(0x0112, 3, 3, le("L", ool))], tail=le("H", 8))),
        ("twice: the first kept", tiff("II", [short(6), short(3)])),
        ("twice: the first of an unknown type", tiff("II", [(0x0112, 99, 1, le("HH", 6, 0)), short(3)])),
        ("twice: the first empty", tiff("II", [(0x0112, 3, 0, le("HH", 6, 0)), short(3)])),
        ("twice: the first past the end ends the IFD", tiff("II", [(0x0112, 3, 5, le("L", 999)), short(3)])),
        ("another tag past the end first", tiff("II", [(0x0100, 3, 5, le("L", 999)), short(6)])),
        ("other tags' values over the stream's length first", tiff("II", [(0x0100, 3, 40, le("L", 8)), (0x0112, 3, 3, le("L", 8))])),
        ("another tag twice, the second past the end", tiff("II", [(0x0100, 3, 1, le("HH", 1, 0)), (0x0100, 3, 5, le("L", 999)), short(6)])),
        ("IFD cut after the orientation", tiff("II", [short(6)], count=5)[:-4]),
        ("IFD cut before the orientation", tiff("II", [(0x0100, 3, 1, le("HH", 6, 0)), short(6)])[:8 + 2 + 12 + 6]),
        ("65535 entries claimed", tiff("II", [short(6)], count=65535)),
        ("orientation 0", tiff("II", [short(0)])),
        ("orientation 9", tiff("II", [short(9)])),
        ("IFD at an odd offset", tiff("II", [short(6)], ifd=9)),
        ("IFD past the end", b"II*\0" + le("L", 500) + b"\0" * 30),
        ("IFD at offset 4", b"II*\0" + le("L", 4)),
        ("IFD at offset 0", b"II*\0" + le("L", 0) + orientation_tiff(6)[8:]),
        ("header only", b"II*\0"),
        ("header of 7 bytes", b"II*\0\x08\0\0"),
        ("empty", b""),
        ("Exif\\0\\0 alone", b"Exif\0\0"),
        ("Exif\\0\\0 twice", b"Exif\0\0" * 2 + orientation_tiff(6)),
        ("Exif\\0\\0 thrice", b"Exif\0\0" * 3 + orientation_tiff(6)),
        ("BigTIFF header", b"II+\0\x08\0\0\0\0\0\0\0\0\0\0\0"),
        # PIL spots BigTIFF by byte 2 only: big-endian BigTIFF's header reads as a TIFF's.
        ("short 6, header MM\\0+", b"MM\0+" + orientation_tiff(6, "MM")[4:]),
        ("not TIFF", b"XX*\0" + orientation_tiff(6)[4:]),
    ]


def pil_exif(blob: bytes) -> dict:
    """What `Image.getexif()` makes of EXIF `blob` for exif_transpose: whether IFD0 keeps an
    orientation entry (else the XMP is looked at), and the orientation it applies."""
    exif = Image.Exif()
    try:
        exif.load(blob)
    except Exception:  # noqa: BLE001 — PIL raises SyntaxError, struct.error and more
        return {"tag": "raises", "orientation": 1}
    if 0x0112 not in exif:
        return {"tag": "absent", "orientation": 1}
    # exif_transpose's lookup: a dict keyed 2..8, so 6.0 and IFDRational(12, 2) find 6 too.
    return {"tag": "present", "orientation": {n: n for n in range(2, 9)}.get(exif[0x0112], 1)}


def write_orientation_cases() -> None:
    folder = OUT / "orientation"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, data in orientation_images():
        (folder / name).write_bytes(data)
        rgb = to_rgb(load(data))
        cases.append({"file": f"orientation/{name}", "width": rgb.shape[1], "height": rgb.shape[0],
                      "expected": rgb.tobytes().hex()})
    (OUT / "orientation_cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    blobs = [{"name": name, "tiff": blob.hex(), **pil_exif(blob)} for name, blob in exif_blobs()]
    (OUT / "exif_cases.json").write_text(json.dumps(blobs, indent=1) + "\n")


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
    write_orientation_cases()
    write_resize_cases()
    write_smart_resize_cases()
    write_bad_files()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
