/**
 * The `.lens.json` experiment file: its types, its defaults and its validator. The JSON Schema
 * (lensExperiment.schema.json, also contributed to VS Code for completion and hover) owns the
 * structure; the checks here own what the schema cannot say (one mask kind per variant,
 * placeholders that some input can fill, unique variant names). Every problem is
 * "<JSON pointer>: <what is wrong>", so editors can underline the exact place.
 *
 * Uses Ajv's compiled validators: fine in the extension host and the sidecar, not in a webview.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import { type ParseError, parse as parseJsonc, printParseErrorCode } from "jsonc-parser";
import type { LensSettings } from "./lensRecord";
import type { DtypeChoice } from "./protocol";
import experimentSchema from "./lensExperiment.schema.json";
import { describeSchemaErrors } from "./schemaErrors";
import { locatePointer, splitProblem } from "./jsonLocation";

export const EXPERIMENT_VERSION = 1;

export type ExperimentInput =
  | { kind: "images"; images: string; groups: Record<string, string>; limit?: number }
  | { kind: "manifest"; manifest: string; imageColumn: string; groups: Record<string, string>; limit?: number };

export type VariantMask =
  | { kind: "none" }
  | { kind: "heads"; heads: Record<string, number[]> }
  | { kind: "random"; count: number; seed: number }
  | { kind: "topImage"; count: number };

export interface ExperimentVariant {
  name: string;
  mask: VariantMask;
}

export interface ExperimentPrompt {
  name: string;
  template: string;
}

/** An experiment with every default filled in. */
export interface LensExperiment {
  name: string;
  description?: string;
  /** A model folder as written (relative to the file), or "default". */
  model: string;
  /** The dtype the file asks for; absent: the open model's (auto for a model opened for the file). */
  dtype?: DtypeChoice;
  inputs: ExperimentInput[];
  prompts: ExperimentPrompt[];
  target?: string;
  lens: Pick<LensSettings, "positions" | "topK"> & Required<Pick<LensSettings, "trackTokens" | "answerProb" | "imageAttention" | "patchLens">>;
  maxNewTokens: number;
  variants: ExperimentVariant[];
  groupBy: string[];
  output: { folder?: string; csv: boolean; records: boolean };
}

export type ExperimentValidation = { ok: true; experiment: LensExperiment } | { ok: false; errors: string[] };

