/**
 * The extension's settings (package.json "contributes.configuration"). In an untrusted
 * workspace VS Code ignores workspace values of the restricted ones (model, device, dtype,
 * threads, cache folder: package.json "capabilities.untrustedWorkspaces"), so a cloned repository cannot point
 * the sidecar at a folder of its choosing.
 */
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { LensSettings } from "../shared/lensRecord";
import { DTYPE_CHOICES, type DtypeChoice, type OpenModelParams } from "../shared/protocol";

export const SECTION = "logitLens";

export type Device = "auto" | "cpu" | "cuda" | "webgpu";

export interface LensConfig {
  /** A Hugging Face model folder; "" = the bundled model. */
  model: string;
  device: Device;
  /** What the model computes in (OpenModelParams.dtype). */
  dtype: DtypeChoice;
  threads: number;
  topK: number;
  maxNewTokens: number;
  /** Whether an image run asks for per-patch attention and the patch lens (the image overlay). */
  imageOverlay: boolean;
  /** Where run records are kept (for panels restored after a reload); "" = extension storage. */
  cacheFolder: string;
}

export function readConfig(): LensConfig {
  const c = vscode.workspace.getConfiguration(SECTION);
  return {
    model: expandHome(c.get<string>("model", "").trim()),
    device: c.get<Device>("device", "auto"),
    dtype: oneOf(c.get<string>("dtype", "auto"), DTYPE_CHOICES, "auto"),
    threads: Math.max(0, Math.floor(c.get<number>("threads", 0))),
    topK: clampInt(c.get<number>("topK", 10), 1, 100),
    maxNewTokens: clampInt(c.get<number>("maxNewTokens", 8), 0, 512),
    imageOverlay: c.get<boolean>("imageOverlay", true) !== false,
    cacheFolder: expandHome(c.get<string>("cacheFolder", "").trim()),
  };
}

export function openModelParams(config: LensConfig = readConfig()): OpenModelParams {
  return { folder: config.model, device: config.device, dtype: config.dtype, ...(config.threads > 0 ? { threads: config.threads } : {}) };
}

/** The lens settings of a run on an image from the editor (the "Run Logit Lens" command, a panel's rerun). */
export function runSettings(config: LensConfig = readConfig()): Partial<LensSettings> {
  return { topK: config.topK, maxNewTokens: config.maxNewTokens, ...(config.imageOverlay ? IMAGE_OVERLAY : {}) };
}

/** What the image overlay needs in a record: attention over the image tokens, and their own lens. */
export const IMAGE_OVERLAY = { imageAttention: true, patchLens: true } as const satisfies Partial<LensSettings>;

export function recordsFolder(context: vscode.ExtensionContext, config: LensConfig = readConfig()): string {
  return config.cacheFolder ? path.join(config.cacheFolder, "records") : path.join(context.globalStorageUri.fsPath, "records");
}

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p;
}

/** A settings.json value outside the enum (hand-edited) falls back to the default instead of failing every open. */
function oneOf<T extends string>(v: unknown, choices: readonly T[], fallback: T): T {
  return typeof v === "string" && (choices as readonly string[]).includes(v) ? (v as T) : fallback;
}

function clampInt(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.floor(Number.isFinite(v) ? v : lo)));
}
