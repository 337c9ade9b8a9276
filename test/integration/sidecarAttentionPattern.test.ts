/**
 * lens/attentionPattern through the real sidecar process: before any run it is a NO_RUN error;
 * after a run it answers a head's rows [positions, tokens] over the run's analysed positions, the
 * same rows for the same head whichever layer is asked first (one computation, kept), and a layer
 * or head past the model is a one-line input error that names the range, with the sidecar still
 * answering.
 */
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResponseError } from "vscode-jsonrpc/node";
import { SEGMENTS } from "../../src/shared/lensRecord";
import { AttentionPatternRequest, ErrorCode, OpenModelRequest, RunRequest } from "../../src/shared/protocol";
import { assertLensRecord } from "../../src/shared/validateRecord";
import { FIXTURES } from "../helpers/fixtures";
import { initializedSidecar, type SidecarProcess } from "../helpers/sidecarProcess";

const MODEL = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/landscape.png");

let sidecar: Awaited<ReturnType<typeof initializedSidecar>>;
let send: SidecarProcess["send"];

async function errorOf(p: Promise<unknown>): Promise<ResponseError<{ field?: string }>> {
  try {
    await p;
  } catch (e) {
    return e as ResponseError<{ field?: string }>;
  }
  throw new Error("the request did not fail");
}

beforeAll(async () => {
  sidecar = await initializedSidecar();
  send = sidecar.send;
  await send(OpenModelRequest, { folder: MODEL, device: "cpu" });
});

afterAll(() => sidecar.close());

describe("lens/attentionPattern over JSON-RPC", () => {
  it("is a NO_RUN error before the first run", async () => {
    const e = await errorOf(send(AttentionPatternRequest, { layer: 0, head: 0 }));
    expect(e.code).toBe(ErrorCode.NO_RUN);
  });

  it("answers a head's rows over the run's positions and tokens, consistent with the record's segment masses", async () => {
    const record = assertLensRecord(await send(RunRequest, { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 3 } }));
    const P = record.positions.length;
    const T = record.tokens.length - 1; // the last generated token was never fed back
    const nH = record.model.numHeads;
    const G = SEGMENTS.length;
    const seg = record.tokens.map((t) => SEGMENTS.indexOf(t.segment));
    for (const [layer, head] of [[1, 2], [0, 2], [2, 0]]) {
      const r = await send(AttentionPatternRequest, { layer, head });
      expect(r).toMatchObject({ layer, head });
      expect(r.rows.shape).toEqual([P, T]);
      for (let j = 0; j < P; j++) {
        const mass = new Array<number>(G).fill(0);
        for (let k = 0; k < T; k++) mass[seg[k]] += Number(r.rows.data[j * T + k]);
        for (let g = 0; g < G; g++) expect(Math.abs(mass[g] - record.attention.mass.data[((layer * nH + head) * P + j) * G + g])).toBeLessThan(1e-5);
      }
    }
  });

  it("answers over the last run: after a rerun with a block-0 head masked a later block's rows differ, and the first run's rows come back when it runs again", async () => {
    const request = { prompt: "What color is the circle?", image: IMAGE, settings: { maxNewTokens: 2 } };
    await send(RunRequest, request);
    const before = await send(AttentionPatternRequest, { layer: 2, head: 1 });
    // mask a head of block 0 (what "Mask this head and rerun" sends): later blocks' patterns change
    const masked = assertLensRecord(await send(RunRequest, { ...request, headMask: { heads: { "0": [1] } } }));
    expect(masked.headMask).toEqual({ "0": [1] });
    const after = await send(AttentionPatternRequest, { layer: 2, head: 1 });
    expect(after.rows.shape).toEqual(before.rows.shape);
    const diff = Math.max(...before.rows.data.map((v, i) => Math.abs(Number(v) - Number(after.rows.data[i]))));
    expect(diff).toBeGreaterThan(1e-6);
    // the panel's own run again (as the host does before reading a head): the same rows as at first
    await send(RunRequest, request);
    const again = await send(AttentionPatternRequest, { layer: 2, head: 1 });
    expect(Math.max(...before.rows.data.map((v, i) => Math.abs(Number(v) - Number(again.rows.data[i]))))).toBeLessThan(1e-6);
  });

  it("refuses a layer or head past the model with one line naming the range, and keeps answering", async () => {
    const layer = await errorOf(send(AttentionPatternRequest, { layer: 3, head: 0 }));
    expect(layer.code).toBe(ErrorCode.INPUT_ERROR);
    expect(layer.message).toMatch(/layer 3 is past the model's 3 blocks \(0 to 2\)/u);
    const head = await errorOf(send(AttentionPatternRequest, { layer: 0, head: 4 }));
    expect(head.message).toMatch(/head 4 is past the model's 4 heads/u);
    expect(head.message).not.toContain("\n");
    const bad = await errorOf(send(AttentionPatternRequest, { layer: -1, head: 0 }));
    expect(bad.code).toBe(ErrorCode.INPUT_ERROR);
    expect(bad.data?.field).toBe("params.layer");
    expect((await send(AttentionPatternRequest, { layer: 0, head: 0 })).rows.shape[0]).toBeGreaterThan(0);
  });
});
