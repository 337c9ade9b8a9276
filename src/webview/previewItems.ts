/**
 * Which planned item of its .lens.json a live preview shows (item, variant, expected answer,
 * from the cache or not), and where its controls lead: previous / next item, the same input
 * and prompt under another variant (previewNav.ts draws them).
 *
 * Items are planned input by input, prompt by prompt, variant by variant (variants innermost),
 * so item `index` is variant `index % variants` of its input and prompt.
 */
import type { ShowRecordMessage } from "../shared/webviewProtocol";

export type PreviewInfo = NonNullable<ShowRecordMessage["preview"]>;

/** Where each control of the line leads: null where it leads nowhere. */
export interface PreviewTargets {
  previous: number | null;
  next: number | null;
  /** Per variant of the experiment, the item with this one's input and prompt under that variant. */
  variants: { name: string; index: number }[];
  /** The shown item's variant, as an index into `variants`. */
  variant: number;
}

export function previewTargets(p: PreviewInfo): PreviewTargets {
  const names = p.variants?.length ? p.variants : [p.variant];
  const count = names.length;
  const variant = p.index % count;
  const base = p.index - variant;
  return {
    previous: p.index > 0 ? p.index - 1 : null,
    next: p.index + 1 < p.total ? p.index + 1 : null,
    variants: names.map((name, k) => ({ name, index: base + k })).filter((v) => v.index < p.total),
    variant,
  };
}

/** The line's text: "study.lens.json: item 2 of 6, variant mask-3, image a.png, expected “red” (cached)". */
export function previewText(p: PreviewInfo): string {
  return `${p.file.split(/[\\/]/u).pop() ?? p.file}: item ${p.index + 1} of ${p.total}, variant ${p.variant}${p.image ? `, image ${p.image}` : ""}${p.expected !== null ? `, expected “${p.expected}”` : ""}${p.cached ? " (cached)" : ""}`;
}