/** Thrown by parseExperiment; `errors` holds every problem as "<pointer>: <message>". */
export class InvalidExperimentError extends Error {
  override readonly name = "InvalidExperimentError";
  constructor(
    readonly file: string,
    readonly errors: string[],
  ) {
    super(`${file}: ${errors[0]}${errors.length > 1 ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? "s" : ""})` : ""}`);
  }
}

let schemaValidator: ValidateFunction | undefined;

/** Placeholders in templates: {name}; "{{" and "}}" are literal braces. */
const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export function templateFields(template: string): string[] {
  const fields: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) if (m[1] !== undefined) fields.push(m[1]);
  return fields;
}

/**
 * Fills a template's placeholders from `row`; a missing field throws with its name. Only the
 * row's own columns count: {constructor} or {__proto__} are unknown columns, not Object's.
 */
export function fillTemplate(template: string, row: Record<string, string>): string {
  return template.replace(PLACEHOLDER, (whole, field: string | undefined) => {
    if (field === undefined) return whole[0];
    const v = Object.hasOwn(row, field) ? row[field] : undefined;
    if (typeof v !== "string") throw new Error(`the template "${template}" needs a "${field}" column, and this row has none (columns: ${Object.keys(row).join(", ") || "none"})`);
    return v;
  });
}

export function validateExperiment(value: unknown): ExperimentValidation {
  schemaValidator ??= new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true }).compile(experimentSchema);
  if (!schemaValidator(value)) {
    return { ok: false, errors: [...new Set(describeSchemaErrors(oneOfNoise(schemaValidator.errors ?? []), "decoder blocks are written as decimal integers, e.g. \"3\""))] };
  }
  const raw = value as RawExperiment;
  const errors: string[] = [];
  const variants: ExperimentVariant[] = [];
  const seen = new Set<string>();
  (raw.variants ?? [{ name: "baseline" }]).forEach((v, i) => {
    const kinds = (["mask", "random", "topImage"] as const).filter((k) => v[k] !== undefined);
    if (kinds.length > 1) errors.push(`/variants/${i}: give at most one of mask, random and topImage (got ${kinds.join(" and ")})`);
    if (seen.has(v.name)) errors.push(`/variants/${i}/name: "${v.name}" is already the name of another variant`);
    seen.add(v.name);
    const mask: VariantMask = v.mask
      ? { kind: "heads", heads: v.mask }
      : v.random
        ? { kind: "random", count: v.random.count, seed: v.random.seed ?? 0 }
        : v.topImage
          ? { kind: "topImage", count: v.topImage.count }
          : { kind: "none" };
    variants.push({ name: v.name, mask });
  });
  const prompts = raw.prompts.map((p, i): ExperimentPrompt => (typeof p === "string" ? { name: raw.prompts.length === 1 ? "prompt" : `prompt${i + 1}`, template: p } : { name: p.name ?? `prompt${i + 1}`, template: p.template }));
  const promptNames = new Set<string>();
  prompts.forEach((p, i) => {
    if (promptNames.has(p.name)) errors.push(`/prompts/${i}/name: "${p.name}" is already the name of another prompt`);
    promptNames.add(p.name);
  });
  const inputs = raw.inputs.map((x): ExperimentInput => {
    if (typeof x === "string") return { kind: "images", images: x, groups: {} };
    if ("manifest" in x) return { kind: "manifest", manifest: x.manifest, imageColumn: x.imageColumn ?? "image", groups: x.groups ?? {}, limit: x.limit };
    return { kind: "images", images: x.images, groups: x.groups ?? {}, limit: x.limit };
  });
  // Placeholders: an image input has no columns, so a template that needs one needs a manifest.
  const imageOnly = inputs.findIndex((x) => x.kind === "images");
  if (imageOnly >= 0) {
    const needs = (where: string, template: string) => {
      const fields = templateFields(template).filter((f) => !Object.hasOwn(inputs[imageOnly].groups, f) && f !== "image");
      if (fields.length) errors.push(`${where}: needs the column${fields.length > 1 ? "s" : ""} ${fields.map((f) => `{${f}}`).join(", ")}, which image input ${imageOnly} (${describeInput(inputs[imageOnly])}) does not have: use a manifest, or write the text in`);
    };
    prompts.forEach((p, i) => needs(typeof raw.prompts[i] === "string" ? `/prompts/${i}` : `/prompts/${i}/template`, p.template));
    if (raw.target !== undefined) needs("/target", raw.target);
  }
  if (raw.lens?.answerProb && raw.target === undefined) errors.push("/lens/answerProb: needs a target (the answer whose probability to compute)");
  if (errors.length) return { ok: false, errors };
  return {
    ok: true,
    experiment: {
      name: raw.name ?? "experiment",
      description: raw.description,
      model: raw.model ?? "default",
      ...(raw.dtype !== undefined ? { dtype: raw.dtype } : {}),
      inputs,
      prompts,
      target: raw.target,
      lens: {
        positions: raw.lens?.positions ?? "afterImage",
        topK: raw.lens?.topK ?? 10,
        trackTokens: raw.lens?.trackTokens ?? [],
        answerProb: raw.lens?.answerProb ?? false,
        imageAttention: raw.lens?.imageAttention ?? false,
        patchLens: raw.lens?.patchLens ?? false,
      },
      maxNewTokens: raw.generation?.maxNewTokens ?? 8,
      variants,
      groupBy: raw.groupBy ?? [],
      output: { folder: raw.output?.folder, csv: raw.output?.csv ?? true, records: raw.output?.records ?? false },
    },
  };
}

/**
 * Arrays and objects nested deeper than this are refused before parsing: a real experiment is
 * about five levels deep, and the parser and the validator recurse once per level.
 */
export const MAX_EXPERIMENT_DEPTH = 64;

/** The deepest nesting of arrays and objects in JSON text (brackets inside strings left out), in one pass. */
export function jsonDepth(text: string): { depth: number; offset: number } {
  let depth = 0;
  let max = 0;
  let at = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) {
        max = depth;
        at = i;
      }
    } else if (c === 0x7d || c === 0x5d) depth = Math.max(0, depth - 1);
  }
  return { depth: max, offset: at };
}

function tooDeep(text: string): { message: string; offset: number } | undefined {
  const { depth, offset } = jsonDepth(text);
  if (depth <= MAX_EXPERIMENT_DEPTH) return undefined;
  return { message: `nests arrays and objects ${depth} levels deep, over the limit of ${MAX_EXPERIMENT_DEPTH}: an experiment file is a few levels deep, fix the file`, offset };
}

/** Parses and validates a file's text; InvalidExperimentError names the file and every problem. */
export function parseExperiment(text: string, file: string): LensExperiment {
  const deep = tooDeep(text);
  if (deep) throw new InvalidExperimentError(file, [`/: ${deep.message}`]);
  const syntax: ParseError[] = [];
  const value: unknown = parseJsonc(text, syntax, { allowTrailingComma: false, disallowComments: true });
  if (syntax.length) {
    const first = syntax[0];
    const before = text.slice(0, first.offset).split("\n");
    throw new InvalidExperimentError(file, [`/: is not valid JSON (line ${before.length}, column ${before[before.length - 1].length + 1}: ${printParseErrorCode(first.error)}): fix the syntax`]);
  }
  const v = validateExperiment(value);
  if (!v.ok) throw new InvalidExperimentError(file, v.errors);
  return v.experiment;
}

function describeInput(x: ExperimentInput): string {
  return x.kind === "images" ? x.images : x.manifest;
}

/**
 * For a value that matches no branch of a oneOf, Ajv reports every branch's errors. Keep the
 * branch the value was most likely meant as: not one whose type differs, preferably one whose
 * required fields are there, then the one with the fewest errors.
 */
function oneOfNoise(errors: ErrorObject[]): ErrorObject[] {
  const failed = errors.filter((e) => e.keyword === "oneOf");
  if (!failed.length) return errors;
  const drop = new Set<ErrorObject>(failed);
  for (const f of failed) {
    const prefix = `${f.schemaPath}/`;
    const branches = new Map<string, ErrorObject[]>();
    for (const e of errors) {
      if (!e.schemaPath.startsWith(prefix)) continue;
      const branch = e.schemaPath.slice(prefix.length).split("/")[0];
      branches.set(branch, [...(branches.get(branch) ?? []), e]);
    }
    const score = (es: ErrorObject[]) => {
      const wrongType = es.some((e) => e.keyword === "type" && e.instancePath === f.instancePath);
      const missing = es.some((e) => e.keyword === "required" && e.instancePath === f.instancePath);
      return (wrongType ? 1000 : 0) + (missing ? 100 : 0) + es.length;
    };
    const ranked = [...branches.values()].sort((a, b) => score(a) - score(b));
    for (const other of ranked.slice(1)) for (const e of other) drop.add(e);
  }
  return errors.filter((e) => !drop.has(e));
}

interface RawExperiment {
  name?: string;
  description?: string;
  model?: string;
  dtype?: DtypeChoice;
  inputs: (string | { images: string; groups?: Record<string, string>; limit?: number } | { manifest: string; imageColumn?: string; groups?: Record<string, string>; limit?: number })[];
  prompts: (string | { name?: string; template: string })[];
  target?: string;
  lens?: Partial<LensExperiment["lens"]>;
  generation?: { maxNewTokens?: number };
  variants?: { name: string; mask?: Record<string, number[]>; random?: { count: number; seed?: number }; topImage?: { count: number } }[];
  groupBy?: string[];
  output?: { folder?: string; csv?: boolean; records?: boolean };
}

export interface ExperimentProblem {
  /** JSON pointer of the value the problem is about ("/" for the whole file or a syntax error). */
  pointer: string;
  message: string;
  /** Where to underline it in the text. */
  offset: number;
  length: number;
}

/**
 * Every problem of an experiment's text, placed in the text (syntax errors at their offset,
 * validation problems at the value their pointer names), and the experiment when there are none.
 * For editors: the Problems panel and the live preview.
 */
export function checkExperimentText(text: string): { experiment?: LensExperiment; problems: ExperimentProblem[] } {
  const deep = tooDeep(text);
  if (deep) return { problems: [{ pointer: "/", message: deep.message, offset: deep.offset, length: 1 }] };
  const syntax: ParseError[] = [];
  const value: unknown = parseJsonc(text, syntax, { allowTrailingComma: false, disallowComments: true });
  if (syntax.length) {
    return { problems: syntax.map((e) => ({ pointer: "/", message: `JSON syntax: ${printParseErrorCode(e.error)}`, offset: e.offset, length: Math.max(1, e.length) })) };
  }
  const v = validateExperiment(value);
  if (v.ok) return { experiment: v.experiment, problems: [] };
  return {
    problems: v.errors.map((problem) => {
      const { pointer, message } = splitProblem(problem);
      const aboutKey = /^is not (a field of this object|a valid key here)/.test(message);
      return { pointer, message, ...locatePointer(text, pointer, aboutKey) };
    }),
  };
}
