/**
 * Sweeps through the built CLI: a run killed with SIGKILL in the middle, then rerun, ends with
 * every item exactly once and the same results as a run that was never interrupted.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseExperiment } from "../../src/shared/experiment";
import type { SweepRow } from "../../src/shared/sweep";
import { planExperiment } from "../../src/sidecar/experiment/sweep";
import { FIXTURES } from "../helpers/fixtures";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const SCENES = path.resolve(__dirname, "../fixtures/scenes");

function experimentFile(dir: string): string {
  const file = path.join(dir, "heldout.lens.json");
  const experiment = {
    name: "held-out scenes",
    model: MODEL,
    inputs: [{ manifest: path.join(SCENES, "questions.jsonl") }],
    prompts: ["{question}"],
    target: "{answer}",
    generation: { maxNewTokens: 3 },
    variants: [{ name: "baseline" }, { name: "mask", mask: { "1": [0, 1] } }],
    groupBy: ["group"],
    output: { folder: "results", records: true },
  };
  fs.writeFileSync(file, JSON.stringify(experiment, null, 2));
  return file;
}

const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
const rowsOf = (file: string) => lines(file).map((l) => JSON.parse(l) as SweepRow);
/** A row without its timing, which differs from run to run. */
const stable = ({ seconds: _s, ...rest }: SweepRow) => rest;

async function killedMidway(file: string, results: string, after: number): Promise<void> {
  const child = spawn(process.execPath, [BIN, "run", file, "--device", "cpu", "--threads", "1"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  for (;;) {
    if (lines(results).length >= after) break;
    if (child.exitCode !== null) throw new Error(`the sweep ended before it could be killed: ${stderr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill("SIGKILL");
  await exited;
}

describe("sweep", () => {
  it("a sweep killed with SIGKILL and rerun has every item exactly once, equal to an uninterrupted run", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-sweep-"));
    const file = experimentFile(dir);
    const results = path.join(dir, "results", "results.jsonl");
    const planned = (await planExperiment(parseExperiment(fs.readFileSync(file, "utf8"), file), file)).map((x) => x.id);
    expect(planned.length).toBe(2 * lines(path.join(SCENES, "questions.jsonl")).length);

    await killedMidway(file, results, 10);
    const before = lines(results).length;
    expect(before).toBeGreaterThanOrEqual(10);
    expect(before).toBeLessThan(planned.length);
    // A kill in the middle of a write leaves a torn line; the rerun must cut it off.
    fs.appendFileSync(results, '{"v":1,"id":"torn');

    const r = spawnSync(process.execPath, [BIN, "run", file, "--device", "cpu"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`done: ${planned.length - before} run, ${before} already done, ${planned.length} in the plan`));
    const rows = rowsOf(results);
    expect(rows.map((x) => x.id).sort()).toEqual([...planned].sort());
    // records.jsonl: one record per item too, never two
    const recordIds = lines(path.join(dir, "results", "records.jsonl")).map((l) => (JSON.parse(l) as { id: string }).id);
    expect(recordIds.sort()).toEqual([...planned].sort());

    // The same experiment in one go, into a fresh folder.
    const once = path.join(dir, "once");
    const r2 = spawnSync(process.execPath, [BIN, "run", file, "--device", "cpu", "--out", once], { encoding: "utf8" });
    expect(r2.status, r2.stderr).toBe(0);
    const byId = new Map(rowsOf(path.join(once, "results.jsonl")).map((x) => [x.id, stable(x)]));
    for (const row of rows) expect(stable(row)).toEqual(byId.get(row.id));
    // The aggregates and CSVs are rewritten from the whole folder, so they agree too.
    const agg = (d: string) => {
      const { groups, layers, finished } = JSON.parse(fs.readFileSync(path.join(d, "aggregates.json"), "utf8")) as { groups: unknown; layers: number; finished: number };
      return { groups, layers, finished };
    };
    expect(agg(path.join(dir, "results"))).toEqual(agg(once));
    expect(lines(path.join(dir, "results", "results.csv")).length).toBe(1 + planned.length * 4);

    // A third run has nothing left to do.
    const r3 = spawnSync(process.execPath, [BIN, "run", file, "--device", "cpu"], { encoding: "utf8" });
    expect(r3.stderr).toMatch(new RegExp(`done: 0 run, ${planned.length} already done`));
    expect(lines(results)).toHaveLength(planned.length);
  }, 120_000);

  it("refuses a results folder of another model, and --fresh starts over", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-sweep-"));
    const file = path.join(dir, "small.lens.json");
    fs.writeFileSync(file, JSON.stringify({ model: MODEL, inputs: [path.join(SCENES, "0000-color-main.png")], prompts: ["Color of the main object:"], generation: { maxNewTokens: 1 } }));
    expect(spawnSync(process.execPath, [BIN, "run", file], { encoding: "utf8" }).status).toBe(0);
    expect(fs.existsSync(path.join(dir, "small.results", "results.jsonl"))).toBe(true);
    const other = path.join(FIXTURES, "llava-tied-f32/model");
    const r = spawnSync(process.execPath, [BIN, "run", file, "--model", other], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n").at(-1)).toMatch(/^error: .*small\.results: holds results of another model .*: choose another output folder, or run with --fresh to start over$/);
    const r2 = spawnSync(process.execPath, [BIN, "run", file, "--model", other, "--fresh"], { encoding: "utf8" });
    expect(r2.status, r2.stderr).toBe(0);
    expect(lines(path.join(dir, "small.results", "results.jsonl"))).toHaveLength(1);
    // a folder whose results were computed in another dtype is not resumed either
    const runFile = path.join(dir, "small.results", "run.json");
    const run = JSON.parse(fs.readFileSync(runFile, "utf8")) as { model: { computeDtype?: string } };
    expect(run.model.computeDtype).toBe("float32");
    run.model.computeDtype = "float16";
    fs.writeFileSync(runFile, JSON.stringify(run));
    const r3 = spawnSync(process.execPath, [BIN, "run", file, "--model", other], { encoding: "utf8" });
    expect(r3.status).toBe(1);
    expect(r3.stderr.trim().split("\n").at(-1)).toMatch(/small\.results: holds results computed in float16, and this run computes in float32: choose another output folder, or run with --fresh to start over$/);
  }, 60_000);

  it("an invalid experiment file is one line naming the file, the place and the fix", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-sweep-"));
    const file = path.join(dir, "bad.lens.json");
    fs.writeFileSync(file, JSON.stringify({ inputs: ["*.png"], prompts: ["{question}"], lens: { topK: 0 } }));
    const r = spawnSync(process.execPath, [BIN, "run", file], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(`error: ${file}: /lens/topK: must be >= 1, got 0`);
  });
});
