/**
 * Just enough of the zip format to take a few files out of a NuGet package (a zip) without
 * reading it into memory: the central directory from the file's end (zip64 included), then each
 * wanted entry streamed through inflate, its CRC-32 and size checked against the directory.
 */
import * as fs from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

export class ZipError extends Error {}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

async function readAt(fd: fs.promises.FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fd.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError("a zip64 field is out of range");
  return Number(v);
}

/** Every entry of the archive's central directory. */
export async function readZipDirectory(file: string): Promise<ZipEntry[]> {
  const fd = await fs.promises.open(file, "r");
  try {
    const { size } = await fd.stat();
    const tailLength = Math.min(size, 22 + 0xffff);
    const tail = await readAt(fd, size - tailLength, tailLength);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new ZipError("not a zip archive (no end of central directory)");
    let count = tail.readUInt16LE(eocd + 10);
    let dirSize = tail.readUInt32LE(eocd + 12);
    let dirOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
      const at = eocd - 20;
      if (at < 0 || tail.readUInt32LE(at) !== ZIP64_LOCATOR) throw new ZipError("a zip64 archive without its zip64 locator");
      const z = await readAt(fd, u64(tail, at + 8), 56);
      if (z.length < 56 || z.readUInt32LE(0) !== ZIP64_EOCD) throw new ZipError("a zip64 archive without its zip64 end record");
      count = u64(z, 32);
      dirSize = u64(z, 40);
      dirOffset = u64(z, 48);
    }
    if (dirOffset + dirSize > size) throw new ZipError("the central directory lies past the end of the file (a truncated download?)");
    const dir = await readAt(fd, dirOffset, dirSize);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (p + 46 > dir.length || dir.readUInt32LE(p) !== CENTRAL) throw new ZipError(`central directory entry ${n} is damaged`);
      const nameLength = dir.readUInt16LE(p + 28);
      const extraLength = dir.readUInt16LE(p + 30);
      const commentLength = dir.readUInt16LE(p + 32);
      const entry: ZipEntry = {
        name: dir.toString("utf8", p + 46, p + 46 + nameLength),
        method: dir.readUInt16LE(p + 10),
        crc32: dir.readUInt32LE(p + 16),
        compressedSize: dir.readUInt32LE(p + 20),
        size: dir.readUInt32LE(p + 24),
        localHeaderOffset: dir.readUInt32LE(p + 42),
      };
      // zip64 extended information: the 64-bit values of the fields saturated above, in this order
      for (let e = p + 46 + nameLength; e + 4 <= p + 46 + nameLength + extraLength; ) {
        const id = dir.readUInt16LE(e);
        const length = dir.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          for (const field of ["size", "compressedSize", "localHeaderOffset"] as const) {
            if (entry[field] === 0xffffffff && q + 8 <= e + 4 + length) {
              entry[field] = u64(dir, q);
              q += 8;
            }
          }
        }
        e += 4 + length;
      }
      entries.push(entry);
      p += 46 + nameLength + extraLength + commentLength;
    }
    return entries;
  } finally {
    await fd.close();
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Writes `entry` of `file` to `dest`, failing when its bytes do not match the directory's CRC-32 and size. */
export async function extractZipEntry(file: string, entry: ZipEntry, dest: string, signal?: AbortSignal): Promise<void> {
  if (entry.method !== 0 && entry.method !== 8) throw new ZipError(`${entry.name} uses compression method ${entry.method} (only stored and deflated are read)`);
  const fd = await fs.promises.open(file, "r");
  let dataStart: number;
  try {
    const local = await readAt(fd, entry.localHeaderOffset, 30);
    if (local.length < 30 || local.readUInt32LE(0) !== LOCAL) throw new ZipError(`${entry.name}: its local header is damaged`);
    dataStart = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  } finally {
    await fd.close();
  }
  if (entry.compressedSize === 0) {
    await fs.promises.writeFile(dest, new Uint8Array(0));
    if (entry.size !== 0) throw new ZipError(`${entry.name} is damaged (no data for ${entry.size} bytes)`);
    return;
  }
  let crc = 0;
  let bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      crc = crc32(chunk, crc);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const source = fs.createReadStream(file, { start: dataStart, end: dataStart + entry.compressedSize - 1 });
  const stages = entry.method === 8 ? [source, zlib.createInflateRaw(), check] : [source, check];
  try {
    await pipeline([...stages, fs.createWriteStream(dest)], { signal });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ZipError(`${entry.name} does not inflate (${e instanceof Error ? e.message : String(e)})`);
  }
  if (bytes !== entry.size || crc !== entry.crc32) throw new ZipError(`${entry.name} is damaged (CRC-32 or size differs from the archive's directory)`);
}
