/**
 * The CUDA provider's installer (src/extension/cudaProviderInstall.ts) against a local NuGet v3
 * feed served by this test: a small package of the real layout (runtimes/linux-x64/native/...),
 * whose "libraries" are ELF headers, and the failure paths: no network, an archive that is not
 * a zip, a damaged entry, a version the feed lacks, a library of the wrong kind, and a cancel.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSharedLibrary, InstallCancelledError, installCudaProvider, type InstallProgress, type ProviderSource, sourceFromOnnxruntimeNode } from "../../src/extension/cudaProviderInstall";
import { crc32, extractZipEntry, readZipDirectory } from "../../src/extension/zipArchive";
import { CUDA_LIBRARIES, CUDA_MANIFEST, CUDA_PROVIDER_DIR_ENV, type CudaManifest } from "../../src/shared/cudaProvider";
import { findCudaLibraries, ortPackage } from "../../src/sidecar/runtime/cudaLibraries";
import { fakeLibrary, NATIVE, type NugetFeed, startNugetFeed, zip } from "../helpers/nugetFeed";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lens-cuda-install-"));
const pkg = ortPackage();

const libraries = { [CUDA_LIBRARIES[0]]: fakeLibrary("shared", 5_000), [CUDA_LIBRARIES[1]]: fakeLibrary("cuda", 300_000) };
const goodPackage = zip(
  { "[Content_Types].xml": Buffer.from("<Types/>"), [`${NATIVE}/${CUDA_LIBRARIES[0]}`]: libraries[CUDA_LIBRARIES[0]], [`${NATIVE}/${CUDA_LIBRARIES[1]}`]: libraries[CUDA_LIBRARIES[1]], [`${NATIVE}/libonnxruntime_providers_tensorrt.so`]: fakeLibrary("trt", 100) },
  { stored: `${NATIVE}/${CUDA_LIBRARIES[0]}` },
);

let feed: NugetFeed;
let base: string;
const packages: NugetFeed["packages"] = {};

beforeAll(async () => {
  feed = await startNugetFeed(packages);
  base = feed.base;
});
afterAll(async () => {
  await feed.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function source(name: string, version = "1.30.0"): ProviderSource {
  return { index: `${base}/v3/index.json`, packageName: name, version, entries: Object.fromEntries(CUDA_LIBRARIES.map((f) => [f, `${NATIVE}/${f}`])) };
}

describe("the CUDA provider's installer", () => {
  it("takes package, version, feed and paths from onnxruntime-node's own install metadata", () => {
    const s = sourceFromOnnxruntimeNode(pkg.dir, "linux/x64");
    expect(s.packageName).toBe("Microsoft.ML.OnnxRuntime.Gpu.Linux");
    expect(s.version).toBe(pkg.version);
    expect(s.index).toMatch(/^https:\/\/[^/]+\/v3\/index\.json$/);
    expect(s.entries).toEqual({ [CUDA_LIBRARIES[0]]: `${NATIVE}/${CUDA_LIBRARIES[0]}`, [CUDA_LIBRARIES[1]]: `${NATIVE}/${CUDA_LIBRARIES[1]}` });
    expect(() => sourceFromOnnxruntimeNode(pkg.dir, "darwin/arm64")).toThrow(/no CUDA provider for darwin\/arm64/);
  });

  it("downloads, unpacks and verifies the libraries, with progress, into a folder the sidecar accepts", async () => {
    packages["good.pkg@1.30.0"] = goodPackage;
    const target = path.join(tmp, "good");
    const seen: InstallProgress[] = [];
    const manifest = await installCudaProvider({ source: source("Good.Pkg"), target, onnxruntimeVersion: pkg.version, onProgress: (p) => seen.push(p) });
    expect(fs.readdirSync(target).sort()).toEqual([...CUDA_LIBRARIES, CUDA_MANIFEST].sort());
    for (const lib of CUDA_LIBRARIES) {
      expect(fs.readFileSync(path.join(target, lib)).equals(libraries[lib])).toBe(true);
      expect(manifest.files[lib]).toEqual({ bytes: libraries[lib].length, sha256: crypto.createHash("sha256").update(libraries[lib]).digest("hex") });
    }
    expect(JSON.parse(fs.readFileSync(path.join(target, CUDA_MANIFEST), "utf8")) as CudaManifest).toEqual(manifest);
    expect(manifest).toMatchObject({ onnxruntimeVersion: pkg.version, package: "Good.Pkg 1.30.0", source: `${base}/flat/good.pkg/1.30.0/good.pkg.1.30.0.nupkg` });
    const fractions = seen.flatMap((p) => (p.fraction === undefined ? [] : [p.fraction]));
    expect(fractions[0]).toBe(0);
    expect(fractions[fractions.length - 1]).toBe(1);
    expect(fractions.every((f, i) => i === 0 || f >= fractions[i - 1])).toBe(true);
    expect(seen.some((p) => /^downloading Good\.Pkg 1\.30\.0: \d+ of \d+ MB$/.test(p.message))).toBe(true);
    expect(fs.readdirSync(tmp).filter((f) => f.includes(".partial-"))).toEqual([]);
    if (findCudaLibraries(pkg, {}).state === "missing") expect(findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: target })).toEqual({ state: "folder", dir: target });
  });

  it("says in one line that the feed cannot be reached", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const target = path.join(tmp, "offline");
    const p = installCudaProvider({ source: { ...source("Good.Pkg"), index: `http://127.0.0.1:${port}/v3/index.json` }, target, onnxruntimeVersion: pkg.version });
    await expect(p).rejects.toThrow(new RegExp(`^could not reach http://127\\.0\\.0\\.1:${port}/v3/index\\.json \\(ECONNREFUSED\\): check the internet connection and proxy, then run the command again$`));
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes(".partial-"))).toEqual([]);
  });

  it("refuses an archive that is not a zip, a damaged entry, a missing library and one of the wrong kind, keeping an earlier install", async () => {
    const target = path.join(tmp, "kept");
    packages["ok.pkg@1.30.0"] = goodPackage;
    await installCudaProvider({ source: source("Ok.Pkg"), target, onnxruntimeVersion: pkg.version });
    const before = fs.readFileSync(path.join(target, CUDA_MANIFEST), "utf8");

    packages["junk.pkg@1.30.0"] = Buffer.from("<html>a proxy's login page</html>");
    await expect(installCudaProvider({ source: source("Junk.Pkg"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(
      /^the downloaded Junk\.Pkg 1\.30\.0 is not a valid package \(not a zip archive \(no end of central directory\)\): run the command again$/,
    );
    // a flipped byte in a stored entry: only the CRC-32 can tell
    const stored = { stored: `${NATIVE}/${CUDA_LIBRARIES[0]}`, corrupt: `${NATIVE}/${CUDA_LIBRARIES[0]}` };
    packages["bad.pkg@1.30.0"] = zip({ [`${NATIVE}/${CUDA_LIBRARIES[0]}`]: libraries[CUDA_LIBRARIES[0]], [`${NATIVE}/${CUDA_LIBRARIES[1]}`]: libraries[CUDA_LIBRARIES[1]] }, stored);
    await expect(installCudaProvider({ source: source("Bad.Pkg"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(
      /^the downloaded Bad\.Pkg 1\.30\.0 is damaged \(runtimes\/linux-x64\/native\/libonnxruntime_providers_shared\.so is damaged \(CRC-32 or size differs from the archive's directory\)\): run the command again$/,
    );
    packages["half.pkg@1.30.0"] = zip({ [`${NATIVE}/${CUDA_LIBRARIES[0]}`]: libraries[CUDA_LIBRARIES[0]] });
    await expect(installCudaProvider({ source: source("Half.Pkg"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(/has no runtimes\/linux-x64\/native\/libonnxruntime_providers_cuda\.so: it is not the CUDA provider onnxruntime-node expects$/);
    packages["text.pkg@1.30.0"] = zip({ [`${NATIVE}/${CUDA_LIBRARIES[0]}`]: Buffer.from("#!/bin/sh\n"), [`${NATIVE}/${CUDA_LIBRARIES[1]}`]: libraries[CUDA_LIBRARIES[1]] });
    await expect(installCudaProvider({ source: source("Text.Pkg"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(/libonnxruntime_providers_shared\.so in the package is not a 64-bit x86-64 shared library/);
    await expect(installCudaProvider({ source: source("Ok.Pkg", "1.99.0"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(/^the feed has no Ok\.Pkg 1\.99\.0 \(it has 1\.30\.0\)$/);
    await expect(installCudaProvider({ source: source("Nobody.Pkg"), target, onnxruntimeVersion: pkg.version })).rejects.toThrow(/^http:\/\/127\.0\.0\.1:\d+\/flat\/nobody\.pkg\/index\.json answered HTTP 404/);

    expect(fs.readFileSync(path.join(target, CUDA_MANIFEST), "utf8")).toBe(before);
    expect(fs.readdirSync(tmp).filter((f) => f.includes(".partial-"))).toEqual([]);
  });

  it("stops when cancelled and leaves nothing behind", async () => {
    packages["big.pkg@1.30.0"] = "slow";
    const target = path.join(tmp, "cancelled");
    const abort = new AbortController();
    const p = installCudaProvider({
      source: source("Big.Pkg"),
      target,
      onnxruntimeVersion: pkg.version,
      signal: abort.signal,
      onProgress: (s) => {
        if (/downloading .*: [1-9]\d* of 100 MB/.test(s.message)) abort.abort();
      },
    });
    await expect(p).rejects.toBeInstanceOf(InstallCancelledError);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes(".partial-"))).toEqual([]);
  });
});

describe("the zip reader", () => {
  it("reads stored and deflated entries and checks an ELF header", async () => {
    const file = path.join(tmp, "t.zip");
    fs.writeFileSync(file, goodPackage);
    const entries = await readZipDirectory(file);
    expect(entries.map((e) => [e.name, e.method])).toEqual([
      ["[Content_Types].xml", 8],
      [`${NATIVE}/${CUDA_LIBRARIES[0]}`, 0],
      [`${NATIVE}/${CUDA_LIBRARIES[1]}`, 8],
      [`${NATIVE}/libonnxruntime_providers_tensorrt.so`, 8],
    ]);
    const out = path.join(tmp, "out.so");
    await extractZipEntry(file, entries[1], out);
    expect(fs.readFileSync(out).equals(libraries[CUDA_LIBRARIES[0]])).toBe(true);
    expect(() => checkSharedLibrary(out)).not.toThrow();
    fs.writeFileSync(out, Buffer.alloc(64));
    expect(() => checkSharedLibrary(out)).toThrow(/not a 64-bit x86-64 shared library/);
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926);
  });
});
