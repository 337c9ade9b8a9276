/**
 * Where an experiment's results go. Light (node:path only), so the extension host uses the same
 * rule as the sidecar without bundling the runtime.
 */
import * as path from "node:path";
import type { LensExperiment } from "../../shared/experiment";

export function outputFolder(experiment: LensExperiment, file: string): string {
  const dir = path.dirname(path.resolve(file));
  if (experiment.output.folder) return path.resolve(dir, experiment.output.folder);
  return path.join(dir, `${path.basename(file).replace(/\.lens\.json$/i, "").replace(/\.json$/i, "")}.results`);
}
