/**
 * config.json values the architectures read are checked for range and integrality, and against
 * the weights, before a graph is built: a size of 0, -1, 1.5 or 1e9 or a rotary base of 0 used
 * to hang, fail to allocate or end as an internal error. Each case breaks one value in a copy
 * of a committed fixture and expects one line that names config.json, the field and the fix.
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { copyFixtureModel, editJson } from "../helpers/tempModel";

type Json = Record<string, unknown>;

/** Opens a copy of `fixture` with one config edit and returns the error, which must name config.json. */
async function configError(fixture: string, edit: (c: Json) => void): Promise<string> {
  const dir = copyFixtureModel(fixture);
  const configFile = path.join(dir, "config.json");
  editJson(configFile, edit);
  const t0 = performance.now();
  try {
    const m = await LoadedModel.open(dir, { device: "cpu" });
    await m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(LensInputError);
    const err = e as LensInputError;
    expect(err.message).not.toMatch(/[\r\n]/);
    expect(err.file).toBe(configFile);
    expect(performance.now() - t0).toBeLessThan(5000);
    return err.message.slice(configFile.length + 2);
  }
  throw new Error(`opening ${fixture} with the edited config did not fail`);
}

const text = (c: Json) => c.text_config as Json;
const vision = (c: Json) => c.vision_config as Json;

describe("config.json values out of range", () => {
  it("the example from the issue: a fractional head count names the nested field", async () => {
    expect(await configError("llava-gqa-f32", (c) => (text(c).num_attention_heads = 1.5))).toBe(
      "text_config.num_attention_heads must be a positive integer, got 1.5: fix the config or re-download it",
    );
  });

  const sizes = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim", "max_position_embeddings"];
  describe.each(sizes)("LLaMA %s", (key) => {
    it.each([0, -1, 1.5, "8"])("of %s", async (value) => {
      expect(await configError("llama-f32", (c) => (c[key] = value))).toBe(`${key} must be a positive integer, got ${JSON.stringify(value)}: fix the config or re-download it`);
    });
    it("of 1e9", async () => {
      expect(await configError("llama-f32", (c) => (c[key] = 1e9))).toMatch(new RegExp(`^${key} is 1000000000, more than the \\d+ any model has: fix the config or re-download it$`));
    });
  });

  const visionSizes = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size", "patch_size", "num_channels"];
  describe.each(visionSizes)("CLIP vision_config.%s", (key) => {
    it.each([0, -1, 1.5])("of %s", async (value) => {
      expect(await configError("llava-gqa-f32", (c) => (vision(c)[key] = value))).toBe(`vision_config.${key} must be a positive integer, got ${value}: fix the config or re-download it`);
    });
    it("of 1e9", async () => {
      expect(await configError("llava-gqa-f32", (c) => (vision(c)[key] = 1e9))).toMatch(new RegExp(`^vision_config\\.${key} is 1000000000, more than`));
    });
  });

  it.each([0, -1, -10000])("rope_theta of %s", async (value) => {
    expect(await configError("llama-f32", (c) => ((c.rope_parameters as Json).rope_theta = value))).toBe(
      `rope_parameters.rope_theta must be a number greater than 0, got ${value}: fix the config or re-download it`,
    );
  });

  it("rope_theta at the top level (transformers 4.x)", async () => {
    expect(
      await configError("llama-f32", (c) => {
        delete c.rope_parameters;
        c.rope_theta = 0;
      }),
    ).toBe("rope_theta must be a number greater than 0, got 0: fix the config or re-download it");
  });

  it("a negative rms_norm_eps", async () => {
    expect(await configError("llava-gqa-f32", (c) => (text(c).rms_norm_eps = -1e-5))).toBe("text_config.rms_norm_eps must be a number of 0 or more, got -0.00001: fix the config or re-download it");
  });

  it("a negative layer_norm_eps", async () => {
    expect(await configError("llava-gqa-f32", (c) => (vision(c).layer_norm_eps = -1e-5))).toBe("vision_config.layer_norm_eps must be a number of 0 or more, got -0.00001: fix the config or re-download it");
  });

  it("a flag that is not a boolean", async () => {
    expect(await configError("llama-f32", (c) => (c.attention_bias = "no"))).toBe('attention_bias must be true or false, got "no": fix the config or re-download it');
  });

  it("an image token id outside the vocabulary", async () => {
    expect(await configError("llava-gqa-f32", (c) => (c.image_token_index = 100000))).toBe(
      "image_token_index 100000 is not a token of the 458-token vocabulary (text_config.vocab_size): fix the config or re-download it",
    );
  });
});

