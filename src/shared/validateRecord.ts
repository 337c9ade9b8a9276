/**
 * Checks that a value is a LensRecord, in two layers. The JSON Schema (lensRecord.schema.json)
 * owns the structure: fields, types, enums and the rank of every block. The checks here own
 * what a schema cannot say: that block shapes agree with the model and the analysed positions,
 * that data fills its shape, that indices point where they should and values are in range.
 * They only run on a structurally valid record, so they can trust the types.
 *
 * Every error is "<JSON pointer>: <what is wrong>", e.g. "/lens/entropy/shape: must have 2 items".
 */
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import { describeSchemaErrors } from "./schemaErrors";
import { type LensRecord, type NumericBlock, SEGMENTS } from "./lensRecord";
import lensRecordSchema from "./lensRecord.schema.json";

export type RecordValidation = { ok: true; record: LensRecord } | { ok: false; errors: string[] };

/** Thrown by assertLensRecord; `errors` lists every problem found. */
export class InvalidLensRecordError extends Error {
  override readonly name = "InvalidLensRecordError";
  constructor(readonly errors: string[]) {
    super(`not a valid LensRecord (${errors.length} problem${errors.length === 1 ? "" : "s"}):\n  ${errors.join("\n  ")}`);
  }
}

/** A broken record can have one problem per value; past this many, the rest are counted. */
const MAX_ERRORS = 50;
/** Float32 arithmetic leaves probabilities and sums a little off; more than this is a bug. */
const SLACK = 1e-4;

let schemaValidator: ValidateFunction | undefined;
function validateSchema(value: unknown): ErrorObject[] {
  // Compiled on first use, so importing this module stays cheap.
  schemaValidator ??= new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true }).compile(lensRecordSchema);
  return schemaValidator(value) ? [] : (schemaValidator.errors ?? []);
}

export function validateLensRecord(value: unknown): RecordValidation {
  const schemaErrors = validateSchema(value);
  const errors = schemaErrors.length ? describeSchemaErrors(schemaErrors, "keys are token ids or layers written as decimal integers") : checkSemantics(value as LensRecord);
  if (errors.length === 0) return { ok: true, record: value as LensRecord };
  const unique = [...new Set(errors)];
  return {
    ok: false,
    errors: unique.length > MAX_ERRORS ? [...unique.slice(0, MAX_ERRORS), `... and ${unique.length - MAX_ERRORS} more problems`] : unique,
  };
}

/** The record, or an InvalidLensRecordError listing every problem. */
export function assertLensRecord(value: unknown): LensRecord {
  const v = validateLensRecord(value);
  if (!v.ok) throw new InvalidLensRecordError(v.errors);
  return v.record;
}

// --- What the schema cannot say ----------------------------------------------------------

/** One dimension a block must have, and why (said in the error). */
interface Axis {
  size: number;
  why: string;
}

