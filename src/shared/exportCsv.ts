/**
 * Exports are views of the LensRecord. The CSV has the shape the seed studies exported (seed
 * 002): one row per (analysed position, layer) with the token at the position, the token it
 * predicts, the layer's top-k tokens and probabilities, entropy, KL, cosine and the target.
 *
 * CSV text follows RFC 4180 with "\n" line ends: a field is quoted when it holds a comma, a
 * quote, a line break or leading/trailing whitespace (token texts often start with a space, and
 * some readers trim unquoted fields), and quotes inside are doubled. Text that would start a
 * spreadsheet formula is neutralised (see csvField). The caller writes it as UTF-8.
 */
import type { LensRecord } from "./lensRecord";
import lensRecordSchema from "./lensRecord.schema.json";
import type { RecordDiff } from "./recordDiff";

/**
 * One CSV field. null is an empty field. A text that a spreadsheet would take for a formula
 * (it starts with =, +, -, @, a tab or a carriage return: a manifest value such as
 * `=HYPERLINK(...)`, a token text such as "-") gets a leading single quote, as OWASP's CSV
 * injection advice has it; numbers are written as numbers, so a negative number stays one.
 * Every CSV this project writes goes through here (results.csv, aggregates.csv, the record
 * and diff exports of the CLI and the panel).
 */
