#!/usr/bin/env python3
"""Reference numbers for half-precision compute, computed by transformers itself in float16 and
in bfloat16 on the CPU, for one case of each architecture the runtime supports.

Usage (from the repository root; no network, no hub access):

    python3 tools/reference/make_half_fixtures.py

It reads the committed tiny checkpoints and their float32 case files (read only: input ids,
the processor's pixel values and the image grids) and deletes and recreates
test/fixtures/half/ on every run. Deterministic: two runs give byte-identical files.

Per model and dtype, the checkpoint is loaded with from_pretrained(folder, dtype=<dtype>,
attn_implementation="eager"): transformers rounds float32 weights to the dtype (round to
nearest even, as a Cast does) and computes in it, with its softmaxes in float32. The inputs are
exactly the float32 case's; before anything is recorded the float32 model is run on them and
must reproduce the float32 case's hidden states, which proves the inputs are the same.

Recorded per case (<case>-<f16|bf16>.*, tensors as float32: every half value widened exactly):
* hidden_states [L+1, S, H] and logits [S, V] of the prompt's forward;
* greedy_tokens (generate, 8 new tokens, do_sample=False, in the dtype) and each step's top-1
  minus top-2 logit;
* the lens over the prompt's positions: z[l] = lm_head(final_norm(h[l])) (h[L] is already normed)
  computed in the dtype, as the model's own head would, then widened to float32 for
  log_softmax: top-10 ids and probabilities (lower id first on ties), entropy, KL to the last
  layer.
"""

from __future__ import annotations

import hashlib
import json
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
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Idefics3ForConditionalGeneration,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)
from transformers.utils import logging as hf_logging  # noqa: E402
from vlm_reference import write_f32  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "test" / "fixtures"
OUT_DIR = FIXTURES / "half"
TOP_K = 10
MAX_NEW_TOKENS = 8

# (name, model folder, float32 case file, class)
CASES = [
    ("llama-f32", "models/llama-f32/model", "models/llama-f32/cases/long.json", LlamaForCausalLM),
    ("llava-gqa-f32", "models/llava-gqa-f32/model", "models/llava-gqa-f32/cases/square.json", LlavaForConditionalGeneration),
    ("llava-tied-f32", "models/llava-tied-f32/model", "models/llava-tied-f32/cases/landscape.json", LlavaForConditionalGeneration),
    ("qwen2vl-tiny", "qwen2vl-tiny/model", "qwen2vl-tiny/cases/landscape.json", Qwen2VLForConditionalGeneration),
    ("idefics3-tiny", "idefics3-tiny/model", "idefics3-tiny/cases/landscape.json", Idefics3ForConditionalGeneration),
]
DTYPES = [("float16", "f16", torch.float16), ("bfloat16", "bf16", torch.bfloat16)]


def read_f32(case_file: Path, ref: dict) -> torch.Tensor:
    data = np.fromfile(case_file.parent / ref["file"], dtype="<f4").reshape(ref["shape"])
    return torch.from_numpy(data.copy())


