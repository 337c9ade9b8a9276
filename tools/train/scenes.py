#!/usr/bin/env python3
"""Seeded CLEVR-like scenes and OCR tiles with one-word questions, drawn with PIL.

Every sample is a pure function of (seed, index): `make_sample(seed, i)` always returns the same
image, question and answer, so training data, held-out data and the bundled samples reproduce
without storing a data set. Images are IMAGE_SIZE x IMAGE_SIZE RGB, drawn at 4x and downsampled
(antialiased edges), which is also the model's input size, so the image processor's resize is
the identity.

Usage (from the repository root):

    python3 tools/train/scenes.py --out /tmp/scenes --count 24 --seed 7   # write a few PNGs + jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 64
SUPERSAMPLE = 4
CELL = 16  # the vision tower's patch size: objects are laid out one per cell
GRID = IMAGE_SIZE // CELL
RADIUS = {"small": (4.8, 5.6), "large": (6.5, 7.3)}  # bounding-circle radius, output pixels
JITTER = 1.5  # largest offset of an object's centre from its cell's centre, output pixels

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (140, 50, 190),
    "orange": (250, 135, 15),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
}
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five"]
MAX_OBJECTS = 5
# Questions that bind two attributes or compare positions are asked about scenes of at most
# this many objects (set_binding_max); larger scenes are asked for their count.
BINDING_MAX = MAX_OBJECTS
BINDING_TYPES = ("color_of_shape", "shape_of_color", "left_right")
# digits and capital letters; O, I and Q are left out (too close to 0, 1 and O at 64 px)
CHARACTERS = list("0123456789") + [c for c in "ABCDEFGHJKLMNPRSTUVWXYZ"]

# question types, with their prompts; "{x}" is filled per sample
# In the seeds' style: short completions ("Color of the main object:") or the instruction first
# ("Answer with one word. ..."), so the question's key words sit just before the answer.
PROMPTS: dict[str, list[str]] = {
    "color_main": [
        "Color of the main object:",
        "Answer with one word. What color is the object?",
    ],
    "shape_main": [
        "Shape of the main object:",
        "Answer with one word. What shape is the object?",
    ],
    "color_of_shape": [
        "Answer with one word. What color is the {shape}?",
        "Color of the {shape}:",
    ],
    "shape_of_color": [
        "Answer with one word. What shape is the {color} object?",
        "Shape of the {color} object:",
    ],
    "count": [
        "Answer with one word. How many objects are there?",
        "Number of objects:",
    ],
    "left_right": [
        "Answer with one word. Which of the {a} and the {b} is on the {side}?",
        "Of the {a} and the {b}, which is on the {side}?",
    ],
    "ocr": [
        "Answer with one word. What is written here?",
        "Character shown:",
    ],
    "caption": [
        "Describe the image in a few words.",
    ],
}
# The first wording of the left/right question, with the side far from the answer; the bundled
# model's first training run used it (set_left_right_wording("side-first")).
LEFT_RIGHT_SIDE_FIRST = ["Answer with one word. Which is on the {side}, the {a} or the {b}?"]
LEFT_RIGHT_SIDE_LAST = list(PROMPTS["left_right"])


# Asked of two-object scenes: the colour or shape of the object on one side ({what} is "color"
# or "shape"; the answer is that attribute of the object on {side}).
LEFT_RIGHT_ATTRIBUTE = ["Answer with one word. What {what} is the object on the {side}?", "{What} of the object on the {side}:"]


def set_left_right_wording(wording: str) -> None:
    PROMPTS["left_right"] = list({"side-first": LEFT_RIGHT_SIDE_FIRST, "attribute": LEFT_RIGHT_ATTRIBUTE}.get(wording, LEFT_RIGHT_SIDE_LAST))


QUESTION_TYPES = list(PROMPTS)
ONE_WORD_TYPES = [t for t in QUESTION_TYPES if t != "caption"]


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str  # "small" or "large"
    x: float  # centre, in output pixels
    y: float
    r: float  # bounding-circle radius, in output pixels


@dataclass
class Sample:
    qtype: str
    question: str
    answer: str
    image: Image.Image
    objects: list[SceneObject] = field(default_factory=list)
    text: str | None = None  # the character of an OCR tile


# --------------------------------------------------------------------------- drawing


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _background(rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    """Muted grey-ish tone (white and black objects both stay visible), plain, noisy or a gradient."""
    base = rng.randint(95, 185)
    tint = [base + rng.randint(-22, 22) for _ in range(3)]
    kind = rng.random()
    arr = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float64)
    arr[:] = tint
    if kind < 0.4:
        pass  # plain
    elif kind < 0.8:
        arr += nrng.normal(0.0, rng.uniform(6, 22), size=arr.shape)
    else:
        ramp = np.linspace(-1, 1, IMAGE_SIZE)
        grad = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
        arr += grad * rng.uniform(10, 30) + nrng.normal(0.0, 4, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="RGB")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = r * 0.82
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        pts = []
        for k in range(3):
            a = -math.pi / 2 + k * 2 * math.pi / 3
            pts.append((cx + r * math.cos(a), cy + r * 1.05 * math.sin(a) + r * 0.12))
        return pts
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.68, cy), (cx, cy + r), (cx - r * 0.68, cy)]
    return None  # circle


def _draw_objects(bg: Image.Image, objects: list[SceneObject], rng: random.Random) -> Image.Image:
    s = SUPERSAMPLE
    overlay = Image.new("RGBA", (IMAGE_SIZE * s, IMAGE_SIZE * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for obj in objects:
        fill = _jitter(COLORS[obj.color], rng, 12)
        outline = None
        width = 0
        if rng.random() < 0.3:
            # an outline in a darker shade (lighter for black) keeps the object's colour name
            outline = tuple(int(c * 0.45) for c in fill) if obj.color != "black" else (120, 120, 120)
            width = s * (2 if obj.size == "large" and rng.random() < 0.3 else 1)
        cx, cy, r = obj.x * s, obj.y * s, obj.r * s
        poly = _polygon(obj.shape, cx, cy, r)
        if poly is None:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill + (255,),
                         outline=(outline + (255,)) if outline else None, width=width)
        else:
            draw.polygon(poly, fill=fill + (255,), outline=(outline + (255,)) if outline else None, width=width)
    small = overlay.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    out = bg.convert("RGBA")
    out.alpha_composite(small)
    return out.convert("RGB")


def _place(n: int, rng: random.Random, sizes: list[str]) -> list[tuple[float, float, float, str]]:
    """One object per cell of a GRID x GRID grid (the vision tower's patch grid), each inside its
    cell with a random offset, so every object falls in exactly one patch."""
    cells = rng.sample(range(GRID * GRID), n)
    placed: list[tuple[float, float, float, str]] = []
    for cell, size in zip(cells, sizes):
        r = rng.uniform(*RADIUS[size])
        slack = min(JITTER, CELL / 2 - r - 0.6)
        x = (cell % GRID + 0.5) * CELL + rng.uniform(-slack, slack)
        y = (cell // GRID + 0.5) * CELL + rng.uniform(-slack, slack)
        placed.append((x, y, r, size))
    return placed


def make_scene(rng: random.Random, nrng: np.random.Generator, n: int, shapes: list[str], colors: list[str]) -> tuple[Image.Image, list[SceneObject]]:
    if BROAD > 0 and rng.random() < BROAD:
        return _broad_scene(rng, nrng, n, shapes, colors)
    sizes = [rng.choice(["small", "large"]) for _ in range(n)]
    spots = _place(n, rng, sizes)
    objects = [SceneObject(sh, co, size, x, y, r) for (x, y, r, size), sh, co in zip(spots, shapes, colors)]
    image = _draw_objects(_background(rng, nrng), objects, rng)
    return image, objects


# --------------------------------------------------------------------------- broad scenes
# What a new user's first picture looks like and the grid scenes above never show: any ground
# (white, black, saturated-free greys and pale tints, gradients in any direction, radial ones,
# transparent files the app composites on white), one object from small to filling most of the
# frame, several objects anywhere (off the patch grid), pictures of other sizes that the image
# processor resizes to 64 x 64. set_broad(p) makes a share p of training scenes like this.

BROAD = 0.0
BROAD_SIZES = [40, 48, 64, 64, 100, 128, 200, 256]  # side drawn at, before the resize to IMAGE_SIZE


def set_broad(p: float) -> None:
    """Draw a share p of scenes (and OCR tiles) with the broad distribution (0: the original one)."""
    global BROAD
    BROAD = float(p)


def _broad_tone(rng: random.Random) -> np.ndarray:
    k = rng.random()
    if k < 0.3:
        v = rng.choice([255, 250, 0, 10])
        return np.array([v, v, v], dtype=np.float64)
    if k < 0.6:
        v = rng.randint(15, 240)
        return np.array([v, v, v], dtype=np.float64) + [rng.randint(-6, 6) for _ in range(3)]
    base = rng.randint(140, 245)
    return np.array([base + rng.randint(-45, 10) for _ in range(3)], dtype=np.float64)


def _broad_background(rng: random.Random, nrng: np.random.Generator, side: int) -> tuple[np.ndarray, str]:
    """The ground as the model sees it (RGBA already composited on white), float64 H x W x 3."""
    a = _broad_tone(rng)
    u = rng.random()
    arr = np.empty((side, side, 3), dtype=np.float64)
    if u < 0.4:
        arr[:] = a
        kind = "plain"
    elif u < 0.85:
        b = _broad_tone(rng)
        lin = np.linspace(0.0, 1.0, side)
        if u < 0.65:
            t = rng.uniform(0, 2 * math.pi)
            ramp = lin[None, :] * math.cos(t) + lin[:, None] * math.sin(t)
        else:
            cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
            ramp = np.hypot(lin[None, :] - cx, lin[:, None] - cy)
        ramp = (ramp - ramp.min()) / max(1e-9, float(ramp.max() - ramp.min()))
        arr[:] = a + (b - a) * ramp[:, :, None]
        kind = "gradient"
    else:
        alpha = rng.choice([0.0, rng.uniform(0.2, 0.65)])
        arr[:] = a * alpha + 255.0 * (1 - alpha)
        kind = "transparent"
    if rng.random() < 0.2:
        arr += nrng.normal(0.0, rng.uniform(2, 10), size=arr.shape)
    return np.clip(arr, 0, 255), kind


def _broad_place(rng: random.Random, n: int) -> list[tuple[float, float, float]] | None:
    """n non-overlapping objects (centre x, y and bounding radius, in IMAGE_SIZE pixels)."""
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(100):
            r = rng.uniform(5.0, 29.0) if n == 1 else rng.uniform(4.6, 12.0 if n <= 3 else 9.0)
            if r < 8 and rng.random() < 0.5 and n == 1:
                r = rng.uniform(8.0, 29.0)
            m = r + 1.0
            if 2 * m >= IMAGE_SIZE:
                continue
            x, y = rng.uniform(m, IMAGE_SIZE - m), rng.uniform(m, IMAGE_SIZE - m)
            if all(math.hypot(x - ox, y - oy) > r + orr + 2.0 for ox, oy, orr in out):
                out.append((x, y, r))
                break
        else:
            return None
    return out


def _to_model_size(img: Image.Image) -> Image.Image:
    """What the image processor makes of a square picture: its side resized to IMAGE_SIZE (bicubic)."""
    return img if img.size[0] == IMAGE_SIZE else img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)


def _broad_scene(rng: random.Random, nrng: np.random.Generator, n: int, shapes: list[str], colors: list[str]) -> tuple[Image.Image, list[SceneObject]]:
    side = rng.choice(BROAD_SIZES)
    k = side / IMAGE_SIZE
    while True:
        spots = _broad_place(rng, n)
        if spots is None:
            continue
        ground, _kind = _broad_background(rng, nrng, side)
        fills = [_jitter(COLORS[c], rng, 14) for c in colors]
        # every object must stand out from the ground around it (a white square on white is no scene)
        ok = True
        for (x, y, r), fill in zip(spots, fills):
            for px, py in ((x, y), (x - r, y), (x + r, y), (x, y - r), (x, y + r)):
                g = ground[int(min(side - 1, max(0, py * k))), int(min(side - 1, max(0, px * k)))]
                if max(abs(float(g[i]) - fill[i]) for i in range(3)) < 85:
                    ok = False
        if ok:
            break
    s = max(1, min(SUPERSAMPLE, 1024 // side))
    overlay = Image.new("RGBA", (side * s, side * s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    objects = []
    for (x, y, r), shape, color, fill in zip(spots, shapes, colors, fills):
        cx, cy, rr = x * k * s, y * k * s, r * k * s
        poly = _polygon(shape, cx, cy, rr)
        if poly is not None and shape in ("square", "triangle") and rng.random() < 0.5:
            t = math.radians(rng.uniform(-10, 10))  # a slight turn
            poly = [(cx + (px - cx) * math.cos(t) - (py - cy) * math.sin(t), cy + (px - cx) * math.sin(t) + (py - cy) * math.cos(t)) for px, py in poly]
        if poly is None:
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=fill + (255,))
        else:
            draw.polygon(poly, fill=fill + (255,))
        objects.append(SceneObject(shape, color, "large" if r > 7 else "small", x, y, r))
    if s > 1:
        overlay = overlay.resize((side, side), rng.choice([Image.Resampling.LANCZOS, Image.Resampling.BOX]))
    out = Image.fromarray(ground.round().astype(np.uint8), mode="RGB").convert("RGBA")
    out.alpha_composite(overlay)
    return _to_model_size(out.convert("RGB")), objects


_FONTS: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's built-in default font (Aileron, embedded in Pillow), scalable
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)  # type: ignore[assignment]
    return _FONTS[size]


def make_ocr_tile(rng: random.Random, nrng: np.random.Generator, char: str) -> Image.Image:
    if BROAD > 0 and rng.random() < BROAD:
        return _broad_ocr_tile(rng, char)
    s = SUPERSAMPLE
    if rng.random() < 0.6:
        paper = tuple(rng.randint(200, 255) for _ in range(3))
        ink = tuple(rng.randint(0, 70) for _ in range(3))
    else:
        paper = tuple(rng.randint(0, 70) for _ in range(3))
        ink = tuple(rng.randint(200, 255) for _ in range(3))
    if rng.random() < 0.3:  # coloured ink
        ink = _jitter(COLORS[rng.choice(["red", "green", "blue", "purple"] if sum(paper) > 380 else ["yellow", "orange", "white"])], rng, 10)
    big = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), paper)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(big)
    size = rng.randint(38, 44) * s
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    w, h = right - left, bottom - top
    # roughly centred (a few pixels of jitter), so the character covers the middle patches
    x = (IMAGE_SIZE * s - w) / 2 + rng.uniform(-2, 2) * s - left
    y = (IMAGE_SIZE * s - h) / 2 + rng.uniform(-2, 2) * s - top
    stroke = rng.choice([0, 0, 1]) * s
    draw.text((x, y), char, font=font, fill=ink, stroke_width=stroke, stroke_fill=ink)
    if rng.random() < 0.4:  # a tile border
        b = rng.randint(1, 3) * s
        draw.rectangle([b, b, IMAGE_SIZE * s - 1 - b, IMAGE_SIZE * s - 1 - b], outline=ink, width=s)
    img = big.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        arr = np.asarray(img, dtype=np.float64) + nrng.normal(0.0, rng.uniform(3, 15), size=(IMAGE_SIZE, IMAGE_SIZE, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="RGB")
    return img



def _broad_ocr_tile(rng: random.Random, char: str) -> Image.Image:
    """A character of any size from a third to four fifths of the tile, flat paper and ink of any
    contrast, drawn at another picture size and resized to IMAGE_SIZE."""
    side = rng.choice(BROAD_SIZES)
    light = rng.random() < 0.65
    paper = tuple(rng.randint(205, 255) for _ in range(3)) if light else tuple(rng.randint(0, 60) for _ in range(3))
    ink = tuple(rng.randint(0, 60) for _ in range(3)) if light else tuple(rng.randint(200, 255) for _ in range(3))
    if rng.random() < 0.3:
        ink = _jitter(COLORS[rng.choice(["red", "green", "blue", "purple"] if light else ["yellow", "orange", "white"])], rng, 12)
    s = max(1, min(SUPERSAMPLE, 1024 // side))
    big = Image.new("RGB", (side * s, side * s), paper)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(big)
    font = _font(max(8, int(side * s * rng.uniform(0.45, 0.85))))
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (side * s - (right - left)) / 2 - left + rng.uniform(-0.05, 0.05) * side * s
    y = (side * s - (bottom - top)) / 2 - top + rng.uniform(-0.05, 0.05) * side * s
    stroke = int(rng.choice([0, 0, 0.015, 0.03]) * side * s)
    draw.text((x, y), char, font=font, fill=ink, stroke_width=stroke, stroke_fill=ink)
    img = big.resize((side, side), Image.Resampling.LANCZOS) if s > 1 else big
    return _to_model_size(img)

# --------------------------------------------------------------------------- questions

MIN_DX = 6.0  # left/right questions only about objects at least this far apart horizontally
# (objects in neighbouring columns are at least 16 - 2 * 2.6 px apart)


@dataclass
class Question:
    qtype: str
    question: str
    answer: str


def caption_of(objects: list[SceneObject]) -> str:
    parts = [f"{'an' if o.color == 'orange' else 'a'} {o.color} {o.shape}" for o in sorted(objects, key=lambda o: o.x)]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def scene_questions(objects: list[SceneObject], rng: random.Random) -> dict[str, list[Question]]:
    """Every unambiguous question about a scene, by type (one random phrasing each)."""
    out: dict[str, list[Question]] = {t: [] for t in QUESTION_TYPES}

    def ask(qtype: str, answer: str, **fill: str) -> None:
        out[qtype].append(Question(qtype, rng.choice(PROMPTS[qtype]).format(**fill), answer))

    n = len(objects)
    if n == 1:
        ask("color_main", objects[0].color)
        ask("shape_main", objects[0].shape)
    ask("count", NUMBER_WORDS[n])
    if n > BINDING_MAX:
        return out
    shapes = [o.shape for o in objects]
    colors = [o.color for o in objects]
    for o in objects:
        if shapes.count(o.shape) == 1:
            ask("color_of_shape", o.color, shape=o.shape)
        if colors.count(o.color) == 1:
            ask("shape_of_color", o.shape, color=o.color)
    for key in ("shape", "color") if LEFT_RIGHT_MAX is None or n <= LEFT_RIGHT_MAX else ():
        values = [getattr(o, key) for o in objects]
        named = [o for o in objects if values.count(getattr(o, key)) == 1]
        for ia in range(len(named)):
            for ib in range(ia + 1, len(named)):
                a, b = named[ia], named[ib]
                if abs(a.x - b.x) < MIN_DX:
                    continue
                if LEFT_RIGHT_SAME_ROW and int(a.y) // CELL != int(b.y) // CELL:
                    continue
                side = rng.choice(["left", "right"])
                winner = min((a, b), key=lambda o: o.x) if side == "left" else max((a, b), key=lambda o: o.x)
                names = [getattr(a, key), getattr(b, key)]
                rng.shuffle(names)
                if key == "color":
                    names = [f"{c} one" for c in names]
                ask("left_right", getattr(winner, key), side=side, a=names[0], b=names[1], what=key, What=key.capitalize())
    if n <= 3:
        ask("caption", caption_of(objects))
    return out


def random_scene(rng: random.Random, nrng: np.random.Generator, n: int) -> tuple[Image.Image, list[SceneObject]]:
    shapes = [rng.choice(SHAPES) for _ in range(n)]
    colors = [rng.choice(list(COLORS)) for _ in range(n)]
    return make_scene(rng, nrng, n, shapes, colors)


def _rngs(seed: int, index: int) -> tuple[random.Random, np.random.Generator]:
    return random.Random(f"scenes/{seed}/{index}"), np.random.default_rng([seed, index, 7])


def _ocr(rng: random.Random, nrng: np.random.Generator) -> tuple[Image.Image, str]:
    char = rng.choice(CHARACTERS)
    return make_ocr_tile(rng, nrng, char), char


# objects per scene when a sample of a given type is asked for
_COUNTS = {"color_main": (1, 1), "shape_main": (1, 1), "count": (1, MAX_OBJECTS), "caption": (1, 3),
           "left_right": (2, 4), "color_of_shape": (2, MAX_OBJECTS), "shape_of_color": (2, MAX_OBJECTS)}


LEFT_RIGHT_MAX: int | None = None  # None: left/right questions about scenes of any size
LEFT_RIGHT_SAME_ROW = False  # True: only about two objects side by side (in one row of cells)
P_SIDE_BY_SIDE = 0.2  # with LEFT_RIGHT_SAME_ROW: share of training scenes made as side-by-side pairs


def set_left_right_same_row(on: bool) -> None:
    """Ask left/right questions only about objects in the same row of cells (side by side)."""
    global LEFT_RIGHT_SAME_ROW
    LEFT_RIGHT_SAME_ROW = bool(on)


def set_left_right_max(k: int | None) -> None:
    """Ask left/right questions only about scenes of at most k objects (2: the two named ones)."""
    global LEFT_RIGHT_MAX
    LEFT_RIGHT_MAX = k
    if k is not None:
        _COUNTS["left_right"] = (2, k)


def set_binding_max(k: int) -> None:
    """Ask binding and left/right questions only about scenes of at most k objects."""
    global BINDING_MAX
    BINDING_MAX = k
    for t in BINDING_TYPES:
        _COUNTS[t] = (2, min(_COUNTS[t][1], k) if t == "left_right" else k)


def make_sample(seed: int, index: int, qtype: str) -> Sample:
    """One image with one question of the given type; a pure function of (seed, index, qtype)."""
    if qtype not in PROMPTS:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")
    # the type is part of the seed, so different types at one index get different scenes
    rng = random.Random(f"scenes/{seed}/{qtype}/{index}")
    nrng = np.random.default_rng([seed, index, 7, QUESTION_TYPES.index(qtype)])
    if qtype == "ocr":
        image, char = _ocr(rng, nrng)
        return Sample(qtype, rng.choice(PROMPTS["ocr"]), char, image, [], text=char)
    lo, hi = _COUNTS[qtype]
    while True:
        image, objects = random_scene(rng, nrng, rng.randint(lo, hi))
        candidates = scene_questions(objects, rng)[qtype]
        if candidates:
            q = rng.choice(candidates)
            return Sample(qtype, q.question, q.answer, image, objects)


@dataclass
class TrainingItem:
    image: Image.Image
    questions: list[Question]
    objects: list[SceneObject]
    text: str | None = None  # the character of an OCR tile


def make_training_item(
    seed: int, index: int, k: int, weights: dict[str, float], p_ocr: float = 0.2, p_single: float = 0.2
) -> TrainingItem:
    """One image with up to k different questions about it, drawn by type weight."""
    rng, nrng = _rngs(seed, index)
    u = rng.random()
    if u < p_ocr:
        image, char = _ocr(rng, nrng)
        qs = [Question("ocr", p, char) for p in PROMPTS["ocr"]]
        return TrainingItem(image, rng.sample(qs, min(k, len(qs))) if weights.get("ocr", 0) > 0 else [], [], char)
    if u < p_ocr + p_single:
        n = 1
    elif BINDING_MAX < MAX_OBJECTS:
        # mostly scenes small enough for binding questions, some larger ones for counting
        n = rng.randint(2, BINDING_MAX) if rng.random() < 0.7 else rng.randint(BINDING_MAX + 1, MAX_OBJECTS)
    else:
        n = rng.randint(2, MAX_OBJECTS)
    image, objects = random_scene(rng, nrng, n)
    if LEFT_RIGHT_SAME_ROW and n > 1 and weights.get("left_right", 0) > 0 and rng.random() < P_SIDE_BY_SIDE:
        # side-by-side pairs are rare among random scenes (1 in 5 two-object scenes): make some on purpose
        while True:
            image, objects = random_scene(rng, nrng, 2)
            if int(objects[0].y) // CELL == int(objects[1].y) // CELL:
                break
    candidates = scene_questions(objects, rng)
    chosen: list[Question] = []
    while len(chosen) < k:
        types = [t for t, qs in candidates.items() if qs and weights.get(t, 0) > 0]
        if not types:
            break
        t = rng.choices(types, weights=[weights[t] for t in types])[0]
        chosen.append(candidates[t].pop(rng.randrange(len(candidates[t]))))
    return TrainingItem(image, chosen, objects)


def patch_labels(objects: list[SceneObject], patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per patch (row-major): colour id and shape id of the object whose centre lies in it
    (len(COLORS) and len(SHAPES) for background). Objects are laid out one per patch-sized
    cell, so this is the object the patch shows. Used only by the training's auxiliary loss."""
    g = IMAGE_SIZE // patch
    color_id = np.full(g * g, len(COLORS), dtype=np.int64)
    shape_id = np.full(g * g, len(SHAPES), dtype=np.int64)
    colors = list(COLORS)
    for p in covered_patches(objects, patch):
        o = objects[p[1]]
        color_id[p[0]] = colors.index(o.color)
        shape_id[p[0]] = SHAPES.index(o.shape)
    return color_id, shape_id


def covered_patches(objects: list[SceneObject], patch: int) -> list[tuple[int, int]]:
    """(patch, object index) pairs: the patch holding each object's centre, and for objects larger
    than a patch (broad scenes) also every patch whose centre lies well inside the object. For grid
    scenes this is exactly the centre patch of each object."""
    g = IMAGE_SIZE // patch
    out = [(min(g - 1, int(o.y) // patch) * g + min(g - 1, int(o.x) // patch), i) for i, o in enumerate(objects)]
    taken = {p for p, _ in out}
    for i, o in enumerate(objects):
        if o.r <= patch * 0.75:
            continue
        for p in range(g * g):
            px, py = (p % g + 0.5) * patch, (p // g + 0.5) * patch
            if p not in taken and math.hypot(px - o.x, py - o.y) < o.r * 0.7:
                out.append((p, i))
                taken.add(p)
    return out


def corpus_lines() -> list[str]:
    """Text for training the tokenizer, spelled as it appears between special tokens in a
    rendered sample: a question right after "<image>\n" (no leading space), then
    " ASSISTANT:" and " " + answer. Every filler of every prompt is included."""
    lines: list[str] = []
    colors = list(COLORS)
    # every left/right wording, whichever one PROMPTS holds, so the tokenizer does not depend on it
    wordings = [p for w in (LEFT_RIGHT_SIDE_LAST, LEFT_RIGHT_SIDE_FIRST, LEFT_RIGHT_ATTRIBUTE) for p in w]
    for prompts in [v for k, v in PROMPTS.items() if k != "left_right"] + [wordings]:
        for p in prompts:
            if "{what}" in p.lower():
                lines += [p.format(side=side, what=w, What=w.capitalize()) for side in ("left", "right") for w in ("color", "shape")] * 4
            elif "{shape}" in p:
                lines += [p.format(shape=s) for s in SHAPES]
            elif "{color}" in p:
                lines += [p.format(color=c) for c in colors]
            elif "{side}" in p:
                for side in ("left", "right"):
                    lines += [p.format(side=side, a=a, b=b) for a in SHAPES for b in SHAPES if a != b]
                    lines += [p.format(side=side, a=f"{a} one", b=f"{b} one") for a in colors for b in colors if a != b]
            else:
                lines += [p] * 4
    lines = [line + " ASSISTANT:" for line in lines]
    rng = random.Random("corpus")
    answers = colors + SHAPES + NUMBER_WORDS[1:] + CHARACTERS
    for _ in range(40):
        lines.append(" " + " ".join(rng.sample(answers, len(answers))))
    for _ in range(300):
        k = rng.randint(1, 3)
        objs = [SceneObject(rng.choice(SHAPES), rng.choice(colors), "small", rng.random(), 0, 0) for _ in range(k)]
        lines.append(" " + caption_of(objs))
    lines += [" USER:"] * 20
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for i in range(args.count):
            s = make_sample(args.seed, i, QUESTION_TYPES[i % len(QUESTION_TYPES)])
            name = f"{i:03d}_{s.qtype}.png"
            s.image.save(args.out / name)
            f.write(json.dumps({"image": name, "question": s.question, "answer": s.answer, "type": s.qtype}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
