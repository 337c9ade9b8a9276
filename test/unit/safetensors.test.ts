import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import {
  DTYPE_BYTES,
  readSafetensorsHeader,
  readTensorAsFloat32,
  WeightIndex,
  type TensorEntry,
} from "../../src/sidecar/model/safetensors";
import { FIXTURES } from "../helpers/fixtures";

const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-safetensors-"));
  tempDirs.push(dir);
  return dir;
}

interface RawFile {
  /** A header object (serialised as JSON), a header string, or raw header bytes. */
  header: unknown;
  /** The data section after the header. */
  data?: Uint8Array;
  /** Overrides the 8-byte header length. */
  declaredLength?: bigint;
  /** Pads the header with spaces to 8-byte alignment, as the reference writer does. */
  pad?: boolean;
}

function rawBytes({ header, data = new Uint8Array(0), declaredLength, pad = false }: RawFile): Buffer {
  let json =
    header instanceof Uint8Array ? Buffer.from(header) : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  if (pad && json.length % 8 !== 0) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

function writeRaw(file: string, raw: RawFile): string {
  fs.writeFileSync(file, rawBytes(raw));
  return file;
}

interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
  /** Data bytes; zeros of the right size when left out. */
  bytes?: Uint8Array;
}

/** Writes a valid safetensors file, tensors packed back to back in the given order. */
function writeTensors(file: string, tensors: TensorSpec[], metadata?: Record<string, string>): string {
  const header: Record<string, unknown> = {};
  if (metadata) header["__metadata__"] = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype as keyof typeof DTYPE_BYTES];
    const bytes = t.bytes ?? new Uint8Array(size);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  return writeRaw(file, { header, data: Buffer.concat(parts), pad: true });
}

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

async function inputError(p: Promise<unknown>): Promise<LensInputError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(LensInputError);
    return e as LensInputError;
  }
  throw new Error("expected a LensInputError, but the call succeeded");
}

/** The error names `file` and stays on one line. */
async function expectFileError(p: Promise<unknown>, file: string, pattern: RegExp): Promise<LensInputError> {
  const e = await inputError(p);
  expect(e.file).toBe(file);
  expect(e.message).toContain(file);
  expect(e.message).not.toMatch(/[\r\n]/);
  expect(e.message).toMatch(pattern);
  return e;
}

