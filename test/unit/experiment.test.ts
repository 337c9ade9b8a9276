/** The .lens.json experiment file: schema and semantic validation, templates, input resolution. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkExperimentText, fillTemplate, InvalidExperimentError, parseExperiment, templateFields, validateExperiment } from "../../src/shared/experiment";
import { lineColumn, locatePointer, pointerSegments } from "../../src/shared/jsonLocation";
import { globFiles, globToRegExp, parseCsv, resolveInputs } from "../../src/sidecar/experiment/inputs";
import { planExperiment } from "../../src/sidecar/experiment/sweep";
import { LensInputError } from "../../src/sidecar/errors";
import { DTYPE_CHOICES } from "../../src/shared/protocol";
import experimentSchema from "../../src/shared/lensExperiment.schema.json";

const SAMPLES = path.resolve(__dirname, "../../media/samples");

function errorsOf(value: unknown): string[] {
  const v = validateExperiment(value);
  return v.ok ? [] : v.errors;
}

const minimal = { inputs: ["a.png"], prompts: ["Describe the image."] };

describe("experiment validation", () => {
  it("fills every default into a minimal file", () => {
    const v = validateExperiment(minimal);
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.experiment).toEqual({
      name: "experiment",
      description: undefined,
      model: "default",
      inputs: [{ kind: "images", images: "a.png", groups: {} }],
      prompts: [{ name: "prompt", template: "Describe the image." }],
      target: undefined,
      lens: { positions: "afterImage", topK: 10, trackTokens: [], answerProb: false, imageAttention: false, patchLens: false },
      maxNewTokens: 8,
      variants: [{ name: "baseline", mask: { kind: "none" } }],
      groupBy: [],
      output: { folder: undefined, csv: true, records: false },
    });
  });

  it("accepts every bundled sample experiment", () => {
    const files = fs.readdirSync(SAMPLES).filter((f) => f.endsWith(".lens.json"));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) expect(() => parseExperiment(fs.readFileSync(path.join(SAMPLES, f), "utf8"), f), f).not.toThrow();
  });

  it("reads the three variant kinds", () => {
    const v = validateExperiment({
      ...minimal,
      variants: [{ name: "base" }, { name: "explicit", mask: { "3": [0, 5] } }, { name: "rnd", random: { count: 4 } }, { name: "top", topImage: { count: 2 } }],
    });
    expect(v.ok && v.experiment.variants.map((x) => x.mask)).toEqual([
      { kind: "none" },
      { kind: "heads", heads: { "3": [0, 5] } },
      { kind: "random", count: 4, seed: 0 },
      { kind: "topImage", count: 2 },
    ]);
  });

  it("reads dtype, one of the protocol's choices, and leaves it out when the file does", () => {
    expect(experimentSchema.properties.dtype.enum).toEqual([...DTYPE_CHOICES]);
    for (const dtype of DTYPE_CHOICES) {
      const v = validateExperiment({ ...minimal, dtype });
      expect(v.ok && v.experiment.dtype).toBe(dtype);
    }
    const v = validateExperiment(minimal);
    expect(v.ok && "dtype" in v.experiment).toBe(false);
  });

  // Each bad file, and the exact place and words of its first problem.
  const bad: [string, unknown, string][] = [
    ["missing inputs", { prompts: ["x"] }, "/inputs: is required but missing"],
    ["empty inputs", { inputs: [], prompts: ["x"] }, "/inputs: must have at least 1 item, got 0"],
    ["unknown top-level field", { ...minimal, prompt: "x" }, "/prompt: is not a field of this object"],
    ["misspelt lens field", { ...minimal, lens: { topk: 3 } }, "/lens/topk: is not a field of this object"],
    ["topK of 0", { ...minimal, lens: { topK: 0 } }, "/lens/topK: must be >= 1, got 0"],
    ["bad positions", { ...minimal, lens: { positions: "last" } }, '/lens/positions: must be one of "afterImage", "image", "all"; got "last"'],
    ["negative maxNewTokens", { ...minimal, generation: { maxNewTokens: -1 } }, "/generation/maxNewTokens: must be >= 0, got -1"],
    ["manifest of another format", { inputs: [{ manifest: "rows.txt" }], prompts: ["x"] }, "/inputs/0/manifest: must match"],
    ["mask layer not a number", { ...minimal, variants: [{ name: "m", mask: { first: [1] } }] }, "/variants/0/mask/first: is not a valid key here"],
    ["two mask kinds", { ...minimal, variants: [{ name: "m", mask: { "1": [0] }, topImage: { count: 1 } }] }, "/variants/0: give at most one of mask, random and topImage (got mask and topImage)"],
    ["repeated variant name", { ...minimal, variants: [{ name: "a" }, { name: "a" }] }, '/variants/1/name: "a" is already the name of another variant'],
    ["variant name with a space", { ...minimal, variants: [{ name: "top 4" }] }, "/variants/0/name: must match"],
    ["placeholder without a manifest", { inputs: ["*.png"], prompts: ["{question}"] }, "/prompts/0: needs the column {question}, which image input 0 (*.png) does not have"],
    ["target placeholder without a manifest", { inputs: ["a.png"], prompts: ["x"], target: "{answer}" }, "/target: needs the column {answer}"],
    ["answerProb without target", { ...minimal, lens: { answerProb: true } }, "/lens/answerProb: needs a target"],
    ["unknown dtype", { ...minimal, dtype: "half" }, '/dtype: must be one of "auto", "float32", "float16", "bfloat16"; got "half"'],
  ];
  for (const [name, value, first] of bad) {
    it(`refuses ${name}`, () => {
      const errors = errorsOf(value);
      expect(errors.length, JSON.stringify(errors)).toBeGreaterThan(0);
      expect(errors[0]).toContain(first);
    });
  }

  it("says where a JSON syntax error is", () => {
    try {
      parseExperiment('{\n  "inputs": ["a.png"],\n  "prompts": ["x",]\n}', "bad.lens.json");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidExperimentError);
      expect((e as InvalidExperimentError).message).toMatch(/^bad\.lens\.json: \/: is not valid JSON \(line 3, column \d+/);
    }
  });

  it("group values of an image input fill placeholders", () => {
    expect(errorsOf({ inputs: [{ images: "*.png", groups: { lang: "en" } }], prompts: ["In {lang}: what is it?"] })).toEqual([]);
  });
});

describe("templates", () => {
  it("fills placeholders and keeps doubled braces literal", () => {
    expect(templateFields("Answer {{briefly}}: {question} ({lang})")).toEqual(["question", "lang"]);
    expect(fillTemplate("Answer {{briefly}}: {question}", { question: "Why?" })).toBe("Answer {briefly}: Why?");
  });
  it("names the missing column", () => {
    expect(() => fillTemplate("{question}", { answer: "red" })).toThrow(/needs a "question" column.*columns: answer/);
  });
});

describe("inputs", () => {
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "lens-inputs-"));

  it("globs with *, **, ? and {a,b}, in path order, skipping dot-files", async () => {
    const dir = tmp();
    for (const f of ["a.png", "b.jpg", ".hidden.png", "sub/c.png", "sub/deep/d.png", "sub/e.txt"]) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.writeFileSync(path.join(dir, f), "");
    }
    const rel = async (p: string) => (await globFiles(p, dir)).map((f) => path.relative(dir, f).split(path.sep).join("/"));
    expect(await rel("*.png")).toEqual(["a.png"]);
    expect(await rel("**/*.png")).toEqual(["a.png", "sub/c.png", "sub/deep/d.png"]);
    expect(await rel("sub/*.{png,txt}")).toEqual(["sub/c.png", "sub/e.txt"]);
    expect(await rel("?.jpg")).toEqual(["b.jpg"]);
    expect(globToRegExp("[ab].png").test("a.png")).toBe(true);
    expect(globToRegExp("[!ab].png").test("a.png")).toBe(false);
  });

  it("parses RFC 4180 CSV: quotes, doubled quotes, newlines in fields, CRLF, BOM", () => {
    const rows = parseCsv('\uFEFFimage,question\r\n"a,1.png","Say ""hi""\nplease"\r\nb.png,plain\n');
    expect(rows.map((r) => r.cells)).toEqual([["image", "question"], ["a,1.png", 'Say "hi"\nplease'], ["b.png", "plain"]]);
    expect(rows.map((r) => r.line)).toEqual([1, 2, 4]);
  });

  it("resolves a manifest's images relative to the manifest, with input groups and row columns", async () => {
    const dir = tmp();
    fs.mkdirSync(path.join(dir, "data"));
    fs.writeFileSync(path.join(dir, "data/rows.csv"), "image,question,answer,lang\nx.png,Q1,A1,en\ny.png,Q2,A2,de\n");
    for (const f of ["x.png", "y.png"]) fs.writeFileSync(path.join(dir, "data", f), "png");
    const rows = await resolveInputs([{ kind: "manifest", manifest: "data/rows.csv", imageColumn: "image", groups: { dataset: "toy" } }], dir, "e.lens.json");
    expect(rows).toEqual([
      { image: path.join(dir, "data/x.png"), columns: { dataset: "toy", question: "Q1", answer: "A1", lang: "en" }, source: `${path.join(dir, "data/rows.csv")}:2` },
      { image: path.join(dir, "data/y.png"), columns: { dataset: "toy", question: "Q2", answer: "A2", lang: "de" }, source: `${path.join(dir, "data/rows.csv")}:3` },
    ]);
  });

  it("names the file and line of a bad manifest row", async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, "rows.jsonl"), '{"image": "a.png"}\nnot json\n');
    await expect(resolveInputs([{ kind: "manifest", manifest: "rows.jsonl", imageColumn: "image", groups: {} }], dir, "e.lens.json")).rejects.toThrow(`${path.join(dir, "rows.jsonl")}:2: is not a JSON object`);
    fs.writeFileSync(path.join(dir, "rows.csv"), "image,question\na.png,one,two\n");
    const err = await resolveInputs([{ kind: "manifest", manifest: "rows.csv", imageColumn: "image", groups: {} }], dir, "e.lens.json").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LensInputError);
    expect((err as Error).message).toContain("rows.csv:2: has 3 fields but the header has 2");
  });

  it("refuses an input that matches no image", async () => {
    await expect(resolveInputs([{ kind: "images", images: "*.webp", groups: {} }], tmp(), "e.lens.json")).rejects.toThrow(/e\.lens\.json: input "\*\.webp" matches no image/);
  });

  it("plans input x prompt x variant with stable ids, and the manifest's other columns as groups", async () => {
    const file = path.join(SAMPLES, "head-masking.lens.json");
    const exp = parseExperiment(fs.readFileSync(file, "utf8"), file);
    const a = await planExperiment(exp, file);
    const b = await planExperiment(exp, file);
    expect(a).toHaveLength(12 * 3);
    expect(a.map((x) => x.id)).toEqual(b.map((x) => x.id));
    expect(new Set(a.map((x) => x.id)).size).toBe(a.length);
    expect(a.slice(0, 3).map((x) => x.variant.name)).toEqual(["baseline", "top-image-4", "random-4"]);
    expect(a[0]).toMatchObject({ imageRel: "color-main-1.png", expected: "red", groups: { group: "color_main" }, settings: { target: "red", maxNewTokens: 4 } });
    expect(a[1].headMask).toEqual({ strategy: "topImage", count: 4 });
    // A changed setting gives new ids, so resumed results never mix settings.
    const c = await planExperiment({ ...exp, lens: { ...exp.lens, topK: 5 } }, file);
    expect(c[0].id).not.toBe(a[0].id);
  });
});

