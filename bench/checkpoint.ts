/** The benchmarks' shared ~100M-parameter random LLaVA checkpoint, built once under bench/.work. */
import { execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
export const WORK = path.join(ROOT, "bench/.work");
export const BENCH_IMAGE = path.join(ROOT, "test/fixtures/models/images/landscape.png");
export const BENCH_PROMPT = "Describe the picture in a few words and name the colour of the largest shape.";

/** The value after a command-line flag of this process ("--rounds 3"), or undefined. */
export function flag(name: string): string | undefined {
  const args = process.argv.slice(2);
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Reads every weight file of a folder once (the floor for opening a model); milliseconds. */
export function readAllWeights(dir: string): number {
  const t0 = performance.now();
  const buf = Buffer.allocUnsafe(16 << 20);
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"))) {
    const fd = fs.openSync(path.join(dir, f), "r");
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
    fs.closeSync(fd);
  }
  return performance.now() - t0;
}

/** The checkpoint folder, built on first use. */
export function benchCheckpoint(): string {
  const dir = path.join(WORK, "llava-100m");
  if (!fs.existsSync(path.join(dir, "model.safetensors"))) buildCheckpoint(dir);
  return dir;
}

/** Seeded normal-ish values (sum of uniforms), scaled; deterministic. */
function randomTensor(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let k = 0; k < 3; k++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      acc += (s >>> 0) / 4294967296;
    }
    out[i] = (acc - 1.5) * 2 * scale;
  }
  return out;
}

export type BenchDType = "F32" | "F16";

/** A table of 65,536 float16 bit patterns of seeded normal-ish values: random half tensors cost one lookup per element. */
function halfTable(scale: number, seed: number): Uint16Array {
  const values = randomTensor(65536, scale, seed);
  const bits = new Uint16Array(65536);
  for (let i = 0; i < values.length; i++) bits[i] = toHalfBits(values[i]);
  return bits;
}

/** float32 to IEEE float16 bits, round to nearest even (normals and subnormals; no NaN input here). */
function toHalfBits(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const m = (mant | 0x800000) >>> (1 - exp);
    return sign | ((m + 0xfff + ((m >>> 13) & 1)) >>> 13);
  }
  const h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return rest > 0x1000 || (rest === 0x1000 && (h & 1)) ? h + 1 : h;
}

function writeSafetensors(file: string, tensors: [string, number[], number][], dtype: BenchDType = "F32"): void {
  const elem = dtype === "F32" ? 4 : 2;
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * elem;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const fd = fs.openSync(file, "w");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, len);
  fs.writeSync(fd, Buffer.from(json));
  let seed = 1;
  const isNorm = (name: string) => name.endsWith("norm.weight") || /layer_?norm\d?\.weight$|pre_layrnorm\.weight$/.test(name);
  for (const [name, shape, scale] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (dtype === "F32") {
      const data = isNorm(name) ? new Float32Array(n).fill(1) : randomTensor(n, scale, seed++);
      fs.writeSync(fd, new Uint8Array(data.buffer));
      continue;
    }
    // half: written in chunks of 16 Mi elements, so a 7B checkpoint never needs a whole tensor in memory twice
    const table = isNorm(name) ? undefined : halfTable(scale, seed++);
    let s = (seed * 2654435761) >>> 0 || 1;
    const chunk = new Uint16Array(Math.min(n, 1 << 24));
    for (let done = 0; done < n; done += chunk.length) {
      const m = Math.min(chunk.length, n - done);
      if (!table) chunk.fill(0x3c00, 0, m);
      else {
        for (let i = 0; i < m; i++) {
          s ^= s << 13;
          s ^= s >>> 17;
          s ^= s << 5;
          chunk[i] = table[s & 0xffff];
        }
      }
      fs.writeSync(fd, new Uint8Array(chunk.buffer, 0, m * 2));
    }
  }
  fs.closeSync(fd);
}

export interface LlavaShape {
  vision: { hidden: number; layers: number; heads: number; inter: number; image: number; patch: number };
  text: { hidden: number; layers: number; heads: number; kv: number; inter: number; vocab: number };
}

