/**
 * Running an experiment: the plan (every input row x prompt x variant, each with a stable id),
 * and the sweep, which runs the items one after another on one loaded model and streams each
 * finished item to the output folder:
 *
 *   results.jsonl    one SweepRow per finished item, appended and flushed to disk item by item
 *   records.jsonl    {"id", "record"} per item, when output.records is on (written before its row)
 *   results.csv      one line per (item, layer), rewritten atomically from results.jsonl
 *   aggregates.json  per variant and group: accuracy, mean curves, convergence histogram
 *   aggregates.csv   the same, one line per (variant, group, layer)
 *   run.json         which experiment and model produced the folder
 *   run.lock         while a sweep writes: its pid and host (a second sweep on the folder is refused)
 *
 * A sweep that is killed loses nothing it finished; rerun, it reads results.jsonl (dropping a
 * torn last line), skips every item already there and continues. A line in the middle that is
 * not a row (a hand edit, a disk fault) is skipped and reported, and its item runs again; the
 * good rows after it count. Items whose id is not in the plan any more (an edited experiment)
 * stay in results.jsonl but are left out of the aggregates.
 *
 * A results folder can be anywhere, so nothing in it is trusted: the folder and its files must
 * not be symbolic links (a link committed to a repository would have its target overwritten),
 * files are opened with O_NOFOLLOW, and a folder that holds result files no sweep wrote (no
 * run.json) is refused rather than overwritten; --fresh deletes only the files listed above.
 */
import { constants, unlinkSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { type ExperimentVariant, fillTemplate, type LensExperiment } from "../../shared/experiment";
import type { LensSettings } from "../../shared/lensRecord";
import { aggregateRows, aggregatesToCsv, parseSweepRow, rowsToCsv, type SweepRow, type SweepSummary, summarizeRecord } from "../../shared/sweep";
import { LensInputError } from "../errors";
import { type HeadMaskSpec, type LensRunRequest, runLens } from "../lens/runLens";
import type { LoadedModel } from "../model/loadedModel";
import { writeFileAtomic } from "../util/atomicWrite";
import { resolveInputs } from "./inputs";

export interface PlannedItem {
  id: string;
  index: number;
  /** Absolute image path, and the same relative to the experiment file (forward slashes). */
  image: string;
  imageRel: string;
  promptName: string;
  prompt: string;
  expected: string | null;
  groups: Record<string, string>;
  variant: ExperimentVariant;
  settings: Partial<LensSettings>;
  headMask?: HeadMaskSpec;
}

export async function planExperiment(experiment: LensExperiment, file: string): Promise<PlannedItem[]> {
  const baseDir = path.dirname(path.resolve(file));
  const rows = await resolveInputs(experiment.inputs, baseDir, file);
  checkGroupBy(experiment, rows, file);
  const items: PlannedItem[] = [];
  for (const row of rows) {
    const fields = { ...row.columns, image: path.basename(row.image) };
    for (const prompt of experiment.prompts) {
      let text: string;
      let expected: string | null = null;
      try {
        text = fillTemplate(prompt.template, fields);
        if (experiment.target !== undefined) expected = fillTemplate(experiment.target, fields);
      } catch (e) {
        throw new LensInputError(row.source, `${(e as Error).message}: add the column, or change the template in ${file}`);
      }
      const settings: Partial<LensSettings> = {
        positions: experiment.lens.positions,
        topK: experiment.lens.topK,
        maxNewTokens: experiment.maxNewTokens,
        ...(expected !== null && expected !== "" ? { target: expected, answerProb: experiment.lens.answerProb } : {}),
        ...(experiment.lens.trackTokens.length ? { trackTokens: experiment.lens.trackTokens } : {}),
        ...(experiment.lens.imageAttention ? { imageAttention: true } : {}),
        ...(experiment.lens.patchLens ? { patchLens: true } : {}),
      };
      const imageRel = path.relative(baseDir, row.image).split(path.sep).join("/");
      for (const variant of experiment.variants) {
        const headMask = maskSpec(variant);
        const id = createHash("sha256")
          .update(JSON.stringify([imageRel, prompt.name, text, expected, variant.name, variant.mask, settings]))
          .digest("hex")
          .slice(0, 16);
        items.push({ id, index: items.length, image: row.image, imageRel, promptName: prompt.name, prompt: text, expected, groups: groupColumns(row.columns), variant, settings, headMask });
      }
    }
  }
  return items;
}

/** Every groupBy key must be a group some row has (or "prompt" / "variant"): a typo would group everything as "(none)". */
function checkGroupBy(experiment: LensExperiment, rows: { columns: Record<string, string> }[], file: string): void {
  const known = new Set(rows.flatMap((r) => Object.keys(groupColumns(r.columns))));
  for (const key of experiment.groupBy) {
    if (key === "prompt" || key === "variant" || known.has(key)) continue;
    const why = key === "question" || key === "answer" ? `"${key}" is a text column, not a group` : `no input has a column or group "${key}"`;
    throw new LensInputError(file, `groupBy names "${key}", but ${why} (groups: ${[...known, "prompt", "variant"].join(", ")}): fix groupBy, or add the column to the manifest or the input's groups`);
  }
}

/** A row's columns that can group results: all but the question and answer texts. */
function groupColumns(columns: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(columns).filter(([k]) => k !== "question" && k !== "answer"));
}

