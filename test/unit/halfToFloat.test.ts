/**
 * The sidecar's own widening of half-precision weights gives the very float32 bits torch's
 * `.to(torch.float32)` gives, for every one of the 65,536 patterns of float16 and of bfloat16
 * (fixture: tools/reference/make_half_conversion_fixtures.py), at any alignment and length.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { halfToFloat32, type HalfDType, widenInPlace } from "../../src/sidecar/engine/halfToFloat";

interface TorchConversion {
  sha256: string;
  named: Record<string, string>;
}
const torch = JSON.parse(readFileSync(path.join(__dirname, "../fixtures/halfConversion/torch.json"), "utf8")) as Record<"float16" | "bfloat16", TorchConversion>;

const every = (): Uint8Array => new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
const bitsOf = (f: Float32Array): Uint32Array => new Uint32Array(f.buffer, f.byteOffset, f.length);
const hex = (n: number, width: number) => `0x${n.toString(16).padStart(width, "0")}`;

describe.each([
  ["float16", "F16"],
  ["bfloat16", "BF16"],
] as const)("%s to float32", (name, dtype: HalfDType) => {
  it("matches torch on all 65,536 bit patterns", () => {
    const out = halfToFloat32(every(), dtype);
    expect(createHash("sha256").update(new Uint8Array(out.buffer)).digest("hex")).toBe(torch[name].sha256);
  });

  it("gives torch's bits for zeros, subnormals, the extremes, infinities and NaNs", () => {
    const out = bitsOf(halfToFloat32(every(), dtype));
    const named = Object.entries(torch[name].named);
    expect(named.length).toBeGreaterThan(10);
    for (const [h, f] of named) expect(`${h} -> ${hex(out[Number(h)], 8)}`).toBe(`${h} -> ${f}`);
  });

  it("is the same at odd lengths and offsets (the path without paired loads)", () => {
    const whole = bitsOf(halfToFloat32(every(), dtype));
    for (const [start, count] of [
      [1, 7],
      [3, 65533],
      [65535, 1],
      [0, 0],
    ]) {
      const out = new Float32Array(count + 3).subarray(1, 1 + count);
      new Uint8Array(out.buffer, out.byteOffset + 2 * count, 2 * count).set(every().subarray(2 * start, 2 * (start + count)));
      widenInPlace(out, count, dtype);
      expect(Array.from(bitsOf(out))).toEqual(Array.from(whole.subarray(start, start + count)));
    }
  });
});

it("widens the patterns named in IEEE 754 as expected, independent of the fixture", () => {
  const f16 = (h: number) => bitsOf(halfToFloat32(new Uint8Array(Uint16Array.of(h).buffer), "F16"))[0];
  const bf16 = (h: number) => bitsOf(halfToFloat32(new Uint8Array(Uint16Array.of(h).buffer), "BF16"))[0];
  expect(f16(0x8000)).toBe(0x80000000); // -0
  expect(f16(0x0001)).toBe(0x33800000); // 2^-24, the smallest subnormal
  expect(f16(0x03ff)).toBe(0x387fc000); // the largest subnormal
  expect(f16(0x7bff)).toBe(0x477fe000); // 65504
  expect(f16(0xfc00)).toBe(0xff800000); // -inf
  expect(f16(0x7c01)).toBe(0x7fc02000); // a signalling NaN comes out quiet, payload kept
  expect(bf16(0x0001)).toBe(0x00010000); // a bfloat16 subnormal stays subnormal
  expect(bf16(0x7f81)).toBe(0x7f810000); // a bfloat16 NaN is widened as it is
});
