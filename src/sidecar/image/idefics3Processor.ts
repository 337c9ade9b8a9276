/**
 * SmolVLM / Idefics3 image preprocessing, as transformers' Idefics3ImageProcessor does it on its
 * PIL path (`Idefics3ImageProcessorPil`): resize so the longest edge is `size.longest_edge`
 * (the short side made even), resize again so both sides are multiples of the tile size M
 * (`max_image_size.longest_edge`), cut M x M tiles row-major and append the whole image resized
 * to M x M (the global image); every resize is Pillow-exact on 8-bit pixels. Then rescale and
 * normalise with the same float steps as CLIP. Without splitting the image is resized to M x M
 * alone.
 *
 * Because the second resize rounds both sides up to multiples of M, every tile is a full
 * M x M square: transformers' padding and pixel_attention_mask never come into play for one
 * image, and the vision tower sees every patch.
 *
 * Pure TypeScript: no Node built-ins, no native modules.
 */
import { LensInputError } from "../errors";
import { configReader } from "./processorConfig";
import { valueTables } from "./clipProcessor";
import type { RgbImage } from "./decode";
import { PIL_RESAMPLE, type ResampleFilter, resize } from "./resample";

export interface Idefics3ProcessorConfig {
  doResize: boolean;
  /** size.longest_edge, or an exact size when the config gives height and width. */
  size: { longestEdge: number } | { height: number; width: number };
  /** Tile side M: max_image_size.longest_edge. */
  tileSize: number;
  doImageSplitting: boolean;
  resample: ResampleFilter;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

export interface Idefics3Image {
  /** `[tiles, 3, M, M]`: the row-major tiles, then the global image. */
  pixelValues: Float32Array;
  shape: [number, number, number, number];
  /** Tile rows and columns; both 0 when the image was not split (then only the global image). */
  rows: number;
  cols: number;
  /** The image's size before it was cut into tiles. */
  resized: { width: number; height: number };
}

/** transformers' MAX_IMAGE_SIZE: no side grows beyond it. */
const MAX_IMAGE_SIZE = 4096;
const FIX = "fix the value or use the model's original preprocessor_config.json";
/** transformers' IMAGENET_STANDARD_MEAN / _STD, Idefics3ImageProcessor's defaults. */
const STANDARD_MEAN: [number, number, number] = [0.5, 0.5, 0.5];
const STANDARD_STD: [number, number, number] = [0.5, 0.5, 0.5];

/** Reads an Idefics3 image-processor config; missing keys take Idefics3ImageProcessor's defaults. */
export function parseIdefics3ProcessorConfig(json: unknown, file: string): Idefics3ProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new LensInputError(file, "is not a JSON object of image-processor settings: pick the model's preprocessor_config.json");
  }
  const c = json as Record<string, unknown>;
  const { get, object, positiveInt, bool, triple } = configReader(c, file, FIX);

  const sizeObj = object("size") ?? { longest_edge: 4 * 364 };
  let size: Idefics3ProcessorConfig["size"];
  if (sizeObj["longest_edge"] !== undefined && sizeObj["longest_edge"] !== null) {
    size = { longestEdge: positiveInt("size.longest_edge", sizeObj["longest_edge"]) };
  } else if (sizeObj["height"] !== undefined && sizeObj["width"] !== undefined) {
    size = { height: positiveInt("size.height", sizeObj["height"]), width: positiveInt("size.width", sizeObj["width"]) };
  } else {
    throw new LensInputError(file, `"size" must have "longest_edge" or "height" and "width", got ${JSON.stringify(sizeObj)}: ${FIX}`);
  }
  const maxImageSize = object("max_image_size") ?? { longest_edge: 364 };
  const resampleCode = get("resample") ?? 1;
  const resample = typeof resampleCode === "number" ? PIL_RESAMPLE[resampleCode] : undefined;
  if (!resample) throw new LensInputError(file, `"resample" must be one of Pillow's filter codes 0-5, got ${JSON.stringify(resampleCode)}: ${FIX}`);
  const rescaleFactor = get("rescale_factor") ?? 1 / 255;
  if (typeof rescaleFactor !== "number" || !(rescaleFactor > 0)) throw new LensInputError(file, `"rescale_factor" must be a positive number, got ${JSON.stringify(rescaleFactor)}: ${FIX}`);
  return {
    doResize: bool("do_resize", true),
    size,
    tileSize: positiveInt("max_image_size.longest_edge", maxImageSize["longest_edge"]),
    doImageSplitting: bool("do_image_splitting", true),
    resample,
    doRescale: bool("do_rescale", true),
    rescaleFactor,
    doNormalize: bool("do_normalize", true),
    imageMean: triple("image_mean", STANDARD_MEAN),
    imageStd: triple("image_std", STANDARD_STD),
  };
}

