#!/usr/bin/env python3
"""Reference fixtures for SmolVLM / Idefics3 (Idefics3ForConditionalGeneration), made with transformers.

Everything is created locally with fixed seeds (no hub access):

* a byte-level BPE tokenizer trained on make_fixtures.py's generated corpus, plus SmolVLM's
  special tokens (<|im_start|>, <end_of_utterance>, <fake_token_around_image>, <image>,
  <global-img>, <row_1_col_1> .. <row_6_col_6>);
* a tiny random Idefics3ForConditionalGeneration (F32, untied LM head): a SigLIP tower over
  48x48 tiles with 8x8 patches (6x6 patches, pixel shuffle by 2 -> 3x3 = 9 image tokens per
  tile), a LLaMA decoder, saved with save_pretrained together with its processor
  (Idefics3ImageProcessorPil: longest edge 96, tiles of 48, LANCZOS; a SmolVLM-style chat
  template written for this project);
* per case (a landscape, a portrait, a wide image that is downscaled, an RGBA image composited
  on white): rendered and expanded prompt, input_ids, pixel_values (every tile, then the global
  image), tile rows/cols, the connector's image features, all hidden states, logits, 8 greedy
  tokens, attention mass on image tokens, and the logit-lens statistics over prompt + generated
  tokens;
* whether SigLIP's bucketized position ids of a full tile are 0..n*n-1 for several patch-grid
  sizes (27 as in SmolVLM's 384/14, and others): the TypeScript port relies on it.

Usage (from the repository root):

    python3 tools/reference/make_idefics3_fixtures.py

The output folder test/fixtures/idefics3-tiny/ is deleted and recreated on every run.
Deterministic: two runs give byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import log, set_determinism, write_json  # noqa: E402
from vlm_reference import byte_level_bpe, lens_stats, load_eager, reference_fields, reference_runs, tree_digest, write_f32  # noqa: E402
from make_fixtures import MAX_NEW_TOKENS, MIN_GAP, init_weights, make_corpus  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    Qwen2Tokenizer,
)
from transformers.models.idefics3.modeling_idefics3 import Idefics3VisionEmbeddings  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "test" / "fixtures" / "idefics3-tiny"
IMAGES_DIR = REPO_ROOT / "test" / "fixtures" / "images"
MODEL_NAME = "idefics3-tiny"

ROW_COL_TOKENS = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *ROW_COL_TOKENS,
]

# SmolVLM-style chat template (written for this project, not copied): "<|im_start|>", then per
# turn "Role:" (a space after the colon unless the turn opens with an image), the content with
# images as <image>, "<end_of_utterance>\n"; the generation prompt is "Assistant:".
CHAT_TEMPLATE = (
    "{{ '<|im_start|>' }}"
    "{%- for message in messages -%}"
    "{{ message['role'] | capitalize }}"
    "{%- if message['content'] is string -%}{{ ': ' + message['content'] }}"
    "{%- else -%}"
    "{%- if message['content'][0]['type'] == 'image' -%}{{ ':' }}{%- else -%}{{ ': ' }}{%- endif -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_utterance>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)

TILE = 48  # max_image_size.longest_edge = vision image_size
LONGEST_EDGE = 96  # size.longest_edge: at most 2 x 2 tiles
PATCH = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2  # 9

WIDE_IMAGE = "wide-400x130.png"
CASES = [
    # (case, image file, prompt). 120x80 is upscaled to 96x64 -> 96x96: 2 x 2 tiles; 40x90 to 42x96 -> 48x96:
    # 2 rows x 1 column; the generated 400x130 downscaled to 96x32 -> 96x48: 1 row x 2 columns; the RGBA ramp
    # 256x256 (composited on white) downscaled to 96x96: 2 x 2 tiles.
    ("landscape", "photo-120x80.png", "What color is the circle?"),
    ("portrait", "noise-40x90.png", "Describe the image."),
    ("wide", WIDE_IMAGE, "How many shapes are there?"),
    ("rgba", "alpha-ramp-256.png", "What is in the picture?"),
]

POSITION_GRIDS = [4, 6, 8, 14, 16, 24, 26, 27, 32, 36]
TOP_K = 10
HEAD_MASK = {0: [1], 1: [0, 3]}
SEED = 4006


def make_wide_image(path: Path) -> None:
    """A deterministic 400x130 picture (gradient background, a few flat shapes) that compresses well."""
    w, h = 400, 130
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
    img[..., 2] = 90
    for cx, cy, r, color in [(60, 60, 35, (250, 40, 40)), (200, 70, 25, (30, 200, 60)), (330, 50, 40, (20, 40, 230))]:
        img[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = color
    img[95:120, 150:260] = (240, 240, 30)
    Image.fromarray(img, "RGB").save(path, optimize=True)


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with SmolVLM's special tokens; BOS is <|im_start|>, which the chat template writes itself."""
    corpus = make_corpus() + [
        "What color is the circle? Describe the image. How many shapes are there? What is in the picture?",
        "User: Assistant:",
    ]
    return byte_level_bpe(corpus, SPECIAL_TOKENS, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")


# --------------------------------------------------------------------------- model


def make_config(tok) -> Idefics3Config:
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_channels": 3,
            "image_size": TILE,
            "patch_size": PATCH,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )


