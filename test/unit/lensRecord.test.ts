/** The LensRecord's schema and validator: a full hand-made record passes, and each way of breaking it is named by its path. */
import { describe, expect, it } from "vitest";
import { type LensRecord, SEGMENTS } from "../../src/shared/lensRecord";
import schema from "../../src/shared/lensRecord.schema.json";
import { assertLensRecord, InvalidLensRecordError, validateLensRecord } from "../../src/shared/validateRecord";
import { checkFinite, finiteWarnings } from "../../src/sidecar/lens/finiteCheck";
import { sampleRecord } from "../helpers/sampleRecord";

/** The errors for a copy of the sample changed by `edit` (none when it still validates). */
function errorsAfter(edit: (r: LensRecord) => void): string[] {
  const r = sampleRecord();
  edit(r);
  const v = validateLensRecord(r);
  return v.ok ? [] : v.errors;
}

/** Sets a field the type would not allow. */
function set(target: object, key: string, value: unknown): void {
  (target as Record<string, unknown>)[key] = value;
}

describe("validateLensRecord accepts", () => {
  it("the full sample record, and returns it", () => {
    const r = sampleRecord();
    const v = validateLensRecord(r);
    expect(v).toEqual({ ok: true, record: r });
    expect(assertLensRecord(r)).toBe(r);
  });

  it("the sample after a JSON round trip", () => {
    expect(validateLensRecord(JSON.parse(JSON.stringify(sampleRecord()))).ok).toBe(true);
  });

  it("a record without the optional parts, and with heads masked", () => {
    const r = sampleRecord({ headMask: { "0": [0, 1], "1": [1] } });
    delete r.patchLens;
    delete r.attention.imageRows;
    delete r.lens.targetText;
    delete r.lens.answerProb;
    delete r.input.image!.path;
    delete r.warnings;
    r.input.settings = { positions: "afterImage", topK: 2, maxNewTokens: 4 };
    expect(validateLensRecord(r)).toMatchObject({ ok: true });
  });

  it("a text-only record (no image, no image tokens)", () => {
    const r = sampleRecord();
    r.input.image = null;
    for (const t of r.tokens.filter((t) => t.segment === "image")) {
      t.segment = "template";
      delete t.image;
    }
    delete r.attention.imageRows;
    delete r.patchLens;
    expect(validateLensRecord(r)).toMatchObject({ ok: true });
  });
});

