/**
 * Sweep results: one compact row per (input, prompt, variant) item, summarising its LensRecord
 * at the answer position (the last prompt position, which predicts the first answer token),
 * and the aggregates over groups of rows. Pure functions, shared by the sidecar (which writes
 * them), the CLI and the comparison view.
 */
import { csvField, csvRow } from "./exportCsv";
import { at, type LensRecord, SEGMENTS } from "./lensRecord";
import { type DifferenceAggregate, summarizeVariants, type VariantSummary, variantDifferences, wilsonInterval } from "./sweepCompare";

export const SWEEP_ROW_VERSION = 1;

export interface SweepRow {
  v: typeof SWEEP_ROW_VERSION;
  /** Stable id of the item: the same input, prompt, target, settings and variant give the same id. */
  id: string;
  /** Order of the item in the experiment's plan. */
  index: number;
  /** Image path relative to the experiment file (forward slashes), or null for text only. */
  image: string | null;
  imageSha256: string | null;
  promptName: string;
  prompt: string;
  variant: string;
  /** Group values: the input's groups and the manifest row's other columns. */
  groups: Record<string, string>;
  /** The expected answer, when the experiment has a target. */
  expected: string | null;
  /**
   * What the model generated (greedy, up to EOS or maxNewTokens), as text: "" when it generated
   * nothing (maxNewTokens 0, or EOS first), which counts as a wrong answer.
   */
  generated: string;
  /** Whether the generated answer equals the expected one (see answerMatches); null without a target or with an empty one. */
  correct: boolean | null;
  headMask: Record<string, number[]> | null;
  /** The answer position's token index in the record, and the target token measured there. */
  answerPosition: number;
  targetId: number;
  targetText: string;
  /** The final layer's top-1 at the answer position: the model's first answer token. */
  finalId: number;
  finalText: string;
  /** Per lens layer (L + 1) at the answer position. */
  entropy: number[];
  targetProb: number[];
  targetRank: number[];
  kl: number[];
  cosine: number[];
  top1: number[];
  /** Rank of the final answer token (finalId) at each layer. */
  finalRank: number[];
  /** First layer from which finalRank stays 1 up to the last layer. */
  convergenceLayer: number;
  /** Per decoder block (L): attention share on the image at the answer position, averaged over heads. */
  imageShare: number[];
  seconds: number;
}

export interface ItemMeta {
  id: string;
  index: number;
  image: string | null;
  promptName: string;
  variant: string;
  groups: Record<string, string>;
  expected: string | null;
  /** The generated answer decoded by the model's tokenizer (EOS left out). */
  generated: string;
  seconds: number;
}

/**
 * Whether a generated answer counts as the expected one: equal after trimming, ignoring case and
 * trailing punctuation, or, for a one-word answer, equal to the generated text's first word.
 */
export function answerMatches(generated: string, expected: string): boolean {
  const norm = (s: string) => s.trim().toLowerCase().replace(/[.!?,;:]+$/u, "").trim();
  const g = norm(generated);
  const e = norm(expected);
  if (g === e) return true;
  return !/\s/u.test(e) && norm(g.split(/\s+/u)[0] ?? "") === e;
}

/** The row for one finished item. */
export function summarizeRecord(record: LensRecord, meta: ItemMeta): SweepRow {
  const promptLength = record.tokens.length - record.generation.ids.length;
  const answerPosition = promptLength - 1;
  const p = record.positions.indexOf(answerPosition);
  if (p < 0) throw new Error(`the record has no lens entry at the answer position ${answerPosition}: run with positions "afterImage" or "all"`);
  const layers = record.layerLabels.length;
  const L = layers - 1;
  const perLayer = (block: { shape: number[]; data: number[] }) => Array.from({ length: layers }, (_, l) => at(block, l, p));
  const top1 = Array.from({ length: layers }, (_, l) => at(record.lens.topkIds, l, p, 0));
  const finalId = top1[L];
  const m = record.tracked.ids.indexOf(finalId);
  if (m < 0) throw new Error(`the final top-1 token ${finalId} is not among the tracked tokens`);
  const finalRank = Array.from({ length: layers }, (_, l) => at(record.tracked.rank, l, p, m));
  let convergenceLayer = L;
  while (convergenceLayer > 0 && finalRank[convergenceLayer - 1] === 1) convergenceLayer--;
  const image = SEGMENTS.indexOf("image");
  const [, heads] = record.attention.mass.shape;
  const imageShare = Array.from({ length: L }, (_, l) => {
    let s = 0;
    for (let h = 0; h < heads; h++) s += at(record.attention.mass, l, h, p, image);
    return s / heads;
  });
  const text = (id: number) => record.tokenTexts[String(id)] ?? "";
  return {
    v: SWEEP_ROW_VERSION,
    id: meta.id,
    index: meta.index,
    image: meta.image,
    imageSha256: record.input.image?.sha256 ?? null,
    promptName: meta.promptName,
    prompt: record.input.prompt,
    variant: meta.variant,
    groups: meta.groups,
    expected: meta.expected,
    generated: meta.generated,
    correct: meta.expected === null || meta.expected.trim() === "" ? null : answerMatches(meta.generated, meta.expected),
    headMask: record.headMask,
    answerPosition,
    targetId: record.lens.targetIds[p],
    targetText: text(record.lens.targetIds[p]),
    finalId,
    finalText: text(finalId),
    entropy: perLayer(record.lens.entropy),
    targetProb: perLayer(record.lens.targetProb),
    targetRank: perLayer(record.lens.targetRank),
    kl: perLayer(record.lens.kl),
    cosine: perLayer(record.lens.cosine),
    top1,
    finalRank,
    convergenceLayer,
    imageShare,
    seconds: meta.seconds,
  };
}

