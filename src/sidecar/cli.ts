/**
 * `logit-lens` command line. Reports go to stdout; progress and errors to stderr. Input
 * problems print one line (`error: <file>: <what to do>`) and exit 1; --verbose adds the stack.
 */
import * as path from "node:path";
import type { LensRecord, LensSettings } from "../shared/lensRecord";
import { diffToCsv, recordToCsv, recordToJson } from "../shared/exportCsv";
import { diffRecords } from "../shared/recordDiff";
import { validateLensRecord } from "../shared/validateRecord";
import { isLensInputError, LensInputError } from "./errors";
import { type HeadMaskSpec, runLens } from "./lens/runLens";
import { LoadedModel } from "./model/loadedModel";
import { serve } from "./server";
import { parseDevice } from "./runtime/ort";
import { writeFileAtomic } from "./util/atomicWrite";
import { existsSync, readFileSync } from "node:fs";
import { InvalidExperimentError } from "../shared/experiment";
import type { SweepAggregates } from "../shared/sweep";
import { defaultModelFolder, samplesFolder } from "./defaults";
import { outputFolder, outputOutsideExperiment, readExperimentFile } from "./experiment/paths";
import { MIB, readInputText } from "./util/readInput";
import { DTYPE_CHOICES, type DtypeChoice } from "../shared/protocol";
import { runSweep } from "./experiment/sweep";

const USAGE = `usage: logit-lens [run] [--model DIR] [--image FILE --prompt TEXT] [options]
       logit-lens run EXPERIMENT.lens.json [--model DIR] [--out DIR] [--fresh] [--allow-outside]
       logit-lens diff BASE.json OTHER.json [--format table|csv] [--out FILE]
       logit-lens serve     (the sidecar: JSON-RPC on stdin/stdout, for the VS Code extension)

Runs the model on the image and prompt, generates greedily, and reports what every layer
predicts (logit lens: the layer's residual through the final norm and the unembedding).
Without --model: $LOGIT_LENS_MODEL, else the bundled model. Without --image and --prompt: the
first bundled sample scene and its question.

An experiment file (.lens.json) runs every input x prompt x variant it names, streaming
results to its output folder; rerun, it continues where it stopped.

output
  --format table|json|csv   table (default): each layer's top tokens at the last prompt position;
                            json: the whole LensRecord; csv: one row per (position, layer)
  --json                    same as --format json
  --out FILE                write to FILE (atomically) instead of stdout
lens
  --top-k N                 top tokens per layer (default 10; the table shows 5)
  --positions P             afterImage (default), image or all
  --target WORD             the expected answer: its probability and rank at every layer
  --answer-prob             also the probability of the whole target answer
  --track TOKEN             also track this token's rank (repeatable)
  --max-new-tokens N        greedy tokens to generate (default 8; 0 = none)
  --image-attention         keep each position's attention over the image tokens
  --patch-lens              top-1 token of every image token's residual, per layer
head masking
  --mask "L:H,H;L:H"        zero these heads (0-based layer:heads), e.g. "1:0,2;2:1"
  --mask-random N[:SEED]    zero N random heads (seed default 0)
  --mask-top-image N        zero the N heads that attend most to the image
runtime
  --device auto|cpu|cuda|webgpu   --threads N   --verbose
  --dtype auto|float32|float16|bfloat16
                            what the model computes in (default auto: on the CPU float32
                            when float32 copies of the weights fit, else a float16
                            checkpoint in float16 and a bfloat16 one with its weights kept
                            half; on a GPU the checkpoint's half precision; bfloat16 only
                            on CUDA); an experiment file's "dtype" is used when this is
                            left out
experiments
  --out DIR                 results folder (default: the file's output.folder, or NAME.results)
  --fresh                   delete earlier results in the folder and start over (only the
                            files a sweep writes)
  --allow-outside           let the file's output.folder lie outside the experiment's folder

diff compares two records of the same model and input (e.g. heads masked vs not), layer by
layer: the change in target probability, target rank and entropy, averaged over positions.`;