describe("validateLensRecord rejects", () => {
  it.each<[string, (r: LensRecord) => void, string]>([
    ["a wrong version", (r) => set(r, "version", 2), "/version: must be 1, got 2"],
    ["an unknown segment", (r) => set(r.tokens[0], "segment", "caption"), '/tokens/0/segment: must be one of "bos", "template", "text", "image", "generated"; got "caption"'],
    ["data that does not fill its shape", (r) => r.lens.entropy.data.pop(), "/lens/entropy/data: has 8 values but shape [3, 3] holds 9"],
    ["a block of the wrong rank", (r) => (r.lens.entropy.shape = [9]), "/lens/entropy/shape: must have 2 items, got 1"],
    ["a block of the wrong layer count", (r) => ((r.lens.kl.shape = [2, 3]), r.lens.kl.data.splice(6)), "/lens/kl/shape/0: must be 3 (model.numLayers + 1 lens layers), got 2"],
    ["layer labels of the wrong count", (r) => r.layerLabels.pop(), "/layerLabels: must have 3 items (model.numLayers + 1), got 2"],
    ["a position past the tokens", (r) => (r.positions[2] = 99), "/positions/2: 99 is not a token index (there are 8 tokens)"],
    ["positions out of order", (r) => (r.positions = [5, 4, 6]), "/positions/1: positions must be strictly increasing, but 4 follows 5"],
    ["a missing field", (r) => delete (r as Partial<LensRecord>).tracked, "/tracked: is required but missing"],
    ["a missing nested field", (r) => delete (r.model as Partial<LensRecord["model"]>).vocabSize, "/model/vocabSize: is required but missing"],
    ["an extra field", (r) => set(r, "extra", 1), "/extra: is not a field of this object (fields: version, model, input"],
    ["an extra field in a block", (r) => set(r.lens.entropy, "dtype", "float32"), "/lens/entropy/dtype: is not a field of this object (fields: shape, data)"],
    ["warnings that are not strings", (r) => set(r, "warnings", [3]), "/warnings/0: must be a string"],
    ["an empty warning", (r) => set(r, "warnings", [""]), "/warnings/0: must"],
    ["a field of the wrong type", (r) => set(r, "positions", "4,5,6"), '/positions: must be an array, got the string "4,5,6"'],
    ["a fractional token id", (r) => (r.lens.topkIds.data[3] = 2.5), "/lens/topkIds/data/3: must be an integer, got the number 2.5"],
    ["a top-k block of the wrong k", (r) => (r.lens.topK = 3), "/lens/topkIds/shape/2: must be 3 (lens.topK), got 2"],
    ["one target too few", (r) => r.lens.targetIds.pop(), "/lens/targetIds: must have 3 items (one per analysed position), got 2"],
    ["tracked tokens that disagree with the tracked blocks", (r) => r.tracked.ids.pop(), "/tracked/rank/shape/2: must be 7 (tracked.ids.length), got 8"],
    ["attention of the wrong head count", (r) => (r.model.numHeads = 3), "/attention/mass/shape/1: must be 3 (model.numHeads), got 2"],
    ["attention of the wrong block count", (r) => ((r.attention.mass.shape = [3, 2, 3, 5]), r.attention.mass.data.push(...r.attention.mass.data.slice(0, 30))), "/attention/mass/shape/0: must be 2 (model.numLayers decoder blocks), got 3"],
    ["attention rows that do not sum to 1", (r) => (r.attention.mass.data[5] = 0.25), "/attention/mass/data/5: the 5 segment masses from here sum to 0.75, not 1"],
    ["attention segments in another order", (r) => r.attention.segments.reverse(), '/attention/segments: must be ["bos","template","text","image","generated"] in this order'],
    ["image attention over the wrong number of image tokens", (r) => ((r.attention.imageRows!.shape = [2, 3, 3]), r.attention.imageRows!.data.push(...[1, 2, 3, 4, 5, 6].map(() => 0))), "/attention/imageRows/shape/2: must be 2 (the image tokens in /tokens), got 3"],
    ["more generated ids than generated tokens", (r) => r.generation.ids.push(6), "/generation/predictingPositions: must have 3 items (one per generated token), got 2"],
    ["generation matches of the wrong width", (r) => r.generation.ids.push(6), "/generation/matches/shape/1: must be 3 (generation.ids.length), got 2"],
    ["a generated id that is not the last token", (r) => (r.generation.ids[1] = 8), '/tokens/7: must be generated token 1 (id 8, segment "generated")'],
    ["a predicting position that predicts another token", (r) => (r.generation.predictingPositions[0] = 0), "/generation/predictingPositions/0: positions[0] = 4 predicts token 5, but generated token 0 is token 6"],
    ["a match that is not what the top-1 says", (r) => (r.generation.matches.data[0] = 1), "/generation/matches/data/0: must be 0: it says whether layer 0's top-1 at the predicting position is generated token 0"],
    ["a stop reason that disagrees with the count", (r) => (r.generation.stoppedBy = "maxNewTokens"), '/generation/stoppedBy: is "maxNewTokens" but 2 of 4 tokens were generated'],
    ["a masked block outside the model", (r) => (r.headMask = { "2": [0] }), "/headMask/2: 2 is not a decoder block of this model (0..1)"],
    ["a masked head outside the model", (r) => (r.headMask = { "1": [0, 7] }), "/headMask/1/1: head 7 is not in 0..1 (model.numHeads is 2)"],
    ["a head-mask key that is not a number", (r) => (r.headMask = { first: [0] }), "/headMask/first: is not a valid key here"],
    ["a config hash that is not SHA-256", (r) => (r.model.configHash = "abc"), '/model/configHash: must match ^[0-9a-f]{64}$, got "abc"'],
    ["an image size with three numbers", (r) => set(r.input.image!, "originalSize", [1, 2, 3]), "/input/image/originalSize: must have at most 2 items, got 3"],
    ["an image token when there is no image", (r) => (r.input.image = null), '/tokens/2/segment: is "image" but /input/image is null'],
    ["a patch outside the image grid", (r) => (r.tokens[3].image!.col = 2), "/tokens/3/image/col: 2 is outside the image grid (2 columns)"],
    ["a token id past the vocabulary", (r) => (r.lens.topkIds.data[4] = 12), "/lens/topkIds/data/4: 12 is not a token id of this model (model.vocabSize is 12)"],
    ["a probability above 1", (r) => (r.lens.topkProbs.data[0] = 1.5), "/lens/topkProbs/data/0: 1.5 is not a probability"],
    ["a top-k list out of order", (r) => (r.lens.topkProbs.data[1] = 0.3), "/lens/topkProbs/data/1: 0.3 is more than the slot before it (0.25)"],
    ["a rank past the vocabulary", (r) => (r.lens.targetRank.data[0] = 13), "/lens/targetRank/data/0: rank 13 is past model.vocabSize (12)"],
    ["a negative KL divergence", (r) => (r.lens.kl.data[2] = -0.5), "/lens/kl/data/2: -0.5 is negative"],
    ["a target probability off its top-k slot", (r) => (r.lens.targetProb.data[4] = 0.5), "/lens/targetProb/data/4: 0.5 disagrees with /lens/topkProbs/data/8 (0.6000000238418579), where the target (token 6) is top-1"],
    ["a tracked probability off its top-k slot", (r) => (r.tracked.prob.data[5] = 0.5), "/tracked/prob/data/5: 0.5 disagrees with /lens/topkProbs/data/0 (0.25) for token 9"],
    ["a token id without a text", (r) => delete r.tokenTexts["10"], "/tokenTexts: has no text for token id 10 used in /lens/topkIds"],
    ["a token-text key that is not an id", (r) => (r.tokenTexts["a1"] = "x"), "/tokenTexts/a1: is not a valid key here"],
  ])("%s", (_name, edit, expected) => {
    const errors = errorsAfter(edit);
    expect(errors.some((e) => e.startsWith(expected)), `expected an error starting with\n  ${expected}\ngot\n  ${errors.join("\n  ")}`).toBe(true);
  });

  it("values that are not records at all", () => {
    expect(validateLensRecord(null)).toEqual({ ok: false, errors: ["/: must be an object, got null"] });
    expect(validateLensRecord([])).toEqual({ ok: false, errors: ["/: must be an object, got an array"] });
    const v = validateLensRecord({});
    expect(v.ok).toBe(false);
    expect(!v.ok && v.errors).toContain("/model: is required but missing");
  });

  it("lists every problem, up to 50 and a count of the rest", () => {
    const r = sampleRecord();
    (r.tracked.prob.data as unknown[]).fill("x");
    const v = validateLensRecord(r);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.errors).toHaveLength(51);
    expect(v.errors[0]).toBe('/tracked/prob/data/0: must be a number, got the string "x"');
    expect(v.errors[50]).toBe("... and 22 more problems");
  });

  it("assertLensRecord throws with all of them", () => {
    const r = sampleRecord();
    r.layerLabels.pop();
    r.headMask = { "5": [0] };
    let thrown: unknown;
    try {
      assertLensRecord(r);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(InvalidLensRecordError);
    const error = thrown as InvalidLensRecordError;
    expect(error.errors).toHaveLength(2);
    expect(error.message).toBe(`not a valid LensRecord (2 problems):\n  ${error.errors.join("\n  ")}`);
  });
});