/**
 * Whether a parsed results.jsonl line is a row this version can aggregate: an object with an id,
 * a variant, groups of strings and per-layer arrays of numbers of one length (null, a number or
 * a hand-edited fragment is not, and is skipped rather than stopping every rerun).
 */
export function isSweepRow(v: unknown): v is SweepRow {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  if (r["v"] !== SWEEP_ROW_VERSION || typeof r["id"] !== "string" || !r["id"] || typeof r["variant"] !== "string" || typeof r["promptName"] !== "string") return false;
  if (typeof r["generated"] !== "string" || !(r["correct"] === null || typeof r["correct"] === "boolean") || !(r["expected"] === null || typeof r["expected"] === "string")) return false;
  const groups = r["groups"];
  if (typeof groups !== "object" || groups === null || Array.isArray(groups) || !Object.values(groups).every((g) => typeof g === "string")) return false;
  const numbers = (x: unknown, length?: number) => Array.isArray(x) && (length === undefined || x.length === length) && x.every((n) => typeof n === "number");
  const entropy = r["entropy"];
  if (!numbers(entropy) || (entropy as number[]).length < 1) return false;
  const layers = (entropy as number[]).length;
  if (!["targetProb", "targetRank", "kl", "cosine", "top1", "finalRank"].every((k) => numbers(r[k], layers)) || !numbers(r["imageShare"], layers - 1)) return false;
  const c = r["convergenceLayer"];
  return typeof c === "number" && Number.isInteger(c) && c >= 0 && c < layers;
}

/**
 * A results.jsonl line as a row, or undefined: a line that is not a row of this version, or a
 * torn write with a whole row glued after it (an interrupted run's last line, then the rerun's
 * first), whose row is kept.
 */
export function parseSweepRow(text: string): SweepRow | undefined {
  const parse = (t: string) => {
    try {
      const v: unknown = JSON.parse(t);
      return isSweepRow(v) ? v : undefined;
    } catch {
      return undefined;
    }
  };
  const row = parse(text);
  if (row) return row;
  const glued = text.lastIndexOf('{"v":');
  return glued > 0 ? parse(text.slice(glued)) : undefined;
}

// --- Aggregates ------------------------------------------------------------------------------

export interface GroupAggregate {
  variant: string;
  /** The grouping key ("all" for every row of the variant) and its value. */
  key: string;
  value: string;
  n: number;
  /** Rows with an expected answer, and the share of them answered correctly (null when none). */
  scored: number;
  accuracy: number | null;
  /** Wilson 95% interval of the accuracy (null when nothing was scored). Absent in older aggregates. */
  accuracyInterval?: [number, number] | null;
  /** Rows whose generated answer is empty (nothing generated, or EOS first); scored ones count as wrong. Absent in older aggregates. */
  emptyAnswers?: number;
  /** Per lens layer, means over the group's rows. */
  meanEntropy: number[];
  meanTargetProb: number[];
  meanTargetRank: number[];
  meanKl: number[];
  /** How many rows converge at each layer 0..L. */
  convergenceHistogram: number[];
  medianConvergenceLayer: number;
  /** Per decoder block, mean attention share on the image. */
  meanImageShare: number[];
}

export interface SweepAggregates {
  layers: number;
  groups: GroupAggregate[];
  /** Per variant, in the experiment's order (the first is the baseline): accuracy with its interval and the heads it masked. Absent in older aggregates. */
  variants?: VariantSummary[];
  /** Per other variant, group and statistic: the per-layer change against the baseline for the same items. Absent in older aggregates. */
  differences?: DifferenceAggregate[];
}

/** What a sweep did: where its results are, how many items it ran and found done, its aggregates. */
export interface SweepSummary {
  outDir: string;
  total: number;
  ran: number;
  resumed: number;
  cancelled: boolean;
  seconds: number;
  aggregates: SweepAggregates;
}