describe("config.json divisibility", () => {
  it("heads that do not divide into key/value heads", async () => {
    expect(await configError("llama-f32", (c) => (c.num_key_value_heads = 3))).toBe("num_attention_heads 4 is not a multiple of num_key_value_heads 3: fix the config or re-download it");
  });

  it("a hidden size the heads do not divide, without head_dim", async () => {
    expect(
      await configError("llama-f32", (c) => {
        delete c.head_dim;
        c.hidden_size = 50;
      }),
    ).toBe("hidden_size 50 is not divisible by num_attention_heads 4, and there is no head_dim: fix the config or re-download it");
  });

  it("a CLIP width the heads do not divide", async () => {
    expect(await configError("llava-gqa-f32", (c) => (vision(c).num_attention_heads = 5))).toBe("vision_config.hidden_size 32 is not divisible by vision_config.num_attention_heads 5: fix the config or re-download it");
  });

  it("a CLIP image size that is not a whole number of patches", async () => {
    expect(await configError("llava-gqa-f32", (c) => (vision(c).image_size = 43))).toBe("vision_config.image_size 43 is not a multiple of vision_config.patch_size 7: fix the config or re-download it");
  });
});

describe("config.json against the weights", () => {
  const mismatch = "the config does not belong to these weights";
  it.each<[string, (c: Json) => void, string]>([
    ["hidden_size", (c) => (c.hidden_size = 64), "config.json says hidden_size 64 but model.embed_tokens.weight is [458, 48]"],
    ["vocab_size", (c) => (c.vocab_size = 32000), "config.json says vocab_size 32000 but model.embed_tokens.weight is [458, 48]"],
    ["num_attention_heads", (c) => Object.assign(c, { num_attention_heads: 2, num_key_value_heads: 2 }), "config.json says num_attention_heads x head_dim = 2 x 12 but model.layers.0.self_attn.q_proj.weight is [48, 48]"],
    ["num_key_value_heads", (c) => (c.num_key_value_heads = 4), "config.json says num_key_value_heads x head_dim = 4 x 12 but model.layers.0.self_attn.k_proj.weight is [24, 48]"],
    ["head_dim", (c) => (c.head_dim = 6), "config.json says num_attention_heads x head_dim = 4 x 6 but model.layers.0.self_attn.q_proj.weight is [48, 48]"],
    ["intermediate_size", (c) => (c.intermediate_size = 64), "config.json says intermediate_size 64 but model.layers.0.mlp.gate_proj.weight is [96, 48]"],
    ["num_hidden_layers (more than the weights)", (c) => (c.num_hidden_layers = 1000), "config.json says num_hidden_layers 1000 but the weights hold 3 (no model.layers.3.input_layernorm.weight)"],
  ])("LLaMA %s", async (_what, edit, message) => {
    expect(await configError("llama-f32", edit)).toBe(`${message}: ${mismatch}`);
  });

  it.each<[string, (c: Json) => void, string]>([
    ["text hidden_size", (c) => (text(c).hidden_size = 64), "config.json says text_config.hidden_size 64 but language_model.model.embed_tokens.weight is [458, 48]"],
    ["vision hidden_size", (c) => Object.assign(vision(c), { hidden_size: 64 }), "config.json says vision_config.hidden_size 64 but vision_tower.embeddings.patch_embedding.weight is [32, 3, 7, 7]"],
    ["patch_size", (c) => Object.assign(vision(c), { patch_size: 6 }), "config.json says vision_config.patch_size 6 but vision_tower.embeddings.patch_embedding.weight is [32, 3, 7, 7]"],
    ["image_size", (c) => Object.assign(vision(c), { image_size: 49 }), "config.json says vision_config.image_size / patch_size = 49 / 7 (49 patches and CLS) but vision_tower.embeddings.position_embedding.weight is [37, 32]"],
    ["vision intermediate_size", (c) => Object.assign(vision(c), { intermediate_size: 32 }), "config.json says vision_config.intermediate_size 32 but vision_tower.encoder.layers.0.mlp.fc1.weight is [64, 32]"],
    ["vision num_hidden_layers (more than the weights)", (c) => Object.assign(vision(c), { num_hidden_layers: 24 }), "config.json says vision_config.num_hidden_layers 24, of which the features need 23 but the weights hold 3 (no vision_tower.encoder.layers.3.layer_norm1.weight)"],
    ["vision num_hidden_layers (fewer than the weights)", (c) => Object.assign(vision(c), { num_hidden_layers: 2 }), "the weights hold vision_tower.encoder.layers.2.layer_norm1.weight but config.json says vision_config.num_hidden_layers 2"],
  ])("LLaVA %s", async (_what, edit, message) => {
    const got = await configError("llava-gqa-f32", edit);
    expect(got.startsWith(message)).toBe(true);
    expect(got).toContain(mismatch);
  });
});
