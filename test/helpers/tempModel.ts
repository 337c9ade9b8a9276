/** Copies a fixture model folder into a temp dir so a test can break one thing in it. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FIXTURES } from "./fixtures";

export function copyFixtureModel(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `lens-${name}-`));
  fs.cpSync(path.join(FIXTURES, name, "model"), dir, { recursive: true });
  return dir;
}

export function editJson(file: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  edit(json);
  fs.writeFileSync(file, JSON.stringify(json, null, 2));
}

/** Writes a minimal valid safetensors file holding the given float32 or int8 tensors. */
export function writeSafetensors(file: string, tensors: { name: string; dtype: "F32" | "I8"; shape: number[] }[]): void {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * (t.dtype === "F32" ? 4 : 1);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(offset)]));
}

export interface StoredTensor {
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** Reads a safetensors file into its tensors (header order) and metadata. */
export function readSafetensorsFile(file: string): { tensors: Map<string, StoredTensor>; metadata?: Record<string, string> } {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
  const tensors = new Map<string, StoredTensor>();
  let metadata: Record<string, string> | undefined;
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [begin, end] } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors.set(name, { dtype, shape, data: Buffer.from(bytes.subarray(8 + n + begin, 8 + n + end)) });
  }
  return { tensors, metadata };
}

/** Writes tensors as a valid safetensors file (packed in order, header padded to 8 bytes as the reference writer does). */
export function writeSafetensorsFile(file: string, tensors: Map<string, StoredTensor>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = Buffer.from(JSON.stringify(header));
  if (json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, ...[...tensors.values()].map((t) => t.data)]));
}

/** Rewrites a model folder's model.safetensors after `edit` changes its tensors (drop one, add one, poke a value). */
export function editSafetensors(dir: string, edit: (tensors: Map<string, StoredTensor>) => void): void {
  const file = path.join(dir, "model.safetensors");
  const { tensors, metadata } = readSafetensorsFile(file);
  edit(tensors);
  writeSafetensorsFile(file, tensors, metadata);
}
