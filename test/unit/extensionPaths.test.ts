/**
 * Extension helpers that need no editor: finding models in a Hugging Face hub cache laid out
 * as huggingface_hub lays it out (snapshots whose files link into blobs/), and the paths an
 * experiment touches outside the workspace (which need the user's confirmation).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { experimentPaths, exportFolder, globBase, isInside, pathsNeedingConsent, pathsOutside, previewImagePath } from "../../src/extension/experimentPaths";
import { describeModelFolder, findCachedModels, hubCacheFolder } from "../../src/extension/modelFolders";
import { parseExperiment } from "../../src/shared/experiment";

function hubCache(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "hub-"));
  const add = (repo: string, revision: string, config: object | string, mtime: number) => {
    const blobs = path.join(root, repo, "blobs");
    const snap = path.join(root, repo, "snapshots", revision);
    fs.mkdirSync(blobs, { recursive: true });
    fs.mkdirSync(snap, { recursive: true });
    const blob = path.join(blobs, `${revision}-config`);
    fs.writeFileSync(blob, typeof config === "string" ? config : JSON.stringify(config));
    fs.symlinkSync(path.relative(snap, blob), path.join(snap, "config.json"));
    fs.utimesSync(blob, mtime, mtime);
  };
  add("models--llava-hf--llava-1.5-7b-hf", "aaa111", { architectures: ["LlavaForConditionalGeneration"] }, 1_700_000_000);
  add("models--llava-hf--llava-1.5-7b-hf", "bbb222", { architectures: ["LlavaForConditionalGeneration"] }, 1_800_000_000);
  add("models--openai--whisper-tiny", "ccc333", { architectures: ["WhisperForConditionalGeneration"] }, 1_700_000_000);
  add("models--broken--config", "ddd444", "{ not json", 1_700_000_000);
  add("models--no--archs", "eee555", { model_type: "llama" }, 1_700_000_000);
  fs.mkdirSync(path.join(root, "datasets--some--set", "snapshots"), { recursive: true });
  fs.mkdirSync(path.join(root, "models--empty--repo"));
  return root;
}

describe("Hugging Face cache", () => {
  const supported = ["LlavaForConditionalGeneration", "LlamaForCausalLM"];

  it("finds every model snapshot with its architecture, newest revision first, skipping what is not a model", async () => {
    const found = await findCachedModels(supported, hubCache());
    expect(found.map((m) => [m.id, m.revision, m.architecture, m.supported])).toEqual([
      ["llava-hf/llava-1.5-7b-hf", "bbb222", "LlavaForConditionalGeneration", true],
      ["llava-hf/llava-1.5-7b-hf", "aaa111", "LlavaForConditionalGeneration", true],
      ["openai/whisper-tiny", "ccc333", "WhisperForConditionalGeneration", false],
    ]);
    expect(found[0].folder.endsWith(path.join("snapshots", "bbb222"))).toBe(true);
  });

  it("answers an empty list for a missing cache, and finds the cache where huggingface_hub does", async () => {
    expect(await findCachedModels(supported, "/nonexistent/hub")).toEqual([]);
    expect(hubCacheFolder({ HF_HUB_CACHE: "/a/hub", HF_HOME: "/b" })).toBe("/a/hub");
    expect(hubCacheFolder({ HF_HOME: "/b" })).toBe(path.join("/b", "hub"));
    expect(hubCacheFolder({ XDG_CACHE_HOME: "/x" })).toBe(path.join("/x", "huggingface", "hub"));
    expect(hubCacheFolder({})).toBe(path.join(os.homedir(), ".cache", "huggingface", "hub"));
  });

  it("describes a picked folder: the bundled model is supported, a folder without config.json is not a model", async () => {
    const bundled = path.resolve(__dirname, "../../media/models/lens-scenes-tiny");
    expect(await describeModelFolder(bundled, supported)).toMatchObject({ architecture: "LlavaForConditionalGeneration", supported: true });
    expect(await describeModelFolder(path.resolve(__dirname), supported)).toBeNull();
  });
});

describe("experiment paths", () => {
  const file = "/ws/exp/study.lens.json";
  const experiment = parseExperiment(
    JSON.stringify({
      version: 1,
      model: "../models/llava",
      inputs: [{ images: "scenes/**/*.png" }, { manifest: "/data/vqa/questions.csv" }],
      prompts: ["Describe the image."],
    }),
    file,
  );

  it("resolves the model, inputs (a glob by the folder it starts in), manifests and the results folder relative to the file", () => {
    expect(globBase("scenes/**/*.png")).toBe("scenes");
    expect(globBase("*.png")).toBe(".");
    expect(globBase("a/b/c.png")).toBe("a/b/c.png");
    expect(experimentPaths(experiment, file)).toEqual([
      { role: "model", path: "/ws/models/llava" },
      { role: "input", path: "/ws/exp/scenes" },
      { role: "manifest", path: "/data/vqa/questions.csv" },
      { role: "output", path: "/ws/exp/study.results" },
    ]);
  });

  it("lists what lies outside the workspace folders", () => {
    const paths = experimentPaths(experiment, file);
    expect(pathsOutside(paths, ["/ws"]).map((p) => p.role)).toEqual(["manifest"]);
    expect(pathsOutside(paths, ["/ws/exp"]).map((p) => p.role)).toEqual(["model", "manifest"]);
    expect(pathsOutside(paths, ["/ws", "/data"])).toEqual([]);
    expect(pathsOutside(paths, []).length).toBe(4);
    expect(isInside("/ws2/x", "/ws")).toBe(false);
    expect(isInside("/ws", "/ws")).toBe(true);
  });

  it("asks a preview about the model and inputs it reads, never about the results folder (only a run writes there)", () => {
    const out = parseExperiment(JSON.stringify({ version: 1, inputs: ["a.png"], prompts: ["x"], output: { folder: "../../out/results" } }), file);
    const paths = experimentPaths(out, file);
    // a run asks about a results folder outside the file's folder, or outside the workspace
    expect(pathsNeedingConsent(paths, ["/ws"], file).map((p) => [p.role, p.reason])).toEqual([["output", "outside the workspace"]]);
    expect(pathsNeedingConsent(paths, ["/"], file, "run").map((p) => p.role)).toEqual(["output"]);
    // a preview writes nothing
    expect(pathsNeedingConsent(paths, ["/ws"], file, "preview")).toEqual([]);
    expect(pathsNeedingConsent(paths, [], file, "preview").map((p) => p.role)).toEqual(["input"]);
    expect(pathsNeedingConsent(experimentPaths(experiment, file), ["/ws"], file, "preview").map((p) => p.role)).toEqual(["manifest"]);
  });
});

