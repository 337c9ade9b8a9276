/**
 * Issue 15 through the built CLI and the bundled model: items that generate nothing are results,
 * not a sweep that stops at them forever; a results folder outside the experiment's folder needs
 * --allow-outside; a locked folder and bad results lines are reported in one line.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import type { SweepRow } from "../../src/shared/sweep";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const SAMPLES = path.resolve(__dirname, "../../media/samples");

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, "--device", "cpu"], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const errorLines = (stderr: string) => stderr.split("\n").filter((l) => /^(error|internal error|warning):/.test(l));
const rowsOf = (file: string) => fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as SweepRow);

/** An experiment over left-right-color.png with two prompts: nothing to generate, and one the bundled model answers with EOS first. */
function emptyAnswers(dir: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, "empty.lens.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      inputs: [path.join(SAMPLES, "left-right-color.png")],
      prompts: [{ name: "eos-first", template: "Color of the object on the left:     " }],
      target: "red",
      variants: [{ name: "baseline" }],
      ...extra,
    }),
  );
  return file;
}

describe("sweeps that generate nothing", () => {
  it("maxNewTokens 0 and an EOS-first answer give rows with the answer \"\", counted wrong, and a rerun resumes", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-empty-"));
    for (const [name, generation] of [["eos", {}], ["zero", { maxNewTokens: 0 }]] as const) {
      const file = emptyAnswers(dir, { generation, output: { folder: name } });
      const r = cli("run", file);
      expect(r.code, r.stderr).toBe(0);
      expect(errorLines(r.stderr)).toEqual([]);
      const rows = rowsOf(path.join(dir, name, "results.jsonl"));
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ generated: "", correct: false, expected: "red" });
      const aggregates = JSON.parse(fs.readFileSync(path.join(dir, name, "aggregates.json"), "utf8")) as { groups: { accuracy: number; emptyAnswers: number }[] };
      expect(aggregates.groups[0]).toMatchObject({ accuracy: 0, emptyAnswers: 1 });
      expect(fs.readFileSync(path.join(dir, name, "results.csv"), "utf8").split("\n")[1]).toMatch(/,red,,false,/);
      const again = cli("run", file);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/done: 0 run, 1 already done, 1 in the plan/);
    }
  });
});

describe("results folders", () => {
  it("output.folder outside the experiment's folder needs --allow-outside", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-outside-"));
    fs.mkdirSync(path.join(dir, "exp"));
    const file = emptyAnswers(path.join(dir, "exp"), { generation: { maxNewTokens: 0 }, output: { folder: "../elsewhere" } });
    const refused = cli("run", file);
    expect(refused.code).toBe(1);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/output\.folder .*elsewhere lies outside the experiment's folder.*--allow-outside/)]);
    expect(fs.existsSync(path.join(dir, "elsewhere"))).toBe(false);
    const allowed = cli("run", file, "--allow-outside");
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(rowsOf(path.join(dir, "elsewhere", "results.jsonl"))).toHaveLength(1);
  });

  it("a folder another sweep holds is refused in one line; a null row is skipped, reported and rerun", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-lock-"));
    const file = emptyAnswers(dir, { generation: { maxNewTokens: 0 }, output: { folder: "out" } });
    expect(cli("run", file).code).toBe(0);
    const results = path.join(dir, "out", "results.jsonl");

    // this test's own process is alive: its lock is not stale
    fs.writeFileSync(path.join(dir, "out", "run.lock"), JSON.stringify({ pid: process.pid, host: os.hostname(), started: new Date().toISOString() }));
    const locked = cli("run", file);
    expect(locked.code).toBe(1);
    expect(errorLines(locked.stderr)).toEqual([expect.stringMatching(new RegExp(`another sweep is writing to this results folder \\(pid ${process.pid} on `))]);
    fs.rmSync(path.join(dir, "out", "run.lock"));

    fs.writeFileSync(results, `null\n{"broken\n`);
    const r = cli("run", file);
    expect(r.code, r.stderr).toBe(0);
    expect(errorLines(r.stderr)).toEqual([expect.stringMatching(/^warning: .*results\.jsonl: lines 1, 2 are not result rows: skipped/)]);
    expect(r.stderr).toMatch(/done: 1 run, 0 already done/);
    // the bad lines stay for the user to look at; the item's new row follows them
    const lines = fs.readFileSync(results, "utf8").split("\n").filter(Boolean);
    expect(lines.slice(0, 2)).toEqual(["null", '{"broken']);
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[2])).toMatchObject({ generated: "", correct: false });
  });

  it("--image \"\" is a usage error, not a text-only run", () => {
    const r = cli("run", "--image", "", "--prompt", "hi");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--image needs a value, got an empty string/);
  });
});