describe("readSafetensorsHeader: corrupt files", () => {
  it("a file shorter than 8 bytes", async () => {
    const file = path.join(tempDir(), "short.safetensors");
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    await expectFileError(readSafetensorsHeader(file), file, /only 3 bytes/);
  });

  it("an empty file", async () => {
    const file = path.join(tempDir(), "empty.safetensors");
    fs.writeFileSync(file, Buffer.alloc(0));
    await expectFileError(readSafetensorsHeader(file), file, /only 0 bytes/);
  });

  it("a header length that runs past the end of the file", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: {}, declaredLength: 9_999_999n });
    await expectFileError(readSafetensorsHeader(file), file, /header length 9999999 runs past the end of the file \(10 bytes\)/);
  });

  it("an absurdly large header length", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: {}, declaredLength: 0xffff_ffff_ffff_ffffn });
    await expectFileError(readSafetensorsHeader(file), file, /header length 18446744073709551615 is larger than the 100 MB/);
    const file2 = writeRaw(path.join(tempDir(), "m.safetensors"), { header: {}, declaredLength: 100_000_001n });
    await expectFileError(readSafetensorsHeader(file2), file2, /larger than the 100 MB/);
  });

  it("a header that is not UTF-8", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) });
    await expectFileError(readSafetensorsHeader(file), file, /not valid UTF-8/);
  });

  it("a header that is not JSON", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: '{"a": {"dtype": "F32",\n' });
    await expectFileError(readSafetensorsHeader(file), file, /not valid JSON/);
  });

  it.each([
    ["an array", [1, 2]],
    ["a number", 42],
    ["null", null],
  ])("a header that is %s, not an object", async (_what, header) => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header });
    await expectFileError(readSafetensorsHeader(file), file, /must be a JSON object/);
  });

  const good = { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] };
  it.each<[string, unknown, RegExp]>([
    ["not an object", "F32", /must be an object with dtype, shape and data_offsets/],
    ["without dtype", { shape: [2, 2], data_offsets: [0, 16] }, /has no dtype/],
    ["without shape", { dtype: "F32", data_offsets: [0, 16] }, /has no shape/],
    ["without data_offsets", { dtype: "F32", shape: [2, 2] }, /has no data_offsets/],
    ["with a non-string dtype", { ...good, dtype: 4 }, /unknown dtype 4/],
    ["with a shape that is not a list", { ...good, shape: "2x2" }, /has shape "2x2"/],
    ["with a negative dimension", { ...good, shape: [-2, -2] }, /non-negative integers/],
    ["with a fractional dimension", { ...good, shape: [2.5, 2] }, /non-negative integers/],
    ["with a string dimension", { ...good, shape: ["2", 2] }, /non-negative integers/],
    ["with one data offset", { ...good, data_offsets: [16] }, /\[begin, end\]/],
    ["with three data offsets", { ...good, data_offsets: [0, 8, 16] }, /\[begin, end\]/],
    ["with fractional data offsets", { ...good, data_offsets: [0.5, 16.5] }, /\[begin, end\]/],
    ["with negative data offsets", { ...good, data_offsets: [-16, 0] }, /\[begin, end\]/],
    ["with begin after end", { ...good, data_offsets: [16, 0] }, /0 <= begin <= end/],
    ["with data_offsets that are not a list", { ...good, data_offsets: "0-16" }, /\[begin, end\]/],
  ])("an entry %s", async (_what, entry, pattern) => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: { "w.weight": entry }, data: new Uint8Array(32) });
    const e = await expectFileError(readSafetensorsHeader(file), file, pattern);
    expect(e.message).toContain('"w.weight"');
  });

  it("an unknown dtype", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { w: { dtype: "Q4_K", shape: [4], data_offsets: [0, 4] } },
      data: new Uint8Array(4),
    });
    const e = await expectFileError(readSafetensorsHeader(file), file, /unknown dtype "Q4_K"/);
    expect(e.message).toContain("BF16");
  });

  it("a byte length that disagrees with shape and dtype", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { w: { dtype: "F16", shape: [3, 4], data_offsets: [0, 48] } },
      data: new Uint8Array(48),
    });
    await expectFileError(readSafetensorsHeader(file), file, /takes 48 bytes but F16 \[3, 4\] needs 24/);
  });

  it("a byte length check that does not overflow on huge shapes", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { w: { dtype: "F32", shape: [2 ** 40, 2 ** 40, 0x10000], data_offsets: [0, 0] } },
    });
    await expectFileError(readSafetensorsHeader(file), file, /takes 0 bytes but F32/);
  });

  it("data offsets past the end of the file", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [4], data_offsets: [8, 24] } },
      data: new Uint8Array(20),
    });
    const e = await expectFileError(readSafetensorsHeader(file), file, /data_offsets \[8, 24\] past the end of the data \(20 bytes/);
    expect(e.message).toContain('"b"');
  });

  it("two tensors whose bytes overlap", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: {
        a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
        c: { dtype: "F32", shape: [2], data_offsets: [32, 40] },
        b: { dtype: "F32", shape: [4], data_offsets: [12, 28] },
      },
      data: new Uint8Array(40),
    });
    const e = await expectFileError(readSafetensorsHeader(file), file, /overlap/);
    expect(e.message).toContain('"a" [0, 16]');
    expect(e.message).toContain('"b" [12, 28]');
  });

  it("a tensor nested inside a larger one", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: {
        big: { dtype: "F32", shape: [8], data_offsets: [0, 32] },
        small: { dtype: "F32", shape: [1], data_offsets: [20, 24] },
        after: { dtype: "F32", shape: [1], data_offsets: [24, 28] },
      },
      data: new Uint8Array(32),
    });
    await expectFileError(readSafetensorsHeader(file), file, /"big" \[0, 32\] and "small" \[20, 24\] overlap/);
  });

  // The Rust crate's rules: the tensors tile the data from 0 to the end of the file.
  it("a header length one byte short (the padded header loses a space; every tensor would shift)", async () => {
    const good = rawBytes({ header: { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, data: Buffer.from(new Float32Array([1, 2]).buffer), pad: true });
    const n = good.readBigUInt64LE(0);
    const file = path.join(tempDir(), "m.safetensors");
    fs.writeFileSync(file, Buffer.concat([(() => { const b = Buffer.alloc(8); b.writeBigUInt64LE(n - 1n); return b; })(), good.subarray(8)]));
    await expectFileError(readSafetensorsHeader(file), file, /the tensors cover 8 bytes of data but the file holds 9 after its \d+-byte header.*the header length is wrong/);
  });

  it("a header length one byte long", async () => {
    const good = rawBytes({ header: { w: { dtype: "U8", shape: [8], data_offsets: [0, 8] } }, data: Buffer.from("        "), pad: true });
    const file = path.join(tempDir(), "m.safetensors");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(good.readBigUInt64LE(0) + 1n);
    fs.writeFileSync(file, Buffer.concat([len, good.subarray(8)]));
    await expectFileError(readSafetensorsHeader(file), file, /data_offsets \[0, 8\] past the end of the data \(7 bytes/);
  });

  it("bytes after the last tensor", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, data: new Uint8Array(12) });
    await expectFileError(readSafetensorsHeader(file), file, /the tensors cover 8 bytes of data but the file holds 12/);
  });

  it("a hole before the first tensor", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: { w: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, data: new Uint8Array(12) });
    await expectFileError(readSafetensorsHeader(file), file, /tensor "w" starts at data offset 4 but the data starts at 0: the tensors must cover the data without holes/);
  });

  it("a hole between two tensors", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { a: { dtype: "U8", shape: [4], data_offsets: [0, 4] }, b: { dtype: "U8", shape: [4], data_offsets: [60, 64] } },
      data: new Uint8Array(64),
    });
    await expectFileError(readSafetensorsHeader(file), file, /tensor "b" starts at data offset 60 but "a" ends at 4/);
  });

  it("an empty tensor inside another tensor's bytes", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: { a: { dtype: "U8", shape: [4], data_offsets: [0, 4] }, zero: { dtype: "U8", shape: [0], data_offsets: [2, 2] } },
      data: new Uint8Array(4),
    });
    await expectFileError(readSafetensorsHeader(file), file, /"a" \[0, 4\] and "zero" \[2, 2\] overlap/);
  });

  it("a header that does not start with {", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: ` ${JSON.stringify({ w: { dtype: "U8", shape: [1], data_offsets: [0, 1] } })}`, data: new Uint8Array(1) });
    await expectFileError(readSafetensorsHeader(file), file, /the header must start with "\{", got " "/);
  });

  it("__metadata__ that is not a string map", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: { __metadata__: { format: "pt", step: 3 } } });
    await expectFileError(readSafetensorsHeader(file), file, /"__metadata__" must map strings to strings/);
  });

  it("a file that does not exist", async () => {
    const file = path.join(tempDir(), "nope.safetensors");
    await expectFileError(readSafetensorsHeader(file), file, /does not exist/);
  });

  it("a tensor name with a newline keeps the message on one line", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: { "evil\nname": { dtype: "F32" } } });
    const e = await expectFileError(readSafetensorsHeader(file), file, /has no shape/);
    expect(e.message).toContain('"evil\\nname"');
  });
});