function maskSpec(v: ExperimentVariant): HeadMaskSpec | undefined {
  switch (v.mask.kind) {
    case "none":
      return undefined;
    case "heads":
      return { heads: v.mask.heads };
    case "random":
      return { strategy: "random", count: v.mask.count, seed: v.mask.seed };
    case "topImage":
      return { strategy: "topImage", count: v.mask.count };
  }
}

/** The lens request of one planned item. */
export function itemRequest(item: PlannedItem): LensRunRequest {
  return { prompt: item.prompt, image: item.image, settings: item.settings, headMask: item.headMask };
}

/** The results folder of an experiment file: output.folder, or "<name>.results" beside it. */
export interface SweepProgress {
  done: number;
  total: number;
  /** Items found finished in the folder when the sweep started. */
  resumed: number;
  /** Items per second over this sweep's own runs. */
  rate: number;
  etaSeconds: number;
  last?: SweepRow;
}

export interface SweepOptions {
  outDir: string;
  onProgress?: (p: SweepProgress) => void;
  isCancelled?: () => boolean;
  /** Start over: delete earlier results in the folder first. */
  fresh?: boolean;
  /** Rewrite results.csv and the aggregates at most this often while running (ms). */
  checkpointMs?: number;
  /** Problems that do not stop the sweep (lines of results.jsonl that are not rows), one line each. */
  onWarning?: (message: string) => void;
}

export interface SweepResult extends SweepSummary {
  rows: SweepRow[];
  /** What onWarning was told. */
  warnings: string[];
}

const RUN_FORMAT = 1;

/** Every file a sweep writes in its folder: the only ones --fresh deletes. */
export const OUTPUT_FILES = ["results.jsonl", "records.jsonl", "results.csv", "aggregates.json", "aggregates.csv", "run.json"] as const;
export const LOCK_FILE = "run.lock";

export async function runSweep(model: LoadedModel, experiment: LensExperiment, file: string, opts: SweepOptions): Promise<SweepResult> {
  const items = await planExperiment(experiment, file);
  const outDir = path.resolve(opts.outDir);
  await prepareOutputFolder(outDir);
  const unlock = await lockResultsFolder(outDir);
  try {
    return await sweepLocked(model, experiment, file, items, outDir, opts);
  } finally {
    await unlock();
  }
}

