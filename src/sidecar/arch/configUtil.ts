/** Typed reads from a model's JSON config files, with errors that name the file and the key. */
import { LensInputError } from "../errors";

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function cfgNumber(c: JsonObject, key: string, file: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback === undefined) throw new LensInputError(file, `"${key}" is missing: the config is incomplete; re-save the model with save_pretrained`);
    return fallback;
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw new LensInputError(file, `"${key}" must be a number, got ${JSON.stringify(v)}: fix the config`);
  return v;
}

export function cfgString(c: JsonObject, key: string, file: string, fallback?: string): string {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback === undefined) throw new LensInputError(file, `"${key}" is missing: the config is incomplete; re-save the model with save_pretrained`);
    return fallback;
  }
  if (typeof v !== "string") throw new LensInputError(file, `"${key}" must be a string, got ${JSON.stringify(v)}: fix the config`);
  return v;
}

export function cfgBool(c: JsonObject, key: string, file: string, fallback: boolean): boolean {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new LensInputError(file, `"${key}" must be true or false, got ${JSON.stringify(v)}: fix the config`);
  return v;
}

export function cfgObject(c: JsonObject, key: string, file: string): JsonObject {
  const v = c[key];
  if (!isObject(v)) throw new LensInputError(file, `"${key}" is missing or not an object: the config is incomplete; re-save the model with save_pretrained`);
  return v;
}
