#!/usr/bin/env python3
"""Regenerates tests/fixtures/images/jpeg/: a corpus of small JPEGs covering every layout our
decoder (wasm/crates/image/src/decode/jpeg/) reads, with the RGB pixels PIL decodes from each,
which it must match byte for byte; and files it must refuse.

CI never runs this; it documents where the committed references came from. Needs Pillow 13
(bundling libjpeg-turbo 3.x), numpy, Debian's libjpeg-turbo-progs (cjpeg writes the layouts PIL
cannot: other sampling factors, scan scripts, RGB, arithmetic coding) and gcc with libjpeg's
headers (a tiny libjpeg program writes YCCK). Run
from the project root, with make_image_refs.py's environment:

    /tmp/pyenv/bin/python tests/tools/make_jpeg_refs.py
    /tmp/pyenv/bin/python tests/tools/make_jpeg_refs.py --photos .scratch_jpeg/photos

The second form writes photo-sized JPEGs (1920x1080: 4:2:0 quality 85, progressive, 4:4:4) and
their PIL pixels to a folder for a local exact-match and speed check (too big to commit).

Outputs (under tests/fixtures/images/):
  jpeg/<name>.jpg   the encoded image
  jpeg/<name>.rgb   PIL's pixels (load and to_rgb from make_image_refs.py): (height, width, 3) u8
  jpeg_cases.json   [{file, expected, width, height}] and [{file, error}]: a file we refuse, and a
                    word the error message must contain
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_image_refs import load, picture, pil_bytes, to_rgb  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "images"

# A scan script with spectral selection and successive approximation in every combination
# libjpeg allows: DC first (interleaved) and refined, AC bands first at Al 2 then refined twice,
# bands split differently per component.
SA_SCANS = """
0,1,2: 0-0, 0, 1;
0: 1-5, 0, 2;
2: 1-63, 0, 1;
1: 1-63, 0, 1;
0: 6-63, 0, 2;
0: 1-63, 2, 1;
0,1,2: 0-0, 1, 0;
2: 1-63, 1, 0;
1: 1-63, 1, 0;
0: 1-63, 1, 0;
"""


def cjpeg(img: np.ndarray, *args: str, scans: str | None = None) -> bytes:
    """libjpeg-turbo's cjpeg on `img` ((h, w, 3) RGB, or (h, w) gray)."""
    with tempfile.TemporaryDirectory() as d:
        Image.fromarray(img).save(f"{d}/in.pnm")
        if scans is not None:
            Path(f"{d}/scans.txt").write_text(scans)
            args = (*args, "-scans", f"{d}/scans.txt")
        subprocess.run(["cjpeg", *args, "-outfile", f"{d}/out.jpg", f"{d}/in.pnm"], check=True)
        return Path(f"{d}/out.jpg").read_bytes()


