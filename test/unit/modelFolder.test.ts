/** Bad model folders fail before onnxruntime sees them, with one line naming the file and the fix. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { runLens } from "../../src/sidecar/lens/runLens";
import { copyFixtureModel, editJson, editSafetensors, writeSafetensors } from "../helpers/tempModel";

async function openError(dir: string, device: "cpu" | "cuda" = "cpu"): Promise<LensInputError> {
  try {
    const m = await LoadedModel.open(dir, { device });
    await m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(LensInputError);
    const err = e as LensInputError;
    expect(err.message).not.toContain("\n");
    return err;
  }
  throw new Error(`opening ${dir} did not fail`);
}

describe("model folder errors", () => {
  it("a missing folder", async () => {
    const dir = path.join(os.tmpdir(), "no-such-model-folder-xyz");
    const e = await openError(dir);
    expect(e.message).toContain(dir);
    expect(e.message).toMatch(/does not exist/);
  });

  it("a file instead of a folder", async () => {
    const file = path.join(copyFixtureModel("llama-f32"), "config.json");
    expect((await openError(file)).message).toMatch(/not a model folder/);
  });

  it("no config.json", async () => {
    const dir = copyFixtureModel("llama-f32");
    fs.rmSync(path.join(dir, "config.json"));
    expect((await openError(dir)).message).toContain(path.join(dir, "config.json"));
  });

  it("config.json that is not JSON", async () => {
    const dir = copyFixtureModel("llama-f32");
    fs.writeFileSync(path.join(dir, "config.json"), "{ not json");
    expect((await openError(dir)).message).toMatch(/config\.json.*not valid JSON/);
  });

  it("an unsupported architecture lists the supported ones", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => (c.architectures = ["MambaForCausalLM"]));
    const e = await openError(dir);
    expect(e.message).toMatch(/MambaForCausalLM is not supported/);
    expect(e.message).toContain("LlavaForConditionalGeneration");
  });

  it("no tokenizer.json", async () => {
    const dir = copyFixtureModel("llama-f32");
    fs.rmSync(path.join(dir, "tokenizer.json"));
    expect((await openError(dir)).message).toContain(path.join(dir, "tokenizer.json"));
  });

  it("a tensor whose shape disagrees with the config", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    editJson(path.join(dir, "config.json"), (c) => ((c.text_config as Record<string, unknown>).intermediate_size = 100));
    const e = await openError(dir);
    expect(e.message).toContain(path.join(dir, "config.json"));
    expect(e.message).toMatch(/config\.json says text_config\.intermediate_size 100 but language_model\.model\.layers\.0\.mlp\.gate_proj\.weight is \[96, 48\]: the config does not belong to these weights/);
  });

  it("a tensor of a non-float dtype", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => Object.assign(c, { num_hidden_layers: 1, vocab_size: 4, hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 2 }));
    writeSafetensors(path.join(dir, "model.safetensors"), [
      { name: "model.embed_tokens.weight", dtype: "I8", shape: [4, 8] },
      { name: "model.norm.weight", dtype: "F32", shape: [8] },
      { name: "lm_head.weight", dtype: "F32", shape: [4, 8] },
    ]);
    expect((await openError(dir)).message).toMatch(/embed_tokens\.weight has dtype I8/);
  });

  it("weights missing for a layer the config declares", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => (c.num_hidden_layers = 4));
    expect((await openError(dir)).message).toMatch(/layers\.3\./);
  });

  it("a checkpoint with neither lm_head nor tied embeddings", async () => {
    const dir = copyFixtureModel("llava-tied-f32");
    editJson(path.join(dir, "config.json"), (c) => {
      c.tie_word_embeddings = false;
      (c.text_config as Record<string, unknown>).tie_word_embeddings = false;
    });
    expect((await openError(dir)).message).toMatch(/no lm_head\.weight and tie_word_embeddings is false/);
  });

  it("device cuda without onnxruntime's CUDA libraries says how to get them", async () => {
    const e = await openError(copyFixtureModel("llama-f32"), "cuda");
    expect(e.message).toMatch(/^device cuda cannot run: the CUDA provider libraries are not installed \(looked in .+\): with internet, run `npm install onnxruntime-node --onnxruntime-node-install=cuda12`.+Logit Lens: Install the CUDA Provider; or choose device auto or cpu$/);
  });

  it("an image given to a text-only model", async () => {
    const m = await LoadedModel.open(copyFixtureModel("llama-f32"), { device: "cpu" });
    try {
      await expect(m.prepare({ prompt: "hi", image: "x.png" })).rejects.toThrow(/text-only model and cannot take an image/);
    } finally {
      await m.dispose();
    }
  });
});

describe("weights the config promises", () => {
  it("a CLIP bias missing from a tower that has biases is an error naming the tensor and the file, not \"no bias\"", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    editSafetensors(dir, (t) => t.delete("vision_tower.encoder.layers.1.self_attn.q_proj.bias"));
    const e = await openError(dir);
    expect(e.message).toContain('no tensor "vision_tower.encoder.layers.1.self_attn.q_proj.bias"');
    expect(e.message).toContain("model.safetensors");
  });

  it("a bias the config turns off but the checkpoint holds is an error, not silently dropped", async () => {
    const dir = copyFixtureModel("llama-f32");
    editSafetensors(dir, (t) => t.set("model.layers.0.self_attn.q_proj.bias", { dtype: "F32", shape: [48], data: Buffer.alloc(48 * 4) }));
    const e = await openError(dir);
    expect(e.message).toBe(
      `${path.join(dir, "config.json")}: the weights hold model.layers.0.self_attn.q_proj.bias but config.json says attention_bias false: the config does not belong to these weights; fix the config or re-download it`,
    );
  });

  it("an MLP bias when the config has no mlp_bias", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => delete c.mlp_bias);
    editSafetensors(dir, (t) => t.set("model.layers.0.mlp.up_proj.bias", { dtype: "F32", shape: [96], data: Buffer.alloc(96 * 4) }));
    expect((await openError(dir)).message).toMatch(/hold model\.layers\.0\.mlp\.up_proj\.bias but config\.json does not set mlp_bias \(default false\)/);
  });

  it("a projector bias when multimodal_projector_bias is false", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    editJson(path.join(dir, "config.json"), (c) => (c.multimodal_projector_bias = false));
    expect((await openError(dir)).message).toMatch(/hold multi_modal_projector\.linear_1\.bias but config\.json says multimodal_projector_bias false/);
  });

  it("no lm_head is only allowed with tied embeddings", async () => {
    const dir = copyFixtureModel("llama-f32");
    editSafetensors(dir, (t) => t.delete("lm_head.weight"));
    expect((await openError(dir)).message).toMatch(/no lm_head\.weight and tie_word_embeddings is false/);
  });

  it("more decoder layers in the weights than num_hidden_layers", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => (c.num_hidden_layers = 2));
    expect((await openError(dir)).message).toMatch(/config\.json says num_hidden_layers 2 but the weights hold more layers \(model\.layers\.2\.input_layernorm\.weight\)/);
  });

  it("an lm_head of another vocabulary", async () => {
    const dir = copyFixtureModel("llama-f32");
    editSafetensors(dir, (t) => t.set("lm_head.weight", { dtype: "F32", shape: [400, 48], data: Buffer.alloc(400 * 48 * 4) }));
    expect((await openError(dir)).message).toMatch(/config\.json says vocab_size 458 but lm_head\.weight is \[400, 48\]/);
  });
});

describe("NaN and infinity in the weights and the results", () => {
  /** Sets element `index` of a float32 tensor. */
  const poke = (dir: string, name: string, index: number, value: number) =>
    editSafetensors(dir, (t) => {
      const tensor = t.get(name)!;
      tensor.data.writeFloatLE(value, index * 4);
    });

  it.each([
    ["a norm weight", "model.layers.1.input_layernorm.weight", NaN],
    ["the final norm", "model.norm.weight", Infinity],
  ])("%s holding NaN or Inf is refused at open, naming the tensor and the index", async (_what, name, value) => {
    const dir = copyFixtureModel("llama-f32");
    poke(dir, name, 5, value);
    const e = await openError(dir);
    expect(e.file).toBe(path.join(dir, "model.safetensors"));
    expect(e.message).toContain(`tensor ${name} holds ${value} at index 5 (1 of its 48 values are not finite): the weights are corrupt; re-download the model`);
  });

  it("a CLIP position embedding holding NaN is refused at open", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    poke(dir, "vision_tower.embeddings.position_embedding.weight", 40, NaN);
    expect((await openError(dir)).message).toMatch(/tensor vision_tower\.embeddings\.position_embedding\.weight holds NaN at index 40/);
  });

  it("a NaN in a matrix opens, and the lens record warns from which layer values stop being finite", async () => {
    const dir = copyFixtureModel("llama-f32");
    poke(dir, "model.layers.1.mlp.down_proj.weight", 0, NaN);
    const model = await LoadedModel.open(dir, { device: "cpu" });
    const logged: string[] = [];
    const warn = console.warn;
    console.warn = (m: string) => logged.push(m);
    try {
      const record = await runLens(model, { prompt: "The sky is", settings: { maxNewTokens: 1 } });
      expect(record.warnings).toHaveLength(1);
      expect(record.warnings![0]).toMatch(/^lens values stop being finite at layer 2 \(block 2\), position 0 \(token "[^"]*"\): NaN there; not finite: probabilities \d+ of \d+, entropy/);
      expect(logged).toEqual([`warning: ${record.warnings![0]}`]);
    } finally {
      console.warn = warn;
      await model.dispose();
    }
  });

  it("a clean run has no warnings", async () => {
    const model = await LoadedModel.open(copyFixtureModel("llama-f32"), { device: "cpu" });
    try {
      expect((await runLens(model, { prompt: "The sky is", settings: { maxNewTokens: 1 } })).warnings).toBeUndefined();
    } finally {
      await model.dispose();
    }
  });
});

