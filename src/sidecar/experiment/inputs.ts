/**
 * An experiment's inputs, resolved to rows: image files, folders, glob patterns and manifests
 * (JSONL or CSV) become a list of {image, columns} in a fixed order. Paths resolve relative to
 * the experiment file (manifest image paths relative to the manifest). Every problem is a
 * LensInputError naming the file to fix. Manifests are read, and every image is checked, as
 * readInput does it: regular files only (links to them followed), with a size cap, so a FIFO
 * or a device named as an image or a manifest is refused when the plan is made.
 */
import type { Dirent } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { ExperimentInput } from "../../shared/experiment";
import { LensInputError } from "../errors";
import { checkRegularFile, MAX_IMAGE_BYTES, MAX_TEXT_INPUT_BYTES, readInputText } from "../util/readInput";

export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"];

export interface InputRow {
  /** Absolute path of the image. */
  image: string;
  /** Manifest columns (image column left out) and the input's groups. */
  columns: Record<string, string>;
  /** Where the row came from, for error messages: "file" or "file:line". */
  source: string;
}

export async function resolveInputs(inputs: readonly ExperimentInput[], baseDir: string, experimentFile: string): Promise<InputRow[]> {
  const rows: InputRow[] = [];
  for (const input of inputs) {
    const got = input.kind === "manifest" ? await manifestRows(path.resolve(baseDir, input.manifest), input.imageColumn) : await imageRows(input.images, baseDir, experimentFile);
    const limited = input.limit ? got.slice(0, input.limit) : got;
    for (const r of limited) {
      await checkRegularFile(r.image, { what: r.source === r.image ? "image" : `image of ${r.source}`, maxBytes: MAX_IMAGE_BYTES, fix: "fix the experiment's inputs" });
      rows.push({ ...r, columns: { ...input.groups, ...r.columns } });
    }
  }
  return rows;
}

async function imageRows(spec: string, baseDir: string, experimentFile: string): Promise<InputRow[]> {
  let files: string[];
  try {
    files = isGlob(spec) ? await globFiles(spec, baseDir) : await filesAt(path.resolve(baseDir, spec), experimentFile);
  } catch (e) {
    if (e instanceof GlobError) throw new LensInputError(experimentFile, `input pattern "${spec}": ${e.message}: fix the pattern (* ? ** [abc] {a,b})`);
    throw e;
  }
  const images = files.filter(isImage);
  if (!images.length) throw new LensInputError(experimentFile, `input "${spec}" matches no image (${IMAGE_EXTENSIONS.join(", ")}): fix the path or pattern`);
  return images.map((image) => ({ image, columns: {}, source: image }));
}

async function filesAt(target: string, experimentFile: string): Promise<string[]> {
  const stat = await fs.stat(target).catch(() => undefined);
  if (!stat) throw new LensInputError(experimentFile, `input ${target} does not exist: fix the path (relative paths start at the experiment file's folder)`);
  if (!stat.isDirectory()) return [target];
  let entries: Dirent[];
  try {
    entries = await fs.readdir(target, { withFileTypes: true });
  } catch (e) {
    throw new LensInputError(target, `the input folder cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}): check its permissions`);
  }
  const files: string[] = [];
  for (const e of entries) if (await isFileEntry(e, target)) files.push(path.join(target, e.name));
  return files.sort(byPath);
}

/** A regular file, or a symbolic link to one (data sets are often kept as links). */
async function isFileEntry(e: Dirent, dir: string): Promise<boolean> {
  if (e.isFile()) return true;
  if (!e.isSymbolicLink()) return false;
  const stat = await fs.stat(path.join(dir, e.name)).catch(() => undefined);
  return stat?.isFile() ?? false;
}

export function isImage(file: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

// --- Globs -----------------------------------------------------------------------------------

export function isGlob(spec: string): boolean {
  return /[*?[{]/.test(spec);
}

/**
 * Files under baseDir matching a glob: `*` and `?` within a path segment, `**` across segments,
 * `[abc]` classes and `{a,b}` alternatives. Sorted by path. Dot-files match only when named.
 */
export async function globFiles(pattern: string, baseDir: string): Promise<string[]> {
  const normalized = pattern.split(path.sep).join("/");
  const absolute = path.posix.isAbsolute(normalized) ? normalized : `${baseDir.split(path.sep).join("/")}/${normalized}`;
  const segments = absolute.split("/");
  const firstGlob = segments.findIndex(isGlob);
  const root = segments.slice(0, firstGlob).join("/") || "/";
  const re = globToRegExp(segments.slice(firstGlob).join("/"));
  const recursive = segments.slice(firstGlob).some((s) => s.includes("**")) || segments.length - firstGlob > 1;
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (recursive && !e.name.startsWith(".")) await walk(path.join(dir, e.name), r);
      } else if (re.test(r) && (await isFileEntry(e, dir))) {
        out.push(path.join(dir, e.name));
      }
    }
  };
  await walk(root, "");
  return out.sort(byPath);
}

