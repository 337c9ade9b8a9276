"""What the vision-language fixture scripts (make_qwen2vl_fixtures.py, make_idefics3_fixtures.py)
record from transformers in the same way: the forward with hidden states and attentions, a
forward with heads zeroed at o_proj's input, greedy decoding with its top-2 gaps, and the
logit-lens statistics of a sequence. Each script keeps what is its model's own (preprocessing,
the prompt+generated forward, the case fields before these).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer


def byte_level_bpe(corpus: list[str], special_tokens: list[str], bos: str | None, eos: str, pad: str) -> Qwen2Tokenizer:
    """A 300-piece byte-level BPE trained on `corpus`, in Qwen2Tokenizer's exact pipeline (so that
    transformers' rebuild on load and the raw tokenizer.json agree), with `special_tokens` after
    the vocabulary."""
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.NFC()
    trainer_tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    trainer_tok.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {piece: i for i, (piece, _) in enumerate(sorted(trained["vocab"].items(), key=lambda kv: kv[1]))}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=bos, eos_token=eos, pad_token=pad)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in special_tokens]})
    ids = tok.convert_tokens_to_ids(special_tokens)
    assert sorted(ids) == list(range(len(vocab), len(vocab) + len(special_tokens))), ids
    return tok


def write_f32(path: Path, tensor: torch.Tensor) -> dict:
    arr = tensor.detach().to(torch.float32).cpu().contiguous().numpy().astype("<f4", copy=False)
    path.write_bytes(arr.tobytes(order="C"))
    return {"file": path.name, "shape": list(arr.shape)}


def load_eager(cls, folder: Path):
    """Loads a saved checkpoint in float32 with eager attention everywhere, refusing any loading report."""
    model, info = cls.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading {folder} reported {bad}"
    model.eval()
    impls = {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}, impls
    return model


@torch.no_grad()
def lens_stats(norm, head, hidden: torch.Tensor, top_k: int) -> dict:
    """Logit-lens statistics of hidden states [L+1, N, H] in transformers' convention (the last
    entry is already final-normed)."""
    L = hidden.shape[0] - 1
    z = torch.stack([head(norm(hidden[l])) if l < L else head(hidden[l]) for l in range(L + 1)])  # [L+1, N, V]
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kl = (p[L:] * (logp[L:] - logp)).sum(-1)
    h64 = hidden.double()
    cosine = (h64 * h64[L:]).sum(-1) / (h64.norm(dim=-1) * h64[L:].norm(dim=-1)).clamp_min(1e-8)
    # stable top-k: descending probability, lower id first on ties
    pn = p.numpy()
    order = np.lexsort((np.broadcast_to(np.arange(pn.shape[-1]), pn.shape), -pn), axis=-1)[..., :top_k]
    top_p = np.take_along_axis(pn, order, axis=-1)
    sorted_p = -np.sort(-pn, axis=-1)
    min_gap = float((sorted_p[..., :top_k] - sorted_p[..., 1:top_k + 1]).min())
    return {
        "topk_ids": torch.from_numpy(order.astype(np.int64)),
        "topk_probs": torch.from_numpy(top_p.copy()),
        "entropy": entropy,
        "kl": kl,
        "cosine": cosine.float(),
        "min_topk_gap": min_gap,
    }


@torch.no_grad()
def reference_runs(model, inputs: dict, decoder_layers, head_mask: dict, max_new_tokens: int, min_gap: float) -> dict:
    """The prompt's forward (hidden states [L+1, S, H], logits, attention mass on the image
    tokens [L, heads, S]), the same with `head_mask`'s heads zeroed before o_proj (last position),
    and greedy decoding whose every step's top-2 gap must exceed `min_gap`."""
    cfg = model.config
    ids = inputs["input_ids"][0]
    out = model(**inputs, output_hidden_states=True, output_attentions=True, use_cache=False, return_dict=True)
    hidden = torch.stack([h[0] for h in out.hidden_states], dim=0)
    logits = out.logits[0]
    assert torch.equal(model.lm_head(out.hidden_states[-1])[0], logits)
    attentions = torch.stack([a[0] for a in out.attentions], dim=0)
    image_mass = attentions[..., ids == cfg.image_token_id].sum(-1)

    head_dim = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
    handles = []
    for layer, heads in head_mask.items():
        def pre_hook(module, args, _heads=tuple(heads)):
            x = args[0].clone()
            for h in _heads:
                x[..., h * head_dim:(h + 1) * head_dim] = 0.0
            return (x,) + tuple(args[1:])
        handles.append(decoder_layers[layer].self_attn.o_proj.register_forward_pre_hook(pre_hook))
    try:
        masked = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
    finally:
        for handle in handles:
            handle.remove()
    masked_hidden = torch.stack([h[0, -1] for h in masked.hidden_states], dim=0)
    assert (masked.logits[0, -1] - logits[-1]).abs().max() > 0.1, "the head mask changed nothing"

    gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True, return_dict_in_generate=True)
    greedy = gen.sequences[0, ids.shape[0]:].tolist()
    gaps = [float(torch.topk(s[0].float(), 2).values[0] - torch.topk(s[0].float(), 2).values[1]) for s in gen.logits]
    assert int(torch.argmax(logits[-1])) == greedy[0]
    assert len(greedy) == max_new_tokens and min(gaps) > min_gap, (greedy, gaps)
    return {"hidden": hidden, "logits": logits, "image_mass": image_mass, "masked_logits": masked.logits[0, -1], "masked_hidden": masked_hidden, "greedy": greedy, "gaps": gaps}


def reference_fields(case_dir: Path, case: str, runs: dict, head_mask: dict, lens: dict, lens_ids: list[int], top_k: int) -> dict:
    """The case fields from hidden_states on, in the order every case file has them."""
    return {
        "hidden_states": write_f32(case_dir / f"{case}.hidden_states.f32", runs["hidden"]),
        "logits": write_f32(case_dir / f"{case}.logits.f32", runs["logits"]),
        "greedy_tokens": runs["greedy"],
        "greedy_min_top2_gap": min(runs["gaps"]),
        "attention_image_mass": write_f32(case_dir / f"{case}.attention_image_mass.f32", runs["image_mass"]),
        "head_mask": {str(k): v for k, v in head_mask.items()},
        "masked_last_logits": write_f32(case_dir / f"{case}.masked_last_logits.f32", runs["masked_logits"]),
        "masked_last_hidden_states": write_f32(case_dir / f"{case}.masked_last_hidden_states.f32", runs["masked_hidden"]),
        "lens": {
            "ids": lens_ids,
            "top_k": top_k,
            "min_topk_gap": lens["min_topk_gap"],
            "topk_ids": write_f32(case_dir / f"{case}.lens_topk_ids.f32", lens["topk_ids"].float()),
            "topk_probs": write_f32(case_dir / f"{case}.lens_topk_probs.f32", lens["topk_probs"]),
            "entropy": write_f32(case_dir / f"{case}.lens_entropy.f32", lens["entropy"]),
            "kl": write_f32(case_dir / f"{case}.lens_kl.f32", lens["kl"]),
            "cosine": write_f32(case_dir / f"{case}.lens_cosine.f32", lens["cosine"]),
        },
    }


def tree_digest(out_dir: Path) -> tuple[int, str]:
    """Total bytes and one sha256 over every file's relative path and bytes, for comparing runs."""
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in sorted(out_dir.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(out_dir)).encode() + b"\0" + p.read_bytes())
    return total, digest.hexdigest()