describe("the schema", () => {
  it("has the segments of the TypeScript type, in order", () => {
    expect(schema.definitions.segment.enum).toEqual(SEGMENTS);
  });

  type Node = { description?: string; $ref?: string; properties?: Record<string, Node>; items?: Node | Node[]; allOf?: Node[] };
  const definitions = schema.definitions as Record<string, Node>;
  const resolve = (n: Node): Node => (n.$ref ? resolve(definitions[n.$ref.replace("#/definitions/", "")]) : n);

  it("describes every field", () => {
    const undocumented: string[] = [];
    const walk = (node: Node, path: string) => {
      for (const [key, child] of Object.entries(node.properties ?? {})) {
        if (!child.description && !resolve(child).description) undocumented.push(`${path}/${key}`);
        walk(resolve(child), `${path}/${key}`);
      }
      for (const part of node.allOf ?? []) walk(resolve(part), path);
      if (node.items && !Array.isArray(node.items)) walk(resolve(node.items), `${path}/*`);
    };
    walk(schema as Node, "");
    expect(undocumented).toEqual([]);
  });

  it("names exactly the fields of the TypeScript type (the sample fills every optional one)", () => {
    const missing: string[] = [];
    const walk = (node: Node, value: unknown, path: string) => {
      if (Array.isArray(value)) {
        if (node.items && !Array.isArray(node.items) && value.length) walk(resolve(node.items), value.find((v) => v && typeof v === "object" && "image" in v) ?? value[0], `${path}/*`);
        return;
      }
      if (!value || typeof value !== "object" || !node.properties) return;
      const declared = new Set([...Object.keys(node.properties), ...(node.allOf ?? []).flatMap((p) => Object.keys(resolve(p).properties ?? {}))]);
      for (const key of declared) {
        if (!(key in value)) missing.push(`${path}/${key}`);
        else walk(resolve(node.properties[key] ?? {}), (value as Record<string, unknown>)[key], `${path}/${key}`);
      }
    };
    walk(schema as Node, sampleRecord({ headMask: { "0": [1] } }), "");
    expect(missing).toEqual([]);
  });
});

