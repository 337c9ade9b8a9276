import * as fs from "node:fs/promises";
import { LensInputError } from "../errors";
import { isObject, type JsonObject } from "../arch/configUtil";
import { MIB, readInputText } from "../util/readInput";

/** The largest JSON file of a model folder read: tokenizer.json of a 150k vocabulary is about 11 MB. */
const MAX_JSON_BYTES = 256 * MIB;

/** Reads a JSON object file; `undefined` when it does not exist and `optional` is set. */
export async function readJsonObject(file: string, what: string, optional: true): Promise<JsonObject | undefined>;
export async function readJsonObject(file: string, what: string, optional?: false): Promise<JsonObject>;
export async function readJsonObject(file: string, what: string, optional = false): Promise<JsonObject | undefined> {
  try {
    await fs.lstat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      if (optional) return undefined;
      throw new LensInputError(file, `${what} does not exist: pick a Hugging Face model folder (it needs config.json, *.safetensors, tokenizer.json)`);
    }
  }
  // a regular file of bounded size: a FIFO or a link to /dev/zero must not hold the sidecar
  const text = await readInputText(file, { maxBytes: MAX_JSON_BYTES, what, fix: "re-download the model" });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LensInputError(file, `${what} is not valid JSON (${(e as Error).message.split("\n")[0]}): repair or re-download it`);
  }
  if (!isObject(value)) throw new LensInputError(file, `${what} must hold a JSON object: repair or re-download it`);
  return value;
}

/**
 * The value of a settled read, or its error thrown. A folder's files are read at once with
 * Promise.allSettled and taken in a fixed order, so the error reported does not depend on
 * which read happened to fail first.
 */
export function settledValue<T>(r: PromiseSettledResult<T>): T {
  if (r.status === "rejected") throw r.reason;
  return r.value;
}
