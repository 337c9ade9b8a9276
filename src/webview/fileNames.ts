/**
 * File names the panel proposes for its exports: made from the image and the prompt
 * ("color-of-shape-What-colour-is-the-square"), never from the panel's title (which can be
 * "Preview head-masking.lens.json"), and safe on every file system. No DOM: unit-tested.
 */
import type { LensRecord } from "../shared/lensRecord";

/** ASCII letters and digits, runs of anything else as one "-", cut to `max` characters. */
export function slug(text: string, max: number): string {
  return text
    .normalize("NFKD")
    .replace(/[^A-Za-z0-9]+/gu, "-")
    .slice(0, max)
    .replace(/^-+|-+$/gu, "");
}

/** The image file's name without its folder and extension ("" for a text-only run). */
export function imageStem(record: LensRecord): string {
  const p = record.input.image?.path ?? "";
  const name = p.split(/[\\/]/u).pop() ?? "";
  return name.replace(/\.[^.]*$/u, "");
}

/** The base of an export's file name: image and prompt, or `fallback` (e.g. a comparison's title) without a record. */
export function exportBaseName(record: LensRecord | undefined, fallback = "logit-lens"): string {
  if (!record) return slug(fallback, 80) || "logit-lens";
  const image = slug(imageStem(record), 40) || (record.input.image ? "image" : "text");
  const prompt = slug(record.input.prompt, 48);
  return prompt ? `${image}-${prompt}` : image;
}
