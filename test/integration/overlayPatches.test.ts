/**
 * The image overlay's patch <-> token mapping (src/webview/overlay.ts) on records the real sidecar
 * makes for each supported architecture's image layout: a LLaVA patch grid, Qwen2-VL's merged
 * patches and an Idefics3 image split into crops plus a global image. Hovering an image token
 * must light its own patch, and hovering any patch must name the token that sits there.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import type { LensRecord } from "../../src/shared/lensRecord";
import { imageTokenLabel } from "../../src/webview/model";
import { cellAt, patchIndex } from "../../src/webview/patches";

const ROOT = path.resolve(__dirname, "../..");
const IMAGE = path.join(ROOT, "test/fixtures/idefics3-tiny/wide-400x130.png");

function run(model: string): LensRecord {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lens-overlay-")), "record.json");
  execFileSync(process.execPath, [path.join(ROOT, "bin/logit-lens.js"), "--model", model, "--image", IMAGE, "--prompt", "What is it?", "--max-new-tokens", "0", "--json", "--out", out], { stdio: "pipe" });
  return JSON.parse(fs.readFileSync(out, "utf8")) as LensRecord;
}

const CASES = [
  { name: "LLaVA (6 x 6 patches)", model: "test/fixtures/models/llava-gqa-f32/model", rows: 6, cols: 6, global: 0 },
  { name: "Qwen2-VL (2 x 2 merged patches, 1 x 4 on a wide image)", model: "test/fixtures/qwen2vl-tiny/model", rows: 1, cols: 4, global: 0 },
  { name: "Idefics3 (1 x 2 crops of 3 x 3, then the global image)", model: "test/fixtures/idefics3-tiny/model", rows: 3, cols: 6, global: 9 },
];

describe("patch <-> image token on the overlay", () => {
  for (const c of CASES)
    it(c.name, () => {
      const record = run(path.join(ROOT, c.model));
      const index = patchIndex(record)!;
      expect([index.rows, index.cols]).toEqual([c.rows, c.cols]);
      const imageTokens = record.tokens.flatMap((t, i) => (t.segment === "image" ? [i] : []));
      // every patch of the layout has its token, and that token lights exactly that patch
      expect(index.tokenAt.size).toBe(c.rows * c.cols);
      for (const [cell, token] of index.tokenAt) {
        expect(index.rectOf.get(token)).toEqual({ row: Math.floor(cell / c.cols), col: cell % c.cols, rows: 1, cols: 1 });
        const t = record.tokens[token].image!;
        expect(imageTokenLabel(record, t)).toMatch(/^(tile \d+ )?r\d+ c\d+$/u);
      }
      // every image token lights something; a global-image token its stretch of the picture
      expect(imageTokens.every((t) => index.rectOf.has(t))).toBe(true);
      const global = imageTokens.filter((t) => (index.rectOf.get(t)?.rows ?? 1) > 1 || (index.rectOf.get(t)?.cols ?? 1) > 1);
      expect(global.length).toBe(c.global);
      if (c.global) {
        expect(imageTokenLabel(record, record.tokens[global[0]].image!)).toBe("global r0 c0");
        // the global image's last token covers the picture's bottom-right stretch
        expect(index.rectOf.get(global[global.length - 1])).toEqual({ row: 2, col: 4, rows: 1, cols: 2 });
      }
      // a point on the picture finds the cell under it: the bottom-right corner is the last cell
      expect(cellAt(index, { width: 300, height: 100 }, 299.5, 99.5)).toEqual({ row: c.rows - 1, col: c.cols - 1 });
      expect(cellAt(index, { width: 300, height: 100 }, 300, 50)).toBeNull();
    });
});
