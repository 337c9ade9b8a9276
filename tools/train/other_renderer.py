#!/usr/bin/env python3
"""A second renderer of simple scenes, independent of scenes.py's drawing, for a held-out set the
bundled model never trained on: the kind of picture a new user draws first.

It shares with scenes.py only the vocabulary the model was trained on (colour names, shapes,
count words, characters) and the question wordings; every picture is drawn here, differently:

- sizes other than the model's 64 x 64 (48, 64, 100, 128, 200, 333 x 250, 250 x 333): the image
  processor resizes the short side to 64 and crops the centre square, so objects are placed
  inside that centre square;
- plain backgrounds of any lightness (white, black, greys, pale tints) or linear and radial
  gradients between two such colours;
- objects anywhere (no grid): one object spanning 30-90% of the crop square's side (a circle
  then covers 7-64% of its area, a square 7-60%), or two to five spanning 16-40% each, not
  overlapping;
- anti-aliased edges: drawn at 4x and reduced with a box filter;
- its own palette (two canonical shades per colour name) and its own geometry (rotated squares
  and triangles up to a few degrees, five-pointed stars of a different inner radius);
- RGBA files: some pictures have a transparent (or half-transparent) background, which the app
  composites on white (transformers' convert_to_rgb), so the model sees a white ground there;
- characters in system TrueType fonts (DejaVu Sans, Liberation Sans), not Pillow's built-in one.

Every item is a pure function of (seed, index). `--out DIR --per-type N` writes N items of every
one-word question type as PNG files and a questions.jsonl manifest ({"image", "question",
"answer", "group", "size", "background"}), the format the experiment runner reads.

Usage (from the repository root):

    python3 tools/train/other_renderer.py --out /tmp/other --per-type 50 --seed 11   # the 350 measured
    python3 tools/train/other_renderer.py --out test/fixtures/other-scenes --per-type 10 --seed 12 --on-white-twin
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes  # noqa: E402  (vocabulary and question wordings only)

AA = 4
SIZES: list[tuple[int, int]] = [(48, 48), (64, 64), (100, 100), (128, 128), (200, 200), (333, 250), (250, 333)]
# two shades per colour name, chosen to be unmistakably that name (CSS-like)
PALETTE: dict[str, list[tuple[int, int, int]]] = {
    "red": [(230, 20, 20), (200, 30, 45)],
    "green": [(20, 160, 40), (50, 190, 70)],
    "blue": [(20, 60, 235), (40, 90, 210)],
    "yellow": [(250, 225, 20), (235, 205, 40)],
    "purple": [(130, 40, 180), (150, 60, 200)],
    "orange": [(255, 140, 0), (240, 120, 20)],
    "white": [(255, 255, 255), (240, 240, 240)],
    "black": [(0, 0, 0), (25, 25, 30)],
}
FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
]


@dataclass
class Thing:
    shape: str
    color: str
    x: float  # centre, as a fraction of the frame's width
    y: float
    d: float  # extent (largest dimension), as a fraction of the crop square's side


def _lum(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return max(abs(a[i] - b[i]) for i in range(3))


def _ground_colour(rng: random.Random) -> tuple[int, int, int]:
    k = rng.random()
    if k < 0.45:  # grey of any lightness, white and black included
        v = rng.choice([255, 0, rng.randint(20, 235)])
        return (v, v, v)
    base = rng.randint(150, 245)  # a pale tint
    return tuple(max(0, min(255, base + rng.randint(-40, 10))) for _ in range(3))  # type: ignore[return-value]


def _background(rng: random.Random, w: int, h: int) -> tuple[Image.Image, str]:
    """RGBA at AA x the frame's size, and its kind."""
    a = _ground_colour(rng)
    u = rng.random()
    if u < 0.45:
        return Image.new("RGBA", (w, h), a + (255,)), "plain"
    if u < 0.8:
        b = _ground_colour(rng)
        if u < 0.65:
            # linear, in a random direction
            t = rng.uniform(0, 2 * math.pi)
            xs = np.linspace(-1, 1, w)[None, :] * math.cos(t) + np.linspace(-1, 1, h)[:, None] * math.sin(t)
            ramp = (xs - xs.min()) / (xs.max() - xs.min())
            kind = "linear gradient"
        else:
            cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
            ramp = np.hypot(np.linspace(0, 1, w)[None, :] - cx, np.linspace(0, 1, h)[:, None] - cy)
            ramp = ramp / ramp.max()
            kind = "radial gradient"
        mask = Image.fromarray((ramp * 255).round().astype(np.uint8), mode="L")
        return Image.composite(Image.new("RGBA", (w, h), b + (255,)), Image.new("RGBA", (w, h), a + (255,)), mask), kind
    # transparent: fully, or half with a tint
    alpha = rng.choice([0, 0, rng.randint(60, 160)])
    return Image.new("RGBA", (w, h), a + (alpha,)), f"transparent (alpha {alpha})"


