/**
 * Validates a LensRecord: the JSON Schema (lensRecord.schema.json) for structure, then the
 * rules a schema cannot state — every block's data length against its shape, and shapes that
 * agree with the model and the analysed positions. Errors carry JSON-pointer paths.
 */
import Ajv from "ajv";
import { LENS_RECORD_VERSION, type LensRecord, type NumericBlock, SEGMENTS } from "./lensRecord";
import schema from "./lensRecord.schema.json";

const ajv = new Ajv({ allErrors: true, strict: false });
const validateSchema = ajv.compile(schema);

export type RecordValidation = { ok: true; record: LensRecord } | { ok: false; errors: string[] };

export function validateLensRecord(value: unknown): RecordValidation {
  if (!validateSchema(value)) {
    return { ok: false, errors: (validateSchema.errors ?? []).map((e) => `${e.instancePath || "/"}: ${e.message ?? "is invalid"}`) };
  }
  const r = value as unknown as LensRecord;
  const errors: string[] = [];
  const L = r.model.numLayers;
  const P = r.positions.length;
  const G = r.generation.ids.length;
  const shape = (path: string, b: NumericBlock | undefined, expected: (number | undefined)[]) => {
    if (!b) return;
    const size = b.shape.reduce((a, x) => a * x, 1);
    if (b.data.length !== size) errors.push(`${path}/data: has ${b.data.length} values but shape [${b.shape.join(", ")}] holds ${size}`);
    if (b.shape.length !== expected.length) errors.push(`${path}/shape: must have ${expected.length} items`);
    else expected.forEach((d, i) => d !== undefined && b.shape[i] !== d && errors.push(`${path}/shape/${i}: must be ${d}, got ${b.shape[i]}`));
  };
  if (r.version !== LENS_RECORD_VERSION) errors.push(`/version: must be ${LENS_RECORD_VERSION}`);
  if (r.layerLabels.length !== L + 1) errors.push(`/layerLabels: must have ${L + 1} items (numLayers + 1)`);
  r.positions.forEach((p, i) => {
    if (p >= r.tokens.length) errors.push(`/positions/${i}: ${p} is not a token index (there are ${r.tokens.length} tokens)`);
    if (i > 0 && p <= r.positions[i - 1]) errors.push(`/positions/${i}: positions must be strictly increasing`);
  });
  const k = r.lens.topK;
  shape("/lens/topkIds", r.lens.topkIds, [L + 1, P, k]);
  shape("/lens/topkProbs", r.lens.topkProbs, [L + 1, P, k]);
  for (const key of ["entropy", "kl", "cosine", "targetProb", "targetRank"] as const) shape(`/lens/${key}`, r.lens[key], [L + 1, P]);
  if (r.lens.targetIds.length !== P) errors.push(`/lens/targetIds: must have ${P} items (one per position)`);
  shape("/tracked/rank", r.tracked.rank, [L + 1, P, r.tracked.ids.length]);
  shape("/tracked/prob", r.tracked.prob, [L + 1, P, r.tracked.ids.length]);
  if (r.attention.segments.join() !== SEGMENTS.join()) errors.push(`/attention/segments: must be ${SEGMENTS.join(", ")}`);
  shape("/attention/mass", r.attention.mass, [L, r.model.numHeads, P, SEGMENTS.length]);
  shape("/attention/imageRows", r.attention.imageRows, [L, P, undefined]);
  shape("/patchLens/topIds", r.patchLens?.topIds, [L + 1, undefined]);
  shape("/patchLens/topProbs", r.patchLens?.topProbs, [L + 1, undefined]);
  if (r.generation.predictingPositions.length !== G) errors.push(`/generation/predictingPositions: must have ${G} items (one per generated token)`);
  r.generation.predictingPositions.forEach((p, i) => p >= P && errors.push(`/generation/predictingPositions/${i}: ${p} is not an index into positions`));
  shape("/generation/matches", r.generation.matches, [L + 1, G]);
  const generated = r.tokens.filter((t) => t.segment === "generated").map((t) => t.id);
  if (generated.join() !== r.generation.ids.join()) errors.push("/generation/ids: must equal the ids of the generated tokens in /tokens");
  if (r.headMask) {
    for (const [layer, heads] of Object.entries(r.headMask)) {
      if (!/^\d+$/.test(layer) || Number(layer) >= L) errors.push(`/headMask/${layer}: not a layer of the model (0..${L - 1})`);
      heads.forEach((h, i) => h >= r.model.numHeads && errors.push(`/headMask/${layer}/${i}: head ${h} is not in 0..${r.model.numHeads - 1}`));
    }
  }
  return errors.length ? { ok: false, errors } : { ok: true, record: r };
}

/** The record, or an error listing every problem. */
export function assertLensRecord(value: unknown): LensRecord {
  const v = validateLensRecord(value);
  if (!v.ok) throw new Error(`invalid LensRecord:\n  ${v.errors.join("\n  ")}`);
  return v.record;
}