describe("problems placed in the text", () => {
  const text = `{
  "inputs": ["a.png"],
  "prompts": ["x"],
  "lens": { "topK": 0, "colour": true },
  "variants": [{ "name": "a" }, { "name": "a" }]
}`;
  const at = (offset: number, length: number) => text.slice(offset, offset + length);

  it("underlines the bad value, the unknown member and the repeated name", () => {
    const { experiment, problems } = checkExperimentText(text);
    expect(experiment).toBeUndefined();
    const byPointer = Object.fromEntries(problems.map((p) => [p.pointer, at(p.offset, p.length)]));
    expect(byPointer["/lens/topK"]).toBe("0");
    expect(byPointer["/lens/colour"]).toBe('"colour": true');
    expect(problems.map((p) => p.pointer).sort()).toEqual(["/lens/colour", "/lens/topK"]);
    // Semantic checks run once the structure is valid.
    const fixed = text.replace('"topK": 0, "colour": true', '"topK": 3');
    const second = checkExperimentText(fixed).problems;
    expect(second.map((p) => [p.pointer, fixed.slice(p.offset, p.offset + p.length)])).toEqual([["/variants/1/name", '"a"']]);
  });

  it("a missing member points at its object, a syntax error at its place", () => {
    const missing = checkExperimentText('{ "prompts": ["x"] }').problems;
    expect(missing).toMatchObject([{ pointer: "/inputs", message: "is required but missing", offset: 0, length: 1 }]);
    const broken = '{ "inputs": ["a.png"], "prompts": ["x",] }';
    const syntax = checkExperimentText(broken).problems;
    expect(syntax[0].message).toMatch(/^JSON syntax: /);
    expect(lineColumn(broken, syntax[0].offset)).toEqual({ line: 0, column: broken.indexOf("]", 30) });
  });

  it("pointer segments unescape ~1 and ~0 and read indices as numbers", () => {
    expect(pointerSegments("/a/0/b~1c~0d")).toEqual(["a", 0, "b/c~d"]);
    expect(locatePointer('{"a/b": [1, 2]}', "/a~1b/1")).toEqual({ offset: 12, length: 1 });
  });
});

