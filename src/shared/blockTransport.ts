/**
 * Large numeric blocks ({shape, data: number[]}) as bytes while they travel: base64 inside
 * the sidecar's JSON-RPC answers, typed arrays inside webview messages. A LLaVA-7B record with
 * positions "all" and image attention holds about 25 M numbers; as JSON numbers it took 7.7 s
 * to stringify and 4.2 s to parse, and the structured clone of its arrays into the webview
 * 6 s. As bytes each step is a copy.
 *
 * Only the transport changes: both ends see plain LensRecords, and record files on disk that a
 * user reads keep their JSON numbers. Encoding is exact: a block goes as int32 when every
 * value is an int32, as float32 when every value is a float32 (the runtime computes in
 * float32), else as float64. Blocks holding anything but finite numbers (JSON would turn NaN
 * into null) and small blocks stay as they are.
 */

/** Fewer values than this are not worth encoding. */
const MIN_ENCODED = 256;

type DType = "i32" | "f32" | "f64";
type Typed = Int32Array | Float32Array | Float64Array;

/** A block's data in transit: `base64` in JSON, `typed` in a structured clone. */
export interface EncodedData {
  dtype: DType;
  base64?: string;
  typed?: Typed;
}

/**
 * `value` with every large numeric block's `data` replaced by `encoded` (a copy: `value`
 * itself is not changed). "base64" for JSON, "typed" for postMessage.
 */
export function encodeBlocks<T>(value: T, form: "base64" | "typed"): T {
  return walk(value, (block) => {
    const exact = exactTyped(block["data"] as unknown[]);
    if (!exact) return block;
    const { dtype, typed } = exact;
    const rest = { ...block };
    delete rest["data"];
    const encoded: EncodedData = form === "typed" ? { dtype, typed } : { dtype, base64: toBase64(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength)) };
    return { ...rest, encoded };
  }) as T;
}

/** The inverse of encodeBlocks, for either form; values without encoded blocks come back as they are. */
export function decodeBlocks<T>(value: T): T {
  return walk(value, (block) => block, (encodedBlock) => {
    const { encoded, ...rest } = encodedBlock as { encoded: EncodedData } & Record<string, unknown>;
    const typed = encoded.typed ?? fromBytes(fromBase64(encoded.base64 ?? ""), encoded.dtype);
    return { ...rest, data: toArray(typed) };
  }) as T;
}

/**
 * Copies plain objects and arrays down to the numeric blocks, which `onBlock` replaces (and
 * encoded blocks, which `onEncoded` does). Leaves and typed arrays are shared, not copied.
 */
function walk(value: unknown, onBlock: (block: Record<string, unknown>) => unknown, onEncoded?: (block: Record<string, unknown>) => unknown): unknown {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    // Arrays of numbers are data, not containers: nothing inside to visit.
    if (value.length === 0 || typeof value[0] !== "object") return value;
    return value.map((v) => walk(v, onBlock, onEncoded));
  }
  const obj = value as Record<string, unknown>;
  if (Array.isArray(obj["shape"])) {
    if (Array.isArray(obj["data"])) return onBlock(obj);
    if (onEncoded && isEncoded(obj["encoded"])) return onEncoded(obj);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = walk(v, onBlock, onEncoded);
  return out;
}

/** A plain array of the values (a loop into a sized array: a third of the time Array.from takes). */
function toArray(typed: Typed): number[] {
  const out = new Array<number>(typed.length);
  for (let i = 0; i < typed.length; i++) out[i] = typed[i];
  return out;
}

function isEncoded(x: unknown): x is EncodedData {
  return typeof x === "object" && x !== null && ["i32", "f32", "f64"].includes((x as EncodedData).dtype);
}

/**
 * `data` as the narrowest typed array that holds it exactly, or undefined to leave it as it is.
 * The checks run over typed copies (a plain loop over the JS array's numbers was 3x slower).
 */
function exactTyped(data: readonly unknown[]): { dtype: DType; typed: Typed } | undefined {
  if (data.length < MIN_ENCODED) return undefined;
  for (let i = 0; i < data.length; i++) if (typeof data[i] !== "number") return undefined;
  const f64 = new Float64Array(data as number[]);
  const n = f64.length;
  for (let i = 0; i < n; i++) if (f64[i] - f64[i] !== 0) return undefined; // NaN or infinite
  const i32 = new Int32Array(f64); // out-of-range values wrap, and then differ
  let int32 = true;
  for (let i = 0; i < n && int32; i++) if (i32[i] !== f64[i] || (f64[i] === 0 && 1 / f64[i] < 0)) int32 = false;
  if (int32) return { dtype: "i32", typed: i32 };
  const f32 = new Float32Array(f64);
  for (let i = 0; i < n; i++) if (f32[i] !== f64[i]) return { dtype: "f64", typed: f64 };
  return { dtype: "f32", typed: f32 };
}

function fromBytes(bytes: Uint8Array, dtype: DType): Typed {
  const size = dtype === "f64" ? 8 : 4;
  // A typed array over bytes needs them aligned to its element size; copy when they are not.
  const aligned = bytes.byteOffset % size === 0 ? bytes : new Uint8Array(bytes);
  const count = aligned.byteLength / size;
  if (dtype === "i32") return new Int32Array(aligned.buffer, aligned.byteOffset, count);
  if (dtype === "f32") return new Float32Array(aligned.buffer, aligned.byteOffset, count);
  return new Float64Array(aligned.buffer, aligned.byteOffset, count);
}

// Node (sidecar, extension host) has Buffer; a webview only ever sees the typed form, but the
// fallbacks keep the module usable anywhere (the webview bundle has no Node types).
interface NodeBufferLike {
  from(data: ArrayBufferLike, byteOffset: number, length: number): { toString(encoding: "base64"): string };
  from(data: string, encoding: "base64"): Uint8Array;
}
const NodeBuffer = (globalThis as { Buffer?: NodeBufferLike }).Buffer;

function toBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  if (NodeBuffer) return NodeBuffer.from(s, "base64");
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
