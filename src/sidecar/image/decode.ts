/**
 * Image decoding: the one module that imports sharp. It turns a file or its bytes into 8-bit
 * RGB pixels the way transformers sees an image: EXIF orientation applied (`load_image` calls
 * `ImageOps.exif_transpose`), grey and palette images expanded to RGB as Pillow's
 * `convert("RGB")` does, and transparency composited on white with Pillow's integer
 * `alpha_composite` arithmetic (transformers' `convert_to_rgb`). Resizing is not done here:
 * Pillow-exact resampling lives in resample.ts.
 */
import sharp, { type Metadata, type OutputInfo, type SharpOptions } from "sharp";
import { LensInputError } from "../errors";
import { MAX_IMAGE_BYTES, readInputFile } from "../util/readInput";
import { bmpSize, decodeBmp, isBmp } from "./bmp";

export interface RgbImage {
  width: number;
  height: number;
  /** RGB interleaved, row-major, length width * height * 3. */
  data: Uint8Array;
}

export interface DecodeOptions {
  /** Larger images are refused before their pixels are decoded (decompression bombs). Default: Pillow's MAX_IMAGE_PIXELS. */
  maxPixels?: number;
}

/** Pillow's `Image.MAX_IMAGE_PIXELS`: 1024 * 1024 * 1024 // 4 // 3. */
export const PIL_MAX_IMAGE_PIXELS = 89_478_485;

/**
 * Formats Pillow (and so transformers) can open too. sharp also renders SVG and PDF, which
 * transformers would reject, so they are refused here as well. (sharp reports AVIF as "heif".)
 */
const FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif"]);
const FORMAT_LIST = "PNG, JPEG, WebP, GIF, TIFF, BMP or AVIF";

/**
 * One channel of `value` over opaque white with Pillow's ImagingAlphaComposite arithmetic.
 * With an opaque white background its general formula reduces to: blend with 7 extra bits of
 * precision, add half, divide by 255 through `((v >> 8) + v) >> 8`, drop the 7 bits. For all
 * 65536 inputs this equals `(value * alpha + 255 * (255 - alpha)) / 255` rounded to nearest
 * (the tests check both); the integer form is kept because it is what Pillow defines.
 */
export function compositeOnWhite(value: number, alpha: number): number {
  if (alpha === 0) return 255;
  // Pillow: coef1 = a * 255 * 255 * 128 / outa255 with outa255 = 255 * 255 here, so a * 128.
  const coef1 = alpha * 128;
  const coef2 = 255 * 128 - coef1;
  const v = value * coef1 + 255 * coef2 + (0x80 << 7);
  return (((v >> 8) + v) >> 8) >> 7;
}

/** 256 x 256 table of compositeOnWhite, indexed by alpha * 256 + value. */
let compositeTable: Uint8Array | undefined;
function compositeLookup(): Uint8Array {
  if (!compositeTable) {
    compositeTable = new Uint8Array(256 * 256);
    for (let a = 0; a < 256; a++) for (let v = 0; v < 256; v++) compositeTable[a * 256 + v] = compositeOnWhite(v, a);
  }
  return compositeTable;
}

/** Interleaved 8-bit grey, grey+alpha, RGB or RGBA to RGB, alpha composited on white. */
function toRgb(data: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels === 3) return data;
  const out = new Uint8Array(pixels * 3);
  if (channels === 1) {
    for (let i = 0, o = 0; i < pixels; i++, o += 3) out[o] = out[o + 1] = out[o + 2] = data[i];
    return out;
  }
  const lut = compositeLookup();
  for (let i = 0, o = 0; i < pixels; i++, o += 3) {
    const p = i * channels;
    if (channels === 2) {
      out[o] = out[o + 1] = out[o + 2] = lut[data[p + 1] * 256 + data[p]];
    } else {
      const row = data[p + 3] * 256;
      out[o] = lut[row + data[p]];
      out[o + 1] = lut[row + data[p + 1]];
      out[o + 2] = lut[row + data[p + 2]];
    }
  }
  return out;
}

/**
 * The image file's bytes: a regular file of at most MAX_IMAGE_BYTES (readInput.ts), so a FIFO
 * does not hold the sidecar and /dev/zero is not read forever.
 */
function readImageFile(file: string): Promise<Uint8Array> {
  return readInputFile(file, { maxBytes: MAX_IMAGE_BYTES, what: "image file", fix: `pick a ${FORMAT_LIST} file` });
}

