#!/usr/bin/env python3
"""Train the bundled default model from scratch on generated scenes (CPU, one thread).

A LlavaForConditionalGeneration: a small CLIP vision tower, a two-layer projector and a LLaMA
decoder with grouped KV heads, with a LLaMA-style BPE tokenizer trained on the generated text
and a LLaVA-1.5-style chat template. Data come from scenes.py, fresh images every step, so
nothing is stored and everything is a function of the seed.

Two stages: (1) the vision tower alone learns per-patch colour and shape targets
and the OCR character (on every patch) through training-only linear heads (standing in for the pretrained CLIP
that LLaVA starts from); (2) everything trains on the answer tokens (plus EOS) of one-word
questions and captions, with the auxiliary vision loss fading out. Each image carries several
questions; the shared prefix (BOS, "USER:", image tokens, "\n") runs once per image.

Usage (from the repository root):

    python3 tools/train/train.py                       # writes media/models/lens-scenes-tiny/
    python3 tools/train/eval.py                        # accuracy per question type + lens figure

See tools/train/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402  (sets the offline environment before transformers loads)
import scenes  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    AutoTokenizer,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()

# how often each question type is drawn (captions give dense supervision of every object)
TYPE_WEIGHTS = {
    "color_main": 1.0,
    "shape_main": 1.0,
    "color_of_shape": 1.5,
    "shape_of_color": 1.5,
    "count": 1.5,
    "left_right": 1.5,
    "ocr": 1.5,
    "caption": 1.0,
}


def log(msg: str) -> None:
    print(msg, flush=True)


def build_config(tok, args) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=args.vision_hidden,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=args.vision_heads,
        intermediate_size=args.vision_hidden * 4,
        image_size=scenes.IMAGE_SIZE,
        patch_size=common.PATCH_SIZE,
        num_channels=3,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=args.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        hidden_act="silu",
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=common.NUM_IMAGE_TOKENS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )


BINDING_TYPES = scenes.BINDING_TYPES


def type_weights(step: int, total: int, curriculum: float, binding: float = 1.0) -> dict[str, float]:
    """Question-type weights at a step: the questions that bind two attributes or compare
    positions come `binding` times as often, except during the first `curriculum` fraction of
    training, when they come less often."""
    weights = {t: w * (binding if t in BINDING_TYPES else 1.0) for t, w in TYPE_WEIGHTS.items()}
    if step < curriculum * total:
        for t in BINDING_TYPES:
            weights[t] = TYPE_WEIGHTS[t] * 0.3
    return weights


def forward_loss(model, batch) -> torch.Tensor:
    """Cross-entropy on the answer tokens of single-turn samples (used for checks)."""
    ids, mask, pv, pos_b, pos_t, labels = batch
    out = model.model(input_ids=ids, pixel_values=pv, attention_mask=mask, use_cache=False)
    # only the positions that predict answer tokens go through lm_head (the language model's
    # output is already final-normed)
    logits = model.lm_head(out.last_hidden_state[pos_b, pos_t])
    return F.cross_entropy(logits, labels)


class AuxHeads(torch.nn.Module):
    """Training-only linear probes on the vision features that go into the projector, per patch:
    the colour and shape of the object in it (or background) and, on OCR tiles, the character
    (every patch of a tile must know it, so the tower's attention gathers the glyph). They give
    the tower a dense signal early on; they are not part of the saved model."""

    def __init__(self, hidden: int, position: bool = False, side: bool = False):
        super().__init__()
        self.color = torch.nn.Linear(hidden, len(scenes.COLORS) + 1)
        self.shape = torch.nn.Linear(hidden, len(scenes.SHAPES) + 1)
        self.char = torch.nn.Linear(hidden, len(scenes.CHARACTERS))
        # optionally: each patch's own column and row, so the features say where they are
        self.names = ("color", "shape", "char", "col", "row") if position else ("color", "shape", "char")
        # optionally: whether the object in a patch is the scene's leftmost or rightmost one (a
        # relation between patches, which the tower's attention must compute, as CLIP's features
        # carry spatial relations); background patches are -100
        if side:
            self.side = torch.nn.Linear(hidden, 3)
            self.names = self.names + ("side",)
        if position:
            self.col = torch.nn.Linear(hidden, scenes.GRID)
            self.row = torch.nn.Linear(hidden, scenes.GRID)

    def forward(self, feats: torch.Tensor, labels: dict) -> tuple[torch.Tensor, dict]:
        loss = feats.new_zeros(())
        acc = {}
        for name in self.names:
            y = labels[name].flatten()
            keep = y >= 0
            if not bool(keep.any()):
                continue
            logits = getattr(self, name)(feats.flatten(0, 1)[keep])
            loss = loss + F.cross_entropy(logits, y[keep])
            # accuracy on object patches (background patches are easy and many)
            obj = y[keep] < logits.shape[1] - 1 if name in ("color", "shape") else torch.ones_like(y[keep], dtype=torch.bool)
            if bool(obj.any()):
                acc[name] = float((logits.argmax(1)[obj] == y[keep][obj]).float().mean())
        return loss, acc


def side_labels(objects) -> torch.Tensor:
    """Per patch: 0 if its object is the scene's leftmost, 1 the rightmost, 2 another object;
    -100 for background and for scenes of fewer than two objects."""
    n, g, cell = common.NUM_IMAGE_TOKENS, scenes.GRID, common.PATCH_SIZE
    out = torch.full((n,), -100)
    if len(objects) < 2:
        return out
    left = min(objects, key=lambda o: o.x)
    right = max(objects, key=lambda o: o.x)
    for p, i in scenes.covered_patches(objects, cell):
        o = objects[i]
        out[p] = 0 if o is left else 1 if o is right else 2
    return out


def aux_labels(items) -> dict:
    n = common.NUM_IMAGE_TOKENS
    color, shape, char, side = [], [], [], []
    for it in items:
        if it.text is not None:  # OCR tile: only the character, on every patch
            color.append(torch.full((n,), -100)), shape.append(torch.full((n,), -100))
            char.append(torch.full((n,), scenes.CHARACTERS.index(it.text)))
            side.append(torch.full((n,), -100))
        else:
            c, s = scenes.patch_labels(it.objects, common.PATCH_SIZE)
            color.append(common.on_device(torch.from_numpy(c))), shape.append(common.on_device(torch.from_numpy(s)))
            char.append(torch.full((n,), -100))
            side.append(side_labels(it.objects))
    g = scenes.GRID
    cells = torch.arange(n)
    return {"color": torch.stack(color), "shape": torch.stack(shape), "char": torch.stack(char), "side": torch.stack(side),
            "col": (cells % g).expand(len(items), n), "row": (cells // g).expand(len(items), n)}


def vision_features(model, pv: torch.Tensor) -> torch.Tensor:
    """What get_image_features feeds the projector for vision_feature_layer -1 and the "default"
    strategy: the last encoder layer's output without CLS."""
    return model.model.vision_tower(pv, output_hidden_states=True).hidden_states[-1][:, 1:]


def shared_prefix_loss(model, prefix: torch.Tensor, image_token_id: int, batch, raw_feats=None) -> torch.Tensor:
    """The same loss as forward_loss over every (image, question) row, but the shared prefix
    (BOS, "USER:", image tokens, "\n") runs once per image: its keys and values are then
    gathered per question row, and only the question and answer tokens run per row. Causal
    attention makes this exactly the single-turn computation (checked in check_shared_prefix)."""
    pv, ids, mask, row_img, pos_r, pos_t, labels = batch
    lm = model.model.language_model
    B, P = pv.shape[0], prefix.numel()
    if raw_feats is None:
        raw_feats = vision_features(model, pv)
    feats = model.model.multi_modal_projector(raw_feats)  # [B, N, H]
    img = (prefix == image_token_id).nonzero().flatten()
    s, e = int(img[0]), int(img[-1]) + 1
    emb = lm.embed_tokens(prefix)[None].expand(B, -1, -1)
    emb = torch.cat([emb[:, :s], feats, emb[:, e:]], dim=1)
    cache = lm(inputs_embeds=emb, use_cache=True).past_key_values
    cache.batch_select_indices(row_img)
    R, T = ids.shape
    attn = torch.cat([torch.ones(R, P, dtype=mask.dtype), mask], dim=1)
    positions = torch.arange(P, P + T)
    out = lm(input_ids=ids, attention_mask=attn, position_ids=positions[None].expand(R, -1),
             past_key_values=cache, cache_position=positions, use_cache=True)
    logits = model.lm_head(out.last_hidden_state[pos_r, pos_t])
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def check_shared_prefix(model, enc: common.Encoder, prefix: list[int], pad_id: int, seed: int) -> None:
    """shared_prefix_loss must equal the plain single-turn forward on the same questions."""
    was_training = model.training
    model.eval()
    items = [scenes.make_training_item(seed, 3_000_000 + i, 4, TYPE_WEIGHTS) for i in range(6)]
    shared = shared_prefix_loss(model, torch.tensor(prefix), enc.image_token_id, common.collate_shared(items, enc, prefix, pad_id))
    samples = [scenes.Sample(q.qtype, q.question, q.answer, it.image) for it in items for q in it.questions]
    plain = forward_loss(model, common.collate(samples, enc, pad_id))
    assert abs(float(shared) - float(plain)) < 1e-5, (float(shared), float(plain))
    model.train(was_training)


def quick_eval(model, enc, pad_id: int, seed: int, per_type: int) -> dict:
    """quick_eval_on on the original scenes; when training draws broad scenes too, also on broad
    ones only ("broad_*" keys), and "overall" is then the mean of the two."""
    share = scenes.BROAD
    if share == 0:
        return quick_eval_on(model, enc, pad_id, seed, per_type)
    try:
        scenes.set_broad(0.0)
        res = quick_eval_on(model, enc, pad_id, seed, per_type)
        scenes.set_broad(1.0)
        broad = quick_eval_on(model, enc, pad_id, seed, per_type)
    finally:
        scenes.set_broad(share)
    res["original_overall"] = res["overall"]
    res.update({f"broad_{k}": v for k, v in broad.items()})
    res["overall"] = (res["original_overall"] + broad["overall"]) / 2
    return res


@torch.no_grad()
def quick_eval_on(model, enc, pad_id: int, seed: int, per_type: int) -> dict:
    """Accuracy of the first answer token (argmax at the last prompt position) and the median
    layer from which the answer stays at rank 1 in the logit lens, on held-out samples."""
    model.eval()
    norm, head = model.model.language_model.norm, model.lm_head
    res: dict = {}
    conv_layers = []
    for qtype in scenes.ONE_WORD_TYPES:
        samples = [scenes.make_sample(seed, 1_000_000 + k, qtype) for k in range(per_type)]
        correct = 0
        for i in range(0, len(samples), 32):
            chunk = samples[i : i + 32]
            ids, mask, pv, pos_b, pos_t, labels = common.collate(chunk, enc, pad_id)
            first = torch.tensor([k for k in range(len(pos_b)) if k == 0 or pos_b[k] != pos_b[k - 1]])
            out = model.model(input_ids=ids, pixel_values=pv, attention_mask=mask, use_cache=False,
                              output_hidden_states=True)
            hs = out.hidden_states
            L = len(hs) - 1
            b, t, y = pos_b[first], pos_t[first], labels[first]
            ranks = []
            for layer, h in enumerate(hs):
                x = h[b, t]
                z = head(x if layer == L else norm(x))
                zt = z.gather(1, y[:, None])
                ranks.append((z > zt).sum(1) + 1)
            ranks = torch.stack(ranks, 1)  # [n, L+1]
            ok = ranks[:, L] == 1
            correct += int(ok.sum())
            for r in ranks[ok]:
                bad = (r != 1).nonzero()
                conv_layers.append(int(bad.max()) + 1 if len(bad) else 0)
        res[qtype] = correct / len(samples)
    res["overall"] = sum(res[t] for t in scenes.ONE_WORD_TYPES) / len(scenes.ONE_WORD_TYPES)
    conv_layers.sort()
    res["median_conv_layer"] = conv_layers[len(conv_layers) // 2] if conv_layers else None
    model.train()
    return res


def save_folder(model, processor, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    processor.save_pretrained(str(folder))
    # transformers 5.23 drops these; without "legacy": true its reloaded LlamaTokenizer stops
    # prepending "▁" after special tokens and disagrees with tokenizer.json (tools/reference/README.md)
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update({"legacy": True, "add_bos_token": True, "add_eos_token": False})
    write_json(path, dict(sorted(cfg.items())))
    # hub layout (like llava-hf/llava-1.5-7b-hf): flat preprocessor_config.json, processor_config.json
    # with the processor's own fields, chat_template.json
    pc_path = folder / "processor_config.json"
    pc = json.loads(pc_path.read_text(encoding="utf-8"))
    image_processor = pc.pop("image_processor")
    image_processor["processor_class"] = pc["processor_class"]
    write_json(folder / "preprocessor_config.json", dict(sorted(image_processor.items())))
    write_json(pc_path, dict(sorted(pc.items())))
    jinja = folder / "chat_template.jinja"
    write_json(folder / "chat_template.json", {"chat_template": jinja.read_text(encoding="utf-8")})
    jinja.unlink()
    for f in folder.iterdir():
        f.chmod(0o644)  # safetensors writes its file 0600


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_saved(folder: Path, model, enc: common.Encoder, seed: int) -> None:
    """The folder reloads in transformers with every weight, and the reloaded processor gives the
    same input ids and pixel values as the training pipeline."""
    reloaded, info = LlavaForConditionalGeneration.from_pretrained(
        str(folder), dtype=torch.float32, output_loading_info=True
    )
    assert not any(v for k, v in info.items() if k != "error_msgs") and not info.get("error_msgs"), info
    sd_a, sd_b = model.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), f"{k} differs after reload"
    proc = AutoProcessor.from_pretrained(str(folder), backend="pil")
    assert type(proc.image_processor).__name__ == "CLIPImageProcessorPil", type(proc.image_processor)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(str(folder))
    for i, qtype in enumerate(scenes.QUESTION_TYPES * 3):
        s = scenes.make_sample(seed, 2_000_000 + i, qtype)
        msgs = common.messages_for(s.question)
        rendered = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        assert rendered == common.render_prompt(s.question), rendered
        x = proc(text=rendered, images=s.image, return_tensors="pt")
        assert x["input_ids"][0].tolist() == enc.prompt_ids(s.question), s.question
        assert torch.equal(x["pixel_values"][0], torch.from_numpy(common.pixels(s.image)))
        # prompt + " " + answer tokenizes as prompt ids + answer ids (what training used)
        full = rendered + " " + s.answer
        assert raw.encode(full).ids == tok(full).input_ids == raw.encode(rendered).ids + enc.answer_ids(s.answer)[:-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=common.DEFAULT_MODEL_DIR)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-seed", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4500)
    ap.add_argument("--images", type=int, default=16, help="images per step")
    ap.add_argument("--questions", type=int, default=4, help="questions per image (at most)")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--curriculum", type=float, default=0.15)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--vision-hidden", type=int, default=128)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--vision-heads", type=int, default=4)
    ap.add_argument("--vision-steps", type=int, default=4000, help="stage 1: vision tower on auxiliary targets")
    ap.add_argument("--vision-lr", type=float, default=1e-3)
    ap.add_argument("--aux-weight", type=float, default=None, help="auxiliary vision loss weight in stage 2 ...")
    ap.add_argument("--aux-until", type=float, default=0.7, help="... decaying linearly to 0 at this fraction")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-per-type", type=int, default=48)
    ap.add_argument("--max-minutes", type=float, default=68.0, help="stop early and keep the best checkpoint")
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps")
    ap.add_argument("--binding-weight", type=float, default=1.0, help="binding / left-right questions this many times as often")
    ap.add_argument("--aux-position", action="store_true", help="auxiliary per-patch column and row targets")
    ap.add_argument("--aux-side", action="store_true", help="auxiliary per-patch target: is the object the leftmost, the rightmost or another")
    ap.add_argument("--binding-max-objects", type=int, default=scenes.MAX_OBJECTS, help="binding and left/right questions only about scenes of at most this many objects")
    ap.add_argument("--left-right-wording", choices=["side-last", "side-first", "attribute"], default="side-last", help="where the side word stands in left/right questions")
    ap.add_argument("--left-right-same-row", action="store_true", help="left/right questions only about two objects side by side (one row of cells)")
    ap.add_argument("--left-right-objects", type=int, help="left/right questions only about scenes of at most this many objects")
    ap.add_argument("--projected-position", type=float, default=0.0, help="weight of column/row probes on the projector's output (stage 2)")
    ap.add_argument("--weight", action="append", default=[], metavar="TYPE=W", help="override a question type's weight (repeatable)")
    ap.add_argument("--init", type=Path, help="continue training from this saved model folder (skips stage 1)")
    ap.add_argument("--broad", type=float, default=0.0, help="share of training scenes and tiles drawn from scenes.py's broad distribution (any ground, large objects off the grid, other picture sizes); evaluation then also scores that distribution and keeps the checkpoint best on the mean of both")
    ap.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda); the saved model is always on the CPU")
    args = ap.parse_args()
    if args.aux_weight is None and not args.init:
        args.aux_weight = 0.3

    common.set_determinism(args.seed)
    scenes.set_binding_max(args.binding_max_objects)
    scenes.set_left_right_max(args.left_right_objects)
    scenes.set_left_right_wording(args.left_right_wording)
    scenes.set_left_right_same_row(args.left_right_same_row)
    scenes.set_broad(args.broad)
    for spec in args.weight:
        qtype, w = spec.split("=")
        if qtype not in TYPE_WEIGHTS:
            ap.error(f"--weight: unknown question type {qtype} (types: {', '.join(TYPE_WEIGHTS)})")
        TYPE_WEIGHTS[qtype] = float(w)
    tok = common.build_tokenizer(from_file=args.init / "tokenizer.json" if args.init else None)
    processor = common.make_processor(tok)
    raw = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    enc = common.Encoder(raw, tok.convert_tokens_to_ids("<image>"), tok.eos_token_id)
    pad_id = tok.pad_token_id
    # the chat template renders what render_prompt() assumes
    for q in ["Color of the main object:", "What color is the circle? Answer with one word."]:
        r = processor.apply_chat_template(common.messages_for(q), add_generation_prompt=True, tokenize=False)
        assert r == common.render_prompt(q), r

    config = build_config(tok, args)
    if args.device != "cpu":
        torch.set_default_device(args.device)  # every tensor the loop makes, parameters included
    torch.manual_seed(args.seed)
    model = LlavaForConditionalGeneration(config)
    if args.init:
        # continue from a saved model: same tokenizer (it is rebuilt deterministically) and shapes
        saved = LlavaForConditionalGeneration.from_pretrained(str(args.init), dtype=torch.float32)
        missing, unexpected = model.load_state_dict(saved.state_dict(), strict=True), None
        del saved, missing, unexpected
        args.vision_steps = 0
        if args.aux_weight is None:
            args.aux_weight = 0.0  # the probes would start untrained
        log(f"continuing from {args.init} (stage 1 skipped)")
    model.set_attn_implementation("sdpa")
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tokenizer: {len(tok)} ids; model: {n_params / 1e6:.3f} M parameters; "
        f"transformers {transformers.__version__}, torch {torch.__version__}")

    aux = AuxHeads(args.vision_hidden, position=args.aux_position, side=args.aux_side)
    # optionally: column and row probes on the projector's output (the language model's input),
    # weighted throughout stage 2, so the projector keeps where each patch is
    proj_pos = torch.nn.ModuleDict({"col": torch.nn.Linear(args.hidden, scenes.GRID), "row": torch.nn.Linear(args.hidden, scenes.GRID)})

    def adamw(params, lr):
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=(0.9, 0.98), eps=1e-8,
        )

    t0 = time.time()
    # stage 1: the vision tower alone, on the auxiliary per-patch targets (a stand-in for the
    # pretrained CLIP that LLaVA starts from); the language model cannot learn to read an
    # untrained tower's features in the time we have (it stays at chance for 800+ steps)
    if args.vision_steps and not args.bench:
        vparams = list(model.model.vision_tower.parameters()) + list(aux.parameters())
        vopt = adamw(vparams, args.vision_lr)
        vema = None
        vacc: dict[str, float] = {}
        for step in range(args.vision_steps):
            for g in vopt.param_groups:
                g["lr"] = args.vision_lr * min(1.0, (step + 1) / 50)
            items = [scenes.make_training_item(args.seed + 1000, step * 32 + j, 0, {}) for j in range(32)]
            pv = common.on_device(torch.from_numpy(np.stack([common.pixels(it.image) for it in items])))
            loss, acc = aux(vision_features(model, pv), aux_labels(items))
            for k, v in acc.items():
                vacc[k] = v if k not in vacc else 0.95 * vacc[k] + 0.05 * v
            vopt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vparams, 1.0)
            vopt.step()
            vema = loss.item() if vema is None else 0.95 * vema + 0.05 * loss.item()
            if step % 100 == 0 or step == args.vision_steps - 1:
                accs = "  ".join(f"{k} {v:.3f}" for k, v in sorted(vacc.items()))
                log(f"vision step {step:5d}  aux loss {vema:.4f}  accuracy {accs}  {(time.time() - t0) / 60:6.1f} min")

    opt = adamw(list(model.parameters()) + list(aux.parameters()) + list(proj_pos.parameters()), args.lr)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    prefix = common.prefix_ids(enc)
    prefix_t = torch.tensor(prefix)
    check_shared_prefix(model, enc, prefix, pad_id, args.seed)
    best: tuple[float, dict | None, dict] = (-1.0, None, {})
    history = []
    ema = None
    rows_seen = 0
    steps = args.bench or args.steps
    for step in range(steps):
        weights = type_weights(step, args.steps, args.curriculum, args.binding_weight)
        items = [
            scenes.make_training_item(args.seed, step * args.images + j, args.questions, weights)
            for j in range(args.images)
        ]
        batch = common.collate_shared(items, enc, prefix, pad_id)
        rows_seen += len(batch[3])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        raw_feats = vision_features(model, batch[0])
        lm_loss = shared_prefix_loss(model, prefix_t, enc.image_token_id, batch, raw_feats)
        loss = lm_loss
        aux_w = args.aux_weight * max(0.0, 1.0 - step / (args.aux_until * args.steps))
        if aux_w > 0:
            loss = loss + aux_w * aux(raw_feats, aux_labels(items))[0]
        if args.projected_position > 0:
            proj = model.model.multi_modal_projector(raw_feats).flatten(0, 1)
            cells = torch.arange(common.NUM_IMAGE_TOKENS).repeat(len(items))
            loss = loss + args.projected_position * (F.cross_entropy(proj_pos["col"](proj), cells % scenes.GRID)
                                                     + F.cross_entropy(proj_pos["row"](proj), cells // scenes.GRID))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(aux.parameters()), 1.0)
        opt.step()
        ema = lm_loss.item() if ema is None else 0.98 * ema + 0.02 * lm_loss.item()
        elapsed = time.time() - t0
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {ema:.4f}  lr {lr_at(step):.2e}  {elapsed / 60:6.1f} min  "
                f"{rows_seen / elapsed:.1f} questions/s")
        last = step == steps - 1 or elapsed > args.max_minutes * 60
        if not args.bench and ((step + 1) % args.eval_every == 0 or last):
            res = quick_eval(model, enc, pad_id, args.eval_seed, args.eval_per_type)
            res.update(step=step + 1, minutes=round(elapsed / 60, 2), loss=round(ema, 4), questions_seen=rows_seen)
            history.append(res)
            log("eval " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}))
            if res["overall"] >= best[0]:
                best = (res["overall"], copy.deepcopy(model.state_dict()), res)
        if last:
            if elapsed > args.max_minutes * 60:
                log(f"stopping at step {step + 1}: over {args.max_minutes} minutes")
            break
    total_min = (time.time() - t0) / 60
    log(f"training took {total_min:.1f} min")
    if args.bench:
        return 0

    if args.device != "cpu":
        torch.set_default_device("cpu")
        model.to("cpu")
    model.load_state_dict(best[1])
    model.eval()
    save_folder(model, processor, args.out)
    check_saved(args.out, model, enc, args.eval_seed)
    write_json(args.out / "training_log.json", {
        "command": "python3 " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "type_weights": TYPE_WEIGHTS,
        "parameters": n_params,
        "minutes": round(total_min, 1),
        "kept": best[2],
        "evals": history,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    })
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    log(f"saved {args.out} ({size / 1e6:.2f} MB), kept step {best[2].get('step')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
