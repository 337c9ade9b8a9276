/**
 * Experiments through the real sidecar process over JSON-RPC: the live-preview request (its
 * cache, and invalid edits answered with every problem while the server keeps running) and a
 * whole experiment run with progress notifications.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageConnection, ResponseError } from "vscode-jsonrpc/node";
import {
  ErrorCode,
  ExperimentProgressNotification,
  type ExperimentProgressParams,
  PlanExperimentRequest,
  PreviewExperimentRequest,
  RunExperimentRequest,
  TrackTokensRequest,
} from "../../src/shared/protocol";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { FIXTURES } from "../helpers/fixtures";
import { type SidecarProcess, initializedSidecar } from "../helpers/sidecarProcess";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const SCENES = path.resolve(__dirname, "../fixtures/scenes");

let close: () => Promise<void>;
let connection: MessageConnection;
const progress: ExperimentProgressParams[] = [];
let dir: string;
let file: string;

const experiment = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ model: MODEL, inputs: [{ manifest: path.join(SCENES, "questions.jsonl"), limit: 6 }], prompts: ["{question}"], target: "{answer}", generation: { maxNewTokens: 2 }, groupBy: ["group"], ...over });

let send: SidecarProcess["send"];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-rpc-exp-"));
  file = path.join(dir, "scenes.lens.json");
  fs.writeFileSync(file, experiment());
  ({ connection, send, close } = await initializedSidecar());
  connection.onNotification(ExperimentProgressNotification, (p) => progress.push(p));
});

afterAll(async () => {
  await close();
});

describe("experiments over JSON-RPC", () => {
  it("previews an item, answers an unchanged item from the cache and reruns a changed one", async () => {
    const first = await send(PreviewExperimentRequest, { file });
    expect(first.cached).toBe(false);
    expect(first.item).toMatchObject({ index: 0, total: 6, image: path.relative(dir, path.join(SCENES, "0000-color-main.png")).split(path.sep).join("/"), variant: "baseline" });
    // the absolute path, for the panel's webview URI (a relative one lost its folder there)
    expect(first.item.imagePath).toBe(path.join(SCENES, "0000-color-main.png"));
    const record = assertLensRecord(first.record);
    expect(record.input.prompt).toBe(first.item.prompt);
    expect(record.lens.targetText?.text).toBe(first.item.expected);

    // An edit that leaves item 0 as it was (a new group key) is served from the cache.
    const again = await send(PreviewExperimentRequest, { file, text: experiment({ groupBy: [] }) });
    expect(again.cached).toBe(true);
    expect(again.record).toEqual(first.record);
    // A change to the lens settings runs it again.
    const changed = await send(PreviewExperimentRequest, { file, text: experiment({ lens: { topK: 3 } }) });
    expect(changed.cached).toBe(false);
    expect(changed.record.lens.topK).toBe(3);
    // Another item.
    const third = await send(PreviewExperimentRequest, { file, item: 2 });
    expect(third.item.index).toBe(2);
  });

  it("lists the planned items, shows any item and variant, clamps a lost item, and a computed preview is the last run", async () => {
    const variants = [{ name: "baseline" }, { name: "masked", mask: { "0": [0] } }];
    const text = experiment({ variants });
    const plan = await send(PlanExperimentRequest, { file, text });
    expect(plan.total).toBe(12);
    expect(plan.variants).toEqual(["baseline", "masked"]);
    expect(plan.items.map((i) => i.index)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    // variants innermost: items 2k and 2k+1 are one input and prompt under each variant
    expect(plan.items.map((i) => i.variant)).toEqual(Array.from({ length: 12 }, (_, i) => (i % 2 ? "masked" : "baseline")));
    expect(plan.items[3].image).toBe(plan.items[2].image);
    expect(plan.items[3].prompt).toBe(plan.items[2].prompt);
    expect(plan.items[4].image).not.toBe(plan.items[2].image);

    const masked = await send(PreviewExperimentRequest, { file, text, item: 3 });
    expect(masked.variants).toEqual(["baseline", "masked"]);
    expect(masked.item).toMatchObject({ index: 3, total: 12, variant: "masked", id: plan.items[3].id, image: plan.items[3].image });
    expect(masked.record.headMask).toEqual({ "0": [0] });
    const baseline = await send(PreviewExperimentRequest, { file, text, item: 2 });
    expect(baseline.record.headMask ?? null).toBeNull();
    expect(baseline.record.input.prompt).toBe(masked.record.input.prompt);

    // a computed preview is the sidecar's last run: tracking answers over its positions
    const tracked = await send(TrackTokensRequest, { tokens: ["red"] });
    expect(tracked.rank.shape).toEqual([baseline.record.layerLabels.length, baseline.record.positions.length, 1]);
    // keepRun computes a cached item again
    const kept = await send(PreviewExperimentRequest, { file, text, item: 3, keepRun: true });
    expect(kept.cached).toBe(false);
    expect(kept.record.headMask).toEqual({ "0": [0] });

    // the file lost items: past the plan is refused, or clamped to the last when asked
    const fewer = experiment({ variants, inputs: [{ manifest: path.join(SCENES, "questions.jsonl"), limit: 2 }] });
    await expect(send(PreviewExperimentRequest, { file, text: fewer, item: 9 })).rejects.toMatchObject({ code: ErrorCode.INPUT_ERROR, message: expect.stringContaining("no item 9") });
    const clamped = await send(PreviewExperimentRequest, { file, text: fewer, item: 9, clampItem: true });
    expect(clamped.item).toMatchObject({ index: 3, total: 4, variant: "masked" });
  });

  it("answers an invalid edit with every problem, and keeps serving", async () => {
    let error: ResponseError<{ errors: string[] }> | undefined;
    try {
      await send(PreviewExperimentRequest, { file, text: experiment({ lens: { topK: 0, positions: "last" } }) });
    } catch (e) {
      error = e as ResponseError<{ errors: string[] }>;
    }
    expect(error?.code).toBe(ErrorCode.INPUT_ERROR);
    expect(error?.data?.errors).toEqual(expect.arrayContaining([expect.stringContaining("/lens/topK: must be >= 1"), expect.stringContaining("/lens/positions: must be one of")]));
    const ok = await send(PreviewExperimentRequest, { file });
    expect(ok.cached).toBe(true);
  });

  it("runs the whole experiment with progress after every item", async () => {
    const result = await send(RunExperimentRequest, { file });
    expect(result).toMatchObject({ total: 6, ran: 6, resumed: 0, cancelled: false, outDir: path.join(dir, "scenes.results") });
    expect(progress.map((p) => p.done)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(fs.readFileSync(path.join(dir, "scenes.results", "results.jsonl"), "utf8").trim().split("\n")).toHaveLength(6);
    expect(result.aggregates.groups[0]).toMatchObject({ variant: "baseline", key: "all", n: 6 });
    const rerun = await send(RunExperimentRequest, { file });
    expect(rerun).toMatchObject({ ran: 0, resumed: 6 });
  });
});
