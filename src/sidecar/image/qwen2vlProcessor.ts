/**
 * Qwen2-VL image preprocessing, as transformers' Qwen2VLImageProcessor does it on its PIL path
 * (`Qwen2VLImageProcessorPil`): smart_resize to multiples of patch_size * merge_size within
 * [min_pixels, max_pixels], Pillow-exact resampling, rescale and normalise (the same float steps
 * as CLIP), then patchify: the image repeated over `temporal_patch_size` frames and cut into
 * patches whose rows come in merge-window order (each 2x2 window's patches consecutive) and whose
 * features are ordered (channel, frame, y, x).
 *
 * Pure TypeScript: no Node built-ins, no native modules.
 */
import { LensInputError } from "../errors";
import { configReader } from "./processorConfig";
import { CLIP_PROCESSOR_DEFAULTS, valueTables } from "./clipProcessor";
import type { RgbImage } from "./decode";
import { PIL_RESAMPLE, type ResampleFilter, resize } from "./resample";

export interface Qwen2VlProcessorConfig {
  doResize: boolean;
  resample: ResampleFilter;
  minPixels: number;
  maxPixels: number;
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

export interface Qwen2VlImage {
  /** `[patches, C * T * P * P]`, rows in merge-window order. */
  pixelValues: Float32Array;
  shape: [number, number];
  /** transformers' image_grid_thw: frames, patch rows, patch columns (before merging). */
  gridThw: [number, number, number];
  resized: { width: number; height: number };
}

const FIX = "fix the value or use the model's original preprocessor_config.json";

/**
 * Reads the image-processor part of a Qwen2-VL `preprocessor_config.json`. `min_pixels` and
 * `max_pixels` win over `size.shortest_edge` / `size.longest_edge`, as in the processor's
 * constructor; missing keys take Qwen2VLImageProcessor's defaults.
 */
export function parseQwen2VlProcessorConfig(json: unknown, file: string): Qwen2VlProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new LensInputError(file, "is not a JSON object of image-processor settings: pick the model's preprocessor_config.json");
  }
  const c = json as Record<string, unknown>;
  const { get, object, positiveInt, bool, triple } = configReader(c, file, FIX);
  const sizeObj = object("size") ?? {};
  const resampleCode = get("resample") ?? 3;
  const resample = typeof resampleCode === "number" ? PIL_RESAMPLE[resampleCode] : undefined;
  if (!resample) throw new LensInputError(file, `"resample" must be one of Pillow's filter codes 0-5, got ${JSON.stringify(resampleCode)}: ${FIX}`);
  const rescaleFactor = get("rescale_factor") ?? 1 / 255;
  if (typeof rescaleFactor !== "number" || !(rescaleFactor > 0)) throw new LensInputError(file, `"rescale_factor" must be a positive number, got ${JSON.stringify(rescaleFactor)}: ${FIX}`);

  const cfg: Qwen2VlProcessorConfig = {
    doResize: bool("do_resize", true),
    resample,
    minPixels: positiveInt("min_pixels", get("min_pixels"), positiveInt("size.shortest_edge", sizeObj["shortest_edge"], 56 * 56)),
    maxPixels: positiveInt("max_pixels", get("max_pixels"), positiveInt("size.longest_edge", sizeObj["longest_edge"], 28 * 28 * 1280)),
    patchSize: positiveInt("patch_size", get("patch_size"), 14),
    temporalPatchSize: positiveInt("temporal_patch_size", get("temporal_patch_size"), 2),
    mergeSize: positiveInt("merge_size", get("merge_size"), 2),
    doRescale: bool("do_rescale", true),
    rescaleFactor,
    doNormalize: bool("do_normalize", true),
    imageMean: triple("image_mean", CLIP_PROCESSOR_DEFAULTS.imageMean),
    imageStd: triple("image_std", CLIP_PROCESSOR_DEFAULTS.imageStd),
  };
  if (cfg.minPixels > cfg.maxPixels) throw new LensInputError(file, `min_pixels (${cfg.minPixels}) is larger than max_pixels (${cfg.maxPixels}): ${FIX}`);
  return cfg;
}

/** Python 3's round() on a float: to the nearest integer, ties to the even one (Math.round sends ties up). */
export function pythonRound(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * transformers' smart_resize: both sides multiples of `factor`, the area within
 * [minPixels, maxPixels], the aspect ratio kept as well as that allows. The float steps
 * (division, sqrt, floor, ceil) are IEEE doubles in Python and JavaScript alike.
 */
export function smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): { height: number; width: number } {
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new LensInputError(undefined, `the image is ${width}x${height}; Qwen2-VL needs an aspect ratio below 200: crop the image`);
  }
  let h = pythonRound(height / factor) * factor;
  let w = pythonRound(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

/** Qwen2VLImageProcessor (PIL path) on one RGB image. */
export function preprocessQwen2Vl(img: RgbImage, cfg: Qwen2VlProcessorConfig): Qwen2VlImage {
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`preprocessQwen2Vl: a ${img.width}x${img.height} RGB image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  }
  const P = cfg.patchSize;
  const M = cfg.mergeSize;
  const T = cfg.temporalPatchSize;
  let image = img;
  if (cfg.doResize) {
    const target = smartResize(img.height, img.width, P * M, cfg.minPixels, cfg.maxPixels);
    const resized = resize({ ...img, channels: 3 }, target.width, target.height, cfg.resample);
    image = { width: resized.width, height: resized.height, data: resized.data };
  }
  const { width, height, data } = image;
  if (height % (P * M) !== 0 || width % (P * M) !== 0) {
    throw new LensInputError(undefined, `a ${width}x${height} image cannot be cut into ${P * M}-pixel merge windows: keep do_resize on in preprocessor_config.json`);
  }
  const tables = valueTables(cfg);
  const gh = height / P;
  const gw = width / P;
  const features = 3 * T * P * P;
  const out = new Float32Array(gh * gw * features);
  // Row order (window row, window column, row in window, column in window); feature order
  // (channel, frame, y, x), every frame a copy of the still image.
  let row = 0;
  for (let wy = 0; wy < gh / M; wy++)
    for (let wx = 0; wx < gw / M; wx++)
      for (let my = 0; my < M; my++)
        for (let mx = 0; mx < M; mx++, row++) {
          const y0 = (wy * M + my) * P;
          const x0 = (wx * M + mx) * P;
          let o = row * features;
          for (let c = 0; c < 3; c++) {
            const table = tables[c];
            for (let t = 0; t < T; t++)
              for (let py = 0; py < P; py++)
                for (let px = 0; px < P; px++) out[o++] = table[data[((y0 + py) * width + x0 + px) * 3 + c]];
          }
        }
  return { pixelValues: out, shape: [gh * gw, features], gridThw: [1, gh, gw], resized: { width, height } };
}