function reason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}

/**
 * Decodes an image file (path) or its bytes to 8-bit RGB, as transformers' processors see it.
 * Every problem with the input is a LensInputError naming the file and what to do.
 */
export async function decodeImage(source: string | Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const maxPixels = opts.maxPixels ?? PIL_MAX_IMAGE_PIXELS;
  if (!Number.isInteger(maxPixels) || maxPixels < 1) throw new RangeError(`decodeImage: maxPixels must be a positive integer, got ${maxPixels}`);
  const file = typeof source === "string" ? source : undefined;
  const what = file === undefined ? "the image data" : "the file";
  const bytes = typeof source === "string" ? await readImageFile(source) : source;

  if (isBmp(bytes)) {
    // libvips has no BMP loader: the project's own decoder, checked against Pillow
    const { width, height } = bmpSize(bytes, file);
    if (width * height > maxPixels) {
      throw new LensInputError(file, `${what} is ${width}x${height} = ${width * height} pixels, over the limit of ${maxPixels} (a guard against decompression bombs): downscale the image first`);
    }
    const bmp = decodeBmp(bytes, file);
    return { width, height, data: toRgb(bmp.data, width * height, bmp.channels) };
  }

  // Pillow ignores embedded ICC profiles when converting; sharp would convert to sRGB with them.
  // failOn "error" rejects truncated and corrupt data but, like Pillow, tolerates decoder warnings.
  const input: SharpOptions = { failOn: "error", ignoreIcc: true, pages: 1, limitInputPixels: false };

  // Header first: the size check must come before any pixel is decoded.
  let meta: Metadata;
  try {
    meta = await sharp(bytes, input).metadata();
  } catch (e) {
    throw new LensInputError(file, `${what} is not an image that can be read (${reason(e)}): pick a ${FORMAT_LIST} file`);
  }
  if (!FORMATS.has(meta.format)) {
    throw new LensInputError(file, `${what} is a ${meta.format.toUpperCase()} image, which transformers cannot read: convert it to PNG or JPEG`);
  }
  const headerPixels = meta.width * meta.height;
  if (headerPixels > maxPixels) {
    throw new LensInputError(
      file,
      `${what} is ${meta.width}x${meta.height} = ${headerPixels} pixels, over the limit of ${maxPixels} (a guard against decompression bombs): downscale the image first`,
    );
  }

  if (meta.space === "cmyk") {
    // Pillow converts CMYK with its own naive formula, sharp through a colour profile; the
    // pixels would not match what transformers sees.
    throw new LensInputError(file, `${what} is a CMYK image, whose colours would not match transformers': convert it to RGB first`);
  }
  // A 16-bit greyscale image without alpha is Pillow mode "I;16", and its convert("RGB") clips
  // every value above 255 to 255 (it does not scale). Every other 16-bit image keeps the high
  // byte in Pillow, which is what sharp's 8-bit output gives too.
  const clipped16BitGrey = meta.space === "grey16" && !meta.hasAlpha;

  let decoded: { data: Buffer; info: OutputInfo };
  try {
    const pipeline = sharp(bytes, { ...input, autoOrient: true, limitInputPixels: maxPixels });
    decoded = clipped16BitGrey
      ? await pipeline.toColourspace("grey16").raw({ depth: "ushort" }).toBuffer({ resolveWithObject: true })
      : await pipeline.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new LensInputError(file, `${what} could not be decoded, it may be truncated or corrupt (${reason(e)}): re-export or re-download the image`);
  }
  const { width, height, channels } = decoded.info;
  const pixels = width * height;
  if (clipped16BitGrey) {
    const { buffer, byteOffset, byteLength } = decoded.data.byteOffset % 2 === 0 ? decoded.data : new Uint8Array(decoded.data);
    const wide = new Uint16Array(buffer, byteOffset, byteLength / 2); // host byte order, as sharp writes it
    const grey = new Uint8Array(pixels);
    for (let i = 0; i < pixels; i++) grey[i] = Math.min(wide[i * channels], 255);
    return { width, height, data: toRgb(grey, pixels, 1) };
  }
  if (channels < 1 || channels > 4) {
    throw new LensInputError(file, `${what} decodes to ${channels} channels, which is not supported: convert it to RGB`);
  }
  const raw = new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength);
  return { width, height, data: toRgb(raw, pixels, channels) };
}
