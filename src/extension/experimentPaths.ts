/**
 * Which files and folders a .lens.json experiment reads or writes, resolved relative to the
 * file, and which of them lie outside the workspace (those need the user's confirmation before
 * a preview or a run touches them). The results folder needs it also when it lies outside the
 * experiment file's folder: a sweep writes files there, and the CLI wants --allow-outside for
 * the same. No vscode import: unit-tested in plain Node.
 */
import * as path from "node:path";
import type { LensExperiment } from "../shared/experiment";
import { outputFolder, outputOutsideExperiment } from "../sidecar/experiment/paths";

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

/**
 * The paths a user must allow before a preview or a run: those outside every workspace folder,
 * and a results folder outside the experiment file's folder, each with the reason. A preview
 * reads the model and one input and writes nothing, so its results folder never needs consent:
 * only a run (`purpose` "run") asks about it.
 */
export function pathsNeedingConsent(paths: readonly ExperimentPath[], workspaceFolders: readonly string[], file: string, purpose: "run" | "preview" = "run"): (ExperimentPath & { reason: string })[] {
  const out: (ExperimentPath & { reason: string })[] = [];
  for (const p of paths) {
    if (purpose === "preview" && p.role === "output") continue;
    if (!workspaceFolders.some((w) => isInside(p.path, w))) out.push({ ...p, reason: "outside the workspace" });
    else if (p.role === "output" && outputOutsideExperiment(p.path, file)) out.push({ ...p, reason: "outside the experiment's folder; a run writes files there" });
  }
  return out;
}

/**
 * The folder a save dialog opens in for an export: the workspace folder that holds the image or
 * the experiment file, else the first workspace folder, else (no workspace) the image's folder,
 * else the experiment file's folder; undefined when there is none of these.
 */
export function exportFolder(workspaceFolders: readonly string[], imagePath?: string, sourceFile?: string): string | undefined {
  const near = [imagePath, sourceFile].filter((p): p is string => !!p).map((p) => path.resolve(p));
  const holding = workspaceFolders.find((w) => near.some((p) => isInside(p, w)));
  if (holding) return holding;
  if (workspaceFolders.length) return workspaceFolders[0];
  return near.length ? path.dirname(near[0]) : undefined;
}

/**
 * The previewed item's image as an absolute path, for the panel's webview URI: the sidecar's
 * `imagePath`; from an older sidecar, its `image` (relative to the file's folder) resolved.
 * A bare relative name would become a URI at the file system's root.
 */
export function previewImagePath(file: string, item: { image: string; imagePath?: string }): string | undefined {
  if (item.imagePath && path.isAbsolute(item.imagePath)) return item.imagePath;
  return item.image ? path.resolve(path.dirname(file), item.image) : undefined;
}
