/**
 * The model's tensors by name, with the checks that turn a mismatched checkpoint into a clear
 * error before onnxruntime ever sees it: every tensor a graph asks for must exist, be a float
 * type, and have exactly the shape the config implies.
 */
import * as path from "node:path";
import { LensInputError } from "../errors";
import type { SafetensorsDType, TensorEntry, WeightIndex } from "./safetensors";

const FLOAT_DTYPES: ReadonlySet<SafetensorsDType> = new Set(["F32", "F16", "BF16"]);

export class ModelWeights {
  constructor(
    readonly index: WeightIndex,
    /** The config the shapes are checked against, named in errors. */
    readonly configFile: string,
  ) {}

  get folder(): string {
    return this.index.folder;
  }

  has(name: string): boolean {
    return this.index.has(name);
  }

  /**
   * The first prefix under which `probe` exists. Checkpoints of one architecture are saved
   * with different key layouts across transformers versions (`language_model.model.*` and
   * `model.language_model.*`, for example); modules list the layouts they accept.
   */
  findPrefix(prefixes: readonly string[], probe: string, what: string): string {
    for (const p of prefixes) if (this.index.has(p + probe)) return p;
    throw new LensInputError(
      this.index.folder,
      `no ${what} weights found (looked for ${prefixes.map((p) => p + probe).join(", ")}): the checkpoint does not match its config.json architecture`,
    );
  }

  /** A float tensor whose shape must equal `shape` (the shape the config implies). */
  entry(name: string, shape: readonly number[]): TensorEntry {
    const e = this.index.get(name);
    if (!FLOAT_DTYPES.has(e.dtype)) {
      throw new LensInputError(e.file, `tensor ${name} has dtype ${e.dtype}; only F32, F16 and BF16 weights are supported: use an unquantised checkpoint`);
    }
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw new LensInputError(
        e.file,
        `tensor ${name} has shape [${e.shape.join(", ")}] but ${path.basename(this.configFile)} implies [${shape.join(", ")}]: the weights do not belong to this config`,
      );
    }
    return e;
  }
}
