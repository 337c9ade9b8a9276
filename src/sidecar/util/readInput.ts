/**
 * Reads a file the user pointed at (an image, a manifest, an experiment) without trusting what it
 * is: only a regular file is read (a FIFO would block the sidecar until something writes to it,
 * /dev/zero would be read forever), and only up to a size cap, checked before reading and again
 * while reading (a file may grow). Symbolic links to regular files are followed: users keep data
 * sets as links. Every refusal is a one-line LensInputError naming the file and what to do.
 */
import { constants } from "node:fs";
import * as fs from "node:fs/promises";
import { LensInputError } from "../errors";

export interface ReadInputOptions {
  /** Largest size accepted, in bytes. */
  maxBytes: number;
  /** What the file is, for messages: "image", "manifest", ... */
  what: string;
  /** What to do when it is refused; default: "pick a regular file". */
  fix?: string;
}

export const MIB = 1024 * 1024;
/** Images: a 16k x 16k PNG is far below this; a camera RAW is not an image we decode anyway. */
export const MAX_IMAGE_BYTES = 256 * MIB;
/** Manifests, experiment files, configs and other text inputs. */
export const MAX_TEXT_INPUT_BYTES = 64 * MIB;

export function formatBytes(n: number): string {
  if (n >= 1024 * MIB) return `${(n / (1024 * MIB)).toFixed(1)} GiB`;
  if (n >= MIB) return `${(n / MIB).toFixed(n >= 10 * MIB ? 0 : 1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} bytes`;
}

function kindOf(stat: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (stat.isDirectory()) return "a folder";
  if (stat.isFIFO()) return "a named pipe (FIFO)";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "a device";
  if (stat.isSocket()) return "a socket";
  return "not a regular file";
}

/** Throws unless `file` is (or links to) a regular file of at most maxBytes; returns its size. */
export async function checkRegularFile(file: string, opts: ReadInputOptions): Promise<number> {
  let stat;
  try {
    stat = await fs.stat(file);
  } catch (e) {
    throw notReadable(file, opts, e);
  }
  if (!stat.isFile()) throw new LensInputError(file, `${opts.what} is ${kindOf(stat)}, not a regular file: ${opts.fix ?? "pick a regular file"}`);
  if (stat.size > opts.maxBytes) throw tooLarge(file, opts, stat.size);
  return stat.size;
}

/** Reads a regular file of at most maxBytes (see the module comment). */
export async function readInputFile(file: string, opts: ReadInputOptions): Promise<Buffer> {
  await checkRegularFile(file, opts);
  let handle: fs.FileHandle;
  try {
    // O_NONBLOCK: if the path was swapped for a FIFO after the check, open does not wait for a writer
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw notReadable(file, opts, e);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new LensInputError(file, `${opts.what} is ${kindOf(stat)}, not a regular file: ${opts.fix ?? "pick a regular file"}`);
    if (stat.size > opts.maxBytes) throw tooLarge(file, opts, stat.size);
    const chunks: Buffer[] = [];
    let total = 0;
    const chunk = Buffer.allocUnsafe(Math.min(Math.max(stat.size + 1, 64 * 1024), 16 * MIB));
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > opts.maxBytes) throw tooLarge(file, opts, total);
      chunks.push(Buffer.from(chunk.subarray(0, bytesRead)));
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
  } catch (e) {
    if (e instanceof LensInputError) throw e;
    throw notReadable(file, opts, e);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** readInputFile as UTF-8 text, with a leading byte-order mark removed. */
export async function readInputText(file: string, opts: ReadInputOptions): Promise<string> {
  const text = (await readInputFile(file, opts)).toString("utf8");
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function tooLarge(file: string, opts: ReadInputOptions, size: number): LensInputError {
  return new LensInputError(file, `${opts.what} is ${formatBytes(size)}, over the ${formatBytes(opts.maxBytes)} limit: ${opts.fix ?? "pick a smaller file"}`);
}

function notReadable(file: string, opts: ReadInputOptions, e: unknown): LensInputError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new LensInputError(file, `${opts.what} not found: check the path`);
  if (code === "EISDIR") return new LensInputError(file, `${opts.what} is a folder, not a regular file: ${opts.fix ?? "pick a regular file"}`);
  if (code === "EACCES" || code === "EPERM") return new LensInputError(file, `${opts.what} cannot be read (permission denied): check its permissions`);
  if (code === "ELOOP") return new LensInputError(file, `${opts.what} is a symbolic link that loops: fix the link`);
  return new LensInputError(file, `${opts.what} cannot be read (${code ?? (e instanceof Error ? e.message : String(e))}): check the path and the file`);
}
