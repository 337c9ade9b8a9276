/**
 * Typed reads from a model's JSON config files, with errors that name the file and the key.
 *
 * Every number an architecture reads is checked for what it must be (a positive integer size,
 * a positive rotary base, a non-negative epsilon) before anything is built from it: a size of
 * 0, -1, 1.5 or 1e9 would otherwise hang the graph builder, fail an allocation or end deep in
 * onnxruntime. Messages name the key by its path in the file ("text_config.hidden_size").
 */
import { LensInputError } from "../errors";

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The largest size a config may state. Real checkpoints stay far below it (vocabularies of a
 * few hundred thousand, widths of tens of thousands, context lengths of millions); the tensors
 * are then checked against the config, so this bound only keeps absurd values from sizing
 * loops and buffers before that check.
 */
export const MAX_CONFIG_SIZE = 2 ** 24;
/** The most layers a config may state (the deepest released models have a few hundred). */
export const MAX_CONFIG_LAYERS = 10_000;

const FIX = "fix the config or re-download it";
const INCOMPLETE = "the config is incomplete; re-save the model with save_pretrained";

function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** One object of a config file (the file itself, or a nested section such as text_config). */
export class ConfigSection {
  constructor(
    readonly json: JsonObject,
    readonly file: string,
    /** The section's path in the file, with a trailing dot ("text_config."), or "" at the top. */
    readonly path = "",
  ) {}

  /** The key as messages spell it. */
  name(key: string): string {
    return `${this.path}${key}`;
  }

  has(key: string): boolean {
    const v = this.json[key];
    return v !== undefined && v !== null;
  }

  error(key: string, message: string): LensInputError {
    return new LensInputError(this.file, `${this.name(key)} ${message}`);
  }

  private raw(key: string, fallback: unknown): unknown {
    const v = this.json[key];
    if (v !== undefined && v !== null) return v;
    if (fallback === undefined) throw this.error(key, `is missing: ${INCOMPLETE}`);
    return fallback;
  }

  /** Any finite number. */
  number(key: string, fallback?: number): number {
    const v = this.raw(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v)) throw this.error(key, `must be a number, got ${shown(v)}: ${FIX}`);
    return v;
  }

  /** A number greater than 0 (a rotary base, a ratio). */
  positive(key: string, fallback?: number): number {
    const v = this.raw(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw this.error(key, `must be a number greater than 0, got ${shown(v)}: ${FIX}`);
    return v;
  }

  /** A number of 0 or more (a norm's epsilon). */
  nonNegative(key: string, fallback?: number): number {
    const v = this.raw(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw this.error(key, `must be a number of 0 or more, got ${shown(v)}: ${FIX}`);
    return v;
  }

  /** A positive integer up to `max` (a width, a count of heads, a vocabulary size). */
  size(key: string, fallback?: number, max = MAX_CONFIG_SIZE): number {
    const v = this.raw(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw this.error(key, `must be a positive integer, got ${shown(v)}: ${FIX}`);
    if (v > max) throw this.error(key, `is ${v}, more than the ${max} any model has: ${FIX}`);
    return v;
  }

  /** An integer of 0 or more (a token id). */
  index(key: string, fallback?: number): number {
    const v = this.raw(key, fallback);
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw this.error(key, `must be an integer of 0 or more, got ${shown(v)}: ${FIX}`);
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.raw(key, fallback);
    if (typeof v !== "string") throw this.error(key, `must be a string, got ${shown(v)}: ${FIX}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw(key, fallback);
    if (typeof v !== "boolean") throw this.error(key, `must be true or false, got ${shown(v)}: ${FIX}`);
    return v;
  }

  /** A boolean when the key is set, undefined when it is not. */
  optionalBool(key: string): boolean | undefined {
    return this.has(key) ? this.bool(key, false) : undefined;
  }

  /** A nested object that must be there. */
  section(key: string): ConfigSection {
    const v = this.json[key];
    if (!isObject(v)) throw this.error(key, `is missing or not an object: ${INCOMPLETE}`);
    return new ConfigSection(v, this.file, `${this.name(key)}.`);
  }

  /** A nested object when the key holds one, undefined when it is absent; anything else is an error. */
  optionalSection(key: string): ConfigSection | undefined {
    const v = this.json[key];
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) throw this.error(key, `must be an object, got ${shown(v)}: ${FIX}`);
    return new ConfigSection(v, this.file, `${this.name(key)}.`);
  }
}

export function cfgNumber(c: JsonObject, key: string, file: string, fallback?: number): number {
  return new ConfigSection(c, file).number(key, fallback);
}

export function cfgString(c: JsonObject, key: string, file: string, fallback?: string): string {
  return new ConfigSection(c, file).string(key, fallback);
}

export function cfgBool(c: JsonObject, key: string, file: string, fallback: boolean): boolean {
  return new ConfigSection(c, file).bool(key, fallback);
}

export function cfgObject(c: JsonObject, key: string, file: string): JsonObject {
  return new ConfigSection(c, file).section(key).json;
}
