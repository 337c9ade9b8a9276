/**
 * The dtype a model opens with, through the real sidecar process: lens/openModel's dtype reaches
 * the model (float32 runs, bfloat16 is refused on the CPU as an input error and the open model
 * stays), a dtype that is not a choice is refused at the boundary, and an experiment's dtype
 * reopens the model only when it differs from the one it is open with. A half-precision
 * checkpoint opens kept half and tells the extension when its float32 copies are in use.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MessageConnection, ResponseError } from "vscode-jsonrpc/node";
import { ErrorCode, LogNotification, ModelChangedNotification, type ModelSummary, OpenModelRequest, PreviewExperimentRequest, RunExperimentRequest, RunRequest } from "../../src/shared/protocol";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { FIXTURES } from "../helpers/fixtures";
import { copyFixtureModel } from "../helpers/tempModel";
import { type SidecarProcess, initializedSidecar } from "../helpers/sidecarProcess";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/landscape.png");
const SCENES = path.resolve(__dirname, "../fixtures/scenes/questions.jsonl");

let close: () => Promise<void>;
let connection: MessageConnection;
let send: SidecarProcess["send"];
const logs: string[] = [];
let dir: string;

/** How many models the sidecar has opened so far (one info line each). */
const opens = () => logs.filter((l) => l.startsWith("info: opened ")).length;

async function errorOf(p: Promise<unknown>): Promise<ResponseError<{ field?: string; file?: string }>> {
  try {
    await p;
  } catch (e) {
    return e as ResponseError<{ field?: string; file?: string }>;
  }
  throw new Error("the request did not fail");
}

