/**
 * Devices and the CUDA provider's libraries (issue 16): where the sidecar looks for them, that
 * onnxruntime really loads them from a folder of our own (the binding view), the one-line
 * messages when they are missing or do not load, and what device auto then records. No GPU
 * here: the "libraries" are stand-ins (junk, or a C stand-in when a compiler is at hand) that
 * onnxruntime must try to load from the folder given, and whose failure it must report.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CUDA_LIBRARIES, CUDA_MANIFEST, CUDA_PROVIDER_DIR_ENV } from "../../src/shared/cudaProvider";
import { deviceLabel, providerLabel } from "../../src/shared/deviceLabel";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { findCudaLibraries, ortErrorDetail, ortPackage } from "../../src/sidecar/runtime/cudaLibraries";
import { withoutSourceLocation } from "../../src/sidecar/runtime/ort";
import { describeWebgpu, parseNvidiaSmi, softwareVulkanDriver } from "../../src/sidecar/runtime/devices";
import { adapterName, isSoftwareAdapter } from "../../src/sidecar/runtime/webgpuAdapter";

const BIN = path.resolve(__dirname, "../../bin/logit-lens.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lens-cuda-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function folderWith(name: string, files: Record<string, string | Buffer>): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), content);
  return dir;
}

function cli(env: NodeJS.ProcessEnv, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const pkg = ortPackage();
const noCudaHere = findCudaLibraries(pkg, {}).state === "missing";

describe("finding the CUDA provider's libraries", () => {
  it("says where it looked and how to get them when they are missing", () => {
    const r = findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: path.join(tmp, "never-installed") });
    if (!noCudaHere) return; // onnxruntime-node here was installed with its CUDA libraries
    expect(r.state).toBe("missing");
    const reason = (r as { reason: string }).reason;
    expect(reason).toContain(pkg.binDir);
    expect(reason).toContain("never-installed");
    expect(reason).toContain("npm install onnxruntime-node --onnxruntime-node-install=cuda12");
    expect(reason).toContain("Logit Lens: Install the CUDA Provider");
  });

  it("is not fooled by a folder with only some of them, or of another onnxruntime version", () => {
    if (!noCudaHere) return;
    const half = folderWith("half", { [CUDA_LIBRARIES[0]]: "x" });
    expect(findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: half })).toMatchObject({ state: "invalid", reason: expect.stringContaining(`has no ${CUDA_LIBRARIES[1]}`) });
    const old = folderWith("old", { [CUDA_LIBRARIES[0]]: "x", [CUDA_LIBRARIES[1]]: "x", [CUDA_MANIFEST]: JSON.stringify({ onnxruntimeVersion: "1.29.0", package: "p", source: "s", files: {} }) });
    expect(findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: old })).toMatchObject({
      state: "invalid",
      reason: expect.stringContaining(`holds the CUDA provider of onnxruntime 1.29.0, but the sidecar runs onnxruntime-node ${pkg.version}`),
    });
    const good = folderWith("good", { [CUDA_LIBRARIES[0]]: "x", [CUDA_LIBRARIES[1]]: "x", [CUDA_MANIFEST]: JSON.stringify({ onnxruntimeVersion: pkg.version, package: "p", source: "s", files: {} }) });
    expect(findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: good })).toEqual({ state: "folder", dir: good });
    expect(findCudaLibraries(pkg, { [CUDA_PROVIDER_DIR_ENV]: good }, "darwin-arm64")).toMatchObject({ state: "missing", reason: expect.stringContaining("no CUDA provider for darwin-arm64") });
  });

  it("reads onnxruntime's own cause of a failed load from its log line", () => {
    const line =
      "\x1b[1;31m2026-12-02 12:31:37.249 [E:onnxruntime:onnxruntime-node, provider_bridge_ort.cc:2146 Create] /onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1988 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory\x1b[m";
    expect(ortErrorDetail(`noise\n${line}\n`)).toBe("Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory");
    expect(ortErrorDetail("nothing from onnxruntime")).toBeUndefined();
    const enforce =
      "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters";
    expect(withoutSourceLocation(enforce)).toBe("Failed to get a WebGPU adapter: No supported adapters");
    expect(withoutSourceLocation("plain words")).toBe("plain words");
  });
});

describe("naming the device", () => {
  it("reads nvidia-smi's name and memory", () => {
    expect(parseNvidiaSmi("NVIDIA H200, 143771\n")).toEqual({ name: "NVIDIA H200", memoryBytes: 143771 * 2 ** 20 });
    expect(parseNvidiaSmi("NVIDIA GeForce RTX 4090, [N/A]\n")).toEqual({ name: "NVIDIA GeForce RTX 4090" });
    expect(parseNvidiaSmi("\n")).toBeUndefined();
  });

  it("knows a WebGPU adapter is software only when the Vulkan loader is told to use software drivers only", () => {
    const swift = folderWith("icd", { "vk_swiftshader_icd.json": JSON.stringify({ ICD: { library_path: "./libvk_swiftshader.so" } }), "nvidia_icd.json": JSON.stringify({ ICD: { library_path: "libGLX_nvidia.so.0" } }) });
    expect(softwareVulkanDriver({ VK_ICD_FILENAMES: path.join(swift, "vk_swiftshader_icd.json") })).toBe("SwiftShader");
    expect(softwareVulkanDriver({ VK_ICD_FILENAMES: `${path.join(swift, "vk_swiftshader_icd.json")}:${path.join(swift, "nvidia_icd.json")}` })).toBeUndefined();
    expect(softwareVulkanDriver({})).toBeUndefined();
    // without Dawn's answer, only the loader's driver list can say "software"
    const none = { none: "Dawn found no WebGPU adapter" };
    expect(describeWebgpu(none, { VK_DRIVER_FILES: path.join(swift, "vk_swiftshader_icd.json") })).toMatchObject({ provider: "webgpu", software: true, name: "SwiftShader (software Vulkan)" });
    expect(describeWebgpu(none, {})).toEqual({ provider: "webgpu", note: "the adapter is unknown: Dawn found no WebGPU adapter" });
  });

  it("names a WebGPU adapter as Dawn describes it, software when Dawn says fallback or its name is a software rasteriser's", () => {
    const h200 = { vendor: "nvidia", architecture: "hopper", device: "", description: "NVIDIA H200", fallback: false, shaderF16: true, maxBufferBytes: 2 ** 32 };
    expect(describeWebgpu({ adapter: h200 }, {}, 143771 * 2 ** 20)).toEqual({ provider: "webgpu", name: "NVIDIA H200", memoryBytes: 143771 * 2 ** 20 });
    expect(isSoftwareAdapter(h200)).toBe(false);
    const swiftshader = { vendor: "google", architecture: "swiftshader", device: "swiftshader-device-subzero-", description: "SwiftShader driver 5.0.0", fallback: true, shaderF16: false, maxBufferBytes: 2 ** 30 };
    expect(describeWebgpu({ adapter: swiftshader }, {}, 1e9)).toEqual({
      provider: "webgpu",
      name: "SwiftShader driver 5.0.0",
      software: true,
      note: "a software adapter: device auto never picks it; no shader-f16: float16 compute cannot run on it",
    });
    // llvmpipe need not call itself a fallback adapter
    expect(isSoftwareAdapter({ ...h200, vendor: "mesa", description: "llvmpipe (LLVM 17.0.6, 256 bits)" })).toBe(true);
    expect(adapterName({ ...h200, description: " " })).toBe("nvidia hopper");
  });

  it("labels a device with its name, memory and note", () => {
    expect(deviceLabel({ provider: "cuda", name: "NVIDIA H200", memoryBytes: 143771 * 2 ** 20 })).toBe("NVIDIA H200, 140 GiB");
    expect(providerLabel("cpu", { provider: "cpu", name: "EPYC (2 threads)", memoryBytes: 8.5 * 2 ** 30, note: "device auto took the CPU: no CUDA" })).toBe("cpu (EPYC (2 threads), 8.5 GiB; device auto took the CPU: no CUDA)");
    expect(providerLabel("webgpu", { provider: "webgpu", note: "adapter unknown" })).toBe("webgpu (adapter unknown)");
    expect(providerLabel("cpu")).toBe("cpu");
  });
});

/** A C stand-in for the two libraries: the shared one exports what onnxruntime calls first; the CUDA one has no GetProvider and marks that it was loaded. */
function compiledStandIns(): string | undefined {
  const cc = ["cc", "gcc", "clang"].find((c) => spawnSync(c, ["--version"]).status === 0);
  if (!cc) return undefined;
  const dir = path.join(tmp, "compiled");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "shared.c"), "void Provider_SetHost(void* p) { (void)p; }\n");
  fs.writeFileSync(
    path.join(dir, "cuda.c"),
    '#include <stdio.h>\n#include <stdlib.h>\n__attribute__((constructor)) static void mark(void) { const char* f = getenv("LENS_TEST_CUDA_MARK"); FILE* o = f ? fopen(f, "a") : 0; if (o) { fputs("loaded\\n", o); fclose(o); } }\n',
  );
  for (const [src, lib] of [["shared.c", CUDA_LIBRARIES[0]], ["cuda.c", CUDA_LIBRARIES[1]]]) {
    if (spawnSync(cc, ["-shared", "-fPIC", "-o", path.join(dir, lib), path.join(dir, src)]).status !== 0) return undefined;
  }
  return dir;
}