describe("the folder an export's save dialog opens in", () => {
  it("is the workspace folder holding the image or experiment, else the first workspace folder, else the image's or experiment's folder", () => {
    expect(exportFolder(["/a", "/ws"], "/ws/img/cat.png", undefined)).toBe("/ws");
    expect(exportFolder(["/a", "/ws"], "/elsewhere/cat.png", "/ws/exp/e.lens.json")).toBe("/ws");
    expect(exportFolder(["/a", "/ws"], "/elsewhere/cat.png")).toBe("/a");
    expect(exportFolder([], "/pics/cat.png", "/exp/e.lens.json")).toBe("/pics");
    expect(exportFolder([], undefined, "/exp/e.lens.json")).toBe("/exp");
    expect(exportFolder([])).toBeUndefined();
  });
});

describe("previewImagePath", () => {
  const file = path.join(os.tmpdir(), "study", "samples.lens.json");
  it("is the sidecar's absolute path of the previewed image", () => {
    expect(previewImagePath(file, { image: "color-of-shape.png", imagePath: "/data/scenes/color-of-shape.png" })).toBe("/data/scenes/color-of-shape.png");
  });
  it("resolves a relative image against the experiment's folder, never against the root", () => {
    expect(previewImagePath(file, { image: "color-of-shape.png" })).toBe(path.join(os.tmpdir(), "study", "color-of-shape.png"));
    expect(previewImagePath(file, { image: "../images/a.png", imagePath: "" })).toBe(path.join(os.tmpdir(), "images", "a.png"));
  });
  it("is undefined for a text-only item", () => {
    expect(previewImagePath(file, { image: "" })).toBeUndefined();
  });
});