/** Thrown by globToRegExp for a pattern it cannot read (an unclosed "[" or "{"). */
export class GlobError extends Error {}

/** A glob as a RegExp; a malformed pattern throws GlobError saying what is wrong. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  let inClass = false;
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (inClass) {
      if (c === "]") inClass = false;
      re += c === "\\" ? "\\\\" : c;
      continue;
    }
    if (c === "*") {
      if (glob[i + 1] === "*") {
        // "**/" matches zero or more whole directories; a trailing "**" anything
        const slash = glob[i + 2] === "/";
        re += slash ? "(?:[^/.][^/]*/)*" : ".*";
        i += slash ? 2 : 1;
      } else {
        re += i === 0 || glob[i - 1] === "/" ? "(?!\\.)[^/]*" : "[^/]*";
      }
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      inClass = true;
      re += glob[i + 1] === "!" ? (i++, "[^") : "[";
    } else if (c === "{") {
      braces++;
      re += "(?:";
    } else if (c === "}" && braces > 0) {
      braces--;
      re += ")";
    } else if (c === "," && braces > 0) re += "|";
    else re += c.replace(/[.+^$()|\\]/g, "\\$&");
  }
  if (inClass) throw new GlobError(`"[" opens a character class that is never closed with "]"`);
  if (braces > 0) throw new GlobError(`"{" opens alternatives that are never closed with "}"`);
  try {
    return new RegExp(`^${re}$`);
  } catch {
    throw new GlobError("it is not a pattern this reader understands (a range such as [z-a]?)");
  }
}

// --- Manifests -------------------------------------------------------------------------------

async function manifestRows(file: string, imageColumn: string): Promise<InputRow[]> {
  const text = await readInputText(file, { what: "manifest", maxBytes: MAX_TEXT_INPUT_BYTES, fix: "fix the manifest path (relative to the experiment file)" });
  const records = file.toLowerCase().endsWith(".csv") ? csvRecords(text, file) : jsonlRecords(text, file);
  if (!records.length) throw new LensInputError(file, `manifest has no rows: add one row per item (${file.toLowerCase().endsWith(".csv") ? "a header line, then one line per item" : "one JSON object per line"}), or remove the input`);
  const dir = path.dirname(file);
  return records.map(({ values, line }) => {
    const where = `${file}:${line}`;
    const image = Object.hasOwn(values, imageColumn) ? values[imageColumn] : undefined;
    if (image === undefined || image === "") throw new LensInputError(where, `row has no "${imageColumn}" column: give every row an image path, or set imageColumn`);
    // fromEntries: a column named "__proto__" stays a column
    const columns = Object.fromEntries(Object.entries(values).filter(([k]) => k !== imageColumn));
    return { image: path.resolve(dir, image), columns, source: where };
  });
}

function jsonlRecords(text: string, file: string): { values: Record<string, string>; line: number }[] {
  const out: { values: Record<string, string>; line: number }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (!raw.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      throw new LensInputError(`${file}:${i + 1}`, "is not a JSON object: write one JSON object per line");
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new LensInputError(`${file}:${i + 1}`, "is not a JSON object: write one JSON object per line");
    const entries = Object.entries(v as Record<string, unknown>);
    for (const [k, x] of entries) {
      if (x === null || typeof x === "object") throw new LensInputError(`${file}:${i + 1}`, `column "${k}" is not a string or number: manifest values must be plain text`);
    }
    out.push({ values: Object.fromEntries(entries.map(([k, x]) => [k, String(x)])), line: i + 1 });
  });
  return out;
}

/** RFC 4180 CSV: a header row, quoted fields with "" escapes, CRLF or LF. */
export function parseCsv(text: string): { cells: string[]; line: number }[] {
  const rows: { cells: string[]; line: number }[] = [];
  let cells: string[] = [];
  let cell = "";
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // byte-order mark
  const endRow = () => {
    cells.push(cell);
    if (cells.length > 1 || cells[0] !== "") rows.push({ cells, line: rowLine });
    cells = [];
    cell = "";
  };
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === "\n") line++;
        cell += c;
      }
    } else if (c === '"' && cell === "") quoted = true;
    else if (c === ",") {
      cells.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      endRow();
      line++;
      rowLine = line;
    } else cell += c;
  }
  if (quoted) throw new Error(`a quoted field opened on line ${rowLine} is never closed`);
  if (cell !== "" || cells.length) endRow();
  return rows;
}

function csvRecords(text: string, file: string): { values: Record<string, string>; line: number }[] {
  let rows;
  try {
    rows = parseCsv(text);
  } catch (e) {
    throw new LensInputError(file, `${(e as Error).message}: fix the quoting`);
  }
  if (!rows.length) return [];
  const header = rows[0].cells.map((h) => h.trim());
  return rows.slice(1).map(({ cells, line }) => {
    if (cells.length !== header.length) throw new LensInputError(`${file}:${line}`, `has ${cells.length} fields but the header has ${header.length}: quote fields that contain commas`);
    return { values: Object.fromEntries(header.map((h, j) => [h, cells[j]])), line };
  });
}
