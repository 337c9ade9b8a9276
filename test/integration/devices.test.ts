/**
 * What the real sidecar says about devices (issue 16, issue 17 item 7): lens/initialize lists a
 * provider as working only after a session really ran on it, and lens/openModel says which
 * device a model opened on, with the adapter where known and why auto chose it.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createMessageConnection, type MessageConnection, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import { CUDA_LIBRARIES, CUDA_PROVIDER_DIR_ENV } from "../../src/shared/cudaProvider";
import { InitializeRequest, OpenModelRequest, PROTOCOL_VERSION } from "../../src/shared/protocol";
import { findCudaLibraries, ortPackage } from "../../src/sidecar/runtime/cudaLibraries";
import { FIXTURES } from "../helpers/fixtures";
import { SIDECAR } from "../helpers/sidecarProcess";
import { swiftShaderEnv } from "../helpers/webgpuEnv";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lens-devices-"));
const connections: MessageConnection[] = [];
const kills: (() => void)[] = [];
afterAll(() => {
  for (const c of connections) c.dispose();
  for (const k of kills) k();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function sidecar(env: NodeJS.ProcessEnv): MessageConnection {
  const child = spawn(process.execPath, [SIDECAR, "serve"], { stdio: ["pipe", "pipe", "ignore"], env });
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.listen();
  connections.push(connection);
  kills.push(() => child.kill());
  return connection;
}

const noCudaHere = findCudaLibraries(ortPackage(), {}).state === "missing";

describe.skipIf(!noCudaHere)("devices as the sidecar reports them", () => {
  it("lists CUDA as not working, with why, when its libraries do not load, and opens auto on the CPU saying so", async () => {
    const junk = path.join(tmp, "junk");
    fs.mkdirSync(junk);
    for (const f of CUDA_LIBRARIES) fs.writeFileSync(path.join(junk, f), "not a library");
    // no Vulkan driver at all: WebGPU has no adapter
    const c = sidecar({ ...process.env, [CUDA_PROVIDER_DIR_ENV]: junk, VK_ICD_FILENAMES: path.join(tmp, "none.json"), VK_DRIVER_FILES: path.join(tmp, "none.json") });
    const init = await c.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION, clientName: "test" });
    expect(init.providers.map((p) => [p.name, p.works])).toEqual([
      ["cpu", true],
      ["cuda", false],
      ["webgpu", false],
    ]);
    expect(init.providers[0].device).toMatchObject({ provider: "cpu", name: expect.any(String), memoryBytes: os.totalmem() });
    expect(init.providers[1].detail).toMatch(new RegExp(`^the CUDA provider in ${junk} does not work here: .*Failed to load library ${path.join(junk, CUDA_LIBRARIES[0])}`));
    expect(init.providers[2].detail).toBe("no WebGPU adapter here: Failed to get a WebGPU adapter: No supported adapters");
    const m = await c.sendRequest(OpenModelRequest, { folder: MODEL, device: "auto" });
    expect(m.provider).toBe("cpu");
    // and why not WebGPU: no adapter (no Vulkan here), or a software one
    expect(m.device).toMatchObject({ provider: "cpu", note: expect.stringMatching(new RegExp(`^device auto took the CPU: the CUDA provider in ${escapeRegExp(junk)} does not work here; (no WebGPU adapter \\(.+\\)|the WebGPU adapter, .+, is a software one)$`)) });
    // an explicit cpu afterwards is no longer auto's choice
    const cpu = await c.sendRequest(OpenModelRequest, { folder: MODEL, device: "cpu" });
    expect(cpu.device).toEqual({ provider: "cpu", name: expect.any(String), memoryBytes: os.totalmem() });
  });

  const swift = process.platform === "linux" ? swiftShaderEnv() : undefined;
  it.skipIf(!swift)("knows a SwiftShader adapter for a software one, and still runs device webgpu on it when asked", async () => {
    const c = sidecar({ ...swift, [CUDA_PROVIDER_DIR_ENV]: "" });
    const init = await c.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION, clientName: "test" });
    const webgpu = init.providers.find((p) => p.name === "webgpu");
    expect(webgpu).toMatchObject({ works: true, device: { provider: "webgpu", software: true, name: expect.stringMatching(/^SwiftShader driver [\d.]+$/) } });
    expect(init.providers.find((p) => p.name === "cuda")).toMatchObject({ works: false, detail: expect.stringContaining("not installed") });
    const auto = await c.sendRequest(OpenModelRequest, { folder: MODEL, device: "auto" });
    expect(auto.provider).toBe("cpu");
    expect(auto.device?.note).toMatch(/; the WebGPU adapter, SwiftShader driver [\d.]+, is a software one$/);
    const m = await c.sendRequest(OpenModelRequest, { folder: MODEL, device: "webgpu" });
    expect(m.provider).toBe("webgpu");
    expect(m.device).toMatchObject({ provider: "webgpu", software: true });
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
