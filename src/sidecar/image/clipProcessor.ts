/**
 * CLIP image preprocessing, exactly as transformers' CLIPImageProcessor does it on its PIL
 * path (`CLIPImageProcessorPil` in transformers 5, `use_fast=False` in 4.x): resize with Pillow's
 * resampler, centre crop (zero padding when the image is smaller), rescale in float64 and cast to
 * float32, then normalise in float32. The result is NCHW float32 `pixel_values`.
 *
 * Pure TypeScript: no Node built-ins, no native modules.
 */
import { LensInputError } from "../errors";
import type { RgbImage } from "./decode";
import { PIL_RESAMPLE, type ResampleFilter, resize } from "./resample";

export interface ClipProcessorConfig {
  /** Parsed for completeness: decodeImage always yields RGB, so there is nothing left to convert. */
  doConvertRgb: boolean;
  doResize: boolean;
  size: { shortestEdge: number } | { height: number; width: number };
  resample: ResampleFilter;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, the CLIPImageProcessor defaults. */
const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** CLIPImageProcessor's class defaults, used for every key the JSON leaves out (or sets to null). */
export const CLIP_PROCESSOR_DEFAULTS: Readonly<ClipProcessorConfig> = Object.freeze({
  doConvertRgb: true,
  doResize: true,
  size: { shortestEdge: 224 },
  resample: "bicubic",
  doCenterCrop: true,
  cropSize: { height: 224, width: 224 },
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
  imageMean: OPENAI_CLIP_MEAN,
  imageStd: OPENAI_CLIP_STD,
});

const FIX = "fix the value or use the model's original preprocessor_config.json";

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isPositiveInt(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x > 0;
}

/** The keys of a size dict that carry a value (transformers' SizeDict treats null as absent). */
function setKeys(x: Record<string, unknown>): string[] {
  return Object.keys(x).filter((k) => x[k] !== null && x[k] !== undefined);
}

function show(x: unknown): string {
  return JSON.stringify(x) ?? String(x);
}

/**
 * Reads the image-processor part of a `preprocessor_config.json` (or the `image_processor`
 * object of a `processor_config.json`). Keys follow transformers: missing or null keys take
 * CLIPImageProcessor's defaults; `size` may be an int (shortest edge), `[height, width]`,
 * `{shortest_edge}` or `{height, width}`; `crop_size` an int (square), `[height, width]` or
 * `{height, width}`; `resample` is Pillow's filter code; mean and std a number or three numbers.
 */
export function parseClipProcessorConfig(json: unknown, file: string): ClipProcessorConfig {
  if (!isRecord(json)) {
    throw new LensInputError(file, "is not a JSON object of image-processor settings: pick the model's preprocessor_config.json");
  }
  const get = (key: string): unknown => (json[key] === null ? undefined : json[key]);

  const bool = (key: string, fallback: boolean): boolean => {
    const v = get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw new LensInputError(file, `"${key}" must be true or false, got ${show(v)}: ${FIX}`);
    return v;
  };

  /** `[height, width]` or `{height, width}`, as transformers' get_size_dict reads them. */
  const heightWidth = (v: unknown): { height: number; width: number } | undefined => {
    if (Array.isArray(v) && v.length === 2 && isPositiveInt(v[0]) && isPositiveInt(v[1])) return { height: v[0], width: v[1] };
    if (isRecord(v) && isPositiveInt(v.height) && isPositiveInt(v.width) && setKeys(v).length === 2) {
      return { height: v.height, width: v.width };
    }
    return undefined;
  };

  const parseSize = (): ClipProcessorConfig["size"] => {
    const v = get("size");
    if (v === undefined) return { ...(CLIP_PROCESSOR_DEFAULTS.size as { shortestEdge: number }) };
    // CLIPImageProcessor has default_to_square=False: a bare int is the shortest edge.
    if (isPositiveInt(v)) return { shortestEdge: v };
    if (isRecord(v) && isPositiveInt(v.shortest_edge) && setKeys(v).length === 1) return { shortestEdge: v.shortest_edge };
    const hw = heightWidth(v);
    if (hw) return hw;
    throw new LensInputError(
      file,
      `"size" must be a positive integer, {"shortest_edge": n} or {"height": h, "width": w}, got ${show(v)}` +
        ` (longest_edge, max_height/max_width and min/max_pixels belong to other image processors): ${FIX}`,
    );
  };

  const parseCropSize = (): ClipProcessorConfig["cropSize"] => {
    const v = get("crop_size");
    if (v === undefined) return { ...CLIP_PROCESSOR_DEFAULTS.cropSize };
    if (isPositiveInt(v)) return { height: v, width: v };
    const hw = heightWidth(v);
    if (hw) return hw;
    throw new LensInputError(file, `"crop_size" must be a positive integer or {"height": h, "width": w}, got ${show(v)}: ${FIX}`);
  };

  const parseResample = (): ResampleFilter => {
    const v = get("resample");
    if (v === undefined) return CLIP_PROCESSOR_DEFAULTS.resample;
    if (typeof v === "number" && Number.isInteger(v) && PIL_RESAMPLE[v] !== undefined) return PIL_RESAMPLE[v];
    const choices = Object.entries(PIL_RESAMPLE).map(([code, name]) => `${code} (${name})`).join(", ");
    throw new LensInputError(file, `"resample" must be one of Pillow's filter codes ${choices}, got ${show(v)}: ${FIX}`);
  };

  const parseRescaleFactor = (): number => {
    const v = get("rescale_factor");
    if (v === undefined) return CLIP_PROCESSOR_DEFAULTS.rescaleFactor;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new LensInputError(file, `"rescale_factor" must be a positive number (usually 1/255), got ${show(v)}: ${FIX}`);
    }
    return v;
  };

