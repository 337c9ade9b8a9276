"""transformers' side of bench/real.ts: builds full-size random-weight checkpoints and times
transformers' own forward on them.

usage:
  python3 bench/hf_real.py build CONFIG_DIR TOKENIZER_DIR OUT_DIR [--layers N] [--dtype float16|bfloat16]
      transformers builds the model from CONFIG_DIR/config.json (on the meta device: no memory),
      then every tensor of its state dict is filled with seeded random values of the checkpoint's
      dtype and written shard by shard (2 GB shards and an index, as save_pretrained writes them),
      so a 7B checkpoint is built in bounded memory. --layers N keeps the first N decoder layers.
      The tokenizer, chat template and processor files come from TOKENIZER_DIR and CONFIG_DIR.
  python3 bench/hf_real.py forward MODEL_DIR INPUTS_DIR [THREADS]
      loads the checkpoint in its own dtype, runs one warm-up forward with output_hidden_states
      on the ids and pixel values bench/real.ts prepared, then a timed one, and prints one JSON
      line: load and forward times, peak RSS, the last position's top-1.
"""
import json, resource, shutil, sys, time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, LlavaForConditionalGeneration, Qwen2VLForConditionalGeneration

CLASSES = {"llava": LlavaForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration}

SHARD_BYTES = 2 * 1024**3
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def build(config_dir: Path, tokenizer_dir: Path, out: Path, layers: int | None, dtype: torch.dtype) -> None:
    config_json = json.loads((config_dir / "config.json").read_text())
    kind = config_json["model_type"]
    if kind == "llava":
        # the benchmark's tokenizer is the fixtures' LLaMA one: its <image> token stands for LLaVA's
        tok = json.loads((tokenizer_dir / "tokenizer.json").read_text())
        config_json["image_token_index"] = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<image>")
    if layers is not None:
        if kind == "llava":
            config_json.setdefault("text_config", {})["num_hidden_layers"] = layers
        else:
            config_json["num_hidden_layers"] = layers
    config = AutoConfig.for_model(**config_json)
    with torch.device("meta"):
        model = CLASSES[kind](config)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = 0
    shards: list[dict[str, torch.Tensor]] = []
    weight_map: dict[str, str] = {}
    names: list[list[str]] = [[]]
    total = 0
    t0 = time.perf_counter()

    def flush() -> None:
        nonlocal shard, shard_bytes
        if not shard:
            return
        index = len(shards) + 1
        shards.append({})
        file = f"model-{index:05d}.safetensors"
        save_file(shard, str(out / f"{file}.tmp"), metadata={"format": "pt"})
        (out / f"{file}.tmp").rename(out / file)
        for name in shard:
            weight_map[name] = file
        shard, shard_bytes = {}, 0

    tied = bool(config_json.get("tie_word_embeddings"))
    for name, p in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # the embedding matrix itself, as save_pretrained leaves it out
        n = p.numel()
        part = name.split(".")[-2] if "." in name else name
        if "norm" in part or "layrnorm" in part or part.startswith("ln_"):
            t = torch.ones(p.shape, dtype=dtype) if name.endswith("weight") else torch.zeros(p.shape, dtype=dtype)
        else:
            fan_in = p.shape[-1] if p.dim() > 1 else 64
            t = (torch.randn(p.shape, generator=gen, dtype=torch.float32) * (fan_in ** -0.5)).to(dtype)
        shard[name] = t
        shard_bytes += n * t.element_size()
        total += n * t.element_size()
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    # names as transformers numbers them: model-00001-of-0000N.safetensors
    count = len(shards)
    renamed = {}
    for i in range(1, count + 1):
        old, new = f"model-{i:05d}.safetensors", f"model-{i:05d}-of-{count:05d}.safetensors"
        (out / old).rename(out / new)
        renamed[old] = new
    index = {"metadata": {"total_size": total}, "weight_map": {k: renamed[v] for k, v in weight_map.items()}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config_json["torch_dtype"] = [k for k, v in DTYPES.items() if v == dtype][0]
    (out / "config.json").write_text(json.dumps(config_json, indent=2))
    for f in ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"]:
        if (tokenizer_dir / f).exists():
            shutil.copy(tokenizer_dir / f, out / f)
    shutil.copy(config_dir / "preprocessor_config.json", out / "preprocessor_config.json")
    vc = config_json["vision_config"]
    if kind == "llava":
        (out / "processor_config.json").write_text(json.dumps({
            "processor_class": "LlavaProcessor", "patch_size": vc["patch_size"], "image_token": "<image>",
            "vision_feature_select_strategy": config_json.get("vision_feature_select_strategy", "default"), "num_additional_image_tokens": 1,
        }, indent=2))
    print(json.dumps({"built": str(out), "bytes": total, "shards": count, "seconds": time.perf_counter() - t0}), flush=True)


def forward(model_dir: Path, inputs_dir: Path, threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    config_json = json.loads((model_dir / "config.json").read_text())
    dtype = DTYPES[config_json.get("torch_dtype", "float32")]
    t0 = time.perf_counter()
    model = CLASSES[config_json["model_type"]].from_pretrained(str(model_dir), dtype=dtype, attn_implementation="eager").eval()
    load_ms = (time.perf_counter() - t0) * 1000
    ids = torch.tensor([json.loads((inputs_dir / "input_ids.json").read_text())])
    shape = json.loads((inputs_dir / "pixel_values.json").read_text())
    pixels = torch.from_numpy(np.fromfile(inputs_dir / "pixel_values.f32", dtype=np.float32).reshape(shape)).to(dtype)
    extra = {}
    if (inputs_dir / "image_grid_thw.json").exists():
        extra["image_grid_thw"] = torch.tensor(json.loads((inputs_dir / "image_grid_thw.json").read_text()))
        # transformers 5 computes M-RoPE from the processor's modality ids: 1 for image tokens, 0 for text
        extra["mm_token_type_ids"] = (ids == config_json["image_token_id"]).long()

    def once():
        t = time.perf_counter()
        with torch.inference_mode():
            out = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids), output_hidden_states=True, **extra)
        return (time.perf_counter() - t) * 1000, out

    warm = len(sys.argv) <= 5 or sys.argv[5] != "--once"
    if warm:
        once()
    ms, out = once()
    top1 = int(out.logits[0, -1].float().argmax())
    print(json.dumps({"load_ms": load_ms, "forward_ms": ms, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""), "top1": top1}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        args = sys.argv[2:]
        layers = int(args[args.index("--layers") + 1]) if "--layers" in args else None
        dtype = DTYPES[args[args.index("--dtype") + 1]] if "--dtype" in args else torch.float16
        build(Path(args[0]), Path(args[1]), Path(args[2]), layers, dtype)
    elif sys.argv[1] == "forward":
        forward(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        sys.exit(__doc__)
