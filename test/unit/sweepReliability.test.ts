/**
 * Issue 15's experiment and results defects, on files in a temporary folder and without a model:
 * CSV formula injection, templates and groups that read Object.prototype, deep nesting, bad
 * globs, manifests (BOM, empty, FIFO), symbolic links for images and for results, the results
 * folder lock, and a results.jsonl with bad lines in the middle.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkExperimentText, fillTemplate, InvalidExperimentError, jsonDepth, MAX_EXPERIMENT_DEPTH, parseExperiment } from "../../src/shared/experiment";
import { csvField, csvRow } from "../../src/shared/exportCsv";
import { aggregateRows, aggregatesToCsv, groupValue, isSweepRow, rowsToCsv, type SweepRow } from "../../src/shared/sweep";
import { LensInputError } from "../../src/sidecar/errors";
import { globFiles, resolveInputs } from "../../src/sidecar/experiment/inputs";
import { outputOutsideExperiment, readExperimentFile } from "../../src/sidecar/experiment/paths";
import { generatedText, LOCK_FILE, lockResultsFolder, planExperiment, readResults, runSweep } from "../../src/sidecar/experiment/sweep";
import type { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { writeFileAtomic } from "../../src/sidecar/util/atomicWrite";
import { pathsNeedingConsent, experimentPaths } from "../../src/extension/experimentPaths";

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "lens-rel-"));
const canFifo = process.platform !== "win32" && spawnSync("mkfifo", ["--version"]).error === undefined;

function row(id: string, over: Partial<SweepRow> = {}): SweepRow {
  return {
    v: 1, id, index: 0, image: `${id}.png`, imageSha256: null, promptName: "prompt", prompt: "Q", variant: "base", groups: { group: "g" },
    expected: "red", generated: "red", correct: true, headMask: null, answerPosition: 5, targetId: 7, targetText: "red", finalId: 7, finalText: "red",
    entropy: [0, 0, 0], targetProb: [0, 0, 0], targetRank: [1, 1, 1], kl: [0, 0, 0], cosine: [1, 1, 1], top1: [7, 7, 7], finalRank: [1, 1, 1],
    convergenceLayer: 0, imageShare: [0, 0], seconds: 0, ...over,
  };
}

/** A folder with two small "images" (the plan only checks that they are regular files). */
function imagesDir(): string {
  const dir = tmp();
  for (const f of ["a.png", "b.png"]) fs.writeFileSync(path.join(dir, f), "png");
  return dir;
}

describe("CSV formula injection", () => {
  it.each([
    ["=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"],
    ['=HYPERLINK("http://x","y")', `"'=HYPERLINK(""http://x"",""y"")"`],
    ["+1", "'+1"],
    ["-", "'-"],
    ["@SUM(A1)", "'@SUM(A1)"],
    ["\tx", "'\tx"],
    ["\rx", `"'\rx"`],
    ["a=b", "a=b"],
  ])("neutralises the text %j as %j", (value, expected) => {
    expect(csvField(value)).toBe(expected);
  });

  it("leaves numbers as numbers, negative ones too", () => {
    expect(csvRow([-3, -0.5, 2, null, true])).toBe("-3,-0.5,2,,true");
  });

  it("reaches neither results.csv nor aggregates.csv from manifest values", () => {
    const evil = "=cmd|' /C calc'!A0";
    const rows = [row("a", { groups: { lang: evil }, expected: "=1+1", generated: "@x", entropy: [-1, 0, 0] })];
    const csv = rowsToCsv(rows);
    expect(csv).toContain(`,'${evil},'=1+1,'@x,`);
    expect(csv.split("\n")[1]).toContain(",0,-1,"); // layer 0, entropy -1: a number
    const agg = aggregatesToCsv(aggregateRows(rows, ["lang"]));
    expect(agg).toContain(`base,lang,'${evil},1,`);
    expect(agg).not.toMatch(/(^|,)=/m);
  });
});

