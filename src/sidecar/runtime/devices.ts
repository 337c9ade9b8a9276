/**
 * What the system says about the adapter behind an execution provider. onnxruntime-node 1.30
 * reports nothing about devices (its binding exports sessions and listSupportedBackends only),
 * so the names come from the system: the CPU's model, and the CUDA GPU from nvidia-smi.
 *
 * WebGPU: onnxruntime's WebGPU provider asks Dawn for a high-performance adapter and keeps what
 * it gets to itself, so the adapter is asked of Dawn's own Node binding with the same request
 * (webgpuAdapter.ts): its name, whether it is a software one (device auto never picks those: a
 * SwiftShader or llvmpipe adapter runs far slower than the CPU provider), and whether it has
 * shader-f16. WebGPU reports no memory size; an NVIDIA adapter's comes from nvidia-smi.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { DeviceDescription } from "../../shared/lensRecord";
import { type AdapterAnswer, adapterName, isSoftwareAdapter } from "./webgpuAdapter";

export function describeCpu(): DeviceDescription {
  const model = os.cpus()[0]?.model.trim();
  return { provider: "cpu", ...(model ? { name: `${model} (${os.cpus().length} threads)` } : {}), memoryBytes: os.totalmem() };
}

const SOFTWARE_VULKAN = /swiftshader|lvp|lavapipe|llvmpipe/i;

/** "SwiftShader" etc. when the Vulkan loader is told to use software drivers only, else undefined. */
export function softwareVulkanDriver(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const list = env["VK_DRIVER_FILES"] || env["VK_ICD_FILENAMES"];
  if (!list) return undefined;
  const names = list.split(":").filter(Boolean).map((file) => {
    let library = "";
    try {
      library = (JSON.parse(fs.readFileSync(file, "utf8")) as { ICD?: { library_path?: string } }).ICD?.library_path ?? "";
    } catch {
      // an unreadable driver file: judge by its name
    }
    return `${path.basename(file)} ${library}`;
  });
  if (names.length === 0 || !names.every((n) => SOFTWARE_VULKAN.test(n))) return undefined;
  return names.some((n) => /swiftshader/i.test(n)) ? "SwiftShader" : "llvmpipe";
}

/** The WebGPU device as the adapter query answered (and, without an answer, what the Vulkan loader was told). */
export function describeWebgpu(answer: AdapterAnswer, env: NodeJS.ProcessEnv = process.env, nvidiaMemoryBytes?: number): DeviceDescription {
  if ("none" in answer) {
    const software = softwareVulkanDriver(env);
    if (software) return { provider: "webgpu", name: `${software} (software Vulkan)`, software: true, note: "a software adapter: device auto never picks it" };
    return { provider: "webgpu", note: `the adapter is unknown: ${answer.none}` };
  }
  const a = answer.adapter;
  const software = isSoftwareAdapter(a);
  const notes = [software ? "a software adapter: device auto never picks it" : "", a.shaderF16 ? "" : "no shader-f16: float16 compute cannot run on it"].filter(Boolean);
  return {
    provider: "webgpu",
    name: adapterName(a),
    ...(software ? { software: true } : {}),
    ...(nvidiaMemoryBytes !== undefined && /nvidia/i.test(a.vendor) ? { memoryBytes: nvidiaMemoryBytes } : {}),
    ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
  };
}

/** The GPU CUDA device 0 is, as nvidia-smi names it (honouring CUDA_VISIBLE_DEVICES), with its total and free memory, or undefined. */
export async function nvidiaGpu(env: NodeJS.ProcessEnv = process.env, smi = "nvidia-smi"): Promise<{ name: string; memoryBytes?: number; freeBytes?: number } | undefined> {
  const visible = env["CUDA_VISIBLE_DEVICES"]?.split(",")[0]?.trim();
  const args = ["--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits", "-i", visible || "0"];
  const out = await new Promise<string | undefined>((resolve) => {
    execFile(smi, args, { timeout: 10_000, env }, (error, stdout) => resolve(error ? undefined : stdout));
  });
  return out === undefined ? undefined : parseNvidiaSmi(out);
}

/** One line of `nvidia-smi --query-gpu=name,memory.total[,memory.free] --format=csv,noheader,nounits`: "NVIDIA H200, 143771, 140000" (MiB). */
export function parseNvidiaSmi(out: string): { name: string; memoryBytes?: number; freeBytes?: number } | undefined {
  const line = out.split("\n").find((l) => l.trim() !== "");
  if (!line) return undefined;
  // the numbers are the last fields; a name may hold commas
  const fields = line.split(",").map((f) => f.trim());
  const numbers: number[] = [];
  while (fields.length > 1 && numbers.length < 2 && /^(\d+|\[N\/A\])$/.test(fields[fields.length - 1])) numbers.unshift(Number(fields.pop()));
  const name = fields.join(", ").trim();
  if (!name) return undefined;
  const mib = (v: number | undefined) => (v !== undefined && Number.isFinite(v) && v > 0 ? v * 2 ** 20 : undefined);
  const total = mib(numbers[0]);
  const free = mib(numbers[1]);
  return { name, ...(total !== undefined ? { memoryBytes: total } : {}), ...(free !== undefined ? { freeBytes: free } : {}) };
}