async function sweepLocked(model: LoadedModel, experiment: LensExperiment, file: string, items: PlannedItem[], outDir: string, opts: SweepOptions): Promise<SweepResult> {
  const resultsFile = path.join(outDir, "results.jsonl");
  const recordsFile = path.join(outDir, "records.jsonl");
  const runFile = path.join(outDir, "run.json");
  const earlier = await checkOutputFiles(outDir);
  if (opts.fresh) await Promise.all(OUTPUT_FILES.map((f) => fs.rm(path.join(outDir, f), { force: true })));

  const run = {
    format: RUN_FORMAT,
    experiment: experiment.name,
    file: path.resolve(file),
    model: { folder: model.info.folder, configHash: model.info.configHash, computeDtype: model.info.computeDtype },
  };
  const before = earlier as Partial<typeof run> | undefined;
  if (!opts.fresh && before && before.model?.configHash !== run.model.configHash) {
    throw new LensInputError(outDir, `holds results of another model (${before.model?.folder}): choose another output folder, or run with --fresh to start over`);
  }
  // results computed in another dtype would be mixed with these (folders from before this field: float32)
  if (!opts.fresh && before && (before.model?.computeDtype ?? "float32") !== run.model.computeDtype) {
    throw new LensInputError(outDir, `holds results computed in ${before.model?.computeDtype}, and this run computes in ${run.model.computeDtype}: choose another output folder, or run with --fresh to start over`);
  }
  await writeFileAtomic(runFile, `${JSON.stringify(run, null, 2)}\n`);

  const { rows: finished, bad } = await readResults(resultsFile);
  const warnings: string[] = [];
  if (bad.length) {
    const shown = bad.slice(0, 10).join(", ") + (bad.length > 10 ? ` and ${bad.length - 10} more` : "");
    warnings.push(`${resultsFile}: line${bad.length > 1 ? "s" : ""} ${shown} ${bad.length > 1 ? "are not result rows" : "is not a result row"}: skipped, and ${bad.length > 1 ? "their items run" : "its item runs"} again (fix or delete ${bad.length > 1 ? "those lines" : "the line"} to silence this)`);
  }
  for (const w of warnings) opts.onWarning?.(w);
  const planned = new Map(items.map((it) => [it.id, it]));
  const byId = new Map<string, SweepRow>();
  for (const r of finished) if (planned.has(r.id) && !byId.has(r.id)) byId.set(r.id, r);
  if (experiment.output.records) await dropRecordsWithoutRows(recordsFile, new Set(finished.map((r) => r.id)));
  const resumed = byId.size;
  const todo = items.filter((it) => !byId.has(it.id));
  // float32 copies still being made in the background make every run faster: with many to do, finish them first
  if (todo.length > 1) await model.float32Copies({ hurry: true });

  const handle = await openForAppend(resultsFile);
  let records: fs.FileHandle | undefined;
  try {
    records = experiment.output.records ? await openForAppend(recordsFile) : undefined;
  } catch (e) {
    await handle.close();
    throw e;
  }
  const t0 = performance.now();
  let ran = 0;
  let cancelled = false;
  let lastCheckpoint = performance.now();
  const ordered = () => items.flatMap((it) => byId.get(it.id) ?? []);
  const checkpoint = async () => {
    const rows = ordered();
    const aggregates = aggregateRows(rows, experiment.groupBy);
    await writeFileAtomic(path.join(outDir, "aggregates.json"), `${JSON.stringify({ experiment: experiment.name, model: run.model, items: items.length, finished: rows.length, groupBy: experiment.groupBy, ...aggregates }, null, 1)}\n`);
    if (experiment.output.csv) {
      await writeFileAtomic(path.join(outDir, "results.csv"), rowsToCsv(rows));
      await writeFileAtomic(path.join(outDir, "aggregates.csv"), aggregatesToCsv(aggregates));
    }
    lastCheckpoint = performance.now();
    return { rows, aggregates };
  };
  try {
    for (const item of todo) {
      if (opts.isCancelled?.()) {
        cancelled = true;
        break;
      }
      const started = performance.now();
      const record = await runLens(model, itemRequest(item), { isCancelled: opts.isCancelled });
      const row = summarizeRecord(record, {
        id: item.id,
        index: item.index,
        image: item.imageRel,
        promptName: item.promptName,
        variant: item.variant.name,
        groups: item.groups,
        expected: item.expected,
        generated: generatedText(model, record),
        seconds: (performance.now() - started) / 1000,
      });
      if (records) {
        await records.appendFile(`{"id":${JSON.stringify(item.id)},"record":${JSON.stringify(record)}}\n`);
        await records.sync();
      }
      await handle.appendFile(`${JSON.stringify(row)}\n`);
      await handle.sync();
      byId.set(item.id, row);
      ran++;
      const elapsed = (performance.now() - t0) / 1000;
      const rate = ran / Math.max(elapsed, 1e-9);
      opts.onProgress?.({ done: byId.size, total: items.length, resumed, rate, etaSeconds: (items.length - byId.size) / rate, last: row });
      if (performance.now() - lastCheckpoint > (opts.checkpointMs ?? 10_000)) await checkpoint();
    }
  } catch (e) {
    if ((e as Error).name === "LensCancelledError") cancelled = true;
    else throw e;
  } finally {
    await handle.close();
    await records?.close();
  }
  const { rows, aggregates } = await checkpoint();
  return { outDir, total: items.length, ran, resumed, cancelled, seconds: (performance.now() - t0) / 1000, rows, aggregates, warnings };
}

/**
 * The generated answer as text, EOS left out: "" when nothing was generated (maxNewTokens 0,
 * or EOS as the first token). The tokenizer refuses to decode an empty list.
 */
export function generatedText(model: Pick<LoadedModel, "text">, record: { generation: { ids: number[]; stoppedBy: string } }): string {
  const ids = record.generation.stoppedBy === "eos" ? record.generation.ids.slice(0, -1) : record.generation.ids;
  return ids.length ? model.text.decode(ids, true).trim() : "";
}

