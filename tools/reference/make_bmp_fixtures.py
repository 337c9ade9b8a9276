#!/usr/bin/env python3
"""Reference data for the project's own BMP decoder (sharp cannot read BMP).

Usage (from the repository root): python3 tools/reference/make_bmp_fixtures.py

Writes test/fixtures/bmp/: BMP files saved by Pillow (24-bit, 8-bit grey and palette, 1-bit,
32-bit from RGBA) and some written here by hand (top-down rows, 16-bit 5-5-5 and 5-6-5,
32-bit BI_RGB, 4-bit palette, an RLE8 file the decoder must refuse), each with what transformers
sees after loading it: `convert_to_rgb` (alpha composited on white) as raw uint8 RGB (`.u8`),
and manifest.json. Deterministic (fixed seeds). Made with Pillow 13.0.0, transformers 5.23.0.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "bmp"


def bmp_bytes(width: int, height: int, bpp: int, rows: list[bytes], *, compression: int = 0, palette: bytes = b"",
              masks: tuple[int, int, int] | None = None, top_down: bool = False) -> bytes:
    """A BITMAPINFOHEADER file; `rows` are top row first, each already padded to 4 bytes."""
    pixel_rows = rows if top_down else rows[::-1]
    pixels = b"".join(pixel_rows)
    extra = struct.pack("<III", *masks) if masks else b""
    header_size = 40
    offset = 14 + header_size + len(extra) + len(palette)
    info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, 1, bpp, compression,
                       len(pixels), 2835, 2835, len(palette) // 4, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + extra + palette + pixels


def pad(row: bytes) -> bytes:
    return row + b"\0" * (-len(row) % 4)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(11)
    cases = []

    def save_ref(name: str, note: str) -> None:
        with Image.open(OUT / name) as im:
            im.load()
            mode = im.mode
            rgb = np.asarray(convert_to_rgb(im), dtype=np.uint8)
        (OUT / f"{name}.u8").write_bytes(rgb.tobytes())
        cases.append({"image": name, "mode": mode, "width": rgb.shape[1], "height": rgb.shape[0], "rgb": f"{name}.u8", "note": note})

    # saved by Pillow
    rgb = rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(OUT / "rgb24-13x7.bmp")
    save_ref("rgb24-13x7.bmp", "24-bit, bottom-up, row padding")
    grey = rng.integers(0, 256, (9, 10), dtype=np.uint8)
    Image.fromarray(grey, "L").save(OUT / "grey8-10x9.bmp")
    save_ref("grey8-10x9.bmp", "8-bit with a grey palette")
    pal = Image.fromarray(rng.integers(0, 256, (6, 11, 3), dtype=np.uint8), "RGB").quantize(colors=40, dither=Image.Dither.NONE)
    pal.save(OUT / "palette8-11x6.bmp")
    save_ref("palette8-11x6.bmp", "8-bit palette")
    Image.fromarray(rng.integers(0, 2, (5, 19), dtype=np.uint8) * 255, "L").convert("1").save(OUT / "mono1-19x5.bmp")
    save_ref("mono1-19x5.bmp", "1-bit")
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(OUT / "rgba32-7x6.bmp")
    save_ref("rgba32-7x6.bmp", "32-bit as Pillow saves RGBA (read back as RGB: the fourth byte is not alpha)")

    # written by hand
    w, h = 5, 4
    px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rows = [pad(bytes(px[y, :, ::-1].tobytes())) for y in range(h)]
    (OUT / "rgb24-topdown-5x4.bmp").write_bytes(bmp_bytes(w, h, 24, rows, top_down=True))
    save_ref("rgb24-topdown-5x4.bmp", "24-bit, top-down (negative height)")
    rows = [pad(b"".join(bytes([px[y, x, 2], px[y, x, 1], px[y, x, 0], 0x55]) for x in range(w))) for y in range(h)]
    (OUT / "bgrx32-5x4.bmp").write_bytes(bmp_bytes(w, h, 32, rows))
    save_ref("bgrx32-5x4.bmp", "32-bit BI_RGB (the fourth byte is not alpha)")
    v = rng.integers(0, 1 << 15, (h, w), dtype=np.uint16)
    rows = [pad(b"".join(struct.pack("<H", int(v[y, x])) for x in range(w))) for y in range(h)]
    (OUT / "rgb555-5x4.bmp").write_bytes(bmp_bytes(w, h, 16, rows))
    save_ref("rgb555-5x4.bmp", "16-bit 5-5-5 (BI_RGB)")
    v = rng.integers(0, 1 << 16, (h, w), dtype=np.uint32)
    rows = [pad(b"".join(struct.pack("<H", int(v[y, x])) for x in range(w))) for y in range(h)]
    (OUT / "rgb565-5x4.bmp").write_bytes(bmp_bytes(w, h, 16, rows, compression=3, masks=(0xF800, 0x07E0, 0x001F)))
    save_ref("rgb565-5x4.bmp", "16-bit 5-6-5 (BI_BITFIELDS)")
    palette = b"".join(bytes([int(c) for c in rng.integers(0, 256, 3)] + [0]) for _ in range(16))
    idx = rng.integers(0, 16, (h, 7), dtype=np.uint8)
    rows = [pad(bytes((int(idx[y, x]) << 4) | (int(idx[y, x + 1]) if x + 1 < 7 else 0) for x in range(0, 7, 2))) for y in range(h)]
    (OUT / "palette4-7x4.bmp").write_bytes(bmp_bytes(7, h, 4, rows, palette=palette))
    save_ref("palette4-7x4.bmp", "4-bit palette, odd width")
    # RLE8: Pillow reads it; the project's decoder refuses it with a one-line error
    rle = bytes([2, 1, 2, 2, 0, 0, 2, 3, 2, 4, 0, 1])  # two rows of 2 pixels, then end of bitmap
    palette8 = b"".join(bytes([i * 50, 255 - i * 50, i * 20, 0]) for i in range(5))
    (OUT / "rle8-2x2.bmp").write_bytes(bmp_bytes(2, 2, 8, [rle], compression=1, palette=palette8))
    cases.append({"image": "rle8-2x2.bmp", "refused": True, "note": "RLE8 compression"})

    manifest = {"pillow": PIL.__version__, "transformers": transformers.__version__, "cases": cases}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
