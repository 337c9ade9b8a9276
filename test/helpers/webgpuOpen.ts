/**
 * Child-process entry (bundled by test/helpers/webgpuPlacement.ts): opens a model folder on
 * WebGPU and closes it again, printing `{ provider }` as JSON on stdout. With
 * LOGIT_LENS_ORT_VERBOSE set, onnxruntime writes each session's node placement to the native
 * stderr, which the parent reads.
 */
import { LoadedModel } from "../../src/sidecar/model/loadedModel";

async function main(): Promise<void> {
  const folder = process.argv[2];
  if (!folder) throw new Error("usage: webgpuOpen.js MODEL_FOLDER");
  const model = await LoadedModel.open(folder, { device: "webgpu" });
  process.stdout.write(`${JSON.stringify({ provider: model.info.provider })}\n`);
  await model.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`webgpuOpen: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
