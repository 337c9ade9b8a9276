/**
 * The lens graph's rank computation (exactRanks), both ways (a sort for small vocabularies,
 * binning for large ones), against a brute-force count, on logits built to be hard for it:
 * many exact ties, queries that repeat or tie with each other, a cluster of near-equal values,
 * an outlier that stretches the value range, a constant row.
 */
import * as os from "node:os";
import { mulberry32 } from "../../src/shared/seededRandom";
import { describe, expect, it } from "vitest";
import type { GraphCtx } from "../../src/sidecar/graph/blocks";
import { exactRanks } from "../../src/sidecar/graph/lensGraph";
import { GraphBuilder } from "../../src/sidecar/graph/onnxBuilder";
import { openGraphSession, type GraphSession } from "../../src/sidecar/runtime/ort";

async function rankSession(V: number, method: "sort" | "bins"): Promise<GraphSession> {
  const b = new GraphBuilder("ranks");
  const logits = b.input("logits", "float32", ["rows", V]);
  const queries = b.input("queries", "int64", ["rows", "n"]);
  b.output(exactRanks({ b } as unknown as GraphCtx, logits, queries, V, method), "ranks", "int32", ["rows", "n"]);
  return openGraphSession(b.build(), { weightsFolder: os.tmpdir(), device: "cpu", threads: 1 });
}

/** 1 + entries above, + equal entries with a lower id: the position in a stable descending sort. */
function bruteRank(row: Float32Array, q: number): number {
  let r = 1;
  for (let j = 0; j < row.length; j++) if (row[j] > row[q] || (row[j] === row[q] && j < q)) r++;
  return r;
}


async function check(session: GraphSession, rows: Float32Array[], queries: number[][]): Promise<void> {
  const V = rows[0].length;
  const n = queries[0].length;
  const out = await session.run({
    logits: { data: Float32Array.from(rows.flatMap((r) => Array.from(r))), dims: [rows.length, V] },
    queries: { data: BigInt64Array.from(queries.flat(), BigInt), dims: [rows.length, n] },
  });
  const got = Array.from(out["ranks"].data as Int32Array, Number);
  const want = rows.flatMap((row, r) => queries[r].map((q) => bruteRank(row, q)));
  expect(got).toEqual(want);
}

describe.each(["sort", "bins"] as const)("exactRanks by %s", (method) => {
  const V = 997;
  const rand = mulberry32(7);
  const gaussian = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const randomQueries = (count: number) => Array.from({ length: count }, () => Math.floor(rand() * V));

  it("matches a brute-force count on continuous logits, every id queried", async () => {
    const s = await rankSession(V, method);
    const rows = Array.from({ length: 4 }, () => Float32Array.from({ length: V }, gaussian));
    const all = Array.from({ length: V }, (_, i) => i);
    await check(s, rows, rows.map(() => all));
    await s.release();
  });

  it("breaks exact ties by the lower id, with tied and repeated queries", async () => {
    const s = await rankSession(V, method);
    // Values on a coarse grid: hundreds of entries share each value.
    const rows = Array.from({ length: 3 }, () => Float32Array.from({ length: V }, () => Math.round(gaussian() * 2) / 2));
    const queries = rows.map((row) => {
      const q = randomQueries(120);
      const tiedWithFirst = row.findIndex((v, j) => j !== q[0] && v === row[q[0]]);
      return [...q, q[0], q[5], tiedWithFirst];
    });
    await check(s, rows, queries);
    await s.release();
  });

  it("handles every query in one bin (an outlier stretches the range) and a constant row", async () => {
    const s = await rankSession(V, method);
    const outlier = Float32Array.from({ length: V }, () => gaussian() * 1e-3);
    outlier[17] = 1e6;
    const constant = new Float32Array(V).fill(0.25);
    const negative = Float32Array.from({ length: V }, () => -1e4 + gaussian());
    const rows = [outlier, constant, negative];
    await check(s, rows, rows.map(() => [17, ...randomQueries(60), 0, V - 1]));
    await s.release();
  });

  it("handles a cluster of near-equal values around the queries (weight-decayed unused tokens)", async () => {
    const s = await rankSession(V, method);
    const rows = Array.from({ length: 3 }, () => Float32Array.from({ length: V }, (_, j) => (j < 100 ? 5 + gaussian() : 1e-6 * gaussian())));
    await check(s, rows, rows.map(() => [...randomQueries(40), 0, 1, 2]));
    await s.release();
  });

  it("works for one query and for a single row", async () => {
    const s = await rankSession(V, method);
    const row = Float32Array.from({ length: V }, gaussian);
    await check(s, [row], [[Math.floor(rand() * V)]]);
    await s.release();
  });
});
