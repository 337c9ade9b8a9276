/**
 * Which WebGPU adapter this machine offers, asked of Dawn itself. onnxruntime's WebGPU provider
 * is built on Dawn and keeps its adapter to itself (the Node binding names nothing), so the
 * question goes to the `webgpu` package, Dawn's own Node binding, with the request onnxruntime
 * makes (a high-performance adapter, no forced fallback). Its answer says whether the adapter
 * is a fallback (software: SwiftShader, llvmpipe, WARP), its vendor and description, and whether
 * it has shader-f16, which float16 compute on WebGPU needs.
 *
 * The query runs in a child process: loading a second Dawn and a Vulkan, Metal or D3D12 driver
 * into the sidecar could fail in ways that take the process down, and the child exits with
 * everything it loaded.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

export interface WebgpuAdapter {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn's isFallbackAdapter: a software adapter. */
  fallback: boolean;
  shaderF16: boolean;
  /** The largest buffer the adapter allows, in bytes (WebGPU reports no memory size). */
  maxBufferBytes: number;
}

export type AdapterAnswer = { adapter: WebgpuAdapter } | { none: string };

const QUERY_SCRIPT = `
const [dawn] = JSON.parse(process.argv[1]);
const say = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
let create;
try { ({ create } = require(dawn)); } catch (e) { say({ none: "Dawn's Node binding did not load (" + String(e && e.message || e).split("\\n")[0] + ")" }); }
create([]).requestAdapter({ powerPreference: "high-performance" }).then((a) => {
  if (!a) return say({ none: "Dawn found no WebGPU adapter" });
  const i = a.info;
  say({ adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
    fallback: !!(i.isFallbackAdapter ?? a.isFallbackAdapter), shaderF16: a.features.has("shader-f16"), maxBufferBytes: Number(a.limits.maxBufferSize) } });
}, (e) => say({ none: "Dawn's adapter request failed (" + String(e && e.message || e).split("\\n")[0] + ")" }));
`;

const QUERY_TIMEOUT_MS = 30_000;

/** Where this platform's dawn.node is, or why there is none. */
export function dawnBinding(platform = process.platform, arch = process.arch): { file: string } | { none: string } {
  let dir: string;
  try {
    dir = path.dirname(createRequire(__filename).resolve("webgpu/package.json"));
  } catch {
    return { none: "the webgpu package (Dawn's Node binding) is not installed" };
  }
  const file = path.join(dir, "dist", `${platform}-${platform === "darwin" ? "universal" : arch}`, "dawn.node");
  return fs.existsSync(file) ? { file } : { none: `the webgpu package has no Dawn binding for ${platform}-${arch}` };
}

let answer: Promise<AdapterAnswer> | undefined;

/** The adapter Dawn offers here (asked once per process). */
export function webgpuAdapter(): Promise<AdapterAnswer> {
  answer ??= queryAdapter();
  return answer;
}

function queryAdapter(): Promise<AdapterAnswer> {
  const binding = dawnBinding();
  if ("none" in binding) return Promise.resolve(binding);
  return new Promise((resolve) => {
    execFile(process.execPath, ["-e", QUERY_SCRIPT, JSON.stringify([binding.file])], { timeout: QUERY_TIMEOUT_MS, env: { ...process.env, ELECTRON_RUN_AS_NODE: "1" } }, (error, stdout) => {
      try {
        const parsed = JSON.parse(stdout) as AdapterAnswer;
        if ("adapter" in parsed || "none" in parsed) return resolve(parsed);
      } catch {
        // no answer: below
      }
      resolve({ none: error?.killed ? `the adapter query did not finish within ${QUERY_TIMEOUT_MS / 1000} s` : `the adapter query failed (${error?.message.split("\n")[0] ?? "no answer"})` });
    });
  });
}

const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|\bwarp\b|microsoft basic render/i;

/** Whether an adapter is a software one: Dawn says fallback, or its names are a known software rasteriser's. */
export function isSoftwareAdapter(a: WebgpuAdapter): boolean {
  return a.fallback || SOFTWARE_NAMES.test(`${a.vendor} ${a.architecture} ${a.device} ${a.description}`);
}

/** The adapter as people name it: its description, else vendor and architecture. */
export function adapterName(a: WebgpuAdapter): string {
  const description = a.description.trim();
  if (description) return description;
  return [a.vendor, a.architecture].filter((s) => s.trim()).join(" ") || "an unnamed WebGPU adapter";
}
