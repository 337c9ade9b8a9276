/**
 * A head's whole attention pattern (lens/attentionPattern) against transformers' own attentions
 * (tools/reference/make_lens_fixtures.py keeps the prompt's [L, heads, S, S]): every analysed
 * prompt query's row over every key, for every head and layer, within 1e-5; the rows of the
 * generated positions are causal and sum to 1, and agree with the run's own segment masses.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SEGMENTS } from "../../src/shared/lensRecord";
import { headPattern, type PatternSource, patternLayer } from "../../src/sidecar/lens/attentionPattern";
import { runLens } from "../../src/sidecar/lens/runLens";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import type { LensFixtureBlob, LensFixtureCase } from "../helpers/lensParity";

const LENS = path.resolve(__dirname, "../fixtures/lens");
const index = JSON.parse(fs.readFileSync(path.join(LENS, "index.json"), "utf8")) as { cases: string[] };
const cases = index.cases.map((f) => ({ file: path.join(LENS, f), c: JSON.parse(fs.readFileSync(path.join(LENS, f), "utf8")) as LensFixtureCase }));
const BOUND = 1e-5;

const models: LoadedModel[] = [];
afterAll(async () => {
  for (const m of models) await m.dispose();
});

describe.each(cases.map(({ file, c }) => [`${c.model}/${c.case}`, file, c] as [string, string, LensFixtureCase]))("%s", (_name, file, c) => {
  it(`every head's pattern matches transformers' attentions over the prompt (<= ${BOUND}), and the generated rows are causal`, async () => {
    const sourceFile = path.resolve(path.dirname(file), c.source_case);
    const src = JSON.parse(fs.readFileSync(sourceFile, "utf8")) as { prompt: string; image: string | null };
    const m = await LoadedModel.open(path.resolve(path.dirname(file), c.model_dir), { device: "cpu" });
    models.push(m);
    let source: PatternSource | undefined;
    const record = await runLens(
      m,
      { prompt: src.prompt, image: src.image ? path.resolve(path.dirname(sourceFile), src.image) : undefined, settings: { positions: "all", topK: c.top_k, maxNewTokens: c.greedy_tokens.length } },
      { keepPatternSource: (s) => (source = s) },
    );
    expect(source!.ids).toEqual(c.ids);
    const blob = c["attentions"] as LensFixtureBlob;
    const buf = fs.readFileSync(path.join(path.dirname(file), blob.file));
    const ref = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    const [L, nH, S] = blob.shape;
    const P = record.positions.length;
    const T = source!.ids.length;
    const G = SEGMENTS.length;
    const seg = record.tokens.map((t) => SEGMENTS.indexOf(t.segment));
    let worst = 0;
    let worstMass = 0;
    for (let h = 0; h < nH; h++) {
      const pattern = await headPattern(m, source!, h);
      expect(pattern.length).toBe(L * P * T);
      for (let l = 0; l < L; l++) {
        const rows = patternLayer(pattern, l, P, T);
        for (let j = 0; j < P; j++) {
          const q = record.positions[j];
          let sum = 0;
          const mass = new Array<number>(G).fill(0);
          for (let k = 0; k < T; k++) {
            const v = rows[j * T + k];
            sum += v;
            mass[seg[k]] += v;
            if (k > q) expect(v, `layer ${l} head ${h} query ${q} key ${k}`).toBe(0);
            if (q < S) worst = Math.max(worst, Math.abs(v - (k < S ? ref[((l * nH + h) * S + q) * S + k] : 0)));
          }
          expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
          // the run's own per-segment mass of this query is the same rows summed by segment
          for (let g = 0; g < G; g++) worstMass = Math.max(worstMass, Math.abs(mass[g] - record.attention.mass.data[((l * nH + h) * P + j) * G + g]));
        }
      }
    }
    console.log(`${c.model}/${c.case} head patterns: max abs error ${worst.toExponential(2)} against transformers, ${worstMass.toExponential(2)} against the record's segment masses`);
    expect(worst).toBeLessThanOrEqual(BOUND);
    expect(worstMass).toBeLessThanOrEqual(BOUND);
    // positions past the prompt exist (the decode steps' rows)
    expect(record.positions.some((q) => q >= S)).toBe(true);
  });
});

/**
 * Qwen2-VL (M-RoPE: the pattern's single call must give the generated tokens the rotary positions
 * their decode steps had) and Idefics3 (tiles): the pattern of every head sums, per segment, to the
 * masses the run itself computed in its prefill and decode steps, and is causal.
 */
const VLM = [
  { name: "qwen2vl-tiny/portrait", dir: path.resolve(__dirname, "../fixtures/qwen2vl-tiny") , case: "portrait" },
  { name: "idefics3-tiny/wide", dir: path.resolve(__dirname, "../fixtures/idefics3-tiny"), case: "wide" },
];
describe.each(VLM)("$name", ({ dir, case: name }) => {
  it("every head's pattern is causal, sums to 1 and matches the run's own segment masses, generated positions included", async () => {
    const caseFile = path.join(dir, "cases", `${name}.json`);
    const c = JSON.parse(fs.readFileSync(caseFile, "utf8")) as { prompt: string; image: string };
    const m = await LoadedModel.open(path.join(dir, "model"), { device: "cpu" });
    models.push(m);
    let source: PatternSource | undefined;
    const record = await runLens(m, { prompt: c.prompt, image: path.resolve(path.dirname(caseFile), c.image), settings: { positions: "all", maxNewTokens: 4 } }, { keepPatternSource: (s) => (source = s) });
    const L = m.info.numLayers;
    const nH = m.info.numHeads;
    const P = record.positions.length;
    const T = source!.ids.length;
    const G = SEGMENTS.length;
    const seg = record.tokens.map((t) => SEGMENTS.indexOf(t.segment));
    const prompt = record.tokens.length - record.generation.ids.length;
    expect(record.positions.some((q) => q >= prompt)).toBe(true);
    let worst = 0;
    for (let h = 0; h < nH; h++) {
      const pattern = await headPattern(m, source!, h);
      for (let l = 0; l < L; l++) {
        const rows = patternLayer(pattern, l, P, T);
        for (let j = 0; j < P; j++) {
          const q = record.positions[j];
          const mass = new Array<number>(G).fill(0);
          for (let k = 0; k < T; k++) {
            if (k > q) expect(rows[j * T + k]).toBe(0);
            mass[seg[k]] += rows[j * T + k];
          }
          for (let g = 0; g < G; g++) worst = Math.max(worst, Math.abs(mass[g] - record.attention.mass.data[((l * nH + h) * P + j) * G + g]));
        }
      }
    }
    console.log(`${name} head patterns against the run's segment masses: max abs error ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(BOUND);
  });
});
