/**
 * A masked sweep through the built CLI, read back as the comparison view reads it: its aggregates
 * carry each variant's accuracy interval and masked heads and the per-item change against the
 * baseline, and every row of the per-item table finds its full record (records.jsonl), the same
 * record the sweep computed, with the variant's mask.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { SweepAggregates } from "../../src/shared/sweep";
import { readSweepRows, SweepRecordIndex } from "../../src/extension/sweepItems";
import { FIXTURES } from "../helpers/fixtures";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const SCENES = path.resolve(__dirname, "../fixtures/scenes");

describe("a sweep's items, as the comparison view opens them", () => {
  let out = "";
  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-items-"));
    const file = path.join(dir, "masked.lens.json");
    fs.writeFileSync(
      file,
      JSON.stringify({
        name: "masked",
        model: MODEL,
        inputs: [{ manifest: path.join(SCENES, "questions.jsonl") }],
        prompts: ["{question}"],
        target: "{answer}",
        generation: { maxNewTokens: 2 },
        variants: [{ name: "baseline" }, { name: "mask", mask: { "1": [1, 0] } }],
        groupBy: ["group"],
        output: { folder: "results", records: true },
      }),
    );
    const r = spawnSync(process.execPath, [BIN, "run", file, "--device", "cpu", "--threads", "1"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    out = path.join(dir, "results");
  });

  it("writes accuracy intervals, masked heads and the change against the baseline into aggregates.json", () => {
    const a = JSON.parse(fs.readFileSync(path.join(out, "aggregates.json"), "utf8")) as SweepAggregates;
    expect(a.variants?.map((v) => [v.variant, v.headMask, v.maskVaries])).toEqual([
      ["baseline", null, false],
      ["mask", { "1": [0, 1] }, false],
    ]);
    const rows = fs.readFileSync(path.join(out, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { variant: string; correct: boolean | null; targetProb: number[] });
    const masked = rows.filter((r) => r.variant === "mask");
    const base = a.variants![0];
    expect(base.n).toBe(rows.length / 2);
    expect(base.correct).toBe(rows.filter((r) => r.variant === "baseline" && r.correct).length);
    if (base.scored) expect(base.interval![0]).toBeLessThanOrEqual(base.accuracy!);
    // the last layer's median change of the answer probability, worked out again from the rows
    const d = a.differences!.find((x) => x.field === "targetProb" && x.key === "all")!;
    expect(d).toMatchObject({ variant: "mask", baseline: "baseline", n: masked.length });
    const L = d.median.length - 1;
    const changes = masked.map((r, i) => r.targetProb[L] - rows.filter((b) => b.variant === "baseline")[i].targetProb[L]).sort((x, y) => x - y);
    const mid = changes.length >> 1;
    const median = changes.length % 2 ? changes[mid] : (changes[mid - 1] + changes[mid]) / 2;
    expect(d.median[L]).toBeCloseTo(median, 12);
    expect(a.differences!.some((x) => x.key === "group")).toBe(true);
  });

  it("finds every item's record, with its variant's mask, and null for an unknown id", async () => {
    const rows = await readSweepRows(out);
    expect(rows.length).toBeGreaterThan(0);
    const index = (await SweepRecordIndex.open(out))!;
    expect(index.size).toBe(rows.length);
    // the record as the sweep wrote it, line for line
    const lines = fs.readFileSync(path.join(out, "records.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; record: unknown });
    for (const row of rows) {
      const record = await index.get(row.id);
      expect(record).toEqual(lines.find((l) => l.id === row.id)!.record);
      expect(record, row.id).not.toBeNull();
      expect(record!.headMask).toEqual(row.headMask);
      expect(record!.input.prompt).toBe(row.prompt);
      expect(record!.generation.ids.length).toBeGreaterThan(0);
    }
    expect(await index.get("no-such-item")).toBeNull();
  });

  it("a folder without records.jsonl has no records to give, and a torn last line of results.jsonl is skipped", async () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "lens-items-copy-"));
    const text = fs.readFileSync(path.join(out, "results.jsonl"), "utf8");
    fs.writeFileSync(path.join(copy, "results.jsonl"), `${text}{"v":1,"id":"torn`);
    const rows = await readSweepRows(copy);
    expect(rows.length).toBe(text.trim().split("\n").length);
    expect(await SweepRecordIndex.open(copy)).toBeNull();
    expect(await readSweepRows(path.join(copy, "missing"))).toEqual([]);
    // a torn write with the rerun's row glued after it, as an interrupted sweep leaves it: the row counts
    const [first, ...rest] = text.trim().split("\n");
    fs.writeFileSync(path.join(copy, "results.jsonl"), `{"v":1,"id":"torn${first}\n${rest.join("\n")}\n`);
    expect((await readSweepRows(copy)).map((r) => r.id)).toEqual(rows.map((r) => r.id));
  });
});