  const triple = (key: string, fallback: [number, number, number], nonZero: boolean): [number, number, number] => {
    const v = get(key);
    if (v === undefined) return [...fallback];
    const values = typeof v === "number" ? [v, v, v] : v;
    const ok = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && (!nonZero || x !== 0);
    if (!Array.isArray(values) || values.length !== 3 || !values.every(ok)) {
      const what = nonZero ? "non-zero numbers" : "numbers";
      throw new LensInputError(file, `"${key}" must be a number or a list of 3 ${what} (one per RGB channel), got ${show(v)}: ${FIX}`);
    }
    return [values[0], values[1], values[2]];
  };

  return {
    doConvertRgb: bool("do_convert_rgb", CLIP_PROCESSOR_DEFAULTS.doConvertRgb),
    doResize: bool("do_resize", CLIP_PROCESSOR_DEFAULTS.doResize),
    size: parseSize(),
    resample: parseResample(),
    doCenterCrop: bool("do_center_crop", CLIP_PROCESSOR_DEFAULTS.doCenterCrop),
    cropSize: parseCropSize(),
    doRescale: bool("do_rescale", CLIP_PROCESSOR_DEFAULTS.doRescale),
    rescaleFactor: parseRescaleFactor(),
    doNormalize: bool("do_normalize", CLIP_PROCESSOR_DEFAULTS.doNormalize),
    imageMean: triple("image_mean", CLIP_PROCESSOR_DEFAULTS.imageMean, false),
    imageStd: triple("image_std", CLIP_PROCESSOR_DEFAULTS.imageStd, true),
  };
}

/**
 * The output size of the resize step, as transformers computes it: for a shortest edge S the
 * long side becomes `int(S * long / short)` (float division, truncated), and a square image
 * counts as portrait (`width <= height`).
 */
export function clipResizeTarget(width: number, height: number, size: ClipProcessorConfig["size"]): { width: number; height: number } {
  if ("shortestEdge" in size) {
    const s = size.shortestEdge;
    if (width <= height) return { width: s, height: Math.trunc((s * height) / width) };
    return { width: Math.trunc((s * width) / height), height: s };
  }
  return { width: size.width, height: size.height };
}

/**
 * Centre crop to `crop` (HWC uint8). Offsets are `(size - crop) // 2` (floor division); where the
 * image is smaller than the crop, transformers pads with zeros so that the image sits at
 * `ceil((crop - size) / 2)`, which is the same floor formula read as a negative offset.
 */
function centerCrop(img: RgbImage, crop: { height: number; width: number }): RgbImage {
  const top = Math.floor((img.height - crop.height) / 2);
  const left = Math.floor((img.width - crop.width) / 2);
  if (top === 0 && left === 0 && crop.height === img.height && crop.width === img.width) return img;
  const out = new Uint8Array(crop.width * crop.height * 3);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(crop.width, img.width - left);
  for (let y = 0; y < crop.height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= img.height || x1 <= x0) continue;
    const from = (sy * img.width + x0 + left) * 3;
    out.set(img.data.subarray(from, from + (x1 - x0) * 3), (y * crop.width + x0) * 3);
  }
  return { width: crop.width, height: crop.height, data: out };
}

/**
 * For each channel, the float32 value every byte value turns into. numpy's steps, one rounding
 * each: `x.astype(float64) * rescale_factor` then `.astype(float32)`; then, in float32,
 * `(x - mean) / std` with mean and std cast to float32.
 */
export function valueTables(cfg: Pick<ClipProcessorConfig, "doRescale" | "rescaleFactor" | "doNormalize" | "imageMean" | "imageStd">): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const table = new Float32Array(256);
    const mean = Math.fround(cfg.imageMean[c]);
    const std = Math.fround(cfg.imageStd[c]);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? Math.fround(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
      table[v] = x;
    }
    return table;
  });
}

/** transformers' CLIPImageProcessor (PIL path) on one RGB image: `pixel_values` of shape [1, 3, H, W]. */
export function preprocessClip(img: RgbImage, cfg: ClipProcessorConfig): { pixelValues: Float32Array; shape: [1, 3, number, number] } {
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`preprocessClip: a ${img.width}x${img.height} RGB image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  }
  let image: RgbImage = img;
  if (cfg.doResize) {
    const target = clipResizeTarget(image.width, image.height, cfg.size);
    const resized = resize({ ...image, channels: 3 }, target.width, target.height, cfg.resample);
    image = { width: resized.width, height: resized.height, data: resized.data };
  }
  if (cfg.doCenterCrop) image = centerCrop(image, cfg.cropSize);

  const { width, height, data } = image;
  const plane = width * height;
  const pixelValues = new Float32Array(3 * plane);
  const tables = valueTables(cfg);
  for (let c = 0; c < 3; c++) {
    const table = tables[c];
    const offset = c * plane;
    for (let i = 0; i < plane; i++) pixelValues[offset + i] = table[data[i * 3 + c]];
  }
  return { pixelValues, shape: [1, 3, height, width] };
}
