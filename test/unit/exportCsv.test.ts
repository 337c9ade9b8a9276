/** CSV and JSON exports of the LensRecord, and the CSV of a diff: exact text for the hand-made sample, and a round trip. */
import { describe, expect, it } from "vitest";
import { csvField, diffToCsv, formatNumber, neutraliseFormula, recordToCsv, recordToJson } from "../../src/shared/exportCsv";
import type { LensRecord } from "../../src/shared/lensRecord";
import { diffRecords, type RecordDiff } from "../../src/shared/recordDiff";
import { validateLensRecord } from "../../src/shared/validateRecord";
import { parseCsv } from "../helpers/csv";
import { MASKED_LENS, sampleRecord } from "../helpers/sampleRecord";

// Token 4 reads `say "hi",` newline `ok`; " red", " blue" and "  " have edge spaces; "=" would
// start a spreadsheet formula, so it is written '=.
const EXPECTED_CSV = [
  "position,token,next_token,segment,layer,layer_label,top1_token,top1_prob,top2_token,top2_prob,entropy,kl,cosine,target_token,target_prob,target_rank",
  '4,"say ""hi"",\nok",ASSISTANT:,text,0,embeddings,"  ",0.25,\'=,0.125,2.25,4.5,0.1," red",0.01,5',
  '4,"say ""hi"",\nok",ASSISTANT:,text,1,block 1,ASSISTANT:,0.3,\'=,0.2,1.2,0.75,0.6," red",0.05,4',
  '4,"say ""hi"",\nok",ASSISTANT:,text,2,block 2,ASSISTANT:,0.9," blue",0.05,0.4,0,1," red",0.02,3',
  '5,ASSISTANT:," red",template,0,embeddings,Red,0.5," blue",0.25,2.375,3.25,0.2," red",0.02,3',
  '5,ASSISTANT:," red",template,1,block 1," red",0.6," blue",0.1,1.1,0.5,0.7," red",0.6,1',
  '5,ASSISTANT:," red",template,2,block 2," red",0.875,Red,0.0625,0.5,0,1," red",0.875,1',
  '6," red",</s>,generated,0,embeddings,"say ""hi"",\nok",0.375,"  ",0.0625,2.4,5,-0.05," red",0.002,9',
  '6," red",</s>,generated,1,block 1,</s>,0.4," red",0.3,1.5,0.6,0.8," red",0.3,2',
  '6," red",</s>,generated,2,block 2,</s>,0.99," red",0.001,0.1,0,1," red",0.001,2',
].join("\n") + "\n";

describe("recordToCsv", () => {
  it("writes the sample exactly: one row per (position, layer), RFC 4180 quoting, float32-short numbers", () => {
    expect(recordToCsv(sampleRecord())).toBe(EXPECTED_CSV);
  });

  it("reads back as the record's values", () => {
    const r = sampleRecord();
    const [header, ...rows] = parseCsv(recordToCsv(r));
    const L1 = r.layerLabels.length;
    const P = r.positions.length;
    const k = r.lens.topK;
    expect(rows).toHaveLength(P * L1);
    // text cells read back as written, but for the quote that keeps a formula from running
    const text = (id: number) => neutraliseFormula(r.tokenTexts[String(id)]);
    rows.forEach((cells, i) => {
      expect(cells).toHaveLength(header.length);
      const row = Object.fromEntries(header.map((name, c) => [name, cells[c]]));
      const [j, l] = [Math.floor(i / L1), i % L1];
      const cell = l * P + j;
      const pos = r.positions[j];
      // Probabilities and the like read back as the same float32; integers exactly.
      const same32 = (s: string, v: number) => expect(Math.fround(Number(s))).toBe(v);
      expect(Number(row.position)).toBe(pos);
      expect(row.token).toBe(neutraliseFormula(r.tokens[pos].text));
      expect(row.next_token).toBe(neutraliseFormula(r.tokens[pos + 1]?.text ?? ""));
      expect(row.segment).toBe(r.tokens[pos].segment);
      expect(Number(row.layer)).toBe(l);
      expect(row.layer_label).toBe(r.layerLabels[l]);
      for (let s = 0; s < k; s++) {
        expect(row[`top${s + 1}_token`]).toBe(text(r.lens.topkIds.data[cell * k + s]));
        same32(row[`top${s + 1}_prob`], r.lens.topkProbs.data[cell * k + s]);
      }
      same32(row.entropy, r.lens.entropy.data[cell]);
      same32(row.kl, r.lens.kl.data[cell]);
      same32(row.cosine, r.lens.cosine.data[cell]);
      expect(row.target_token).toBe(text(r.lens.targetIds[j]));
      same32(row.target_prob, r.lens.targetProb.data[cell]);
      expect(Number(row.target_rank)).toBe(r.lens.targetRank.data[cell]);
    });
  });

  it("leaves next_token empty at the last token, and names unknown ids", () => {
    const r = sampleRecord();
    r.positions[2] = 7; // "</s>", the last token
    delete r.tokenTexts["9"];
    const rows = parseCsv(recordToCsv(r));
    expect(rows[7].slice(0, 3)).toEqual(["7", "</s>", ""]);
    expect(rows[1][6]).toBe("<9>");
  });
});

