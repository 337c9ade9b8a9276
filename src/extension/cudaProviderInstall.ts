/**
 * Downloads onnxruntime-node's CUDA provider libraries into a folder of the extension's own,
 * the way onnxruntime-node's postinstall (script/install.js) does into its bin folder: the same
 * NuGet package of the same version, found through the feed's service index. Which package,
 * version, feed and paths inside the package are read from onnxruntime-node's own
 * script/install-metadata.js, so they follow the installed onnxruntime-node.
 *
 * No vscode here: the command (cudaProvider.ts) wraps it in a cancellable progress
 * notification, and the tests drive it against a local HTTP server.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CUDA_LIBRARIES, CUDA_MANIFEST, type CudaManifest } from "../shared/cudaProvider";
import { extractZipEntry, readZipDirectory, ZipError } from "./zipArchive";

/** Where the provider comes from: a NuGet v3 feed, a package, its version, and the paths of the libraries inside it. */
export interface ProviderSource {
  /** The feed's service index (v3/index.json). */
  index: string;
  packageName: string;
  version: string;
  /** Library file name -> its path inside the package. */
  entries: Record<string, string>;
}

interface InstallMetadata {
  manifests: Record<string, Record<string, { package: string; path: string }>>;
  packages: Record<string, { name: string; versions: { feed: string; version: string }[] }>;
  feeds: Record<string, { type: string; index: string }>;
}

/** The source onnxruntime-node's own installer would use for `platform` (linux/x64), read from its install metadata. */
export function sourceFromOnnxruntimeNode(ortDir: string, platform = `${process.platform}/${process.arch}`): ProviderSource {
  const file = path.join(ortDir, "script", "install-metadata.js");
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: this onnxruntime-node has no install metadata to say where its CUDA provider comes from`);
  const meta = createRequire(__filename)(file) as InstallMetadata;
  const manifest = meta.manifests[`${platform}:cuda12`];
  if (!manifest) throw new Error(`onnxruntime-node has no CUDA provider for ${platform} (only for linux/x64)`);
  const entries: Record<string, string> = {};
  let packageKey: string | undefined;
  for (const lib of CUDA_LIBRARIES) {
    const m = manifest[`./${lib}`];
    if (!m) throw new Error(`onnxruntime-node's install metadata lists no ${lib} for ${platform}`);
    entries[lib] = m.path;
    packageKey = m.package;
  }
  const pkg = meta.packages[packageKey!];
  const release = pkg?.versions[0];
  const feed = release ? meta.feeds[release.feed] : undefined;
  if (!pkg || !release || !feed) throw new Error(`onnxruntime-node's install metadata names no feed for ${packageKey}`);
  return { index: feed.index, packageName: pkg.name, version: release.version, entries };
}

export interface InstallProgress {
  message: string;
  /** 0..1 of the whole install, when known. */
  fraction?: number;
}

export interface InstallOptions {
  source: ProviderSource;
  /** The folder the libraries end up in (replaced as a whole once everything is verified). */
  target: string;
  /** The onnxruntime version the sidecar runs: recorded, and the sidecar loads only a matching one. */
  onnxruntimeVersion: string;
  onProgress?: (p: InstallProgress) => void;
  signal?: AbortSignal;
}

export class InstallCancelledError extends Error {
  constructor() {
    super("the CUDA provider's download was cancelled");
  }
}

/** A one-line reason for a failed request, with what to do. */
function networkError(url: string, e: unknown): Error {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : undefined;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const why = code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
  return new Error(`could not reach ${url} (${why}): check the internet connection and proxy, then run the command again`);
}

async function get(url: string, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { signal, redirect: "follow" });
  } catch (e) {
    if (signal?.aborted) throw new InstallCancelledError();
    throw networkError(url, e);
  }
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}: the package feed does not serve it; run the command again later`);
  return res;
}

async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const res = await get(url, signal);
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${url} did not answer JSON (it began ${JSON.stringify(text.slice(0, 40))}): the package feed is not a NuGet v3 feed`);
  }
}

/** The package's download address, checked against the feed's list of its versions. */
async function resolvePackage(source: ProviderSource, signal?: AbortSignal): Promise<string> {
  const index = await getJson<{ resources?: { "@id": string; "@type": string }[] }>(source.index, signal);
  const base = index.resources?.find((r) => r["@type"] === "PackageBaseAddress/3.0.0")?.["@id"];
  if (!base) throw new Error(`${source.index} lists no PackageBaseAddress/3.0.0: not a NuGet v3 feed`);
  const id = source.packageName.toLowerCase();
  const version = source.version.toLowerCase();
  const root = base.endsWith("/") ? base : `${base}/`;
  const versions = await getJson<{ versions?: string[] }>(`${root}${id}/index.json`, signal);
  if (!versions.versions?.includes(version)) throw new Error(`the feed has no ${source.packageName} ${source.version} (it has ${versions.versions?.slice(-3).join(", ") || "none"})`);
  return `${root}${id}/${version}/${id}.${version}.nupkg`;
}

