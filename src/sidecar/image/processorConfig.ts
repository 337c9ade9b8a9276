/**
 * Typed reads of a preprocessor_config.json (or processor_config.json) object, each failing with
 * a one-line error that names the file, the key, what it got and `fix`. Null counts as absent,
 * as transformers reads it.
 */
import { LensInputError } from "../errors";

export interface ConfigReader {
  get(key: string): unknown;
  object(key: string): Record<string, unknown> | undefined;
  /** A positive integer from `v` (read by the caller, e.g. a nested key); `fallback` when absent, an error when absent without one. */
  positiveInt(key: string, v: unknown, fallback?: number): number;
  bool(key: string, fallback: boolean): boolean;
  /** A number or a list of 3 numbers (per-channel mean and std). */
  triple(key: string, fallback: [number, number, number]): [number, number, number];
}

export function configReader(c: Record<string, unknown>, file: string, fix: string): ConfigReader {
  const fail = (message: string): never => {
    throw new LensInputError(file, `${message}: ${fix}`);
  };
  const get = (key: string): unknown => (c[key] === null ? undefined : c[key]);
  return {
    get,
    object(key) {
      const v = get(key);
      if (v === undefined) return undefined;
      if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`"${key}" must be an object, got ${JSON.stringify(v)}`);
      return v as Record<string, unknown>;
    },
    positiveInt(key, v, fallback) {
      if (v === undefined || v === null) return fallback ?? fail(`"${key}" is missing`);
      if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) fail(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
      return v as number;
    },
    bool(key, fallback) {
      const v = get(key);
      if (v === undefined) return fallback;
      if (typeof v !== "boolean") fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
      return v as boolean;
    },
    triple(key, fallback) {
      const v = get(key);
      if (v === undefined) return [...fallback];
      const values = typeof v === "number" ? [v, v, v] : v;
      if (!Array.isArray(values) || values.length !== 3 || !values.every((x) => typeof x === "number" && Number.isFinite(x))) {
        fail(`"${key}" must be a number or a list of 3 numbers, got ${JSON.stringify(v)}`);
      }
      const [a, b, d] = values as number[];
      return [a, b, d];
    },
  };
}
