/**
 * Where onnxruntime placed each node of a model's graphs on WebGPU, read from its verbose log.
 *
 * onnxruntime lists, per session, the nodes it placed on each provider ("Node(s) placed on
 * [CPUExecutionProvider]. Number of nodes: 22" and one "  Op (node/name)" line each) and every
 * copy it inserted between them ("Add MemcpyToHost before layers.0/Reshape_26 for
 * WebGpuExecutionProvider"). That log goes to the process's native stderr, so a child process
 * (test/helpers/webgpuOpen.ts, bundled here) opens the model with LOGIT_LENS_ORT_VERBOSE set and
 * the parent parses what it wrote. Sessions log under their graph's name (decoder, vision, lens).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as esbuild from "esbuild";
import { VERBOSE_LOG_ENV } from "../../src/sidecar/runtime/ort";

export interface PlacedNode {
  op: string;
  name: string;
}

export interface SessionPlacement {
  session: string;
  /** Nodes on each provider, as the headers count them (an "All nodes placed" header lists none). */
  counts: { cpu: number; gpu: number };
  cpu: PlacedNode[];
  gpu: PlacedNode[];
  /** Nodes before which onnxruntime copies a value from the GPU to the host (each a GPU drain). */
  copiesToHost: string[];
}

const LINE = /\[[VIWEF]:onnxruntime:([^,\]]*), ([\w.]+):\d+ (\w+)\]\s?(.*)$/;

/** Every session's placement in a verbose onnxruntime log, by log id (the graph's name). */
export function parsePlacement(log: string): Map<string, SessionPlacement> {
  const sessions = new Map<string, SessionPlacement>();
  const of = (id: string) => {
    let s = sessions.get(id);
    if (!s) sessions.set(id, (s = { session: id, counts: { cpu: 0, gpu: 0 }, cpu: [], gpu: [], copiesToHost: [] }));
    return s;
  };
  // the list each session's node lines go to: its last header's (sessions' lines may interleave)
  const into = new Map<string, PlacedNode[] | undefined>();
  for (const line of log.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, id, , fn, text] = m;
    if (fn === "AddCopyNode") {
      const copy = /Add MemcpyToHost before (\S+) for /.exec(text);
      if (copy) of(id).copiesToHost.push(copy[1]);
      continue;
    }
    if (fn !== "VerifyEachNodeIsAssignedToAnEp") continue;
    const header = /(?:Node\(s\)|All nodes) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(text);
    if (header) {
      const side = header[1] === "CPUExecutionProvider" ? "cpu" : header[1] === "WebGpuExecutionProvider" ? "gpu" : undefined;
      into.set(id, side && of(id)[side]);
      if (side) of(id).counts[side] += Number(header[2]);
      continue;
    }
    const node = /^\s*(\w+) \((.*)\)\s*$/.exec(text);
    const list = into.get(id);
    if (node && list) list.push({ op: node[1], name: node[2] });
  }
  return sessions;
}

/** A node of a decoder layer or vision block (the graphs scope them `layers.3/...`, `vision.blocks.0/...`). */
const PER_LAYER = /(^|\/)(vision\.)?(layers|blocks)\.\d+\//;

/**
 * Ops that compute shapes, indices (int64 positions, masks, lengths) and the rotary tables from
 * them, once per run, before the layers: WebGPU has no int64 kernels, and the graphs pin the
 * rotary cos/sin to the CPU on purpose (GraphBuilder.onCpu: WGSL's sin/cos are not float32
 * accurate). On the CPU they read only graph inputs and shapes. Anything else on the CPU
 * (FusedMatMul, Scan, Softmax, ...) is model arithmetic.
 */
const INDEX_OPS: ReadonlySet<string> = new Set([
  ...["Shape", "Size", "Gather", "Squeeze", "Unsqueeze", "Slice", "Split", "Concat", "Reshape", "Transpose", "Expand", "Range", "CumSum"],
  ...["Add", "Sub", "Mul", "Cast", "Equal", "Greater", "Less", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Where"],
  ...["Cos", "Sin"],
]);

/** What is wrong with a decoder's or vision tower's placement: a CPU island in a layer, model arithmetic on the CPU, a GPU-to-host copy inside a layer. */
export function placementProblems(p: SessionPlacement): string[] {
  const problems: string[] = [];
  for (const n of p.cpu) {
    if (PER_LAYER.test(n.name)) problems.push(`${p.session}: ${n.op} (${n.name}) of the per-layer path runs on the CPU`);
    else if (!INDEX_OPS.has(n.op)) problems.push(`${p.session}: ${n.op} (${n.name}) runs on the CPU and is not shape or index arithmetic`);
  }
  for (const name of p.copiesToHost) if (PER_LAYER.test(name)) problems.push(`${p.session}: a value is copied from the GPU to the host before ${name}, inside the per-layer path`);
  return problems;
}

/** A readable summary of one session's placement. */
export function describePlacement(p: SessionPlacement): string {
  const cpu = p.cpu.length ? `\n    on the CPU: ${p.cpu.map((n) => `${n.op} (${n.name})`).join(", ")}` : "";
  const copies = p.copiesToHost.length ? `\n    copied to the host before: ${p.copiesToHost.join(", ")}` : "";
  return `  ${p.session}: ${p.counts.gpu} nodes on WebGPU, ${p.counts.cpu} on the CPU${cpu}${copies}`;
}

const ROOT = path.resolve(__dirname, "../..");

/**
 * test/helpers/webgpuOpen.ts bundled to a script node can run (no TypeScript loader in the
 * child). It goes under node_modules/.cache so that onnxruntime-node resolves from it.
 */
export function bundledOpenScript(): string {
  const code = esbuild.buildSync({
    entryPoints: [path.join(__dirname, "webgpuOpen.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["onnxruntime-node", "sharp"],
    write: false,
    logLevel: "silent",
  }).outputFiles[0].text;
  const dir = path.join(ROOT, "node_modules", ".cache", "logit-lens-test");
  const file = path.join(dir, `webgpuOpen-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.cjs`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(`${file}.${process.pid}.tmp`, code);
    fs.renameSync(`${file}.${process.pid}.tmp`, file);
  }
  return file;
}

/** Opens `modelDir` on WebGPU in a child process with `env` (SwiftShader's) and returns every session's placement. */
export async function placementOf(
  modelDir: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 90_000,
  dtype: "float32" | "float16" = "float32",
): Promise<{ provider: string; computeDtype: string; sessions: Map<string, SessionPlacement> }> {
  const script = bundledOpenScript();
  const child = spawn(process.execPath, [script, modelDir, dtype], { env: { ...env, [VERBOSE_LOG_ENV]: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  if (code !== 0) {
    const tail = stderr.split("\n").filter((l) => !LINE.test(l) || /\[[EF]:/.test(l)).slice(-15).join("\n");
    throw new Error(`opening ${modelDir} on WebGPU failed (exit ${code}):\n${tail}`);
  }
  const said = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as { provider?: string; computeDtype?: string };
  return { provider: said.provider ?? "?", computeDtype: said.computeDtype ?? "?", sessions: parsePlacement(stderr) };
}
