/**
 * Reading an experiment file, and where its results go. Light (node:fs and node:path only), so
 * the extension host uses the same rules as the sidecar without bundling the runtime.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { type LensExperiment, parseExperiment } from "../../shared/experiment";
import { LensInputError } from "../errors";

/**
 * Reads and validates a .lens.json file (or `text`, an editor's unsaved contents). A missing
 * file is a LensInputError; an invalid one throws InvalidExperimentError with every problem.
 */
export async function readExperimentFile(file: string, text?: string): Promise<LensExperiment> {
  let source = text;
  if (source === undefined) {
    try {
      source = await fs.readFile(file, "utf8");
    } catch {
      throw new LensInputError(file, "experiment file not found: check the path");
    }
  }
  return parseExperiment(source, file);
}

export function outputFolder(experiment: LensExperiment, file: string): string {
  const dir = path.dirname(path.resolve(file));
  if (experiment.output.folder) return path.resolve(dir, experiment.output.folder);
  return path.join(dir, `${path.basename(file).replace(/\.lens\.json$/i, "").replace(/\.json$/i, "")}.results`);
}