// --- The results folder ----------------------------------------------------------------------

const errnoOf = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** Creates the results folder; refuses a link, a file, or a path through a file. */
async function prepareOutputFolder(outDir: string): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(outDir);
  } catch (e) {
    if (errnoOf(e) === "ENOTDIR") throw new LensInputError(outDir, "cannot create the results folder: part of its path is a file; choose another output folder");
    if (errnoOf(e) !== "ENOENT") throw e;
  }
  if (stat?.isSymbolicLink()) throw new LensInputError(outDir, "the results folder is a symbolic link: a sweep never writes through links; choose a real folder");
  if (stat && !stat.isDirectory()) throw new LensInputError(outDir, "the results folder is a file, not a folder: choose another output folder (output.folder or --out)");
  if (stat) return;
  try {
    await fs.mkdir(outDir, { recursive: true });
  } catch (e) {
    const code = errnoOf(e);
    if (code === "EEXIST" || code === "ENOTDIR") throw new LensInputError(outDir, "cannot create the results folder: part of its path is a file; choose another output folder");
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") throw new LensInputError(outDir, `cannot create the results folder (${code === "EROFS" ? "read-only file system" : "permission denied"}): choose another output folder`);
    throw e;
  }
}

/**
 * Checks the files a sweep will write: none may be a link or anything but a regular file, and
 * result files without a run.json (files some other tool wrote) are not a sweep's to overwrite
 * or delete. Returns run.json's contents, when there is one.
 */
async function checkOutputFiles(outDir: string): Promise<unknown> {
  const present: string[] = [];
  for (const name of OUTPUT_FILES) {
    const f = path.join(outDir, name);
    const stat = await fs.lstat(f).catch(() => undefined);
    if (!stat) continue;
    if (stat.isSymbolicLink()) throw new LensInputError(f, "is a symbolic link: a sweep never writes through links (the link's target would be overwritten); delete the link or choose another output folder");
    if (!stat.isFile()) throw new LensInputError(f, "is not a regular file: delete it or choose another output folder");
    present.push(name);
  }
  if (!present.length) return undefined;
  const run = present.includes("run.json") ? await readJson(path.join(outDir, "run.json")) : undefined;
  if ((run as { format?: unknown } | undefined)?.format !== RUN_FORMAT) {
    throw new LensInputError(outDir, `holds ${present.join(", ")} but no run.json of a sweep: these files were not written by a sweep, so it will not overwrite or delete them; choose another output folder`);
  }
  return run;
}

/** Opens a results file to append to, never through a link and never waiting on a FIFO. */
async function openForAppend(file: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o666);
  } catch (e) {
    if (errnoOf(e) === "ELOOP") throw new LensInputError(file, "is a symbolic link: a sweep never writes through links; delete the link or choose another output folder");
    if (errnoOf(e) === "EACCES" || errnoOf(e) === "EPERM") throw new LensInputError(file, "cannot write here (permission denied): choose another output folder");
    throw e;
  }
}

interface LockOwner {
  pid: number;
  host: string;
  started: string;
}

/**
 * Takes the folder's lock file (run.lock, holding pid, host and start time) so that two sweeps
 * never append to one results.jsonl. The lock is written whole to a temporary file and linked
 * into place, which fails if a lock is there: no reader sees half a lock. A lock left by a
 * process of this host that is gone (kill -9, a crash) is stale and taken over; one from another
 * host (a shared disk) cannot be checked and is refused with its owner named. Returns the release.
 */