# libjpeg writing YCCK (Adobe transform 2), which neither PIL nor cjpeg can: raw CMYK on stdin,
# "width height quality" as arguments, the JPEG on stdout. Built with gcc against Debian's
# libjpeg-turbo (libjpeg-turbo8-dev / libjpeg62-turbo-dev).
YCCK_WRITER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
  int w = atoi(argv[1]), h = atoi(argv[2]);
  unsigned char *px = malloc((size_t)w * h * 4);
  if (fread(px, 4, (size_t)w * h, stdin) != (size_t)w * h) return 1;
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, stdout);
  c.image_width = w; c.image_height = h; c.input_components = 4; c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, JCS_YCCK);
  c.comp_info[1].h_samp_factor = c.comp_info[1].v_samp_factor = 1;
  c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 2;
  jpeg_set_quality(&c, atoi(argv[3]), TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = px + (size_t)c.next_scanline * w * 4;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  return 0;
}
"""


def ycck(cmyk: np.ndarray, quality: int) -> bytes:
    """A YCCK JPEG (luma 2x2, the rest 1x1) of (h, w, 4) CMYK samples, as Photoshop writes them
    (Adobe-inverted: 255 is no ink)."""
    with tempfile.TemporaryDirectory() as d:
        Path(f"{d}/w.c").write_text(YCCK_WRITER)
        subprocess.run(["gcc", "-O1", "-o", f"{d}/w", f"{d}/w.c", "-ljpeg"], check=True)
        h, w = cmyk.shape[:2]
        return subprocess.run([f"{d}/w", str(w), str(h), str(quality)], input=cmyk.tobytes(),
                              capture_output=True, check=True).stdout


def without_dht(jpeg: bytes) -> bytes:
    """`jpeg` with its Huffman tables left out, as Motion-JPEG frames come (libjpeg then uses
    T.81 Annex K's, which are PIL's defaults)."""
    out, i = bytearray(jpeg[:2]), 2
    while True:
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker != 0xC4:
            out += jpeg[i:i + 2 + length]
        if marker == 0xDA:
            return bytes(out + jpeg[i + 2 + length:])
        i += 2 + length


def gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.uint32) @ np.array([299, 587, 114]) // 1000).astype(np.uint8)


def cases() -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of the files PIL decodes."""
    out = []
    sizes = [(1, 1), (17, 1), (1, 17), (9, 15), (23, 37)]  # (height, width)
    out.append(("pil_420_33x31.jpg", pil_bytes(Image.fromarray(picture(31, 33)), "JPEG", quality=90)))
    for h, w in sizes:
        im = Image.fromarray(picture(h, w))
        for s, name in [(0, "444"), (1, "422"), (2, "420")]:
            out.append((f"pil_{name}_{w}x{h}.jpg", pil_bytes(im, "JPEG", quality=90, subsampling=s)))
        out.append((f"pil_gray_{w}x{h}.jpg", pil_bytes(Image.fromarray(gray(picture(h, w))), "JPEG", quality=90)))
    rgb = picture(19, 35)
    small = picture(9, 15)
    # Every sampling layout libjpeg upsamples differently: h1v2 fancy, int_upsample ratios,
    # chroma finer than luma (luma upsampled instead), mixed factors per component.
    for sample in ["1x2", "2x2", "2x1", "4x1", "4x2", "1x4", "3x1", "3x2", "2x2,1x2,2x1",
                   "1x1,2x2,2x2", "1x1,1x2,1x2", "1x2,2x1,1x1", "2x2,2x2,1x1", "4x1,2x1,1x1"]:
        tag = sample.replace(",", "_")
        out.append((f"cjpeg_{tag}.jpg", cjpeg(rgb, "-quality", "90", "-sample", sample)))
        out.append((f"cjpeg_{tag}_15x9.jpg", cjpeg(small, "-quality", "90", "-sample", sample)))
    for h, w in [(1, 1), (17, 1), (1, 17), (2, 3), (3, 2)]:
        out.append((f"cjpeg_2x2_{w}x{h}.jpg", cjpeg(picture(h, w), "-sample", "2x2")))
        out.append((f"cjpeg_1x2_{w}x{h}.jpg", cjpeg(picture(h, w), "-sample", "1x2")))
    # Progressive: libjpeg's default script (successive approximation), PIL's, one with every
    # spectral / refinement combination, restart intervals inside progressive scans.
    out.append(("cjpeg_progressive.jpg", cjpeg(rgb, "-progressive")))
    out.append(("cjpeg_progressive_444.jpg", cjpeg(rgb, "-progressive", "-sample", "1x1")))
    out.append(("cjpeg_progressive_sa.jpg", cjpeg(rgb, "-sample", "2x1", scans=SA_SCANS)))
    out.append(("cjpeg_progressive_restart.jpg", cjpeg(rgb, "-progressive", "-restart", "1B")))
    out.append(("cjpeg_progressive_gray.jpg", cjpeg(gray(rgb), "-progressive")))
    out.append(("pil_progressive_420.jpg", pil_bytes(Image.fromarray(rgb), "JPEG", quality=80, progressive=True)))
    # Non-interleaved sequential scans, subsampled and not.
    out.append(("cjpeg_separate_scans_422.jpg", cjpeg(rgb, "-sample", "2x1", scans="0;\n2;\n1;\n")))
    out.append(("cjpeg_two_scans_444.jpg", cjpeg(rgb, "-sample", "1x1", scans="0,2;\n1;\n")))
    # Restart intervals: every MCU, every row; an extended-sequential (SOF1) 16-bit-table file.
    out.append(("cjpeg_restart_1.jpg", cjpeg(rgb, "-restart", "1B")))
    out.append(("cjpeg_restart_row.jpg", cjpeg(rgb, "-restart", "1")))
    out.append(("pil_restart_blocks_3.jpg", pil_bytes(Image.fromarray(rgb), "JPEG", restart_marker_blocks=3)))
    # Quality extremes: quantization of 1, and of up to 255 (PIL) or 32767 (16-bit tables).
    for q in [1, 100]:
        out.append((f"pil_q{q}.jpg", pil_bytes(Image.fromarray(rgb), "JPEG", quality=q)))
        out.append((f"cjpeg_q{q}.jpg", cjpeg(rgb, "-quality", str(q))))
    out.append(("cjpeg_q1_progressive.jpg", cjpeg(rgb, "-quality", "1", "-progressive")))
    # Saturated and high-contrast content: the IDCT's range limit, YCbCr extremes.
    y, x = np.mgrid[0:19, 0:35]
    checker = np.where((x // 2 + y // 3) % 2 == 0, 255, 0).astype(np.uint8)
    extreme = np.stack([checker, 255 - checker, (x * 8 % 256).astype(np.uint8)], axis=-1)
    out.append(("pil_extreme_q100.jpg", pil_bytes(Image.fromarray(extreme), "JPEG", quality=100, subsampling=0)))
    out.append(("pil_extreme_q40_420.jpg", pil_bytes(Image.fromarray(extreme), "JPEG", quality=40)))
    # Colour spaces: gray, RGB (Adobe transform 0), CMYK (PIL writes Adobe-inverted), YCCK.
    out.append(("cjpeg_grayscale.jpg", cjpeg(rgb, "-grayscale")))
    out.append(("cjpeg_rgb.jpg", cjpeg(rgb, "-rgb")))
    out.append(("pil_cmyk.jpg", pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)))
    out.append(("pil_cmyk_15x9.jpg", pil_bytes(Image.fromarray(small).convert("CMYK"), "JPEG", quality=75)))
    cmyk = 255 - np.asarray(Image.fromarray(rgb).convert("CMYK"))  # PIL's CMYK, Adobe-inverted
    cmyk[..., 3] = np.clip(cmyk[..., 3].astype(int) - (np.arange(35) * 3)[None, :], 0, 255)
    out.append(("libjpeg_ycck.jpg", ycck(cmyk, 90)))
    # Motion-JPEG style: no DHT, the standard tables implied.
    out.append(("pil_no_dht.jpg", without_dht(pil_bytes(Image.fromarray(small), "JPEG", quality=90))))
    # EXIF orientation 6: turned upright after decoding.
    exif = Image.Exif()
    exif[0x0112] = 6
    out.append(("pil_exif_6.jpg", pil_bytes(Image.fromarray(small), "JPEG", exif=exif.tobytes())))
    return out


def refused() -> list[tuple[str, bytes, str]]:
    """(name, bytes, a word of the error) of files we refuse."""
    small = picture(9, 15)
    base = cjpeg(small)
    sos = base.index(b"\xff\xda")
    sof = base.index(b"\xff\xc0")
    return [
        ("refuse_arithmetic.jpg", cjpeg(small, "-arithmetic"), "arithmetic"),
        # Debian's cjpeg 2.1 writes neither: the SOF's precision byte / marker patched (refused
        # from the header, before any data).
        ("refuse_12bit.jpg", base[: sof + 4] + b"\x0c" + base[sof + 5:], "12-bit"),
        ("refuse_lossless.jpg", base[: sof + 1] + b"\xc3" + base[sof + 2:], "lossless"),
        ("refuse_truncated.jpg", base[: sos + (len(base) - sos) // 2], "truncated"),
        # Progressive scans that leave luma's AC at half precision: libjpeg block-smooths it.
        ("refuse_unfinished_progressive.jpg",
         cjpeg(small, scans="0,1,2: 0-0, 0, 0;\n0: 1-63, 0, 1;\n1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n"),
         "block-smooths"),
        # Every scan complete, only the EOI missing: PIL says "image file is truncated" too.
        ("refuse_no_eoi.jpg", base[:-2], "end-of-image"),
    ]


def write() -> None:
    folder = OUT / "jpeg"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    table = []
    for name, data in cases():
        (folder / name).write_bytes(data)
        im = load(data)
        expected = name.rsplit(".", 1)[0] + ".rgb"
        (folder / expected).write_bytes(to_rgb(im).tobytes())
        table.append({"file": f"jpeg/{name}", "expected": f"jpeg/{expected}", "width": im.width, "height": im.height})
    for name, data, error in refused():
        (folder / name).write_bytes(data)
        table.append({"file": f"jpeg/{name}", "error": error})
    (OUT / "jpeg_cases.json").write_text(json.dumps(table, indent=1) + "\n")
    total = sum(p.stat().st_size for p in folder.iterdir())
    print(f"{len(table)} cases, {total} bytes; libjpeg-turbo {features.version('libjpeg_turbo')}")


def photos(folder: Path) -> None:
    """Photo-sized JPEGs: smooth gradients, shapes and sensor-like noise, 1920x1080."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = 1080, 1920
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / w, 255 * y / h, 128 + 90 * np.sin(x / 40) * np.cos(y / 55)], axis=-1)
    img[(x - 1200) ** 2 + (y - 500) ** 2 < 300**2] = [230, 40, 50]
    img += rng.normal(0, 6, img.shape)
    im = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    for name, kw in [("photo_420_q85", dict(quality=85)), ("photo_progressive", dict(quality=85, progressive=True)),
                     ("photo_444_q95", dict(quality=95, subsampling=0))]:
        data = pil_bytes(im, "JPEG", **kw)
        (folder / f"{name}.jpg").write_bytes(data)
        (folder / f"{name}.rgb").write_bytes(to_rgb(load(data)).tobytes())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--photos":
        photos(Path(sys.argv[2]))
    else:
        write()