export function csvField(value: string | number | boolean | null): string {
  if (value === null) return "";
  const s = typeof value === "number" ? formatNumber(value) : typeof value === "string" ? neutraliseFormula(value) : String(value);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A text cell that spreadsheets would evaluate, with a single quote in front; others as they are. */
export function neutraliseFormula(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

export function csvRow(values: readonly (string | number | boolean | null)[]): string {
  return values.map(csvField).join(",");
}

/**
 * The shortest decimal (at most 9 significant digits) that reads back as the same float32.
 * The lens computes in float32, so 0.1f prints as 0.1 rather than 0.100000001490116; safe
 * integers (ids, ranks, positions) print exactly.
 */
export function formatNumber(v: number): string {
  if (Number.isSafeInteger(v) || !Number.isFinite(v)) return String(Object.is(v, -0) ? 0 : v);
  const single = Math.fround(v);
  for (let digits = 1; digits < 9; digits++) {
    const s = v.toPrecision(digits);
    if (Math.fround(Number(s)) === single) return String(Number(s));
  }
  return String(Number(v.toPrecision(9)));
}

/** Column names of recordToCsv for a given k. */
export function csvHeader(topK: number): string[] {
  const header = ["position", "token", "next_token", "segment", "layer", "layer_label"];
  for (let i = 1; i <= topK; i++) header.push(`top${i}_token`, `top${i}_prob`);
  header.push("entropy", "kl", "cosine", "target_token", "target_prob", "target_rank");
  return header;
}

/** One row per (analysed position, layer), positions in order and layers 0..L within each. */
export function recordToCsv(record: LensRecord): string {
  const { lens, positions, tokens, layerLabels } = record;
  const k = lens.topK;
  const P = positions.length;
  const text = (id: number) => record.tokenTexts[String(id)] ?? `<${id}>`;
  const lines = [csvRow(csvHeader(k))];
  positions.forEach((pos, j) => {
    const token = tokens[pos];
    const next = tokens[pos + 1];
    for (let l = 0; l < layerLabels.length; l++) {
      const cell = l * P + j;
      const row: (string | number)[] = [pos, token.text, next ? next.text : "", token.segment, l, layerLabels[l]];
      for (let i = 0; i < k; i++) row.push(text(lens.topkIds.data[cell * k + i]), lens.topkProbs.data[cell * k + i]);
      row.push(lens.entropy.data[cell], lens.kl.data[cell], lens.cosine.data[cell], text(lens.targetIds[j]), lens.targetProb.data[cell], lens.targetRank.data[cell]);
      lines.push(csvRow(row));
    }
  });
  return lines.join("\n") + "\n";
}

/**
 * Per (analysed position, layer) by default; with "means", one row per layer of the deltas
 * averaged over positions. Deltas are other - base.
 */
export function diffToCsv(diff: RecordDiff, view: "positions" | "means" = "positions"): string {
  const lines: string[] = [];
  if (view === "means") {
    lines.push(csvRow(["layer", "layer_label", "mean_target_prob_delta", "mean_target_rank_delta", "mean_entropy_delta"]));
    diff.layers.forEach((label, l) => lines.push(csvRow([l, label, diff.meanTargetProbDelta[l], diff.meanTargetRankDelta[l], diff.meanEntropyDelta[l]])));
  } else {
    lines.push(
      csvRow([
        "position", "token", "other_token", "same_context", "layer", "layer_label", "target_token", "other_target_token",
        "target_prob_delta", "target_rank_delta", "entropy_delta",
      ]),
    );
    const P = diff.positions.length;
    diff.positions.forEach((pos, j) => {
      for (let l = 0; l < diff.layers.length; l++) {
        const cell = l * P + j;
        lines.push(
          csvRow([
            pos, diff.baseTokens[j], diff.otherTokens[j], diff.sameContext[j], l, diff.layers[l], diff.baseTargets[j], diff.otherTargets[j],
            diff.targetProbDelta.data[cell], diff.targetRankDelta.data[cell], diff.entropyDelta.data[cell],
          ]),
        );
      }
    });
  }
  return lines.join("\n") + "\n";
}

// --- JSON ------------------------------------------------------------------------------------

/**
 * The record as JSON that is the same for the same record however it was built: keys in the
 * schema's order (maps such as tokenTexts sorted by key), two-space indents, small objects on
 * one line, and every array of plain values (block data, shapes, ids) compact on one line, so a
 * 600-position record stays readable. Numbers are written exactly (JSON's shortest round-trip
 * form). A non-finite number throws: JSON cannot hold it, and JSON.stringify would write null.
 */
export function recordToJson(record: LensRecord): string {
  const out: string[] = [];
  writeJson(record, lensRecordSchema as SchemaNode, "", "", out);
  out.push("\n");
  // Pieces are joined once: a block's data can be hundreds of megabytes.
  return out.join("");
}

interface SchemaNode {
  $ref?: string;
  allOf?: SchemaNode[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode | SchemaNode[];
}

/** Lines up to this long (indent included) hold a whole small object. */
const INLINE_WIDTH = 120;

function resolve(node: SchemaNode | boolean | undefined): SchemaNode {
  if (!node || node === true) return {};
  let n = node;
  while (n.$ref) n = (lensRecordSchema.definitions as Record<string, SchemaNode>)[n.$ref.replace("#/definitions/", "")];
  return n;
}

function propertyOrder(node: SchemaNode): string[] {
  const order = Object.keys(node.properties ?? {});
  for (const part of node.allOf ?? []) for (const key of propertyOrder(resolve(part))) if (!order.includes(key)) order.push(key);
  return order;
}

function childNode(node: SchemaNode, key: string): SchemaNode {
  const own = node.properties?.[key];
  if (own) return resolve(own);
  for (const part of node.allOf ?? []) {
    const found = resolve(part).properties?.[key];
    if (found) return resolve(found);
  }
  return resolve(node.additionalProperties);
}

/** Known keys in the schema's order, then any others sorted (numerically when both are numbers). */
function orderedEntries(value: object, node: SchemaNode): [string, unknown][] {
  const known = propertyOrder(node);
  const rank = (key: string) => (known.includes(key) ? known.indexOf(key) : known.length);
  const numeric = /^\d+$/;
  return Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => rank(a) - rank(b) || (numeric.test(a) && numeric.test(b) ? Number(a) - Number(b) : a < b ? -1 : a > b ? 1 : 0));
}

const isPlain = (v: unknown) => v === null || typeof v !== "object";

/**
 * JSON has no NaN or Infinity. A record holds them only when the model produced them (its
 * `warnings` say from which layer on), and the file must still be written: they become null,
 * as JSON.stringify writes them.
 */
function plainJson(value: unknown): string {
  return JSON.stringify(value);
}

/** The value on one line if it fits in `budget` characters and holds no array of objects. */
function inlineJson(value: unknown, node: SchemaNode, budget: number, path: string): string | undefined {
  if (isPlain(value)) return plainJson(value);
  if (Array.isArray(value)) {
    // Each item takes at least two characters; a long array is not worth rendering to find out.
    if (value.length * 2 > budget || !value.every(isPlain)) return undefined;
    const text = plainJson(value);
    return text.length <= budget ? text : undefined;
  }
  // "{ " + members joined by ", " + " }"
  const members: string[] = [];
  let used = 2;
  for (const [key, v] of orderedEntries(value as object, node)) {
    const head = `${JSON.stringify(key)}: `;
    const text = inlineJson(v, childNode(node, key), budget - used - head.length - 2, `${path}/${key}`);
    if (text === undefined) return undefined;
    members.push(head + text);
    used += head.length + text.length + 2;
    if (used > budget) return undefined;
  }
  return members.length ? `{ ${members.join(", ")} }` : "{}";
}

function writeJson(value: unknown, node: SchemaNode, indent: string, path: string, out: string[]): void {
  const inline = inlineJson(value, node, INLINE_WIDTH - indent.length, path);
  if (inline !== undefined) {
    out.push(inline);
    return;
  }
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.every(isPlain)) {
      out.push(plainJson(value));
      return;
    }
    const itemNode = resolve(Array.isArray(node.items) ? undefined : node.items);
    out.push("[\n");
    value.forEach((v, i) => {
      out.push(inner);
      writeJson(v, itemNode, inner, `${path}/${i}`, out);
      out.push(i < value.length - 1 ? ",\n" : "\n");
    });
    out.push(indent, "]");
    return;
  }
  const entries = orderedEntries(value as object, node);
  out.push("{\n");
  entries.forEach(([key, v], i) => {
    out.push(inner, JSON.stringify(key), ": ");
    writeJson(v, childNode(node, key), inner, `${path}/${key}`, out);
    out.push(i < entries.length - 1 ? ",\n" : "\n");
  });
  out.push(indent, "}");
}