describe.skipIf(!noCudaHere)("device cuda and auto through the CLI (the built bundle)", () => {
  it("refuses device cuda without the libraries in one line that says how to get them", () => {
    const r = cli({ [CUDA_PROVIDER_DIR_ENV]: "" }, "run", "--device", "cuda");
    expect(r.code).toBe(1);
    const error = r.stderr.trim().split("\n").pop()!;
    expect(error).toMatch(/^error: device cuda cannot run: the CUDA provider libraries are not installed \(looked in .*onnxruntime-node.*\): with internet, run `npm install onnxruntime-node --onnxruntime-node-install=cuda12`.*Logit Lens: Install the CUDA Provider; or choose device auto or cpu$/);
  });

  it("makes onnxruntime load the libraries from the folder given, and reports why they do not load", () => {
    const junk = folderWith("junk", { [CUDA_LIBRARIES[0]]: "not a library", [CUDA_LIBRARIES[1]]: "not a library" });
    const r = cli({ [CUDA_PROVIDER_DIR_ENV]: junk }, "run", "--device", "cuda");
    expect(r.code).toBe(1);
    const error = r.stderr.trim().split("\n").pop()!;
    // onnxruntime itself names the file it tried, in the folder we gave it (not a temporary view, not its own bin folder)
    expect(error).toContain(`error: device cuda cannot run: the CUDA provider in ${junk} does not work here:`);
    expect(error).toContain(`Failed to load library ${path.join(junk, CUDA_LIBRARIES[0])} with error:`);
    expect(error).not.toContain(pkg.binDir);
    expect(error).toMatch(/; or choose device auto or cpu$/);
  });

  it("really dlopens a provider library from that folder (a compiled stand-in marks its load)", (ctx) => {
    const dir = compiledStandIns();
    if (!dir) return ctx.skip();
    const mark = path.join(tmp, "mark.txt");
    const r = cli({ [CUDA_PROVIDER_DIR_ENV]: dir, LENS_TEST_CUDA_MARK: mark }, "run", "--device", "cuda");
    expect(r.code).toBe(1);
    expect(fs.readFileSync(mark, "utf8")).toContain("loaded");
    expect(r.stderr).toContain(`${path.join(dir, CUDA_LIBRARIES[1])}: undefined symbol: GetProvider`);
  });

  it("runs device auto on the CPU, through the same binding view, and records why", () => {
    const junk = folderWith("junk-auto", { [CUDA_LIBRARIES[0]]: "not a library", [CUDA_LIBRARIES[1]]: "not a library" });
    const out = path.join(tmp, "auto.json");
    const r = cli({ [CUDA_PROVIDER_DIR_ENV]: junk }, "run", "--device", "auto", "--format", "json", "--out", out);
    expect(r.stderr).toMatch(/done in .* \(cpu\)/);
    expect(r.code).toBe(0);
    const record = assertLensRecord(JSON.parse(fs.readFileSync(out, "utf8")));
    expect(record.model.executionProvider).toBe("cpu");
    expect(record.model.device).toMatchObject({ provider: "cpu", name: expect.stringMatching(/\(\d+ threads\)$/), memoryBytes: os.totalmem() });
    expect(record.model.device?.note?.startsWith(`device auto took the CPU: the CUDA provider in ${junk} does not work here; `)).toBe(true);
    expect(record.model.device?.note).toMatch(/; (no WebGPU adapter \(.+\)|the WebGPU adapter, .+, is a software one)$/);
    // the view of links is gone with the process
    expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("logit-lens-ort-") && fs.existsSync(path.join(os.tmpdir(), f, CUDA_LIBRARIES[1])) && fs.readlinkSync(path.join(os.tmpdir(), f, CUDA_LIBRARIES[1])).startsWith(junk))).toEqual([]);
  });

  it("records the CPU without a note when device cpu is asked for", () => {
    const out = path.join(tmp, "cpu.json");
    const r = cli({}, "run", "--device", "cpu", "--format", "json", "--out", out);
    expect(r.code).toBe(0);
    const record = assertLensRecord(JSON.parse(fs.readFileSync(out, "utf8")));
    expect(record.model.device).toEqual({ provider: "cpu", name: expect.any(String), memoryBytes: os.totalmem() });
  });
});
