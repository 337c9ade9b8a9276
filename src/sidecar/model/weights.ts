/**
 * The model's tensors by name, with the checks that turn a mismatched checkpoint into a clear
 * error before onnxruntime ever sees it: every tensor a graph asks for must exist, be a float
 * type, and have exactly the shape the config implies.
 */
import * as path from "node:path";
import { LensInputError } from "../errors";
import { readTensorAsFloat32, type SafetensorsDType, type TensorEntry, type WeightIndex } from "./safetensors";

/**
 * Tensors the open-time NaN/Inf scan reads: every one-dimensional tensor the graphs use (norm
 * weights, biases, class embeddings) and position embeddings. A NaN there spoils every output,
 * and together they are a small part of a checkpoint; the matrices (the bulk of it: reading a
 * 14 GB model takes longer than opening it) are left to the run-time check of the lens results
 * (lens/finiteCheck.ts).
 */
export function scannedAtOpen(e: TensorEntry): boolean {
  return e.shape.length <= 1 || /position_embedding|class_embedding/.test(e.name);
}

const FLOAT_DTYPES: ReadonlySet<SafetensorsDType> = new Set(["F32", "F16", "BF16"]);

export class ModelWeights {
  constructor(
    readonly index: WeightIndex,
    /** The config the shapes are checked against, named in errors. */
    readonly configFile: string,
  ) {}

  /** Names of the tensors the graphs were built from, in the order first asked for. */
  private readonly used = new Set<string>();

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

  /**
   * Checks a tensor's shape against the config fields that size it, before any graph is built
   * from them, and names the first field that disagrees. Each dimension is `[size, says]` where
   * `says` is the field as the config spells it ("text_config.hidden_size 48").
   */
  checkShape(name: string, dims: readonly (readonly [number, string])[]): void {
    const e = this.index.get(name);
    this.checkFloat(e);
    const shape = `[${e.shape.join(", ")}]`;
    if (e.shape.length !== dims.length) {
      throw new LensInputError(this.configFile, `${this.configName} implies a ${dims.length}-dimensional ${name} (${dims.map(([, says]) => says).join(", ")}) but it is ${shape}: the config does not belong to these weights`);
    }
    dims.forEach(([size, says], i) => {
      if (e.shape[i] !== size) {
        throw new LensInputError(this.configFile, `${this.configName} says ${says} but ${name} is ${shape}: the config does not belong to these weights`);
      }
    });
  }

  /**
   * Checks that the weights hold `count` numbered layers (`${prefix}${i}.${probe}` for i <
   * count), and with `exact` no more: a layer the config does not count would be left out
   * without a word. `says` is what the config says that implies `count`.
   */
  checkLayerCount(prefix: string, probe: string, count: number, says: string, exact: boolean): void {
    const name = (i: number) => `${prefix}${i}.${probe}`;
    if (!this.index.has(name(count - 1))) {
      let held = 0;
      while (held < count && this.index.has(name(held))) held++;
      throw new LensInputError(this.configFile, `${this.configName} says ${says} but the weights hold ${held} (no ${name(held)}): the config does not belong to these weights`);
    }
    if (exact && this.index.has(name(count))) {
      throw new LensInputError(this.configFile, `${this.configName} says ${says} but the weights hold more layers (${name(count)}): the config does not belong to these weights`);
    }
  }

  /**
   * A tensor the config says the model does not have (a bias turned off) must not be in the
   * weights: it would be left out without a word. `because` says why it is not expected.
   */
  checkAbsent(name: string, because: string): void {
    if (this.index.has(name)) {
      throw new LensInputError(this.configFile, `the weights hold ${name} but ${because}: the config does not belong to these weights; fix the config or re-download it`);
    }
  }

  /** "config.json says <field> <value>", for `because`. */
  says(what: string): string {
    return `${this.configName} says ${what}`;
  }

  private checkFloat(e: TensorEntry): void {
    if (!FLOAT_DTYPES.has(e.dtype)) {
      throw new LensInputError(e.file, `tensor ${e.name} has dtype ${e.dtype}; only F32, F16 and BF16 weights are supported: use an unquantised checkpoint`);
    }
  }

  private get configName(): string {
    return path.basename(this.configFile);
  }

  /** A float tensor whose shape must equal `shape` (the shape the config implies). */
  entry(name: string, shape: readonly number[]): TensorEntry {
    const e = this.index.get(name);
    this.checkFloat(e);
    this.used.add(name);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw new LensInputError(
        e.file,
        `tensor ${name} has shape [${e.shape.join(", ")}] but ${path.basename(this.configFile)} implies [${shape.join(", ")}]: the weights do not belong to this config`,
      );
    }
    return e;
  }

  /**
   * Reads the used tensors `scannedAtOpen` picks and refuses a NaN or an infinity in them, naming
   * the tensor, the file and the first bad index. Returns what it read.
   */
  async scanSmallTensors(): Promise<{ tensors: number; bytes: number }> {
    const picked = [...this.used].map((n) => this.index.get(n)).filter(scannedAtOpen);
    let bytes = 0;
    for (const e of picked) {
      const values = await readTensorAsFloat32(e);
      bytes += e.byteLength;
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (Number.isFinite(v)) continue;
        let count = 0;
        for (let j = i; j < values.length; j++) if (!Number.isFinite(values[j])) count++;
        throw new LensInputError(
          e.file,
          `tensor ${e.name} holds ${v} at index ${i} (${count} of its ${values.length} values are not finite): the weights are corrupt; re-download the model`,
        );
      }
    }
    return { tensors: picked.length, bytes };
  }
}
