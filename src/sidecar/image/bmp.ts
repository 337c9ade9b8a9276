/**
 * Windows BMP files, which sharp (libvips) cannot read, decoded to what Pillow gives: 1-, 4- and
 * 8-bit palettes, 16-bit (5-5-5, or bit fields such as 5-6-5; channels scaled as Pillow does,
 * floor(v * 255 / max)), 24-bit, and 32-bit (the fourth byte is alpha only when a bit-field
 * header declares an alpha mask, as Pillow reads it); bottom-up or top-down rows. Compressed
 * files (RLE, JPEG or PNG inside) are refused: Pillow's RLE path is not reproduced here.
 * Checked against Pillow on test/fixtures/bmp (tools/reference/make_bmp_fixtures.py).
 */
import { LensInputError } from "../errors";

export interface BmpPixels {
  width: number;
  height: number;
  /** RGB, or RGBA when the file has an alpha mask; row-major, top row first. */
  data: Uint8Array;
  channels: 3 | 4;
}

const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d; // "BM"
}

/** The size from the header alone (for the pixel limit before anything is decoded). */
export function bmpSize(bytes: Uint8Array, file: string | undefined): { width: number; height: number } {
  const h = header(bytes, file);
  return { width: h.width, height: h.height };
}

interface Header {
  width: number;
  height: number;
  topDown: boolean;
  bpp: number;
  compression: number;
  dataOffset: number;
  headerSize: number;
  colorsUsed: number;
  masks: [number, number, number, number] | null;
}

function header(bytes: Uint8Array, file: string | undefined): Header {
  const bad = (what: string): never => {
    throw new LensInputError(file, `the BMP file ${what}: re-export it as PNG`);
  };
  if (bytes.length < 26) bad("is truncated (no header)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  if (headerSize === 12) bad("has an OS/2 1.x header, which is not supported");
  if (headerSize < 40 || 14 + headerSize > bytes.length) bad(`has a header of ${headerSize} bytes, which is not a Windows BMP header`);
  const width = view.getInt32(18, true);
  const rawHeight = view.getInt32(22, true);
  const bpp = view.getUint16(28, true);
  const compression = view.getUint32(30, true);
  const colorsUsed = view.getUint32(46, true);
  if (width <= 0 || rawHeight === 0) bad(`has a size of ${width}x${rawHeight}`);
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) bad(`has ${bpp} bits per pixel, which is not supported`);
  let masks: Header["masks"] = null;
  if (compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS) {
    if (bpp !== 16 && bpp !== 32) bad(`uses bit fields with ${bpp} bits per pixel`);
    // the masks follow a 40-byte header, or are part of a V2+ header; V3+ headers carry an alpha mask
    const at = 14 + 40;
    if (at + 12 > bytes.length) bad("is truncated (bit-field masks missing)");
    const alpha = headerSize >= 56 || compression === BI_ALPHABITFIELDS ? view.getUint32(at + 12, true) : 0;
    masks = [view.getUint32(at, true), view.getUint32(at + 4, true), view.getUint32(at + 8, true), alpha];
  } else if (compression !== BI_RGB) {
    bad(`is compressed (${["RGB", "RLE8", "RLE4", "bit fields", "JPEG", "PNG"][compression] ?? `method ${compression}`}), which is not supported`);
  }
  return { width, height: Math.abs(rawHeight), topDown: rawHeight < 0, bpp, compression, dataOffset, headerSize, colorsUsed, masks };
}

/** Shift and bit count of a contiguous mask (0 bits for a zero mask). */
function maskShape(mask: number): { shift: number; bits: number } {
  if (mask === 0) return { shift: 0, bits: 0 };
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  let bits = 0;
  while (((mask >>> (shift + bits)) & 1) === 1) bits++;
  return { shift, bits };
}

export function decodeBmp(bytes: Uint8Array, file: string | undefined): BmpPixels {
  const h = header(bytes, file);
  const { width, height, bpp } = h;
  const stride = Math.ceil((width * bpp) / 32) * 4;
  if (h.dataOffset + stride * height > bytes.length) {
    throw new LensInputError(file, `the BMP file is truncated (${bytes.length} bytes, its ${width}x${height} pixels need ${h.dataOffset + stride * height}): re-export or re-download it`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  let palette: Uint8Array | null = null;
  if (bpp <= 8) {
    const count = h.colorsUsed || 1 << bpp;
    const at = 14 + h.headerSize;
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < Math.min(count, 256) && at + i * 4 + 3 <= bytes.length; i++) {
      palette[i * 3] = bytes[at + i * 4 + 2];
      palette[i * 3 + 1] = bytes[at + i * 4 + 1];
      palette[i * 3 + 2] = bytes[at + i * 4];
    }
  }
  const masks = h.masks ?? (bpp === 16 ? [0x7c00, 0x03e0, 0x001f, 0] : bpp === 32 ? [0xff0000, 0xff00, 0xff, 0] : null);
  const channels: 3 | 4 = masks && masks[3] !== 0 ? 4 : 3;
  const shapes = masks?.map(maskShape) ?? [];
  const scale = (v: number, bits: number) => (bits >= 8 ? v >>> (bits - 8) : Math.floor((v * 255) / ((1 << bits) - 1)));

  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const row = h.dataOffset + (h.topDown ? y : height - 1 - y) * stride;
    let o = y * width * channels;
    for (let x = 0; x < width; x++, o += channels) {
      if (palette) {
        const perByte = 8 / bpp;
        const byte = bytes[row + Math.floor(x / perByte)];
        const index = (byte >> (8 - bpp * ((x % perByte) + 1))) & ((1 << bpp) - 1);
        out[o] = palette[index * 3];
        out[o + 1] = palette[index * 3 + 1];
        out[o + 2] = palette[index * 3 + 2];
      } else if (bpp === 24) {
        const p = row + x * 3;
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
      } else {
        const v = bpp === 16 ? view.getUint16(row + x * 2, true) : view.getUint32(row + x * 4, true);
        for (let c = 0; c < channels; c++) {
          const { shift, bits } = shapes[c];
          out[o + c] = bits ? scale((v & masks![c]) >>> shift, bits) : 0;
        }
      }
    }
  }
  return { width, height, data: out, channels };
}
