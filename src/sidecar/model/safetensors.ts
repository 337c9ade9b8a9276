/**
 * Reads safetensors headers and Hugging Face weight indexes without loading the weights.
 *
 * The graph builder points ONNX external-data initializers straight at byte ranges inside
 * these files, so onnxruntime trusts every offset we hand it. Everything a header claims is
 * therefore checked here (types, sizes, bounds, overlaps) and a bad file becomes a
 * LensInputError that names it, instead of a crash or garbage deep inside the runtime.
 *
 * File layout: 8 bytes little-endian u64 header length N, then N bytes of UTF-8 JSON (padded
 * with spaces to 8-byte alignment), then the data. `data_offsets` are relative to the data
 * start, 8 + N. As in the reference implementation (the Rust crate's Metadata::validate), the
 * header must start with `{` and the tensors must tile the data exactly: sorted by offset, each
 * starts where the one before ended, and the last ends at the end of the file. A header length
 * off by a byte shifts every tensor yet parses (a padding space lost), so only that tiling
 * catches it.
 */
import { constants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { isObject } from "../arch/configUtil";
import { float16Table } from "../engine/halfToFloat";
import { LensInputError } from "../errors";
import { readJsonObject } from "./jsonFile";

export type SafetensorsDType =
  | "F64" | "F32" | "F16" | "BF16"
  | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL"
  | "F8_E4M3" | "F8_E5M2"
  | "U16" | "U32" | "U64";

export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
  U16: 2, U32: 4, U64: 8,
};

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute path of the .safetensors file. */
  file: string;
  /** Absolute offset in the file: 8 + header length + data_offsets[0]. */
  byteOffset: number;
  byteLength: number;
}

