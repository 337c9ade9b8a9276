#!/usr/bin/env python3
"""Reference numbers for the logit-lens statistics, computed with transformers itself.

The TypeScript runtime computes these statistics inside its ONNX graphs (DESIGN.md, "the graph is
built for the lens"); the parity tests compare them with the files written here.

Usage (from the repository root; no network, no hub access):

    python3 tools/reference/make_lens_fixtures.py

It reads the committed model folders and case files under test/fixtures/models/ (read only:
input_ids, pixel_values, greedy_tokens) and deletes and recreates test/fixtures/lens/ on every
run. Deterministic: two runs give byte-identical files. See tools/reference/README.md,
section "Lens fixtures".

Per case, with ids = input_ids + greedy_tokens[:-1] (N = len(ids), S = len(input_ids)), one
forward over ids (with pixel_values for LLaVA), h[l] = hidden_states[l], l = 0..L:

* z[l] = lm_head(final_norm(h[l])) for l < L, z[L] = lm_head(h[L]) (h[L] is already normed);
  p = softmax(z) and log p = log_softmax(z), float32 (torch);
* top-10 ids/probs sorted by descending p, equal p broken by the lower id first;
* entropy = -sum p log p (nats); kl = sum p[L] (log p[L] - log p[l]);
* cosine = <h[l], h[L]> / (|h[l]| |h[L]|) computed in float64 from the float32 states;
* target = argmax of z[L] (lowest id on ties); rank of token t in layer l =
  1 + #{j: z[l][j] > z[l][t]} + #{j < t: z[l][j] == z[l][t]};
* tracked tokens: 6 ids per case, rank and probability at every layer and position;
* attentions of the prompt-only forward; logits/hidden states with some heads zeroed before
  o_proj; teacher-forced probability of the greedy answer.
"""

from __future__ import annotations

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
from transformers import LlamaForCausalLM, LlavaForConditionalGeneration  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "test" / "fixtures" / "models"
OUT_DIR = REPO_ROOT / "test" / "fixtures" / "lens"

TOP_K = 10
# Two top-k probabilities closer than this are a near tie: a float32 runtime could order them
# either way. Counted per case (near_ties); the tests can use min_topk_gap to decide.
NEAR_TIE = 1e-6
# Two logits closer than this could swap places in a float32 runtime (different summation
# order): top-k neighbours (logit_near_ties) and target/tracked ranks (rank_near_ties).
LOGIT_NEAR_TIE = 1e-5
HEAD_MASK = {1: [0, 2], 2: [1]}  # language-model layer -> heads (0-based)

# (model folder, case, architecture)
CASES = [
    ("llava-gqa-f32", "square", "llava"),
    ("llava-gqa-f32", "portrait", "llava"),
    ("llava-tied-f32", "landscape", "llava"),
    ("llama-f32", "long", "llama"),
]


# --------------------------------------------------------------------------- utils


def write_blob(folder: Path, name: str, array) -> dict:
    """Raw little-endian C-order blob; dtype from the file suffix (.f32 / .i32)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if name.endswith(".f32"):
        arr = np.ascontiguousarray(array, dtype="<f4")
        dtype = "float32"
    elif name.endswith(".i32"):
        arr = np.ascontiguousarray(array, dtype="<i4")
        assert np.array_equal(arr.astype(np.int64), np.asarray(array).astype(np.int64)), name
        dtype = "int32"
    else:
        raise ValueError(name)
    assert np.all(np.isfinite(arr)), f"{name}: non-finite values"
    (folder / name).write_bytes(arr.tobytes(order="C"))
    return {"file": name, "dtype": dtype, "shape": list(arr.shape)}


def read_f32(path: Path, shape) -> torch.Tensor:
    arr = np.fromfile(str(path), dtype="<f4")
    assert arr.size == int(np.prod(shape)), (path, arr.size, shape)
    return torch.from_numpy(arr.reshape(shape).copy())


def load_model(cls, folder: Path):
    model, info = cls.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    assert not bad, f"loading {folder} reported {bad}"
    model.eval()
    impls = {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}, f"attention implementations in use: {impls}"
    return model


def language_model(model, arch: str):
    """The decoder stack (embed_tokens, layers, norm) of either architecture."""
    return model.model.language_model if arch == "llava" else model.model


# --------------------------------------------------------------------------- lens math


def ranks_of(z: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """z [..., V] float32, token_ids [..., K] -> 1-based rank in a stable descending sort:
    1 + #(z > z_t) + #(z == z_t and id < t)."""
    zt = torch.gather(z, -1, token_ids)  # [..., K]
    vocab = torch.arange(z.shape[-1])
    greater = (z.unsqueeze(-2) > zt.unsqueeze(-1)).sum(-1)  # [..., K]
    equal_lower = ((z.unsqueeze(-2) == zt.unsqueeze(-1)) & (vocab < token_ids.unsqueeze(-1))).sum(-1)
    return (1 + greater + equal_lower).to(torch.int64)


