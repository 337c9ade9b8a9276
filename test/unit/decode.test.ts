/**
 * decodeImage against what transformers sees (tools/reference/make_image_fixtures.py):
 * `ImageOps.exif_transpose` then transformers' `convert_to_rgb` (alpha composited on white with
 * Pillow's alpha_composite, grey/palette through `convert("RGB")`). Parity means a maximum
 * difference of 0. Bad inputs must fail with a LensInputError that names the file.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { PIL_MAX_IMAGE_PIXELS, compositeOnWhite, decodeImage } from "../../src/sidecar/image/decode";
import { MAX_IMAGE_BYTES } from "../../src/sidecar/util/readInput";

const DIR = path.resolve(__dirname, "../fixtures/images");

interface DecodeCase {
  image: string;
  mode: string;
  width: number;
  height: number;
  expected: string;
  note: string;
}
const manifest = JSON.parse(fs.readFileSync(path.join(DIR, "manifest.json"), "utf8")) as {
  decode: DecodeCase[];
  alphaTable: { image: string; file: string };
};

function readU8(file: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(DIR, file)));
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("decodeImage matches Pillow + transformers' convert_to_rgb", () => {
  it("covers RGB, L, LA, RGBA, P, tRNS, 16-bit grey, JPEG with every EXIF orientation, WebP and GIF", () => {
    expect(new Set(manifest.decode.map((c) => c.mode))).toEqual(new Set(["RGB", "L", "LA", "RGBA", "P", "I;16"]));
    expect(manifest.decode.filter((c) => c.image.startsWith("exif-orientation-"))).toHaveLength(7);
  });

  for (const c of manifest.decode) {
    it(`${c.image} (${c.note})`, async () => {
      const img = await decodeImage(path.join(DIR, c.image));
      const expected = readU8(c.expected);
      expect([img.width, img.height]).toEqual([c.width, c.height]);
      expect(img.data.length).toBe(c.width * c.height * 3);
      expect(maxAbsDiff(img.data, expected)).toBe(0);
    });
  }

  it("decodes bytes the same as the file", async () => {
    const c = manifest.decode.find((d) => d.image === "rgba-64x48.png")!;
    const img = await decodeImage(readU8(c.image));
    expect(maxAbsDiff(img.data, readU8(c.expected))).toBe(0);
  });

  it("composites every (value, alpha) pair exactly as Pillow's alpha_composite over white", async () => {
    const table = readU8(manifest.alphaTable.file); // row = alpha, column = value
    let worst = 0;
    for (let a = 0; a < 256; a++) {
      for (let v = 0; v < 256; v++) worst = Math.max(worst, Math.abs(compositeOnWhite(v, a) - table[a * 256 + v]));
    }
    expect(worst).toBe(0);
    // and through the decoder: the ramp image has R = x, G = 255 - x, B = 7x mod 256, A = y
    const img = await decodeImage(path.join(DIR, manifest.alphaTable.image));
    let decodedWorst = 0;
    for (let y = 0; y < 256; y++) {
      for (let x = 0; x < 256; x++) {
        const p = (y * 256 + x) * 3;
        const want = [table[y * 256 + x], table[y * 256 + 255 - x], table[y * 256 + ((x * 7) & 255)]];
        for (let ch = 0; ch < 3; ch++) decodedWorst = Math.max(decodedWorst, Math.abs(img.data[p + ch] - want[ch]));
      }
    }
    expect(decodedWorst).toBe(0);
  });

  it("equals the exactly rounded blend (value * alpha + 255 * (255 - alpha)) / 255", () => {
    let differs = 0;
    for (let a = 0; a < 256; a++) {
      for (let v = 0; v < 256; v++) if (compositeOnWhite(v, a) !== Math.round((v * a + 255 * (255 - a)) / 255)) differs++;
    }
    expect(differs).toBe(0);
  });
});

describe("decodeImage refuses bad input with a LensInputError naming the file", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lens-decode-"));
  });
  afterAll(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function refusal(source: string | Uint8Array, opts?: { maxPixels?: number }): Promise<LensInputError> {
    try {
      await decodeImage(source, opts);
    } catch (e) {
      expect(e).toBeInstanceOf(LensInputError);
      return e as LensInputError;
    }
    throw new Error("decodeImage did not throw");
  }

  it("a missing file", async () => {
    const file = path.join(tmp, "no-such-image.png");
    const e = await refusal(file);
    expect(e.file).toBe(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/not found: check the path/);
  });

  it("a folder", async () => {
    const e = await refusal(tmp);
    expect(e.message).toContain(tmp);
    expect(e.message).toMatch(/is a folder/);
  });

  it.skipIf(process.platform === "win32")("a device such as /dev/zero, refused without reading it", async () => {
    const e = await refusal("/dev/zero");
    expect(e.message).toBe("/dev/zero: image file is a device, not a regular file: pick a PNG, JPEG, WebP, GIF, TIFF, BMP or AVIF file");
  });

  it.skipIf(process.platform === "win32")("a named pipe, refused without waiting for a writer", async () => {
    const fifo = path.join(tmp, "pipe.png");
    execFileSync("mkfifo", [fifo]);
    const e = await refusal(fifo);
    expect(e.message).toBe(`${fifo}: image file is a named pipe (FIFO), not a regular file: pick a PNG, JPEG, WebP, GIF, TIFF, BMP or AVIF file`);
  });

  it("a file over the size cap, refused from its size", async () => {
    const file = path.join(tmp, "huge.png");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, MAX_IMAGE_BYTES + 20 * 1024 * 1024); // sparse: no disk used
    const e = await refusal(file);
    expect(e.message).toBe(`${file}: image file is 276 MiB, over the 256 MiB limit: pick a PNG, JPEG, WebP, GIF, TIFF, BMP or AVIF file`);
  });

  it("a text file", async () => {
    const file = path.join(tmp, "notes.png");
    fs.writeFileSync(file, "these are notes, not pixels\n");
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/not an image.*: pick a PNG, JPEG/);
  });

  it("an empty file", async () => {
    const file = path.join(tmp, "empty.jpg");
    fs.writeFileSync(file, "");
    expect((await refusal(file)).message).toContain(file);
  });

  it("a truncated PNG", async () => {
    const file = path.join(tmp, "truncated.png");
    const png = readU8("noise-97x61.png");
    fs.writeFileSync(file, png.subarray(0, Math.floor(png.length / 2)));
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/truncated or corrupt/);
  });

  it("a truncated JPEG", async () => {
    const file = path.join(tmp, "truncated.jpg");
    const jpg = readU8("photo-444.jpg");
    fs.writeFileSync(file, jpg.subarray(0, Math.floor((jpg.length * 2) / 3)));
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/truncated or corrupt/);
  });

  it("an image over maxPixels, refused from its header", async () => {
    const file = path.join(DIR, "noise-97x61.png");
    const e = await refusal(file, { maxPixels: 97 * 61 - 1 });
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/97x61 = 5917 pixels, over the limit of 5916.*downscale/);
    await expect(decodeImage(file, { maxPixels: 97 * 61 })).resolves.toMatchObject({ width: 97, height: 61 });
  });

  it("a header that claims a huge image (decompression bomb) without decoding it", async () => {
    // A valid PNG header announcing 100000 x 100000 pixels followed by garbage: refused from the
    // header alone, long before a 30 GB pixel buffer could be allocated.
    const png = Buffer.from(readU8("gray-50x30.png"));
    png.writeUInt32BE(100_000, 16);
    png.writeUInt32BE(100_000, 20);
    const file = path.join(tmp, "bomb.png");
    fs.writeFileSync(file, png);
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toContain(`over the limit of ${PIL_MAX_IMAGE_PIXELS}`);
  });

  it("an SVG, which transformers cannot open", async () => {
    const file = path.join(tmp, "drawing.svg");
    fs.writeFileSync(file, '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>');
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/SVG.*convert it to PNG or JPEG/);
  });

  it("a CMYK JPEG", async () => {
    const file = path.join(DIR, "cmyk-12x10.jpg");
    const e = await refusal(file);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/CMYK.*convert it to RGB/);
  });

  it("bytes that are not an image (no file to name)", async () => {
    const e = await refusal(new TextEncoder().encode("plain text"));
    expect(e.file).toBeUndefined();
    expect(e.message).toMatch(/^the image data is not an image/);
  });
});

describe("BMP (the project's own decoder; libvips has none)", () => {
  const BMP = path.resolve(__dirname, "../fixtures/bmp");
  const bmpManifest = JSON.parse(fs.readFileSync(path.join(BMP, "manifest.json"), "utf8")) as {
    cases: { image: string; mode?: string; width?: number; height?: number; rgb?: string; refused?: boolean; note: string }[];
  };

  for (const c of bmpManifest.cases.filter((x) => !x.refused)) {
    it(`${c.image} (${c.note}) decodes to Pillow's pixels exactly`, async () => {
      const img = await decodeImage(path.join(BMP, c.image));
      expect([img.width, img.height]).toEqual([c.width, c.height]);
      expect(Buffer.from(img.data).equals(fs.readFileSync(path.join(BMP, c.rgb!)))).toBe(true);
    });
  }

  it("refuses compressed and truncated files, and files over the pixel limit, with one-line errors", async () => {
    const rle = path.join(BMP, "rle8-2x2.bmp");
    await expect(decodeImage(rle)).rejects.toThrow(/rle8-2x2\.bmp: the BMP file is compressed \(RLE8\), which is not supported: re-export it as PNG/u);
    const whole = fs.readFileSync(path.join(BMP, "rgb24-13x7.bmp"));
    await expect(decodeImage(whole.subarray(0, whole.length - 10))).rejects.toThrow(/the BMP file is truncated/u);
    await expect(decodeImage(path.join(BMP, "rgb24-13x7.bmp"), { maxPixels: 90 })).rejects.toThrow(/13x7 = 91 pixels, over the limit of 90/u);
  });
});
