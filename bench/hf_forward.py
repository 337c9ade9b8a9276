"""Times transformers' eager forward on the inputs bench/runtime.ts prepared (same ids, same pixels).

usage: python3 bench/hf_forward.py MODEL_DIR INPUTS_DIR RUNS [THREADS]  -> one JSON line on stdout
"""
import json, sys, time, statistics
import numpy as np
import torch
from transformers import LlavaForConditionalGeneration

model_dir, inputs_dir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if len(sys.argv) > 4 and int(sys.argv[4]) > 0:
    torch.set_num_threads(int(sys.argv[4]))
t0 = time.perf_counter()
model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
load_ms = (time.perf_counter() - t0) * 1000
ids = torch.tensor([json.load(open(f"{inputs_dir}/input_ids.json"))])
side = model.config.vision_config.image_size
pixels = torch.from_numpy(np.fromfile(f"{inputs_dir}/pixel_values.f32", dtype=np.float32).reshape(1, 3, side, side))

def once():
    t = time.perf_counter()
    with torch.inference_mode():
        # logits for the last position only, as our forward reports them
        model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids), logits_to_keep=1)
    return (time.perf_counter() - t) * 1000

once()
print(json.dumps({"forward_ms": statistics.median(once() for _ in range(runs)), "threads": torch.get_num_threads(), "load_ms": load_ms}))