async function download(url: string, dest: string, signal: AbortSignal | undefined, onBytes: (done: number, total?: number) => void): Promise<void> {
  const res = await get(url, signal);
  if (!res.body) throw new Error(`${url} answered without a body`);
  const total = Number(res.headers.get("content-length")) || undefined;
  let done = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, next) {
      done += chunk.length;
      onBytes(done, total);
      next(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(res.body as import("node:stream/web").ReadableStream), count, fs.createWriteStream(dest), { signal });
  } catch (e) {
    if (signal?.aborted) throw new InstallCancelledError();
    throw networkError(url, e);
  }
  if (total !== undefined && done !== total) throw new Error(`the download of ${url} stopped after ${done} of ${total} bytes: run the command again`);
}

/** A 64-bit little-endian x86-64 ELF shared object, as onnxruntime's provider libraries are. */
export function checkSharedLibrary(file: string): void {
  const head = Buffer.alloc(20);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, head, 0, 20, 0);
  } finally {
    fs.closeSync(fd);
  }
  const elf = head.readUInt32BE(0) === 0x7f454c46;
  if (!elf || head[4] !== 2 || head[5] !== 1 || head.readUInt16LE(16) !== 3 || head.readUInt16LE(18) !== 62) {
    throw new Error(`${path.basename(file)} in the package is not a 64-bit x86-64 shared library: the package is not the CUDA provider for linux-x64`);
  }
}

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest("hex");
}

/**
 * Downloads, unpacks and verifies the provider into `target`. Nothing is left behind on failure
 * or cancellation, and an earlier install in `target` stays until the new one is complete.
 */
export async function installCudaProvider(opts: InstallOptions): Promise<CudaManifest> {
  const { source, target, signal } = opts;
  const progress = opts.onProgress ?? (() => undefined);
  const partial = `${target}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(partial, { recursive: true });
  try {
    progress({ message: `looking up ${source.packageName} ${source.version}`, fraction: 0 });
    const url = await resolvePackage(source, signal);
    const nupkg = path.join(partial, "package.nupkg");
    let lastShown = -1;
    await download(url, nupkg, signal, (done, total) => {
      const mb = Math.floor(done / 2 ** 20);
      if (mb === lastShown) return;
      lastShown = mb;
      progress({ message: `downloading ${source.packageName} ${source.version}: ${mb}${total ? ` of ${Math.ceil(total / 2 ** 20)}` : ""} MB`, ...(total ? { fraction: 0.9 * (done / total) } : {}) });
    });
    progress({ message: "unpacking and verifying the libraries", fraction: 0.9 });
    let entries;
    try {
      entries = await readZipDirectory(nupkg);
    } catch (e) {
      throw new Error(`the downloaded ${source.packageName} ${source.version} is not a valid package (${e instanceof Error ? e.message : String(e)}): run the command again`);
    }
    const files: CudaManifest["files"] = {};
    for (const [lib, inPackage] of Object.entries(source.entries)) {
      const entry = entries.find((e) => e.name === inPackage);
      if (!entry) throw new Error(`the downloaded ${source.packageName} ${source.version} has no ${inPackage}: it is not the CUDA provider onnxruntime-node expects`);
      const dest = path.join(partial, lib);
      try {
        await extractZipEntry(nupkg, entry, dest, signal);
      } catch (e) {
        if (signal?.aborted) throw new InstallCancelledError();
        if (e instanceof ZipError) throw new Error(`the downloaded ${source.packageName} ${source.version} is damaged (${e.message}): run the command again`);
        throw e;
      }
      checkSharedLibrary(dest);
      files[lib] = { bytes: fs.statSync(dest).size, sha256: await sha256(dest) };
    }
    fs.rmSync(nupkg);
    const manifest: CudaManifest = { onnxruntimeVersion: opts.onnxruntimeVersion, package: `${source.packageName} ${source.version}`, source: url, files };
    fs.writeFileSync(path.join(partial, CUDA_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    if (signal?.aborted) throw new InstallCancelledError();
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(partial, target);
    progress({ message: "installed", fraction: 1 });
    return manifest;
  } catch (e) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw e;
  }
}