interface RunArgs {
  model: string;
  /** Set when the model came from neither --model nor the environment. */
  bundledModel: boolean;
  image?: string;
  prompt: string;
  /** The sample the run falls back to without --image and --prompt. */
  sample?: { image: string; question: string; answer: string };
  experiment?: string;
  fresh: boolean;
  allowOutside: boolean;
  format: "table" | "json" | "csv";
  out?: string;
  topK: number;
  positions: LensSettings["positions"];
  target?: string;
  answerProb: boolean;
  track: string[];
  maxNewTokens: number;
  imageAttention: boolean;
  patchLens: boolean;
  headMask?: HeadMaskSpec;
  device: string;
  /** Absent: not given (auto, or an experiment file's own dtype). */
  dtype?: DtypeChoice;
  threads: number;
  verbose: boolean;
}

class UsageError extends Error {}

/** Flags whose value is a path or a name, which an empty string cannot be. */
const PATH_FLAGS = new Set(["--model", "--image", "--out", "--device", "--dtype", "--format", "--positions"]);

function parseArgs(argv: string[]): RunArgs {
  // "run" may be left out: `logit-lens` alone runs the bundled sample
  const [command, ...afterCommand] = argv;
  const rest = command === "run" ? afterCommand : argv;
  if (command !== undefined && command !== "run" && !command.startsWith("--")) {
    if (!command.endsWith(".json")) throw new UsageError(`unknown command ${command} (commands: run, diff, serve)`);
  }
  const args: Partial<RunArgs> = {};
  const value = (i: number, flag: string): string => {
    const v = rest[i + 1];
    if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value`);
    // an empty path is no path: `--image ""` would otherwise run text-only without a word
    if (v.trim() === "" && PATH_FLAGS.has(flag)) throw new UsageError(`${flag} needs a value, got an empty string`);
    return v;
  };
  const track: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    switch (flag) {
      case "--model": args.model = value(i++, flag); break;
      case "--image": args.image = value(i++, flag); break;
      case "--prompt": args.prompt = value(i++, flag); break;
      case "--format": args.format = oneOf(value(i++, flag), ["table", "json", "csv"] as const, flag); break;
      case "--json": args.format = "json"; break;
      case "--out": args.out = value(i++, flag); break;
      case "--top-k": args.topK = intInRange(value(i++, flag), flag, 1, 100); break;
      case "--positions": args.positions = oneOf(value(i++, flag), ["afterImage", "image", "all"] as const, flag); break;
      case "--target": args.target = value(i++, flag); break;
      case "--answer-prob": args.answerProb = true; break;
      case "--track": track.push(value(i++, flag)); break;
      case "--max-new-tokens": args.maxNewTokens = intAtLeast(value(i++, flag), flag, 0); break;
      case "--image-attention": args.imageAttention = true; break;
      case "--patch-lens": args.patchLens = true; break;
      case "--mask": args.headMask = { heads: parseMask(value(i++, flag)) }; break;
      case "--mask-random": {
        const [n, seed] = value(i++, flag).split(":");
        args.headMask = { strategy: "random", count: intAtLeast(n, flag, 1), seed: seed === undefined ? 0 : intAtLeast(seed, flag, 0) };
        break;
      }
      case "--mask-top-image": args.headMask = { strategy: "topImage", count: intAtLeast(value(i++, flag), flag, 1) }; break;
      case "--device": args.device = value(i++, flag); break;
      case "--dtype": args.dtype = oneOf(value(i++, flag), DTYPE_CHOICES, flag); break;
      case "--threads": args.threads = intInRange(value(i++, flag), flag, 1, 256); break;
      case "--verbose": args.verbose = true; break;
      case "--fresh": args.fresh = true; break;
      case "--allow-outside": args.allowOutside = true; break;
      default:
        if (!flag.startsWith("--") && /\.json$/i.test(flag) && args.experiment === undefined) {
          args.experiment = flag;
          break;
        }
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  const modelGiven = args.model !== undefined || !!process.env["LOGIT_LENS_MODEL"];
  args.model ??= defaultModelFolder();
  args.bundledModel = !modelGiven;
  if (args.experiment !== undefined) {
    if (args.image !== undefined || args.prompt !== undefined) throw new UsageError("an experiment file names its own images and prompts: leave out --image and --prompt");
    args.prompt = "";
  } else if (args.image === undefined && args.prompt === undefined) {
    args.sample = firstSample();
    args.image = args.sample.image;
    args.prompt = args.sample.question;
  }
  if (args.prompt === undefined) throw new UsageError("--prompt is required with --image");
  if (args.answerProb && !args.target) throw new UsageError("--answer-prob needs --target");
  return {
    format: "table",
    topK: 10,
    positions: "afterImage",
    answerProb: false,
    maxNewTokens: 8,
    imageAttention: false,
    patchLens: false,
    device: "auto",
    threads: 0,
    verbose: false,
    fresh: false,
    allowOutside: false,
    ...args,
    track,
  } as RunArgs;
}

function oneOf<T extends string>(v: string, options: readonly T[], flag: string): T {
  if ((options as readonly string[]).includes(v)) return v as T;
  throw new UsageError(`${flag} must be one of ${options.join(", ")}, got ${v}`);
}

function intAtLeast(v: string, flag: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer >= ${min}, got ${v}`);
  return n;
}

