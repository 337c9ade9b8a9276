// One build, three bundles: the extension host (node/cjs, vscode external), the sidecar and CLI
// (node, native modules external; with the process that renders chat templates,
// dist/templateWorker.js, and the thread that holds large tokenizers, dist/tokenizerWorker.js),
// and the webview (browser/iife). Dev tools (benchmarks) are built with the sidecar's options.
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const production = process.argv.includes("--production");

// jsonc-parser's "main" is a UMD build whose dynamic requires esbuild cannot follow: use its ESM build.
const alias = { "jsonc-parser": "jsonc-parser/lib/esm/main.js" };
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: "info", alias };
const nodeNative = ["onnxruntime-node", "sharp"];

const builds = [
  { ...common, entryPoints: { extension: "src/extension/extension.ts" }, outdir: "dist", platform: "node", format: "cjs", target: "node20", external: ["vscode"] },
  { ...common, entryPoints: { sidecar: "src/sidecar/main.ts", templateWorker: "src/sidecar/text/templateWorker.ts", tokenizerWorker: "src/sidecar/text/tokenizerWorker.ts", "bench/runtime": "bench/runtime.ts", "bench/lens": "bench/lens.ts", "bench/sweep": "bench/sweep.ts", "bench/webview": "bench/webview.ts", "bench/real": "bench/real.ts", "bench/kvcache": "bench/kvcache.ts", "bench/halfMatmul": "bench/halfMatmul.ts", "bench/kernels": "bench/kernels.ts" }, outdir: "dist", platform: "node", format: "cjs", target: "node20", external: nodeNative },
  { ...common, entryPoints: { webview: "src/webview/main.ts" }, outdir: "dist", platform: "browser", format: "iife", target: "es2022" },
];

if (watch) {
  for (const options of builds) await (await esbuild.context(options)).watch();
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
}