def _seen_ground(bg: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    """The colour the model sees at a point: RGBA composited on white, as the app does."""
    r, g, b, a = bg.getpixel((x, y))  # type: ignore[misc]
    return tuple(round((c * a + 255 * (255 - a)) / 255) for c in (r, g, b))  # type: ignore[return-value]


def _points(shape: str, cx: float, cy: float, half: float, turn: float) -> list[tuple[float, float]] | None:
    def rot(px: float, py: float) -> tuple[float, float]:
        c, s = math.cos(turn), math.sin(turn)
        return (cx + px * c - py * s, cy + px * s + py * c)

    if shape == "square":
        return [rot(px * half * 0.86, py * half * 0.86) for px, py in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    if shape == "diamond":
        return [rot(0, -half), rot(half * 0.62, 0), rot(0, half), rot(-half * 0.62, 0)]
    if shape == "triangle":  # equilateral, point up, centred on its bounding box
        side = 2 * half
        hgt = side * math.sqrt(3) / 2
        return [rot(0, -hgt / 2), rot(side / 2, hgt / 2), rot(-side / 2, hgt / 2)]
    if shape == "star":
        out = []
        for k in range(10):
            ang = math.pi * k / 5 - math.pi / 2
            rr = half if k % 2 == 0 else half * 0.5
            out.append(rot(rr * math.cos(ang), rr * math.sin(ang)))
        return out
    return None


def _layout(rng: random.Random, n: int, w: int, h: int) -> list[tuple[float, float, float]] | None:
    """n non-overlapping discs (centre x, y in pixels of the full frame, radius in pixels) inside
    the centre square the processor keeps, or None when they do not fit."""
    side = min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(200):
            d = rng.uniform(0.3, 0.9) if n == 1 else rng.uniform(0.16, 0.40 if n <= 3 else 0.3)
            r = d * side / 2
            m = r + side * 0.02
            if 2 * m >= side:
                continue
            cx = x0 + rng.uniform(m, side - m)
            cy = y0 + rng.uniform(m, side - m)
            if all(math.hypot(cx - ox, cy - oy) > r + orr + side * 0.04 for ox, oy, orr in out):
                out.append((cx, cy, r))
                break
        else:
            return None
    return out


def _scene(rng: random.Random, n: int, shapes: list[str], colors: list[str]) -> tuple[Image.Image, list[Thing], str, tuple[int, int]]:
    w, h = rng.choice(SIZES)
    while True:
        bg, kind = _background(rng, w * AA, h * AA)
        spots = _layout(rng, n, w, h)
        if spots is None:
            continue
        fills = []
        ok = True
        for (cx, cy, r), c in zip(spots, colors):
            fill = rng.choice(PALETTE[c])
            # the object must stand out from the ground the model will see around it
            for px, py in ((cx, cy), (cx - r, cy), (cx + r, cy), (cx, cy - r), (cx, cy + r)):
                px_, py_ = int(min(w - 1, max(0, px)) * AA), int(min(h - 1, max(0, py)) * AA)
                if _contrast(fill, _seen_ground(bg, px_, py_)) < 90:
                    ok = False
            fills.append(fill)
        if ok:
            break
    draw = ImageDraw.Draw(bg)
    things = []
    side = min(w, h)
    for (cx, cy, r), shape, color, fill in zip(spots, shapes, colors, fills):
        turn = math.radians(rng.uniform(-8, 8))
        pts = _points(shape, cx * AA, cy * AA, r * AA, turn)
        if pts is None:
            draw.ellipse([(cx - r) * AA, (cy - r) * AA, (cx + r) * AA, (cy + r) * AA], fill=fill + (255,))
        else:
            draw.polygon(pts, fill=fill + (255,))
        things.append(Thing(shape, color, cx / w, cy / h, 2 * r / side))
    img = bg.reduce(AA)  # box filter: anti-aliased edges
    if kind.startswith("transparent"):
        return img, things, kind, (w, h)
    return img.convert("RGB"), things, kind, (w, h)


def _tile(rng: random.Random, char: str) -> tuple[Image.Image, str, tuple[int, int]]:
    fonts = [f for f in FONTS if Path(f).exists()]
    if not fonts:
        raise SystemExit(f"other_renderer: none of {', '.join(FONTS)} exists: install fonts-dejavu-core or fonts-liberation")
    w, h = rng.choice(SIZES)
    side = min(w, h)
    dark = rng.random() < 0.35
    paper = (rng.randint(0, 50),) * 3 if dark else (rng.randint(215, 255),) * 3
    ink = (rng.randint(215, 255),) * 3 if dark else rng.choice([(0, 0, 0), (30, 30, 30), (20, 60, 235), (230, 20, 20)])
    big = Image.new("RGB", (w * AA, h * AA), paper)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(big)
    font = ImageFont.truetype(rng.choice(fonts), int(side * AA * rng.uniform(0.55, 0.75)))
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (w * AA - (right - left)) / 2 - left + rng.uniform(-0.04, 0.04) * side * AA
    y = (h * AA - (bottom - top)) / 2 - top + rng.uniform(-0.04, 0.04) * side * AA
    draw.text((x, y), char, font=font, fill=ink)  # type: ignore[arg-type]
    return big.reduce(AA), "plain", (w, h)


@dataclass
class Item:
    qtype: str
    question: str
    answer: str
    image: Image.Image
    background: str
    size: tuple[int, int]


def _prompt(rng: random.Random, qtype: str, **fill: str) -> str:
    return rng.choice(scenes.PROMPTS[qtype]).format(**fill)


def make_item(seed: int, index: int, qtype: str) -> Item:
    """One picture and one question of a type; a pure function of (seed, index, qtype)."""
    rng = random.Random(f"other/{seed}/{qtype}/{index}")
    colors_all, shapes_all = list(PALETTE), scenes.SHAPES
    if qtype == "ocr":
        char = rng.choice(scenes.CHARACTERS)
        img, kind, size = _tile(rng, char)
        return Item(qtype, _prompt(rng, qtype), char, img, kind, size)
    if qtype in ("color_main", "shape_main"):
        n = 1
    elif qtype == "count":
        n = rng.randint(1, scenes.MAX_OBJECTS)
    elif qtype == "left_right":
        n = 2
    else:
        n = rng.randint(2, 4)
    while True:
        shapes = [rng.choice(shapes_all) for _ in range(n)]
        colors = [rng.choice(colors_all) for _ in range(n)]
        if qtype == "color_main":
            return _item(rng, qtype, n, shapes, colors, _prompt(rng, qtype), colors[0])
        if qtype == "shape_main":
            return _item(rng, qtype, n, shapes, colors, _prompt(rng, qtype), shapes[0])
        if qtype == "count":
            return _item(rng, qtype, n, shapes, colors, _prompt(rng, qtype), scenes.NUMBER_WORDS[n])
        if qtype == "color_of_shape" and shapes.count(shapes[0]) == 1:
            return _item(rng, qtype, n, shapes, colors, _prompt(rng, qtype, shape=shapes[0]), colors[0])
        if qtype == "shape_of_color" and colors.count(colors[0]) == 1:
            return _item(rng, qtype, n, shapes, colors, _prompt(rng, qtype, color=colors[0]), shapes[0])
        if qtype == "left_right":
            what = rng.choice(["color", "shape"])
            values = colors if what == "color" else shapes
            if values[0] != values[1]:
                return _item(rng, qtype, n, shapes, colors, None, None, what=what)


def _item(rng, qtype, n, shapes, colors, question, answer, what: str | None = None) -> Item:
    while True:
        img, things, kind, size = _scene(rng, n, shapes, colors)
        if what is None:
            return Item(qtype, question, answer, img, kind, size)
        a, b = things
        if abs(a.x - b.x) * size[0] >= 0.2 * min(size):  # clearly apart horizontally
            side = rng.choice(["left", "right"])
            winner = min(things, key=lambda t: t.x) if side == "left" else max(things, key=lambda t: t.x)
            q = rng.choice(scenes.LEFT_RIGHT_ATTRIBUTE).format(side=side, what=what, What=what.capitalize())
            return Item(qtype, q, getattr(winner, what), img, kind, size)


def write_set(out: Path, per_type: int, seed: int, twin: bool = False) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    for f in list(out.glob("*.png")) + [out / "questions.jsonl"]:
        f.unlink(missing_ok=True)
    rows: list[dict] = []
    for k in range(per_type):
        for qtype in scenes.ONE_WORD_TYPES:
            it = make_item(seed, k, qtype)
            name = f"{len(rows):04d}-{qtype.replace('_', '-')}.png"
            it.image.save(out / name, format="PNG", optimize=True)
            rows.append({"image": name, "question": it.question, "answer": it.answer, "group": qtype,
                         "size": f"{it.size[0]}x{it.size[1]}", "background": it.background,
                         "mode": it.image.mode})
    if twin:
        # the first RGBA picture composited on white as transformers' convert_to_rgb does (not in
        # the manifest): the app must see exactly this picture when it opens the RGBA file
        first = next((r for r in rows if r["mode"] == "RGBA"), None)
        if first is not None:
            rgba = Image.open(out / first["image"])
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            white.alpha_composite(rgba)
            white.convert("RGB").save(out / first["image"].replace(".png", ".on-white.png"), format="PNG", optimize=True)
    with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--per-type", type=int, default=50, help="items per one-word question type (7 types)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--on-white-twin", action="store_true", help="also write the first RGBA picture composited on white, as NAME.on-white.png (not in the manifest)")
    args = ap.parse_args()
    # the wording the bundled model was trained with (its training_log.json: --left-right-wording attribute)
    scenes.set_left_right_wording("attribute")
    rows = write_set(args.out, args.per_type, args.seed, args.on_white_twin)
    print(f"{args.out}: {len(rows)} questions, {args.per_type} per type, "
          f"{sum(r['mode'] == 'RGBA' for r in rows)} RGBA")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
