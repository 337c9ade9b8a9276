/**
 * Reading an experiment file, and where its results go. Light (node:fs and node:path only), so
 * the extension host uses the same rules as the sidecar without bundling the runtime.
 */
import * as path from "node:path";
import { type LensExperiment, parseExperiment } from "../../shared/experiment";
import { MIB, readInputText } from "../util/readInput";

/** A .lens.json is a few kilobytes; anything near this is not an experiment file. */
export const MAX_EXPERIMENT_BYTES = 16 * MIB;

/**
 * Reads and validates a .lens.json file (or `text`, an editor's unsaved contents). A missing
 * or unreadable file (a folder, a FIFO, a huge one) is a LensInputError; an invalid one throws
 * InvalidExperimentError with every problem.
 */
export async function readExperimentFile(file: string, text?: string): Promise<LensExperiment> {
  const source = text ?? (await readInputText(file, { what: "experiment file", maxBytes: MAX_EXPERIMENT_BYTES, fix: "pick a .lens.json file" }));
  return parseExperiment(source, file);
}

export function outputFolder(experiment: LensExperiment, file: string): string {
  const dir = path.dirname(path.resolve(file));
  if (experiment.output.folder) return path.resolve(dir, experiment.output.folder);
  return path.join(dir, `${path.basename(file).replace(/\.lens\.json$/i, "").replace(/\.json$/i, "")}.results`);
}

/**
 * Whether a results folder lies outside the experiment file's folder. A sweep writes and (with
 * --fresh) deletes files there, so a folder elsewhere, named by a file someone else wrote, needs
 * the user's say-so: the editor asks, the CLI wants --allow-outside.
 */
export function outputOutsideExperiment(outDir: string, file: string): boolean {
  const rel = path.relative(path.dirname(path.resolve(file)), path.resolve(outDir));
  return rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel);
}