describe("chat template locations", () => {
  it("a template kept in tokenizer_config.json renders the same prompt as chat_template.json", async () => {
    const reference = await LoadedModel.open(copyFixtureModel("llava-gqa-f32"), { device: "cpu" });
    const dir = copyFixtureModel("llava-gqa-f32");
    const template = (JSON.parse(fs.readFileSync(path.join(dir, "chat_template.json"), "utf8")) as { chat_template: string }).chat_template;
    fs.rmSync(path.join(dir, "chat_template.json"));
    editJson(path.join(dir, "tokenizer_config.json"), (c) => (c.chat_template = template));
    const moved = await LoadedModel.open(dir, { device: "cpu" });
    try {
      expect(moved.text.chatTemplate?.file).toBe(path.join(dir, "tokenizer_config.json"));
      const image = path.join(__dirname, "../fixtures/models/images/square.png");
      const [a, b] = await Promise.all([reference.prepare({ prompt: "What is it?", image }), moved.prepare({ prompt: "What is it?", image })]);
      expect(b.inputIds).toEqual(a.inputIds);
    } finally {
      await Promise.all([reference.dispose(), moved.dispose()]);
    }
  });
});

describe("Hugging Face hub cache layout", () => {
  /** A snapshot folder as the hub client leaves it: every file a relative link into ../../blobs. */
  function hubSnapshot(fixture: string): string {
    const source = copyFixtureModel(fixture);
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), "lens-hub-"));
    const blobs = path.join(repo, "blobs");
    const snapshot = path.join(repo, "snapshots", "0123abcd");
    fs.mkdirSync(blobs, { recursive: true });
    fs.mkdirSync(snapshot, { recursive: true });
    fs.readdirSync(source).forEach((f, i) => {
      const blob = `blob${i}`;
      fs.renameSync(path.join(source, f), path.join(blobs, blob));
      fs.symlinkSync(path.join("..", "..", "blobs", blob), path.join(snapshot, f));
    });
    return snapshot;
  }

  it("a snapshot whose weights link to a missing blob says which file and what to do", async () => {
    const snapshot = hubSnapshot("llava-gqa-f32");
    fs.rmSync(fs.realpathSync(path.join(snapshot, "model.safetensors")));
    const e = await openError(snapshot);
    expect(e.message).toBe(`${path.join(snapshot, "model.safetensors")}: the safetensors file does not exist: re-download the model`);
  });

  it("a snapshot whose weights link outside it opens and runs like the plain folder", async () => {
    // onnxruntime follows links and refuses external data outside the folder it is given.
    const snapshot = hubSnapshot("llava-gqa-f32");
    const [plain, linked] = await Promise.all([LoadedModel.open(copyFixtureModel("llava-gqa-f32"), { device: "cpu" }), LoadedModel.open(snapshot, { device: "cpu" })]);
    try {
      const image = path.join(__dirname, "../fixtures/models/images/square.png");
      const run = async (m: LoadedModel) => {
        const prepared = await m.prepare({ prompt: "What is it?", image });
        return m.forward(prepared.inputIds, { imageFeatures: await m.imageFeaturesFor(prepared) });
      };
      const [a, b] = await Promise.all([run(plain), run(linked)]);
      expect(b.hiddenStates.length).toBeGreaterThan(0);
      expect(b.hiddenStates).toEqual(a.hiddenStates);
      expect(b.nextToken).toBe(a.nextToken);
    } finally {
      await Promise.all([plain.dispose(), linked.dispose()]);
    }
  });
});