function experimentFile(name: string, over: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.lens.json`);
  fs.writeFileSync(file, JSON.stringify({ model: MODEL, inputs: [{ manifest: SCENES, limit: 1 }], prompts: ["{question}"], generation: { maxNewTokens: 1 }, ...over }));
  return file;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-rpc-dtype-"));
  ({ connection, send, close } = await initializedSidecar());
  connection.onNotification(LogNotification, (p) => logs.push(`${p.level}: ${p.message}`));
});

afterAll(async () => {
  await close();
});

describe("dtype over JSON-RPC", () => {
  it("opens the bundled model in float32 and runs a normal record", async () => {
    const m = await connection.sendRequest(OpenModelRequest, { folder: "", device: "cpu", dtype: "float32" });
    expect(m).toMatchObject({ computeDtype: "float32", weightPlan: "float32", provider: "cpu" });
    const record = assertLensRecord(await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 2 } }));
    expect(record.model.computeDtype).toBe("float32");
    expect(record.generation.ids).toHaveLength(2);
  });

  it("answers bfloat16 on the CPU with a one-line input error, and the open model stays", async () => {
    const e = await errorOf(connection.sendRequest(OpenModelRequest, { folder: "", device: "cpu", dtype: "bfloat16" }));
    expect(e.code).toBe(ErrorCode.INPUT_ERROR);
    expect(e.message).toMatch(/dtype bfloat16 computes only on CUDA/);
    expect(e.message).not.toContain("\n");
    assertLensRecord(await send(RunRequest, { prompt: "hi", settings: { maxNewTokens: 0 } }));
  });

  it("refuses a dtype that is not a choice at the boundary, naming the choices", async () => {
    const e = await errorOf(connection.sendRequest(OpenModelRequest, { folder: "", dtype: "half" } as never));
    expect(e.code).toBe(ErrorCode.INPUT_ERROR);
    expect(e.data?.field).toBe("params.dtype");
    expect(e.message).toBe('lens/openModel: params.dtype must be one of auto, float32, float16, bfloat16, got "half"');
  });

  it("an experiment's dtype opens its model with it, and reopens an open model only for another dtype", async () => {
    const refused = experimentFile("bf16", { dtype: "bfloat16" });
    const e = await errorOf(send(RunExperimentRequest, { file: refused }));
    expect(e.code).toBe(ErrorCode.INPUT_ERROR);
    expect(e.message).toMatch(/dtype bfloat16 computes only on CUDA/);
    expect((await errorOf(send(PreviewExperimentRequest, { file: refused }))).message).toMatch(/dtype bfloat16 computes only on CUDA/);

    // the model opened with auto; a file asking for float32 reopens it once, then uses it as it is
    await connection.sendRequest(OpenModelRequest, { folder: MODEL, device: "cpu" });
    const before = opens();
    const f32 = experimentFile("f32", { dtype: "float32" });
    const first = await send(PreviewExperimentRequest, { file: f32 });
    expect(first.record.model.computeDtype).toBe("float32");
    expect(opens()).toBe(before + 1);
    expect((await send(RunExperimentRequest, { file: f32, outDir: path.join(dir, "out") })).ran).toBe(1);
    expect(opens()).toBe(before + 1);
    // a file that names no dtype takes the open model as it is
    await send(PreviewExperimentRequest, { file: experimentFile("none", {}) });
    expect(opens()).toBe(before + 1);
  });
});

describe("float32 copies made in the background over JSON-RPC", () => {
  it("a bfloat16 checkpoint opens with its weights kept half, then says when its float32 copies are in use, and the runs use them", async () => {
    const changed: ModelSummary[] = [];
    connection.onNotification(ModelChangedNotification, (m) => changed.push(m));
    const folder = path.join(FIXTURES, "llava-gqa-bf16/model");
    const m = await connection.sendRequest(OpenModelRequest, { folder, device: "cpu", dtype: "auto" });
    expect(m).toMatchObject({ computeDtype: "float32", weightPlan: "half-per-use" });
    expect(m.memory?.reason).toMatch(/^half-precision weights kept half until their float32 copies are made, in the background/);
    const deadline = Date.now() + 30_000;
    while (changed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatchObject({ folder, computeDtype: "float32", weightPlan: "float32" });
    expect(changed[0].memory?.reason).toMatch(/^half-precision weights converted to float32 after the open, in the background/);
    expect(logs.some((l) => /^info: float32 copies of \S+ weights are in use, [\d.]+ s after it opened/.test(l))).toBe(true);
    const record = assertLensRecord(await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 1 } }));
    expect([record.model.computeDtype, record.model.weightPlan]).toEqual(["float32", "float32"]);
  });

  it("a preview made with the weights kept half is served from the cache once the copies are in use: the numbers are the same", async () => {
    const folder = copyFixtureModel("llava-gqa-bf16");
    const changed: ModelSummary[] = [];
    connection.onNotification(ModelChangedNotification, (m) => void (m.folder === folder && changed.push(m)));
    const file = experimentFile("preview-copies", { model: folder });
    const first = await send(PreviewExperimentRequest, { file });
    expect([first.cached, first.record.model.weightPlan]).toEqual([false, "half-per-use"]);
    const deadline = Date.now() + 30_000;
    while (changed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(changed.map((m) => m.weightPlan)).toEqual(["float32"]);
    const again = await send(PreviewExperimentRequest, { file });
    expect(again.cached).toBe(true);
    expect(again.record).toEqual(first.record);
    // computed again on the copies: the same numbers
    const fresh = await send(PreviewExperimentRequest, { file, keepRun: true });
    expect([fresh.cached, fresh.record.model.weightPlan]).toEqual([false, "float32"]);
    expect(fresh.record.lens).toEqual(first.record.lens);
    expect(fresh.record.attention).toEqual(first.record.attention);
  });

  it("an experiment of several items that opens such a model makes the copies before its first run", async () => {
    // a folder of its own, so that the experiment opens it (an open model's copies may be made already)
    const file = experimentFile("copies", { model: copyFixtureModel("llava-gqa-bf16"), inputs: [{ manifest: SCENES, limit: 2 }], output: { records: true } });
    const outDir = path.join(dir, "copies-out");
    expect((await send(RunExperimentRequest, { file, outDir })).ran).toBe(2);
    const records = fs.readFileSync(path.join(outDir, "records.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { record: { model: { weightPlan?: string } } }).record);
    expect(records.map((r) => r.model.weightPlan)).toEqual(["float32", "float32"]);
  });
});
