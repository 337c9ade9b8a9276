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