def make_processor(tok) -> Idefics3Processor:
    image_processor = Idefics3ImageProcessorPil(
        do_convert_rgb=True,
        do_resize=True,
        size={"longest_edge": LONGEST_EDGE},
        resample=Image.Resampling.LANCZOS,
        do_image_splitting=True,
        max_image_size={"longest_edge": TILE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pad=True,
    )
    return Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE)


def load_model(folder: Path):
    return load_eager(Idefics3ForConditionalGeneration, folder)


# --------------------------------------------------------------------------- reference runs


def image_path(name: str) -> Path:
    return OUT_DIR / name if name == WIDE_IMAGE else IMAGES_DIR / name


@torch.no_grad()
def run_case(model, proc, raw_tok: Tokenizer, case: str, image_name: str, prompt: str, case_dir: Path) -> dict:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    rendered = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    img = Image.open(image_path(image_name))
    inputs = dict(proc(text=rendered, images=img, return_tensors="pt"))
    layout = proc.image_processor(img, return_row_col_info=True)
    rows, cols = int(layout["rows"][0][0]), int(layout["cols"][0][0])
    ids = inputs["input_ids"][0]
    cfg = model.config
    n_img = int((ids == cfg.image_token_id).sum())
    tiles = inputs["pixel_values"].shape[1]
    assert tiles == rows * cols + 1 and n_img == tiles * IMAGE_SEQ_LEN, (tiles, rows, cols, n_img)
    assert bool(inputs["pixel_attention_mask"].all()), "a tile is padded"
    expanded = rendered.replace("<image>", proc.replace_image_token({"rows": [[rows]], "cols": [[cols]]}, 0))
    assert raw_tok.encode(expanded).ids == ids.tolist(), "tokenizer.json and transformers disagree"

    features = model.model.get_image_features(inputs["pixel_values"], inputs["pixel_attention_mask"]).pooler_output[0]

    runs = reference_runs(model, inputs, model.model.text_model.layers, HEAD_MASK, MAX_NEW_TOKENS, MIN_GAP)
    greedy = runs["greedy"]

    full_ids = torch.cat([ids, torch.tensor(greedy[:-1])]).unsqueeze(0)
    full = dict(inputs)
    full["input_ids"] = full_ids
    full["attention_mask"] = torch.ones_like(full_ids)
    out_full = model(**full, output_hidden_states=True, use_cache=False, return_dict=True)
    hidden_full = torch.stack([h[0] for h in out_full.hidden_states], dim=0)
    lens = lens_stats(model.model.text_model.norm, model.lm_head, hidden_full, TOP_K)

    record = {
        "model": MODEL_NAME,
        "case": case,
        "architecture": "Idefics3ForConditionalGeneration",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "prompt": prompt,
        "image": f"../{image_name}" if image_name == WIDE_IMAGE else f"../../images/{image_name}",
        "image_size": list(img.size),
        "image_mode": img.mode,
        "rendered_prompt": rendered,
        "expanded_prompt": expanded,
        "input_ids": ids.tolist(),
        "num_image_tokens": n_img,
        "image_seq_len": IMAGE_SEQ_LEN,
        "tile_rows": rows,
        "tile_cols": cols,
        "pixel_values": write_f32(case_dir / f"{case}.pixel_values.f32", inputs["pixel_values"][0]),
        "image_features": write_f32(case_dir / f"{case}.image_features.f32", features),
        **reference_fields(case_dir, case, runs, HEAD_MASK, lens, full_ids[0].tolist(), TOP_K),
    }
    write_json(case_dir / f"{case}.json", record)
    return record


