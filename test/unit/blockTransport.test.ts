/** Large numeric blocks travel as bytes (base64 in JSON-RPC, typed arrays to the webview) and come back exactly. */
import { describe, expect, it } from "vitest";
import { decodeBlocks, encodeBlocks } from "../../src/shared/blockTransport";
import { syntheticRecord } from "../../bench/syntheticRecord";

function block(data: number[]): { shape: number[]; data: number[] } {
  return { shape: [data.length], data };
}

const n = 1000;
const ints = Array.from({ length: n }, (_, i) => (i * 7919) % 100003 - 50000);
const floats32 = Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i) * 1e3));
const floats64 = Array.from({ length: n }, (_, i) => Math.sin(i) / 3);
const extremes = [-2147483648, 2147483647, -0, 0, 1e-45, 3.4e38, Number.MAX_VALUE, Number.MIN_VALUE, -1e308];

describe("encodeBlocks / decodeBlocks", () => {
  it.each(["base64", "typed"] as const)("round-trips every value exactly in the %s form, with the narrowest exact dtype", (form) => {
    const value = {
      ids: block(ints),
      probs: block(floats32),
      means: block(floats64),
      mixed: block([...ints.slice(0, 300), 0.5]),
      edges: block(Array.from({ length: 300 }, (_, i) => extremes[i % extremes.length])),
    };
    const encoded = encodeBlocks(value, form) as unknown as Record<string, { encoded: { dtype: string } }>;
    expect(Object.fromEntries(Object.entries(encoded).map(([k, v]) => [k, v.encoded.dtype]))).toEqual({ ids: "i32", probs: "f32", means: "f64", mixed: "f32", edges: "f64" });
    const decoded = decodeBlocks(form === "base64" ? JSON.parse(JSON.stringify(encoded)) : structuredClone(encoded)) as typeof value;
    for (const key of Object.keys(value) as (keyof typeof value)[]) {
      expect(decoded[key].shape).toEqual(value[key].shape);
      expect(decoded[key].data.length).toBe(value[key].data.length);
      // Object.is tells -0 from 0: the encoding must keep it
      expect(decoded[key].data.every((v, i) => Object.is(v, value[key].data[i]))).toBe(true);
    }
  });

  it("leaves small blocks, non-finite values and other data as they are, and does not change its input", () => {
    const value = {
      small: block([1, 2, 3]),
      withNaN: block([...floats32.slice(0, 299), NaN]),
      withNull: { shape: [300], data: [...ints.slice(0, 299), null] },
      labels: Array.from({ length: 500 }, (_, i) => `t${i}`),
      nested: [{ name: "a", inner: block(ints) }],
    };
    const snapshot = structuredClone(value);
    const encoded = encodeBlocks(value, "base64") as unknown as typeof value & { nested: { inner: { encoded?: unknown } }[] };
    expect(value).toEqual(snapshot);
    expect(encoded.small).toBe(value.small);
    expect(encoded.withNaN).toBe(value.withNaN);
    expect(encoded.withNull).toBe(value.withNull);
    expect(encoded.labels).toBe(value.labels);
    expect(encoded.nested[0].inner.encoded).toBeDefined();
    expect(decodeBlocks(JSON.parse(JSON.stringify(encoded)))).toEqual({ ...value, withNaN: { shape: [300], data: [...floats32.slice(0, 299), null] } });
  });

  it("a whole record comes back equal, and its JSON is a fraction of the size", () => {
    const record = syntheticRecord({ numLayers: 8, numHeads: 4, positions: 60, grid: [4, 4], generated: 4, pool: 40, imageRows: true });
    const plain = JSON.stringify(record);
    const wire = JSON.stringify(encodeBlocks(record, "base64"));
    expect(decodeBlocks(JSON.parse(wire))).toEqual(JSON.parse(plain));
    expect(wire.length).toBeLessThan(plain.length / 2);
  });
});
