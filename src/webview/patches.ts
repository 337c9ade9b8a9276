/**
 * Which image token sits on which patch of the picture, and which patch is under a point: the
 * image overlay's hover in both directions. Plain data, no DOM (unit-tested in Node).
 */
import type { LensRecord } from "../shared/lensRecord";
import { overlayLayout } from "./model";

/** A rectangle of overlay cells: [row, row + rows) x [col, col + cols). */
export interface PatchRect {
  row: number;
  col: number;
  rows: number;
  cols: number;
}

/**
 * Where each image token sits on the overlay's grid, both ways, for every architecture's grid and
 * tiles: a LLaVA patch grid, Qwen2-VL's merged patches (the record's grid is already merged), and a
 * split Idefics3 / SmolVLM image, whose crop tokens are cells of the crops laid out side by side
 * and whose global image's tokens each cover the cells of its stretch of the picture.
 */
export interface PatchIndex {
  rows: number;
  cols: number;
  /** record.tokens index -> the cells it covers */
  rectOf: Map<number, PatchRect>;
  /** cell (row * cols + col) -> the record.tokens index that sits there (a crop's token before the global image's) */
  tokenAt: Map<number, number>;
}

export function patchIndex(record: LensRecord): PatchIndex | null {
  const layout = overlayLayout(record);
  if (!layout) return null;
  const rectOf = new Map<number, PatchRect>();
  const tokenAt = new Map<number, number>();
  for (const c of layout.cells) {
    if (c.row < 0 || c.col < 0 || c.row >= layout.rows || c.col >= layout.cols) continue;
    rectOf.set(c.token, { row: c.row, col: c.col, rows: 1, cols: 1 });
    tokenAt.set(c.row * layout.cols + c.col, c.token);
  }
  const tiles = record.input.image?.tiles;
  if (layout.wholePicture && tiles && tiles.count === tiles.rows * tiles.cols + 1) {
    const global = tiles.count - 1;
    record.tokens.forEach((t, token) => {
      if (t.segment === "image" && t.image?.index === global) rectOf.set(token, { row: t.image.row * tiles.rows, col: t.image.col * tiles.cols, rows: tiles.rows, cols: tiles.cols });
    });
  }
  return { rows: layout.rows, cols: layout.cols, rectOf, tokenAt };
}

/** The grid cell under a point of the kept region (CSS pixels from the region's corner), or null outside it. */
export function cellAt(index: { rows: number; cols: number }, region: { width: number; height: number }, x: number, y: number): { row: number; col: number } | null {
  if (x < 0 || y < 0 || x >= region.width || y >= region.height) return null;
  const col = Math.floor((x / region.width) * index.cols);
  const row = Math.floor((y / region.height) * index.rows);
  return row < index.rows && col < index.cols ? { row, col } : null;
}

/** The cropped region of an original image that the processed tensor shows, in original pixels. */
export function keptRegion(original: [number, number], processed: [number, number]): { x: number; y: number; width: number; height: number } {
  const [ow, oh] = original;
  const aspect = processed[0] / processed[1];
  const width = Math.min(ow, oh * aspect);
  const height = width / aspect;
  return { x: (ow - width) / 2, y: (oh - height) / 2, width, height };
}
