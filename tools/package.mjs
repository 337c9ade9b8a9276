// Packages the extension as a platform-specific VSIX: the production bundles, media, and the
// native runtime packages of one platform only (onnxruntime-node ships every platform's
// binaries, 290 MB in all; one platform's are 25-86 MB).
//
//   node tools/package.mjs [--target linux-x64] [--out FILE] [--no-build]
//
// The target defaults to this machine's platform. The VSIX installs with
// `code --install-extension FILE` (or code-server's).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const TARGETS = { "linux-x64": ["linux", "x64"], "linux-arm64": ["linux", "arm64"], "darwin-arm64": ["darwin", "arm64"], "win32-x64": ["win32", "x64"], "win32-arm64": ["win32", "arm64"] };
const target = opt("--target", `${process.platform}-${process.arch}`);
if (!TARGETS[target]) {
  console.error(`package: unknown target ${target} (targets: ${Object.keys(TARGETS).join(", ")})`);
  process.exit(2);
}
const [platform, arch] = TARGETS[target];
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const out = path.resolve(opt("--out", path.join(root, `${pkg.name}-${pkg.version}-${target}.vsix`)));

// --no-build: package the bundles as they are (the e2e suite packages what `npm test` built)
if (!args.includes("--no-build")) execFileSync(process.execPath, [path.join(root, "esbuild.mjs"), "--production"], { cwd: root, stdio: "inherit" });
for (const bundle of ["extension.js", "sidecar.js", "templateWorker.js", "tokenizerWorker.js", "webview.js"]) {
  if (!fs.existsSync(path.join(root, "dist", bundle))) {
    console.error(`package: dist/${bundle} is missing: run npm run build first`);
    process.exit(1);
  }
}

// the allow-list, with the native packages narrowed to this target's binaries and onnxruntime-node's
// install metadata (Install the CUDA Provider reads its feed, package and version there) (vsce lets any
// "!" pattern win over every ignore pattern, so the narrowing must be in the allow-list itself)
const NARROW = {
  "!node_modules/onnxruntime-node/**": ["!node_modules/onnxruntime-node/*", "!node_modules/onnxruntime-node/dist/**", "!node_modules/onnxruntime-node/lib/**", "!node_modules/onnxruntime-node/script/install-metadata*.js", `!node_modules/onnxruntime-node/bin/*/${platform}/${arch}/**`],
  // Dawn's Node binding, only to name the WebGPU adapter (src/sidecar/runtime/webgpuAdapter.ts): its manifest and this target's dawn.node (and DLLs)
  "!node_modules/webgpu/**": ["!node_modules/webgpu/package.json", "!node_modules/webgpu/LICENSE.md", `!node_modules/webgpu/dist/${platform === "darwin" ? "darwin-universal" : `${platform}-${arch}`}/**`],
  "!node_modules/@img/**": ["!node_modules/@img/colour/**", `!node_modules/@img/sharp-${platform}-${arch}/**`, `!node_modules/@img/sharp-libvips-${platform}-${arch}/**`],
};
const ignore = fs
  .readFileSync(path.join(root, ".vscodeignore"), "utf8")
  .split("\n")
  .flatMap((line) => NARROW[line.trim()] ?? [line]);
const ignoreFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vsix-")), ".vscodeignore");
fs.writeFileSync(ignoreFile, `${ignore.join("\n")}\n`);

const vsce = path.join(root, "node_modules", "@vscode", "vsce", "vsce");
execFileSync(
  process.execPath,
  [vsce, "package", "--target", target, "--ignoreFile", ignoreFile, "--allow-missing-repository", "--no-update-package-json", "--out", out],
  { cwd: root, stdio: "inherit" },
);
console.log(`package: ${out} (${(fs.statSync(out).size / 1e6).toFixed(1)} MB)`);
