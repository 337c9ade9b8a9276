/**
 * Writes a file so that readers see either the old content or the new, never a half-written
 * one: write a temporary file beside it, flush it to disk, then rename it over the target.
 * Renaming replaces a symbolic link at the target rather than writing through it, and the
 * temporary file is created exclusively (a link planted under its name is not followed).
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { LensInputError } from "../errors";

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(tmp, "wx");
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.rename(tmp, target);
  } catch (e) {
    await handle?.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new LensInputError(dir, "the output folder does not exist: create it or choose another --out");
    if (code === "EISDIR") throw new LensInputError(target, "is a folder: name a file to write, or choose another --out");
    if (code === "EACCES" || code === "EPERM") throw new LensInputError(target, "cannot write here (permission denied): choose another --out");
    throw e;
  }
}
