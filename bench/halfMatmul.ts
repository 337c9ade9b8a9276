/**
 * npm run bench:halfmatmul [-- --rounds R] [--rows 1,512] [--threads N]
 *
 * What a half-precision weight costs onnxruntime's CPU provider, the question behind dtype auto
 * on the CPU. A chain of eight 4096 x 4096 products (one LLaVA-1.5-7B layer's worth of weights,
 * 256 MiB as float16) over X of R rows (1: a decode step, 512: a prefill), three ways:
 *  - float32: float32 weights and compute (the float32-copies plan; the reference);
 *  - float16: float16 weights and compute as stored (dtype float16);
 *  - cast:    float16 weights widened by a Cast when each product runs (an If on its input,
 *             as blocks.ts does), float32 compute: the half-per-use plan;
 *  - float16-widened: float16 activations, each product widened to float32 by the graph
 *             itself (the activation cast, the weight cast when its product runs, the result
 *             cast back), which is what dtype float16 builds on the CPU.
 * Each side runs in a fresh process (its peak RSS is its own), the sides alternate over R rounds
 * (the machine is shared), and each reports the median of 5 timed runs after a warm-up. Printed:
 * per product, the ratio to float32 of the same round, and peak RSS against the weight files.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { GraphBuilder } from "../src/sidecar/graph/onnxBuilder";
import { openGraphSession } from "../src/sidecar/runtime/ort";
import { flag, median, runJsonChild, WORK } from "./checkpoint";

const N = 4096;
const PRODUCTS = 8;
const SIDES = ["float32", "float16", "cast", "float16-widened"] as const;
type Side = (typeof SIDES)[number];

const args = process.argv.slice(2);

interface ChildResult {
  perProductMs: number;
  peakRssMiB: number;
  baseRssMiB: number;
}

/** Weights of one storage type, written once: small values, so that eight products stay finite. */
function weightFile(dir: string, type: "float16" | "float32"): string {
  const file = path.join(dir, `w-${type}.bin`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const count = PRODUCTS * N * N;
  const data = type === "float16" ? new Uint16Array(count) : new Float32Array(count);
  // float16 0x1400 + i % 977 is 2^-10 .. 2^-9; the float32 file holds the same values
  for (let i = 0; i < count; i++) {
    const bits = 0x1400 + (i % 977);
    data[i] = type === "float16" ? bits : 2 ** -10 * (1 + (i % 977) / 1024);
  }
  fs.writeFileSync(`${file}.tmp`, new Uint8Array(data.buffer));
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

async function child(side: Side, rows: number, threads: number, dir: string): Promise<void> {
  const stored = side === "float32" ? "float32" : "float16";
  const compute = side === "float16" || side === "float16-widened" ? "float16" : "float32";
  const bytes = stored === "float16" ? 2 : 4;
  const g = new GraphBuilder(`halfmatmul-${side}`);
  let x = g.input("x", compute, [rows, N]);
  for (let k = 0; k < PRODUCTS; k++) {
    const w = g.externalWeight(`w${k}`, stored, [N, N], `w-${stored}.bin`, k * N * N * bytes, N * N * bytes);
    // as the model's linear layers: Gemm with transB; the per-use cast waits for its reader as
    // there (an If on a flag computed from x), so only one float32 copy is alive at a time
    let weight = w;
    if (side === "float16-widened") {
      const ready = g.op("Cast", [g.op("Size", [x])], { to: 9 });
      const cast = () => [g.op("Cast", [w], { to: 1 })];
      const wide = g.ifElse(ready, ["float32"], cast, cast, "when_used")[0];
      x = g.op("Cast", [g.op("Gemm", [g.op("Cast", [x], { to: 1 }), wide], { transB: 1 })], { to: 10 });
      continue;
    }
    if (side === "cast") {
      const ready = g.op("Cast", [g.op("Size", [x])], { to: 9 });
      const cast = () => [g.op("Cast", [w], { to: 1 })];
      weight = g.ifElse(ready, ["float32"], cast, cast, "when_used")[0];
    }
    x = g.op("Gemm", [x, weight], { transB: 1 });
  }
  g.output(x, "y", compute, [rows, N]);
  const baseRssMiB = process.memoryUsage().rss / 2 ** 20;
  // the cast side must not be folded into float32 copies at load: that is the other plan
  const session = await openGraphSession(g.build(), { device: "cpu", threads, weightsFolder: dir, foldConstants: false });
  const data = compute === "float16" ? new Uint16Array(rows * N).fill(0x3c00) : new Float32Array(rows * N).fill(1);
  const feed = { x: { dims: [rows, N], data, ...(compute === "float16" ? { type: "float16" as const } : {}) } };
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const out = await session.run(feed);
    times.push(performance.now() - t0);
    const y = out["y"].data;
    if (!(y.length === rows * N)) throw new Error(`the ${side} chain gave ${y.length} values`);
  }
  await session.release();
  const result: ChildResult = { perProductMs: median(times.slice(1)) / PRODUCTS, peakRssMiB: process.resourceUsage().maxRSS / 1024, baseRssMiB };
  process.stdout.write(JSON.stringify(result) + "\n");
}

async function main(): Promise<void> {
  const dir = path.join(WORK, "halfmatmul");
  const threads = Number(flag("--threads") ?? 0);
  if (args[0] === "--child") return child(args[1] as Side, Number(args[2]), threads, dir);
  const rounds = Number(flag("--rounds") ?? 3);
  const rowsList = (flag("--rows") ?? "1,512").split(",").map(Number);
  weightFile(dir, "float16");
  weightFile(dir, "float32");
  console.log(`${PRODUCTS} products of ${N} x ${N} (weights: ${(PRODUCTS * N * N * 2) / 2 ** 20} MiB as float16, ${(PRODUCTS * N * N * 4) / 2 ** 20} MiB as float32), ${rounds} alternating rounds, threads ${threads || "default"}, ${new Date().toISOString()}`);
  for (const rows of rowsList) {
    const results = new Map<Side, ChildResult[]>(SIDES.map((s) => [s, []]));
    for (let r = 0; r < rounds; r++) {
      // alternate which side goes first
      const order = r % 2 === 0 ? SIDES : [...SIDES].reverse();
      for (const side of order) {
        const argv = [__filename, "--child", side, String(rows), ...(threads ? ["--threads", String(threads)] : [])];
        results.get(side)!.push((await runJsonChild<ChildResult>(process.execPath, argv)).value);
      }
    }
    const ref = results.get("float32")!;
    console.log(`\n${rows} row(s):`);
    for (const side of SIDES) {
      const rs = results.get(side)!;
      const ratio = median(rs.map((x, i) => x.perProductMs / ref[i].perProductMs));
      const weightsMiB = (PRODUCTS * N * N * (side === "float32" ? 4 : 2)) / 2 ** 20;
      const peak = median(rs.map((x) => x.peakRssMiB - x.baseRssMiB));
      console.log(
        `  ${side.padEnd(15)} ${median(rs.map((x) => x.perProductMs)).toFixed(2).padStart(7)} ms a product, ${ratio.toFixed(2)}x float32; ` +
          `peak RSS over the process's start ${peak.toFixed(0)} MiB (${(peak / weightsMiB).toFixed(2)}x its ${weightsMiB} MiB of weights)`,
      );
    }
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