export async function lockResultsFolder(outDir: string): Promise<() => Promise<void>> {
  const lock = path.join(outDir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  const mine = JSON.stringify(me);
  const tmp = path.join(outDir, `.${LOCK_FILE}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await fs.writeFile(tmp, mine, { flag: "wx" });
  } catch (e) {
    const code = errnoOf(e);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") throw new LensInputError(outDir, "cannot write in the results folder (permission denied): choose another output folder");
    throw e;
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.link(tmp, lock);
        break;
      } catch (e) {
        if (errnoOf(e) !== "EEXIST") {
          // a file system without hard links: exclusive create, not quite as atomic
          if (errnoOf(e) === "EPERM" || errnoOf(e) === "ENOTSUP" || errnoOf(e) === "ENOSYS") {
            try {
              await fs.writeFile(lock, mine, { flag: "wx" });
              break;
            } catch (e2) {
              if (errnoOf(e2) !== "EEXIST") throw e2;
            }
          } else throw e;
        }
      }
      const raw = await fs.readFile(lock, "utf8").catch(() => undefined);
      if (raw === undefined) continue; // released meanwhile: try again
      const owner = parseLock(raw);
      const age = await fs.lstat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (attempt >= 3 || !isStale(owner, age)) {
        const who = owner ? `pid ${owner.pid} on ${owner.host}, since ${owner.started}` : "an unreadable lock";
        throw new LensInputError(outDir, `another sweep is writing to this results folder (${who}): wait for it to end, or choose another output folder; if no sweep is running, delete ${lock}`);
      }
      // Stale: move it aside, and make sure it was the stale one that moved (not a lock another
      // process took meanwhile), then try again.
      const aside = `${lock}.${process.pid}.stale`;
      if (await fs.rename(lock, aside).then(() => true, () => false)) {
        const moved = await fs.readFile(aside, "utf8").catch(() => raw);
        if (moved !== raw) await fs.link(aside, lock).catch(() => undefined);
        await fs.rm(aside, { force: true });
      }
    }
  } finally {
    await fs.rm(tmp, { force: true });
  }
  // A hard exit (Ctrl+C twice) skips finally blocks; the exit handler still removes the lock.
  const onExit = () => {
    try {
      unlinkSync(lock);
    } catch {
      // gone already
    }
  };
  process.once("exit", onExit);
  return async () => {
    process.off("exit", onExit);
    const now = await fs.readFile(lock, "utf8").catch(() => undefined);
    if (now === mine) await fs.rm(lock, { force: true });
  };
}

function parseLock(raw: string): LockOwner | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockOwner>;
    return typeof v.pid === "number" && typeof v.host === "string" && typeof v.started === "string" ? (v as LockOwner) : undefined;
  } catch {
    return undefined;
  }
}

/** A lock whose process is gone (on this host), or an unreadable one older than a minute. */
function isStale(owner: LockOwner | undefined, ageMs: number): boolean {
  if (!owner) return ageMs > 60_000;
  if (owner.host !== os.hostname()) return false;
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (e) {
    return errnoOf(e) === "ESRCH";
  }
}

/** The rows of a results.jsonl (see readResults). */
export async function readRows(file: string): Promise<SweepRow[]> {
  return (await readResults(file)).rows;
}

/**
 * The rows of a results.jsonl, and the numbers of the lines that are not rows. A torn last line
 * (a killed run; no newline at its end) is cut off the file, or, when it is a whole row that
 * only lacks its newline, given one. A line in the middle that is not a row is skipped (and
 * reported by its number), the rows after it kept; a torn row with a good one appended to it
 * keeps the good one. The file is opened without following links.
 */
export async function readResults(file: string): Promise<{ rows: SweepRow[]; bad: number[] }> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return { rows: [], bad: [] };
    if (errnoOf(e) === "ELOOP") throw new LensInputError(file, "is a symbolic link: a sweep never writes through links; delete the link or choose another output folder");
    throw e;
  }
  try {
    if (!(await handle.stat()).isFile()) throw new LensInputError(file, "is not a regular file: delete it or choose another output folder");
    const buffer = await handle.readFile();
    const rows: SweepRow[] = [];
    const bad: number[] = [];
    let start = 0;
    let line = 0;
    while (start < buffer.length) {
      const end = buffer.indexOf(0x0a, start);
      line++;
      const text = buffer.toString("utf8", start, end < 0 ? buffer.length : end);
      if (end < 0) {
        // the last write was cut short: keep a whole row, cut off anything else
        const row = parseSweepRow(text);
        if (row) {
          rows.push(row);
          await handle.write("\n", buffer.length);
        } else await handle.truncate(start);
        break;
      }
      if (text.trim()) {
        const row = parseSweepRow(text);
        if (row) rows.push(row);
        else bad.push(line);
      }
      start = end + 1;
    }
    return { rows, bad };
  } finally {
    await handle.close();
  }
}

/** A line as a row; for a torn row with a whole one glued to its end, the whole one. */
async function dropRecordsWithoutRows(file: string, keep: Set<string>): Promise<void> {
  let text: string;
  try {
    // checkOutputFiles has refused a link; O_NOFOLLOW in case one appeared since
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch {
    return;
  }
  const lines = text.split("\n");
  const kept: string[] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    const m = /^\{"id":"([0-9a-f]+)"/.exec(line);
    if (!m || !line.endsWith("}") || !keep.has(m[1]) || seen.has(m[1])) continue;
    seen.add(m[1]);
    kept.push(line);
  }
  if (kept.length !== lines.filter(Boolean).length) await writeFileAtomic(file, kept.length ? `${kept.join("\n")}\n` : "");
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8"));
  } catch {
    return undefined;
  }
}
