/**
 * What a comparison of sweep variants needs beyond the per-group means: accuracy with a
 * confidence interval, the heads each variant masked, and the per-layer change of each item
 * against the same item under the baseline variant, summarised by its median and interquartile
 * range (a mean of differences hides whether most items moved or a few moved a lot). Pure
 * functions over SweepRows, shared by the sidecar (aggregates.json), the CLI and the comparison view.
 */
import type { SweepRow } from "./sweep";

/** z for a two-sided 95% interval. */
const Z95 = 1.959963984540054;

/**
 * The Wilson score interval of a binomial proportion at 95%: unlike the normal approximation it
 * stays inside [0, 1] and is not empty at 0 or n correct answers. Null when nothing was scored.
 */
export function wilsonInterval(correct: number, n: number, z = Z95): [number, number] | null {
  if (!(n > 0)) return null;
  const p = correct / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  // at 0 and n correct the bounds are exactly 0 and 1 (rounding would leave 1e-17 off)
  return [correct === 0 ? 0 : Math.max(0, centre - half), correct === n ? 1 : Math.min(1, centre + half)];
}

/** The q-quantile of sorted values, interpolating between the two nearest ranks (numpy's default). */
export function quantileSorted(sorted: readonly number[], q: number): number {
  if (!sorted.length) return Number.NaN;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** One variant over all its rows: accuracy with its interval, and what it masked. */
export interface VariantSummary {
  variant: string;
  n: number;
  scored: number;
  correct: number;
  accuracy: number | null;
  /** Wilson 95% interval of the accuracy; null when nothing was scored. */
  interval: [number, number] | null;
  /** The heads the variant masked (block index from 0 -> heads), when every row masked the same ones; null when none or when they vary. */
  headMask: Record<string, number[]> | null;
  /** Whether the masked heads differ between items (a topImage mask is chosen per item). */
  maskVaries: boolean;
  /** Masked heads per item, averaged over the variant's rows. */
  meanMaskedHeads: number;
}

/** The per-layer statistics whose change against the baseline is summarised. */
export const DIFFERENCE_FIELDS = ["targetProb", "logTargetRank", "entropy", "kl"] as const;
export type DifferenceField = (typeof DIFFERENCE_FIELDS)[number];

/** Per layer, the variant's value minus the baseline's for the same item: median and quartiles over items. */
export interface DifferenceAggregate {
  variant: string;
  baseline: string;
  field: DifferenceField;
  /** The grouping key ("all") and its value, as in GroupAggregate. */
  key: string;
  value: string;
  /** Items found under both variants. */
  n: number;
  median: number[];
  q1: number[];
  q3: number[];
}

/** The baseline of a sweep: the variant of its first planned item (the experiment's first variant). */
export function baselineVariant(rows: readonly SweepRow[]): string | null {
  let first: SweepRow | undefined;
  for (const r of rows) if (!first || r.index < first.index) first = r;
  return first?.variant ?? null;
}

export function summarizeVariants(rows: readonly SweepRow[]): VariantSummary[] {
  const variants = [...new Set([...rows].sort((a, b) => a.index - b.index).map((r) => r.variant))];
  return variants.map((variant) => {
    const mine = rows.filter((r) => r.variant === variant);
    const scored = mine.filter((r) => r.correct !== null);
    const correct = scored.filter((r) => r.correct).length;
    const masks = new Set(mine.map((r) => maskKey(r.headMask)));
    const counts = mine.map((r) => Object.values(r.headMask ?? {}).reduce((s, h) => s + h.length, 0));
    const maskVaries = masks.size > 1;
    const common = !maskVaries ? (mine[0]?.headMask ?? null) : null;
    return {
      variant,
      n: mine.length,
      scored: scored.length,
      correct,
      accuracy: scored.length ? correct / scored.length : null,
      interval: wilsonInterval(correct, scored.length),
      headMask: common && Object.keys(common).length ? common : null,
      maskVaries,
      meanMaskedHeads: counts.length ? counts.reduce((s, c) => s + c, 0) / counts.length : 0,
    };
  });
}

function maskKey(mask: Record<string, number[]> | null): string {
  if (!mask) return "";
  return Object.keys(mask)
    .sort((a, b) => Number(a) - Number(b))
    .map((b) => `${b}:${[...mask[b]].sort((x, y) => x - y).join(",")}`)
    .join(";");
}

/**
 * Which rows are the same item under different variants: everything that identifies an item but
 * the variant (image, prompt, expected answer, groups). Repeated items pair in plan order.
 */
export function pairKey(r: SweepRow): string {
  const groups = Object.keys(r.groups)
    .sort()
    .map((k) => [k, r.groups[k]]);
  return JSON.stringify([r.image, r.imageSha256, r.promptName, r.prompt, r.expected, groups]);
}

function fieldValues(r: SweepRow, field: DifferenceField): number[] {
  switch (field) {
    case "targetProb":
      return r.targetProb;
    case "logTargetRank":
      return r.targetRank.map((x) => Math.log10(Math.max(1, x)));
    case "entropy":
      return r.entropy;
    case "kl":
      return r.kl;
  }
}

/**
 * The change of every other variant against the baseline, per layer, over the items both ran:
 * over all rows ("all") and per value of each groupBy key. `groupOf(row, key)` gives a row's value.
 */
export function variantDifferences(rows: readonly SweepRow[], groupBy: readonly string[], groupOf: (r: SweepRow, key: string) => string): DifferenceAggregate[] {
  const baseline = baselineVariant(rows);
  if (baseline === null) return [];
  const layers = rows[0]?.entropy.length ?? 0;
  const byIndex = [...rows].sort((a, b) => a.index - b.index);
  const base = new Map<string, SweepRow[]>();
  for (const r of byIndex) if (r.variant === baseline) base.set(pairKey(r), [...(base.get(pairKey(r)) ?? []), r]);
  const out: DifferenceAggregate[] = [];
  const variants = [...new Set(byIndex.map((r) => r.variant))].filter((v) => v !== baseline);
  for (const variant of variants) {
    // pair each of the variant's rows with the baseline row of the same item, in plan order
    const used = new Map<string, number>();
    const pairs: [SweepRow, SweepRow][] = [];
    for (const r of byIndex) {
      if (r.variant !== variant) continue;
      const k = pairKey(r);
      const i = used.get(k) ?? 0;
      const b = base.get(k)?.[i];
      if (!b) continue;
      used.set(k, i + 1);
      pairs.push([r, b]);
    }
    const groups: { key: string; value: string; pairs: [SweepRow, SweepRow][] }[] = [{ key: "all", value: "all", pairs }];
    for (const key of groupBy) {
      const values = [...new Set(pairs.map(([r]) => groupOf(r, key)))].sort();
      for (const value of values) groups.push({ key, value, pairs: pairs.filter(([r]) => groupOf(r, key) === value) });
    }
    for (const g of groups) {
      for (const field of DIFFERENCE_FIELDS) {
        const median: number[] = [];
        const q1: number[] = [];
        const q3: number[] = [];
        for (let l = 0; l < layers; l++) {
          const d = g.pairs
            .map(([r, b]) => fieldValues(r, field)[l] - fieldValues(b, field)[l])
            .filter((x) => Number.isFinite(x))
            .sort((a, b) => a - b);
          median.push(quantileSorted(d, 0.5));
          q1.push(quantileSorted(d, 0.25));
          q3.push(quantileSorted(d, 0.75));
        }
        out.push({ variant, baseline, field, key: g.key, value: g.value, n: g.pairs.length, median, q1, q3 });
      }
    }
  }
  return out;
}

/** One line of the comparison's per-item table: the row's identity and answer, and the answer probability at the last layer. */
export type ComparisonItem = Pick<SweepRow, "id" | "index" | "image" | "promptName" | "variant" | "groups" | "expected" | "generated" | "correct" | "convergenceLayer"> & { finalTargetProb: number };

export function comparisonItems(rows: readonly SweepRow[]): ComparisonItem[] {
  return [...rows]
    .sort((a, b) => a.index - b.index)
    .map((r) => ({
      id: r.id,
      index: r.index,
      image: r.image,
      promptName: r.promptName,
      variant: r.variant,
      groups: r.groups,
      expected: r.expected,
      generated: r.generated,
      correct: r.correct,
      convergenceLayer: r.convergenceLayer,
      finalTargetProb: r.targetProb[r.targetProb.length - 1] ?? Number.NaN,
    }));
}