/** The reference implementation refuses larger headers; a bigger value means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;
const INDEX_FILE = "model.safetensors.index.json";
const SINGLE_FILE = "model.safetensors";
const REDOWNLOAD = "the file is truncated or not safetensors; re-download it";

function isDType(v: unknown): v is SafetensorsDType {
  return typeof v === "string" && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, v);
}

/** Names and values taken from a file are quoted as JSON so a stray newline cannot break the one-line message. */
function q(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function firstLine(message: string): string {
  return message.replace(/\s+/g, " ").trim();
}

export async function openForReading(file: string, what: string): Promise<fs.FileHandle> {
  try {
    // O_NONBLOCK: a FIFO in place of a shard must not block the sidecar until something writes to it
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw new LensInputError(file, `${what} is ${stat.isDirectory() ? "a folder" : stat.isFIFO() ? "a named pipe (FIFO)" : "a device or special file"}, not a regular file: re-download the model`);
    }
    return handle;
  } catch (e) {
    if (e instanceof LensInputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new LensInputError(file, `${what} does not exist: re-download the model`);
    if (code === "EISDIR") throw new LensInputError(file, `${what} is a folder, not a file: remove it or re-download the model`);
    throw new LensInputError(file, `cannot open ${what} (${firstLine((e as Error).message)}): check the file's permissions`);
  }
}

/** Reads until `buf` is full or the file ends; returns the number of bytes read. */
export async function readFully(handle: fs.FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export async function readSafetensorsHeader(
  file: string,
): Promise<{ tensors: Map<string, TensorEntry>; metadata: Record<string, string> }> {
  file = path.resolve(file);
  const handle = await openForReading(file, "the safetensors file");
  let fileSize: number;
  let headerLength: number;
  let headerBytes: Uint8Array;
  try {
    fileSize = (await handle.stat()).size;
    if (fileSize < 8) {
      throw new LensInputError(file, `the file is only ${fileSize} bytes, too short for the 8-byte header length of a safetensors file: ${REDOWNLOAD}`);
    }
    const lengthBytes = new Uint8Array(8);
    await readFully(handle, lengthBytes, 0);
    const declared = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      throw new LensInputError(file, `header length ${declared} is larger than the 100 MB safetensors allows: ${REDOWNLOAD}`);
    }
    headerLength = Number(declared);
    if (8 + headerLength > fileSize) {
      throw new LensInputError(file, `header length ${headerLength} runs past the end of the file (${fileSize} bytes): ${REDOWNLOAD}`);
    }
    headerBytes = new Uint8Array(headerLength);
    const got = await readFully(handle, headerBytes, 8);
    if (got !== headerLength) {
      throw new LensInputError(file, `the file ended after ${8 + got} bytes while reading its ${headerLength}-byte header: ${REDOWNLOAD}`);
    }
  } catch (e) {
    if (e instanceof LensInputError) throw e;
    throw new LensInputError(file, `cannot read the safetensors file (${firstLine((e as Error).message)}): check the file's permissions`);
  } finally {
    await handle.close();
  }
  return parseHeader(file, fileSize, headerLength, headerBytes);
}

function parseHeader(
  file: string,
  fileSize: number,
  headerLength: number,
  headerBytes: Uint8Array,
): { tensors: Map<string, TensorEntry>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new LensInputError(file, `the ${headerLength}-byte header is not valid UTF-8: ${REDOWNLOAD}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new LensInputError(file, `the header is not valid JSON (${firstLine((e as Error).message)}): ${REDOWNLOAD}`);
  }
  if (!isObject(header)) {
    throw new LensInputError(file, `the header must be a JSON object of tensors, got ${Array.isArray(header) ? "an array" : q(header)}: ${REDOWNLOAD}`);
  }
  if (!text.startsWith("{")) {
    throw new LensInputError(file, `the header must start with "{", got ${q(text.slice(0, 1))} (is the header length ${headerLength} off?): ${REDOWNLOAD}`);
  }

  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const bad = (name: string, what: string): LensInputError =>
    new LensInputError(file, `tensor ${q(name)} ${what}: the file is corrupt or was written by a broken exporter; re-download or re-save it`);

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isObject(raw) || Object.values(raw).some((v) => typeof v !== "string")) {
        throw new LensInputError(file, `"__metadata__" must map strings to strings: ${REDOWNLOAD}`);
      }
      metadata = Object.fromEntries(Object.entries(raw as Record<string, string>));
      continue;
    }
    if (!isObject(raw)) throw bad(name, `must be an object with dtype, shape and data_offsets, got ${q(raw)}`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (dtype === undefined) throw bad(name, "has no dtype");
    if (shape === undefined) throw bad(name, "has no shape");
    if (offsets === undefined) throw bad(name, "has no data_offsets");
    if (!isDType(dtype)) {
      throw bad(name, `has unknown dtype ${q(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(", ")})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw bad(name, `has shape ${q(shape)}; a shape must be a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      throw bad(name, `has data_offsets ${q(offsets)}; they must be [begin, end] with integers 0 <= begin <= end`);
    }
    const dims = shape as number[];
    const [begin, end] = offsets as [number, number];
    const byteLength = end - begin;
    const expected = dims.reduce((a, d) => a * BigInt(d), 1n) * BigInt(DTYPE_BYTES[dtype]);
    if (BigInt(byteLength) !== expected) {
      throw bad(name, `takes ${byteLength} bytes but ${dtype} [${dims.join(", ")}] needs ${expected}`);
    }
    if (end > dataSize) {
      throw bad(name, `has data_offsets [${begin}, ${end}] past the end of the data (${dataSize} bytes after the header); the file is truncated`);
    }
    tensors.set(name, { name, dtype, shape: dims, file, byteOffset: dataStart + begin, byteLength });
    ranges.push({ name, begin, end });
  }

  // The data is covered exactly: no shared bytes, no holes, nothing after the last tensor.
  // Empty tensors take no bytes but still sit where the tiling has reached, as in the crate.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let reached = 0;
  let previous: { name: string; begin: number; end: number } | undefined;
  for (const r of ranges) {
    if (previous && r.begin < reached) {
      throw new LensInputError(
        file,
        `tensors ${q(previous.name)} [${previous.begin}, ${previous.end}] and ${q(r.name)} [${r.begin}, ${r.end}] overlap: the file is corrupt; re-download or re-save it`,
      );
    }
    if (r.begin > reached) {
      throw new LensInputError(
        file,
        `tensor ${q(r.name)} starts at data offset ${r.begin} but ${previous ? `${q(previous.name)} ends at ${reached}` : "the data starts at 0"}: the tensors must cover the data without holes; the file is corrupt; re-download or re-save it`,
      );
    }
    reached = r.end;
    previous = r;
  }
  if (reached !== dataSize) {
    throw new LensInputError(
      file,
      `the tensors cover ${reached} bytes of data but the file holds ${dataSize} after its ${headerLength}-byte header (${fileSize} bytes in all, expected 8 + ${headerLength} + ${reached}): the header length is wrong or the file has extra bytes; re-download it`,
    );
  }
  return { tensors, metadata };
}

/** Every tensor of a model folder, whether saved as one file or as shards behind an index. */
export class WeightIndex {
  /**
   * Where the weight bytes really are, for onnxruntime: it resolves symbolic links and refuses
   * external data outside the folder it is given, and a Hugging Face hub snapshot links every
   * file to ../../blobs. This is the deepest folder holding every shard's real file.
   */
  readonly dataFolder: string;
  private readonly locations: Map<string, string>;

  private constructor(
    readonly folder: string,
    /** Absolute shard paths, sorted. */
    readonly files: string[],
    private readonly entries: Map<string, TensorEntry>,
    realFiles: string[],
  ) {
    this.dataFolder = commonFolder(realFiles);
    this.locations = new Map(files.map((f, i) => [f, path.relative(this.dataFolder, realFiles[i])]));
  }

  /** A shard's path relative to `dataFolder` (an ONNX external-data location). */
  location(file: string): string {
    const location = this.locations.get(file);
    if (location === undefined) throw new Error(`${file} is not a shard of ${this.folder}`);
    return location;
  }

  static async open(folder: string): Promise<WeightIndex> {
    folder = path.resolve(folder);
    let listing: string[];
    try {
      listing = await fs.readdir(folder);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new LensInputError(folder, "the model folder does not exist: pick a Hugging Face model folder");
      if (code === "ENOTDIR") throw new LensInputError(folder, "is a file, not a folder: pick a Hugging Face model folder");
      throw new LensInputError(folder, `cannot list the model folder (${firstLine((e as Error).message)}): check its permissions`);
    }
    if (listing.includes(INDEX_FILE)) return WeightIndex.openIndexed(folder, path.join(folder, INDEX_FILE));
    const names = listing.includes(SINGLE_FILE) ? [SINGLE_FILE] : listing.filter((f) => f.endsWith(".safetensors"));
    if (names.length === 0) {
      throw new LensInputError(folder, "has no .safetensors weights: pick a Hugging Face model folder saved with safetensors");
    }
    const files = names.map((f) => path.join(folder, f)).sort();
    const [headers, realFiles] = await Promise.all([Promise.all(files.map((f) => readSafetensorsHeader(f))), realPaths(files)]);
    const entries = new Map<string, TensorEntry>();
    for (const { tensors } of headers) {
      for (const [name, entry] of tensors) {
        const other = entries.get(name);
        if (other) {
          throw new LensInputError(
            folder,
            `tensor ${q(name)} is in both ${path.basename(other.file)} and ${path.basename(entry.file)}: remove the stray file or add a ${INDEX_FILE}`,
          );
        }
        entries.set(name, entry);
      }
    }
    return new WeightIndex(folder, files, sortByName(entries), realFiles);
  }

  /** The index's weight_map is authoritative: tensors a shard holds beyond it are not used. */
  private static async openIndexed(folder: string, indexFile: string): Promise<WeightIndex> {
    const index = await readJsonObject(indexFile, INDEX_FILE);
    const weightMap = index["weight_map"];
    if (!isObject(weightMap)) {
      throw new LensInputError(indexFile, `has no "weight_map" object mapping tensor names to shard files: repair or re-download it`);
    }
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(weightMap)) {
      if (typeof shard !== "string" || shard === "") {
        throw new LensInputError(indexFile, `weight_map gives tensor ${q(name)} the shard ${q(shard)}; shards must be file names: repair or re-download it`);
      }
      const shardFile = path.resolve(folder, shard);
      if (path.dirname(shardFile) !== folder) {
        throw new LensInputError(indexFile, `weight_map names shard ${q(shard)} outside the model folder: shards must be file names in ${folder}; repair the index`);
      }
      let list = byShard.get(shardFile);
      if (!list) byShard.set(shardFile, (list = []));
      list.push(name);
    }
    if (byShard.size === 0) {
      throw new LensInputError(indexFile, `weight_map is empty: repair or re-download the index`);
    }
    const files = [...byShard.keys()].sort();
    for (const shardFile of files) {
      const exists = await fs.stat(shardFile).then((s) => s.isFile(), () => false);
      if (!exists) {
        const names = byShard.get(shardFile) ?? [];
        throw new LensInputError(
          indexFile,
          `names shard ${shardFile} for ${names.length} tensor(s) (e.g. ${q(names[0])}) but that file is missing: the download is incomplete; re-download the model`,
        );
      }
    }
    const [headers, realFiles] = await Promise.all([Promise.all(files.map((f) => readSafetensorsHeader(f))), realPaths(files)]);
    const entries = new Map<string, TensorEntry>();
    files.forEach((shardFile, i) => {
      const { tensors } = headers[i];
      for (const name of byShard.get(shardFile) ?? []) {
        const entry = tensors.get(name);
        if (!entry) {
          throw new LensInputError(
            shardFile,
            `${INDEX_FILE} puts tensor ${q(name)} in this shard but the shard does not hold it: the index and the shards come from different downloads; re-download the model`,
          );
        }
        entries.set(name, entry);
      }
    });
    return new WeightIndex(folder, files, sortByName(entries), realFiles);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  get(name: string): TensorEntry {
    const entry = this.entries.get(name);
    if (!entry) {
      throw new LensInputError(
        this.folder,
        `the weights have no tensor ${q(name)} (${this.entries.size} tensors in ${this.files.map((f) => path.basename(f)).join(", ")}): the checkpoint does not match its config.json architecture`,
      );
    }
    return entry;
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  totalBytes(): number {
    let total = 0;
    for (const e of this.entries.values()) total += e.byteLength;
    return total;
  }
}

/**
 * Each file's real path (links followed). Read beside the headers, so a file that cannot be
 * resolved keeps its own path: the header read reports what is wrong with it.
 */
function realPaths(files: string[]): Promise<string[]> {
  return Promise.all(files.map((f) => fs.realpath(f).catch(() => f)));
}

/** The deepest folder that holds every one of `files` (absolute paths). */
function commonFolder(files: string[]): string {
  let folder = path.dirname(files[0]);
  while (!files.every((f) => f.startsWith(folder.endsWith(path.sep) ? folder : folder + path.sep))) folder = path.dirname(folder);
  return folder;
}

function sortByName(entries: Map<string, TensorEntry>): Map<string, TensorEntry> {
  return new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Decoded in chunks so a large tensor does not need its raw bytes and its floats in memory at once. */
const CHUNK_BYTES = 1 << 24;

export async function readTensorAsFloat32(entry: TensorEntry): Promise<Float32Array> {
  const { dtype, file, name } = entry;
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64") {
    throw new LensInputError(file, `tensor ${q(name)} has dtype ${dtype}; only F32, F16, BF16 and F64 can be read as floats: use an unquantised checkpoint`);
  }
  const size = DTYPE_BYTES[dtype];
  const count = entry.byteLength / size;
  const out = new Float32Array(count);
  const outBits = new Uint32Array(out.buffer);
  const handle = await openForReading(file, "the safetensors file");
  try {
    const chunk = new Uint8Array(Math.min(entry.byteLength, CHUNK_BYTES - (CHUNK_BYTES % size)));
    const view = new DataView(chunk.buffer);
    const table = dtype === "F16" ? float16Table() : new Uint32Array(0);
    for (let done = 0; done < entry.byteLength; ) {
      const want = Math.min(chunk.length, entry.byteLength - done);
      const got = await readFully(handle, chunk.subarray(0, want), entry.byteOffset + done);
      if (got !== want) {
        throw new LensInputError(file, `the file ended while reading tensor ${q(name)} (it changed after its header was read?): ${REDOWNLOAD}`);
      }
      const first = done / size;
      const n = want / size;
      switch (dtype) {
        case "F32":
          for (let i = 0; i < n; i++) outBits[first + i] = view.getUint32(i * 4, true);
          break;
        case "F16":
          for (let i = 0; i < n; i++) outBits[first + i] = table[view.getUint16(i * 2, true)];
          break;
        case "BF16":
          // bfloat16 is the upper half of a float32.
          for (let i = 0; i < n; i++) outBits[first + i] = view.getUint16(i * 2, true) << 16;
          break;
        case "F64":
          for (let i = 0; i < n; i++) out[first + i] = view.getFloat64(i * 8, true);
          break;
      }
      done += want;
    }
  } catch (e) {
    if (e instanceof LensInputError) throw e;
    throw new LensInputError(file, `cannot read tensor ${q(name)} (${firstLine((e as Error).message)}): check the file's permissions`);
  } finally {
    await handle.close();
  }
  return out;
}
