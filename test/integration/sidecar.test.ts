/**
 * The real sidecar process (the built bundle, `logit-lens serve`) over JSON-RPC on stdio:
 * the handshake, opening a model, runs, bad input that leaves it running, cancellation,
 * tracking more tokens after a run, large blocks sent as bytes, and a clean shutdown.
 */
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancellationTokenSource, type MessageConnection, ResponseError } from "vscode-jsonrpc/node";
import { decodeBlocks } from "../../src/shared/blockTransport";
import {
  ErrorCode,
  InitializeRequest,
  LogNotification,
  OpenModelRequest,
  PROTOCOL_VERSION,
  RunRequest,
  ShutdownRequest,
  TrackTokensRequest,
} from "../../src/shared/protocol";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { FIXTURES } from "../helpers/fixtures";
import { type SidecarProcess, spawnSidecar } from "../helpers/sidecarProcess";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/landscape.png");

let child: ChildProcess;
let connection: MessageConnection;
const logs: string[] = [];
let stderr = "";

let send: SidecarProcess["send"];

beforeAll(() => {
  ({ child, connection, send } = spawnSidecar("pipe"));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  connection.onNotification(LogNotification, (p) => logs.push(`${p.level}: ${p.message}`));
  connection.listen();
});

afterAll(() => {
  connection.dispose();
  child.kill();
});

async function errorOf(p: Promise<unknown>): Promise<ResponseError<unknown>> {
  try {
    await p;
  } catch (e) {
    return e as ResponseError<unknown>;
  }
  throw new Error("the request did not fail");
}

describe("sidecar over JSON-RPC", () => {
  it("refuses work before the handshake, and a wrong protocol version", async () => {
    expect((await errorOf(connection.sendRequest(OpenModelRequest, { folder: MODEL }))).code).toBe(ErrorCode.NOT_INITIALIZED);
    const e = await errorOf(connection.sendRequest(InitializeRequest, { protocolVersion: 99, clientName: "test" }));
    expect(e.code).toBe(ErrorCode.VERSION_MISMATCH);
  });

  it("initializes and reports its execution providers", async () => {
    const r = await connection.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION, clientName: "test" });
    expect(r.protocolVersion).toBe(PROTOCOL_VERSION);
    expect(r.providers.some((p) => p.name === "cpu" && p.works)).toBe(true);
  });

  it("answers a bad model folder with a one-line input error and keeps running", async () => {
    const e = await errorOf(connection.sendRequest(OpenModelRequest, { folder: "/no/such/model" }));
    expect(e.code).toBe(ErrorCode.INPUT_ERROR);
    expect(e.message).toMatch(/^\/no\/such\/model: model folder does not exist/);
    expect(e.message).not.toContain("\n");
    const m = await connection.sendRequest(OpenModelRequest, { folder: MODEL, device: "cpu" });
    expect(m.architecture).toBe("LlavaForConditionalGeneration");
    expect(m.provider).toBe("cpu");
  });

  it("runs the lens and returns a valid LensRecord", async () => {
    const record = assertLensRecord(await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 3 } }));
    expect(record.generation.ids).toHaveLength(3);
  });

  it("sends a record's large blocks as bytes that decode to the record", async () => {
    const raw = (await connection.sendRequest(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 2, positions: "all" } })) as unknown as Record<string, Record<string, unknown>>;
    // tracked ranks and probabilities cover every layer, position and tracked id: thousands of values
    const rank = raw["tracked"]["rank"] as { shape: number[]; data?: unknown; encoded?: { dtype: string; base64: string } };
    expect(rank.data).toBeUndefined();
    expect(rank.encoded?.dtype).toBe("i32");
    expect(Buffer.from(rank.encoded!.base64, "base64").length).toBe(4 * rank.shape.reduce((a, b) => a * b, 1));
    expect((raw["tracked"]["prob"] as { encoded?: { dtype: string } }).encoded?.dtype).toBe("f32");
    const record = assertLensRecord(decodeBlocks(raw));
    expect(record.tracked.rank.data).toHaveLength(rank.shape.reduce((a, b) => a * b, 1));
    expect(record.tracked.rank.data.every((r) => Number.isInteger(r) && r >= 1)).toBe(true);
  });

  it("a missing image is an input error, and the next run works", async () => {
    const e = await errorOf(send(RunRequest, { prompt: "hi", image: "/no/such.png" }));
    expect(e.code).toBe(ErrorCode.INPUT_ERROR);
    expect(e.message).toContain("/no/such.png");
    const record = await send(RunRequest, { prompt: "What shape is it?", image: IMAGE, settings: { maxNewTokens: 1 } });
    expect(record.input.prompt).toBe("What shape is it?");
  });

  it("tracks the ranks of any token string over the last run without running it again", async () => {
    const last = await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 2 } });
    const id = last.tracked.ids[0];
    const text = last.tokenTexts[String(id)];
    const r = await send(TrackTokensRequest, { tokens: [" red", text] });
    expect(r.rank.shape).toEqual([4, last.positions.length, 2]);
    // A token the run already tracked gets the same ranks.
    if (r.ids[1] === id) {
      const M = last.tracked.ids.length;
      for (let i = 0; i < 4 * last.positions.length; i++) expect(r.rank.data[i * 2 + 1]).toBe(last.tracked.rank.data[i * M]);
    }
  });

  it("says how each asked string splits into tokens, and tracks picked ids as they are", async () => {
    const last = await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 2 } });
    const word = " bananarama";
    const r = await send(TrackTokensRequest, { tokens: [word], ids: [last.tracked.ids[0]] });
    expect(r.ids).toHaveLength(2);
    expect(r.asked?.[0]).toBe(word);
    const pieces = r.pieces?.[0] ?? [];
    // the first piece of the split is the token tracked, and the pieces read back as the word
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces[0].id).toBe(r.ids[0]);
    expect(pieces.map((q) => q.text).join("").trim()).toBe(word.trim());
    expect(r.unknown).toEqual([false, false]);
    // a picked id is tracked itself, with the run's own ranks for it
    expect(r.ids[1]).toBe(last.tracked.ids[0]);
    expect(r.pieces?.[1]?.map((q) => q.id)).toEqual([last.tracked.ids[0]]);
    const M = last.tracked.ids.length;
    for (let i = 0; i < 4 * last.positions.length; i++) expect(r.rank.data[i * 2 + 1]).toBe(last.tracked.rank.data[i * M]);
  });

  it("cancels a run", async () => {
    const source = new CancellationTokenSource();
    const pending = send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 64, positions: "all" } }, source.token);
    source.cancel();
    const e = await errorOf(pending);
    expect(e.code).toBe(-32800);
    // and is ready for the next one
    const record = await send(RunRequest, { prompt: "Is it round?", image: IMAGE, settings: { maxNewTokens: 1 } });
    expect(record.generation.ids).toHaveLength(1);
  });

  it("logs through notifications and never writes anything but JSON-RPC to stdout", () => {
    expect(logs.some((l) => l.startsWith("info: opened"))).toBe(true);
    expect(logs.some((l) => l.startsWith("warn: /no/such/model"))).toBe(true);
    expect(stderr).toBe("");
  });

  it("shuts down cleanly", async () => {
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await connection.sendRequest(ShutdownRequest);
    expect(await exited).toBe(0);
  });
});
