#!/usr/bin/env python3
"""Build the reference data for the image pipeline tests (decode, resample, CLIP preprocessing).

Usage (from the repository root; no network, no hub access):

    python3 tools/reference/make_image_fixtures.py

The output folder test/fixtures/images/ is deleted and recreated on every run. Everything is
made from fixed seeds, so two runs give byte-identical files. The TypeScript tests only read
what this script writes; they never run Python. Made with Python 3.11, Pillow 13.0.0,
numpy 2.4, transformers 5.23.0 (the manifest records the versions). Pillow 13 changed the order
of the two resampling passes for some sizes (see check_pass_order); the script stops if the
installed Pillow does not behave like 13.

What it writes (all raw arrays are C order, no header):

* source images: noisy RGB PNGs (97x61 landscape, 40x90 portrait), an RGBA PNG with varying
  alpha, a 256x256 RGBA ramp that holds every (value, alpha) pair, grayscale, grayscale+alpha,
  grayscale with a tRNS colour, palette and palette-with-tRNS PNGs, JPEGs carrying every EXIF
  orientation 2..8, and a smooth 120x80 picture; plus raw uint8 copies of the resize inputs
  (`*.u8`, interleaved channels) including a 300x200 noisy image that only exists raw;
* resize/: `PIL.Image.resize((w, h), resample, reducing_gap=None)` outputs (uint8) for every
  filter on downscales, upscales, one-axis changes and odd sizes;
* decode/: what transformers sees after loading: `ImageOps.exif_transpose` (as `load_image`
  does) and then transformers' own `convert_to_rgb` (alpha composited on white with
  `Image.alpha_composite`, everything else through `Image.convert("RGB")`), as uint8 RGB;
  `alpha-table.u8` is the composite of value x (column) at alpha y (row) over white;
* clip/: `pixel_values` from transformers' `CLIPImageProcessorPil` (the PIL path) for several
  preprocessor configs, float32 (`.f32`; gzipped `.f32.gz` when large);
* manifest.json: every case with its sizes, filter, config and file names.

Note: transformers' `load_image` ends with `convert("RGB")`, which drops alpha without
compositing. The processor's own `convert_to_rgb` composites on white, and that is the
behaviour the project reproduces, so the images here are loaded like `load_image` minus its
final conversion (`Image.open` + `ImageOps.exif_transpose`) and then handed to the processor.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import transformers  # noqa: E402
from PIL import Image, ImageDraw, ImageOps  # noqa: E402
from transformers import CLIPImageProcessorPil  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT = REPO_ROOT / "test" / "fixtures" / "images"

# Pillow's integer codes for the filters (PIL.Image.Resampling).
FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
# clip outputs above this many bytes are stored gzipped
GZIP_ABOVE = 100_000

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def noisy_rgb(w: int, h: int, seed: int) -> np.ndarray:
    """Uniform noise with saturated blocks (0 and 255) and a gradient band, so that the
    filters' negative lobes hit both clipping limits."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    bw, bh = max(2, w // 6), max(2, h // 6)
    arr[bh : 2 * bh, bw : 2 * bw] = 0
    arr[bh : 2 * bh, 2 * bw : 3 * bw] = 255
    arr[3 * bh : 4 * bh, 3 * bw : 5 * bw, 0] = 255
    arr[3 * bh : 4 * bh, 3 * bw : 5 * bw, 1:] = 0
    ramp = np.linspace(0, 255, w).astype(np.uint8)
    arr[h - bh :, :, :] = ramp[None, :, None]
    return arr


