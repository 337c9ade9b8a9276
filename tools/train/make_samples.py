#!/usr/bin/env python3
"""Write the bundled sample images and their questions to media/samples/.

A dozen scenes from scenes.py with seed 3 (neither the training seed 1 nor the held-out seed 2):
single objects, colour/shape bindings, counts, left/right and OCR tiles, plus
questions.jsonl with one {"image", "question", "answer"} row per image. Deterministic.

Usage (from the repository root):

    python3 tools/train/make_samples.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT = REPO_ROOT / "media" / "samples"
SEED = 3

# (file stem, question type, index); indices are simply the first ones of each type
PLAN = [
    ("color-main-1", "color_main", 0),
    ("color-main-2", "color_main", 1),
    ("shape-main", "shape_main", 0),
    ("color-of-shape", "color_of_shape", 0),
    ("shape-of-color", "shape_of_color", 0),
    ("count-1", "count", 0),
    ("count-2", "count", 1),
    ("left-right-1", "left_right", 0),
    ("left-right-2", "left_right", 1),
    ("ocr-1", "ocr", 0),
    ("ocr-2", "ocr", 1),
    ("ocr-3", "ocr", 2),
]


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rows = []
    for stem, qtype, index in PLAN:
        s = scenes.make_sample(SEED, index, qtype)
        name = f"{stem}.png"
        s.image.save(OUT / name, format="PNG", optimize=False, compress_level=9)
        rows.append({"image": name, "question": s.question, "answer": s.answer})
    with (OUT / "questions.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for r in rows:
        print(f"{r['image']:<22} {r['question']}  ->  {r['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
