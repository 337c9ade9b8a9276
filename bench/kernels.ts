/**
 * npm run bench:kernels [-- --rounds R] [--threads N]
 *
 * The ceiling a CPU record meets: the matrix products every layer is made of, in onnxruntime's
 * CPU provider (float32: the only dtype it multiplies in on x86, bench:halfmatmul) against
 * torch's in float32, float16 and bfloat16 (what transformers runs on the same CPU; on one with
 * AVX512-FP16 and AMX, torch's half kernels use them). Two shapes of LLaVA-1.5-7B's:
 *  - prefill: 618 rows (its prompt with 576 image tokens) through an MLP matrix, 4096 -> 11008;
 *  - decode: one row through eight 4096 x 4096 matrices (a decode step is memory-bound).
 * Each side runs in a fresh process, the sides alternate over R rounds (the machine is shared),
 * and each reports the median of 5 timed runs after a warm-up. Printed: ms and GFLOP/s per
 * product, and each torch dtype's time against onnxruntime's float32 of the same round.
 */
import * as path from "node:path";
import { GraphBuilder } from "../src/sidecar/graph/onnxBuilder";
import { openGraphSession } from "../src/sidecar/runtime/ort";
import { flag, median, ROOT, runJsonChild } from "./checkpoint";

const SHAPES = {
  prefill: { rows: 618, in: 4096, out: 11008, products: 2 },
  decode: { rows: 1, in: 4096, out: 4096, products: 8 },
} as const;
type ShapeName = keyof typeof SHAPES;
const TORCH_DTYPES = ["float32", "float16", "bfloat16"] as const;
type Side = "onnxruntime float32" | `torch ${(typeof TORCH_DTYPES)[number]}`;
const SIDES: Side[] = ["onnxruntime float32", ...TORCH_DTYPES.map((d) => `torch ${d}` as const)];

const args = process.argv.slice(2);

interface ChildResult {
  perProductMs: number;
}

/** Our side: the same products as Gemm with transB (as blocks.ts builds every linear layer), weights fed as inputs. */
async function child(shape: ShapeName, threads: number): Promise<void> {
  const s = SHAPES[shape];
  const g = new GraphBuilder(`kernels-${shape}`);
  const x = g.input("x", "float32", [s.rows, s.in]);
  for (let k = 0; k < s.products; k++) g.output(g.op("Gemm", [x, g.input(`w${k}`, "float32", [s.out, s.in])], { transB: 1 }), `y${k}`, "float32", [s.rows, s.out]);
  const session = await openGraphSession(g.build(), { device: "cpu", threads, weightsFolder: ROOT });
  const random = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761) >>> 0) / 2 ** 32) * scale);
  const feeds: Record<string, { dims: number[]; data: Float32Array }> = { x: { dims: [s.rows, s.in], data: random(s.rows * s.in, 1) } };
  for (let k = 0; k < s.products; k++) feeds[`w${k}`] = { dims: [s.out, s.in], data: random(s.out * s.in, 2 ** -9) };
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const out = await session.run(feeds);
    times.push(performance.now() - t0);
    if (out["y0"].data.length !== s.rows * s.out) throw new Error(`the product gave ${out["y0"].data.length} values`);
  }
  await session.release();
  process.stdout.write(JSON.stringify({ perProductMs: median(times.slice(1)) / s.products } satisfies ChildResult) + "\n");
}

function runSide(side: Side, shape: ShapeName, threads: number): Promise<ChildResult> {
  if (side === "onnxruntime float32") {
    return runJsonChild<ChildResult>(process.execPath, [__filename, "--child", shape, String(threads)]).then((r) => r.value);
  }
  const s = SHAPES[shape];
  const dtype = side.slice("torch ".length);
  const argv = [path.join(ROOT, "bench/torch_gemm.py"), String(s.rows), String(s.in), String(s.out), String(s.products), dtype, String(threads)];
  return runJsonChild<ChildResult>("python3", argv).then((r) => r.value);
}

async function main(): Promise<void> {
  const threads = Number(flag("--threads") ?? 0);
  if (args[0] === "--child") return child(args[1] as ShapeName, Number(args[2]));
  const rounds = Number(flag("--rounds") ?? 3);
  console.log(`matrix products, onnxruntime-node's CPU provider against torch, ${rounds} alternating rounds, threads ${threads || "default"}, ${new Date().toISOString()}`);
  for (const shape of Object.keys(SHAPES) as ShapeName[]) {
    const s = SHAPES[shape];
    const results = new Map<Side, ChildResult[]>(SIDES.map((side) => [side, []]));
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? SIDES : [...SIDES].reverse()) results.get(side)!.push(await runSide(side, shape, threads));
    }
    const ref = results.get("onnxruntime float32")!;
    const flops = 2 * s.rows * s.in * s.out;
    console.log(`\n${shape}: ${s.rows} x ${s.in} -> ${s.out}, ${s.products} products a run`);
    for (const side of SIDES) {
      const rs = results.get(side)!;
      const ms = median(rs.map((x) => x.perProductMs));
      const ratio = median(rs.map((x, i) => x.perProductMs / ref[i].perProductMs));
      console.log(`  ${side.padEnd(20)} ${ms.toFixed(2).padStart(8)} ms a product  ${(flops / ms / 1e6).toFixed(0).padStart(5)} GFLOP/s  ${ratio.toFixed(2)}x onnxruntime's time`);
    }
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