def rank_margins(z: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Smallest |z[j] - z[t]| over j != t: how far the token's rank is from changing."""
    zt = torch.gather(z, -1, token_ids)
    diff = (z.unsqueeze(-2) - zt.unsqueeze(-1)).abs()  # [..., K, V]
    diff.scatter_(-1, token_ids.unsqueeze(-1), float("inf"))
    return diff.min(-1).values


def stable_topk(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p [R, V] -> (ids [R, k], probs [R, k], prob of the (k+1)-th [R]), descending p,
    equal p broken by the lower id."""
    rows, vocab = p.shape
    ids = np.empty((rows, k), dtype=np.int64)
    probs = np.empty((rows, k), dtype=np.float32)
    nxt = np.empty((rows,), dtype=np.float32)
    vocab_ids = np.arange(vocab)
    for r in range(rows):
        order = np.lexsort((vocab_ids, -p[r]))  # last key is primary: -p ascending, then id
        ids[r] = order[:k]
        probs[r] = p[r, order[:k]]
        nxt[r] = p[r, order[k]]
    return ids, probs, nxt


def lens_logits(model, arch: str, hidden_states) -> torch.Tensor:
    """[L+1, N, V]: lm_head(norm(h[l])) for l < L, lm_head(h[L]) for the last (already normed)."""
    norm = language_model(model, arch).norm
    head = model.get_output_embeddings()
    L = len(hidden_states) - 1
    zs = [head(norm(hidden_states[l][0])) for l in range(L)]
    zs.append(head(hidden_states[L][0]))
    return torch.stack(zs, dim=0)


# --------------------------------------------------------------------------- head masking


def register_head_mask(model, arch: str, head_mask: dict[int, list[int]], head_dim: int) -> list:
    """Zero the o_proj input columns [h*head_dim, (h+1)*head_dim) of every masked head."""
    handles = []
    layers = language_model(model, arch).layers
    for layer_idx, heads in sorted(head_mask.items()):
        o_proj = layers[layer_idx].self_attn.o_proj

        def pre_hook(module, args, _heads=tuple(heads)):
            x = args[0].clone()
            for h in _heads:
                x[..., h * head_dim:(h + 1) * head_dim] = 0.0
            return (x,) + tuple(args[1:])

        handles.append(o_proj.register_forward_pre_hook(pre_hook))
    return handles


@torch.no_grad()
def forward(model, inputs: dict, **kwargs):
    return model(**inputs, use_cache=False, return_dict=True, **kwargs)


@torch.no_grad()
def masked_forward(model, arch: str, inputs: dict, head_mask: dict[int, list[int]], head_dim: int):
    handles = register_head_mask(model, arch, head_mask, head_dim)
    try:
        return forward(model, inputs, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------- one case


@torch.no_grad()
def make_case(model_name: str, case: str, arch: str, model, summary: list) -> None:
    case_path = MODELS_DIR / model_name / "cases" / f"{case}.json"
    src = json.loads(case_path.read_text(encoding="utf-8"))
    assert src["compute_dtype"] == "float32", case_path
    tcfg = language_model(model, arch).config
    L = tcfg.num_hidden_layers
    n_heads = tcfg.num_attention_heads
    head_dim = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // n_heads
    H = tcfg.hidden_size
    V = model.get_output_embeddings().weight.shape[0]

    input_ids = list(src["input_ids"])
    greedy = list(src["greedy_tokens"])
    S = len(input_ids)
    ids = input_ids + greedy[:-1]
    N = len(ids)
    T = len(greedy)

    prompt_inputs = {"input_ids": torch.tensor([input_ids], dtype=torch.long)}
    full_inputs = {"input_ids": torch.tensor([ids], dtype=torch.long)}
    image_token_id = None
    if arch == "llava":
        pv_meta = src["pixel_values"]
        pixel_values = read_f32(case_path.parent / pv_meta["file"], pv_meta["shape"])
        prompt_inputs["pixel_values"] = pixel_values
        full_inputs["pixel_values"] = pixel_values
        image_token_id = int(model.config.image_token_id)
        assert sum(1 for t in input_ids if t == image_token_id) == src["num_image_tokens"]
        assert image_token_id not in greedy

    # ---- the full forward: prompt + all generated tokens but the last
    out = forward(model, full_inputs, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == L + 1 and len(out.attentions) == L
    hs = torch.stack([h[0] for h in out.hidden_states], dim=0)  # [L+1, N, H]
    z = lens_logits(model, arch, out.hidden_states)  # [L+1, N, V]
    assert torch.equal(z[L], out.logits[0]), "lm_head(h[L]) must equal the model's logits"
    logp = torch.log_softmax(z, dim=-1)
    p = torch.softmax(z, dim=-1)
    assert p.dtype == torch.float32

    # consistency with the committed case (same prompt, same folder)
    ref_hs = read_f32(case_path.parent / src["hidden_states"]["file"], src["hidden_states"]["shape"])
    ref_logits = read_f32(case_path.parent / src["logits"]["file"], src["logits"]["shape"])
    case_hs_diff = float((hs[:, :S] - ref_hs).abs().max())
    case_logits_diff = float((z[L, :S] - ref_logits).abs().max())
    assert case_hs_diff < 1e-4 and case_logits_diff < 1e-4, (case_hs_diff, case_logits_diff)

    # top-k
    p_np = p.numpy().reshape(-1, V)
    topk_ids, topk_probs, next_probs = stable_topk(p_np, TOP_K)
    topk_ids = topk_ids.reshape(L + 1, N, TOP_K)
    topk_probs = topk_probs.reshape(L + 1, N, TOP_K)
    next_probs = next_probs.reshape(L + 1, N)
    gaps = topk_probs[..., :-1] - topk_probs[..., 1:]
    boundary_gaps = topk_probs[..., -1] - next_probs
    assert np.all(gaps >= 0) and np.all(boundary_gaps >= 0)
    min_topk_gap = float(gaps.min())
    near_ties = int((gaps <= NEAR_TIE).sum())
    min_boundary_gap = float(boundary_gaps.min())
    boundary_near_ties = int((boundary_gaps <= NEAR_TIE).sum())
    # the same gaps in logit space (what a float32 runtime's error is measured in)
    z_np = z.numpy()
    topk_z = np.take_along_axis(z_np, topk_ids, axis=-1)  # [L+1, N, k]
    logit_gaps = topk_z[..., :-1] - topk_z[..., 1:]
    min_topk_logit_gap = float(logit_gaps.min())
    next_z = np.sort(z_np, axis=-1)[..., -(TOP_K + 1)]  # the (k+1)-th largest logit
    min_boundary_logit_gap = float((topk_z[..., -1] - next_z).min())
    logit_near_ties = int((logit_gaps <= LOGIT_NEAR_TIE).sum())
    # sorting by logit instead of probability gives the same top-k (no two distinct logits
    # rounded to the same probability inside the top-k)
    z_ids, _, _ = stable_topk(z_np.reshape(-1, V), TOP_K)
    order_mismatch_rows = int((z_ids.reshape(L + 1, N, TOP_K) != topk_ids).any(-1).sum())
    assert order_mismatch_rows == 0, f"top-k by probability and by logit differ in {order_mismatch_rows} rows"

    # entropy, KL to the final layer, cosine to the final hidden state
    entropy = -(p * logp).sum(-1)  # [L+1, N]
    kl = (p[L].unsqueeze(0) * (logp[L].unsqueeze(0) - logp)).sum(-1)  # [L+1, N]
    h64 = hs.to(torch.float64)
    cosine = (h64 * h64[L].unsqueeze(0)).sum(-1) / (h64.norm(dim=-1) * h64[L].norm(dim=-1).unsqueeze(0))
    assert float(kl[L].abs().max()) == 0.0

    # target = final layer's top-1 (lowest id on ties), its prob and rank in every layer
    target_ids = torch.tensor(topk_ids[L, :, 0], dtype=torch.long)  # [N]
    assert torch.equal(target_ids, torch.argmax(z[L], dim=-1))
    tgt = target_ids.view(1, N, 1).expand(L + 1, N, 1).contiguous()
    target_prob = torch.gather(p, -1, tgt)[..., 0]
    target_rank = ranks_of(z, tgt)[..., 0]
    target_margin = rank_margins(z, tgt)[..., 0]
    assert torch.all(target_rank[L] == 1)
    assert np.array_equal(target_rank.numpy() == 1, topk_ids[..., 0] == target_ids.numpy()[None, :])

    # tracked tokens: BOS, EOS, <image> (LLaVA) or <unk> (LLaMA), then the first distinct greedy tokens
    tracked = [1, 2, image_token_id if image_token_id is not None else 0]
    for t in greedy:
        if len(tracked) == 6:
            break
        if t not in tracked:
            tracked.append(t)
    for t in reversed(input_ids):  # fewer than 3 distinct answer tokens: the last prompt tokens
        if len(tracked) == 6:
            break
        if t not in tracked:
            tracked.append(t)
    assert len(tracked) == 6 and len(set(tracked)) == 6, tracked
    trk = torch.tensor(tracked, dtype=torch.long).view(1, 1, 6).expand(L + 1, N, 6).contiguous()
    tracked_prob = torch.gather(p, -1, trk)
    tracked_rank = ranks_of(z, trk)
    tracked_margin = rank_margins(z, trk)
    # the rank definition agrees with the top-k order wherever a tracked id is in the top-k
    for k in range(TOP_K):
        hit = topk_ids[..., k : k + 1] == np.array(tracked)[None, None, :]
        assert np.all(tracked_rank.numpy()[hit] == k + 1), "rank and top-k disagree"
    rank_near_ties = int((target_margin <= LOGIT_NEAR_TIE).sum()) + int((tracked_margin <= LOGIT_NEAR_TIE).sum())

    # float64 cross-check of the float32 reductions (reported, not saved)
    z64 = z.to(torch.float64)
    logp64 = torch.log_softmax(z64, -1)
    p64 = logp64.exp()
    ent64 = -(p64 * logp64).sum(-1)
    kl64 = (p64[L].unsqueeze(0) * (logp64[L].unsqueeze(0) - logp64)).sum(-1)
    f64_entropy_diff = float((entropy.to(torch.float64) - ent64).abs().max())
    f64_kl_diff = float((kl.to(torch.float64) - kl64).abs().max())

    # whole-answer probability, teacher forced, from the same forward
    answer_positions = [S - 1 + t for t in range(T)]
    answer_token_probs = [float(p[L, pos, tok]) for pos, tok in zip(answer_positions, greedy)]
    for pos, tok in zip(answer_positions, greedy):
        assert int(target_ids[pos]) == tok, f"teacher-forced argmax at {pos} is not the greedy token {tok}"
    answer_prob = float(np.prod(np.array(answer_token_probs, dtype=np.float64)))
    answer_logprob = float(sum(float(logp[L, pos, tok]) for pos, tok in zip(answer_positions, greedy)))

    # ---- prompt-only forward: attentions, unmasked logits
    pout = forward(model, prompt_inputs, output_hidden_states=True, output_attentions=True)
    assert len(pout.attentions) == L
    attn = torch.stack([a[0] for a in pout.attentions], dim=0)  # [L, heads, S, S]
    assert attn.shape == (L, n_heads, S, S), attn.shape
    assert float(torch.triu(attn, diagonal=1).abs().max()) == 0.0, "attention is not causal"
    attn_rowsum_err = float((attn.sum(-1) - 1).abs().max())
    assert attn_rowsum_err < 1e-5
    full_attn = torch.stack([a[0] for a in out.attentions], dim=0)[:, :, :S, :S]
    attn_full_vs_prompt = float((full_attn - attn).abs().max())
    assert attn_full_vs_prompt < 1e-5
    assert torch.equal(pout.logits[0], ref_logits), "prompt forward differs from the committed case logits"
    prompt_hs = torch.stack([h[0] for h in pout.hidden_states], dim=0)
    assert torch.equal(prompt_hs, ref_hs), "prompt forward differs from the committed case hidden states"

    # ---- head masking (prompt only)
    mout = masked_forward(model, arch, prompt_inputs, HEAD_MASK, head_dim)
    masked_logits = mout.logits[0]
    masked_hs = torch.stack([h[0] for h in mout.hidden_states], dim=0)  # [L+1, S, H]
    first_masked = min(HEAD_MASK)
    assert torch.equal(masked_hs[: first_masked + 1], prompt_hs[: first_masked + 1]), "mask leaked below its layer"
    assert not torch.equal(masked_hs[first_masked + 1], prompt_hs[first_masked + 1])
    masked_logits_diff = float((masked_logits - pout.logits[0]).abs().max())
    assert masked_logits_diff > 1e-3, "masking the heads did not change the logits"
    empty = masked_forward(model, arch, prompt_inputs, {}, head_dim)
    assert torch.equal(empty.logits[0], pout.logits[0]), "an empty mask must reproduce the logits exactly"
    hooked_nothing = masked_forward(model, arch, prompt_inputs, {i: [] for i in range(L)}, head_dim)
    assert torch.equal(hooked_nothing.logits[0], pout.logits[0]), "hooks that zero nothing changed the logits"
    # a fully masked head is the same as zeroing that head's o_proj weight columns
    probe_layer, probe_heads = max(HEAD_MASK.items())
    o_proj = language_model(model, arch).layers[probe_layer].self_attn.o_proj
    saved_w = o_proj.weight.detach().clone()
    try:
        for h in probe_heads:
            o_proj.weight[:, h * head_dim:(h + 1) * head_dim] = 0.0
        only_probe = masked_forward(model, arch, prompt_inputs, {}, head_dim)
    finally:
        o_proj.weight.copy_(saved_w)
    hooked_probe = masked_forward(model, arch, prompt_inputs, {probe_layer: probe_heads}, head_dim)
    weight_vs_hook = float((only_probe.logits - hooked_probe.logits).abs().max())
    assert weight_vs_hook < 1e-5, weight_vs_hook
    assert torch.equal(forward(model, prompt_inputs).logits[0], pout.logits[0]), "weights not restored"

    # ---- write
    folder = OUT_DIR / model_name
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model_name,
        "case": case,
        "model_dir": f"../../models/{model_name}/model",
        "source_case": f"../../models/{model_name}/cases/{case}.json",
        "architecture": type(model).__name__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "num_layers": L,
        "num_heads": n_heads,
        "num_kv_heads": tcfg.num_key_value_heads,
        "head_dim": head_dim,
        "hidden_size": H,
        "vocab_size": V,
        "image_token_id": image_token_id,
        "prompt_length": S,
        "greedy_tokens": greedy,
        "ids": ids,
        "top_k": TOP_K,
        "topk_ids": write_blob(folder, f"{case}.topk_ids.i32", topk_ids),
        "topk_probs": write_blob(folder, f"{case}.topk_probs.f32", topk_probs),
        "entropy": write_blob(folder, f"{case}.entropy.f32", entropy),
        "kl": write_blob(folder, f"{case}.kl.f32", kl),
        "cosine": write_blob(folder, f"{case}.cosine.f32", cosine),
        "target_ids": target_ids.tolist(),
        "target_prob": write_blob(folder, f"{case}.target_prob.f32", target_prob),
        "target_rank": write_blob(folder, f"{case}.target_rank.i32", target_rank),
        "target_rank_margin": write_blob(folder, f"{case}.target_rank_margin.f32", target_margin),
        "tracked_ids": tracked,
        "tracked_rank": write_blob(folder, f"{case}.tracked_rank.i32", tracked_rank),
        "tracked_prob": write_blob(folder, f"{case}.tracked_prob.f32", tracked_prob),
        "tracked_rank_margin": write_blob(folder, f"{case}.tracked_rank_margin.f32", tracked_margin),
        "attentions": write_blob(folder, f"{case}.attentions.f32", attn),
        "head_mask": {str(k): v for k, v in sorted(HEAD_MASK.items())},
        "masked_logits": write_blob(folder, f"{case}.masked_logits.f32", masked_logits),
        "masked_hidden_states": write_blob(folder, f"{case}.masked_hidden_states.f32", masked_hs),
        "answer_positions": answer_positions,
        "answer_token_probs": answer_token_probs,
        "answer_prob": answer_prob,
        "answer_logprob": answer_logprob,
        "min_topk_gap": min_topk_gap,
        "near_ties": near_ties,
        "near_tie_locations": np.argwhere(gaps <= NEAR_TIE).tolist(),
        "min_topk_boundary_gap": min_boundary_gap,
        "boundary_near_ties": boundary_near_ties,
        "min_topk_logit_gap": min_topk_logit_gap,
        "min_topk_boundary_logit_gap": min_boundary_logit_gap,
        "logit_near_ties": logit_near_ties,
        "logit_near_tie_locations": np.argwhere(logit_gaps <= LOGIT_NEAR_TIE).tolist(),
        "min_target_rank_margin": float(target_margin.min()),
        "min_tracked_rank_margin": float(tracked_margin.min()),
        "rank_near_ties": rank_near_ties,
        "checks": {
            "max_abs_hidden_vs_case": case_hs_diff,
            "max_abs_logits_vs_case": case_logits_diff,
            "max_abs_attention_full_vs_prompt": attn_full_vs_prompt,
            "max_abs_attention_rowsum_minus_1": attn_rowsum_err,
            "max_abs_masked_minus_unmasked_logits": masked_logits_diff,
            "max_abs_entropy_f32_vs_f64": f64_entropy_diff,
            "max_abs_kl_f32_vs_f64": f64_kl_diff,
            "max_abs_hook_vs_zeroed_o_proj_columns": weight_vs_hook,
        },
    }
    write_json(folder / f"{case}.json", record)
    summary.append(record)


# --------------------------------------------------------------------------- main


def main() -> int:
    set_determinism()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)

    summary: list = []
    loaded: dict[str, object] = {}
    for model_name, case, arch in CASES:
        if model_name not in loaded:
            cls = LlavaForConditionalGeneration if arch == "llava" else LlamaForCausalLM
            loaded[model_name] = load_model(cls, MODELS_DIR / model_name / "model")
        make_case(model_name, case, arch, loaded[model_name], summary)

    write_json(OUT_DIR / "index.json", {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "top_k": TOP_K,
        "near_tie": NEAR_TIE,
        "logit_near_tie": LOGIT_NEAR_TIE,
        "head_mask": {str(k): v for k, v in sorted(HEAD_MASK.items())},
        "cases": [f"{r['model']}/{r['case']}.json" for r in summary],
    })

    for r in summary:
        log(
            f"{r['model']:>15}/{r['case']:<10} S={r['prompt_length']:<3} N={len(r['ids']):<3} "
            f"answer_prob={r['answer_prob']:.4g} min_topk_gap={r['min_topk_gap']:.3g} near_ties={r['near_ties']} "
            f"boundary_gap={r['min_topk_boundary_gap']:.3g} logit_gap={r['min_topk_logit_gap']:.3g} "
            f"boundary_logit_gap={r['min_topk_boundary_logit_gap']:.3g} "
            f"logit_near_ties={r['logit_near_ties']} rank_margin(target/tracked)="
            f"{r['min_target_rank_margin']:.3g}/{r['min_tracked_rank_margin']:.3g} rank_near_ties={r['rank_near_ties']}"
        )
        log(f"{'':>27}checks {json.dumps(r['checks'])}")
    files = sorted(p for p in OUT_DIR.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(OUT_DIR)).encode() + b"\0" + p.read_bytes())
    log(f"test/fixtures/lens: {total} bytes ({total / 1e6:.2f} MB), {len(files)} files")
    log(f"tree sha256: {digest.hexdigest()}")
    assert total < 3_000_000, "lens fixtures grew past 3 MB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
