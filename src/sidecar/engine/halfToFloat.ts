/**
 * float16 and bfloat16 to float32, bit for bit as torch's `.to(torch.float32)` converts them
 * (test/unit/halfToFloat.test.ts checks all 65,536 values of each against torch's output).
 * Both conversions are exact; only NaNs need care: torch (F16C's vcvtph2ps) sets the quiet bit
 * of a float16 NaN and keeps its payload, while a bfloat16 is the top half of a float32 and is
 * widened as it is, signalling NaNs included.
 *
 * The weights are converted in place: the half values are read into the upper half of the
 * float32 buffer and widened from the front, so no second buffer exists. Writing element i
 * touches bytes [4i, 4i+4), below the half value i+1 at byte 2n+2(i+1) still to be read.
 */

/** float32 bits of every float16, by its bits. */
let f16Table: Uint32Array | undefined;

function f16Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa ? 0x400000 | (mantissa << 13) : 0)) >>> 0;
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // a subnormal float16 (mantissa * 2^-24) is a normal float32: shift its leading 1 out
  let e = 113;
  let m = mantissa;
  while (!(m & 0x400)) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

export function float16Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16Bits(h);
  }
  return f16Table;
}

export type HalfDType = "F16" | "BF16";

/**
 * Widens the half values `src` to float32 bits in `dst` (the same length). The two may share
 * a buffer as the weights do (see above): each 32-bit load is done before the stores that
 * could reach it. Two values per load where `src` is 4-byte aligned: a third faster.
 */
export function widen(dst: Uint32Array, src: Uint16Array, dtype: HalfDType): void {
  if (dst.length !== src.length) throw new Error(`widen: ${dst.length} floats for ${src.length} half values`);
  widenKernel(dst, src, dtype === "BF16", dtype === "BF16" ? new Uint32Array(0) : float16Table());
}

/**
 * `widen` itself, with the float16 table passed in. It refers to nothing outside itself, so its
 * source can run in a worker thread as it is (engine/fedWeights.ts).
 */
export function widenKernel(dst: Uint32Array, src: Uint16Array, bfloat16: boolean, table: Uint32Array): void {
  const count = src.length;
  const pairs = src.byteOffset % 4 === 0 ? count >> 1 : 0;
  const packed = pairs > 0 ? new Uint32Array(src.buffer, src.byteOffset, pairs) : new Uint32Array(0);
  if (bfloat16) {
    for (let j = 0; j < pairs; j++) {
      const v = packed[j];
      dst[2 * j] = v << 16;
      dst[2 * j + 1] = v & 0xffff0000;
    }
    for (let i = 2 * pairs; i < count; i++) dst[i] = src[i] << 16;
    return;
  }
  for (let j = 0; j < pairs; j++) {
    const v = packed[j];
    dst[2 * j] = table[v & 0xffff];
    dst[2 * j + 1] = table[v >>> 16];
  }
  for (let i = 2 * pairs; i < count; i++) dst[i] = table[src[i]];
}

/** Widens `count` half values stored from byte `2 * count` of `out` into `out[0..count)`. */
export function widenInPlace(out: Float32Array, count: number, dtype: HalfDType): void {
  if (out.length < count) throw new Error(`widenInPlace: ${out.length} floats cannot hold ${count} values`);
  widen(new Uint32Array(out.buffer, out.byteOffset, count), new Uint16Array(out.buffer, out.byteOffset + 2 * count, count), dtype);
}

/** A copy of half values (little-endian bytes) as float32. */
export function halfToFloat32(bytes: Uint8Array, dtype: HalfDType): Float32Array {
  if (bytes.byteLength % 2 !== 0) throw new Error(`halfToFloat32: ${bytes.byteLength} bytes is not a whole number of half values`);
  const count = bytes.byteLength / 2;
  const out = new Float32Array(count);
  new Uint8Array(out.buffer, 2 * count, 2 * count).set(bytes);
  widenInPlace(out, count, dtype);
  return out;
}