def load(cls, folder: Path, dtype: torch.dtype):
    model, info = cls.from_pretrained(str(folder), dtype=dtype, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading {folder} reported {bad}"
    model.eval()
    return model


def inputs_of(case: dict, case_file: Path, model, dtype: torch.dtype) -> dict:
    """The float32 case's inputs, pixel values cast to `dtype` (as transformers' users do)."""
    ids = torch.tensor([case["input_ids"]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    arch = case["architecture"]
    if case.get("pixel_values"):
        pixels = read_f32(case_file, case["pixel_values"]).to(dtype)
        if arch == "LlavaForConditionalGeneration":
            inputs["pixel_values"] = pixels
        elif arch == "Qwen2VLForConditionalGeneration":
            inputs["pixel_values"] = pixels
            inputs["image_grid_thw"] = torch.tensor([case["image_grid_thw"]])
            inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).to(torch.int64)
        elif arch == "Idefics3ForConditionalGeneration":
            inputs["pixel_values"] = pixels.unsqueeze(0)
            inputs["pixel_attention_mask"] = torch.ones(pixels.shape[0], pixels.shape[2], pixels.shape[3], dtype=torch.bool).unsqueeze(0)
        else:
            raise AssertionError(arch)
    return inputs


def head_of(model):
    """The final norm and the unembedding, whatever the architecture calls them."""
    inner = model.model
    lm = getattr(inner, "language_model", None) or getattr(inner, "text_model", None) or inner
    return lm.norm, model.lm_head


@torch.no_grad()
def forward(model, inputs: dict):
    out = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
    return torch.stack([h[0] for h in out.hidden_states], dim=0), out.logits[0]


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@torch.no_grad()
def lens(model, hidden: torch.Tensor) -> dict:
    norm, head = head_of(model)
    L = hidden.shape[0] - 1
    z = torch.stack([head(norm(hidden[l])) if l < L else head(hidden[l]) for l in range(L + 1)]).float()
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kl = (p[L:] * (logp[L:] - logp)).sum(-1)
    pn = p.numpy()
    order = np.lexsort((np.broadcast_to(np.arange(pn.shape[-1]), pn.shape), -pn), axis=-1)[..., :TOP_K]
    return {"topk_ids": torch.from_numpy(order.astype(np.float32)), "topk_probs": torch.from_numpy(np.take_along_axis(pn, order, axis=-1).copy()), "entropy": entropy, "kl": kl}


@torch.no_grad()
def run(name: str, folder: Path, case_file: Path, cls) -> list[str]:
    case = json.loads(case_file.read_text())
    # the inputs are the float32 case's: the float32 model on them reproduces its hidden states
    f32 = load(cls, folder, torch.float32)
    hidden32, logits32 = forward(f32, inputs_of(case, case_file, f32, torch.float32))
    expected = read_f32(case_file, case["hidden_states"])
    assert rel_error(hidden32, expected) < 1e-5, f"{name}: the float32 run on the rebuilt inputs differs from its case ({rel_error(hidden32, expected)})"
    del f32

    out_dir = OUT_DIR / name
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dtype_name, suffix, dtype in DTYPES:
        model = load(cls, folder, dtype)
        inputs = inputs_of(case, case_file, model, dtype)
        hidden, logits = forward(model, inputs)
        gen = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
        greedy = gen.sequences[0, len(case["input_ids"]):].tolist()
        gaps = []
        for s in gen.logits:
            top2 = torch.topk(s[0].float(), 2).values
            gaps.append(float(top2[0] - top2[1]))
        stats = lens(model, hidden)
        stem = f"{case['case']}-{suffix}"
        record = {
            "model": name,
            "case": stem,
            "architecture": case["architecture"],
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "compute_dtype": dtype_name,
            "checkpoint_dtype": "float32",
            "model_dir": os.path.relpath(folder, out_dir),
            "float32_case": os.path.relpath(case_file, out_dir),
            "prompt": case["prompt"],
            "image": None if case.get("image") is None else os.path.relpath((case_file.parent / case["image"]).resolve(), out_dir),
            "input_ids": case["input_ids"],
            "greedy_tokens": greedy,
            "greedy_top2_gaps": gaps,
            "float32_greedy_tokens": case["greedy_tokens"],
            "hidden_states": write_f32(out_dir / f"{stem}.hidden_states.f32", hidden),
            "logits": write_f32(out_dir / f"{stem}.logits.f32", logits),
            "lens": {
                "top_k": TOP_K,
                **{k: write_f32(out_dir / f"{stem}.lens_{k}.f32", v) for k, v in stats.items()},
            },
        }
        write_json(out_dir / f"{stem}.json", record)
        written.append(f"{name}/{stem}.json")
        log(
            f"{name}/{stem}: vs float32 hidden {rel_error(hidden, expected):.2e} logits {rel_error(logits, read_f32(case_file, case['logits'])):.2e}, "
            f"greedy {'=' if greedy == case['greedy_tokens'] else '!='} float32's, smallest top-2 gap {min(gaps):.4f}"
        )
        del model
    return written


def main() -> int:
    set_determinism()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    cases = []
    for name, folder, case_file, cls in CASES:
        cases += run(name, FIXTURES / folder, FIXTURES / case_file, cls)
    write_json(OUT_DIR / "index.json", {"transformers_version": transformers.__version__, "torch_version": torch.__version__, "top_k": TOP_K, "cases": cases})
    digest = hashlib.sha256()
    total = 0
    for f in sorted(OUT_DIR.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            total += len(data)
            digest.update(f.relative_to(OUT_DIR).as_posix().encode() + b"\0" + data)
    log(f"{len(cases)} cases, {total / 1e6:.2f} MB, sha256 {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