describe("csvField and formatNumber", () => {
  it.each([
    ["plain", "plain"],
    ["", ""],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ["a\nb", '"a\nb"'],
    ["a\r\nb", '"a\r\nb"'],
    [" lead", '" lead"'],
    ["trail ", '"trail "'],
    ["\t", '"\'\t"'],
    ["in side", "in side"],
    ["ünï ☃ 字", "ünï ☃ 字"],
  ])("quotes %j as %j", (value, expected) => {
    expect(csvField(value)).toBe(expected);
  });

  it.each([
    [Math.fround(0.1), "0.1"],
    [Math.fround(1 / 3), "0.33333334"],
    [Math.fround(-0.05), "-0.05"],
    [Math.fround(1e-8), "1e-8"],
    [Math.fround(3.4e38), "3.4e+38"],
    [5, "5"],
    [-0, "0"],
    [151935, "151935"],
    [0.1, "0.1"],
  ])("writes %s as %s", (value, expected) => {
    expect(formatNumber(value)).toBe(expected);
    expect(csvField(value)).toBe(expected);
  });

  it("writes every float32 in at most 9 significant digits that read back as the same float32", () => {
    const bits = new Uint32Array(20_000);
    let seed = 12345;
    for (let i = 0; i < bits.length; i++) bits[i] = seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    for (const v of new Float32Array(bits.buffer)) {
      if (!Number.isFinite(v)) continue;
      const s = formatNumber(v);
      expect(Math.fround(Number(s)), s).toBe(v);
      const significant = Number(s).toExponential().replace(/e.*$/, "").replace(/[-.]/g, "");
      if (!Number.isSafeInteger(v)) expect(significant.length, s).toBeLessThanOrEqual(9);
    }
  });
});