def smooth_picture(w: int, h: int, seed: int) -> Image.Image:
    """Gradients, shapes and mild noise: photo-like and compressible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 170 * xx / (w - 1)
    g = 60 + 120 * yy / (h - 1)
    b = 128 + 90 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    arr = np.stack([r, g, b], axis=-1) + rng.normal(0, 2, size=(h, w, 3))
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="RGB")
    d = ImageDraw.Draw(img)
    d.ellipse([w // 5, h // 5, w // 5 + h // 2, h // 5 + h // 2], fill=(230, 40, 40))
    d.rectangle([w // 2, h // 3, w // 2 + w // 4, h // 3 + h // 3], fill=(40, 80, 230))
    d.line([(0, h - 5), (w - 1, 3)], fill=(250, 250, 250), width=2)
    return img


class Writer:
    """Writes files under OUT and returns their paths relative to it (as the manifest lists them)."""

    def __init__(self) -> None:
        self.files: list[str] = []

    def bytes(self, rel: str, data: bytes) -> str:
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files.append(rel)
        return rel

    def image(self, rel: str, img: Image.Image, **save_kwargs) -> str:
        path = OUT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **save_kwargs)
        self.files.append(rel)
        return rel


def check_pass_order(img: Image.Image) -> None:
    """src/sidecar/image/resample.ts follows Pillow 13, which resamples vertically first when the
    height loses more than twice as many pixels as the width (older Pillow: always horizontally
    first). Stop if this Pillow behaves otherwise, rather than write fixtures the code cannot match."""
    w, h = img.size
    direct = img.resize((w - 5, h - 11), Image.Resampling.BILINEAR, reducing_gap=None).tobytes()
    vertical_first = img.resize((w, h - 11), Image.Resampling.BILINEAR).resize((w - 5, h - 11), Image.Resampling.BILINEAR)
    horizontal_first = img.resize((w - 5, h), Image.Resampling.BILINEAR).resize((w - 5, h - 11), Image.Resampling.BILINEAR)
    assert direct == vertical_first.tobytes() != horizontal_first.tobytes(), (
        f"Pillow {PIL.__version__} does not resample vertically first here; resample.ts follows Pillow 13"
    )


def load_like_transformers(path: Path) -> Image.Image:
    """transformers.image_utils.load_image without its final convert("RGB") (see module docstring)."""
    img = Image.open(path)
    return ImageOps.exif_transpose(img)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    w = Writer()
    manifest: dict = {
        "generator": "tools/reference/make_image_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "transformers": transformers.__version__,
        },
        "sources": {},
        "resize": [],
        "decode": [],
        "alphaTable": None,
        "clip": [],
    }

    # ------------------------------------------------------------------ sources
    resize_sources: dict[str, Image.Image] = {}

    def add_raw_source(name: str, img: Image.Image) -> None:
        arr = np.asarray(img)
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        rel = w.bytes(f"{name}.u8", arr.tobytes())
        manifest["sources"][name] = {
            "file": rel, "width": img.width, "height": img.height, "channels": channels, "mode": img.mode,
        }
        resize_sources[name] = img

    landscape = Image.fromarray(noisy_rgb(97, 61, 1), mode="RGB")
    portrait = Image.fromarray(noisy_rgb(40, 90, 2), mode="RGB")
    big = Image.fromarray(noisy_rgb(300, 200, 3), mode="RGB")
    rng = np.random.default_rng(4)
    gray = Image.fromarray(rng.integers(0, 256, size=(30, 50), dtype=np.uint8), mode="L")
    # 4 channels resampled channel by channel: Pillow does this for "RGBa" (premultiplied) and
    # "RGBX"; it premultiplies "RGBA" first, which the project never needs.
    rgba_pm = Image.frombytes("RGBa", (23, 17), rng.integers(0, 256, size=(17, 23, 4), dtype=np.uint8).tobytes())

    w.image("noise-97x61.png", landscape, format="PNG", compress_level=9)
    w.image("noise-40x90.png", portrait, format="PNG", compress_level=9)
    w.image("gray-50x30.png", gray, format="PNG", compress_level=9)
    add_raw_source("noise-97x61", landscape)
    add_raw_source("noise-40x90", portrait)
    add_raw_source("noise-300x200", big)
    add_raw_source("gray-50x30", gray)
    add_raw_source("rgba-premultiplied-23x17", rgba_pm)
    check_pass_order(gray)

    # ------------------------------------------------------------------ resize
    all_filters = list(FILTERS)
    targets: list[tuple[str, list[tuple[int, int]], list[str]]] = [
        # downscales (even and odd ratios), upscale, one axis only, mixed (x up, y down: Pillow 13
        # resizes vertically first), tiny, identity
        ("noise-97x61", [(48, 30), (33, 17), (104, 66), (97, 20), (50, 61), (97, 68), (100, 40), (1, 1), (5, 3), (97, 61)],
         all_filters),
        ("noise-40x90", [(23, 51), (40, 99), (17, 90), (60, 27)], all_filters),
        ("noise-300x200", [(97, 61)], all_filters),
        ("gray-50x30", [(31, 19), (77, 41)], all_filters),
        # Pillow 13 runs the vertical pass first when the height loses more than twice as many
        # pixels as the width: 30 - 19 = 11 > 2 * (50 - 45) goes vertical first, 30 - 20 = 10 does not.
        ("gray-50x30", [(45, 19), (45, 20)], all_filters),
        ("rgba-premultiplied-23x17", [(11, 29)], all_filters),
    ]
    for src_name, sizes, filters in targets:
        src = resize_sources[src_name]
        for tw, th in sizes:
            for f in filters:
                out = src.resize((tw, th), resample=FILTERS[f], reducing_gap=None)
                assert out.mode == src.mode and out.size == (tw, th)
                if (tw, th) == src.size:
                    # Pillow returns a copy when the size does not change
                    assert out.tobytes() == src.tobytes()
                    rel = manifest["sources"][src_name]["file"]
                else:
                    rel = w.bytes(f"resize/{src_name}.{f}.{tw}x{th}.u8", out.tobytes())
                manifest["resize"].append({
                    "source": src_name, "filter": f, "pil": FILTERS[f], "width": tw, "height": th, "file": rel,
                })

    # ------------------------------------------------------------------ decode
    def add_decode(name: str, img: Image.Image, note: str, **save_kwargs) -> None:
        rel_img = w.image(name, img, **save_kwargs)
        loaded = load_like_transformers(OUT / rel_img)
        mode = loaded.mode
        rgb = convert_to_rgb(loaded, return_numpy=True)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        rel = w.bytes(f"decode/{name}.rgb.u8", np.ascontiguousarray(rgb).tobytes())
        manifest["decode"].append({
            "image": rel_img, "mode": mode, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "expected": rel, "note": note,
        })

    for name, note in [("noise-97x61.png", "RGB PNG"), ("noise-40x90.png", "RGB PNG"), ("gray-50x30.png", "L PNG")]:
        loaded = load_like_transformers(OUT / name)
        rgb = convert_to_rgb(loaded, return_numpy=True)
        if loaded.mode == "RGB":
            # the raw copy of the source is the expected decode
            rel = manifest["sources"][name.removesuffix(".png")]["file"]
            assert (OUT / rel).read_bytes() == rgb.tobytes()
        else:
            rel = w.bytes(f"decode/{name}.rgb.u8", np.ascontiguousarray(rgb).tobytes())
        manifest["decode"].append({
            "image": name, "mode": loaded.mode, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "expected": rel, "note": note,
        })

    rng = np.random.default_rng(5)
    rgba = np.concatenate([noisy_rgb(64, 48, 6), rng.integers(0, 256, size=(48, 64, 1), dtype=np.uint8)], axis=2)
    rgba[:4, :, 3] = 0  # fully transparent rows keep colour underneath: must still become white
    rgba[4:8, :, 3] = 255
    add_decode("rgba-64x48.png", Image.fromarray(rgba, mode="RGBA"), "RGBA PNG, alpha composited on white",
               format="PNG", compress_level=9)

    la = np.stack([rng.integers(0, 256, size=(20, 30), dtype=np.uint8),
                   rng.integers(0, 256, size=(20, 30), dtype=np.uint8)], axis=2)
    add_decode("la-30x20.png", Image.fromarray(la, mode="LA"), "LA PNG, alpha composited on white",
               format="PNG", compress_level=9)

    gray_t = Image.fromarray(rng.integers(0, 8, size=(21, 34), dtype=np.uint8) * 36, mode="L")
    add_decode("gray-trns-34x21.png", gray_t, "L PNG with a tRNS grey level (transparency=72)",
               format="PNG", transparency=72, compress_level=9)

    pal_colours = rng.integers(0, 256, size=(16, 3), dtype=np.uint8)
    idx = rng.integers(0, 16, size=(33, 45), dtype=np.uint8)
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette(pal_colours.flatten().tolist())
    add_decode("palette-45x33.png", pal, "P PNG (16 colours)", format="PNG", compress_level=9)

    pal_t = Image.fromarray(idx, mode="P")
    pal_t.putpalette(pal_colours.flatten().tolist())
    trns = bytes([0, 255, 128, 1, 254, 60, 200, 30] + [255] * 8)
    add_decode("palette-trns-45x33.png", pal_t, "P PNG with a tRNS alpha per palette entry",
               format="PNG", transparency=trns, compress_level=9)

    alpha_ramp = np.zeros((256, 256, 4), dtype=np.uint8)
    xs = np.arange(256, dtype=np.uint8)
    alpha_ramp[:, :, 0] = xs[None, :]
    alpha_ramp[:, :, 1] = 255 - xs[None, :]
    alpha_ramp[:, :, 2] = ((xs.astype(np.int32) * 7) & 255).astype(np.uint8)[None, :]
    alpha_ramp[:, :, 3] = xs[:, None]
    ramp_rel = w.image("alpha-ramp-256.png", Image.fromarray(alpha_ramp, mode="RGBA"), format="PNG", compress_level=9)
    ramp_rgb = convert_to_rgb(load_like_transformers(OUT / ramp_rel), return_numpy=True)
    table = np.ascontiguousarray(ramp_rgb[:, :, 0])  # composite(value=x, alpha=y)
    assert np.array_equal(ramp_rgb[:, :, 1], table[:, ::-1])
    assert np.array_equal(ramp_rgb[:, :, 2], table[:, (np.arange(256) * 7) & 255])
    manifest["alphaTable"] = {
        "image": ramp_rel, "file": w.bytes("decode/alpha-table.u8", table.tobytes()),
        "note": "row = alpha, column = value; the ramp image has R = x, G = 255 - x, B = 7x mod 256, A = y",
    }

    photo = smooth_picture(32, 24, 7)
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        add_decode(f"exif-orientation-{orientation}.jpg", photo,
                   f"JPEG 4:2:0 q90 with EXIF orientation {orientation}",
                   format="JPEG", quality=90, exif=exif.tobytes())
    add_decode("photo-444.jpg", smooth_picture(40, 30, 8), "JPEG 4:4:4 q95 without EXIF",
               format="JPEG", quality=95, subsampling=0)

    small = smooth_picture(40, 30, 10)
    add_decode("photo-lossy.webp", small, "lossy WebP q80", format="WEBP", quality=80)
    add_decode("photo-lossless.webp", small, "lossless WebP", format="WEBP", lossless=True)
    gif = Image.fromarray(rng.integers(0, 16, size=(19, 23), dtype=np.uint8), mode="P")
    gif.putpalette(rng.integers(0, 256, size=48, dtype=np.uint8).tolist())
    add_decode("palette-trns-23x19.gif", gif, "GIF with a transparent palette index", format="GIF", transparency=5)
    # Pillow opens 16-bit greyscale as mode I;16, and convert("RGB") clips values above 255
    # instead of scaling them: most of this image becomes white. transformers sees exactly that.
    grey16 = np.concatenate([np.arange(0, 300, dtype=np.uint16), rng.integers(0, 65536, size=60, dtype=np.uint16)])
    add_decode("gray16-30x12.png", Image.fromarray(grey16.reshape(12, 30)), "16-bit greyscale PNG (Pillow mode I;16: clipped at 255)",
               format="PNG")
    # not decoded by the project (refused: Pillow's CMYK conversion is not reproduced)
    cmyk = Image.fromarray(rng.integers(0, 256, size=(10, 12, 4), dtype=np.uint8), mode="CMYK")
    w.image("cmyk-12x10.jpg", cmyk, format="JPEG", quality=90)

    w.image("photo-120x80.png", smooth_picture(120, 80, 9), format="PNG", compress_level=9)

    # ------------------------------------------------------------------ CLIP preprocessing
    llava = {
        "image_processor_type": "CLIPImageProcessor", "do_convert_rgb": True, "do_resize": True,
        "size": {"shortest_edge": 336}, "resample": 3, "do_center_crop": True,
        "crop_size": {"height": 336, "width": 336}, "do_rescale": True, "rescale_factor": 0.00392156862745098,
        "do_normalize": True, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
    }
    clip_cases: list[tuple[str, str, dict]] = [
        ("se42-crop42", "noise-97x61.png", {**llava, "size": {"shortest_edge": 42}, "crop_size": {"height": 42, "width": 42}}),
        ("se42-crop42-portrait", "noise-40x90.png", {**llava, "size": {"shortest_edge": 42}, "crop_size": {"height": 42, "width": 42}}),
        ("llava-336", "photo-120x80.png", llava),
        ("crop-larger-than-image", "noise-97x61.png",
         {**llava, "size": {"shortest_edge": 30}, "crop_size": {"height": 40, "width": 56}}),
        ("crop-pads-one-axis", "noise-40x90.png",
         {**llava, "size": {"shortest_edge": 30}, "crop_size": {"height": 48, "width": 36}}),
        ("hw-lanczos-no-crop-rgba", "rgba-64x48.png",
         {"size": {"height": 37, "width": 53}, "resample": 1, "do_center_crop": False,
          "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
        ("defaults-exif", "exif-orientation-6.jpg", {"size": 20, "crop_size": 18}),
        ("no-rescale-palette", "palette-trns-45x33.png",
         {"size": {"shortest_edge": 24}, "crop_size": {"height": 24, "width": 24}, "resample": 2,
          "do_rescale": False, "image_mean": [120.5, 110.25, 100.0], "image_std": [60.0, 50.5, 40.0]}),
        ("no-normalize-gray", "gray-50x30.png",
         {"size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}, "resample": 5,
          "do_normalize": False, "rescale_factor": 0.0078125}),
    ]
    for name, image_rel, cfg in clip_cases:
        proc = CLIPImageProcessorPil(**cfg)
        img = load_like_transformers(OUT / image_rel)
        pv = proc(images=img, return_tensors="np")["pixel_values"]
        assert pv.dtype == np.float32 and pv.ndim == 4 and pv.shape[:2] == (1, 3), (pv.dtype, pv.shape)
        raw = np.ascontiguousarray(pv).tobytes()
        if len(raw) > GZIP_ABOVE:
            rel = w.bytes(f"clip/{name}.f32.gz", gzip.compress(raw, compresslevel=9, mtime=0))
        else:
            rel = w.bytes(f"clip/{name}.f32", raw)
        manifest["clip"].append({
            "name": name, "image": image_rel, "config": cfg, "shape": list(pv.shape), "file": rel,
        })

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(manifest['resize'])} resize cases, {len(manifest['decode'])} decode cases, "
          f"{len(manifest['clip'])} clip cases; {len(w.files) + 1} files, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
