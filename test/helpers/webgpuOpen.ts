/**
 * Child-process entry (bundled by test/helpers/webgpuPlacement.ts): opens a model folder on
 * WebGPU and closes it again, printing `{ provider, computeDtype }` as JSON on stdout. A second
 * argument "float16" opens it in float16 as if the adapter had shader-f16 (SwiftShader has none:
 * its sessions are created and placed, never run). With
 * LOGIT_LENS_ORT_VERBOSE set, onnxruntime writes each session's node placement to the native
 * stderr, which the parent reads.
 */
import { LoadedModel } from "../../src/sidecar/model/loadedModel";

async function main(): Promise<void> {
  const folder = process.argv[2];
  if (!folder) throw new Error("usage: webgpuOpen.js MODEL_FOLDER");
  const half = process.argv[3] === "float16";
  const model = await LoadedModel.open(folder, { device: "webgpu", ...(half ? { dtype: "float16" as const, webgpu: { shaderF16: true } } : {}) });
  process.stdout.write(`${JSON.stringify({ provider: model.info.provider, computeDtype: model.info.computeDtype })}\n`);
  await model.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`webgpuOpen: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