/** ~100M parameters: CLIP 224/14 (6 x 512) + LLaMA (8 x 768, GQA 12/4). */
const BENCH_SHAPE: LlavaShape = {
  vision: { hidden: 512, layers: 6, heads: 8, inter: 2048, image: 224, patch: 14 },
  text: { hidden: 768, layers: 8, heads: 12, kv: 4, inter: 2048, vocab: 32000 },
};

/** A random LLaVA checkpoint of any shape and storage dtype under bench/.work/<name>, built on first use. */
export function llavaCheckpoint(name: string, shape: LlavaShape, dtype: BenchDType): string {
  const dir = path.join(WORK, name);
  if (!fs.existsSync(path.join(dir, "model.safetensors"))) buildCheckpoint(dir, shape, dtype);
  return dir;
}

function buildCheckpoint(dir: string, shape: LlavaShape = BENCH_SHAPE, dtype: BenchDType = "F32"): void {
  const template = path.join(ROOT, "test/fixtures/models/llava-gqa-f32/model");
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json", "special_tokens_map.json"]) {
    if (fs.existsSync(path.join(template, f))) fs.copyFileSync(path.join(template, f), path.join(dir, f));
  }
  const tokenizer = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const imageTokenId = (tokenizer.added_tokens as { id: number; content: string }[]).find((t) => t.content === "<image>")!.id;
  const { vision: V, text: T } = shape;
  const headDim = T.hidden / T.heads;
  const config = {
    architectures: ["LlavaForConditionalGeneration"],
    model_type: "llava",
    image_token_id: imageTokenId,
    vision_feature_layer: -2,
    vision_feature_select_strategy: "default",
    projector_hidden_act: "gelu",
    tie_word_embeddings: false,
    text_config: { model_type: "llama", vocab_size: T.vocab, hidden_size: T.hidden, intermediate_size: T.inter, num_hidden_layers: T.layers, num_attention_heads: T.heads, num_key_value_heads: T.kv, rms_norm_eps: 1e-5, tie_word_embeddings: false },
    vision_config: { model_type: "clip_vision_model", hidden_size: V.hidden, intermediate_size: V.inter, num_hidden_layers: V.layers, num_attention_heads: V.heads, image_size: V.image, patch_size: V.patch, hidden_act: "quick_gelu", projection_dim: 512 },
    torch_dtype: dtype === "F32" ? "float32" : "float16",
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  const mean = [0.48145466, 0.4578275, 0.40821073];
  const std = [0.26862954, 0.26130258, 0.27577711];
  fs.writeFileSync(path.join(dir, "preprocessor_config.json"), JSON.stringify({ image_processor_type: "CLIPImageProcessor", do_resize: true, size: { shortest_edge: V.image }, resample: 3, do_center_crop: true, crop_size: { height: V.image, width: V.image }, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: mean, image_std: std, do_convert_rgb: true }, null, 2));
  fs.writeFileSync(path.join(dir, "processor_config.json"), JSON.stringify({ processor_class: "LlavaProcessor", patch_size: V.patch, vision_feature_select_strategy: "default", num_additional_image_tokens: 1, image_token: "<image>" }, null, 2));

  const t: [string, number[], number][] = [];
  const vp = "vision_tower.vision_model.";
  t.push([`${vp}embeddings.class_embedding`, [V.hidden], 0.02], [`${vp}embeddings.patch_embedding.weight`, [V.hidden, 3, V.patch, V.patch], 0.02]);
  t.push([`${vp}embeddings.position_embedding.weight`, [(V.image / V.patch) ** 2 + 1, V.hidden], 0.02]);
  t.push([`${vp}pre_layrnorm.weight`, [V.hidden], 1], [`${vp}pre_layrnorm.bias`, [V.hidden], 0.01]);
  for (let i = 0; i < V.layers; i++) {
    const p = `${vp}encoder.layers.${i}.`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) t.push([`${p}self_attn.${n}.weight`, [V.hidden, V.hidden], 0.04], [`${p}self_attn.${n}.bias`, [V.hidden], 0.01]);
    t.push([`${p}layer_norm1.weight`, [V.hidden], 1], [`${p}layer_norm1.bias`, [V.hidden], 0.01], [`${p}layer_norm2.weight`, [V.hidden], 1], [`${p}layer_norm2.bias`, [V.hidden], 0.01]);
    t.push([`${p}mlp.fc1.weight`, [V.inter, V.hidden], 0.04], [`${p}mlp.fc1.bias`, [V.inter], 0.01], [`${p}mlp.fc2.weight`, [V.hidden, V.inter], 0.02], [`${p}mlp.fc2.bias`, [V.hidden], 0.01]);
  }
  t.push(["multi_modal_projector.linear_1.weight", [T.hidden, V.hidden], 0.04], ["multi_modal_projector.linear_1.bias", [T.hidden], 0.01]);
  t.push(["multi_modal_projector.linear_2.weight", [T.hidden, T.hidden], 0.04], ["multi_modal_projector.linear_2.bias", [T.hidden], 0.01]);
  const lp = "language_model.model.";
  t.push([`${lp}embed_tokens.weight`, [T.vocab, T.hidden], 0.02]);
  for (let i = 0; i < T.layers; i++) {
    const p = `${lp}layers.${i}.`;
    t.push([`${p}self_attn.q_proj.weight`, [T.heads * headDim, T.hidden], 0.03], [`${p}self_attn.k_proj.weight`, [T.kv * headDim, T.hidden], 0.03]);
    t.push([`${p}self_attn.v_proj.weight`, [T.kv * headDim, T.hidden], 0.03], [`${p}self_attn.o_proj.weight`, [T.hidden, T.heads * headDim], 0.03]);
    t.push([`${p}mlp.gate_proj.weight`, [T.inter, T.hidden], 0.03], [`${p}mlp.up_proj.weight`, [T.inter, T.hidden], 0.03], [`${p}mlp.down_proj.weight`, [T.hidden, T.inter], 0.02]);
    t.push([`${p}input_layernorm.weight`, [T.hidden], 1], [`${p}post_attention_layernorm.weight`, [T.hidden], 1]);
  }
  t.push([`${lp}norm.weight`, [T.hidden], 1], ["language_model.lm_head.weight", [T.vocab, T.hidden], 0.02]);
  writeSafetensors(path.join(dir, "model.safetensors.tmp"), t, dtype);
  fs.renameSync(path.join(dir, "model.safetensors.tmp"), path.join(dir, "model.safetensors"));
  const params = t.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  console.error(`built ${dir}: ${(params / 1e6).toFixed(1)}M parameters`);
}