describe("recordToJson", () => {
  /** The same record with every object's keys inserted in reverse order. */
  const reversed = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(reversed) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)])) : v;

  it("parses back to the same record, which still validates", () => {
    const r = sampleRecord();
    const text = recordToJson(r);
    expect(text.endsWith("}\n")).toBe(true);
    const back = JSON.parse(text) as LensRecord;
    expect(back).toEqual(r);
    expect(validateLensRecord(back).ok).toBe(true);
  });

  it("is the same text however the record's keys were ordered, in the schema's order", () => {
    const r = sampleRecord();
    const text = recordToJson(r);
    expect(recordToJson(reversed(r) as LensRecord)).toBe(text);
    const top = Object.keys(JSON.parse(text) as object);
    expect(top).toEqual(["version", "model", "input", "tokens", "tokenTexts", "layerLabels", "positions", "lens", "tracked", "attention", "patchLens", "headMask", "generation", "timings", "warnings"]);
    expect(text).toContain('"timings": { "decode": 4, "lens": 0.5, "prefill": 3, "prepare": 1.5, "vision": 2.25 }');
  });

  it("indents by two spaces, keeps arrays of plain values and small objects on one line", () => {
    const text = recordToJson(sampleRecord());
    const lines = text.split("\n");
    expect(lines.slice(0, 3)).toEqual(["{", '  "version": 1,', '  "model": {']);
    expect(lines).toContain('    "topkIds": { "shape": [3,3,2], "data": [9,10,11,8,4,9,5,10,6,8,7,6,5,8,6,11,7,6] },');
    expect(lines).toContain('    { "id": 4, "text": "say \\"hi\\",\\nok", "segment": "text" },');
    expect(lines).toContain('    { "id": 3, "text": "<image>", "segment": "image", "image": { "index": 0, "row": 0, "col": 1 } },');
    expect(lines).toContain('  "layerLabels": ["embeddings","block 1","block 2"],');
    expect(lines.filter((l) => !l.includes('"data": [')).every((l) => l.length <= 120)).toBe(true);
    expect(lines.length).toBeLessThan(150);
  });

  it("leaves out undefined fields and writes the numbers JSON cannot hold as null (the record's warnings say why)", () => {
    const r = sampleRecord();
    expect(recordToJson(r)).toContain('"answerProb": 0.875');
    r.lens.answerProb = undefined;
    expect(recordToJson(r)).not.toContain('"answerProb": 0.875');
    r.lens.kl.data[1] = NaN;
    r.lens.kl.data[2] = Infinity;
    const kl = (JSON.parse(recordToJson(r)) as { lens: { kl: { data: (number | null)[] } } }).lens.kl.data;
    expect(kl[1]).toBeNull();
    expect(kl[2]).toBeNull();
    expect(kl[0]).toBe(r.lens.kl.data[0]);
  });
});

describe("diffToCsv", () => {
  const diff: RecordDiff = {
    model: { id: "tiny-llava", configHash: "0".repeat(64) },
    layers: ["embeddings", "block 1"],
    positions: [4],
    baseTokens: ['say "hi",\nok'],
    otherTokens: ['say "hi",\nok'],
    baseTargets: [" red"],
    otherTargets: [" blue"],
    sameToken: [true],
    sameContext: [true],
    sameTarget: [false],
    targetProbDelta: { shape: [2, 1], data: [0, -0.25] },
    targetRankDelta: { shape: [2, 1], data: [0, 2] },
    entropyDelta: { shape: [2, 1], data: [0, 0.5] },
    meanTargetProbDelta: [0, -0.25],
    meanTargetRankDelta: [0, 2],
    meanEntropyDelta: [0, 0.5],
    baseHeadMask: null,
    otherHeadMask: { "0": [1] },
  };

  it("writes one row per (position, layer)", () => {
    expect(diffToCsv(diff)).toBe(
      [
        "position,token,other_token,same_context,layer,layer_label,target_token,other_target_token,target_prob_delta,target_rank_delta,entropy_delta",
        '4,"say ""hi"",\nok","say ""hi"",\nok",true,0,embeddings," red"," blue",0,0,0',
        '4,"say ""hi"",\nok","say ""hi"",\nok",true,1,block 1," red"," blue",-0.25,2,0.5',
      ].join("\n") + "\n",
    );
  });

  it("or one row per layer of the means", () => {
    expect(diffToCsv(diff, "means")).toBe(
      ["layer,layer_label,mean_target_prob_delta,mean_target_rank_delta,mean_entropy_delta", "0,embeddings,0,0,0", "1,block 1,-0.25,2,0.5"].join("\n") + "\n",
    );
  });

  it("reads back as the deltas of a real diff", () => {
    const d = diffRecords(sampleRecord(), sampleRecord({ lens: MASKED_LENS, headMask: { "0": [1] } }));
    const [header, ...rows] = parseCsv(diffToCsv(d));
    expect(rows).toHaveLength(d.positions.length * d.layers.length);
    const P = d.positions.length;
    rows.forEach((cells, i) => {
      const row = Object.fromEntries(header.map((name, c) => [name, cells[c]]));
      const cell = (i % d.layers.length) * P + Math.floor(i / d.layers.length);
      expect(Number(row.target_prob_delta)).toBeCloseTo(d.targetProbDelta.data[cell], 7);
      expect(Number(row.target_rank_delta)).toBe(d.targetRankDelta.data[cell]);
      expect(Number(row.entropy_delta)).toBeCloseTo(d.entropyDelta.data[cell], 7);
    });
  });
});