describe("templates and groups read only own columns", () => {
  it("{constructor} and {__proto__} are unknown columns", () => {
    expect(() => fillTemplate("{constructor}", { question: "q" })).toThrow(/needs a "constructor" column/);
    expect(() => fillTemplate("{__proto__}", { question: "q" })).toThrow(/needs a "__proto__" column/);
    expect(() => fillTemplate("{toString}", {})).toThrow(/needs a "toString" column/);
  });

  it("a group key named constructor is absent, not a function", () => {
    expect(groupValue(row("a"), "constructor")).toBe("(none)");
  });

  it("an image input's groups do not fill {constructor} during validation", () => {
    expect(() => parseExperiment(JSON.stringify({ inputs: ["a.png"], prompts: ["{constructor}"] }), "e.lens.json")).toThrow(/needs the column \{constructor\}/);
  });
});

describe("experiment files", () => {
  it("refuses deep nesting with one line instead of overflowing the stack", () => {
    const text = `{"inputs":["a.png"],"prompts":["p"],"name":${"[".repeat(200_000)}${"]".repeat(200_000)}}`;
    expect(jsonDepth(text).depth).toBe(200_001);
    const err = (() => {
      try {
        parseExperiment(text, "deep.lens.json");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidExperimentError);
    expect((err as Error).message).toMatch(new RegExp(`^deep\\.lens\\.json: /: nests arrays and objects 200001 levels deep, over the limit of ${MAX_EXPERIMENT_DEPTH}`));
    expect(checkExperimentText(text).problems[0].message).toMatch(/levels deep/);
    // brackets inside strings do not count
    expect(jsonDepth('{"a": "[[[[[[[[[[\\"[[["}').depth).toBe(1);
  });

  it.runIf(canFifo)("a FIFO as experiment file is refused at once", async () => {
    const fifo = path.join(tmp(), "x.lens.json");
    execFileSync("mkfifo", [fifo]);
    await expect(readExperimentFile(fifo)).rejects.toThrow(/named pipe \(FIFO\), not a regular file/);
  });
});

describe("inputs", () => {
  it("an unclosed [ or { in a glob is an input error naming the pattern", async () => {
    const dir = imagesDir();
    for (const bad of ["*.png[", "{a,b.png", "[z-a].png"]) {
      const err = await resolveInputs([{ kind: "images", images: bad, groups: {} }], dir, "e.lens.json").catch((e: unknown) => e);
      expect(err, bad).toBeInstanceOf(LensInputError);
      expect((err as Error).message).toContain(`input pattern "${bad}"`);
    }
  });

  it("globs and folders take symbolic links to image files", async () => {
    const dir = imagesDir();
    const data = tmp();
    fs.writeFileSync(path.join(data, "real.png"), "png");
    fs.symlinkSync(path.join(data, "real.png"), path.join(dir, "linked.png"));
    fs.symlinkSync(path.join(data, "missing.png"), path.join(dir, "dangling.png"));
    expect((await globFiles("*.png", dir)).map((f) => path.basename(f))).toEqual(["a.png", "b.png", "linked.png"]);
    const rows = await resolveInputs([{ kind: "images", images: ".", groups: {} }], dir, path.join(dir, "e.lens.json"));
    expect(rows.map((r) => path.basename(r.image))).toEqual(["a.png", "b.png", "linked.png"]);
  });

  it("reads a JSONL manifest that starts with a UTF-8 byte-order mark", async () => {
    const dir = imagesDir();
    fs.writeFileSync(path.join(dir, "rows.jsonl"), '\uFEFF{"image": "a.png", "question": "Q"}\n');
    const rows = await resolveInputs([{ kind: "manifest", manifest: "rows.jsonl", imageColumn: "image", groups: {} }], dir, "e.lens.json");
    expect(rows).toHaveLength(1);
    expect(rows[0].columns).toEqual({ question: "Q" });
  });

  it("refuses an empty manifest, naming it", async () => {
    const dir = imagesDir();
    fs.writeFileSync(path.join(dir, "rows.jsonl"), "\n\n");
    fs.writeFileSync(path.join(dir, "rows.csv"), "image,question\n");
    for (const m of ["rows.jsonl", "rows.csv"]) {
      await expect(resolveInputs([{ kind: "manifest", manifest: m, imageColumn: "image", groups: {} }], dir, "e.lens.json")).rejects.toThrow(`${path.join(dir, m)}: manifest has no rows`);
    }
  });

  it("an imageColumn named constructor is a missing column, and a __proto__ column stays a column", async () => {
    const dir = imagesDir();
    fs.writeFileSync(path.join(dir, "rows.jsonl"), '{"image": "a.png", "__proto__": "x"}\n');
    await expect(resolveInputs([{ kind: "manifest", manifest: "rows.jsonl", imageColumn: "constructor", groups: {} }], dir, "e.lens.json")).rejects.toThrow(/row has no "constructor" column/);
    const rows = await resolveInputs([{ kind: "manifest", manifest: "rows.jsonl", imageColumn: "image", groups: {} }], dir, "e.lens.json");
    expect(Object.hasOwn(rows[0].columns, "__proto__")).toBe(true);
  });

  it.runIf(canFifo)("a FIFO as manifest, or as a manifest row's image, is refused at once", async () => {
    const dir = imagesDir();
    execFileSync("mkfifo", [path.join(dir, "rows.jsonl")]);
    await expect(resolveInputs([{ kind: "manifest", manifest: "rows.jsonl", imageColumn: "image", groups: {} }], dir, "e.lens.json")).rejects.toThrow(/manifest is a named pipe/);
    execFileSync("mkfifo", [path.join(dir, "pipe.png")]);
    fs.writeFileSync(path.join(dir, "ok.jsonl"), '{"image": "a.png"}\n{"image": "pipe.png"}\n');
    await expect(resolveInputs([{ kind: "manifest", manifest: "ok.jsonl", imageColumn: "image", groups: {} }], dir, "e.lens.json")).rejects.toThrow(/pipe\.png: image of .*ok\.jsonl:2 is a named pipe/);
    await expect(resolveInputs([{ kind: "images", images: "pipe.png", groups: {} }], dir, "e.lens.json")).rejects.toThrow(/image is a named pipe/);
  });

  it("groupBy naming a column no input has is refused, naming it", async () => {
    const dir = imagesDir();
    fs.writeFileSync(path.join(dir, "rows.jsonl"), '{"image": "a.png", "question": "Q", "answer": "A", "lang": "en"}\n');
    const file = path.join(dir, "e.lens.json");
    const plan = (groupBy: string[]) => planExperiment(parseExperiment(JSON.stringify({ inputs: [{ manifest: "rows.jsonl" }], prompts: ["{question}"], groupBy }), file), file);
    await expect(plan(["lnag"])).rejects.toThrow(/groupBy names "lnag", but no input has a column or group "lnag" \(groups: lang, prompt, variant\)/);
    await expect(plan(["answer"])).rejects.toThrow(/"answer" is a text column, not a group/);
    await expect(plan(["lang", "prompt"])).resolves.toHaveLength(1);
  });
});

describe("empty generations", () => {
  it("decode nothing: maxNewTokens 0, or EOS first, is the answer \"\"", () => {
    const model = { text: { decode: (ids: number[]) => (ids.length ? "red" : (() => { throw new Error("token_ids must be a non-empty array of integers"); })()) } } as unknown as LoadedModel;
    expect(generatedText(model, { generation: { ids: [], stoppedBy: "none" } })).toBe("");
    expect(generatedText(model, { generation: { ids: [2], stoppedBy: "eos" } })).toBe("");
    expect(generatedText(model, { generation: { ids: [5, 2], stoppedBy: "eos" } })).toBe("red");
  });

  it("count as wrong answers, and as empty ones in the aggregates", () => {
    const a = aggregateRows([row("a"), row("b", { generated: "", correct: false })], []);
    expect(a.groups[0]).toMatchObject({ n: 2, accuracy: 0.5, emptyAnswers: 1 });
  });
});

describe("results.jsonl", () => {
  const lines = (...rows: (string | SweepRow)[]) => rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n");

  it("skips bad lines in the middle (null, garbage, a hand edit) and keeps every good row after them", async () => {
    const file = path.join(tmp(), "results.jsonl");
    fs.writeFileSync(file, `${lines(row("a"), "null", "{not json", row("b"), '{"v":1,"id":"x"}', "42", row("c"))}\n`);
    const { rows, bad } = await readResults(file);
    expect(rows.map((r) => r.id)).toEqual(["a", "b", "c"]);
    expect(bad).toEqual([2, 3, 5, 6]);
  });

  it("keeps a whole row glued to a torn one, keeps a whole last row without its newline, cuts a torn last line", async () => {
    const file = path.join(tmp(), "results.jsonl");
    fs.writeFileSync(file, `${lines(row("a"), `{"v":1,"id":"to${JSON.stringify(row("b"))}`, JSON.stringify(row("c")))}`);
    let r = await readResults(file);
    expect(r.rows.map((x) => x.id)).toEqual(["a", "b", "c"]);
    expect(fs.readFileSync(file, "utf8").endsWith("}\n")).toBe(true);
    fs.appendFileSync(file, '{"v":1,"id":"torn');
    r = await readResults(file);
    expect(r.rows.map((x) => x.id)).toEqual(["a", "b", "c"]);
    expect(fs.readFileSync(file, "utf8").endsWith("}\n")).toBe(true);
  });

  it("isSweepRow takes rows and nothing else", () => {
    expect(isSweepRow(row("a"))).toBe(true);
    for (const v of [null, 5, "x", [], {}, { ...row("a"), id: 3 }, { ...row("a"), entropy: [] }, { ...row("a"), kl: [0] }, { ...row("a"), convergenceLayer: 9 }, { ...row("a"), groups: { a: 1 } }]) {
      expect(isSweepRow(v)).toBe(false);
    }
  });
});

describe("results folders", () => {
  const fakeModel = { info: { folder: "/m", configHash: "h" } } as unknown as LoadedModel;
  /** An experiment over two images whose results folder is `out`. */
  function experiment(out = "results"): { file: string; dir: string; exp: ReturnType<typeof parseExperiment> } {
    const dir = imagesDir();
    const file = path.join(dir, "e.lens.json");
    const exp = parseExperiment(JSON.stringify({ inputs: ["*.png"], prompts: ["p"], output: { folder: out } }), file);
    return { file, dir, exp };
  }

  it("never writes through a symbolic link: a linked results.jsonl is refused and its target kept", async () => {
    const { file, dir, exp } = experiment();
    const target = path.join(tmp(), "precious.txt");
    fs.writeFileSync(target, "precious\n");
    fs.mkdirSync(path.join(dir, "results"));
    fs.writeFileSync(path.join(dir, "results", "run.json"), JSON.stringify({ format: 1, model: { folder: "/m", configHash: "h" } }));
    for (const name of ["results.jsonl", "aggregates.csv"]) {
      const link = path.join(dir, "results", name);
      fs.symlinkSync(target, link);
      await expect(runSweep(fakeModel, exp, file, { outDir: path.join(dir, "results") })).rejects.toThrow(`${link}: is a symbolic link`);
      await expect(runSweep(fakeModel, exp, file, { outDir: path.join(dir, "results"), fresh: true })).rejects.toThrow(/is a symbolic link/);
      fs.unlinkSync(link);
    }
    expect(fs.readFileSync(target, "utf8")).toBe("precious\n");
    // readResults alone opens without following links, too
    fs.symlinkSync(target, path.join(dir, "results", "results.jsonl"));
    await expect(readResults(path.join(dir, "results", "results.jsonl"))).rejects.toThrow(/is a symbolic link/);
    expect(fs.readFileSync(target, "utf8")).toBe("precious\n");
  });

  it("refuses a linked results folder, and one that is a file", async () => {
    const { file, dir, exp } = experiment();
    fs.symlinkSync(tmp(), path.join(dir, "results"));
    await expect(runSweep(fakeModel, exp, file, { outDir: path.join(dir, "results") })).rejects.toThrow(/results folder is a symbolic link/);
    fs.writeFileSync(path.join(dir, "plain"), "x");
    await expect(runSweep(fakeModel, exp, file, { outDir: path.join(dir, "plain") })).rejects.toThrow(`${path.join(dir, "plain")}: the results folder is a file, not a folder`);
    await expect(runSweep(fakeModel, exp, file, { outDir: path.join(dir, "plain", "sub") })).rejects.toThrow(/part of its path is a file/);
  });

  it("neither overwrites nor (with --fresh) deletes result files no sweep wrote", async () => {
    const { file, dir, exp } = experiment("..");
    const outDir = path.dirname(dir);
    const theirs = path.join(tmp(), "results.csv");
    fs.writeFileSync(theirs, "mine\n");
    for (const fresh of [false, true]) {
      await expect(runSweep(fakeModel, exp, file, { outDir: path.dirname(theirs), fresh })).rejects.toThrow(/holds results\.csv but no run\.json of a sweep/);
    }
    expect(fs.readFileSync(theirs, "utf8")).toBe("mine\n");
    expect(outputOutsideExperiment(outDir, file)).toBe(true);
    expect(outputOutsideExperiment(path.join(dir, "results"), file)).toBe(false);
    expect(outputOutsideExperiment(dir, file)).toBe(false);
  });

  it("the editor asks before a results folder outside the experiment's folder, even inside the workspace", () => {
    const file = "/ws/exp/study.lens.json";
    const exp = parseExperiment(JSON.stringify({ inputs: ["a.png"], prompts: ["p"], output: { folder: "../elsewhere" } }), file);
    expect(pathsNeedingConsent(experimentPaths(exp, file), ["/ws"], file)).toEqual([{ role: "output", path: "/ws/elsewhere", reason: expect.stringMatching(/outside the experiment's folder/) }]);
    const inside = parseExperiment(JSON.stringify({ inputs: ["a.png"], prompts: ["p"] }), file);
    expect(pathsNeedingConsent(experimentPaths(inside, file), ["/ws"], file)).toEqual([]);
  });

  it("a second sweep on a locked folder is refused; a lock whose process is gone is taken over", async () => {
    const dir = tmp();
    const release = await lockResultsFolder(dir);
    const lock = path.join(dir, LOCK_FILE);
    expect(JSON.parse(fs.readFileSync(lock, "utf8"))).toMatchObject({ pid: process.pid, host: os.hostname() });
    await expect(lockResultsFolder(dir)).rejects.toThrow(new RegExp(`another sweep is writing to this results folder \\(pid ${process.pid} on `));
    await release();
    expect(fs.existsSync(lock)).toBe(false);

    // a process that has exited
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    fs.writeFileSync(lock, JSON.stringify({ pid: Number(gone.stdout), host: os.hostname(), started: "2020-01-01T00:00:00Z" }));
    const again = await lockResultsFolder(dir);
    expect(JSON.parse(fs.readFileSync(lock, "utf8")).pid).toBe(process.pid);
    await again();

    // another host's lock cannot be checked
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, host: "elsewhere.example", started: "2020-01-01T00:00:00Z" }));
    await expect(lockResultsFolder(dir)).rejects.toThrow(/pid 1 on elsewhere\.example.*if no sweep is running, delete/);
    expect(fs.readdirSync(dir)).toEqual([LOCK_FILE]); // no temporary files left
  });

  it("writeFileAtomic replaces a link instead of writing through it", async () => {
    const dir = tmp();
    const target = path.join(tmp(), "precious.txt");
    fs.writeFileSync(target, "precious\n");
    fs.symlinkSync(target, path.join(dir, "out.csv"));
    await writeFileAtomic(path.join(dir, "out.csv"), "new\n");
    expect(fs.readFileSync(target, "utf8")).toBe("precious\n");
    expect(fs.lstatSync(path.join(dir, "out.csv")).isFile()).toBe(true);
    await expect(writeFileAtomic(dir, "x")).rejects.toThrow(/is a folder/);
  });
});
