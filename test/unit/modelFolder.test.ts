/** Bad model folders fail before onnxruntime sees them, with one line naming the file and the fix. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { copyFixtureModel, editJson, writeSafetensors } from "../helpers/tempModel";

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
    expect(e.message).toContain(path.join(dir, "model.safetensors"));
    expect(e.message).toMatch(/mlp\.gate_proj\.weight has shape \[96, 48\] but config\.json implies \[100, 48\]/);
  });

  it("a tensor of a non-float dtype", async () => {
    const dir = copyFixtureModel("llama-f32");
    editJson(path.join(dir, "config.json"), (c) => Object.assign(c, { num_hidden_layers: 0, vocab_size: 4, hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 2 }));
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
    expect(e.message).toMatch(/without its CUDA libraries: reinstall with --onnxruntime-node-install=cuda12, or choose auto or cpu/);
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