describe("finiteWarnings", () => {
  it("says nothing for a finite record", () => {
    expect(finiteWarnings(sampleRecord())).toEqual([]);
  });

  it("names the first layer and position where lens values stop being finite, ahead of KL and cosine that compare with the final layer", () => {
    const r = sampleRecord();
    const P = r.positions.length;
    // Layer 1, second analysed position: entropy; the final layer makes KL NaN everywhere.
    r.lens.entropy.data[1 * P + 1] = NaN;
    r.lens.kl.data = r.lens.kl.data.map(() => NaN);
    r.lens.topkProbs.data[(2 * P + 0) * r.lens.topK] = Infinity;
    const [w, ...rest] = finiteWarnings(r);
    expect(rest).toEqual([]);
    const token = r.tokens[r.positions[1]];
    expect(w).toBe(
      `lens values stop being finite at layer 1 (block 1), position ${r.positions[1]} (token ${JSON.stringify(token.text)}): NaN there; not finite: probabilities 1 of ${r.lens.topkProbs.data.length}, entropy 1 of ${r.lens.entropy.data.length}, KL ${r.lens.kl.data.length} of ${r.lens.kl.data.length}. The weights or the run overflow (a corrupt or half-precision checkpoint, or a wrong config): re-download the model or run it in float32`,
    );
  });

  it("counts attention blocks from block 1, and reports a non-finite answer probability", () => {
    const r = sampleRecord();
    r.attention.mass.data[0] = NaN;
    r.lens.answerProb = NaN;
    const w = finiteWarnings(r);
    expect(w[0]).toMatch(/^lens values stop being finite at layer 1 \(block 1\), position \d+ .*not finite: attention 1 of/);
    expect(w[1]).toBe("the answer probability is NaN: the final layer's values are not finite");
  });

  it("checkFinite adds the warnings to the record and logs each; a clean record comes back as it was", () => {
    const clean = sampleRecord();
    delete clean.warnings;
    const logged: string[] = [];
    expect(checkFinite(clean, (m) => logged.push(m))).toBe(clean);
    clean.lens.cosine.data[0] = NaN;
    const checked = checkFinite(clean, (m) => logged.push(m));
    expect(checked.warnings).toHaveLength(1);
    expect(logged).toEqual(checked.warnings);
  });
});
