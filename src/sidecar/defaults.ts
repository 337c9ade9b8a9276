/**
 * Where the bundled model and samples live. The package root is found from this file's folder
 * upwards (dist/ when bundled, src/sidecar/ under the tests), so it works from a clone, an npm
 * install and an installed VSIX alike.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const BUNDLED_MODEL_NAME = "lens-scenes-tiny";
const PACKAGE_NAME = "logit-lens-vlm";

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    try {
      if ((JSON.parse(fs.readFileSync(manifest, "utf8")) as { name?: string }).name === PACKAGE_NAME) return (root = dir);
    } catch {
      // not here: keep climbing
    }
    if (path.dirname(dir) === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package folder above ${__dirname}`);
  }
}

/** The model used when none is configured: LOGIT_LENS_MODEL if set, else the bundled one. */
export function defaultModelFolder(): string {
  return process.env["LOGIT_LENS_MODEL"] || path.join(packageRoot(), "media", "models", BUNDLED_MODEL_NAME);
}

export function samplesFolder(): string {
  return path.join(packageRoot(), "media", "samples");
}
