/**
 * Exports are views of the LensRecord. The CSV has the shape the seed studies exported (seed
 * 002): one row per (analysed position, layer), with the token at the position, the token it
 * predicts, the layer's top-k tokens and probabilities, entropy, KL, cosine and the target.
 */
import type { LensRecord } from "./lensRecord";

/** RFC 4180: quote when a field has a comma, quote, CR/LF or edge whitespace; double the quotes. */
export function csvField(value: string | number): string {
  const s = typeof value === "number" ? formatNumber(value) : value;
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Enough digits to round-trip a float32 (9 significant), without trailing zeros. */
export function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  if (!Number.isFinite(v)) return String(v);
  return String(Number(v.toPrecision(9)));
}

export function recordToCsv(record: LensRecord): string {
  const { lens, positions, tokens, layerLabels } = record;
  const k = lens.topK;
  const P = positions.length;
  const text = (id: number) => record.tokenTexts[String(id)] ?? String(id);
  const header = ["position", "token", "next_token", "segment", "layer", "layer_label"];
  for (let i = 1; i <= k; i++) header.push(`top${i}_token`, `top${i}_prob`);
  header.push("entropy", "kl", "cosine", "target_token", "target_prob", "target_rank");
  const lines = [header.join(",")];
  positions.forEach((pos, j) => {
    const token = tokens[pos];
    const next = tokens[pos + 1];
    for (let l = 0; l < layerLabels.length; l++) {
      const cell = l * P + j;
      const row: (string | number)[] = [pos, token.text, next ? next.text : "", token.segment, l, layerLabels[l]];
      for (let i = 0; i < k; i++) row.push(text(lens.topkIds.data[cell * k + i]), lens.topkProbs.data[cell * k + i]);
      row.push(lens.entropy.data[cell], lens.kl.data[cell], lens.cosine.data[cell], text(lens.targetIds[j]), lens.targetProb.data[cell], lens.targetRank.data[cell]);
      lines.push(row.map(csvField).join(","));
    }
  });
  return lines.join("\n") + "\n";
}

export function recordToJson(record: LensRecord): string {
  return JSON.stringify(record, null, 2) + "\n";
}
