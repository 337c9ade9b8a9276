/**
 * The CPU's "float32" weight plan: half-precision weights are widened by the sidecar and fed
 * to the sessions, so no graph holds a Cast for onnxruntime to fold at load. The arrays are
 * torch's conversion of the stored bytes (halfToFloat.test.ts checks the conversion itself),
 * whatever the chunking; a file that shrinks under the reader is a one-line error naming it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { onnx } from "onnx-proto";
import { afterAll, describe, expect, it } from "vitest";
import { findArchitecture } from "../../src/sidecar/arch";
import type { JsonObject } from "../../src/sidecar/arch/configUtil";
import { Activity, StoppedError } from "../../src/sidecar/engine/activity";
import { compileGraphs } from "../../src/sidecar/engine/engine";
import { FedWeights } from "../../src/sidecar/engine/fedWeights";
import { halfToFloat32 } from "../../src/sidecar/engine/halfToFloat";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { WeightIndex } from "../../src/sidecar/model/safetensors";
import { ModelWeights } from "../../src/sidecar/model/weights";
import { FIXTURES } from "../helpers/fixtures";
import { copyFixtureModel } from "../helpers/tempModel";

const HALF = ["llama-f16", "llava-gqa-bf16"] as const;
const folderOf = (name: string) => path.join(FIXTURES, name, "model");

async function compiled(name: string, halfWeights: "cast" | "fed") {
  const folder = folderOf(name);
  const configFile = path.join(folder, "config.json");
  const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as JsonObject;
  const index = await WeightIndex.open(folder);
  const graphs = compileGraphs(findArchitecture(config["architectures"], configFile).module, config, configFile, new ModelWeights(index, configFile), { provider: "cpu", halfWeights });
  return { index, graphs: [graphs.decoder, graphs.lens, ...(graphs.vision ? [graphs.vision] : [])] };
}

/** The initializers a Cast node reads: constant work onnxruntime would fold at load (tensor names, views dropped). */
function castInitializers(bytes: Uint8Array): string[] {
  const graph = onnx.ModelProto.decode(bytes).graph!;
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  return (graph.node ?? []).filter((n) => n.opType === "Cast" && initializers.has(n.input?.[0] ?? "")).map((n) => n.input![0].split("@")[0]);
}

const opened: LoadedModel[] = [];
afterAll(async () => {
  for (const m of opened) await m.dispose();
});

describe.each(HALF)("%s", (name) => {
  it("fed, its graphs hold no Cast of a weight and nothing to fold; cast, they do", async () => {
    const fed = await compiled(name, "fed");
    for (const g of fed.graphs) {
      expect(castInitializers(g.bytes), g.name).toEqual([]);
      expect(g.foldsConstants, g.name).toBe(false);
    }
    // every weight the cast graphs cast at load comes in as a float32 input instead
    const cast = await compiled(name, "cast");
    const casts = new Set(cast.graphs.flatMap((g) => castInitializers(g.bytes)));
    expect(casts.size).toBeGreaterThan(10);
    expect(new Set(fed.graphs.flatMap((g) => g.fedWeights.map((w) => w.tensor)))).toEqual(casts);
    expect(cast.graphs.every((g) => g.fedWeights.length === 0)).toBe(true);
  });

  it("widens each fed tensor to torch's float32 of its stored bytes, in any chunking", async () => {
    const { index, graphs } = await compiled(name, "fed");
    const weights = graphs.flatMap((g) => g.fedWeights);
    const whole = new FedWeights(index);
    const chunked = new FedWeights(index, 7);
    // a worker thread shares the load (as for any model past 256 MB)
    const shared = new FedWeights(index, 5, 0);
    await whole.load(weights);
    await chunked.load(weights);
    await shared.load(weights);
    for (const tensor of new Set(weights.map((w) => w.tensor))) {
      const e = index.get(tensor);
      const fd = fs.openSync(e.file, "r");
      const bytes = Buffer.alloc(e.byteLength);
      fs.readSync(fd, bytes, 0, e.byteLength, e.byteOffset);
      fs.closeSync(fd);
      const expected = new Uint32Array(halfToFloat32(bytes, e.dtype as "F16" | "BF16").buffer);
      expect(new Uint32Array(whole.get(tensor)!.buffer)).toEqual(expected);
      expect(new Uint32Array(chunked.get(tensor)!.buffer)).toEqual(expected);
      expect(new Uint32Array(shared.get(tensor)!.buffer)).toEqual(expected);
    }
    expect(whole.bytes).toBe(2 * [...new Set(weights.map((w) => w.tensor))].reduce((n, t) => n + index.get(t).byteLength, 0));
  });

  it("opens with the float32 plan on the CPU feeding the copies, and with half-per-use feeding none", async () => {
    const copies = await LoadedModel.open(folderOf(name), { device: "cpu", weightPlan: "float32" });
    const perUse = await LoadedModel.open(folderOf(name), { device: "cpu", weightPlan: "half-per-use" });
    opened.push(copies, perUse);
    expect(copies.engine.fedBytes).toBeGreaterThan(0);
    expect(perUse.engine.fedBytes).toBe(0);
  });
});

it.each([
  ["this thread", Infinity],
  ["the worker thread", 0],
])("names the file when it ends before a fed tensor does, read on %s", async (_where, workerBytes) => {
  const dir = copyFixtureModel("llama-f16");
  const index = await WeightIndex.open(dir);
  const file = index.files[0];
  fs.truncateSync(file, fs.statSync(file).size - 3);
  // in file order: the first tensor is read here, the second (the last in the file, cut short) by the worker when there is one
  const [last, other] = index.names().filter((n) => index.get(n).file === file).sort((a, b) => index.get(b).byteOffset - index.get(a).byteOffset);
  const fed = [other, last].map((name) => ({ input: name, tensor: name, dims: index.get(name).shape }));
  await expect(new FedWeights(index, undefined, workerBytes).load(fed)).rejects.toThrow(
    new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: the file ended while reading tensor "${last}" .*re-download it$`),
  );
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("made in the background, the load waits while the engine is in use", () => {
  it("on both threads: it holds at the gate and the paused flag, then gives the same arrays; stopped, it holds nothing", async () => {
    const { index, graphs } = await compiled("llava-gqa-bf16", "fed");
    const weights = graphs.flatMap((g) => g.fedWeights);
    const reference = new FedWeights(index);
    await reference.load(weights);
    const activity = new Activity();
    const end = activity.begin();
    let gated = 0;
    // small chunks and a worker from the first byte: both threads go through their waits many times
    const held = new FedWeights(index, 64, 0);
    let done = false;
    const loading = held.load(weights, { gate: () => (gated++, activity.whenQuiet()), pausedFlag: activity.pausedFlag }).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 400));
    expect([done, gated]).toEqual([false, 1]);
    expect(Atomics.load(activity.pausedFlag, 0)).toBe(1);
    end();
    await loading;
    expect(gated).toBeGreaterThan(10);
    for (const t of new Set(weights.map((w) => w.tensor))) expect(new Uint32Array(held.get(t)!.buffer)).toEqual(new Uint32Array(reference.get(t)!.buffer));

    const stopping = new Activity();
    stopping.begin();
    const dropped = new FedWeights(index, 64, 0);
    const failed = dropped.load(weights, { gate: () => stopping.whenQuiet(), pausedFlag: stopping.pausedFlag }).then(() => undefined, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    stopping.stop();
    expect(await failed).toBeInstanceOf(StoppedError);
    expect(dropped.bytes).toBe(0);
  });
});
