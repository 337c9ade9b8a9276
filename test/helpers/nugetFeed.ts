/**
 * A stand-in for a NuGet v3 feed and its packages, for the CUDA provider installer's tests (the
 * unit suite and the editor suite): a zip writer (stored and deflated entries, optionally one
 * corrupted), ELF-headed stand-in libraries, and a local HTTP server.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as zlib from "node:zlib";
import { crc32 } from "../../src/extension/zipArchive";

export const NATIVE = "runtimes/linux-x64/native";

/** The first bytes of a 64-bit x86-64 ELF shared object, then `size` bytes of content. */
export function fakeLibrary(seed: string, size: number): Buffer {
  const head = Buffer.alloc(64);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2;
  head[5] = 1;
  head.writeUInt16LE(3, 16);
  head.writeUInt16LE(62, 18);
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31 + seed.charCodeAt(i % seed.length)) & 0xff;
  return Buffer.concat([head, body]);
}

/** A zip of `files`, deflated unless `stored` names the file; `corrupt` flips a byte in that file's data. */
export function zip(files: Record<string, Buffer>, opts: { stored?: string; corrupt?: string } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const method = name === opts.stored ? 0 : 8;
    const packed = Buffer.from(method === 8 ? zlib.deflateRawSync(data) : data);
    if (name === opts.corrupt) packed[Math.floor(packed.length / 2)] ^= 0xff;
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, packed);
    centrals.push(central, n);
    offset += local.length + n.length + packed.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}


/** What a feed serves: "name@version" (name in lower case) -> the package's bytes, or "slow" for one that trickles 100 MB. */
export interface NugetFeed {
  base: string;
  /** The feed's service index (v3/index.json). */
  index: string;
  packages: Record<string, Buffer | "slow">;
  close(): Promise<void>;
}

/** A NuGet v3 feed on 127.0.0.1: the service index, each package's version list and its .nupkg. */
export async function startNugetFeed(packages: NugetFeed["packages"] = {}): Promise<NugetFeed> {
  let base = "";
  const server = http.createServer((req, res) => {
    const url = req.url ?? "";
    if (url === "/v3/index.json") {
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ version: "3.0.0", resources: [{ "@id": `${base}/flat/`, "@type": "PackageBaseAddress/3.0.0" }] }));
    }
    const m = /^\/flat\/([^/]+)\/(?:index\.json|([^/]+)\/[^/]+\.nupkg)$/.exec(url);
    if (m && url.endsWith("index.json")) {
      const versions = Object.keys(packages).filter((k) => k.startsWith(`${m[1]}@`)).map((k) => k.split("@")[1]);
      if (versions.length === 0) return res.writeHead(404).end();
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ versions }));
    }
    const body = m ? packages[`${m[1]}@${m[2]}`] : undefined;
    if (body === undefined) return res.writeHead(404).end();
    if (body === "slow") {
      res.writeHead(200, { "content-length": String(100 * 2 ** 20) });
      const timer = setInterval(() => res.write(Buffer.alloc(64 * 1024)), 20);
      res.on("close", () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { "content-length": String(body.length) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, index: `${base}/v3/index.json`, packages, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A package of onnxruntime's GPU layout whose provider "libraries" are ELF headers over filler. */
export function fakeProviderPackage(): Buffer {
  return zip({
    "[Content_Types].xml": Buffer.from("<Types/>"),
    [`${NATIVE}/libonnxruntime_providers_shared.so`]: fakeLibrary("shared", 5_000),
    [`${NATIVE}/libonnxruntime_providers_cuda.so`]: fakeLibrary("cuda", 300_000),
  });
}
