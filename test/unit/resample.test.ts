/**
 * resize() against Pillow's own output (tools/reference/make_image_fixtures.py): every filter,
 * downscales, upscales, one-axis changes, odd and tiny sizes, 1, 3 and 4 channels. Parity means
 * a maximum difference of 0.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { PIL_RESAMPLE, type PixelBuffer, type ResampleFilter, resize } from "../../src/sidecar/image/resample";

const DIR = path.resolve(__dirname, "../fixtures/images");

interface Source {
  file: string;
  width: number;
  height: number;
  channels: number;
  mode: string;
}
interface ResizeCase {
  source: string;
  filter: ResampleFilter;
  pil: number;
  width: number;
  height: number;
  file: string;
}
const manifest = JSON.parse(fs.readFileSync(path.join(DIR, "manifest.json"), "utf8")) as {
  sources: Record<string, Source>;
  resize: ResizeCase[];
};

function readU8(file: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(DIR, file)));
}

function loadSource(name: string): PixelBuffer {
  const s = manifest.sources[name];
  return { width: s.width, height: s.height, channels: s.channels, data: readU8(s.file) };
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A seeded noise image, for tests that need no fixture. */
function noise(width: number, height: number, channels: number, seed: number): PixelBuffer {
  const data = new Uint8Array(width * height * channels);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { width, height, channels, data };
}

describe("resize matches Pillow byte for byte", () => {
  it("has fixtures for every filter", () => {
    expect(manifest.resize.length).toBeGreaterThan(100);
    expect(new Set(manifest.resize.map((c) => c.filter))).toEqual(
      new Set(["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]),
    );
  });

  for (const c of manifest.resize) {
    it(`${c.source} -> ${c.width}x${c.height} ${c.filter}`, () => {
      const src = loadSource(c.source);
      const expected = readU8(c.file);
      const out = resize(src, c.width, c.height, PIL_RESAMPLE[c.pil]);
      expect(PIL_RESAMPLE[c.pil]).toBe(c.filter);
      expect([out.width, out.height, out.channels]).toEqual([c.width, c.height, src.channels]);
      expect(out.data.length).toBe(expected.length);
      expect(maxAbsDiff(out.data, expected)).toBe(0);
    });
  }
});

describe("resize", () => {
  it("maps Pillow's filter codes", () => {
    expect(PIL_RESAMPLE).toEqual({ 0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming" });
  });

  it("returns a copy, never the input buffer, when the size does not change", () => {
    const src = noise(7, 5, 3, 1);
    const out = resize(src, 7, 5, "bicubic");
    expect(out.data).not.toBe(src.data);
    expect(out.data).toEqual(src.data);
  });

  it("keeps a constant image constant with every filter", () => {
    const src: PixelBuffer = { width: 13, height: 9, channels: 3, data: new Uint8Array(13 * 9 * 3).fill(200) };
    for (const f of Object.values(PIL_RESAMPLE)) {
      for (const [w, h] of [[5, 4], [31, 20], [13, 2], [1, 1]]) {
        expect(resize(src, w, h, f).data.every((v) => v === 200)).toBe(true);
      }
    }
  });

  it("rejects sizes that are not positive integers and data of the wrong length", () => {
    const src = noise(4, 4, 3, 2);
    expect(() => resize(src, 0, 4, "bilinear")).toThrow(RangeError);
    expect(() => resize(src, 2.5, 4, "bilinear")).toThrow(RangeError);
    expect(() => resize({ ...src, data: src.data.subarray(1) }, 2, 2, "bilinear")).toThrow(/needs 48 bytes/);
  });

  it("is fast: 1000x750 -> 336x252 bicubic well under 100 ms", () => {
    const src = noise(1000, 750, 3, 3);
    resize(src, 336, 252, "bicubic"); // warm-up (JIT)
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      resize(src, 336, 252, "bicubic");
      times.push(performance.now() - t0);
    }
    const best = Math.min(...times);
    console.info(`resize 1000x750 -> 336x252 bicubic: best ${best.toFixed(1)} ms of ${times.map((t) => t.toFixed(1)).join(", ")}`);
    expect(best).toBeLessThan(100);
  });
});
