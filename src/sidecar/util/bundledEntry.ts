/**
 * Where the program of a helper process or thread is: dist/<name>.js beside the bundle that asks
 * (dist/ for the sidecar, dist/bench/ for the benchmarks). Run from the TypeScript sources
 * (vitest), the entry is bundled once with esbuild, a development dependency the shipped bundle
 * never reaches, into the temporary folder under a name that changes with its code.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";

const built = new Map<string, string>();

/**
 * `name` (e.g. "templateWorker"): the bundle dist/<name>.js near `here` (the caller's
 * __dirname), else <name>.ts in `here` bundled from the sources.
 */
export function bundledEntry(name: string, here: string): string {
  for (const candidate of [path.join(here, `${name}.js`), path.join(here, "..", `${name}.js`)]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  const source = path.join(here, `${name}.ts`);
  if (!fs.existsSync(source)) throw new Error(`${name}.js is missing beside ${here}: rebuild with npm run build`);
  let file = built.get(source);
  if (!file) built.set(source, (file = buildFromSources(name, source)));
  return file;
}

function buildFromSources(name: string, source: string): string {
  const esbuild = createRequire(__filename)("esbuild") as typeof import("esbuild");
  const code = esbuild.buildSync({ entryPoints: [source], bundle: true, platform: "node", format: "cjs", target: "node20", write: false, logLevel: "silent" }).outputFiles[0].text;
  const file = path.join(os.tmpdir(), `logit-lens-${name}-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.cjs`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, file);
  }
  return file;
}
