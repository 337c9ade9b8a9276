#!/usr/bin/env bash
# The GPU check of issue 16, as one prepared script for a lent NVIDIA machine (H200 class; torch,
# transformers and safetensors there, no Node, no internet). On it:
#   1. unpacks what tools/gpu/pack.sh packed here (Node, the native runtime packages, the Vulkan
#      loader) and says which GPU, driver and Vulkan adapter there are;
#   2. builds a full LLaVA-1.5-7B checkpoint (all 32 layers, 13.5 GB) with random float16 weights
#      from bench/configs/llava-1.5-7b-hf with transformers (bench/hf_real.py build);
#   3. runs bench:lens on it: our full record (the lens at every layer for the prompt tail and 8
#      generated tokens, ranks, the attention breakdown) with --device webgpu in float16 (dtype
#      auto: the checkpoint's half precision on a GPU; about 14 GB of weights on the device), against
#      transformers in float16 on CUDA (generate with its cache; the seeds' method:
#      output_hidden_states and lm_head over every layer), alternating, and prints the times,
#      the ratios, peak GPU memory of each, and whether the generated tokens agree.
# Targets: >= 3x faster than the seeds' method, >= 1x generate; the physical floor of this record
# on an H200 is about 50 ms.
#
# Here, first:  bash tools/gpu/pack.sh   (it also packs the bundles, minified, to travel light)
# There (device tool):  run(command="bash bench/gpu.sh", carry=[".gpu", ".gl"], timeout_s=540)
# Dry run here, on the CPU, with a 1-layer cut and PyTorch in float32 (checks every step but the
# GPU's):  bash bench/gpu.sh --dry-run
#
# Options: --layers N (a cut, default all 32), --rounds R (default 2), --device D (ours, default
# webgpu; cpu and cuda also work), --dtype T (ours, default auto; float32 doubles the device
# memory), --dry-run (our side on the CPU in float16, the compute the GPU run uses).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0 LAYERS="" ROUNDS=2 DEVICE=webgpu DTYPE=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --layers) LAYERS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --device) DEVICE="$2"; shift ;;
    --dtype) DTYPE="$2"; shift ;;
    *) echo "bench/gpu.sh: unknown option $1 (see the head of the script)" >&2; exit 2 ;;
  esac
  shift
done
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

if [ "$DRY" = 1 ]; then
  # auto is float32 on the CPU; float16 is what the GPU run computes in
  LAYERS=${LAYERS:-1} DEVICE=cpu HF_DEVICE=cpu HF_DTYPE=float32
  [ "$DTYPE" = auto ] && DTYPE=float16
  [ -f dist/bench/lens.js ] || npm run build >/dev/null
else
  HF_DEVICE=cuda HF_DTYPE=float16
  step "unpacking Node, the runtime packages and the Vulkan loader"
  for f in .gpu/node.tar.xz .gpu/modules.tar.xz .gpu/dist.tar.xz; do
    [ -e "$f" ] || { echo "bench/gpu.sh: $f is missing: run bash tools/gpu/pack.sh here, and carry .gpu and .gl" >&2; exit 2; }
  done
  mkdir -p /tmp/gpu-node && tar -xJf .gpu/node.tar.xz -C /tmp/gpu-node && export PATH="/tmp/gpu-node/bin:$PATH"
  tar -xJf .gpu/modules.tar.xz
  tar -xJf .gpu/dist.tar.xz
  if ! ldconfig -p | grep -q libvulkan.so.1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
  [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  node --version
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
  step "which adapter WebGPU gets (the bundled model, one token)"
  node bin/logit-lens.js --device "$DEVICE" --dtype "$DTYPE" --verbose --max-new-tokens 1 2>&1 | grep -iv "^ *[0-9]" | tail -8 || true
fi

DIR="bench/.work/gpu-llava-1.5-7b${LAYERS:+-${LAYERS}l}"
if [ ! -f "$DIR/model.safetensors.index.json" ] && [ ! -f "$DIR/model.safetensors" ]; then
  step "building $DIR with transformers (random float16 weights)"
  python3 bench/hf_real.py build bench/configs/llava-1.5-7b-hf test/fixtures/models/llava-gqa-f32/model "$DIR" --dtype float16 ${LAYERS:+--layers "$LAYERS"}
fi
du -sh "$DIR"

step "bench:lens: ours on $DEVICE ($DTYPE) against PyTorch on $HF_DEVICE in $HF_DTYPE, $ROUNDS rounds"
node dist/bench/lens.js --model "$DIR" --device "$DEVICE" --dtype "$DTYPE" --hf-device "$HF_DEVICE" --hf-dtype "$HF_DTYPE" --rounds "$ROUNDS"
step "done"
