#!/usr/bin/env python3
"""Reference fixtures for Qwen2-VL (Qwen2VLForConditionalGeneration), made with transformers.

Everything is created locally with fixed seeds (no hub access):

* a byte-level BPE tokenizer in Qwen2's layout (Qwen2Tokenizer: NFC, the Qwen split regex, byte
  level), trained on make_fixtures.py's generated corpus, plus Qwen's special tokens;
* a tiny random Qwen2VLForConditionalGeneration (F32, tied embeddings, M-RoPE) saved with
  save_pretrained together with its processor (Qwen2VLImageProcessorPil, a Qwen2-VL-style chat
  template written for this project);
* per case (a landscape and a portrait image from test/fixtures/images): rendered prompt,
  expanded input_ids, pixel_values (the flattened patches), image_grid_thw, M-RoPE position ids
  and rope delta, the merged image features, all hidden states, logits, 8 greedy tokens, and the
  logit-lens statistics over prompt + generated tokens;
* smart_resize results for a list of sizes (Python's round-half-even, min/max pixel branches).

Usage (from the repository root):

    python3 tools/reference/make_qwen2vl_fixtures.py

The output folder test/fixtures/qwen2vl-tiny/ is deleted and recreated on every run (it lives
outside test/fixtures/models/, which make_fixtures.py deletes). Deterministic: two runs give
byte-identical files.
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

import torch  # noqa: E402

from common import log, set_determinism, write_json  # noqa: E402
from vlm_reference import byte_level_bpe, lens_stats, load_eager, reference_fields, reference_runs, tree_digest, write_f32  # noqa: E402
from make_fixtures import MAX_NEW_TOKENS, MIN_GAP, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, init_weights, make_corpus  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

# Without torchvision transformers cannot name the video processor's base class, and
# ProcessorMixin checks every attribute's class, the absent (None) video processor included.
# Images never touch the video processor, so that one check is skipped.
_check_class = transformers.processing_utils.ProcessorMixin.check_argument_for_proper_class


def _check_class_without_video(self, argument_name, argument):
    if argument_name == "video_processor" and argument is None:
        return None
    return _check_class(self, argument_name, argument)


transformers.processing_utils.ProcessorMixin.check_argument_for_proper_class = _check_class_without_video

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "test" / "fixtures" / "qwen2vl-tiny"
IMAGES_DIR = REPO_ROOT / "test" / "fixtures" / "images"
MODEL_NAME = "qwen2vl-tiny"

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL-style chat template (written for this project, not copied): a default system turn,
# images as <|vision_start|><|image_pad|><|vision_end|>, the generation prompt "assistant\n".
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

CASES = [
    # (case, image file, prompt): a landscape photo (120x80 -> 56x84 by the max_pixels branch, 4x6 patches) and a
    # portrait noise image small enough to take smart_resize's min_pixels branch.
    ("landscape", "photo-120x80.png", "What color is the circle?"),
    ("portrait", "noise-40x90.png", "Describe the image."),
]

MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 8
SMART_RESIZE_SIZES = [
    (70, 70), (70, 98), (42, 42), (14, 14), (80, 120), (90, 40), (61, 97), (200, 300), (1000, 750),
    (27, 500), (126, 126), (98, 70), (3000, 20), (55, 57), (83, 85), (112, 84),
]

TOP_K = 10
HEAD_MASK = {0: [1], 1: [0, 3]}  # decoder layer -> heads zeroed before o_proj (0-based)
VISION_SEED = 3003


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with Qwen2-VL's special tokens."""
    corpus = make_corpus() + [
        "What color is the circle? Describe the image. You are a helpful assistant.",
        "system user assistant",
    ]
    return byte_level_bpe(corpus, SPECIAL_TOKENS, bos=None, eos="<|im_end|>", pad="<|endoftext|>")


# --------------------------------------------------------------------------- model


def make_config(tok) -> Qwen2VLConfig:
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = len(tok)
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": None,
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "hidden_act": "quick_gelu",
            "mlp_ratio": 2,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def make_processor(tok) -> Qwen2VLProcessor:
    image_processor = Qwen2VLImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE)


def load_model(folder: Path):
    return load_eager(Qwen2VLForConditionalGeneration, folder)


# --------------------------------------------------------------------------- reference runs


