/**
 * What the comparison view draws beyond the per-group means, from the aggregates as a sweep
 * wrote them: accuracy with its interval, the change against the baseline, the heads each variant
 * masked, and the per-item table. Pure functions, tested without a DOM.
 */
import type { GroupAggregate, SweepAggregates } from "../shared/sweep";
import { type ComparisonItem, type DifferenceField, type VariantSummary, wilsonInterval } from "../shared/sweepCompare";
import { groupLabel } from "./model";

export interface AccuracyBar {
  label: string;
  variant: string;
  value: string;
  accuracy: number | null;
  interval: [number, number] | null;
  scored: number;
  n: number;
}

/** Accuracy per (variant, value) of a grouping key, with its Wilson interval (computed again for aggregates from before it was written). */
export function accuracyBars(aggregates: SweepAggregates, key: string): AccuracyBar[] {
  return aggregates.groups
    .filter((g) => g.key === key)
    .map((g) => ({ label: groupLabel(g), variant: g.variant, value: g.value, accuracy: g.accuracy, interval: intervalOf(g), scored: g.scored, n: g.n }));
}

function intervalOf(g: GroupAggregate): [number, number] | null {
  if (g.accuracyInterval !== undefined) return g.accuracyInterval;
  return g.accuracy === null ? null : wilsonInterval(Math.round(g.accuracy * g.scored), g.scored);
}

export interface DifferenceSeries {
  label: string;
  variant: string;
  value: string;
  n: number;
  median: number[];
  q1: number[];
  q3: number[];
}

/** The change against the baseline of one statistic, one series per (other variant, value of the key). */
export function differenceSeries(aggregates: SweepAggregates, field: DifferenceField, key: string): DifferenceSeries[] {
  return (aggregates.differences ?? [])
    .filter((d) => d.field === field && d.key === key)
    .map((d) => ({
      label: `${d.variant} − ${d.baseline}${d.key === "all" ? "" : ` · ${d.key}=${d.value}`} (n=${d.n})`,
      variant: d.variant,
      value: d.value,
      n: d.n,
      median: d.median,
      q1: d.q1,
      q3: d.q3,
    }));
}

/** The baseline variant the differences are taken against, or null when the sweep has one variant (or older aggregates). */
export function baselineOf(aggregates: SweepAggregates): string | null {
  return aggregates.differences?.[0]?.baseline ?? aggregates.variants?.[0]?.variant ?? null;
}

/** "block 3: heads 0, 5 · block 7: head 2", in block order; block indices count from 0 in the mask and from 1 in the text, as the layer labels do. */
export function maskText(v: Pick<VariantSummary, "headMask" | "maskVaries" | "meanMaskedHeads">): string {
  if (v.maskVaries) return `chosen per item (${formatCount(v.meanMaskedHeads)} heads on average)`;
  const mask = v.headMask;
  if (!mask || !Object.keys(mask).length) return "none";
  return Object.keys(mask)
    .sort((a, b) => Number(a) - Number(b))
    .map((b) => {
      const heads = [...mask[b]].sort((x, y) => x - y);
      return `block ${Number(b) + 1}: head${heads.length === 1 ? "" : "s"} ${heads.join(", ")}`;
    })
    .join(" · ");
}

function formatCount(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export interface VariantLine {
  variant: string;
  baseline: boolean;
  masked: string;
  n: number;
  scored: number;
  accuracy: number | null;
  interval: [number, number] | null;
  /** Accuracy minus the baseline's, in points of a share (null without both). */
  delta: number | null;
}

/** One line per variant for the variants table (null for aggregates written before variants were). */
export function variantLines(aggregates: SweepAggregates): VariantLine[] | null {
  const vs = aggregates.variants;
  if (!vs?.length) return null;
  const base = vs[0];
  return vs.map((v, i) => ({
    variant: v.variant,
    baseline: i === 0,
    masked: maskText(v),
    n: v.n,
    scored: v.scored,
    accuracy: v.accuracy,
    interval: v.interval,
    delta: i > 0 && v.accuracy !== null && base.accuracy !== null ? v.accuracy - base.accuracy : null,
  }));
}

export type ItemFilter = "all" | "wrong" | "right" | `variant:${string}`;

/** The items the table shows for a filter: wrong answers, right ones, or one variant's. */
export function filterItems(items: readonly ComparisonItem[], filter: ItemFilter): ComparisonItem[] {
  if (filter === "wrong") return items.filter((i) => i.correct === false);
  if (filter === "right") return items.filter((i) => i.correct === true);
  if (filter.startsWith("variant:")) {
    const v = filter.slice("variant:".length);
    return items.filter((i) => i.variant === v);
  }
  return [...items];
}