/**
 * The size `size.longest_edge` gives (transformers' get_resize_output_image_size): the longest
 * side becomes `longest`, the other follows the aspect ratio, truncated and made even, then both
 * are kept within MAX_IMAGE_SIZE. Python's int() truncates as Math.trunc; the float steps are the
 * same IEEE doubles.
 */
export function longestEdgeSize(height: number, width: number, longest: number): { height: number; width: number } {
  let h = height;
  let w = width;
  let aspect = w / h;
  if (w >= h) {
    w = longest;
    h = Math.trunc(w / aspect);
    if (h % 2 !== 0) h++;
  } else {
    h = longest;
    w = Math.trunc(h * aspect);
    if (w % 2 !== 0) w++;
  }
  h = Math.max(h, 1);
  w = Math.max(w, 1);
  aspect = w / h;
  if (w >= h && w > MAX_IMAGE_SIZE) {
    w = MAX_IMAGE_SIZE;
    h = Math.trunc(w / aspect);
  } else if (h > w && h > MAX_IMAGE_SIZE) {
    h = MAX_IMAGE_SIZE;
    w = Math.trunc(h * aspect);
  }
  return { height: Math.max(h, 1), width: Math.max(w, 1) };
}

/** transformers' resize_for_vision_encoder: both sides rounded up to multiples of the tile size. */
export function tileMultipleSize(height: number, width: number, tile: number): { height: number; width: number } {
  const aspect = width / height;
  if (width >= height) {
    const w = Math.ceil(width / tile) * tile;
    return { height: Math.ceil(Math.trunc(w / aspect) / tile) * tile, width: w };
  }
  const h = Math.ceil(height / tile) * tile;
  return { height: h, width: Math.ceil(Math.trunc(h * aspect) / tile) * tile };
}

/** Idefics3ImageProcessor (PIL path) on one RGB image. */
export function preprocessIdefics3(img: RgbImage, cfg: Idefics3ProcessorConfig): Idefics3Image {
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`preprocessIdefics3: a ${img.width}x${img.height} RGB image needs ${img.width * img.height * 3} bytes, got ${img.data.length}`);
  }
  const M = cfg.tileSize;
  const resizeTo = (image: RgbImage, width: number, height: number): RgbImage => {
    const r = resize({ ...image, channels: 3 }, width, height, cfg.resample);
    return { width: r.width, height: r.height, data: r.data };
  };
  let image = img;
  if (cfg.doResize) {
    const target = "longestEdge" in cfg.size ? longestEdgeSize(image.height, image.width, cfg.size.longestEdge) : cfg.size;
    image = resizeTo(image, target.width, target.height);
  }

  const tiles: RgbImage[] = [];
  let rows = 0;
  let cols = 0;
  if (cfg.doImageSplitting) {
    const target = tileMultipleSize(image.height, image.width, M);
    image = resizeTo(image, target.width, target.height);
    if (image.height > M || image.width > M) {
      rows = Math.floor((image.height - M) / M) + 1;
      cols = Math.floor((image.width - M) / M) + 1;
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tiles.push(crop(image, c * M, r * M, M));
      tiles.push(resizeTo(image, M, M));
    } else {
      tiles.push(image);
    }
  } else {
    tiles.push(resizeTo(image, M, M));
  }

  const tables = valueTables(cfg);
  const plane = M * M;
  const out = new Float32Array(tiles.length * 3 * plane);
  tiles.forEach((tile, t) => {
    if (tile.width !== M || tile.height !== M) {
      throw new LensInputError(undefined, `a ${image.width}x${image.height} image gives a ${tile.width}x${tile.height} tile, not ${M}x${M}: keep do_image_splitting on or do_resize on in the image-processor config`);
    }
    for (let c = 0; c < 3; c++) {
      const table = tables[c];
      const offset = (t * 3 + c) * plane;
      for (let i = 0; i < plane; i++) out[offset + i] = table[tile.data[i * 3 + c]];
    }
  });
  return { pixelValues: out, shape: [tiles.length, 3, M, M], rows, cols, resized: { width: image.width, height: image.height } };
}

function crop(image: RgbImage, x0: number, y0: number, side: number): RgbImage {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) data.set(image.data.subarray(((y0 + y) * image.width + x0) * 3, ((y0 + y) * image.width + x0 + side) * 3), y * side * 3);
  return { width: side, height: side, data };
}