describe("readSafetensorsHeader: valid files", () => {
  it("reads entries with absolute offsets, and metadata that is not a tensor", async () => {
    const dir = tempDir();
    const file = writeTensors(
      path.join(dir, "model.safetensors"),
      [
        { name: "a", dtype: "F32", shape: [2, 3] },
        { name: "b", dtype: "BF16", shape: [5] },
        { name: "empty", dtype: "F16", shape: [0, 4] },
        { name: "scalar", dtype: "I64", shape: [] },
      ],
      { format: "pt" },
    );
    const { tensors, metadata } = await readSafetensorsHeader(file);
    expect(metadata).toEqual({ format: "pt" });
    expect([...tensors.keys()].sort()).toEqual(["a", "b", "empty", "scalar"]);
    const headerLength = Number(fs.readFileSync(file).readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    expect(tensors.get("a")).toEqual<TensorEntry>({ name: "a", dtype: "F32", shape: [2, 3], file, byteOffset: 8 + headerLength, byteLength: 24 });
    expect(tensors.get("b")).toMatchObject({ byteOffset: 8 + headerLength + 24, byteLength: 10 });
    expect(tensors.get("empty")).toMatchObject({ shape: [0, 4], byteLength: 0 });
    expect(tensors.get("scalar")).toMatchObject({ shape: [], byteLength: 8 });
  });

  it("accepts a header padded with spaces", async () => {
    const header = { w: { dtype: "F32", shape: [1], data_offsets: [0, 4] } };
    const text = JSON.stringify(header) + "       ";
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), { header: text, data: Buffer.from(new Float32Array([7]).buffer) });
    const { tensors } = await readSafetensorsHeader(file);
    const w = tensors.get("w")!;
    expect(w.byteOffset).toBe(8 + text.length);
    expect(Array.from(await readTensorAsFloat32(w))).toEqual([7]);
  });

  it("accepts tensors stored out of order, and an empty tensor where the tiling has reached", async () => {
    const file = writeRaw(path.join(tempDir(), "m.safetensors"), {
      header: {
        late: { dtype: "U8", shape: [4], data_offsets: [4, 8] },
        early: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
        zero: { dtype: "U8", shape: [0], data_offsets: [4, 4] },
        end: { dtype: "U8", shape: [0, 3], data_offsets: [8, 8] },
      },
      data: new Uint8Array(8),
    });
    const { tensors } = await readSafetensorsHeader(file);
    expect(tensors.size).toBe(4);
  });

  it("resolves a relative path to an absolute one", async () => {
    const dir = tempDir();
    const file = writeTensors(path.join(dir, "m.safetensors"), [{ name: "w", dtype: "F32", shape: [1] }]);
    const { tensors } = await readSafetensorsHeader(path.relative(process.cwd(), file));
    expect(tensors.get("w")!.file).toBe(file);
  });

  it("knows every dtype's size", () => {
    expect(DTYPE_BYTES).toEqual({
      F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, U32: 4, U64: 8,
    });
  });
});