@torch.no_grad()
def vision_position_ids() -> list[dict]:
    """Idefics3VisionEmbeddings' bucketized position ids for one full tile of n x n patches."""
    out = []
    for n in POSITION_GRIDS:
        vc = transformers.Idefics3VisionConfig(hidden_size=8, image_size=n * 2, patch_size=2, num_attention_heads=1)
        emb = Idefics3VisionEmbeddings(vc).eval()
        seen = {}

        def grab(module, args, _seen=seen):
            _seen["ids"] = args[0]

        handle = emb.position_embedding.register_forward_pre_hook(grab)
        emb(torch.zeros(1, 3, n * 2, n * 2), torch.ones(1, n, n, dtype=torch.bool))
        handle.remove()
        ids = seen["ids"][0].tolist()
        out.append({"patches_per_side": n, "is_arange": ids == list(range(n * n))})
    return out


def main() -> int:
    set_determinism()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    folder = OUT_DIR / "model"
    case_dir = OUT_DIR / "cases"
    folder.mkdir(parents=True)
    case_dir.mkdir(parents=True)
    make_wide_image(OUT_DIR / WIDE_IMAGE)

    tok = build_tokenizer()
    log(f"tokenizer: {len(tok)} tokens")
    config = make_config(tok)
    torch.manual_seed(SEED)
    model = Idefics3ForConditionalGeneration(config).eval()
    init_weights(model, SEED)
    assert model.lm_head.weight is not model.model.text_model.embed_tokens.weight, "lm_head is tied"
    model.save_pretrained(str(folder), safe_serialization=True)
    processor = make_processor(tok)
    processor.save_pretrained(str(folder))
    if not (folder / "chat_template.jinja").exists():
        (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")

    reloaded = load_model(folder)
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    proc = Idefics3Processor.from_pretrained(str(folder))
    assert type(proc.image_processor).__name__ == "Idefics3ImageProcessorPil", type(proc.image_processor)
    assert proc.image_seq_len == IMAGE_SEQ_LEN
    assert isinstance(proc.tokenizer, type(AutoTokenizer.from_pretrained(str(folder))))
    raw_tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    records = [run_case(reloaded, proc, raw_tok, *c, case_dir) for c in CASES]
    write_json(OUT_DIR / "vision_position_ids.json", {"cases": vision_position_ids()})

    for rec in records:
        log(f"{rec['case']:<10} S={len(rec['input_ids'])} tiles={rec['tile_rows']}x{rec['tile_cols']}+1 "
            f"greedy={rec['greedy_tokens']} gap={rec['greedy_min_top2_gap']:.4f} lens gap={rec['lens']['min_topk_gap']:.2e}")
    total, sha = tree_digest(OUT_DIR)
    log(f"{OUT_DIR.relative_to(REPO_ROOT)}: {total} bytes, tree sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