/** The same ranges as the sidecar's protocol (src/shared/protocolValidation.ts). */
function intInRange(v: string, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got ${v}`);
  return n;
}

/** "1:0,2;2:1" -> {1: [0, 2], 2: [1]} */
function parseMask(spec: string): Record<string, number[]> {
  const heads: Record<string, number[]> = {};
  for (const part of spec.split(";").filter((p) => p.trim())) {
    const m = /^\s*(\d+)\s*:\s*(\d+(?:\s*,\s*\d+)*)\s*$/.exec(part);
    if (!m) throw new UsageError(`--mask: cannot read "${part}"; write layer:head,head;layer:head, e.g. "1:0,2;2:1"`);
    heads[m[1]] = m[2].split(",").map((h) => Number(h.trim()));
  }
  return heads;
}

/** The first bundled sample scene and its question (media/samples/questions.jsonl). */
function firstSample(): { image: string; question: string; answer: string } {
  const dir = samplesFolder();
  const manifest = path.join(dir, "questions.jsonl");
  let first: { image?: string; question?: string; answer?: string };
  try {
    first = JSON.parse(readFileSync(manifest, "utf8").split("\n")[0]) as typeof first;
  } catch {
    throw new LensInputError(manifest, "the bundled samples are missing: reinstall, or pass --image FILE --prompt TEXT");
  }
  if (!first.image || !first.question) throw new LensInputError(manifest, "the first sample has no image or question: reinstall, or pass --image FILE --prompt TEXT");
  return { image: path.join(dir, first.image), question: first.question, answer: first.answer ?? "" };
}

/**
 * The model, opened as the sidecar opens it: half-precision weights kept half, their float32
 * copies made only when something waits for them (an experiment of several items: sweep.ts).
 * One record is faster end to end that way (Qwen2-VL-2B on a 640 x 480 picture: a 1 s open and
 * a 27 s record, against 13 s of widening at open and a 19.5 s record; bench:real).
 */
async function openModel(args: RunArgs, progress: (s: string) => void, dtype: DtypeChoice = args.dtype ?? "auto"): Promise<LoadedModel> {
  const device = parseDevice(args.device);
  try {
    return await LoadedModel.open(args.model, { device, dtype, threads: args.threads, float32Copies: "in-background", onProgress: (s) => progress(`${s}…`) });
  } catch (e) {
    // the bundled model's own refusals (a dtype it cannot compute in, say) are not a broken install
    if (args.bundledModel && isLensInputError(e) && !existsSync(path.join(args.model, "config.json"))) {
      throw new LensInputError(args.model, "the bundled model is missing from this install: reinstall, or pass --model DIR (a Hugging Face model folder)");
    }
    throw e;
  }
}

async function run(args: RunArgs): Promise<void> {
  // One updating line on a terminal; plain lines in logs and pipes.
  const progress = (s: string) => process.stderr.write(process.stderr.isTTY ? `\r\x1b[K${s}` : `${s}\n`);
  const clearProgress = () => process.stderr.isTTY && process.stderr.write("\r\x1b[K");
  if (args.experiment !== undefined) return runExperiment(args, progress, clearProgress);
  const t0 = performance.now();
  const model = await openModel(args, progress);
  // one record: the copies would only compete with it for the cores
  model.busy();
  const keptForThisRecord = model.engine.pendingWeightPlan === "float32";
  const memoryReason = keptForThisRecord
    ? "half-precision weights kept half for this record and converted per use, which gives the same float32 numbers as float32 copies; making the copies would take longer than they save on one record (an experiment of several items makes them first)"
    : model.info.memory.reason;
  if (args.verbose || model.info.weightPlan === "half-per-use") progress(`memory: ${memoryReason}`);
  if (args.sample) {
    progress(`no --image and --prompt: running the sample ${path.basename(args.sample.image)}, "${args.sample.question}" (expected answer: ${args.sample.answer})`);
  }
  try {
    progress(`running on ${model.info.provider}…`);
    const record = await runLens(model, {
      prompt: args.prompt,
      image: args.image ? path.resolve(args.image) : undefined,
      settings: {
        positions: args.positions,
        topK: args.topK,
        maxNewTokens: args.maxNewTokens,
        ...(args.target ? { target: args.target, answerProb: args.answerProb } : {}),
        ...(args.track.length ? { trackTokens: args.track } : {}),
        ...(args.imageAttention ? { imageAttention: true } : {}),
        ...(args.patchLens ? { patchLens: true } : {}),
      },
      headMask: args.headMask,
    });
    clearProgress();
    process.stderr.write(`done in ${((performance.now() - t0) / 1000).toFixed(2)} s (${model.info.provider})\n`);
    const text = args.format === "json" ? recordToJson(record) : args.format === "csv" ? recordToCsv(record) : formatTable(record);
    if (args.out) {
      await writeFileAtomic(args.out, text);
      process.stderr.write(`wrote ${path.resolve(args.out)}\n`);
    } else {
      process.stdout.write(text);
    }
  } finally {
    await model.dispose();
  }
}

async function runExperiment(args: RunArgs, progress: (s: string) => void, clearProgress: () => void): Promise<void> {
  const file = path.resolve(args.experiment!);
  let experiment;
  try {
    experiment = await readExperimentFile(file);
  } catch (e) {
    if (e instanceof InvalidExperimentError) throw new LensInputError(file, `${e.errors.join("; ")}: fix the file (the schema is lensExperiment.schema.json)`);
    throw e;
  }
  if (experiment.model !== "default" && !modelFlagGiven(args)) {
    args.model = path.resolve(path.dirname(file), experiment.model);
    args.bundledModel = false;
  }
  const outDir = args.out ? path.resolve(args.out) : outputFolder(experiment, file);
  // --out is the user's own choice; a folder the file names elsewhere needs their say-so
  if (!args.out && !args.allowOutside && outputOutsideExperiment(outDir, file)) {
    throw new LensInputError(file, `output.folder ${outDir} lies outside the experiment's folder, and a sweep writes (with --fresh, deletes) files there: pass --allow-outside if that is meant, or --out DIR`);
  }
  // --dtype wins over the file's own dtype, as --model wins over its model
  const model = await openModel(args, progress, args.dtype ?? experiment.dtype ?? "auto");
  // the copies are made only when the sweep has several items to run (it hurries them)
  model.busy();
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(130);
    stop = true;
    progress("stopping after the current item (Ctrl+C again to quit now)…");
  };
  process.on("SIGINT", onSignal);
  try {
    const result = await runSweep(model, experiment, file, {
      outDir,
      fresh: args.fresh,
      isCancelled: () => stop,
      onWarning: (w) => {
        clearProgress();
        process.stderr.write(`warning: ${w}\n`);
      },
      onProgress: (p) => progress(`${p.done}/${p.total} items  ${p.rate.toFixed(1)} items/s  ${formatSeconds(p.etaSeconds)} left`),
    });
    clearProgress();
    process.stderr.write(`${result.cancelled ? "stopped" : "done"}: ${result.ran} run, ${result.resumed} already done, ${result.total} in the plan, ${result.seconds.toFixed(1)} s (${(result.ran / Math.max(result.seconds, 1e-9)).toFixed(1)} items/s); results in ${result.outDir}\n`);
    process.stdout.write(formatAggregates(result.aggregates));
  } finally {
    process.off("SIGINT", onSignal);
    await model.dispose();
  }
}

