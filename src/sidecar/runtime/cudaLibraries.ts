/**
 * Where onnxruntime-node's CUDA provider libraries are, and how onnxruntime is made to load
 * them from a folder of our own.
 *
 * onnxruntime loads a provider library from its "runtime path", the folder of the
 * libonnxruntime.so.1 it was loaded from, as dladdr names it (provider_bridge_ort.cc, via
 * Env::GetRuntimePath): a symbolic link's folder, not its target's. onnxruntime-node's own
 * postinstall copies the libraries there (bin/napi-v6/linux/x64). An extension's install folder
 * is no place to write to, so the extension downloads them into its storage instead, and the
 * sidecar gets that folder in LOGIT_LENS_CUDA_PROVIDER_DIR. It then loads onnxruntime through a
 * "binding view": a private folder of symbolic links to the binding, libonnxruntime.so.1 and
 * the provider libraries side by side. The binding finds libonnxruntime.so.1 through its
 * RUNPATH $ORIGIN, which is the view, so the runtime path is the view and the providers load
 * from there (seen with the CPU provider running and a stand-in provider library dlopened from
 * the view: test/unit/cudaProvider.test.ts).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { CUDA_HOWTO, CUDA_LIBRARIES, CUDA_MANIFEST, CUDA_PROVIDER_DIR_ENV, type CudaManifest } from "../../shared/cudaProvider";

export interface OrtPackage {
  /** onnxruntime-node's package folder. */
  dir: string;
  /** Its native folder for this platform: the binding and libonnxruntime.so.1. */
  binDir: string;
  version: string;
}

export const BINDING_FILE = "onnxruntime_binding.node";
export const CORE_LIBRARY = "libonnxruntime.so.1";

export function ortPackage(): OrtPackage {
  const manifest = createRequire(__filename).resolve("onnxruntime-node/package.json");
  const dir = path.dirname(manifest);
  const version = (JSON.parse(fs.readFileSync(manifest, "utf8")) as { version: string }).version;
  return { dir, binDir: path.join(dir, "bin", "napi-v6", process.platform, process.arch), version };
}

export type CudaLibraries =
  /** Installed beside libonnxruntime.so.1 by onnxruntime-node's own postinstall. */
  | { state: "bundled"; dir: string }
  /** In the folder LOGIT_LENS_CUDA_PROVIDER_DIR names; onnxruntime loads them through a binding view. */
  | { state: "folder"; dir: string }
  | { state: "missing"; reason: string }
  | { state: "invalid"; dir: string; reason: string };

export function findCudaLibraries(pkg: OrtPackage, env: NodeJS.ProcessEnv = process.env, platform = `${process.platform}-${process.arch}`): CudaLibraries {
  if (platform !== "linux-x64") {
    return { state: "missing", reason: `onnxruntime-node has no CUDA provider for ${platform} (only for linux-x64)` };
  }
  const present = (dir: string) => CUDA_LIBRARIES.filter((f) => fs.existsSync(path.join(dir, f)));
  if (present(pkg.binDir).length === CUDA_LIBRARIES.length) return { state: "bundled", dir: pkg.binDir };
  const folder = env[CUDA_PROVIDER_DIR_ENV];
  if (!folder || !fs.existsSync(folder)) {
    return { state: "missing", reason: `the CUDA provider libraries are not installed (looked in ${pkg.binDir}${folder ? ` and ${folder}` : ""}): ${CUDA_HOWTO}` };
  }
  const found = present(folder);
  if (found.length < CUDA_LIBRARIES.length) {
    const lacking = CUDA_LIBRARIES.filter((f) => !found.includes(f));
    return { state: "invalid", dir: folder, reason: `${folder} has no ${lacking.join(" or ")}: install the CUDA provider again (${CUDA_HOWTO})` };
  }
  const manifestFile = path.join(folder, CUDA_MANIFEST);
  if (fs.existsSync(manifestFile)) {
    let manifest: CudaManifest;
    try {
      manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8")) as CudaManifest;
    } catch (e) {
      return { state: "invalid", dir: folder, reason: `${manifestFile} is not JSON (${e instanceof Error ? e.message : String(e)}): install the CUDA provider again` };
    }
    if (manifest.onnxruntimeVersion !== pkg.version) {
      return {
        state: "invalid",
        dir: folder,
        reason: `${folder} holds the CUDA provider of onnxruntime ${manifest.onnxruntimeVersion}, but the sidecar runs onnxruntime-node ${pkg.version}: install the CUDA provider again`,
      };
    }
  }
  return { state: "folder", dir: folder };
}

/**
 * A private folder of symbolic links: onnxruntime-node's binding and libonnxruntime.so.1, and
 * the provider libraries of `providerDir`. Removed when the process exits.
 */
export function makeBindingView(providerDir: string, pkg: OrtPackage): string {
  const tag = crypto.createHash("sha256").update(`${providerDir}\0${pkg.binDir}`).digest("hex").slice(0, 8);
  const view = fs.mkdtempSync(path.join(os.tmpdir(), `logit-lens-ort-${tag}-`));
  process.once("exit", () => fs.rmSync(view, { recursive: true, force: true }));
  for (const f of [BINDING_FILE, CORE_LIBRARY]) fs.symlinkSync(path.join(pkg.binDir, f), path.join(view, f));
  for (const f of CUDA_LIBRARIES) fs.symlinkSync(path.resolve(providerDir, f), path.join(view, f));
  return view;
}

/** The first meaningful line of what onnxruntime wrote to stderr about an error (its log lines carry the real cause). */
export function ortErrorDetail(stderr: string): string | undefined {
  const lines = stderr.replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => /\[E:onnxruntime/.test(l));
  const line = lines[lines.length - 1];
  if (!line) return undefined;
  const fail = line.indexOf(" : FAIL : ");
  const text = fail >= 0 ? line.slice(fail + " : FAIL : ".length) : line.replace(/^.*?\] /, "");
  return text.trim().slice(0, 400);
}
