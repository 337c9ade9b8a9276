/**
 * The params checks of every sidecar request (src/shared/protocolValidation.ts): one per request
 * constant in protocol.ts, what the extension really sends passes, and each wrong type or range
 * is refused with one line that names the method, the field and what it must be.
 */
import { describe, expect, it } from "vitest";
import { RequestType, RequestType0 } from "vscode-jsonrpc";
import * as protocol from "../../src/shared/protocol";
import { InvalidParamsError, isRequestMethod, type RequestMethod, VALIDATED_METHODS, validateParams } from "../../src/shared/protocolValidation";

function refusal(method: RequestMethod, params: unknown): InvalidParamsError {
  try {
    validateParams(method, params);
  } catch (e) {
    if (e instanceof InvalidParamsError) return e;
    throw e;
  }
  throw new Error(`${method} accepted ${JSON.stringify(params)}`);
}

describe("protocol params validation", () => {
  it("has a check for every request protocol.ts declares, and for nothing else", () => {
    const requests = Object.values(protocol)
      .filter((v) => v instanceof RequestType || v instanceof RequestType0)
      .map((v) => (v as { method: string }).method)
      .sort();
    expect(requests.length).toBeGreaterThanOrEqual(7);
    expect([...VALIDATED_METHODS].sort()).toEqual(requests);
    expect(isRequestMethod("lens/log")).toBe(false); // a notification
    expect(isRequestMethod("constructor")).toBe(false);
    expect(isRequestMethod("__proto__")).toBe(false);
  });

  it("accepts what the extension sends, by name or as the one positional param", () => {
    expect(validateParams("lens/initialize", { protocolVersion: protocol.PROTOCOL_VERSION, clientName: "vscode" })).toEqual({ protocolVersion: 2, clientName: "vscode" });
    expect(validateParams("lens/initialize", [{ protocolVersion: 2, clientName: "vscode" }])).toEqual({ protocolVersion: 2, clientName: "vscode" });
    expect(validateParams("lens/openModel", { folder: "", device: "auto", threads: 0 })).toEqual({ folder: "", device: "auto", threads: 0 });
    for (const dtype of protocol.DTYPE_CHOICES) expect(validateParams("lens/openModel", { folder: "", dtype })).toEqual({ folder: "", dtype });
    const settings = { positions: "afterImage", topK: 10, maxNewTokens: 8, target: "red", answerProb: true, trackTokens: [" red"], imageAttention: true, patchLens: false };
    expect(validateParams("lens/run", { prompt: "What color?", image: "/tmp/a.png", settings, headMask: { heads: { "0": [1, 2] } } })).toEqual({
      prompt: "What color?",
      image: "/tmp/a.png",
      settings,
      headMask: { heads: { "0": [1, 2] } },
    });
    expect(validateParams("lens/run", { prompt: "x", headMask: { strategy: "random", count: 3, seed: 7 } }).headMask).toEqual({ strategy: "random", count: 3, seed: 7 });
    expect(validateParams("lens/run", { prompt: "x", headMask: { strategy: "topImage", count: 3 } }).headMask).toEqual({ strategy: "topImage", count: 3 });
    expect(validateParams("lens/trackTokens", { tokens: [" red"] })).toEqual({ tokens: [" red"] });
    expect(validateParams("lens/attentionPattern", { layer: 2, head: 3, extra: 1 })).toEqual({ layer: 2, head: 3 });
    // ids picked from a top-k list, with or without strings
    expect(validateParams("lens/trackTokens", { tokens: [], ids: [6, 8] })).toEqual({ tokens: [], ids: [6, 8] });
    expect(validateParams("lens/trackTokens", { tokens: [" red"], ids: [6] })).toEqual({ tokens: [" red"], ids: [6] });
    expect(validateParams("lens/shutdown", undefined)).toBeUndefined();
    expect(validateParams("lens/shutdown", [])).toBeUndefined();
    expect(validateParams("lens/runExperiment", { file: "/x/a.lens.json", outDir: "/x/out", fresh: true })).toEqual({ file: "/x/a.lens.json", outDir: "/x/out", fresh: true });
    expect(validateParams("lens/previewExperiment", { file: "/x/a.lens.json", text: "{}", item: 3 })).toEqual({ file: "/x/a.lens.json", text: "{}", item: 3 });
    expect(validateParams("lens/previewExperiment", { file: "/x/a.lens.json", item: 3, clampItem: true, keepRun: false })).toEqual({ file: "/x/a.lens.json", item: 3, clampItem: true, keepRun: false });
    expect(validateParams("lens/planExperiment", { file: "/x/a.lens.json", text: "{}", item: 2 })).toEqual({ file: "/x/a.lens.json", text: "{}" });
  });

  it("keeps only the known fields", () => {
    expect(validateParams("lens/run", { prompt: "x", extra: 1, settings: { topK: 5, bogus: true } })).toEqual({ prompt: "x", settings: { topK: 5 } });
  });

  const refused: [RequestMethod, unknown, string][] = [
    ["lens/initialize", null, "lens/initialize: params must be an object, got null"],
    ["lens/initialize", [null], "lens/initialize: params must be an object, got null"],
    ["lens/initialize", undefined, "lens/initialize: params must be an object, got nothing"],
    ["lens/initialize", 5, "lens/initialize: params must be an object, got 5"],
    ["lens/initialize", [1, 2], "lens/initialize: params must be an object, got an array of 2"],
    ["lens/initialize", { protocolVersion: "2", clientName: "x" }, 'lens/initialize: params.protocolVersion must be an integer, got "2"'],
    ["lens/initialize", { protocolVersion: 2 }, "lens/initialize: params.clientName must be a string, got nothing"],
    ["lens/openModel", { folder: 5 }, "lens/openModel: params.folder must be a string, got 5"],
    ["lens/openModel", {}, "lens/openModel: params.folder must be a string, got nothing"],
    ["lens/openModel", { folder: "", threads: 1e9 }, "lens/openModel: params.threads must be an integer from 0 to 256, got 1000000000"],
    ["lens/openModel", { folder: "", threads: -1 }, "lens/openModel: params.threads must be an integer from 0 to 256, got -1"],
    ["lens/openModel", { folder: "", threads: 1.5 }, "lens/openModel: params.threads must be an integer from 0 to 256, got 1.5"],
    ["lens/openModel", { folder: "", device: "tpu" }, 'lens/openModel: params.device must be one of auto, cpu, cuda, webgpu, got "tpu"'],
    ["lens/openModel", { folder: "", dtype: "half" }, 'lens/openModel: params.dtype must be one of auto, float32, float16, bfloat16, got "half"'],
    ["lens/openModel", { folder: "", dtype: 16 }, "lens/openModel: params.dtype must be one of auto, float32, float16, bfloat16, got 16"],
    ["lens/run", {}, "lens/run: params.prompt must be a string, got nothing"],
    ["lens/run", { prompt: 5 }, "lens/run: params.prompt must be a string, got 5"],
    ["lens/run", { prompt: "x", image: "" }, 'lens/run: params.image must be the path of an image file, got ""'],
    ["lens/run", { prompt: "x", image: 3 }, "lens/run: params.image must be the path of an image file, got 3"],
    ["lens/run", { prompt: "x", settings: 5 }, "lens/run: params.settings must be an object, got 5"],
    ["lens/run", { prompt: "x", settings: { topK: 1e9 } }, "lens/run: params.settings.topK must be an integer from 1 to 100, got 1000000000"],
    ["lens/run", { prompt: "x", settings: { topK: 0 } }, "lens/run: params.settings.topK must be an integer from 1 to 100, got 0"],
    ["lens/run", { prompt: "x", settings: { topK: "10" } }, 'lens/run: params.settings.topK must be an integer from 1 to 100, got "10"'],
    ["lens/run", { prompt: "x", settings: { maxNewTokens: 513 } }, "lens/run: params.settings.maxNewTokens must be an integer from 0 to 512, got 513"],
    ["lens/run", { prompt: "x", settings: { positions: "some" } }, 'lens/run: params.settings.positions must be one of afterImage, image, all, got "some"'],
    ["lens/run", { prompt: "x", settings: { target: 5 } }, "lens/run: params.settings.target must be a string, got 5"],
    ["lens/run", { prompt: "x", settings: { answerProb: "yes" } }, 'lens/run: params.settings.answerProb must be true or false, got "yes"'],
    ["lens/run", { prompt: "x", settings: { trackTokens: " red" } }, 'lens/run: params.settings.trackTokens must be an array of at most 1000 non-empty strings, got " red"'],
    ["lens/run", { prompt: "x", settings: { trackTokens: [" red", 5] } }, "lens/run: params.settings.trackTokens[1] must be a non-empty string, got 5"],
    ["lens/run", { prompt: "x", settings: { imageAttention: 1 } }, "lens/run: params.settings.imageAttention must be true or false, got 1"],
    ["lens/run", { prompt: "x", settings: { patchLens: null } }, "lens/run: params.settings.patchLens must be true or false, got null"],
    ["lens/run", { prompt: "x", headMask: 5 }, "lens/run: params.headMask must be an object, got 5"],
    ["lens/run", { prompt: "x", headMask: {} }, "lens/run: params.headMask.strategy must be one of random, topImage, got nothing"],
    ["lens/run", { prompt: "x", headMask: { heads: [1] } }, "lens/run: params.headMask.heads must be an object, got an array of 1"],
    ["lens/run", { prompt: "x", headMask: { heads: { a: [1] } } }, 'lens/run: params.headMask.heads must map layer numbers (0, 1, ...) to head lists, got the key "a"'],
    ["lens/run", { prompt: "x", headMask: { heads: JSON.parse('{"__proto__": [1]}') } }, 'lens/run: params.headMask.heads must map layer numbers (0, 1, ...) to head lists, got the key "__proto__"'],
    ["lens/run", { prompt: "x", headMask: { heads: { "0": 1 } } }, "lens/run: params.headMask.heads.0 must be an array of at most 1000000 head numbers, got 1"],
    ["lens/run", { prompt: "x", headMask: { heads: { "0": [-1] } } }, "lens/run: params.headMask.heads.0[0] must be an integer from 0 to 1000000, got -1"],
    ["lens/run", { prompt: "x", headMask: { strategy: "random", count: 2 } }, "lens/run: params.headMask.seed must be an integer from 0 to 4294967295, got nothing"],
    ["lens/run", { prompt: "x", headMask: { strategy: "topImage", count: 0 } }, "lens/run: params.headMask.count must be an integer from 1 to 1000000, got 0"],
    ["lens/trackTokens", {}, "lens/trackTokens: params.tokens must be an array of 1 to 1000 non-empty strings, got nothing"],
    ["lens/trackTokens", { tokens: [] }, "lens/trackTokens: params.tokens must be an array of 1 to 1000 non-empty strings, got an empty array"],
    ["lens/trackTokens", { tokens: [5] }, "lens/trackTokens: params.tokens[0] must be a non-empty string, got 5"],
    ["lens/trackTokens", { tokens: [""] }, 'lens/trackTokens: params.tokens[0] must be a non-empty string, got ""'],
    ["lens/attentionPattern", { layer: 0 }, "lens/attentionPattern: params.head must be an integer from 0 to 10000, got nothing"],
    ["lens/attentionPattern", { layer: 1.5, head: 0 }, "lens/attentionPattern: params.layer must be an integer from 0 to 10000, got 1.5"],
    ["lens/trackTokens", { tokens: [], ids: [] }, "lens/trackTokens: params.tokens must be an array of 1 to 1000 non-empty strings, got an empty array"],
    ["lens/trackTokens", { tokens: [], ids: [1.5] }, "lens/trackTokens: params.ids[0] must be an integer from 0 to 2147483647, got 1.5"],
    ["lens/shutdown", { now: true }, "lens/shutdown: params must be absent (lens/shutdown takes none), got an object"],
    ["lens/runExperiment", {}, "lens/runExperiment: params.file must be the path of a .lens.json file, got nothing"],
    ["lens/runExperiment", { file: "" }, 'lens/runExperiment: params.file must be the path of a .lens.json file, got ""'],
    ["lens/runExperiment", { file: "a.lens.json", outDir: 5 }, "lens/runExperiment: params.outDir must be the path of a results folder, got 5"],
    ["lens/runExperiment", { file: "a.lens.json", fresh: "yes" }, 'lens/runExperiment: params.fresh must be true or false, got "yes"'],
    ["lens/previewExperiment", { file: 5 }, "lens/previewExperiment: params.file must be the path of a .lens.json file, got 5"],
    ["lens/previewExperiment", { file: "a.lens.json", text: 5 }, "lens/previewExperiment: params.text must be a string, got 5"],
    ["lens/previewExperiment", { file: "a.lens.json", item: -1 }, "lens/previewExperiment: params.item must be an integer from 0 to 9007199254740991, got -1"],
    ["lens/previewExperiment", { file: "a.lens.json", item: 0.5 }, "lens/previewExperiment: params.item must be an integer from 0 to 9007199254740991, got 0.5"],
    ["lens/previewExperiment", { file: "a.lens.json", clampItem: "yes" }, 'lens/previewExperiment: params.clampItem must be true or false, got "yes"'],
    ["lens/previewExperiment", { file: "a.lens.json", keepRun: 1 }, "lens/previewExperiment: params.keepRun must be true or false, got 1"],
    ["lens/planExperiment", {}, "lens/planExperiment: params.file must be the path of a .lens.json file, got nothing"],
    ["lens/planExperiment", { file: "a.lens.json", text: [] }, "lens/planExperiment: params.text must be a string, got an empty array"],
  ];
  for (const [method, params, message] of refused) {
    it(`refuses ${method} ${JSON.stringify(params) ?? "without params"}`, () => {
      const e = refusal(method, params);
      expect(e.message).toBe(message);
      expect(e.method).toBe(method);
      expect(message).toContain(e.field);
    });
  }

  it("shortens long strings in its messages and keeps them on one line", () => {
    const e = refusal("lens/run", { prompt: "x", settings: { positions: `${"a".repeat(100)}\nsecond line` } });
    expect(e.message).not.toContain("\n");
    expect(e.message).toContain("(112 characters)");
    expect(e.message.length).toBeLessThan(200);
  });

  it("has a refusal case above for every method", () => {
    expect(new Set(refused.map(([m]) => m))).toEqual(new Set(VALIDATED_METHODS));
  });
});
