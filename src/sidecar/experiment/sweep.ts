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
 *
 * A sweep that is killed loses nothing it finished; rerun, it reads results.jsonl (dropping a
 * torn last line), skips every item already there and continues. Items whose id is not in
 * the plan any more (an edited experiment) stay in results.jsonl but are left out of the
 * aggregates.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { type ExperimentVariant, fillTemplate, type LensExperiment } from "../../shared/experiment";
import type { LensSettings } from "../../shared/lensRecord";
import { aggregateRows, aggregatesToCsv, rowsToCsv, type SweepRow, type SweepSummary, summarizeRecord } from "../../shared/sweep";
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
}

export interface SweepResult extends SweepSummary {
  rows: SweepRow[];
}

const RUN_FORMAT = 1;

export async function runSweep(model: LoadedModel, experiment: LensExperiment, file: string, opts: SweepOptions): Promise<SweepResult> {
  const items = await planExperiment(experiment, file);
  const outDir = path.resolve(opts.outDir);
  await fs.mkdir(outDir, { recursive: true });
  const resultsFile = path.join(outDir, "results.jsonl");
  const recordsFile = path.join(outDir, "records.jsonl");
  const runFile = path.join(outDir, "run.json");
  if (opts.fresh) await Promise.all(["results.jsonl", "records.jsonl", "results.csv", "aggregates.json", "aggregates.csv", "run.json"].map((f) => fs.rm(path.join(outDir, f), { force: true })));

  const run = { format: RUN_FORMAT, experiment: experiment.name, file: path.resolve(file), model: { folder: model.info.folder, configHash: model.info.configHash } };
  const earlier = await readJson(runFile);
  if (earlier && (earlier as typeof run).model?.configHash !== run.model.configHash) {
    throw new LensInputError(outDir, `holds results of another model (${(earlier as typeof run).model?.folder}): choose another output folder, or run with --fresh to start over`);
  }
  await writeFileAtomic(runFile, `${JSON.stringify(run, null, 2)}\n`);

  const finished = await readRows(resultsFile);
  const planned = new Map(items.map((it) => [it.id, it]));
  const byId = new Map<string, SweepRow>();
  for (const r of finished) if (planned.has(r.id) && !byId.has(r.id)) byId.set(r.id, r);
  if (experiment.output.records) await dropRecordsWithoutRows(recordsFile, new Set(finished.map((r) => r.id)));
  const resumed = byId.size;
  const todo = items.filter((it) => !byId.has(it.id));

  const handle = await fs.open(resultsFile, "a");
  const records = experiment.output.records ? await fs.open(recordsFile, "a") : undefined;
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
      const generatedIds = record.generation.stoppedBy === "eos" ? record.generation.ids.slice(0, -1) : record.generation.ids;
      const row = summarizeRecord(record, {
        id: item.id,
        index: item.index,
        image: item.imageRel,
        promptName: item.promptName,
        variant: item.variant.name,
        groups: item.groups,
        expected: item.expected,
        generated: model.text.decode(generatedIds, true).trim(),
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
  return { outDir, total: items.length, ran, resumed, cancelled, seconds: (performance.now() - t0) / 1000, rows, aggregates };
}

/** The rows of a results.jsonl; a torn last line (a killed run) is cut off the file. */
export async function readRows(file: string): Promise<SweepRow[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch {
    return [];
  }
  const rows: SweepRow[] = [];
  let good = 0;
  for (let start = 0; start < text.length; ) {
    const end = text.indexOf("\n", start);
    if (end < 0) break; // no newline: the write was cut short
    try {
      rows.push(JSON.parse(text.slice(start, end)) as SweepRow);
    } catch {
      break;
    }
    good = end + 1;
    start = end + 1;
  }
  if (good < Buffer.byteLength(text)) {
    const goodBytes = Buffer.byteLength(text.slice(0, good));
    await fs.truncate(file, goodBytes);
  }
  return rows;
}

async function dropRecordsWithoutRows(file: string, keep: Set<string>): Promise<void> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
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
