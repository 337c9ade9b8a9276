/**
 * NaN and infinity in a finished lens record. A checkpoint with a corrupt matrix, half-precision
 * overflow or a broken config yields records whose statistics turn NaN from some layer on, and
 * a heat map of NaN reads like one of zeros. The open-time scan (model/weights.ts) reads only
 * the small tensors, so this check of the results is what catches a bad matrix: the record gets
 * a warning saying where values stop being finite, and the warning is logged to stderr (the
 * CLI's user sees it; the extension shows the sidecar's stderr in its log).
 */
import type { LensRecord, NumericBlock } from "../../shared/lensRecord";

/** A block to check: which axis is the layer (and by how much its index is off the lens layer) and which the analysed position. */
interface Checked {
  name: string;
  block: NumericBlock | undefined;
  layerAxis: number;
  /** Added to the layer index to get the lens layer (attention blocks count decoder blocks, lens layer = block + 1). */
  layerOffset: number;
  /** Axis of the analysed position, or -1 when the block has none (the patch lens runs over image tokens). */
  positionAxis: number;
  /**
   * KL and cosine compare each layer with the final one, so a NaN at the end makes them NaN at
   * every layer: they say where values stop being finite only when nothing else does.
   */
  againstFinal?: boolean;
}

interface FirstBad {
  layer: number;
  position: number;
  value: number;
}

/** The non-finite value with the lowest layer (then position) in a block, and how many there are. */
function firstNonFinite(c: Checked): { first: FirstBad; count: number } | undefined {
  const { block } = c;
  if (!block) return undefined;
  const { shape, data } = block;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, d) => a * d, 1));
  let first: FirstBad | undefined;
  let count = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (Number.isFinite(v)) continue;
    count++;
    const layer = Math.floor(i / strides[c.layerAxis]) % shape[c.layerAxis];
    const position = c.positionAxis < 0 ? -1 : Math.floor(i / strides[c.positionAxis]) % shape[c.positionAxis];
    if (!first || layer < first.layer || (layer === first.layer && position < first.position)) first = { layer, position, value: v };
  }
  return first ? { first, count } : undefined;
}

/**
 * Warnings for the record's non-finite values: one saying from which layer (and position) the
 * lens statistics stop being finite and which of them, one for a non-finite answer probability.
 * Empty when every value is finite.
 */
export function finiteWarnings(record: LensRecord): string[] {
  const checked: Checked[] = [
    { name: "probabilities", block: record.lens.topkProbs, layerAxis: 0, layerOffset: 0, positionAxis: 1 },
    { name: "entropy", block: record.lens.entropy, layerAxis: 0, layerOffset: 0, positionAxis: 1 },
    { name: "KL", block: record.lens.kl, layerAxis: 0, layerOffset: 0, positionAxis: 1, againstFinal: true },
    { name: "cosine", block: record.lens.cosine, layerAxis: 0, layerOffset: 0, positionAxis: 1, againstFinal: true },
    { name: "target probability", block: record.lens.targetProb, layerAxis: 0, layerOffset: 0, positionAxis: 1 },
    { name: "tracked probabilities", block: record.tracked.prob, layerAxis: 0, layerOffset: 0, positionAxis: 1 },
    { name: "attention", block: record.attention.mass, layerAxis: 0, layerOffset: 1, positionAxis: 2 },
    { name: "image attention", block: record.attention.imageRows, layerAxis: 0, layerOffset: 1, positionAxis: 1 },
    { name: "patch lens", block: record.patchLens?.topProbs, layerAxis: 0, layerOffset: 0, positionAxis: -1 },
  ];
  const found = checked.flatMap((c) => {
    const bad = firstNonFinite(c);
    return bad ? [{ againstFinal: c.againstFinal === true, name: c.name, layer: bad.first.layer + c.layerOffset, position: bad.first.position, value: bad.first.value, count: bad.count, total: c.block!.data.length }] : [];
  });
  const warnings: string[] = [];
  if (found.length) {
    // The earliest layer anything goes wrong at; at that layer, the earliest analysed position.
    const local = found.some((f) => !f.againstFinal) ? found.filter((f) => !f.againstFinal) : found;
    const layer = Math.min(...local.map((f) => f.layer));
    const atLayer = local.filter((f) => f.layer === layer);
    const withPosition = atLayer.filter((f) => f.position >= 0);
    const j = withPosition.length ? Math.min(...withPosition.map((f) => f.position)) : -1;
    const tokenIndex = j >= 0 ? record.positions[j] : undefined;
    const token = tokenIndex !== undefined ? record.tokens[tokenIndex] : undefined;
    const where = `layer ${layer} (${record.layerLabels[layer] ?? `layer ${layer}`})${tokenIndex !== undefined ? `, position ${tokenIndex}${token ? ` (token ${JSON.stringify(token.text)})` : ""}` : ""}`;
    const what = found.map((f) => `${f.name} ${f.count} of ${f.total}`).join(", ");
    warnings.push(
      `lens values stop being finite at ${where}: ${String(atLayer[0].value)} there; not finite: ${what}. The weights or the run overflow (a corrupt or half-precision checkpoint, or a wrong config): re-download the model or run it in float32`,
    );
  }
  const answer = record.lens.answerProb;
  if (answer !== undefined && !Number.isFinite(answer)) warnings.push(`the answer probability is ${String(answer)}: the final layer's values are not finite`);
  return warnings;
}

/**
 * Adds `warnings` to the record when some of its values are not finite, and logs each one.
 * Returns the record, so a run can end with `return checkFinite({...})`.
 */
export function checkFinite(record: LensRecord, log: (warning: string) => void = (w) => console.warn(`warning: ${w}`)): LensRecord {
  const warnings = finiteWarnings(record);
  if (!warnings.length) return record;
  for (const w of warnings) log(w);
  return { ...record, warnings: [...(record.warnings ?? []), ...warnings] };
}