@torch.no_grad()
def run_case(model, proc, raw_tok: Tokenizer, case: str, image_name: str, prompt: str, case_dir: Path) -> dict:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    rendered = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    img = Image.open(IMAGES_DIR / image_name).convert("RGB")
    inputs = dict(proc(text=rendered, images=img, return_tensors="pt"))
    ids = inputs["input_ids"][0]
    cfg = model.config
    n_img = int((ids == cfg.image_token_id).sum())
    grid = inputs["image_grid_thw"]
    assert n_img == int(grid.prod()) // 4, (n_img, grid)
    expanded = rendered.replace("<|image_pad|>", "<|image_pad|>" * n_img)
    assert raw_tok.encode(expanded).ids == ids.tolist(), "tokenizer.json and transformers disagree"

    position_ids, deltas = model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=grid
    )
    features = model.model.get_image_features(inputs["pixel_values"], grid).pooler_output[0]

    runs = reference_runs(model, inputs, model.model.language_model.layers, HEAD_MASK, MAX_NEW_TOKENS, MIN_GAP)
    greedy = runs["greedy"]

    # The lens over prompt + generated tokens: one forward over the whole sequence (its M-RoPE
    # positions equal the decode steps' cache_position + rope_delta).
    full_ids = torch.cat([ids, torch.tensor(greedy[:-1])]).unsqueeze(0)
    full = dict(inputs)
    full["input_ids"] = full_ids
    full["attention_mask"] = torch.ones_like(full_ids)
    full["mm_token_type_ids"] = torch.cat(
        [inputs["mm_token_type_ids"], torch.zeros(1, len(greedy) - 1, dtype=inputs["mm_token_type_ids"].dtype)], dim=1
    )
    full_pos, _ = model.model.get_rope_index(full_ids, mm_token_type_ids=full["mm_token_type_ids"], image_grid_thw=grid)
    S = ids.shape[0]
    expected_decode = torch.arange(S, full_ids.shape[1]) + int(deltas[0, 0])
    assert torch.equal(full_pos[:, 0, S:], expected_decode.expand(3, -1)), "decode positions are not cache_position + rope_delta"
    out_full = model(**full, output_hidden_states=True, use_cache=False, return_dict=True)
    hidden_full = torch.stack([h[0] for h in out_full.hidden_states], dim=0)
    lens = lens_stats(model.model.language_model.norm, model.lm_head, hidden_full, TOP_K)

    record = {
        "model": MODEL_NAME,
        "case": case,
        "architecture": "Qwen2VLForConditionalGeneration",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "prompt": prompt,
        "image": f"../../images/{image_name}",
        "image_size": list(img.size),
        "rendered_prompt": rendered,
        "input_ids": ids.tolist(),
        "num_image_tokens": n_img,
        "image_grid_thw": grid[0].tolist(),
        "position_ids": position_ids[:, 0].tolist(),
        "rope_delta": int(deltas[0, 0]),
        "pixel_values": write_f32(case_dir / f"{case}.pixel_values.f32", inputs["pixel_values"]),
        "image_features": write_f32(case_dir / f"{case}.image_features.f32", features),
        **reference_fields(case_dir, case, runs, HEAD_MASK, lens, full_ids[0].tolist(), TOP_K),
    }
    write_json(case_dir / f"{case}.json", record)
    return record


def main() -> int:
    set_determinism()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    folder = OUT_DIR / "model"
    case_dir = OUT_DIR / "cases"
    folder.mkdir(parents=True)
    case_dir.mkdir(parents=True)

    tok = build_tokenizer()
    log(f"tokenizer: {len(tok)} tokens; specials {dict(zip(SPECIAL_TOKENS, tok.convert_tokens_to_ids(SPECIAL_TOKENS)))}")
    config = make_config(tok)
    torch.manual_seed(VISION_SEED)
    model = Qwen2VLForConditionalGeneration(config).eval()
    init_weights(model, VISION_SEED)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight, "lm_head is not tied"
    model.save_pretrained(str(folder), safe_serialization=True)
    processor = make_processor(tok)
    # ProcessorMixin.save_pretrained cannot save a processor without its video processor, so the
    # parts are saved one by one, in the hub layout (preprocessor_config.json, tokenizer files,
    # chat_template.jinja), and reloaded the same way.
    processor.tokenizer.save_pretrained(str(folder))
    processor.image_processor.save_pretrained(str(folder))
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")

    reloaded = load_model(folder)
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    proc = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(str(folder)),
        tokenizer=AutoTokenizer.from_pretrained(str(folder)),
        chat_template=(folder / "chat_template.jinja").read_text(encoding="utf-8"),
    )
    assert proc.image_processor.to_dict() == processor.image_processor.to_dict()
    assert type(proc.image_processor).__name__ == "Qwen2VLImageProcessorPil", type(proc.image_processor)
    raw_tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    records = [run_case(reloaded, proc, raw_tok, *c, case_dir) for c in CASES]
    sizes = [
        {"height": h, "width": w, "resized": list(smart_resize(h, w, 28, MIN_PIXELS, MAX_PIXELS))}
        for h, w in SMART_RESIZE_SIZES
    ]
    # Python's round: 70 / 28 = 2.5 rounds to 2 (ties to even); Math.round would give 3.
    assert smart_resize(70, 98, 28, 28 * 28, 28 * 28 * 100) == (56, 112)
    write_json(OUT_DIR / "smart_resize.json", {"factor": 28, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "cases": sizes})

    for rec in records:
        log(f"{rec['case']:<10} S={len(rec['input_ids'])} grid={rec['image_grid_thw']} delta={rec['rope_delta']} "
            f"greedy={rec['greedy_tokens']} gap={rec['greedy_min_top2_gap']:.4f} lens gap={rec['lens']['min_topk_gap']:.2e}")
    total, sha = tree_digest(OUT_DIR)
    log(f"{OUT_DIR.relative_to(REPO_ROOT)}: {total} bytes, tree sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