describe("readTensorAsFloat32", () => {
  async function decode(dtype: string, bytes: Uint8Array, shape = [bytes.length / DTYPE_BYTES[dtype as keyof typeof DTYPE_BYTES]]): Promise<number[]> {
    const file = writeTensors(path.join(tempDir(), "m.safetensors"), [
      { name: "before", dtype: "U8", shape: [3], bytes: new Uint8Array([1, 2, 3]) },
      { name: "t", dtype, shape, bytes },
    ]);
    const { tensors } = await readSafetensorsHeader(file);
    return Array.from(await readTensorAsFloat32(tensors.get("t")!));
  }

  it("decodes BF16 as the upper half of a float32", async () => {
    const values = await decode("BF16", u16le([0x3fc0, 0xc000, 0x4049, 0x7f80, 0xff80, 0x8000, 0x0001, 0x7fc0]));
    expect(values.slice(0, 5)).toEqual([1.5, -2, 3.140625, Infinity, -Infinity]);
    expect(Object.is(values[5], -0)).toBe(true);
    expect(values[6]).toBe(2 ** -133);
    expect(values[7]).toBeNaN();
  });

  it("decodes F16 including subnormals, signed zero, infinities and NaN", async () => {
    const values = await decode("F16", u16le([0x7bff, 0x03ff, 0x0001, 0x0400, 0x3c00, 0xc000, 0x3555, 0x7c00, 0xfc00, 0x8000, 0x0000, 0x7e00]));
    expect(values.slice(0, 9)).toEqual([65504, 1023 * 2 ** -24, 2 ** -24, 2 ** -14, 1, -2, 0.333251953125, Infinity, -Infinity]);
    expect(values[1]).toBeCloseTo(6.1e-5, 6);
    expect(Object.is(values[9], -0)).toBe(true);
    expect(Object.is(values[10], 0)).toBe(true);
    expect(values[11]).toBeNaN();
  });

  it("decodes every F16 bit pattern like the textbook formula", async () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const values = await decode("F16", u16le(all), [256, 256]);
    for (const h of all) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const mant = h & 0x3ff;
      const expected =
        exp === 0 ? sign * mant * 2 ** -24 : exp === 31 ? (mant ? NaN : sign * Infinity) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
      if (!Object.is(values[h], expected)) throw new Error(`F16 0x${h.toString(16)} decoded as ${values[h]}, expected ${expected}`);
    }
  });

  it("decodes F32 and F64", async () => {
    const f32 = new Float32Array([1.25, -3.5e-20, 1e30, -0]);
    expect(await decode("F32", new Uint8Array(f32.buffer))).toEqual([1.25, Math.fround(-3.5e-20), Math.fround(1e30), -0]);
    const f64 = new Float64Array([0.1, -2, 1e300]);
    expect(await decode("F64", new Uint8Array(f64.buffer))).toEqual([Math.fround(0.1), -2, Infinity]);
  });

  it("decodes a tensor larger than one read chunk", async () => {
    const n = (1 << 23) + 5; // 2 x 16 MiB chunks of F16, plus a tail
    const bits = new Uint16Array(n);
    for (let i = 0; i < n; i++) bits[i] = i % 3 === 0 ? 0x3c00 : i % 3 === 1 ? 0xc000 : 0x3800;
    const values = await decode("F16", new Uint8Array(bits.buffer));
    expect(values.length).toBe(n);
    for (const i of [0, 1, 2, n - 3, n - 2, n - 1, (1 << 23) - 1, 1 << 23]) expect(values[i]).toBe([1, -2, 0.5][i % 3]);
  });

  it("refuses non-float dtypes", async () => {
    const file = writeTensors(path.join(tempDir(), "m.safetensors"), [{ name: "ids", dtype: "I64", shape: [2] }]);
    const { tensors } = await readSafetensorsHeader(file);
    await expectFileError(readTensorAsFloat32(tensors.get("ids")!), file, /tensor "ids" has dtype I64/);
  });

  it("reports a file truncated after its header was read", async () => {
    const file = writeTensors(path.join(tempDir(), "m.safetensors"), [{ name: "w", dtype: "F32", shape: [8] }]);
    const { tensors } = await readSafetensorsHeader(file);
    fs.truncateSync(file, fs.statSync(file).size - 4);
    await expectFileError(readTensorAsFloat32(tensors.get("w")!), file, /the file ended while reading tensor "w"/);
  });
});