function checkSemantics(r: LensRecord): string[] {
  const errors: string[] = [];
  const add = (path: string, message: string) => errors.push(`${path}: ${message}`);

  const L = r.model.numLayers;
  const H = r.model.numHeads;
  const V = r.model.vocabSize;
  const P = r.positions.length;
  const k = r.lens.topK;
  const M = r.tracked.ids.length;
  const G = r.generation.ids.length;
  const imageTokens = r.tokens.filter((t) => t.segment === "image").length;
  const layers: Axis = { size: L + 1, why: "model.numLayers + 1 lens layers" };
  const blocks: Axis = { size: L, why: "model.numLayers decoder blocks" };
  const positions: Axis = { size: P, why: "positions.length" };

  /** Shape against the expected axes and data against the shape; true when both agree. */
  const block = (path: string, b: NumericBlock | undefined, axes: Axis[]): boolean => {
    if (!b) return false;
    let ok = true;
    if (b.shape.length !== axes.length) {
      add(`${path}/shape`, `must have ${axes.length} items`);
      ok = false;
    } else {
      axes.forEach((axis, i) => {
        if (b.shape[i] === axis.size) return;
        add(`${path}/shape/${i}`, `must be ${axis.size} (${axis.why}), got ${b.shape[i]}`);
        ok = false;
      });
    }
    const size = b.shape.reduce((a, d) => a * d, 1);
    if (b.data.length !== size) {
      add(`${path}/data`, `has ${b.data.length} values but shape [${b.shape.join(", ")}] holds ${size}`);
      ok = false;
    }
    return ok;
  };
  /** One error per array for values that fail `bad`: the first, and how many more. */
  const values = (path: string, data: readonly number[], bad: (v: number, i: number) => boolean, what: (v: number, i: number) => string) => {
    let first = -1;
    let count = 0;
    for (let i = 0; i < data.length; i++) {
      if (!bad(data[i], i)) continue;
      if (first < 0) first = i;
      count++;
    }
    if (count) add(`${path}/${first}`, `${what(data[first], first)}${count > 1 ? ` (and ${count - 1} more)` : ""}`);
  };
  const notTokenId = (v: number) => v >= V;
  const tokenIdMessage = (v: number) => `${v} is not a token id of this model (model.vocabSize is ${V})`;
  const notProbability = (v: number) => v < -SLACK || v > 1 + SLACK;
  const probabilityMessage = (v: number) => `${v} is not a probability`;

  if (r.layerLabels.length !== L + 1) add("/layerLabels", `must have ${L + 1} items (model.numLayers + 1), got ${r.layerLabels.length}`);

  // Tokens and the image grid.
  r.tokens.forEach((t, i) => {
    if (t.image && t.segment !== "image") add(`/tokens/${i}/image`, `only image tokens have a patch, but this token's segment is "${t.segment}"`);
    if (t.segment === "image" && r.input.image === null) add(`/tokens/${i}/segment`, `is "image" but /input/image is null (a text-only run has no image tokens)`);
    if (t.image && r.input.image) {
      const [rows, cols] = r.input.image.grid;
      if (t.image.row >= rows) add(`/tokens/${i}/image/row`, `${t.image.row} is outside the image grid (${rows} rows)`);
      if (t.image.col >= cols) add(`/tokens/${i}/image/col`, `${t.image.col} is outside the image grid (${cols} columns)`);
    }
  });

  // Analysed positions.
  r.positions.forEach((p, j) => {
    if (p >= r.tokens.length) add(`/positions/${j}`, `${p} is not a token index (there are ${r.tokens.length} tokens)`);
    if (j > 0 && p <= r.positions[j - 1]) add(`/positions/${j}`, `positions must be strictly increasing, but ${p} follows ${r.positions[j - 1]}`);
  });

  // Lens statistics.
  if (k > V) add("/lens/topK", `${k} is more than model.vocabSize (${V})`);
  const topK: Axis = { size: k, why: "lens.topK" };
  const topIdsOk = block("/lens/topkIds", r.lens.topkIds, [layers, positions, topK]);
  if (topIdsOk) values("/lens/topkIds/data", r.lens.topkIds.data, notTokenId, tokenIdMessage);
  const topProbsOk = block("/lens/topkProbs", r.lens.topkProbs, [layers, positions, topK]);
  if (topProbsOk) {
    const probs = r.lens.topkProbs.data;
    values("/lens/topkProbs/data", probs, notProbability, probabilityMessage);
    values(
      "/lens/topkProbs/data",
      probs,
      (v, i) => i % k !== 0 && v > probs[i - 1] + SLACK,
      (v, i) => `${v} is more than the slot before it (${probs[i - 1]}): top-k lists go most likely first`,
    );
  }
  if (block("/lens/entropy", r.lens.entropy, [layers, positions])) {
    const most = Math.log(V) + SLACK;
    values("/lens/entropy/data", r.lens.entropy.data, (v) => v < -SLACK || v > most, (v) => `${v} is not an entropy over ${V} tokens (0 to ${Math.log(V).toFixed(4)} nats)`);
  }
  if (block("/lens/kl", r.lens.kl, [layers, positions])) values("/lens/kl/data", r.lens.kl.data, (v) => v < -SLACK, (v) => `${v} is negative; a KL divergence is not`);
  if (block("/lens/cosine", r.lens.cosine, [layers, positions])) {
    values("/lens/cosine/data", r.lens.cosine.data, (v) => Math.abs(v) > 1 + SLACK, (v) => `${v} is not a cosine (-1 to 1)`);
  }
  if (r.lens.targetIds.length !== P) add("/lens/targetIds", `must have ${P} items (one per analysed position), got ${r.lens.targetIds.length}`);
  values("/lens/targetIds", r.lens.targetIds, notTokenId, tokenIdMessage);
  const targetProbOk = block("/lens/targetProb", r.lens.targetProb, [layers, positions]);
  if (targetProbOk) values("/lens/targetProb/data", r.lens.targetProb.data, notProbability, probabilityMessage);
  if (block("/lens/targetRank", r.lens.targetRank, [layers, positions])) values("/lens/targetRank/data", r.lens.targetRank.data, (v) => v > V, (v) => `rank ${v} is past model.vocabSize (${V})`);
  r.lens.targetText?.variants.forEach((variant, i) => values(`/lens/targetText/variants/${i}/ids`, variant.ids, notTokenId, tokenIdMessage));

  // Tracked tokens.
  const seen = new Map<number, number>();
  r.tracked.ids.forEach((id, m) => {
    const before = seen.get(id);
    if (before !== undefined) add(`/tracked/ids/${m}`, `token ${id} is already tracked at /tracked/ids/${before}`);
    seen.set(id, m);
  });
  values("/tracked/ids", r.tracked.ids, notTokenId, tokenIdMessage);
  const tracked: Axis = { size: M, why: "tracked.ids.length" };
  if (block("/tracked/rank", r.tracked.rank, [layers, positions, tracked])) values("/tracked/rank/data", r.tracked.rank.data, (v) => v > V, (v) => `rank ${v} is past model.vocabSize (${V})`);
  const trackedProbOk = block("/tracked/prob", r.tracked.prob, [layers, positions, tracked]);
  if (trackedProbOk) values("/tracked/prob/data", r.tracked.prob.data, notProbability, probabilityMessage);

  // The sidecar reads the top-k, the target and the tracked tokens off one softmax, so where a
  // token is in the top-k the blocks agree on its probability, and a token outside it is no more
  // likely than the k-th. A block written with the wrong layout breaks this. (Ranks are not
  // compared: tokens with equal probability may take either order.)
  if (topIdsOk && topProbsOk) {
    const ids = r.lens.topkIds.data;
    const probs = r.lens.topkProbs.data;
    const slotOf = (cell: number, id: number) => {
      for (let s = 0; s < k; s++) if (ids[cell * k + s] === id) return s;
      return -1;
    };
    if (targetProbOk && r.lens.targetIds.length === P) {
      const target = (cell: number) => r.lens.targetIds[cell % P];
      const disagrees = (v: number, cell: number) => {
        const s = slotOf(cell, target(cell));
        return s >= 0 ? Math.abs(v - probs[cell * k + s]) > SLACK : v > probs[cell * k + k - 1] + SLACK;
      };
      values("/lens/targetProb/data", r.lens.targetProb.data, disagrees, (v, cell) => {
        const s = slotOf(cell, target(cell));
        return s >= 0
          ? `${v} disagrees with /lens/topkProbs/data/${cell * k + s} (${probs[cell * k + s]}), where the target (token ${target(cell)}) is top-${s + 1}`
          : `${v} is more than the top-${k} probability there (${probs[cell * k + k - 1]}), yet the target (token ${target(cell)}) is not in the top-k`;
      });
    }
    if (trackedProbOk) {
      const column = new Map(r.tracked.ids.map((id, m) => [id, m]));
      let first = "";
      let count = 0;
      for (let cell = 0; cell < (L + 1) * P; cell++)
        for (let s = 0; s < k; s++) {
          const m = column.get(ids[cell * k + s]);
          if (m === undefined || Math.abs(r.tracked.prob.data[cell * M + m] - probs[cell * k + s]) <= SLACK) continue;
          if (!first) first = `/tracked/prob/data/${cell * M + m}: ${r.tracked.prob.data[cell * M + m]} disagrees with /lens/topkProbs/data/${cell * k + s} (${probs[cell * k + s]}) for token ${ids[cell * k + s]}`;
          count++;
        }
      if (count) errors.push(`${first}${count > 1 ? ` (and ${count - 1} more)` : ""}`);
    }
  }

  // Attention.
  if (r.attention.segments.join() !== SEGMENTS.join()) add("/attention/segments", `must be ${JSON.stringify(SEGMENTS)} in this order`);
  const segments: Axis = { size: SEGMENTS.length, why: "one per segment" };
  if (block("/attention/mass", r.attention.mass, [blocks, { size: H, why: "model.numHeads" }, positions, segments])) {
    const mass = r.attention.mass.data;
    const G5 = SEGMENTS.length;
    values("/attention/mass/data", mass, notProbability, (v) => `${v} is not an attention mass (0 to 1)`);
    // Each (block, head, query) row spreads the query's attention over the segments.
    let firstRow = -1;
    let firstSum = 0;
    let badRows = 0;
    for (let start = 0; start < mass.length; start += G5) {
      let sum = 0;
      for (let c = 0; c < G5; c++) sum += mass[start + c];
      if (Math.abs(sum - 1) <= 1e-3) continue;
      if (firstRow < 0) [firstRow, firstSum] = [start, sum];
      badRows++;
    }
    if (badRows) add(`/attention/mass/data/${firstRow}`, `the ${G5} segment masses from here sum to ${firstSum}, not 1${badRows > 1 ? ` (and ${badRows - 1} more rows)` : ""}`);
  }
  block("/attention/imageRows", r.attention.imageRows, [blocks, positions, { size: imageTokens, why: "the image tokens in /tokens" }]);

  // Patch lens.
  if (r.patchLens) {
    const patches: Axis = { size: imageTokens, why: "the image tokens in /tokens" };
    if (block("/patchLens/topIds", r.patchLens.topIds, [layers, patches])) values("/patchLens/topIds/data", r.patchLens.topIds.data, notTokenId, tokenIdMessage);
    if (block("/patchLens/topProbs", r.patchLens.topProbs, [layers, patches])) values("/patchLens/topProbs/data", r.patchLens.topProbs.data, notProbability, probabilityMessage);
  }

  // Masked heads.
  for (const [layer, heads] of Object.entries(r.headMask ?? {})) {
    if (Number(layer) >= L) add(`/headMask/${layer}`, `${layer} is not a decoder block of this model (0..${L - 1})`);
    heads.forEach((h, i) => h >= H && add(`/headMask/${layer}/${i}`, `head ${h} is not in 0..${H - 1} (model.numHeads is ${H})`));
  }

  // Generation: the last G tokens, each predicted by an analysed position.
  const gen = r.generation;
  const S = r.tokens.length - G;
  values("/generation/ids", gen.ids, notTokenId, tokenIdMessage);
  if (S < 0) {
    add("/generation/ids", `has ${G} tokens but /tokens has only ${r.tokens.length}`);
  } else {
    r.tokens.forEach((t, i) => {
      if (i < S && t.segment === "generated") add(`/tokens/${i}/segment`, `is "generated", but only the last ${G} tokens (generation.ids) are`);
      if (i >= S && (t.segment !== "generated" || t.id !== gen.ids[i - S])) {
        add(`/tokens/${i}`, `must be generated token ${i - S} (id ${gen.ids[i - S]}, segment "generated"): generation.ids are the last ${G} tokens`);
      }
    });
  }
  const maxNew = r.input.settings.maxNewTokens;
  if (G > maxNew) add("/generation/ids", `has ${G} tokens, more than input.settings.maxNewTokens (${maxNew})`);
  if (gen.stoppedBy === "none" && G > 0) add("/generation/stoppedBy", `is "none" but ${G} tokens were generated`);
  if (gen.stoppedBy === "eos" && G === 0) add("/generation/stoppedBy", `is "eos" but nothing was generated`);
  if (gen.stoppedBy === "maxNewTokens" && G !== maxNew) add("/generation/stoppedBy", `is "maxNewTokens" but ${G} of ${maxNew} tokens were generated`);
  let predictorsOk = gen.predictingPositions.length === G;
  if (!predictorsOk) add("/generation/predictingPositions", `must have ${G} items (one per generated token), got ${gen.predictingPositions.length}`);
  gen.predictingPositions.forEach((j, t) => {
    if (j >= P) {
      add(`/generation/predictingPositions/${t}`, `${j} is not an index into positions (there are ${P})`);
      predictorsOk = false;
    } else if (S >= 0 && r.positions[j] + 1 !== S + t) {
      add(`/generation/predictingPositions/${t}`, `positions[${j}] = ${r.positions[j]} predicts token ${r.positions[j] + 1}, but generated token ${t} is token ${S + t}`);
      predictorsOk = false;
    }
  });
  if (block("/generation/matches", gen.matches, [layers, { size: G, why: "generation.ids.length" }]) && predictorsOk && topIdsOk) {
    const expected = (l: number, t: number) => (r.lens.topkIds.data[(l * P + gen.predictingPositions[t]) * k] === gen.ids[t] ? 1 : 0);
    values(
      "/generation/matches/data",
      gen.matches.data,
      (v, i) => v !== expected(Math.floor(i / G), i % G),
      (v, i) => `must be ${expected(Math.floor(i / G), i % G)}: it says whether layer ${Math.floor(i / G)}'s top-1 at the predicting position is generated token ${i % G}`,
    );
  }

  // Every id an export or the webview will print has a text.
  const sources: [string, readonly number[]][] = [
    ["/tokens", r.tokens.map((t) => t.id)],
    ["/lens/topkIds", r.lens.topkIds.data],
    ["/lens/targetIds", r.lens.targetIds],
    ["/tracked/ids", r.tracked.ids],
    ["/generation/ids", gen.ids],
    ["/patchLens/topIds", r.patchLens?.topIds.data ?? []],
  ];
  for (const [path, ids] of sources) {
    const missing = [...new Set(ids.filter((id) => !Object.hasOwn(r.tokenTexts, String(id))))];
    if (missing.length) add("/tokenTexts", `has no text for token id${missing.length > 1 ? "s" : ""} ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""} used in ${path}`);
  }
  return errors;
}
