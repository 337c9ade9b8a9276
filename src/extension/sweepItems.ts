/**
 * The items of a finished sweep, for the comparison view's per-item table: its rows
 * (results.jsonl), and an item's full LensRecord from records.jsonl when the sweep kept records
 * (experiments.ts computes it again otherwise, by previewing that planned item).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { LensRecord } from "../shared/lensRecord";
import { parseSweepRow, type SweepRow } from "../shared/sweep";
import { validateLensRecord } from "../shared/validateRecord";
import { MIB, readInputText } from "../sidecar/util/readInput";

/** The rows of a results folder's results.jsonl; lines that are not rows are skipped, as a sweep's rerun skips them. */
export async function readSweepRows(outDir: string): Promise<SweepRow[]> {
  const file = path.join(outDir, "results.jsonl");
  try {
    await fs.stat(file);
  } catch {
    return []; // no items yet
  }
  const text = await readInputText(file, { what: "results file", maxBytes: 512 * MIB });
  // lines that are not rows (a torn last line of an interrupted run) are left out
  return text.split("\n").flatMap((line) => {
    const row = line.trim() ? parseSweepRow(line) : undefined;
    return row ? [row] : [];
  });
}

/**
 * Where each item's record is in records.jsonl (written when the experiment's output.records is
 * on): one pass over the file for the line starts, so opening an item reads only its own line (a
 * record is megabytes, and the file holds one per item). The last line of an id wins, as a rerun
 * writes an item again further down.
 */
export class SweepRecordIndex {
  private constructor(
    readonly file: string,
    private readonly lines: ReadonlyMap<string, { start: number; end: number }>,
  ) {}

  /** The index of a results folder's records.jsonl, or null when it kept none. */
  static async open(outDir: string): Promise<SweepRecordIndex | null> {
    const file = path.join(outDir, "records.jsonl");
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, "r");
    } catch {
      return null;
    }
    try {
      if (!(await handle.stat()).isFile()) return null;
      const lines = new Map<string, { start: number; end: number }>();
      const chunk = Buffer.alloc(4 * MIB);
      let lineStart = 0;
      let head = Buffer.alloc(0); // the first bytes of the current line, enough for its id
      let pos = 0;
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, pos);
        if (bytesRead === 0) break;
        let from = 0;
        for (;;) {
          const nl = chunk.indexOf(10, from);
          const stop = nl < 0 || nl >= bytesRead ? bytesRead : nl;
          if (head.length < ID_HEAD_BYTES) head = Buffer.concat([head, chunk.subarray(from, Math.min(stop, from + ID_HEAD_BYTES - head.length))]);
          if (stop === bytesRead) break;
          const id = idOf(head);
          if (id !== null) lines.set(id, { start: lineStart, end: pos + nl });
          lineStart = pos + nl + 1;
          head = Buffer.alloc(0);
          from = nl + 1;
        }
        pos += bytesRead;
      }
      return new SweepRecordIndex(file, lines);
    } finally {
      await handle.close();
    }
  }

  get size(): number {
    return this.lines.size;
  }

  /** Item `id`'s record, or null when the file has none for it. */
  async get(id: string): Promise<LensRecord | null> {
    const at = this.lines.get(id);
    if (!at) return null;
    const handle = await fs.open(this.file, "r");
    let text: string;
    try {
      const bytes = Buffer.alloc(at.end - at.start);
      await handle.read(bytes, 0, bytes.length, at.start);
      text = bytes.toString("utf8");
    } finally {
      await handle.close();
    }
    let parsed: { id?: unknown; record?: unknown };
    try {
      parsed = JSON.parse(text) as { id?: unknown; record?: unknown };
    } catch {
      throw new Error(`${this.file}: the line of item ${id} is not JSON (the file changed since it was indexed, or a run was cut off): open the comparison again, or rerun the sweep`);
    }
    if (parsed.id !== id) throw new Error(`${this.file} changed since it was indexed: open the comparison again`);
    const checked = validateLensRecord(parsed.record);
    if (!checked.ok) throw new Error(`${this.file}: the record of item ${id} is not a valid LensRecord (${checked.errors[0]}): rerun the sweep with --fresh`);
    return checked.record;
  }
}

/** Bytes of a line read for its id: `{"id":"` and a sha256 hex id, with room to spare. */
const ID_HEAD_BYTES = 256;

function idOf(head: Buffer): string | null {
  const m = /^\{"id":("(?:[^"\\]|\\.)*")/u.exec(head.toString("utf8"));
  if (!m) return null;
  try {
    return JSON.parse(m[1]) as string;
  } catch {
    return null;
  }
}