describe("WeightIndex", () => {
  /** Three shards plus the index that maps four tensors onto them. */
  function shardedFolder(): string {
    const dir = tempDir();
    const shard = (i: number): string => `model-0000${i}-of-00003.safetensors`;
    writeTensors(path.join(dir, shard(1)), [
      { name: "embed.weight", dtype: "BF16", shape: [4, 2] },
      { name: "norm.weight", dtype: "BF16", shape: [2] },
    ]);
    writeTensors(path.join(dir, shard(2)), [{ name: "layers.0.weight", dtype: "BF16", shape: [2, 2] }]);
    writeTensors(path.join(dir, shard(3)), [{ name: "lm_head.weight", dtype: "F32", shape: [4, 2] }]);
    const index = {
      metadata: { total_size: 16 + 4 + 8 + 32 },
      weight_map: {
        "lm_head.weight": shard(3),
        "embed.weight": shard(1),
        "norm.weight": shard(1),
        "layers.0.weight": shard(2),
      },
    };
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify(index, null, 2));
    return dir;
  }

  it("opens a single model.safetensors", async () => {
    const dir = tempDir();
    const file = writeTensors(path.join(dir, "model.safetensors"), [
      { name: "b", dtype: "F32", shape: [3] },
      { name: "a", dtype: "F16", shape: [2, 2] },
    ]);
    // A stray file beside model.safetensors is not part of the model.
    writeTensors(path.join(dir, "adapter.safetensors"), [{ name: "a", dtype: "F32", shape: [1] }]);
    const index = await WeightIndex.open(dir);
    expect(index.folder).toBe(dir);
    expect(index.files).toEqual([file]);
    expect(index.names()).toEqual(["a", "b"]);
    expect(index.has("a")).toBe(true);
    expect(index.has("c")).toBe(false);
    expect(index.get("a")).toMatchObject({ dtype: "F16", shape: [2, 2], file });
    expect(index.totalBytes()).toBe(12 + 8);
  });

  it("opens a sharded folder through its index", async () => {
    const dir = shardedFolder();
    // A shard the index does not name is not part of the model.
    writeTensors(path.join(dir, "zzz-extra.safetensors"), [{ name: "embed.weight", dtype: "F32", shape: [1] }]);
    const index = await WeightIndex.open(dir);
    expect(index.files).toEqual([1, 2, 3].map((i) => path.join(dir, `model-0000${i}-of-00003.safetensors`)));
    expect(index.names()).toEqual(["embed.weight", "layers.0.weight", "lm_head.weight", "norm.weight"]);
    expect(index.get("lm_head.weight").file).toBe(index.files[2]);
    expect(index.get("layers.0.weight")).toMatchObject({ dtype: "BF16", shape: [2, 2], file: index.files[1], byteLength: 8 });
    expect(index.totalBytes()).toBe(60);
  });

  it("opens every *.safetensors when there is neither an index nor model.safetensors", async () => {
    const dir = tempDir();
    writeTensors(path.join(dir, "b.safetensors"), [{ name: "y", dtype: "F32", shape: [1] }]);
    writeTensors(path.join(dir, "a.safetensors"), [{ name: "x", dtype: "F32", shape: [2] }]);
    fs.writeFileSync(path.join(dir, "config.json"), "{}");
    const index = await WeightIndex.open(dir);
    expect(index.files).toEqual([path.join(dir, "a.safetensors"), path.join(dir, "b.safetensors")]);
    expect(index.get("y").file).toBe(path.join(dir, "b.safetensors"));
    expect(index.totalBytes()).toBe(12);
  });

  it("agrees with the sharded BF16 fixture written by the Python safetensors library", async () => {
    const dir = path.join(FIXTURES, "llava-gqa-bf16", "model");
    const json = JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8")) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    const index = await WeightIndex.open(dir);
    expect(index.files.length).toBe(3);
    expect(index.names()).toEqual(Object.keys(json.weight_map).sort());
    expect(index.totalBytes()).toBe(json.metadata.total_size);
  });

  it("a folder with no safetensors", async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "pytorch_model.bin"), "x");
    await expectFileError(WeightIndex.open(dir), dir, /has no \.safetensors weights: pick a Hugging Face model folder saved with safetensors/);
  });

  it("a folder that does not exist", async () => {
    const dir = path.join(tempDir(), "missing");
    await expectFileError(WeightIndex.open(dir), dir, /does not exist/);
  });

  it("a tensor that is not there", async () => {
    const dir = shardedFolder();
    const index = await WeightIndex.open(dir);
    await expectFileError(Promise.resolve().then(() => index.get("vision.weight")), dir, /no tensor "vision\.weight"/);
  });

  it("the same tensor in two unindexed files", async () => {
    const dir = tempDir();
    writeTensors(path.join(dir, "a.safetensors"), [{ name: "x", dtype: "F32", shape: [2] }]);
    writeTensors(path.join(dir, "b.safetensors"), [{ name: "x", dtype: "F32", shape: [2] }]);
    await expectFileError(WeightIndex.open(dir), dir, /"x" is in both a\.safetensors and b\.safetensors/);
  });

  it("a corrupt shard names the shard", async () => {
    const dir = shardedFolder();
    const shard = path.join(dir, "model-00002-of-00003.safetensors");
    fs.truncateSync(shard, 5);
    await expectFileError(WeightIndex.open(dir), shard, /only 5 bytes/);
  });

  it("an index that is not valid JSON", async () => {
    const dir = shardedFolder();
    const indexFile = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexFile, '{"weight_map": {"a": "model-00001-of-00003.safetensors",\n');
    await expectFileError(WeightIndex.open(dir), indexFile, /not valid JSON/);
  });

  it("an index that is not an object", async () => {
    const dir = shardedFolder();
    const indexFile = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexFile, "[]");
    await expectFileError(WeightIndex.open(dir), indexFile, /JSON object/);
  });

  it.each<[string, unknown]>([
    ["without weight_map", { metadata: {} }],
    ["with a weight_map that is a list", { weight_map: ["model-00001-of-00003.safetensors"] }],
  ])("an index %s", async (_what, json) => {
    const dir = shardedFolder();
    const indexFile = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexFile, JSON.stringify(json));
    await expectFileError(WeightIndex.open(dir), indexFile, /no "weight_map" object/);
  });

  it("an index with an empty weight_map", async () => {
    const dir = shardedFolder();
    const indexFile = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexFile, JSON.stringify({ weight_map: {} }));
    await expectFileError(WeightIndex.open(dir), indexFile, /weight_map is empty/);
  });

  it.each<[string, unknown, RegExp]>([
    ["a non-string shard", 3, /shards must be file names/],
    ["a shard outside the folder", "../elsewhere.safetensors", /outside the model folder/],
  ])("an index with %s", async (_what, shard, pattern) => {
    const dir = shardedFolder();
    const indexFile = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexFile, JSON.stringify({ weight_map: { "embed.weight": shard } }));
    await expectFileError(WeightIndex.open(dir), indexFile, pattern);
  });

  it("a shard the index names is missing", async () => {
    const dir = shardedFolder();
    const shard = path.join(dir, "model-00002-of-00003.safetensors");
    fs.rmSync(shard);
    const indexFile = path.join(dir, "model.safetensors.index.json");
    const e = await expectFileError(WeightIndex.open(dir), indexFile, /but that file is missing/);
    expect(e.message).toContain(shard);
    expect(e.message).toContain('"layers.0.weight"');
  });

  it("a tensor the index names is missing from its shard", async () => {
    const dir = shardedFolder();
    const shard = path.join(dir, "model-00001-of-00003.safetensors");
    writeTensors(shard, [{ name: "embed.weight", dtype: "BF16", shape: [4, 2] }]);
    await expectFileError(WeightIndex.open(dir), shard, /puts tensor "norm\.weight" in this shard but the shard does not hold it/);
  });
});