/** Samples a process's GPU memory (MiB) from nvidia-smi until stopped: the peak, or undefined without nvidia-smi. */
function gpuSampler(pid: number): { stop(): Promise<number | undefined> } {
  let peak: number | undefined;
  let done = false;
  const sample = () =>
    new Promise<void>((resolve) =>
      execFile("nvidia-smi", ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], (err, stdout) => {
        if (!err) {
          for (const line of stdout.split("\n")) {
            const [p, mib] = line.split(",").map((x) => Number(x.trim()));
            if (p === pid && Number.isFinite(mib)) peak = Math.max(peak ?? 0, mib);
          }
        }
        resolve();
      }),
    );
  const loop = (async () => {
    while (!done) {
      await sample();
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    async stop() {
      done = true;
      await loop;
      return peak;
    },
  };
}

/**
 * Runs a benchmark's child to the end and parses the JSON line it prints last; a failure (a
 * non-zero exit, or no line) names the child and ends with its stderr's last lines. With
 * `sampleGpu`, the child's GPU memory is sampled from nvidia-smi meanwhile (peakGpuMiB).
 */
export function runJsonChild<T>(command: string, argv: string[], o: { env?: NodeJS.ProcessEnv; sampleGpu?: boolean } = {}): Promise<{ value: T; peakGpuMiB?: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { env: o.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const gpu = o.sampleGpu ? gpuSampler(child.pid ?? -1) : undefined;
    child.on("error", reject);
    child.on("close", (code) => {
      void (gpu?.stop() ?? Promise.resolve(undefined)).then((peakGpuMiB) => {
        const line = out.trim().split("\n").pop();
        if (code !== 0 || !line) reject(new Error(`${path.basename(argv[0])} exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`));
        else resolve({ value: JSON.parse(line) as T, ...(peakGpuMiB !== undefined ? { peakGpuMiB } : {}) });
      });
    });
  });
}
