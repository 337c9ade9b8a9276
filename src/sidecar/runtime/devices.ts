/**
 * What the system says about the adapter behind an execution provider. onnxruntime-node 1.30
 * reports nothing about devices (its binding exports sessions and listSupportedBackends only),
 * so the names come from the system: the CPU's model, and the CUDA GPU from nvidia-smi.
 *
 * WebGPU: onnxruntime's WebGPU provider asks Dawn for a high-performance adapter and keeps what
 * it gets to itself: no option, log line or API of the Node binding names it (verbose logging
 * shows only node placement and programs). So the adapter cannot be identified from Node, and
 * device auto never picks WebGPU: a software adapter (SwiftShader, llvmpipe) runs far slower
 * than the CPU provider. The one thing known for sure is when the Vulkan loader was told to use
 * software drivers only (VK_ICD_FILENAMES / VK_DRIVER_FILES), as the WebGPU test suites do.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { DeviceDescription } from "../../shared/lensRecord";

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

export function describeWebgpu(env: NodeJS.ProcessEnv = process.env): DeviceDescription {
  const software = softwareVulkanDriver(env);
  if (software) return { provider: "webgpu", name: `${software} (software Vulkan)`, software: true, note: "a software adapter: device auto never picks it" };
  return { provider: "webgpu", note: "onnxruntime-node 1.30 does not say which adapter Dawn chose, so device auto does not pick WebGPU" };
}

/** The GPU CUDA device 0 is, as nvidia-smi names it (honouring CUDA_VISIBLE_DEVICES), or undefined. */
export async function nvidiaGpu(env: NodeJS.ProcessEnv = process.env, smi = "nvidia-smi"): Promise<{ name: string; memoryBytes?: number } | undefined> {
  const visible = env["CUDA_VISIBLE_DEVICES"]?.split(",")[0]?.trim();
  const args = ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits", "-i", visible || "0"];
  const out = await new Promise<string | undefined>((resolve) => {
    execFile(smi, args, { timeout: 10_000, env }, (error, stdout) => resolve(error ? undefined : stdout));
  });
  return out === undefined ? undefined : parseNvidiaSmi(out);
}

/** One line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`: "NVIDIA H200, 143771" (MiB). */
export function parseNvidiaSmi(out: string): { name: string; memoryBytes?: number } | undefined {
  const line = out.split("\n").find((l) => l.trim() !== "");
  if (!line) return undefined;
  const cut = line.lastIndexOf(",");
  const name = (cut >= 0 ? line.slice(0, cut) : line).trim();
  const mib = cut >= 0 ? Number(line.slice(cut + 1).trim()) : NaN;
  if (!name) return undefined;
  return Number.isFinite(mib) && mib > 0 ? { name, memoryBytes: mib * 2 ** 20 } : { name };
}