/** Aggregates per variant: over all rows, and per value of every groupBy key. */
export function aggregateRows(rows: readonly SweepRow[], groupBy: readonly string[]): SweepAggregates {
  const layers = rows[0]?.entropy.length ?? 0;
  const out: GroupAggregate[] = [];
  const variants = [...new Set(rows.map((r) => r.variant))];
  for (const variant of variants) {
    const mine = rows.filter((r) => r.variant === variant);
    out.push(aggregate(variant, "all", "all", mine, layers));
    for (const key of groupBy) {
      const values = [...new Set(mine.map((r) => groupValue(r, key)))].sort();
      for (const value of values) out.push(aggregate(variant, key, value, mine.filter((r) => groupValue(r, key) === value), layers));
    }
  }
  return { layers, groups: out, variants: summarizeVariants(rows), differences: variantDifferences(rows, groupBy, groupValue) };
}

/** A row's value for a grouping key: its groups, then "prompt" and "variant"; "(none)" when absent. */
export function groupValue(row: SweepRow, key: string): string {
  if (Object.hasOwn(row.groups, key)) return row.groups[key];
  if (key === "prompt") return row.promptName;
  if (key === "variant") return row.variant;
  return "(none)";
}

function aggregate(variant: string, key: string, value: string, rows: SweepRow[], layers: number): GroupAggregate {
  const mean = (pick: (r: SweepRow) => number[], length: number) =>
    Array.from({ length }, (_, l) => rows.reduce((s, r) => s + pick(r)[l], 0) / rows.length);
  const scored = rows.filter((r) => r.correct !== null);
  const correct = scored.filter((r) => r.correct).length;
  const histogram = new Array<number>(layers).fill(0);
  for (const r of rows) histogram[r.convergenceLayer]++;
  return {
    variant,
    key,
    value,
    n: rows.length,
    scored: scored.length,
    accuracy: scored.length ? correct / scored.length : null,
    accuracyInterval: wilsonInterval(correct, scored.length),
    emptyAnswers: rows.filter((r) => r.generated.trim() === "").length,
    meanEntropy: mean((r) => r.entropy, layers),
    meanTargetProb: mean((r) => r.targetProb, layers),
    meanTargetRank: mean((r) => r.targetRank, layers),
    meanKl: mean((r) => r.kl, layers),
    convergenceHistogram: histogram,
    medianConvergenceLayer: median(rows.map((r) => r.convergenceLayer)),
    meanImageShare: mean((r) => r.imageShare, Math.max(0, layers - 1)),
  };
}

/** The median; for an even count, the mean of the two middle values. */
export function median(values: readonly number[]): number {
  if (!values.length) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

// --- CSV -------------------------------------------------------------------------------------

/** One line per (item, layer): the item's identity, its groups and that layer's statistics. */
export function rowsToCsv(rows: readonly SweepRow[]): string {
  const groupKeys = [...new Set(rows.flatMap((r) => Object.keys(r.groups)))].sort();
  const header = ["id", "index", "image", "prompt_name", "variant", ...groupKeys.map((k) => `group:${k}`), "expected", "generated", "correct", "convergence_layer", "layer", "entropy", "target_prob", "target_rank", "kl", "cosine", "top1_id", "final_rank", "image_share"];
  const lines = [header.map(csvField).join(",")];
  for (const r of rows) {
    for (let l = 0; l < r.entropy.length; l++) {
      lines.push(
        [r.id, r.index, r.image, r.promptName, r.variant, ...groupKeys.map((k) => r.groups[k] ?? null), r.expected, r.generated, r.correct, r.convergenceLayer, l, r.entropy[l], r.targetProb[l], r.targetRank[l], r.kl[l], r.cosine[l], r.top1[l], r.finalRank[l], l === 0 ? null : r.imageShare[l - 1]]
          .map(csvField)
          .join(","),
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

/** One line per (variant, group, layer); the accuracy interval is Wilson's at 95%. */
export function aggregatesToCsv(a: SweepAggregates): string {
  const header = ["variant", "key", "value", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "empty_answers", "median_convergence_layer", "layer", "mean_entropy", "mean_target_prob", "mean_target_rank", "mean_kl", "converged_here", "mean_image_share"];
  const lines = [csvRow(header)];
  for (const g of a.groups) {
    for (let l = 0; l < a.layers; l++) {
      lines.push([g.variant, g.key, g.value, g.n, g.accuracy, g.accuracyInterval?.[0] ?? null, g.accuracyInterval?.[1] ?? null, g.emptyAnswers ?? null, g.medianConvergenceLayer, l, g.meanEntropy[l], g.meanTargetProb[l], g.meanTargetRank[l], g.meanKl[l], g.convergenceHistogram[l], l === 0 ? null : g.meanImageShare[l - 1]].map(csvField).join(","));
    }
  }
  return `${lines.join("\n")}\n`;
}
