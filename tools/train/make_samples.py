#!/usr/bin/env python3
"""Write the bundled sample images and the held-out evaluation set, both from scenes.py.

- media/samples/: a dozen scenes with seed 3 (neither the training seed 1 nor the held-out
  seed 2), picked for variety — one to five objects, colour and shape bindings, counts,
  left/right by shape and by colour, a digit and letters — and questions.jsonl with one
  {"image", "question", "answer", "group"} row per image (the experiment manifest format).
- test/fixtures/scenes/: the held-out set the test suite runs through the sidecar (seed 2, the
  seed eval.py and train.py's evaluation use), a balanced number of questions per type, same
  manifest format. `--heldout-out DIR --per-type N` writes a larger one elsewhere.

Deterministic: rerunning writes the same bytes.

Usage (from the repository root):

    python3 tools/train/make_samples.py
    python3 tools/train/make_samples.py --heldout-out /tmp/heldout --per-type 60 --no-samples
    python3 tools/train/make_samples.py --heldout-out /tmp/fresh --per-type 100 --no-samples --seed 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "media" / "samples"
HELDOUT = REPO_ROOT / "test" / "fixtures" / "scenes"
SAMPLE_SEED = 3
HELDOUT_SEED = 2

Pick = Callable[[scenes.Sample], bool]


def n_objects(n: int) -> Pick:
    return lambda s: len(s.objects) == n


def answer_in(words) -> Pick:
    return lambda s: s.answer in words


def digit(s: scenes.Sample) -> bool:
    return s.answer.isdigit()


def letter(s: scenes.Sample) -> bool:
    return s.answer.isalpha()


# (file stem, question type, what the sample must be, how many matches to skip)
PLAN: list[tuple[str, str, Pick, int]] = [
    ("color-main-1", "color_main", lambda s: True, 0),
    ("color-main-2", "color_main", lambda s: True, 1),
    ("shape-main", "shape_main", lambda s: True, 0),
    ("color-of-shape", "color_of_shape", n_objects(3), 0),
    ("shape-of-color", "shape_of_color", n_objects(4), 0),
    ("count-3", "count", n_objects(3), 0),
    ("count-5", "count", n_objects(5), 0),
    ("left-right-shape", "left_right", answer_in(scenes.SHAPES), 0),
    ("left-right-color", "left_right", answer_in(scenes.COLORS), 0),
    ("ocr-digit", "ocr", digit, 0),
    ("ocr-letter-1", "ocr", letter, 0),
    ("ocr-letter-2", "ocr", letter, 1),
]


def save_png(image, path: Path) -> None:
    image.save(path, format="PNG", optimize=False, compress_level=9)


def write_manifest(folder: Path, rows: list[dict]) -> None:
    with (folder / "questions.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def fresh(folder: Path) -> None:
    """Remove the images and manifest written before (other files, e.g. experiments, stay)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in list(folder.glob("*.png")) + [folder / "questions.jsonl"]:
        f.unlink(missing_ok=True)


def make_samples(out: Path) -> None:
    fresh(out)
    rows = []
    for stem, qtype, pick, skip in PLAN:
        k = 0
        while True:
            s = scenes.make_sample(SAMPLE_SEED, k, qtype)
            if pick(s):
                if skip == 0:
                    break
                skip -= 1
            k += 1
        name = f"{stem}.png"
        save_png(s.image, out / name)
        rows.append({"image": name, "question": s.question, "answer": s.answer, "group": qtype})
    write_manifest(out, rows)
    for r in rows:
        print(f"{r['image']:<22} {r['question']}  ->  {r['answer']}")


def make_heldout(out: Path, per_type: int, seed: int = HELDOUT_SEED) -> None:
    """per_type questions of every one-word type, interleaved by type, image names by index."""
    fresh(out)
    rows = []
    for k in range(per_type):
        for qtype in scenes.ONE_WORD_TYPES:
            s = scenes.make_sample(seed, k, qtype)
            name = f"{len(rows):04d}-{qtype.replace('_', '-')}.png"
            save_png(s.image, out / name)
            rows.append({"image": name, "question": s.question, "answer": s.answer, "group": qtype})
    write_manifest(out, rows)
    print(f"{out}: {len(rows)} questions, {per_type} per type")


def apply_model_settings(model: Path) -> None:
    """Ask questions as the model's training did (its training_log.json records the settings)."""
    log_file = model / "training_log.json"
    if not log_file.exists():
        return
    args = json.loads(log_file.read_text(encoding="utf-8"))["args"]
    scenes.set_binding_max(args.get("binding_max_objects", scenes.MAX_OBJECTS))
    scenes.set_left_right_max(args.get("left_right_objects"))
    scenes.set_left_right_wording(args.get("left_right_wording", "side-first"))
    scenes.set_left_right_same_row(args.get("left_right_same_row", False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO_ROOT / "media" / "models" / "lens-scenes-tiny", help="ask questions as this model was trained to answer")
    ap.add_argument("--heldout-out", type=Path, default=HELDOUT)
    ap.add_argument("--per-type", type=int, default=8, help="held-out questions per type (7 types)")
    ap.add_argument("--no-samples", action="store_true", help="only write the held-out set")
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED, help="held-out seed (2, what training evaluates on; 4 and up were never used for training or for choosing a checkpoint)")
    args = ap.parse_args()
    apply_model_settings(args.model)
    if not args.no_samples:
        make_samples(SAMPLES)
    make_heldout(args.heldout_out, args.per_type, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