function modelFlagGiven(args: RunArgs): boolean {
  return !args.bundledModel && !process.env["LOGIT_LENS_MODEL"];
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

/** Accuracy and the median convergence layer per variant and group, then the mean curves of "all". */
export function formatAggregates(a: SweepAggregates): string {
  const lines = [`${"variant".padEnd(14)} ${"group".padEnd(28)} ${"n".padStart(5)} ${"accuracy".padStart(9)} ${"empty".padStart(6)} ${"converges at".padStart(13)}`];
  for (const g of a.groups) {
    const acc = g.accuracy === null ? "-" : `${(100 * g.accuracy).toFixed(1)}%`;
    lines.push(`${g.variant.padEnd(14)} ${(g.key === "all" ? "all" : `${g.key}=${g.value}`).padEnd(28)} ${String(g.n).padStart(5)} ${acc.padStart(9)} ${String(g.emptyAnswers ?? "-").padStart(6)} ${String(g.medianConvergenceLayer).padStart(13)}`);
  }
  for (const g of a.groups.filter((x) => x.key === "all")) {
    lines.push("", `${g.variant}: mean per layer (0 = embeddings)`, `${"layer".padEnd(6)} ${"entropy".padStart(8)} ${"target p".padStart(9)} ${"rank".padStart(8)} ${"image share".padStart(12)}`);
    for (let l = 0; l < a.layers; l++) {
      lines.push(`${String(l).padEnd(6)} ${g.meanEntropy[l].toFixed(3).padStart(8)} ${g.meanTargetProb[l].toFixed(4).padStart(9)} ${g.meanTargetRank[l].toFixed(1).padStart(8)} ${(l === 0 ? "" : g.meanImageShare[l - 1].toFixed(3)).padStart(12)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

async function diff(argv: string[]): Promise<void> {
  const files: string[] = [];
  let format: "table" | "csv" = "table";
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--format") format = oneOf(argv[++i] ?? "", ["table", "csv"] as const, "--format");
    else if (argv[i] === "--out") {
      out = argv[++i];
      if (out === undefined || out.trim() === "" || out.startsWith("--")) throw new UsageError("--out needs a file name");
    }
    else if (argv[i] === "--verbose") continue;
    else if (argv[i].startsWith("--")) throw new UsageError(`unknown option ${argv[i]}`);
    else files.push(argv[i]);
  }
  if (files.length !== 2) throw new UsageError("diff needs two record files (from run --json --out)");
  const [base, other] = await Promise.all(files.map(readRecord));
  let d;
  try {
    d = diffRecords(base, other);
  } catch (e) {
    throw new LensInputError(files[1], `${(e as Error).message}`);
  }
  let text: string;
  if (format === "csv") {
    text = diffToCsv(d, "means");
  } else {
    const lines: string[] = [];
    const diverged = d.sameContext.filter((same) => !same).length;
    lines.push(`base heads masked: ${JSON.stringify(d.baseHeadMask)}; other: ${JSON.stringify(d.otherHeadMask)}; ${d.positions.length} positions (${diverged} after the runs' tokens diverge)`);
    lines.push(`${"layer".padEnd(12)} ${"Δ target p".padStart(11)} ${"Δ rank".padStart(9)} ${"Δ entropy".padStart(10)}`);
    d.layers.forEach((label, l) =>
      lines.push(`${label.padEnd(12)} ${d.meanTargetProbDelta[l].toFixed(4).padStart(11)} ${d.meanTargetRankDelta[l].toFixed(1).padStart(9)} ${d.meanEntropyDelta[l].toFixed(3).padStart(10)}`),
    );
    text = lines.join("\n") + "\n";
  }
  if (out) await writeFileAtomic(out, text);
  else process.stdout.write(text);
}

async function readRecord(file: string): Promise<LensRecord> {
  const text = await readInputText(path.resolve(file), { what: "record file", maxBytes: MAX_RECORD_BYTES, fix: "write one with run --json --out FILE" });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LensInputError(path.resolve(file), `not a JSON record (${(e as Error).message.split("\n")[0]})`);
  }
  const v = validateLensRecord(json);
  if (!v.ok) throw new LensInputError(path.resolve(file), `not a valid LensRecord (${v.errors[0]}${v.errors.length > 1 ? `, and ${v.errors.length - 1} more` : ""}): write it with run --json`);
  return v.record;
}

/** A record with image attention over a large image runs to hundreds of megabytes; a JS string holds at most about 512 MiB. */
const MAX_RECORD_BYTES = 512 * MIB;

/** Each layer's top tokens at the last prompt position, the target's rank, and the generated text. */
export function formatTable(r: LensRecord): string {
  const promptLength = r.tokens.length - r.generation.ids.length;
  const j = r.positions.indexOf(promptLength - 1);
  const P = r.positions.length;
  const k = r.lens.topK;
  const show = Math.min(k, 5);
  const lines: string[] = [];
  const weights = r.model.weightPlan === "half-per-use" ? `${r.model.dtype} weights kept half` : r.model.dtype;
  lines.push(`${r.model.architecture} · ${weights} · ${r.model.computeDtype ?? "float32"} compute · ${r.model.executionProvider} · ${promptLength} prompt tokens${r.headMask ? ` · masked heads ${JSON.stringify(r.headMask)}` : ""}`);
  if (r.generation.ids.length) {
    lines.push(`generated (${r.generation.stoppedBy}): ${JSON.stringify(r.tokens.slice(promptLength).map((t) => t.text).join(""))}`);
  }
  const target = r.lens.targetIds[j];
  lines.push(`logit lens at the last prompt position ${promptLength - 1} (${JSON.stringify(r.tokens[promptLength - 1].text)}); target ${r.lens.targetText ? `"${r.lens.targetText.text}" ` : ""}= token ${target}`);
  lines.push("");
  lines.push(`${"layer".padEnd(12)} ${"top-1".padEnd(16)} ${"p".padStart(7)} ${"target p".padStart(9)} ${"rank".padStart(6)} ${"entropy".padStart(8)}   next`);
  for (let l = 0; l < r.layerLabels.length; l++) {
    const at = (block: { data: number[] }, i = 0, width = 1) => block.data[(l * P + j) * width + i];
    const idText = (i: number) => JSON.stringify(r.tokenTexts[String(at(r.lens.topkIds, i, k))]);
    const rest = Array.from({ length: show - 1 }, (_, i) => `${idText(i + 1)} ${at(r.lens.topkProbs, i + 1, k).toFixed(3)}`).join("  ");
    lines.push(
      `${r.layerLabels[l].padEnd(12)} ${idText(0).padEnd(16)} ${at(r.lens.topkProbs, 0, k).toFixed(4).padStart(7)} ${at(r.lens.targetProb).toFixed(4).padStart(9)} ${String(at(r.lens.targetRank)).padStart(6)} ${at(r.lens.entropy).toFixed(3).padStart(8)}   ${rest}`,
    );
  }
  return lines.join("\n") + "\n";
}

export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes("--verbose");
  try {
    if (argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
      process.stdout.write(USAGE + "\n");
      return 0;
    }
    if (argv[0] === "serve") await serve();
    else if (argv[0] === "diff") await diff(argv.slice(1));
    else await run(parseArgs(argv));
    return 0;
  } catch (e) {
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    if (isLensInputError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      if (verbose) process.stderr.write(`${e.stack}\n`);
      return 1;
    }
    const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
    process.stderr.write(`internal error: ${message} (run again with --verbose for details, and report it)\n`);
    if (verbose && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 70;
  }
}

export { LensInputError };
