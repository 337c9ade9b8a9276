/** Reads the reference fixtures that tools/reference/make_fixtures.py records from transformers. */
import * as fs from "node:fs";
import * as path from "node:path";

export const FIXTURES = path.resolve(__dirname, "../fixtures/models");

export interface TensorRef {
  file: string;
  shape: number[];
}

export interface ReferenceCase {
  model: string;
  case: string;
  architecture: string;
  transformers_version: string;
  compute_dtype: "float32" | "bfloat16" | "float16";
  prompt: string;
  image: string | null;
  rendered_prompt: string;
  input_ids: number[];
  pixel_values: TensorRef | null;
  hidden_states: TensorRef;
  logits: TensorRef;
  greedy_tokens: number[];
  greedy_min_top2_gap: number;
  /** Absolute paths, filled in by the loader. */
  caseFile: string;
  modelDir: string;
  imagePath: string | null;
}

export function listCases(): ReferenceCase[] {
  if (!fs.existsSync(FIXTURES)) return [];
  const out: ReferenceCase[] = [];
  for (const model of fs.readdirSync(FIXTURES).sort()) {
    const casesDir = path.join(FIXTURES, model, "cases");
    if (!fs.existsSync(casesDir)) continue;
    for (const f of fs.readdirSync(casesDir).sort()) {
      if (!f.endsWith(".json")) continue;
      const caseFile = path.join(casesDir, f);
      const c = JSON.parse(fs.readFileSync(caseFile, "utf8")) as ReferenceCase;
      c.caseFile = caseFile;
      c.modelDir = path.join(FIXTURES, model, "model");
      c.imagePath = c.image ? path.resolve(casesDir, c.image) : null;
      out.push(c);
    }
  }
  return out;
}

export function readTensor(c: ReferenceCase, ref: TensorRef): Float32Array {
  return readTensorIn(path.dirname(c.caseFile), ref);
}

/** A float32 tensor a reference script wrote beside its case files; its length must match the shape. */
export function readTensorIn(dir: string, ref: TensorRef): Float32Array {
  const buf = fs.readFileSync(path.join(dir, ref.file));
  const expected = ref.shape.reduce((a, b) => a * b, 1);
  const arr = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (arr.length !== expected) throw new Error(`${ref.file}: ${arr.length} floats, shape says ${expected}`);
  return arr;
}

/** Every *.json case in a folder, sorted by file name. */
export function readCaseFiles<T>(dir: string): T[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as T);
}

/** max |a - b| / max |b|: the error relative to the tensor's scale (elementwise ratios blow up near zero). */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>, offset = 0, length = expected.length): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = offset; i < offset + length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  if (Number.isNaN(maxDiff)) return Infinity;
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let m = 0;
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs(actual[i] - expected[i]));
  return Number.isNaN(m) ? Infinity : m;
}
