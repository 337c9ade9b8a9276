/**
 * decodeImage + preprocessClip against transformers' CLIPImageProcessorPil
 * (tools/reference/make_image_fixtures.py), and parseClipProcessorConfig's handling of
 * preprocessor_config.json. Parity target: max |difference| of 0 (the brief allows 1e-6).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import {
  CLIP_PROCESSOR_DEFAULTS,
  clipResizeTarget,
  parseClipProcessorConfig,
  preprocessClip,
} from "../../src/sidecar/image/clipProcessor";
import { decodeImage, type RgbImage } from "../../src/sidecar/image/decode";

const DIR = path.resolve(__dirname, "../fixtures/images");

interface ClipCase {
  name: string;
  image: string;
  config: Record<string, unknown>;
  shape: [number, number, number, number];
  file: string;
}
const manifest = JSON.parse(fs.readFileSync(path.join(DIR, "manifest.json"), "utf8")) as { clip: ClipCase[] };

function readF32(file: string): Float32Array {
  let buf = fs.readFileSync(path.join(DIR, file));
  if (file.endsWith(".gz")) buf = gunzipSync(buf);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("decodeImage + preprocessClip match CLIPImageProcessorPil", () => {
  it("has the LLaVA-1.5 configuration among the cases", () => {
    expect(manifest.clip.map((c) => c.name)).toContain("llava-336");
    expect(manifest.clip.length).toBeGreaterThanOrEqual(3);
  });

  for (const c of manifest.clip) {
    it(`${c.name}: ${c.image} -> ${c.shape.join("x")}`, async () => {
      const cfg = parseClipProcessorConfig(c.config, `${c.name}/preprocessor_config.json`);
      const img = await decodeImage(path.join(DIR, c.image));
      const { pixelValues, shape } = preprocessClip(img, cfg);
      const expected = readF32(c.file);
      expect(shape).toEqual(c.shape);
      expect(pixelValues.length).toBe(expected.length);
      const diff = maxAbsDiff(pixelValues, expected);
      expect(diff).toBeLessThanOrEqual(1e-6);
      expect(diff).toBe(0);
    });
  }
});

describe("preprocessClip", () => {
  const gradient = (width: number, height: number): RgbImage => {
    const data = new Uint8Array(width * height * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 256;
    return { width, height, data };
  };

  it("computes the resize target as transformers does (int(S * long / short), square counts as portrait)", () => {
    expect(clipResizeTarget(1000, 750, { shortestEdge: 336 })).toEqual({ width: 448, height: 336 });
    expect(clipResizeTarget(750, 1000, { shortestEdge: 336 })).toEqual({ width: 336, height: 448 });
    expect(clipResizeTarget(97, 61, { shortestEdge: 42 })).toEqual({ width: 66, height: 42 });
    expect(clipResizeTarget(50, 50, { shortestEdge: 7 })).toEqual({ width: 7, height: 7 });
    expect(clipResizeTarget(3, 1000, { shortestEdge: 10 })).toEqual({ width: 10, height: 3333 });
    expect(clipResizeTarget(640, 480, { height: 20, width: 30 })).toEqual({ width: 30, height: 20 });
  });

  it("lays the output out as NCHW and pads a too-small image with zeros before normalising", () => {
    const cfg = { ...CLIP_PROCESSOR_DEFAULTS, doResize: false, cropSize: { height: 4, width: 5 } };
    const img = gradient(3, 2);
    const { pixelValues, shape } = preprocessClip(img, cfg);
    expect(shape).toEqual([1, 3, 4, 5]);
    // top = (2 - 4) // 2 = -1, left = (3 - 5) // 2 = -1: the image sits at row 1, column 1
    const zero = (c: number) => Math.fround(Math.fround(0 - Math.fround(cfg.imageMean[c])) / Math.fround(cfg.imageStd[c]));
    for (let c = 0; c < 3; c++) {
      const value = (y: number, x: number) => pixelValues[c * 20 + y * 5 + x];
      expect(value(0, 0)).toBe(zero(c));
      expect(value(3, 4)).toBe(zero(c));
      const v = img.data[(0 * 3 + 0) * 3 + c];
      const want = Math.fround(Math.fround(Math.fround(v * cfg.rescaleFactor) - Math.fround(cfg.imageMean[c])) / Math.fround(cfg.imageStd[c]));
      expect(value(1, 1)).toBe(want);
    }
  });

  it("leaves values alone when rescale and normalise are off", () => {
    const cfg = { ...CLIP_PROCESSOR_DEFAULTS, doResize: false, doCenterCrop: false, doRescale: false, doNormalize: false };
    const img = gradient(2, 2);
    const { pixelValues } = preprocessClip(img, cfg);
    expect(Array.from(pixelValues.subarray(0, 4))).toEqual([0, 21, 42, 63]);
  });

  it("rejects pixel data of the wrong length", () => {
    expect(() => preprocessClip({ width: 2, height: 2, data: new Uint8Array(11) }, CLIP_PROCESSOR_DEFAULTS)).toThrow(RangeError);
  });
});

describe("parseClipProcessorConfig", () => {
  const FILE = "/models/llava/preprocessor_config.json";

  it("reads a LLaVA-1.5 preprocessor_config.json", () => {
    const cfg = parseClipProcessorConfig(
      {
        crop_size: { height: 336, width: 336 },
        do_center_crop: true,
        do_convert_rgb: true,
        do_normalize: true,
        do_rescale: true,
        do_resize: true,
        image_mean: [0.48145466, 0.4578275, 0.40821073],
        image_processor_type: "CLIPImageProcessor",
        image_std: [0.26862954, 0.26130258, 0.27577711],
        processor_class: "LlavaProcessor",
        resample: 3,
        rescale_factor: 0.00392156862745098,
        size: { shortest_edge: 336 },
      },
      FILE,
    );
    expect(cfg).toEqual({
      doConvertRgb: true,
      doResize: true,
      size: { shortestEdge: 336 },
      resample: "bicubic",
      doCenterCrop: true,
      cropSize: { height: 336, width: 336 },
      doRescale: true,
      rescaleFactor: 1 / 255,
      doNormalize: true,
      imageMean: [0.48145466, 0.4578275, 0.40821073],
      imageStd: [0.26862954, 0.26130258, 0.27577711],
    });
  });

  it("fills CLIPImageProcessor's defaults for missing and null keys", () => {
    expect(parseClipProcessorConfig({}, FILE)).toEqual(CLIP_PROCESSOR_DEFAULTS);
    expect(parseClipProcessorConfig({ size: null, resample: null, image_mean: null }, FILE)).toEqual(CLIP_PROCESSOR_DEFAULTS);
  });

  it("accepts the legacy size forms", () => {
    expect(parseClipProcessorConfig({ size: 224, crop_size: 200 }, FILE)).toMatchObject({
      size: { shortestEdge: 224 },
      cropSize: { height: 200, width: 200 },
    });
    expect(parseClipProcessorConfig({ size: [30, 40], crop_size: [10, 20] }, FILE)).toMatchObject({
      size: { height: 30, width: 40 },
      cropSize: { height: 10, width: 20 },
    });
    expect(parseClipProcessorConfig({ image_mean: 0.5, image_std: 0.25 }, FILE)).toMatchObject({
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.25, 0.25, 0.25],
    });
  });

  const bad: [string, unknown, RegExp][] = [
    ["not an object", [1, 2, 3], /not a JSON object/],
    ["size with longest_edge", { size: { shortest_edge: 336, longest_edge: 672 } }, /"size" must be/],
    ["negative size", { size: -3 }, /"size" must be/],
    ["fractional crop", { crop_size: { height: 1.5, width: 2 } }, /"crop_size" must be/],
    ["unknown resample", { resample: 7 }, /"resample" must be one of Pillow's filter codes 0 \(nearest\), 1 \(lanczos\)/],
    ["resample by name", { resample: "bicubic" }, /"resample" must be/],
    ["zero rescale", { rescale_factor: 0 }, /"rescale_factor" must be a positive number/],
    ["two means", { image_mean: [0.5, 0.5] }, /"image_mean" must be a number or a list of 3 numbers/],
    ["zero std", { image_std: [0.5, 0, 0.5] }, /"image_std" must be .* non-zero numbers/],
    ["string flag", { do_resize: "yes" }, /"do_resize" must be true or false, got "yes"/],
  ];
  for (const [what, json, message] of bad) {
    it(`refuses ${what} with a one-line LensInputError naming the file`, () => {
      let error: unknown;
      try {
        parseClipProcessorConfig(json, FILE);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(LensInputError);
      const e = error as LensInputError;
      expect(e.file).toBe(FILE);
      expect(e.message.startsWith(`${FILE}: `)).toBe(true);
      expect(e.message).toMatch(message);
      expect(e.message).not.toContain("\n");
    });
  }
});
