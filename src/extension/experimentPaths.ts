/**
 * Which files and folders a .lens.json experiment reads or writes, resolved relative to the
 * file, and which of them lie outside the workspace (those need the user's confirmation before
 * a preview or a run touches them). No vscode import: unit-tested in plain Node.
 */
import * as path from "node:path";
import type { LensExperiment } from "../shared/experiment";
import { outputFolder } from "../sidecar/experiment/paths";

export interface ExperimentPath {
  /** What the path is for: "model", "input", "manifest" or "output". */
  role: "model" | "input" | "manifest" | "output";
  /** The absolute path (for a glob, the folder it starts from). */
  path: string;
}

/** The part of a glob before its first wildcard, as a folder ("data/*.png" -> "data"). */
export function globBase(pattern: string): string {
  const parts = pattern.split(/[\\/]/u);
  const fixed: string[] = [];
  for (const part of parts) {
    if (/[*?[\]{}]/u.test(part)) return fixed.join("/") || ".";
    fixed.push(part);
  }
  return pattern;
}

export function experimentPaths(experiment: LensExperiment, file: string): ExperimentPath[] {
  const dir = path.dirname(path.resolve(file));
  const at = (p: string) => path.resolve(dir, p);
  const out: ExperimentPath[] = [];
  if (experiment.model !== "default") out.push({ role: "model", path: at(experiment.model) });
  for (const input of experiment.inputs) {
    if (input.kind === "images") out.push({ role: "input", path: at(globBase(input.images)) });
    else out.push({ role: "manifest", path: at(input.manifest) });
  }
  out.push({ role: "output", path: outputFolder(experiment, file) });
  return out;
}

/** Whether `p` is `folder` or inside it (no "..", not on another drive). */
export function isInside(p: string, folder: string): boolean {
  const rel = path.relative(folder, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** The experiment's paths outside every workspace folder (all of them when there is none). */
export function pathsOutside(paths: readonly ExperimentPath[], workspaceFolders: readonly string[]): ExperimentPath[] {
  return paths.filter((p) => !workspaceFolders.some((w) => isInside(p.path, w)));
}
