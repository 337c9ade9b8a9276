/**
 * Size bounds on what a run tokenizes (limits.ts): the prompt's characters before rendering,
 * a target's characters before tokenizing, and the tokenized prompt plus the tokens to generate
 * against the model's context length (max_position_embeddings). Before, a 32,000-character
 * prompt ran the prefill out of memory and a 10 MB target held the sidecar for minutes.
 */
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { checkContextLength, checkPromptLength, checkTargetLength, contextLengthOf, MAX_TARGET_CHARS } from "../../src/sidecar/text/limits";
import { stopChatTemplateRenderer } from "../../src/sidecar/text/templateRenderer";
import { FIXTURES } from "../helpers/fixtures";

describe("limits", () => {
  it("reads the context length from config.json or its text_config", () => {
    expect(contextLengthOf({ max_position_embeddings: 2048 })).toEqual({ length: 2048, field: "max_position_embeddings" });
    expect(contextLengthOf({ text_config: { max_position_embeddings: 4096 }, max_position_embeddings: 9 })).toEqual({ length: 4096, field: "text_config.max_position_embeddings" });
    expect(contextLengthOf({ max_position_embeddings: -1 })).toBeUndefined();
    expect(contextLengthOf({})).toBeUndefined();
  });

  it("states both numbers and the limit in one line", () => {
    const context = { length: 256, field: "text_config.max_position_embeddings" };
    expect(() => checkContextLength({ promptTokens: 250, imageTokens: 16, maxNewTokens: 8, context, configFile: "/m/config.json" })).toThrow(
      "/m/config.json: the prompt is 250 tokens (16 of them image tokens) plus 8 new tokens make 258, over the model's context length of 256 (text_config.max_position_embeddings): shorten the prompt or lower maxNewTokens",
    );
    expect(() => checkContextLength({ promptTokens: 248, imageTokens: 16, maxNewTokens: 8, context, configFile: "/m/config.json" })).not.toThrow();
    expect(() => checkContextLength({ promptTokens: 1e6, imageTokens: 0, maxNewTokens: 0, context: undefined, configFile: "/m/config.json" })).not.toThrow();
    expect(() => checkPromptLength("x".repeat(50_000_000))).toThrow(/^the prompt is 50,000,000 characters, over the 100,000-character limit: shorten it$/);
    expect(() => checkTargetLength("x".repeat(MAX_TARGET_CHARS + 1))).toThrow(/^a target or tracked token is 201 characters, over the 200-character limit: give a short word$/);
  });
});

describe("a run checks sizes before the decoder sees them", () => {
  let text: LoadedModel;
  let vlm: LoadedModel;
  beforeAll(async () => {
    [text, vlm] = await Promise.all([LoadedModel.open(path.join(FIXTURES, "llama-f32/model"), { device: "cpu" }), LoadedModel.open(path.join(FIXTURES, "llava-gqa-f32/model"), { device: "cpu" })]);
  });
  afterAll(async () => {
    await Promise.all([text.dispose(), vlm.dispose()]);
    stopChatTemplateRenderer();
  });

  it("refuses a prompt whose tokens and new tokens exceed max_position_embeddings, naming both numbers", async () => {
    const prompt = "the red cube ".repeat(200); // about 600 tokens, over 512
    const t0 = performance.now();
    const run = runLens(text, { prompt, settings: { maxNewTokens: 4 } });
    await expect(run).rejects.toBeInstanceOf(LensInputError);
    await expect(run).rejects.toThrow(
      new RegExp(`^${path.join(FIXTURES, "llama-f32/model/config.json")}: the prompt is [0-9,]+ tokens plus 4 new tokens make [0-9,]+, over the model's context length of 512 \\(max_position_embeddings\\): shorten the prompt or lower maxNewTokens$`),
    );
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it("counts image tokens and the generated tokens", async () => {
    const image = path.join(FIXTURES, "images/square.png");
    const ok = await vlm.prepare({ prompt: "Why?", image, maxNewTokens: 8 });
    // fill the context to exactly its end, then one token more
    await expect(vlm.prepare({ prompt: "Why?", image, maxNewTokens: 512 - ok.inputIds.length })).resolves.toBeDefined();
    await expect(vlm.prepare({ prompt: "Why?", image, maxNewTokens: 513 - ok.inputIds.length })).rejects.toThrow(
      `the prompt is ${ok.inputIds.length} tokens (36 of them image tokens) plus ${513 - ok.inputIds.length} new tokens make 513, over the model's context length of 512 (text_config.max_position_embeddings)`,
    );
  });

  it("refuses a 10 MB target at once", async () => {
    const t0 = performance.now();
    await expect(runLens(text, { prompt: "Colour:", settings: { maxNewTokens: 1, target: "red".repeat(3_500_000) } })).rejects.toThrow(/is 10,500,000 characters, over the 200-character limit: give a short word/);
    await expect(runLens(text, { prompt: "Colour:", settings: { maxNewTokens: 1, trackTokens: ["x".repeat(201)] } })).rejects.toThrow(/over the 200-character limit/);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});
