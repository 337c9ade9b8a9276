#!/usr/bin/env python3
"""Build the reference fixtures that the TypeScript parity tests compare against.

Everything is created locally with fixed seeds (no hub access):

* a small LLaMA-style SentencePiece-BPE tokenizer (byte fallback), trained on a
  generated English corpus;
* five tiny checkpoints (LLaMA f32/f16, LLaVA GQA f32, LLaVA tied/MHA/list-feature-layer
  with the newer key layout, LLaVA GQA bf16 sharded);
* three deterministic test images;
* per case: input ids, pixel values, all hidden states, logits and 8 greedy tokens,
  computed by transformers on CPU from the saved folders.

Usage (from the repository root):

    python3 tools/reference/make_fixtures.py

The output folder test/fixtures/models/ is deleted and recreated on every run.
See tools/reference/README.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
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
import transformers  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizerFast,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "test" / "fixtures" / "models"
IMAGES_DIR = OUT_DIR / "images"

# A greedy step whose top-1/top-2 logit gap is below this is a near tie: a float32
# runtime could legitimately pick the other token. Every float32 case must clear it.
MIN_GAP = 1e-3
MAX_NEW_TOKENS = 8

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# LLaVA-1.5-style chat template (written for this project, not copied). Only for/if,
# selectattr('type', 'equalto', ...), the upper filter and string literals are used.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] != 'system' -%}{{ message['role'] | upper }}{{ ': ' }}{%- endif -%}"
    "{%- for item in message['content'] | selectattr('type', 'equalto', 'image') -%}"
    "{{ '<image>\\n' }}"
    "{%- endfor -%}"
    "{%- for item in message['content'] | selectattr('type', 'equalto', 'text') -%}"
    "{{ item['text'] }}{{ ' ' }}"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

LLAMA_PROMPTS = [
    ("short", "The red circle"),
    ("long", "USER: How many blue squares are in the picture, and what color is the big circle? ASSISTANT:"),
]

LLAVA_PROMPTS = [
    ("square", "square.png", "What color is the circle?"),
    ("landscape", "landscape.png", "How many squares are there?"),
    ("portrait", "portrait.png", "Describe the image."),
]

DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
DTYPE_SUFFIX = {torch.float16: "f16", torch.bfloat16: "bf16"}


# --------------------------------------------------------------------------- utils


def write_f32(path: Path, tensor: torch.Tensor) -> list[int]:
    arr = tensor.detach().to(torch.float32).cpu().contiguous().numpy().astype("<f4", copy=False)
    path.write_bytes(arr.tobytes(order="C"))
    return list(arr.shape)


# --------------------------------------------------------------------------- tokenizer


def make_corpus() -> list[str]:
    rng = random.Random(1234)
    colors = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray"]
    shapes = ["circle", "square", "triangle", "star", "rectangle", "dot", "line", "box"]
    numbers = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    places = ["top left", "top right", "bottom left", "bottom right", "middle", "center", "left side", "right side"]
    sizes = ["big", "small", "large", "tiny"]
    backgrounds = ["white", "black", "gray", "noisy", "dark", "light"]

    def plural(s: str) -> str:
        return s + ("es" if s.endswith("x") else "s")

    templates = [
        lambda: f"USER: What color is the {rng.choice(shapes)}? ASSISTANT: The {rng.choice(shapes)} is {rng.choice(colors)}.",
        lambda: (lambda s, n: f"USER: How many {plural(s)} are there? ASSISTANT: There are {n} {plural(s)}.")(
            rng.choice(shapes), rng.choice(numbers)
        ),
        lambda: f"USER: How many {plural(rng.choice(shapes))} are in the picture? ASSISTANT: I can see {rng.randint(2, 12)}.",
        lambda: f"USER: What shape is the {rng.choice(colors)} object? ASSISTANT: It is a {rng.choice(shapes)}.",
        lambda: f"USER: Describe the image. ASSISTANT: A {rng.choice(sizes)} {rng.choice(colors)} {rng.choice(shapes)} "
        f"next to a {rng.choice(colors)} {rng.choice(shapes)} on a {rng.choice(backgrounds)} background.",
        lambda: f"USER: Is there a {rng.choice(colors)} {rng.choice(shapes)}? ASSISTANT: Yes, there is one in the "
        f"{rng.choice(places)} corner.",
        lambda: f"USER: Where is the {rng.choice(colors)} {rng.choice(shapes)}? ASSISTANT: It is in the {rng.choice(places)}.",
        lambda: f"A photo of {rng.choice(numbers)} {rng.choice(colors)} {plural(rng.choice(shapes))}.",
        lambda: f"The {rng.choice(shapes)} is above the {rng.choice(shapes)}, and the {rng.choice(shapes)} is below it.",
        lambda: f"A {rng.choice(colors)} {rng.choice(shapes)} and a {rng.choice(colors)} {rng.choice(shapes)} "
        f"on a {rng.choice(backgrounds)} background.",
        lambda: f"What is the color of the {rng.choice(sizes)} {rng.choice(shapes)} in the {rng.choice(places)}?",
        lambda: f"Count the {plural(rng.choice(shapes))}: {', '.join(rng.sample(numbers, 3))}.",
        lambda: f"The picture shows {rng.randint(0, 20)} shapes, {rng.choice(colors)} and {rng.choice(colors)}.",
    ]
    lines = [rng.choice(templates)() for _ in range(420)]
    lines += [
        "USER: What is in the image? ASSISTANT: The image shows a picture with a few colored shapes.",
        "USER: What color is the big circle? ASSISTANT: The big circle is blue.",
        "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 100.",
    ]
    return lines


def build_tokenizer() -> LlamaTokenizerFast:
    corpus = make_corpus()

    # 1. Learn BPE merges on "▁"-normalized text, splitting words at "▁" (like SentencePiece,
    #    merges never cross a word start).
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        min_frequency=2,
        special_tokens=["<unk>", "<s>", "</s>"],
        show_progress=False,
    )
    trainer_tok.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]

    # 2. LLaMA id layout: <unk>=0, <s>=1, </s>=2, <0x00>..<0xFF>=3..258, then learned pieces.
    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<image>", "<pad>"]])

    hf_tok = LlamaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
    )
    assert hf_tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]
    return hf_tok


def fix_tokenizer_config(folder: Path) -> None:
    """transformers 5.23 drops `legacy` and `add_bos_token` from tokenizer_config.json.

    On reload, its LlamaTokenizer ignores tokenizer.json's normalizer/pre-tokenizer and rebuilds
    them as Metaspace(prepend_scheme = "always" if legacy else "first"). With "first" (the
    default when the key is missing), text that follows a special token (e.g. the "\\n" after
    <image>) no longer gets the "▁" prefix that tokenizer.json's Prepend normalizer adds, so
    transformers and tokenizer.json disagree. Writing "legacy": true makes them agree for every
    piece that does not itself start with a space (true for all fixture prompts; checked below).
    """
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["legacy"] = True
    cfg["add_bos_token"] = True
    cfg["add_eos_token"] = False
    write_json(path, dict(sorted(cfg.items())))


def check_tokenizer_agreement(folder: Path, texts: list[str]) -> None:
    """The transformers reload and the raw tokenizer.json must give the same ids."""
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    for text in texts:
        a = raw.encode(text).ids
        b = reloaded(text).input_ids
        assert a == b, f"tokenizer.json and transformers disagree on {text!r}:\n{a}\n{b}"
        assert a[0] == 1, "BOS must be added"


TOKENIZER_TEXTS = [
    "",
    "The red circle",
    "USER: <image>\nWhat color is the circle? ASSISTANT:",
    "ünïcode 🙂 and zebra",  # byte fallback (z and the accents are not in the learned vocabulary)
    "line one\nline two\ttab",
    "a</s>b<s>c",
    "  two leading spaces",  # transformers 5.23 and tokenizer.json disagree (see README)
    "<image> What",  # idem: text after a special token that starts with a space
]


def write_tokenizer_cases(folder: Path) -> None:
    """Ids for a few strings from both tokenizer.json (tokenizers library) and transformers."""
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(folder))
    cases = []
    for text in TOKENIZER_TEXTS:
        enc = raw.encode(text)
        hf_ids = hf(text).input_ids
        cases.append({
            "text": text,
            "tokenizer_json_ids": enc.ids,
            "tokenizer_json_tokens": enc.tokens,
            "transformers_ids": hf_ids,
            "agree": enc.ids == hf_ids,
            "decoded_skip_special": raw.decode(enc.ids, skip_special_tokens=True),
        })
    write_json(OUT_DIR / "tokenizer_cases.json", {
        "tokenizer": "llama-f32/model/tokenizer.json (identical in every model folder)",
        "transformers_version": transformers.__version__,
        "note": "transformers 5.23 rebuilds a LlamaTokenizer's pre-tokenizer as Metaspace(prepend_scheme="
                "'always' if legacy else 'first') instead of using tokenizer.json's Prepend/Replace normalizer; "
                "with legacy=true the two agree unless a text piece starts with a space.",
        "cases": cases,
    })


# --------------------------------------------------------------------------- images


def make_images() -> dict[str, Path]:
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    specs = [
        ("square.png", 64, 64, 11),
        ("landscape.png", 90, 50, 12),
        ("portrait.png", 45, 80, 13),
    ]
    palette = [(230, 40, 40), (40, 180, 60), (40, 80, 230), (240, 220, 30), (160, 60, 200), (250, 140, 20)]
    out = {}
    for name, w, h, seed in specs:
        rng = np.random.RandomState(seed)
        base = rng.randint(60, 200, size=(1, 1, 3))
        noise = rng.randint(-50, 51, size=(h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="RGB")
        draw = ImageDraw.Draw(img)
        # a circle, a square and a triangle at seeded positions, then a thin line
        cols = [palette[i] for i in rng.permutation(len(palette))[:4]]
        r = min(w, h) // 5
        cx, cy = int(rng.randint(r, w - r)), int(rng.randint(r, h - r))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=cols[0])
        s = min(w, h) // 4
        x0, y0 = int(rng.randint(0, w - s)), int(rng.randint(0, h - s))
        draw.rectangle([x0, y0, x0 + s, y0 + s], fill=cols[1])
        tx, ty = int(rng.randint(0, w - s)), int(rng.randint(s, h))
        draw.polygon([(tx, ty), (tx + s, ty), (tx + s // 2, ty - s)], fill=cols[2])
        draw.line([(0, int(rng.randint(0, h))), (w - 1, int(rng.randint(0, h)))], fill=cols[3], width=2)
        path = IMAGES_DIR / name
        img.save(path, format="PNG", optimize=False, compress_level=9)
        out[name] = path
    return out


# --------------------------------------------------------------------------- weights


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic, deliberately non-trivial init (norm weights != 1, biases != 0,
    attention logits of order 1, logits with a useful spread), independent of transformers'
    own init functions."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        seen = set()
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if id(p) in seen:
                continue  # tied parameter, already initialised under its other name
            seen.add(id(p))
            shape = p.shape
            if name.endswith("bias"):
                v = 0.1 * torch.randn(shape, generator=gen)
            elif p.dim() == 1 and "class_embedding" in name:
                v = 0.5 * torch.randn(shape, generator=gen)
            elif p.dim() == 1:  # RMSNorm / LayerNorm weights
                v = 1.0 + 0.2 * torch.randn(shape, generator=gen)
            elif "embed_tokens" in name or "position_embedding" in name:
                v = 0.5 * torch.randn(shape, generator=gen)
            elif "lm_head" in name:
                v = 2.0 * torch.randn(shape, generator=gen) / (shape[1] ** 0.5)
            else:  # Linear / Conv weights: fan-in scaled
                fan_in = int(np.prod(shape[1:]))
                v = torch.randn(shape, generator=gen) / (fan_in**0.5)
            p.copy_(v.to(p.dtype))


def llama_text_config(vocab_size: int, kv_heads: int, tie: bool, head_dim: int = 12) -> LlamaConfig:
    # head_dim 12 (= 48 / 4) takes the runtime's unfused attention; 16, a multiple of 8, takes
    # onnxruntime's fused GroupQueryAttention, so the fixtures check both against transformers.
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=48,
        head_dim=head_dim,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        intermediate_size=96,
        hidden_act="silu",
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
    )


def clip_vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=42,
        patch_size=7,
        num_channels=3,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
    )


def llava_config(tok, tie: bool, kv_heads: int, feature_layer, strategy: str, head_dim: int = 12) -> LlavaConfig:
    image_token_id = tok.convert_tokens_to_ids("<image>")
    n_patches = (42 // 7) ** 2
    return LlavaConfig(
        vision_config=clip_vision_config(),
        text_config=llama_text_config(len(tok), kv_heads, tie, head_dim),
        image_token_id=image_token_id,
        image_seq_length=n_patches + (1 if strategy == "full" else 0),
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy=strategy,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=tie,
    )


def safetensors_keys(folder: Path) -> list[str]:
    keys = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            keys.extend(h.keys())
    return sorted(keys)


# transformers 5.23 saves LLaVA with the legacy top-level names but a flattened CLIP tower:
#   language_model.model.*, language_model.lm_head.*, vision_tower.embeddings.*, multi_modal_projector.*
# Checkpoints on the hub use one of two other layouts, both of which 5.23 still loads:
#   hub legacy (llava-hf/llava-1.5-*):  language_model.model.*, language_model.lm_head.*,
#                                      vision_tower.vision_model.*, multi_modal_projector.*
#   newer (transformers 4.52 - 4.57):  model.language_model.*, lm_head.*,
#                                      model.vision_tower.vision_model.*, model.multi_modal_projector.*


def hub_legacy_key(key: str) -> str:
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key[len("vision_tower."):]
    if key.startswith(("language_model.model.", "language_model.lm_head.", "multi_modal_projector.",
                       "vision_tower.vision_model.")):
        return key
    raise ValueError(f"unexpected key {key}")


def new_layout_key(key: str) -> str:
    key = hub_legacy_key(key)
    for old, new in [
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ]:
        if key.startswith(old):
            return new + key[len(old):]
    raise ValueError(f"unexpected key {key}")


def rewrite_keys(folder: Path, rename) -> None:
    """Rename the tensors of a saved checkpoint in place (single file or shards + index)."""
    index_path = folder / "model.safetensors.index.json"
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        tensors = {}
        with safe_open(str(path), "pt") as h:
            metadata = h.metadata()
            for k in h.keys():
                tensors[rename(k)] = h.get_tensor(k)
        path.unlink()
        save_file(dict(sorted(tensors.items())), str(path), metadata=metadata)
    if index_path.exists():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index["weight_map"] = dict(sorted((rename(k), v) for k, v in index["weight_map"].items()))
        write_json(index_path, index)
    else:
        assert [f.name for f in files] == ["model.safetensors"], files


def check_same_weights(folder: Path, source, dtype: torch.dtype):
    """Load the folder with transformers and compare every parameter with the source model
    (rounded through the checkpoint dtype). Returns the loaded float32 model."""
    reloaded = load_model(LlavaForConditionalGeneration, folder, torch.float32)
    sd_a, sd_b = source.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k].to(dtype).to(torch.float32), sd_b[k]), f"{folder}: {k} differs"
    return reloaded


# --------------------------------------------------------------------------- reference runs


def load_model(cls, folder: Path, dtype: torch.dtype):
    model, info = cls.from_pretrained(
        str(folder), dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    assert not bad, f"loading {folder} reported {bad}"
    model.eval()
    return model


@torch.no_grad()
def run_case(model, inputs: dict) -> dict:
    out = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
    hidden = torch.stack([h[0] for h in out.hidden_states], dim=0)  # [L+1, S, H]
    logits = out.logits[0]  # [S, V]
    # logit-lens convention: the last hidden state is already final-normed, logits = lm_head(h[L])
    assert torch.equal(model.get_output_embeddings()(out.hidden_states[-1])[0], logits)
    gen = model.generate(
        **inputs,
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    prompt_len = inputs["input_ids"].shape[1]
    new_tokens = gen.sequences[0, prompt_len:].tolist()
    gaps = []
    for step_logits in gen.logits:
        top2 = torch.topk(step_logits[0].float(), 2).values
        gaps.append(float(top2[0] - top2[1]))
    assert int(torch.argmax(logits[-1])) == new_tokens[0], "forward and generate disagree on the first token"
    return {
        "hidden": hidden,
        "logits": logits,
        "greedy_tokens": new_tokens,
        "greedy_min_top2_gap": min(gaps),
    }


def eager_everywhere(model) -> None:
    impls = {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}, f"attention implementations in use: {impls}"


def write_case(
    model_name: str,
    case: str,
    architecture: str,
    compute_dtype: torch.dtype,
    prompt: str,
    rendered_prompt: str,
    image_rel: str | None,
    inputs: dict,
    result: dict,
    extra: dict,
) -> dict:
    case_dir = OUT_DIR / model_name / "cases"
    case_dir.mkdir(parents=True, exist_ok=True)
    pv = None
    if "pixel_values" in inputs:
        pv_file = f"{case}.pixel_values.f32"
        pv = {"file": pv_file, "shape": write_f32(case_dir / pv_file, inputs["pixel_values"])}
    hs_file = f"{case}.hidden_states.f32"
    lg_file = f"{case}.logits.f32"
    record = {
        "model": model_name,
        "case": case,
        "architecture": architecture,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": DTYPE_NAMES[compute_dtype],
        **extra,
        "prompt": prompt,
        "image": image_rel,
        "rendered_prompt": rendered_prompt,
        "input_ids": inputs["input_ids"][0].tolist(),
        "pixel_values": pv,
        "hidden_states": {"file": hs_file, "shape": write_f32(case_dir / hs_file, result["hidden"])},
        "logits": {"file": lg_file, "shape": write_f32(case_dir / lg_file, result["logits"])},
        "greedy_tokens": result["greedy_tokens"],
        "greedy_min_top2_gap": result["greedy_min_top2_gap"],
    }
    write_json(case_dir / f"{case}.json", record)
    return record


def check_gap(record: dict, eos_id: int) -> None:
    tag = f"{record['model']}/{record['case']}"
    if record["compute_dtype"] == "float32":
        assert record["greedy_min_top2_gap"] > MIN_GAP, f"{tag}: near tie {record['greedy_min_top2_gap']}"
        assert len(record["greedy_tokens"]) == MAX_NEW_TOKENS and eos_id not in record["greedy_tokens"], (
            f"{tag}: generation stopped early {record['greedy_tokens']}"
        )


# --------------------------------------------------------------------------- checkpoints


def make_llama(name: str, tok, seed: int, save_dtype: torch.dtype, summary: list) -> None:
    folder = OUT_DIR / name / "model"
    folder.mkdir(parents=True)
    config = llama_text_config(len(tok), kv_heads=2, tie=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    init_weights(model, seed)
    model.to(save_dtype).save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    fix_tokenizer_config(folder)
    assert not (folder / "chat_template.jinja").exists() and not (folder / "chat_template.json").exists()
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    check_tokenizer_agreement(folder, [p for _, p in LLAMA_PROMPTS])

    reload_tok = AutoTokenizer.from_pretrained(str(folder))
    dtypes = [torch.float32] + ([save_dtype] if save_dtype != torch.float32 else [])
    for dtype in dtypes:
        model = load_model(LlamaForCausalLM, folder, dtype)
        eager_everywhere(model)
        for case, prompt in LLAMA_PROMPTS:
            inputs = dict(reload_tok(prompt, return_tensors="pt"))
            result = run_case(model, inputs)
            case_name = case if dtype == torch.float32 else f"{case}-{DTYPE_SUFFIX[dtype]}"
            rec = write_case(
                name, case_name, "LlamaForCausalLM", dtype, prompt, prompt, None, inputs, result,
                {"checkpoint_dtype": DTYPE_NAMES[save_dtype]},
            )
            check_gap(rec, tok.eos_token_id)
            summary.append(rec)


def make_processor(tok, strategy: str) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 42},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 42, "width": 42},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=7,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )


def to_hub_processor_layout(folder: Path) -> None:
    """Rewrite transformers 5.23's processor files into the layout of hub checkpoints such as
    llava-hf/llava-1.5-7b-hf: a flat preprocessor_config.json for the image processor, a
    processor_config.json with only the processor's own fields, and chat_template.json.

    transformers 5.23 itself writes a single processor_config.json with the image processor
    nested under "image_processor", and chat_template.jinja; it reads both layouts.
    """
    pc_path = folder / "processor_config.json"
    pc = json.loads(pc_path.read_text(encoding="utf-8"))
    image_processor = pc.pop("image_processor")
    image_processor["processor_class"] = pc["processor_class"]
    write_json(folder / "preprocessor_config.json", dict(sorted(image_processor.items())))
    write_json(pc_path, dict(sorted(pc.items())))
    jinja = folder / "chat_template.jinja"
    write_json(folder / "chat_template.json", {"chat_template": jinja.read_text(encoding="utf-8")})
    jinja.unlink()


def save_llava_folder(
    model, processor, folder: Path, save_dtype: torch.dtype, shard: str | None, hub_layout: bool
) -> None:
    folder.mkdir(parents=True)
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    to_save = model if save_dtype == torch.float32 else copy.deepcopy(model).to(save_dtype)
    to_save.save_pretrained(str(folder), **kwargs)
    processor.save_pretrained(str(folder))
    fix_tokenizer_config(folder)
    assert not (folder / "preprocessor_config.json").exists()
    assert "image_processor" in json.loads((folder / "processor_config.json").read_text())
    if hub_layout:
        to_hub_processor_layout(folder)


def check_processor_reload(folder: Path, in_memory: LlavaProcessor, images: dict[str, Path]) -> LlavaProcessor:
    # backend="pil": without it transformers 5 picks the torchvision CLIPImageProcessor whenever
    # torchvision is installed (the folder itself cannot ask for PIL).
    proc = AutoProcessor.from_pretrained(str(folder), backend="pil")
    assert type(proc).__name__ == "LlavaProcessor", type(proc)
    assert type(proc.image_processor).__name__ == "CLIPImageProcessorPil", type(proc.image_processor)
    assert proc.chat_template == CHAT_TEMPLATE, "chat template did not round-trip"
    for _, img_name, prompt in LLAVA_PROMPTS:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        a = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        b = in_memory.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert a == b
        img = Image.open(images[img_name])
        x = proc(text=a, images=img, return_tensors="pt")
        y = in_memory(text=b, images=img, return_tensors="pt")
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["pixel_values"], y["pixel_values"])
    return proc


def llava_cases(name: str, folder: Path, proc, images, save_dtype, eos_id: int, summary: list, reference_model=None):
    dtypes = [torch.float32] + ([save_dtype] if save_dtype != torch.float32 else [])
    raw_tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for dtype in dtypes:
        model = load_model(LlavaForConditionalGeneration, folder, dtype)
        eager_everywhere(model)
        for case, img_name, prompt in LLAVA_PROMPTS:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            rendered = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            img = Image.open(images[img_name])
            inputs = dict(proc(text=rendered, images=img, return_tensors="pt"))
            # the expanded prompt tokenized by the raw tokenizer.json must agree with transformers
            n_img = int((inputs["input_ids"] == model.config.image_token_id).sum())
            expanded = rendered.replace("<image>", "<image>" * n_img)
            assert raw_tok.encode(expanded).ids == inputs["input_ids"][0].tolist()
            model_inputs = dict(inputs)
            if dtype != torch.float32:
                # native low-precision compute: the model casts nothing itself, so feed it pixel
                # values in its dtype (the fixture still records the processor's float32 output)
                model_inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            result = run_case(model, model_inputs)
            if reference_model is not None and dtype == torch.float32:
                with torch.no_grad():
                    ref = reference_model(**inputs, output_hidden_states=True, use_cache=False)
                assert torch.equal(ref.logits[0], result["logits"]), f"{name}: reloaded folder differs from source"
            case_name = case if dtype == torch.float32 else f"{case}-{DTYPE_SUFFIX[dtype]}"
            rec = write_case(
                name, case_name, "LlavaForConditionalGeneration", dtype, prompt, rendered,
                f"../../images/{img_name}", inputs, result,
                {"checkpoint_dtype": DTYPE_NAMES[save_dtype], "num_image_tokens": n_img},
            )
            check_gap(rec, eos_id)
            summary.append(rec)


def make_llava_gqa(tok, images, summary: list) -> None:
    seed = 2001
    config = llava_config(tok, tie=False, kv_heads=2, feature_layer=-2, strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.set_attn_implementation("eager")
    init_weights(model, seed)
    processor = make_processor(tok, "default")

    # 3. llava-gqa-f32: exactly what transformers 5.23 saves
    folder = OUT_DIR / "llava-gqa-f32" / "model"
    save_llava_folder(model, processor, folder, torch.float32, None, hub_layout=True)
    keys = safetensors_keys(folder)
    assert "language_model.lm_head.weight" in keys, "untied model must store its lm_head"
    assert "vision_tower.embeddings.patch_embedding.weight" in keys, "5.23 save layout changed"
    check_same_weights(folder, model, torch.float32)
    proc = check_processor_reload(folder, processor, images)
    llava_cases("llava-gqa-f32", folder, proc, images, torch.float32, tok.eos_token_id, summary, reference_model=model)

    # 5. llava-gqa-bf16: same weights, bfloat16, sharded, keys in the hub legacy layout
    folder = OUT_DIR / "llava-gqa-bf16" / "model"
    save_llava_folder(model, processor, folder, torch.bfloat16, "100KB", hub_layout=True)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").exists(), shards
    rewrite_keys(folder, hub_legacy_key)
    keys = safetensors_keys(folder)
    assert "vision_tower.vision_model.embeddings.patch_embedding.weight" in keys
    index_keys = sorted(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"])
    assert index_keys == keys
    check_same_weights(folder, model, torch.bfloat16)
    proc = check_processor_reload(folder, processor, images)
    llava_cases("llava-gqa-bf16", folder, proc, images, torch.bfloat16, tok.eos_token_id, summary)


def make_llava_tied(tok, images, summary: list) -> None:
    seed = 2018
    config = llava_config(tok, tie=True, kv_heads=4, feature_layer=[-3, -1], strategy="full", head_dim=16)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.set_attn_implementation("eager")
    init_weights(model, seed)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight, "lm_head is not tied"
    assert model.model.multi_modal_projector.linear_1.in_features == 2 * 32, "list feature layer not concatenated"
    processor = make_processor(tok, "full")

    folder = OUT_DIR / "llava-tied-f32" / "model"
    save_llava_folder(model, processor, folder, torch.float32, None, hub_layout=False)
    legacy_keys = safetensors_keys(folder)
    assert not any("lm_head" in k for k in legacy_keys), "tied lm_head must not be stored"
    rewrite_keys(folder, new_layout_key)
    keys = safetensors_keys(folder)
    assert all(k.startswith(("model.language_model.", "model.vision_tower.vision_model.",
                             "model.multi_modal_projector.")) for k in keys), keys
    assert len(keys) == len(legacy_keys)

    reloaded = check_same_weights(folder, model, torch.float32)
    assert reloaded.lm_head.weight is reloaded.model.language_model.embed_tokens.weight, "reload is not tied"

    # the list vision_feature_layer really concatenates hidden_states[-3] and [-1] (no CLS drop)
    with torch.no_grad():
        pv = torch.randn(1, 3, 42, 42, generator=torch.Generator().manual_seed(5))
        vt = model.model.vision_tower(pv, output_hidden_states=True)
        manual = model.model.multi_modal_projector(torch.cat([vt.hidden_states[-3], vt.hidden_states[-1]], dim=-1))
        feats = model.model.get_image_features(pixel_values=pv).pooler_output[0]
        assert feats.shape == (37, 48) and torch.allclose(feats, manual[0], atol=0, rtol=0)

    proc = check_processor_reload(folder, processor, images)
    llava_cases("llava-tied-f32", folder, proc, images, torch.float32, tok.eos_token_id, summary, reference_model=model)


# --------------------------------------------------------------------------- main


def main() -> int:
    set_determinism()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)

    tok = build_tokenizer()
    log(f"tokenizer: {len(tok)} tokens; <unk>={tok.unk_token_id} <s>={tok.bos_token_id} </s>={tok.eos_token_id} "
        f"<image>={tok.convert_tokens_to_ids('<image>')} <pad>={tok.pad_token_id}")
    images = make_images()

    summary: list = []
    make_llama("llama-f32", tok, 1006, torch.float32, summary)
    make_llama("llama-f16", tok, 1011, torch.float16, summary)
    write_tokenizer_cases(OUT_DIR / "llama-f32" / "model")
    make_llava_gqa(tok, images, summary)
    make_llava_tied(tok, images, summary)

    for rec in summary:
        log(
            f"{rec['model']:>15}/{rec['case']:<14} {rec['compute_dtype']:<8} S={len(rec['input_ids']):<3} "
            f"hidden={rec['hidden_states']['shape']} logits={rec['logits']['shape']} "
            f"greedy={rec['greedy_tokens']} gap={rec['greedy_min_top2_gap']:.4f}"
        )
    tok_files = {(OUT_DIR / m / "model" / "tokenizer.json").read_bytes() for m in
                 ["llama-f32", "llama-f16", "llava-gqa-f32", "llava-tied-f32", "llava-gqa-bf16"]}
    assert len(tok_files) == 1, "tokenizer.json differs between model folders"
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in sorted(OUT_DIR.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(OUT_DIR)).encode() + b"\0" + p.read_bytes())
    log(f"test/fixtures/models: {total} bytes ({total / 1e6:.2f} MB), {sum(1 for p in OUT_DIR.rglob('*') if p.is_file())} files")
    log(f"tree sha256: {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
