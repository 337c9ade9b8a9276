#!/usr/bin/env python3
"""Held-out accuracy and logit-lens convergence of a saved model folder, with transformers.

For every held-out sample (seed 2 by default; training uses seed 1) the folder's own processor
renders the chat prompt and preprocesses the image, `generate(max_new_tokens=1, do_sample=False)`
gives the first answer token, and it is compared with the answer's token. The logit lens follows
hf-specs.md: z[l] = lm_head(norm(h[l])) for l < L and z[L] = lm_head(h[L]) (= the logits), at the
last prompt position; the rank of the answer token is 1 + #{j: z[j] > z[a]} + #{j < a: z[j] == z[a]}.
A sample's convergence layer is the first layer from which that rank stays 1 up to L.

Usage (from the repository root):

    python3 tools/train/eval.py                                  # media/models/lens-scenes-tiny
    python3 tools/train/eval.py --model DIR --per-type 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets the offline environment before transformers loads)
import make_samples  # noqa: E402
import scenes  # noqa: E402
import torch  # noqa: E402
from transformers import AutoProcessor, LlavaForConditionalGeneration  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()


def answer_rank(z: torch.Tensor, target: int) -> int:
    zt = z[target]
    return 1 + int((z > zt).sum()) + int((z[:target] == zt).sum())


@torch.no_grad()
def evaluate(folder: Path, seed: int, per_type: int, captions: int) -> dict:
    model = LlavaForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    proc = AutoProcessor.from_pretrained(str(folder), backend="pil")
    tok = proc.tokenizer
    norm, head = model.model.language_model.norm, model.lm_head

    rows = []
    for qtype in scenes.ONE_WORD_TYPES:
        for k in range(per_type):
            s = scenes.make_sample(seed, k, qtype)
            text = proc.apply_chat_template(common.messages_for(s.question), add_generation_prompt=True, tokenize=False)
            inputs = proc(text=text, images=s.image, return_tensors="pt")
            target_ids = tok(s.answer, add_special_tokens=False).input_ids
            target = target_ids[0]
            gen = model.generate(**inputs, max_new_tokens=1, do_sample=False)
            first = int(gen[0, inputs["input_ids"].shape[1]])
            out = model(**inputs, output_hidden_states=True, use_cache=False)
            hs = out.hidden_states
            L = len(hs) - 1
            ranks = []
            for layer, h in enumerate(hs):
                x = h[0, -1]
                z = head(x if layer == L else norm(x))
                ranks.append(answer_rank(z, target))
            assert int(out.logits[0, -1].argmax()) == first, "generate and forward disagree"
            stays = L + 1
            while stays > 0 and ranks[stays - 1] == 1:
                stays -= 1
            rows.append({
                "type": qtype, "question": s.question, "answer": s.answer, "answer_tokens": len(target_ids),
                "predicted": tok.decode([first]).strip(), "correct": first == target, "ranks": ranks,
                "converged_at": stays if ranks[L] == 1 else None,
            })

    L = len(rows[0]["ranks"]) - 1
    by_type = {}
    for qtype in scenes.ONE_WORD_TYPES:
        rs = [r for r in rows if r["type"] == qtype]
        conv = [r["converged_at"] for r in rs if r["converged_at"] is not None]
        by_type[qtype] = {
            "n": len(rs),
            "accuracy": sum(r["correct"] for r in rs) / len(rs),
            "median_converged_at": statistics.median(conv) if conv else None,
        }
    correct = [r for r in rows if r["correct"]]
    conv = [r["converged_at"] for r in correct]
    result = {
        "model": str(folder),
        "seed": seed,
        "layers": L,
        "n": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "single_token_answers": sum(r["answer_tokens"] == 1 for r in rows) / len(rows),
        "by_type": by_type,
        # over correctly answered samples: first layer from which the answer stays rank 1
        "median_converged_at": statistics.median(conv) if conv else None,
        "converged_at_histogram": {str(l): conv.count(l) for l in range(L + 1)},
        "share_rank_above_1": [sum(r["ranks"][l] > 1 for r in correct) / max(1, len(correct)) for l in range(L + 1)],
        "median_rank": [statistics.median(r["ranks"][l] for r in correct) for l in range(L + 1)] if correct else [],
    }

    if captions:
        ok = 0
        for k in range(captions):
            s = scenes.make_sample(seed, k, "caption")
            text = proc.apply_chat_template(common.messages_for(s.question), add_generation_prompt=True, tokenize=False)
            inputs = proc(text=text, images=s.image, return_tensors="pt")
            gen = model.generate(**inputs, max_new_tokens=24, do_sample=False)
            said = tok.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
            ok += said == s.answer
        result["caption_exact_match"] = ok / captions
        result["caption_n"] = captions
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=common.DEFAULT_MODEL_DIR)
    ap.add_argument("--seed", type=int, default=2, help="held-out seed (training uses 1)")
    ap.add_argument("--per-type", type=int, default=200)
    ap.add_argument("--captions", type=int, default=100, help="captions to check for an exact match (0: none)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    common.set_determinism(0)
    torch.use_deterministic_algorithms(True)
    make_samples.apply_model_settings(args.model)  # ask questions as the model was trained

    t0 = time.time()
    res = evaluate(args.model, args.seed, args.per_type, args.captions)
    print(f"model {res['model']}  held-out seed {res['seed']}  {res['n']} questions  ({time.time() - t0:.0f} s)")
    print(f"{'type':<16}{'n':>6}{'accuracy':>10}{'median conv. layer':>20}")
    for qtype, v in res["by_type"].items():
        print(f"{qtype:<16}{v['n']:>6}{100 * v['accuracy']:>9.1f}%{str(v['median_converged_at']):>20}")
    print(f"{'overall':<16}{res['n']:>6}{100 * res['accuracy']:>9.1f}%{str(res['median_converged_at']):>20}")
    if "caption_exact_match" in res:
        print(f"captions (whole greedy answer, exact match): {100 * res['caption_exact_match']:.1f}% of {res['caption_n']}")
    L = res["layers"]
    print(f"logit lens at the last prompt position, correct answers only (layers 0..{L}; 0 = embeddings):")
    print("  answer rank > 1:  " + " ".join(f"{l}:{100 * v:.0f}%" for l, v in enumerate(res["share_rank_above_1"])))
    print("  median rank:      " + " ".join(f"{l}:{v:g}" for l, v in enumerate(res["median_rank"])))
    print("  stays rank 1 from: " + " ".join(f"{l}:{n}" for l, n in res["converged_at_histogram"].items()))
    print(f"median layer from which the answer stays at rank 1: {res['median_converged_at']} of {L}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
