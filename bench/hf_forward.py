"""Times transformers' eager forward on the inputs bench/runtime.ts prepared (same ids, same pixels).

usage: python3 bench/hf_forward.py MODEL_DIR INPUTS_DIR [THREADS]

Loads the model, runs one warm-up forward and prints {"ready": true, "threads", "load_ms"}; then
for every line "run" on stdin runs one forward and prints {"forward_ms"}; ends on "quit" or at
the end of stdin. One JSON object per line on stdout. bench/runtime.ts alternates these single
forwards with its own, so that both sides see the machine in the same state.
"""
import json, sys, time
import numpy as np
import torch
from transformers import LlavaForConditionalGeneration

model_dir, inputs_dir = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3 and int(sys.argv[3]) > 0:
    torch.set_num_threads(int(sys.argv[3]))
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
print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "load_ms": load_ms}), flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    print(json.dumps({"forward_ms": once()}), flush=True)
