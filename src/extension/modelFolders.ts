/**
 * Finding models on disk for "Logit Lens: Select Model...": the Hugging Face hub cache
 * (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), whose layout is
 * `models--{org}--{name}/snapshots/{revision}/config.json` (files there are links into `blobs/`),
 * and a check of any folder the user picks. No vscode import: tested in plain Node.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

export interface FoundModel {
  /** Hub id, e.g. "llava-hf/llava-1.5-7b-hf", or the folder name for a plain folder. */
  id: string;
  folder: string;
  architecture: string;
  supported: boolean;
  /** Snapshot revision (the folder name under snapshots/), for hub-cache models. */
  revision?: string;
  /** When the snapshot was last modified (ms since epoch). */
  modified: number;
}

export function hubCacheFolder(env: NodeJS.ProcessEnv = process.env): string {
  if (env["HF_HUB_CACHE"]) return env["HF_HUB_CACHE"];
  if (env["HF_HOME"]) return path.join(env["HF_HOME"], "hub");
  const xdg = env["XDG_CACHE_HOME"];
  return path.join(xdg || path.join(os.homedir(), ".cache"), "huggingface", "hub");
}

/** Reads a folder's config.json; null when there is none or it is not a model config. */
export async function describeModelFolder(folder: string, supported: readonly string[]): Promise<Omit<FoundModel, "id"> | null> {
  let config: unknown;
  let modified: number;
  try {
    const file = path.join(folder, "config.json");
    config = JSON.parse(await fs.readFile(file, "utf8"));
    modified = (await fs.stat(file)).mtimeMs;
  } catch {
    return null;
  }
  const archs = (config as { architectures?: unknown }).architectures;
  if (!Array.isArray(archs) || archs.length === 0) return null;
  const names = archs.map(String);
  const known = names.find((a) => supported.includes(a));
  return { folder, architecture: known ?? names[0], supported: known !== undefined, modified };
}

/**
 * Every model snapshot in the hub cache, newest snapshot per repository first within a
 * repository, repositories sorted by id. Unreadable entries are skipped, never thrown.
 */
export async function findCachedModels(supported: readonly string[], cache = hubCacheFolder()): Promise<FoundModel[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(cache);
  } catch {
    return [];
  }
  const found: FoundModel[] = [];
  for (const entry of entries.sort()) {
    if (!entry.startsWith("models--")) continue;
    const id = entry.slice("models--".length).split("--").join("/");
    const snapshots = path.join(cache, entry, "snapshots");
    let revisions: string[];
    try {
      revisions = await fs.readdir(snapshots);
    } catch {
      continue;
    }
    const described = [];
    for (const revision of revisions) {
      const d = await describeModelFolder(path.join(snapshots, revision), supported);
      if (d) described.push({ ...d, id, revision });
    }
    described.sort((a, b) => b.modified - a.modified);
    found.push(...described);
  }
  return found;
}