describe("the schema in VS Code", () => {
  it("is contributed for *.lens.json from the file the validator uses, and ships in the VSIX", () => {
    const root = path.resolve(__dirname, "../..");
    const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { contributes: { jsonValidation: { fileMatch: string; url: string }[] } };
    const entry = manifest.contributes.jsonValidation.find((j) => j.fileMatch === "*.lens.json");
    expect(entry?.url).toBe("./src/shared/lensExperiment.schema.json");
    const schema = JSON.parse(fs.readFileSync(path.join(root, entry!.url), "utf8")) as { title: string };
    expect(schema.title).toBe("Logit Lens experiment (.lens.json)");
    expect(fs.readFileSync(path.join(root, ".vscodeignore"), "utf8").split("\n")).toContain("!src/shared/lensExperiment.schema.json");
    // The samples rely on that contribution: a relative $schema resolves to nothing once a sample
    // is copied into a workspace and overrides the contributed schema. Nothing they name lies
    // outside their folder either (a copy would point nowhere, or ask for consent to write there).
    for (const f of fs.readdirSync(SAMPLES).filter((x) => x.endsWith(".lens.json"))) {
      const text = fs.readFileSync(path.join(SAMPLES, f), "utf8");
      expect(JSON.parse(text), f).not.toHaveProperty("$schema");
      expect(new RegExp(`^${entry!.fileMatch.replace(/\./gu, "\\.").replace(/\*/gu, "[^/]*")}$`, "u").test(f), f).toBe(true);
      expect(text, f).not.toMatch(/"\.\.[\\/]/u);
    }
  });
});
