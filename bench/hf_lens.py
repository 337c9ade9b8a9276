"""The seed studies' way of computing a logit lens, in PyTorch, on bench/lens.ts's checkpoint.

usage: python3 bench/hf_lens.py MODEL_DIR IMAGE PROMPT RUNS [THREADS [METHODS]] -> one JSON line on stdout
(METHODS: comma-separated, of seeds, generate, generate_full; default all three).
Each method runs in its own subprocess so that its peak RSS (and GPU memory) is its own.
LENS_HF_DEVICE (cpu | cuda, default cpu) and LENS_HF_DTYPE (float32 | float16 | bfloat16, default
float32) say where and in what the model runs, as the seed studies ran it (float16 on CUDA); on
CUDA each timing waits for the device, and peakGpuMiB is torch's peak allocation.
"""
import json, os, resource, statistics, subprocess, sys, time

def lens(model, hidden_states, positions):
    # lm_head over every layer (final norm first, except the last state which is already normed),
    # softmax, top-10 and entropy: what the seeds computed per layer.
    lm = model.language_model if hasattr(model, "language_model") else model.model.language_model
    norm = lm.norm
    L = len(hidden_states) - 1
    out = []
    for l, h in enumerate(hidden_states):
        x = h[0, positions]
        logits = model.lm_head(x if l == L else norm(x))
        p = logits.softmax(-1)
        top = p.topk(10, -1)
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
        out.append((top, ent))
    return out

def full_lens(model, hidden_states, positions):
    """What our LensRecord holds, in PyTorch: top-k, entropy, KL to the final layer, cosine to
    the final state, and exact ranks (stable sort) of every token that is top-k anywhere."""
    import torch
    lm = model.language_model if hasattr(model, "language_model") else model.model.language_model
    L = len(hidden_states) - 1
    hs = torch.stack([h[0, positions] for h in hidden_states])  # [L+1, P, H]
    normed = torch.cat([lm.norm(hs[:L]), hs[L:]])
    logits = model.lm_head(normed)
    logp = logits.log_softmax(-1)
    p = logp.exp()
    top = p.topk(10, -1)
    entropy = -(p * logp).sum(-1)
    kl = (p[L:] * (logp[L:] - logp)).sum(-1)
    cosine = torch.nn.functional.cosine_similarity(hs, hs[L:], dim=-1)
    tracked = top.indices.unique()
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    rank_of = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)) + 1
    return top, entropy, kl, cosine, rank_of[..., tracked]

def run_method(method, model_dir, image, prompt, runs, threads=0):
    import torch
    if threads > 0:
        torch.set_num_threads(threads)
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    processor = AutoProcessor.from_pretrained(model_dir, backend="pil")
    device = os.environ.get("LENS_HF_DEVICE", "cpu")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[os.environ.get("LENS_HF_DTYPE", "float32")]
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager").eval().to(device)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(images=Image.open(image).convert("RGB"), text=text, return_tensors="pt")
    ids, pixels = inputs["input_ids"].to(device), inputs["pixel_values"].to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    last_image = int((ids[0] == model.config.image_token_id).nonzero().max())
    tail = list(range(last_image + 1, ids.shape[1]))

    def seeds():
        cur = ids
        new = []
        for _ in range(8):
            out = model(input_ids=cur, pixel_values=pixels, output_hidden_states=True, output_attentions=True)
            lens(model, out.hidden_states, list(range(cur.shape[1])))
            tok = int(out.logits[0, -1].argmax())
            new.append(tok)
            cur = torch.cat([cur, torch.tensor([[tok]], device=device)], 1)
        return new

    def generate():
        out = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                             output_hidden_states=True, output_attentions=True, return_dict_in_generate=True)
        prefill = out.hidden_states[0]
        lens(model, prefill, tail)
        for step in out.hidden_states[1:]:
            lens(model, step, [0])
        return out.sequences[0, ids.shape[1]:].tolist()

    def generate_full():
        out = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                             output_hidden_states=True, output_attentions=True, return_dict_in_generate=True)
        states = [torch.cat([out.hidden_states[0][l][:, tail]] + [s[l] for s in out.hidden_states[1:]], 1) for l in range(len(out.hidden_states[0]))]
        full_lens(model, states, list(range(states[0].shape[1])))
        return out.sequences[0, ids.shape[1]:].tolist()

    f = {"seeds": seeds, "generate": generate, "generate_full": generate_full}[method]
    with torch.inference_mode():
        f()
        sync()
        times, tokens = [], None
        for _ in range(runs):
            t = time.perf_counter()
            tokens = f()
            sync()
            times.append((time.perf_counter() - t) * 1000)
    out = {"ms": statistics.median(times), "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens": tokens, "device": device, "dtype": str(dtype).replace("torch.", "")}
    if device.startswith("cuda"):
        out["peakGpuMiB"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out

if __name__ == "__main__":
    if sys.argv[1] == "--method":
        print(json.dumps(run_method(sys.argv[2], *sys.argv[3:6], int(sys.argv[6]), int(sys.argv[7]))))
        sys.exit(0)
    model_dir, image, prompt, runs = sys.argv[1:5]
    threads = sys.argv[5] if len(sys.argv) > 5 else "0"
    methods = sys.argv[6].split(",") if len(sys.argv) > 6 else ["seeds", "generate", "generate_full"]
    result = {}
    for method in methods:
        p = subprocess.run([sys.executable, __file__, "--method", method, model_dir, image, prompt, runs, threads], capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            sys.exit(1)
        result[method] = json.loads(p.stdout.strip().splitlines()[-1])
    if "seeds" in result and "generate" in result:
        result["same_tokens_as_each_other"] = result["seeds"]["tokens"] == result["generate"]["tokens"]
    print(json.dumps(result))
