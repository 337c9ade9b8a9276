/**
 * Generators of the fuzz suite: from a seeded Rng and a case index, one bad (or odd but valid)
 * input and what a mature tool must do with it. Case i of a category takes kind i mod (number of
 * kinds), so every kind is tried with every seed; the Rng picks the details. Pure functions:
 * the test files write the results to disk and send them to the sidecar.
 */
import { deflateSync } from "node:zlib";
import type { Rng } from "../helpers/fuzzHarness";

/** "error": only a clear error will do; "either": a clear error or a correct answer. */
export type Expect = "error" | "either";

/** A value that is not a number of the kind a field wants, or an absurd one. */
export const ODD_VALUES: readonly unknown[] = [0, -1, 1.5, 1e9, 1e308, -0.5, "12", "NaN", "Infinity", null, true, [], {}, [1, 2], ""];
/** Marks a field to delete instead of set. */
export const MISSING = Symbol("missing");
export type OddValue = unknown | typeof MISSING;

export function describeValue(v: OddValue): string {
  if (v === MISSING) return "missing";
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 20)}...(${s.length} chars)` : s;
}

/** Sets (or deletes, for MISSING) the value at a dotted path; creates nothing along the way. */
export function setPath(obj: Record<string, unknown>, dotted: string, value: OddValue): boolean {
  const keys = dotted.split(".");
  let at: Record<string, unknown> = obj;
  for (const k of keys.slice(0, -1)) {
    const next = at[k];
    if (typeof next !== "object" || next === null) return false;
    at = next as Record<string, unknown>;
  }
  const last = keys[keys.length - 1];
  if (value === MISSING) delete at[last];
  else at[last] = value;
  return true;
}

// ---------------------------------------------------------------------------------------------
// safetensors

export interface SafetensorsCase {
  label: string;
  expect: Expect;
  /** The bytes of model.safetensors, unless `special` replaces the file. */
  bytes?: Buffer;
  /** model.safetensors is not a regular file. */
  special?: "fifo" | "folder" | "devzero" | "loop" | "dangling";
  /** Write model.safetensors.index.json with this text, and the weights as `shard` instead. */
  index?: { text: string; shard: string };
}

interface Parsed {
  n: number;
  header: Record<string, Record<string, unknown>>;
  data: Buffer;
}

function parseSafetensors(file: Buffer): Parsed {
  const n = Number(file.readBigUInt64LE(0));
  return { n, header: JSON.parse(file.subarray(8, 8 + n).toString("utf8")) as Parsed["header"], data: file.subarray(8 + n) };
}

function buildSafetensors(headerText: string | Buffer, data: Buffer, length?: bigint): Buffer {
  const h = typeof headerText === "string" ? Buffer.from(headerText, "utf8") : headerText;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

const tensorNames = (p: Parsed) => Object.keys(p.header).filter((k) => k !== "__metadata__");

const SAFETENSORS_KINDS: ((rng: Rng, original: Buffer) => SafetensorsCase)[] = [
  (rng, o) => {
    const p = parseSafetensors(o);
    // Pad the header with spaces (allowed), then claim one byte less: valid JSON, every tensor shifted.
    const padded = Buffer.concat([o.subarray(8, 8 + p.n), Buffer.alloc(8, 0x20)]);
    const short = rng.int(1, 3);
    return { label: `header padded, length ${short} byte(s) short`, expect: "error", bytes: buildSafetensors(padded, p.data, BigInt(padded.length - short)) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const d = rng.pick([-1, 1, 2, 7, 8, 64]);
    return { label: `header length ${d > 0 ? "+" : ""}${d}`, expect: "error", bytes: buildSafetensors(o.subarray(8, 8 + p.n), p.data, BigInt(p.n + d)) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const len = rng.pick([0n, 2n ** 64n - 1n, 2n ** 63n, 10n ** 12n, BigInt(o.length), BigInt(o.length - 7), 100_000_001n]);
    return { label: `header length ${len}`, expect: "error", bytes: buildSafetensors(o.subarray(8, 8 + p.n), p.data, len) };
  },
  (rng) => {
    const n = rng.int(0, 7);
    return { label: `file of ${n} bytes`, expect: "error", bytes: rng.bytes(n) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const cut = rng.chance(0.3) ? rng.int(8, 8 + p.n - 1) : rng.int(8 + p.n, o.length - 1);
    return { label: `truncated at ${cut} of ${o.length} bytes`, expect: "error", bytes: o.subarray(0, cut) };
  },
  (rng, o) => {
    const extra = rng.int(1, 64);
    return { label: `${extra} bytes appended after the data`, expect: "error", bytes: Buffer.concat([o, rng.bytes(extra)]) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    return { label: "header replaced by random bytes", expect: "error", bytes: buildSafetensors(rng.bytes(p.n), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const h = Buffer.from(o.subarray(8, 8 + p.n));
    const flips = rng.int(1, 4);
    for (let i = 0; i < flips; i++) h[rng.int(0, h.length - 1)] = rng.int(0, 255);
    return { label: `${flips} random byte(s) of the header changed`, expect: "either", bytes: buildSafetensors(h, p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const text = rng.pick(["[]", "5", "null", '"x"', "{}", '{"lm_head.weight": 5}', '{"lm_head.weight": null}', "{", "", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "[".repeat(100_000)]);
    return { label: `header is ${describeValue(text)}`, expect: "error", bytes: buildSafetensors(text, p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const name = rng.pick(tensorNames(p));
    const dtype = rng.pick(["F64", "I64", "I32", "BOOL", "F8_E4M3", "U8", "F16", "BF16", "", "f32", "FLOAT", 5, null, ["F32"]]);
    p.header[name]["dtype"] = dtype;
    return { label: `dtype of ${name} = ${describeValue(dtype)}`, expect: "error", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const name = rng.pick(tensorNames(p));
    const shape = p.header[name]["shape"] as number[];
    const count = shape.reduce((a, b) => a * b, 1);
    const choices: unknown[] = [[-1, ...shape.slice(1)], [1.5, ...shape.slice(1)], [1e9, ...shape.slice(1)], [], [0], "48", null, [...shape, 1], [count], [2 ** 53, 2 ** 53], [count, -1, -1]];
    if (shape.length === 2 && shape[0] !== shape[1]) choices.push([shape[1], shape[0]]);
    const s = rng.pick(choices);
    p.header[name]["shape"] = s;
    return { label: `shape of ${name} ${JSON.stringify(shape)} -> ${describeValue(s)}`, expect: "error", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const names = tensorNames(p);
    const name = rng.pick(names);
    const [a, b] = p.header[name]["data_offsets"] as [number, number];
    const other = p.header[rng.pick(names.filter((n) => n !== name))]["data_offsets"] as [number, number];
    const off = rng.pick<unknown>([[b, a], [a, a], [a, p.data.length + 4], [a + 4, b + 4], [a - 4, b - 4], other, [a + 0.5, b], [-4, b - a - 4], [a], "0,4", null, [a, b, 0], [2 ** 60, 2 ** 60 + (b - a)]]);
    p.header[name]["data_offsets"] = off;
    return { label: `data_offsets of ${name} [${a},${b}] -> ${describeValue(off)}`, expect: "error", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const name = rng.pick(tensorNames(p));
    delete p.header[name];
    return { label: `entry ${name} deleted (its bytes left as a gap)`, expect: "error", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const name = rng.pick(tensorNames(p));
    const renamed = rng.pick([`${name}x`, name.replace("weight", "bias"), name.toUpperCase(), `model.${name}`]);
    p.header[renamed] = p.header[name];
    delete p.header[name];
    return { label: `entry ${name} renamed ${renamed}`, expect: "error", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const meta = rng.pick<unknown>([5, [], null, { format: 5 }, { nested: { a: 1 } }, { big: "x".repeat(100_000) }, "pt"]);
    (p.header as Record<string, unknown>)["__metadata__"] = meta;
    return { label: `__metadata__ = ${describeValue(meta)}`, expect: "either", bytes: buildSafetensors(JSON.stringify(p.header), p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    // Legal variations: keys in another order, spaces padding the header to a multiple of 8.
    const names = tensorNames(p);
    for (let i = names.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [names[i], names[j]] = [names[j], names[i]];
    }
    const h: Record<string, unknown> = { __metadata__: p.header["__metadata__"] };
    for (const n of names) h[n] = p.header[n];
    let text = JSON.stringify(h);
    text += " ".repeat((8 - (text.length % 8)) % 8 || 8);
    return { label: "keys reordered, header padded with spaces (valid)", expect: "either", bytes: buildSafetensors(text, p.data) };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const data = Buffer.from(p.data);
    const bad = rng.pick([NaN, Infinity, -Infinity]);
    const count = rng.int(1, 20);
    for (let i = 0; i < count; i++) data.writeFloatLE(bad, 4 * rng.int(0, data.length / 4 - 1));
    return { label: `${count} weight(s) set to ${bad}`, expect: "either", bytes: buildSafetensors(o.subarray(8, 8 + p.n), data) };
  },
  (rng) => {
    const special = rng.pick(["fifo", "folder", "devzero", "loop", "dangling"] as const);
    return { label: `model.safetensors is ${special === "devzero" ? "a link to /dev/zero" : `a ${special}`}`, expect: "error", special };
  },
  (rng, o) => {
    const p = parseSafetensors(o);
    const names = tensorNames(p);
    const shard = "model-00001-of-00001.safetensors";
    const map: Record<string, unknown> = Object.fromEntries(names.map((n) => [n, shard]));
    const variant = rng.int(0, 7);
    let text: string;
    let label: string;
    let expect: Expect = "error";
    if (variant === 0) {
      text = JSON.stringify({ metadata: {}, weight_map: map });
      label = "index (valid)";
      expect = "either";
    } else if (variant === 1) {
      delete map[rng.pick(names)];
      text = JSON.stringify({ weight_map: map });
      label = "index misses a tensor";
    } else if (variant === 2) {
      map[rng.pick(names)] = rng.pick(["missing.safetensors", "../../etc/passwd", "/dev/zero", "", 5, null]);
      text = JSON.stringify({ weight_map: map });
      label = "index points a tensor at a bad shard";
    } else if (variant === 3) {
      text = JSON.stringify({ weight_map: rng.pick<unknown>([5, [], null, "x", {}]) });
      label = "index weight_map of the wrong type";
    } else if (variant === 4) {
      text = rng.pick(["", "{", "[]", "null", "\u0000\u0000"]);
      label = `index text ${describeValue(text)}`;
    } else if (variant === 5) {
      text = "[".repeat(50_000) + "]".repeat(50_000);
      label = "index nested 50,000 deep";
    } else if (variant === 6) {
      map["extra.weight"] = shard;
      text = JSON.stringify({ weight_map: map });
      label = "index names a tensor the shard lacks";
    } else {
      text = JSON.stringify({ weight_map: map, metadata: { total_size: -1 } });
      label = "index metadata.total_size -1";
      expect = "either";
    }
    return { label, expect, index: { text, shard }, bytes: o };
  },
];

export function safetensorsCase(rng: Rng, i: number, original: Buffer): SafetensorsCase {
  return SAFETENSORS_KINDS[i % SAFETENSORS_KINDS.length](rng, original);
}

// ---------------------------------------------------------------------------------------------
// config.json (and the other JSON files of a model folder)

/** How a field may be changed: "shape" fields must match the weights, the rest have rules of their own. */
type FieldClass = "shape" | "derivable" | "positive" | "contextLength" | "tokenId" | "enum" | "free" | "layerIndex" | "bias" | "architectures";

const LLAMA_FIELDS: [string, FieldClass][] = [
  ["hidden_size", "shape"], ["intermediate_size", "shape"], ["num_attention_heads", "shape"], ["num_hidden_layers", "shape"],
  ["num_key_value_heads", "shape"], ["head_dim", "derivable"], ["vocab_size", "shape"], ["max_position_embeddings", "contextLength"],
  ["rms_norm_eps", "positive"], ["rope_parameters.rope_theta", "positive"], ["rope_parameters.rope_type", "enum"], ["rope_parameters", "free"],
  ["bos_token_id", "tokenId"], ["eos_token_id", "tokenId"], ["hidden_act", "enum"], ["attention_bias", "bias"], ["tie_word_embeddings", "free"],
  ["architectures", "architectures"], ["model_type", "free"], ["dtype", "free"],
];

const LLAVA_FIELDS: [string, FieldClass][] = [
  ...LLAMA_FIELDS.filter(([f]) => f !== "architectures" && f !== "dtype").map(([f, c]): [string, FieldClass] => [`text_config.${f}`, c]),
  ["vision_config.hidden_size", "shape"], ["vision_config.intermediate_size", "shape"], ["vision_config.num_attention_heads", "shape"],
  ["vision_config.num_hidden_layers", "shape"], ["vision_config.image_size", "shape"], ["vision_config.patch_size", "shape"], ["vision_config.num_channels", "shape"],
  ["vision_config.layer_norm_eps", "positive"], ["vision_config.hidden_act", "enum"], ["image_token_index", "tokenId"], ["image_seq_length", "derivable"],
  ["vision_feature_layer", "layerIndex"], ["vision_feature_select_strategy", "enum"], ["projector_hidden_act", "enum"], ["multimodal_projector_bias", "free"],
  ["architectures", "architectures"], ["text_config", "shape"], ["vision_config", "shape"],
];

function expectFor(cls: FieldClass, original: unknown, v: OddValue): Expect {
  if (JSON.stringify(v) === JSON.stringify(original)) return "either";
  const posInt = typeof v === "number" && Number.isInteger(v) && v > 0;
  switch (cls) {
    case "shape":
      return "error";
    case "derivable":
      return v === MISSING || v === null ? "either" : "error";
    case "positive": // an epsilon of 0 still computes
      return v === MISSING || (typeof v === "number" && v >= 0 && Number.isFinite(v)) ? "either" : "error";
    case "contextLength":
      return v === MISSING || v === null || posInt ? "either" : "error";
    case "layerIndex":
      return v === MISSING || (typeof v === "number" && Number.isInteger(v) && v >= -3 && v <= 2) ? "either" : "error";
    case "bias":
      return v === MISSING || v === false || v === null ? "either" : "error";
    case "architectures":
      return v === MISSING || typeof v === "string" ? "either" : "error";
    case "enum":
      return v === MISSING || v === null ? "either" : "error";
    case "tokenId":
    case "free":
      return "either";
  }
}

export interface ConfigCase {
  label: string;
  expect: Expect;
  model: "llama-f32" | "llava-gqa-f32";
  /** File name in the model folder -> what to make there instead. */
  files: Record<string, FileSpec>;
}

/** `read` gives a fixture file's text, e.g. read("llava-gqa-f32", "config.json"). */
export type FixtureReader = (model: string, file: string) => string;

const CONFIG_KINDS: ((rng: Rng, read: FixtureReader) => ConfigCase)[] = [
  // A field of the config set to an odd value (three kinds in four, both models).
  ...[0, 1, 2].map(() => (rng: Rng, read: FixtureReader): ConfigCase => {
    const model = rng.pick(["llama-f32", "llava-gqa-f32"] as const);
    const config = JSON.parse(read(model, "config.json")) as Record<string, unknown>;
    const [field, cls] = rng.pick(model === "llama-f32" ? LLAMA_FIELDS : LLAVA_FIELDS);
    const original = field.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], config);
    const candidates: OddValue[] = [...ODD_VALUES, MISSING, "bogus"];
    if (typeof original === "number") candidates.push(original * 2, original + 1);
    const v = rng.pick(candidates);
    setPath(config, field, v);
    return { label: `${model} config.json ${field} = ${describeValue(v)}`, expect: expectFor(cls, original, v), model, files: { "config.json": JSON.stringify(config, null, 2) } };
  }),
  (rng, read) => {
    const model = rng.pick(["llama-f32", "llava-gqa-f32"] as const);
    const original = read(model, "config.json");
    const variant = rng.pick(["garbage", "empty", "array", "null", "truncated", "bom", "comments", "nested", "nanLiteral", "bigNumber", "folder", "fifo", "devzero"] as const);
    const texts: Record<typeof variant, FileSpec> = {
      garbage: rng.bytes(200).toString("latin1"),
      empty: "",
      array: "[]",
      null: "null",
      truncated: original.slice(0, rng.int(1, original.length - 2)),
      bom: `\uFEFF${original}`,
      comments: `// a comment\n${original}`,
      nested: `{"x": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
      nanLiteral: original.replace(/"vocab_size": \d+/, '"vocab_size": NaN'),
      bigNumber: original.replace(/"vocab_size": \d+/, '"vocab_size": 1e400'),
      folder: { folder: true },
      fifo: { fifo: true },
      devzero: { link: "/dev/zero" },
    };
    const expect: Expect = variant === "bom" || variant === "comments" ? "either" : "error";
    return { label: `${model} config.json ${variant}`, expect, model, files: { "config.json": texts[variant] } };
  },
  (rng, read) => {
    const pre = JSON.parse(read("llava-gqa-f32", "preprocessor_config.json")) as Record<string, unknown>;
    const field = rng.pick(["crop_size.height", "crop_size", "size.shortest_edge", "size", "image_mean", "image_std", "rescale_factor", "resample", "do_resize", "image_processor_type"]);
    const v = rng.pick<OddValue>([...ODD_VALUES, MISSING, [0, 0, 0], [1, 2], ["a", "b", "c"], 1e-30]);
    setPath(pre, field, v);
    return { label: `preprocessor_config.json ${field} = ${describeValue(v)}`, expect: "either", model: "llava-gqa-f32", files: { "preprocessor_config.json": JSON.stringify(pre) } };
  },
  (rng, read) => {
    const tok = JSON.parse(read("llava-gqa-f32", "tokenizer.json")) as { model: Record<string, unknown>; added_tokens: unknown[] };
    const variant = rng.int(0, 6);
    let label: string;
    let expect: Expect = "error";
    if (variant === 0) {
      tok.model["vocab"] = {};
      tok.model["merges"] = [];
      label = "tokenizer.json with an empty vocabulary";
    } else if (variant === 1) {
      tok.model["vocab"] = rng.pick<unknown>([5, "x", null, [], [["a", "b"]]]);
      label = `tokenizer.json vocab = ${describeValue(tok.model["vocab"])}`;
    } else if (variant === 2) {
      tok.model["type"] = rng.pick<unknown>(["Bogus", 5, null]);
      label = `tokenizer.json model.type = ${describeValue(tok.model["type"])}`;
      if (tok.model["type"] === null) expect = "either"; // the model's fields say what it is
    } else if (variant === 3) {
      const vocab = tok.model["vocab"] as Record<string, number>;
      for (const k of Object.keys(vocab)) if (rng.chance(0.5)) vocab[k] = rng.pick([-1, 1e9, 1.5, 0]);
      label = "tokenizer.json vocabulary with garbage ids";
    } else if (variant === 4) {
      tok.added_tokens = rng.pick<unknown[]>([[5], [{ id: "x", content: 5 }], [{ id: 1e9, content: "<x>" }]]);
      label = "tokenizer.json garbage added_tokens";
      expect = "either";
    } else if (variant === 5) {
      tok.model["merges"] = rng.pick<unknown>([5, ["a"], [["a"]], [[1, 2]]]);
      label = `tokenizer.json merges = ${describeValue(tok.model["merges"])}`;
      expect = "either";
    } else {
      return { label: "tokenizer.json random bytes", expect: "error", model: "llava-gqa-f32", files: { "tokenizer.json": rng.bytes(300).toString("latin1") } };
    }
    return { label, expect, model: "llava-gqa-f32", files: { "tokenizer.json": JSON.stringify(tok) } };
  },
];

export function configCase(rng: Rng, i: number, read: FixtureReader): ConfigCase {
  return CONFIG_KINDS[i % CONFIG_KINDS.length](rng, read);
}

// ---------------------------------------------------------------------------------------------
// chat templates

export interface TemplateCase {
  label: string;
  expect: Expect;
  /** chat_template.jinja's text (it takes precedence over chat_template.json), or bytes. */
  jinja?: string | Buffer;
  /** chat_template.json's text instead. */
  json?: string;
}

const IMAGE_THEN_TEXT = "{{ 'USER: ' }}{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}{{ ' ASSISTANT:' }}";

const TEMPLATE_KINDS: ((rng: Rng) => TemplateCase)[] = [
  (rng) => {
    const n = rng.pick(["1000000000", "10000000", "1000000000000", "2**40"]);
    return { label: `loop over range(${n}) writing x`, expect: "error", jinja: `{% for i in range(${n}) %}x{% endfor %}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const n = rng.pick([3000, 10_000, 100_000]);
    return { label: `nested loops ${n} x ${n}`, expect: "error", jinja: `{% for i in range(${n}) %}{% for j in range(${n}) %}{% endfor %}{% endfor %}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const depth = rng.int(3, 5);
    let t = "x";
    for (let d = 0; d < depth; d++) t = `{% for i${d} in range(100) %}${t}{% endfor %}`;
    return { label: `${depth} nested loops of 100`, expect: "error", jinja: t + IMAGE_THEN_TEXT };
  },
  (rng) => {
    const v = rng.pick([
      ["'x' * 100000000", "a 100 MB string literal product"],
      ["'x' * 1000000000", "a 1 GB string literal product"],
      ["messages[0]['content'][1]['text'] * 10000000", "the prompt repeated ten million times"],
    ]);
    return { label: `huge output: ${v[1]}`, expect: "error", jinja: `{{ ${v[0]} }}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const n = rng.pick([100_000, 1_000_000]);
    return { label: `loop writing the prompt ${n} times`, expect: "error", jinja: `{% for i in range(${n}) %}{{ messages[0]['content'][1]['text'] }}{% endfor %}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const t = rng.pick([
      "{% for m in messages %}",
      "{{ 1 + }}",
      "{% if %}{% endif %}",
      "{% endfor %}",
      "{{",
      "{% raw %}",
      "{% set %}",
      "{{ messages[ }}",
      "{% for in %}{% endfor %}",
      "{{ x | }}",
      "{% macro %}{% endmacro %}",
      "{#",
      "{{ '\\u' }}",
    ]);
    return { label: `syntax error ${JSON.stringify(t)}`, expect: "error", jinja: `${IMAGE_THEN_TEXT}${t}` };
  },
  (rng) => {
    const t = rng.pick(["{{ foo }}", "{{ foo.bar.baz }}", "{{ messages[99]['content'] }}", "{{ messages[0]['nope']['deeper'] }}", "{{ undefined_function() }}", "{{ messages.nope() }}", "{{ none.x }}"]);
    return { label: `undefined value ${t}`, expect: "either", jinja: `${t}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const t = rng.pick(["{{ raise_exception('the template refuses') }}", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"]);
    return { label: `template that throws: ${t.slice(0, 40)}`, expect: "error", jinja: `${t}${IMAGE_THEN_TEXT}` };
  },
  (rng) => {
    const depth = rng.pick([1000, 5000, 20_000]);
    return { label: `if blocks nested ${depth} deep`, expect: "either", jinja: `${"{% if true %}".repeat(depth)}${IMAGE_THEN_TEXT}${"{% endif %}".repeat(depth)}` };
  },
  (rng) => {
    const n = rng.pick([2, 50, 1000]);
    return { label: `${n} image placeholders for one image`, expect: n === 2 ? "either" : "error", jinja: `{% for i in range(${n}) %}<image>\n{% endfor %}{{ messages[0]['content'][1]['text'] }}` };
  },
  (rng) => {
    const v = rng.pick<[string, string | Buffer, Expect]>([
      ["empty template", "", "error"],
      ["no image placeholder", "{{ messages[0]['content'][1]['text'] }} ASSISTANT:", "error"],
      ["a 2 MB literal", "y".repeat(2_000_000) + IMAGE_THEN_TEXT, "error"],
      ["invalid UTF-8", Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(IMAGE_THEN_TEXT)]), "either"],
      ["NUL bytes", `\u0000${IMAGE_THEN_TEXT}\u0000`, "either"],
      ["valid template", IMAGE_THEN_TEXT, "either"],
    ]);
    return { label: v[0], expect: v[2], jinja: v[1] };
  },
  (rng) => {
    const v = rng.pick<[string, string]>([
      ["chat_template 5", '{"chat_template": 5}'],
      ["chat_template null", '{"chat_template": null}'],
      ["chat_template []", '{"chat_template": []}'],
      ["invalid JSON", "{"],
      ["random bytes", rng.bytes(100).toString("latin1")],
      ["nested 100,000 deep", `{"chat_template": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`],
      ["huge loop", JSON.stringify({ chat_template: `{% for i in range(1000000000) %}x{% endfor %}${IMAGE_THEN_TEXT}` })],
    ]);
    // Without a usable template there is nowhere to put the image: an error, whatever the cause.
    return { label: `chat_template.json ${v[0]}`, expect: "error", json: v[1] };
  },
  (rng) => {
    const t = rng.pick([
      "{% set ns = namespace(x=0) %}{% for i in range(10000000) %}{% set ns.x = ns.x + 1 %}{% endfor %}",
      "{% for c in 'x' * 10000000 %}{% endfor %}",
      "{{ range(100000000) | length }}",
      "{% for i in range(0, 1000000000000, 1) %}{% endfor %}",
      "{% set x = range(10000000) | list %}{{ x | length }}",
    ]);
    return { label: `busy template ${t.slice(0, 50)}`, expect: "error", jinja: `${t}${IMAGE_THEN_TEXT}` };
  },
];

export function templateCase(rng: Rng, i: number): TemplateCase {
  return TEMPLATE_KINDS[i % TEMPLATE_KINDS.length](rng);
}

// ---------------------------------------------------------------------------------------------
// images

export interface ImageCase {
  label: string;
  expect: Expect;
  /** Bytes of the image file to write (its name ends in `ext`). */
  bytes?: Buffer;
  ext?: string;
  /** Not a file written from bytes: a path or a special file the test sets up. */
  special?: "fifo" | "folder" | "devzero" | "devnull" | "urandom" | "missing" | "empty-path" | "nul-in-path" | "relative" | "dangling" | "loop" | "link-to-folder" | "sparse-huge";
  /** Make the image with sharp first: width x height of a valid PNG. */
  make?: { width: number; height: number };
}

function crc32(bytes: Buffer): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A PNG whose IHDR claims width x height (valid CRCs) over a few rows of real data. */
export function pngDeclaring(width: number, height: number, rows = 2): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width >>> 0, 0);
  ihdr.writeUInt32BE(height >>> 0, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rowBytes = Math.min(width, 4096) * 3 + 1;
  const idat = deflateSync(Buffer.alloc(rowBytes * rows));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk("IHDR", ihdr), pngChunk("IDAT", idat), pngChunk("IEND", Buffer.alloc(0))]);
}

/** A baseline JPEG header whose SOF0 claims width x height, then nothing. */
function jpegDeclaring(width: number, height: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 255, width >> 8, width & 255, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), sof, Buffer.from([0xff, 0xd9])]);
}

/** A BMP header (BITMAPINFOHEADER) with the given fields, and `dataBytes` of pixels. */
function bmpWith(width: number, height: number, bpp: number, compression: number, dataBytes: number, dataOffset = 54): Buffer {
  const b = Buffer.alloc(54 + dataBytes);
  b.write("BM", 0, "ascii");
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(dataOffset >>> 0, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width | 0, 18);
  b.writeInt32LE(height | 0, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(bpp, 28);
  b.writeUInt32LE(compression, 30);
  return b;
}

/** `sources` are valid images of the fixtures, by extension: png, jpg, webp, gif. */
export type ImageSources = Record<"png" | "jpg" | "webp" | "gif" | "bmp", Buffer>;

const IMAGE_KINDS: ((rng: Rng, src: ImageSources) => ImageCase)[] = [
  (rng, src) => {
    const ext = rng.pick(["png", "jpg", "webp", "gif", "bmp"] as const);
    const b = src[ext];
    const cut = rng.int(0, b.length - 16);
    return { label: `${ext} truncated to ${cut} of ${b.length} bytes`, expect: cut < 64 ? "error" : "either", bytes: b.subarray(0, cut), ext };
  },
  (rng, src) => {
    const ext = rng.pick(["png", "jpg", "webp", "gif", "bmp"] as const);
    const b = Buffer.from(src[ext]);
    const flips = rng.int(1, 12);
    for (let i = 0; i < flips; i++) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
    return { label: `${ext} with ${flips} byte(s) changed`, expect: "either", bytes: b, ext };
  },
  (rng) => {
    const n = rng.pick([1, 7, 100, 5000]);
    return { label: `${n} random bytes as .png`, expect: "error", bytes: rng.bytes(n), ext: "png" };
  },
  () => ({ label: "empty file", expect: "error", bytes: Buffer.alloc(0), ext: "png" }),
  (rng) => {
    const [w, h] = rng.pick([[100_000, 100_000], [2 ** 31 - 1, 1], [1, 2 ** 31 - 1], [0, 10], [10, 0], [65_535, 65_535], [2 ** 32 - 1, 2 ** 32 - 1]]);
    return { label: `PNG declaring ${w}x${h}`, expect: "error", bytes: pngDeclaring(w, h), ext: "png" };
  },
  (rng) => {
    const [w, h] = rng.pick([[65_535, 65_535], [0, 0], [60_000, 1], [1, 60_000]]);
    return { label: `JPEG declaring ${w}x${h}, no data`, expect: "error", bytes: jpegDeclaring(w, h), ext: "jpg" };
  },
  (rng) => {
    const v = rng.pick<[string, Buffer, Expect?]>([
      ["BMP 1e9 x 1e9", bmpWith(1e9, 1e9, 24, 0, 16)],
      ["BMP -5 x 5", bmpWith(-5, 5, 24, 0, 100)],
      ["BMP 5 x -2^31", bmpWith(5, -(2 ** 31), 24, 0, 100)],
      ["BMP bpp 0", bmpWith(4, 4, 0, 0, 100)],
      ["BMP bpp 7", bmpWith(4, 4, 7, 0, 100)],
      ["BMP RLE8", bmpWith(4, 4, 8, 1, 100)],
      ["BMP data offset past the end", bmpWith(4, 4, 24, 0, 10, 1e9)],
      ["BMP 8-bit with no palette", bmpWith(4, 4, 8, 0, 16), "either"],
      ["BMP 65535 x 65535 with 16 bytes", bmpWith(65_535, 65_535, 32, 0, 16)],
      ["BMP header only", bmpWith(4, 4, 24, 0, 0).subarray(0, 30)],
    ]);
    return { label: v[0], expect: v[2] ?? "error", bytes: v[1], ext: "bmp" };
  },
  (rng) => {
    const v = rng.pick<[string, string, Expect]>([
      ["SVG 100000x100000", '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="100%" height="100%"/></svg>', "either"],
      ["SVG 10x10", '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>', "either"],
      ["text file named .png", "this is not an image\n", "error"],
      ["GIF header only", "GIF89a", "error"],
      ["HTML", "<html><body>hi</body></html>", "error"],
    ]);
    return { label: v[0], expect: v[2], bytes: Buffer.from(v[1]), ext: v[0].startsWith("SVG") ? "svg" : v[0].startsWith("GIF") ? "gif" : "png" };
  },
  (rng) => {
    const special = rng.pick(["fifo", "folder", "devzero", "devnull", "urandom", "missing", "empty-path", "nul-in-path", "relative", "dangling", "loop", "link-to-folder", "sparse-huge"] as const);
    return { label: `image path: ${special}`, expect: "error", special };
  },
  (rng) => {
    const [w, h] = rng.pick([[1, 1], [1, 3000], [3000, 1], [2, 2000], [4000, 3000]]);
    return { label: `valid PNG ${w}x${h}`, expect: "either", make: { width: w, height: h } };
  },
  (rng, src) => {
    const ext = rng.pick(["png", "jpg", "webp"] as const);
    const other = rng.pick(["jpg", "gif", "bmp", "txt", ""]);
    return { label: `valid ${ext} named .${other}`, expect: "either", bytes: src[ext], ext: other };
  },
];

export function imageCase(rng: Rng, i: number, src: ImageSources): ImageCase {
  return IMAGE_KINDS[i % IMAGE_KINDS.length](rng, src);
}

// ---------------------------------------------------------------------------------------------
// .lens.json experiment files

export interface ExperimentPaths {
  model: string;
  /** Folder of the experiment file, with images/a.png, images/b.png, rows.jsonl and rows.csv. */
  dir: string;
}

/** A valid experiment of two images and a manifest, the base every mutation starts from. */
export function baseExperiment(p: ExperimentPaths): Record<string, unknown> {
  return {
    name: "fuzz",
    model: p.model,
    inputs: [{ manifest: "rows.csv", groups: { source: "csv" } }, { manifest: "rows.jsonl", limit: 2 }],
    prompts: ["Q: {question}", { name: "plain", template: "Describe it." }],
    target: "{answer}",
    lens: { topK: 3, positions: "afterImage", trackTokens: ["red"] },
    generation: { maxNewTokens: 1 },
    variants: [{ name: "baseline" }, { name: "masked", mask: { "0": [1] } }],
    groupBy: ["set"],
  };
}

/** The experiment on images alone (no columns): prompts without placeholders, no target. */
function onImages(e: Record<string, unknown>, inputs: unknown[]): Record<string, unknown> {
  e["inputs"] = inputs;
  e["prompts"] = ["Describe it."];
  delete e["target"];
  e["groupBy"] = [];
  return e;
}

/** Every path of a JSON value, dotted (array items by index). */
function paths(value: unknown, prefix = ""): string[] {
  if (typeof value !== "object" || value === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const p = prefix ? `${prefix}.${k}` : k;
    out.push(p, ...paths(v, p));
  }
  return out;
}

/** A file to make: its text, or a FIFO, a folder, a symbolic link. */
export type FileSpec = string | { fifo: true } | { folder: true } | { link: string };

export interface ExperimentCase {
  label: string;
  expect: Expect;
  /** The text sent as the file's unsaved contents (undefined: read the file). */
  text?: string;
  /** `file` param override (default: <dir>/fuzz.lens.json). */
  file?: string;
  /** The `item` param, when not the default. */
  item?: unknown;
  /** Files to make (relative to dir) before the request. */
  write?: Record<string, FileSpec>;
  /** Run the whole experiment (lens/runExperiment) instead of previewing. */
  sweep?: boolean;
}

function hugeString(rng: Rng): string {
  return rng.pick(["x", "word ", "é", "🙂"]).repeat(rng.pick([20_000, 200_000, 2_000_000]));
}

const EXPERIMENT_KINDS: ((rng: Rng, p: ExperimentPaths) => ExperimentCase)[] = [
  // A field set to a value of the wrong type (two kinds in the list, as they are most of the space).
  ...[0, 1].map(() => (rng: Rng, p: ExperimentPaths): ExperimentCase => {
    const e = baseExperiment(p);
    const at = rng.pick(paths(e));
    const v = rng.pick<OddValue>([...ODD_VALUES, MISSING, "x", [[]], { a: {} }, "../../../../etc/passwd"]);
    setPath(e, at, v);
    return { label: `${at} = ${describeValue(v)}`, expect: "either", text: JSON.stringify(e) };
  }),
  (rng, p) => {
    const depth = rng.pick([1000, 10_000, 100_000, 1_000_000]);
    const where = rng.pick(["top", "inputs", "lens", "prompts"]);
    const nest = "[".repeat(depth) + "]".repeat(depth);
    const e = baseExperiment(p);
    const text = where === "top" ? nest : JSON.stringify(e).replace(`"${where}":`, `"${where}":${nest},"x${where}":`);
    return { label: `${where} nested ${depth} deep`, expect: "error", text };
  },
  (rng, p) => {
    const glob = rng.pick(["[", "{a,b", "images/[", "images/{a,", "\\", "images/*.{png", "images/[!a-", "(", "**/***", "images/**/**/**/*.png", "/", "images/*.png\u0000", "!images/*.png", "images/[z-a].png"]);
    const e = onImages(baseExperiment(p), [glob]);
    return { label: `glob ${JSON.stringify(glob)}`, expect: "either", text: JSON.stringify(e) };
  },
  (rng, p) => {
    const e = baseExperiment(p);
    const v = rng.int(0, 5);
    const inputs = e["inputs"] as Record<string, unknown>[];
    const labels = ["manifest missing", "image missing", "model folder missing", "manifest is a folder", "manifest is a FIFO", "manifest links to /dev/zero"];
    const write: Record<string, FileSpec> = {};
    if (v === 0) inputs[1]["manifest"] = "nope.jsonl";
    else if (v === 1) onImages(e, ["images/nope.png"]);
    else if (v === 2) e["model"] = "/no/such/model";
    else if (v === 3) {
      inputs[1]["manifest"] = "folder.jsonl";
      write["folder.jsonl"] = { folder: true };
    } else if (v === 4) {
      inputs[1]["manifest"] = "fifo.jsonl";
      write["fifo.jsonl"] = { fifo: true };
    } else {
      inputs[1]["manifest"] = "zero.jsonl";
      write["zero.jsonl"] = { link: "/dev/zero" };
    }
    return { label: labels[v], expect: "error", text: JSON.stringify(e), write };
  },
  (rng, p) => {
    const e = baseExperiment(p);
    const v = rng.pick<[string, Record<string, FileSpec>, Expect]>([
      ["manifest with a null row", { "rows.jsonl": 'null\n{"image":"images/a.png","answer":"red"}\n' }, "either"],
      ["manifest row without an image", { "rows.jsonl": '{"answer":"red"}\n' }, "error"],
      ["manifest with a UTF-8 BOM", { "rows.jsonl": '\uFEFF{"image":"images/a.png","answer":"red"}\n' }, "either"],
      ["manifest with a corrupt line", { "rows.jsonl": '{"image":"images/a.png","answer":"red"}\n{"image": \n{"image":"images/b.png","answer":"blue"}\n' }, "either"],
      ["manifest row naming a FIFO image", { "rows.jsonl": '{"image":"fifo.png","answer":"red"}\n', "fifo.png": { fifo: true } }, "error"],
      ["manifest row image is a number", { "rows.jsonl": '{"image":5,"answer":"red"}\n' }, "error"],
      ["manifest row image is a folder", { "rows.jsonl": '{"image":"images","answer":"red"}\n' }, "error"],
      ["empty manifest", { "rows.jsonl": "" }, "either"],
      ["manifest of random bytes", { "rows.jsonl": rng.bytes(300).toString("latin1") }, "error"],
      ["manifest with a huge line", { "rows.jsonl": `{"image":"images/a.png","answer":"${"x".repeat(3_000_000)}"}\n` }, "either"],
    ]);
    return { label: v[0], expect: v[2], text: JSON.stringify(e), write: v[1] };
  },
  (rng, p) => {
    const e = baseExperiment(p);
    const v = rng.int(0, 6);
    let label: string;
    let text: string;
    let expect: Expect = "either";
    if (v === 0) {
      const key = rng.pick(["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "__defineGetter__"]);
      e["prompts"] = [`What is {${key}}?`];
      label = `prompt template {${key}}`;
      expect = "error";
      text = JSON.stringify(e);
    } else if (v === 1) {
      e["target"] = `{${rng.pick(["__proto__", "constructor", "prototype"])}}`;
      label = `target ${e["target"] as string}`;
      expect = "error";
      text = JSON.stringify(e);
    } else if (v === 2) {
      label = "a __proto__ key at the top";
      text = JSON.stringify(e).replace("{", '{"__proto__":{"polluted":1},');
      expect = "error";
    } else if (v === 3) {
      label = "a __proto__ key in lens";
      text = JSON.stringify(e).replace('"lens":{', '"lens":{"__proto__":{"topK":1000},');
    } else if (v === 4) {
      label = "a __proto__ key in groups";
      text = JSON.stringify(e).replace('"groups":{', '"groups":{"__proto__":"x","constructor":"y",');
    } else if (v === 5) {
      label = "variant mask block __proto__";
      text = JSON.stringify(e).replace('"mask":{', '"mask":{"__proto__":[0],');
    } else {
      e["groupBy"] = [rng.pick(["__proto__", "constructor", "nope"])];
      label = `groupBy ${JSON.stringify(e["groupBy"])}`;
      text = JSON.stringify(e);
    }
    return { label, expect, text };
  },
  (rng, p) => {
    const e = baseExperiment(p);
    const at = rng.pick(["target", "name", "description", "model", "prompts.0", "lens.trackTokens.0", "inputs.0.images"]);
    const s = hugeString(rng);
    setPath(e, at, s);
    return { label: `${at} is a ${s.length}-character string`, expect: "either", text: JSON.stringify(e) };
  },
  (rng, p) => {
    const e = baseExperiment(p);
    const n = rng.pick([1000, 100_000]);
    const at = rng.pick(["prompts", "lens.trackTokens", "inputs", "variants"]);
    const item = at === "variants" ? { name: "v" } : at === "inputs" ? "images/a.png" : "x";
    setPath(e, at, Array.from({ length: n }, (_, k) => (at === "variants" ? { name: `v${k}` } : item)));
    return { label: `${at} with ${n} items`, expect: "either", text: JSON.stringify(e) };
  },
  (rng, p) => {
    const item = rng.pick<unknown>([-1, 1.5, 1e9, "0", null, true, [], {}, 2 ** 53]);
    return { label: `item ${describeValue(item)}`, expect: item === null ? "either" : "error", text: JSON.stringify(baseExperiment(p)), item };
  },
  (rng) => {
    const text = rng.pick(["", "null", "[]", "5", '"x"', "{", "{}", rng.bytes(200).toString("latin1"), '{"inputs": [], "prompts": []}', "\uFEFF{}", "/* c */ {}"]);
    return { label: `text ${describeValue(text)}`, expect: "error", text };
  },
  (rng, p) => {
    const file = rng.pick(["", "relative.lens.json", p.dir, "/no/such/file.lens.json", `${p.dir}/images/a.png`, "/dev/zero", `${p.dir}/fifo.lens.json`]);
    return { label: `file ${JSON.stringify(file)} without text`, expect: "error", file, write: (file.endsWith("fifo.lens.json") ? { "fifo.lens.json": { fifo: true } } : {}) as Record<string, FileSpec> };
  },
  (rng, p) => {
    // Whole sweeps: the cases of the issue that broke a run (an item that generates nothing, odd output folders).
    const e = onImages(baseExperiment(p), ["images/a.png"]);
    e["variants"] = [{ name: "baseline" }];
    const v = rng.int(0, 4);
    const labels = ["sweep with maxNewTokens 0", "sweep whose output folder is a file", "sweep with output folder outside", "sweep with output folder /dev/null", "sweep with a CSV formula in a group"];
    let expect: Expect = "either";
    const write: Record<string, FileSpec> = {};
    if (v === 0) e["generation"] = { maxNewTokens: 0 };
    else if (v === 1) {
      e["output"] = { folder: "afile" };
      write["afile"] = "x";
      expect = "error";
    } else if (v === 2) e["output"] = { folder: "../../../../../../tmp/lens-fuzz-outside.results" };
    else if (v === 3) {
      e["output"] = { folder: "/dev/null" };
      expect = "error";
    } else {
      e["inputs"] = [{ images: "images/a.png", groups: { set: '=HYPERLINK("http://x")' } }];
      e["groupBy"] = ["set"];
    }
    return { label: labels[v], expect, text: JSON.stringify(e), write, sweep: true };
  },
];

export function experimentCase(rng: Rng, i: number, p: ExperimentPaths): ExperimentCase {
  return EXPERIMENT_KINDS[i % EXPERIMENT_KINDS.length](rng, p);
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC frames

export interface FrameCase {
  label: string;
  /**
   * "reply": a JSON-RPC error reply (or an exit with a logged reason);
   * "survive": keep serving, or exit with a logged reason;
   * "answer": a valid frame that must be answered.
   */
  expect: "reply" | "survive" | "answer";
  /** The bytes to write; ID_PLACEHOLDER in them becomes the case's request id. */
  bytes: Buffer;
  /** Write the bytes one at a time, 1 ms apart. */
  slow?: boolean;
  /** The id of the request inside, if the case expects its reply by id. */
  hasId?: boolean;
}

/** Where a frame's request id goes; the harness puts ID_BASE + n there (six digits, the same length). */
export const ID_PLACEHOLDER = "{{ID}}";
export const ID_BASE = 100_000;
/** Ids of the valid frames a case sends besides its own (the harness ignores their answers). */
export const EXTRA_FRAME_IDS = 1_000_000;

const validBody = (id: string | number = ID_PLACEHOLDER) => `{"jsonrpc":"2.0","id":${id},"method":"lens/initialize","params":{"protocolVersion":2,"clientName":"fuzz"}}`;

function frame(header: string, body: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from(header, "latin1"), typeof body === "string" ? Buffer.from(body, "utf8") : body]);
}
const len = (s: string | Buffer) => Buffer.byteLength(s);

const FRAME_KINDS: ((rng: Rng) => FrameCase)[] = [
  (rng) => {
    const body = validBody();
    const h = rng.pick(["Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", "\r\n", "X-Other: 1\r\n\r\n"]);
    return { label: `no Content-Length (${JSON.stringify(h.slice(0, 12))})`, expect: "survive", bytes: frame(h, body) };
  },
  (rng) => {
    const v = rng.pick(["abc", "12abc", "0x10", "1e3", "", " ", "NaN", "Infinity", "+5", "١٢"]);
    return { label: `Content-Length ${JSON.stringify(v)}`, expect: "survive", bytes: frame(`Content-Length: ${v}\r\n\r\n`, validBody()) };
  },
  (rng) => {
    const v = rng.pick(["-1", "-1000", "-0"]);
    return { label: `Content-Length ${v}`, expect: "survive", bytes: frame(`Content-Length: ${v}\r\n\r\n`, validBody()) };
  },
  (rng) => {
    const v = rng.pick(["1000000000000", "9007199254740993", "2147483648", "99999999999999999999999", "4294967296", "536870912"]);
    return { label: `Content-Length ${v}`, expect: "survive", bytes: frame(`Content-Length: ${v}\r\n\r\n`, validBody()) };
  },
  (rng) => {
    const body = validBody();
    const d = rng.pick([-5, -1, 1, 10]);
    return { label: `Content-Length ${d > 0 ? "+" : ""}${d} off`, expect: "survive", bytes: frame(`Content-Length: ${len(body) + d}\r\n\r\n`, body) };
  },
  () => ({ label: "Content-Length 0", expect: "survive", bytes: frame("Content-Length: 0\r\n\r\n", "") }),
  (rng) => {
    const body = validBody();
    const sep = rng.pick(["\n\n", "\r\n\n", "\n\r\n", "\r\r"]);
    return { label: `header ended by ${JSON.stringify(sep)}`, expect: "survive", bytes: frame(`Content-Length: ${len(body)}${sep}`, body) };
  },
  (rng) => {
    const body = validBody();
    const v = rng.int(0, 3);
    const label = ["NUL in the header", "NUL before the header", "NUL inside the body's JSON", "body of NULs"][v];
    if (v === 0) return { label, expect: "survive", bytes: frame(`Content-Length: ${len(body)}\u0000\r\n\r\n`, body) };
    if (v === 1) return { label, expect: "survive", bytes: frame(`\u0000\u0000Content-Length: ${len(body)}\r\n\r\n`, body) };
    if (v === 2) {
      const b = body.replace('"fuzz"', '"fu\u0000zz"');
      return { label, expect: "survive", bytes: frame(`Content-Length: ${len(b)}\r\n\r\n`, b) };
    }
    return { label, expect: "reply", bytes: frame("Content-Length: 16\r\n\r\n", Buffer.alloc(16)) };
  },
  (rng) => {
    const body = validBody();
    const cs = rng.pick(["latin1", "utf-16", "bogus", "ascii", "UTF-8", "utf8"]);
    return { label: `charset ${cs}`, expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\nContent-Type: application/vscode-jsonrpc; charset=${cs}\r\n\r\n`, body) };
  },
  (rng) => {
    const body = validBody();
    const v = rng.int(0, 2);
    if (v === 0) return { label: "two conflicting Content-Length headers", expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\nContent-Length: 3\r\n\r\n`, body) };
    if (v === 1) return { label: "a header line without a colon", expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\nGarbage\r\n\r\n`, body) };
    return { label: "a 2 MB header line", expect: "survive", bytes: frame(`X-Pad: ${"a".repeat(2_000_000)}\r\nContent-Length: ${len(body)}\r\n\r\n`, body) };
  },
  (rng) => {
    const body = rng.pick(["{", "not json", '{"jsonrpc":"2.0","id":{{ID}},"method":', rng.bytes(40).toString("latin1"), '{"jsonrpc":"2.0","id":{{ID}},"method":"lens/initialize","params":{"protocolVersion":2,"clientName":"\\ud800"}}x']);
    return { label: `invalid JSON body ${describeValue(body)}`, expect: "reply", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body) };
  },
  () => {
    const b = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":{{ID}},"method":"lens/initialize","params":{"protocolVersion":2,"clientName":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}}')]);
    return { label: "invalid UTF-8 in the body", expect: "survive", bytes: frame(`Content-Length: ${b.length}\r\n\r\n`, b) };
  },
  (rng) => {
    const body = rng.pick([
      "[]",
      "[1]",
      "{}",
      "5",
      '"x"',
      "null",
      '{"jsonrpc":"1.0","id":{{ID}},"method":"lens/initialize"}',
      '{"jsonrpc":"2.0","id":{"a":1},"method":"lens/initialize"}',
      '{"jsonrpc":"2.0","id":{{ID}},"method":5}',
      '{"jsonrpc":"2.0","id":{{ID}}}',
      '{"jsonrpc":"2.0","id":{{ID}},"method":"lens/initialize","params":5}',
      `[${validBody()}]`,
    ]);
    return { label: `not a JSON-RPC message ${describeValue(body)}`, expect: "reply", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body), hasId: body.includes('"method":') && body.includes("{{ID}}") };
  },
  (rng) => {
    // A response to no request of the server's: nothing to answer, it must just carry on.
    const body = rng.pick(['{"jsonrpc":"2.0","id":{{ID}},"result":5}', '{"jsonrpc":"2.0","id":{{ID}},"error":{"code":"x"}}', '{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}']);
    return { label: `a response to nothing ${describeValue(body)}`, expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body) };
  },
  (rng) => {
    const method = rng.pick(["lens/bogus", "", "rpc.discover", "$/bogus", "LENS/RUN", "lens/run ", "__proto__", "constructor", "toString"]);
    const body = `{"jsonrpc":"2.0","id":{{ID}},"method":${JSON.stringify(method)},"params":{}}`;
    return { label: `unknown method ${JSON.stringify(method)}`, expect: "reply", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body), hasId: true };
  },
  (rng) => {
    const params = rng.pick(['{"id":{}}', '{"id":null}', "5", "null", '{"id":"{{ID}}"}', "[]"]);
    const body = `{"jsonrpc":"2.0","method":"$/cancelRequest","params":${params}}`;
    return { label: `$/cancelRequest ${params}`, expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body) };
  },
  (rng) => {
    const method = rng.pick(["lens/run", "lens/openModel", "lens/log", "lens/progress", "lens/shutdownx"]);
    const body = `{"jsonrpc":"2.0","method":"${method}","params":5}`;
    return { label: `notification ${method} with params 5`, expect: "survive", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body) };
  },
  (rng) => {
    const v = rng.int(0, 3);
    const body = validBody();
    if (v === 0) return { label: "lower-case content-length", expect: "answer", bytes: frame(`content-length: ${len(body)}\r\n\r\n`, body), hasId: true };
    if (v === 1) return { label: "a frame written one byte at a time", expect: "answer", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body), slow: true, hasId: true };
    if (v === 2) return { label: "extra spaces around the length", expect: "answer", bytes: frame(`Content-Length:   ${len(body)}  \r\n\r\n`, body), hasId: true };
    const many = Array.from({ length: 200 }, (_, k) => frame(`Content-Length: ${len(validBody(EXTRA_FRAME_IDS + k))}\r\n\r\n`, validBody(EXTRA_FRAME_IDS + k)));
    return { label: "200 frames in one write, then ours", expect: "answer", bytes: Buffer.concat([...many, frame(`Content-Length: ${len(body)}\r\n\r\n`, body)]), hasId: true };
  },
  (rng) => {
    const n = rng.pick([1_000_000, 20_000_000]);
    const body = `{"jsonrpc":"2.0","id":{{ID}},"method":"lens/initialize","params":{"protocolVersion":2,"clientName":"${"x".repeat(n)}"}}`;
    return { label: `a ${n / 1e6} MB request`, expect: "answer", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body), hasId: true };
  },
  (rng) => {
    const depth = rng.pick([10_000, 1_000_000]);
    const body = `{"jsonrpc":"2.0","id":{{ID}},"method":"lens/initialize","params":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    return { label: `params nested ${depth} deep`, expect: "reply", bytes: frame(`Content-Length: ${len(body)}\r\n\r\n`, body), hasId: true };
  },
];

export function frameCase(rng: Rng, i: number): FrameCase {
  return FRAME_KINDS[i % FRAME_KINDS.length](rng);
}

// ---------------------------------------------------------------------------------------------
// Request parameters of every lens/* request

/** What a parameter field takes; a value outside it must be refused. */
type ParamType =
  | { t: "string"; nonEmpty?: boolean }
  | { t: "int"; min: number; max?: number }
  | { t: "bool" }
  | { t: "enum"; values: string[] }
  | { t: "strings" }
  | { t: "object" }
  /** Every odd value is refused (a field whose valid values are structured: headMask). */
  | { t: "never" };

export interface ParamsContext {
  model: string;
  image: string;
  experiment: string;
}

const METHODS = (c: ParamsContext): Record<string, { valid: Record<string, unknown>; fields: Record<string, ParamType> }> => ({
  "lens/initialize": { valid: { protocolVersion: 2, clientName: "fuzz" }, fields: { protocolVersion: { t: "enum", values: [] }, clientName: { t: "string" } } },
  "lens/openModel": { valid: { folder: c.model, device: "cpu", threads: 1 }, fields: { folder: { t: "string", nonEmpty: true }, device: { t: "enum", values: ["auto", "cpu"] }, threads: { t: "int", min: 0, max: 1024 } } },
  "lens/run": {
    valid: { prompt: "What is it?", image: c.image, settings: { maxNewTokens: 1, topK: 3 } },
    fields: {
      prompt: { t: "string" },
      image: { t: "string", nonEmpty: true },
      settings: { t: "object" },
      "settings.topK": { t: "int", min: 1, max: 100 },
      "settings.maxNewTokens": { t: "int", min: 0, max: 512 },
      "settings.positions": { t: "enum", values: ["afterImage", "image", "all"] },
      "settings.target": { t: "string" },
      "settings.trackTokens": { t: "strings" },
      "settings.answerProb": { t: "bool" },
      "settings.imageAttention": { t: "bool" },
      "settings.patchLens": { t: "bool" },
      headMask: { t: "never" },
    },
  },
  "lens/trackTokens": { valid: { tokens: [" red", "blue"] }, fields: { tokens: { t: "strings" } } },
  "lens/previewExperiment": { valid: { file: c.experiment }, fields: { file: { t: "string", nonEmpty: true }, text: { t: "string" }, item: { t: "int", min: 0, max: 0 }, clampItem: { t: "bool" }, keepRun: { t: "bool" } } },
  "lens/planExperiment": { valid: { file: c.experiment }, fields: { file: { t: "string", nonEmpty: true }, text: { t: "string" } } },
  "lens/runExperiment": { valid: { file: `${c.experiment}.missing` }, fields: { file: { t: "string", nonEmpty: true }, outDir: { t: "string" }, fresh: { t: "bool" } } },
});

function accepts(type: ParamType, v: OddValue): boolean {
  if (v === MISSING) return true; // the field's default (required fields are caught by the handler itself)
  switch (type.t) {
    case "string":
      return typeof v === "string" && (!type.nonEmpty || v.length > 0);
    case "int":
      return typeof v === "number" && Number.isInteger(v) && v >= type.min && (type.max === undefined || v <= type.max);
    case "bool":
      return typeof v === "boolean";
    case "enum":
      return typeof v === "string" && type.values.includes(v);
    case "strings":
      return Array.isArray(v) && v.every((s) => typeof s === "string" && s.length > 0);
    case "object":
      return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
    case "never":
      return false;
  }
}

export interface ParamsCase {
  label: string;
  expect: Expect;
  method: string;
  /** undefined: no params member at all. */
  params: unknown;
  /** Sent to a fresh sidecar before lens/initialize. */
  beforeInitialize?: boolean;
}

const HEAD_MASKS: unknown[] = [5, "x", null, [], { heads: 5 }, { heads: { "0": [99] } }, { heads: { "99": [0] } }, { heads: { "-1": [0] } }, { heads: { "0": ["a"] } }, { strategy: "random", count: 1e9, seed: 0 }, { strategy: "random", count: -1, seed: 0 }, { strategy: "bogus" }, { strategy: "topImage", count: 1.5 }, JSON.parse('{"heads": {"__proto__": [0]}}'), { heads: { "0": [0.5] } }];

export function paramsCase(rng: Rng, i: number, c: ParamsContext): ParamsCase {
  const methods = METHODS(c);
  const names = Object.keys(methods);
  const kind = i % 10;
  if (kind === 0) {
    // The whole params member wrong.
    const method = rng.pick(names);
    const params = rng.pick<unknown>([undefined, null, 5, "x", [], {}, true, [methods[method].valid]]);
    // [valid] is the same params by position, which JSON-RPC allows.
    const valid = params !== undefined && (JSON.stringify(params) === JSON.stringify(methods[method].valid) || JSON.stringify(params) === JSON.stringify([methods[method].valid]));
    return { label: `${method} params ${params === undefined ? "absent" : describeValue(params)}`, expect: valid ? "either" : "error", method, params };
  }
  if (kind === 1) {
    const method = rng.pick([...names.filter((n) => n !== "lens/initialize"), "lens/shutdown"]);
    return { label: `${method} before lens/initialize`, expect: "error", method, params: method === "lens/shutdown" ? undefined : methods[method]?.valid, beforeInitialize: true };
  }
  if (kind === 2) {
    const field = rng.pick(["threads", "device"]);
    const v = rng.pick<unknown>(field === "threads" ? [1e9, -1, 1.5, 2 ** 31, "4", null] : ["gpu", "", 5, "CUDA", null]);
    const valid = { ...methods["lens/openModel"].valid, [field]: v };
    return { label: `lens/openModel ${field} = ${describeValue(v)}`, expect: v === null ? "either" : "error", method: "lens/openModel", params: valid };
  }
  if (kind === 3) {
    const v = rng.pick(HEAD_MASKS);
    return { label: `lens/run headMask = ${describeValue(v)}`, expect: "error", method: "lens/run", params: { ...methods["lens/run"].valid, headMask: v } };
  }
  if (kind === 4) {
    const prompt = rng.pick(["a".repeat(2000), "a".repeat(32_000), "word ".repeat(20_000), "🙂".repeat(10_000), "\u0000".repeat(1000), "<image>".repeat(50), "", " ".repeat(5)]);
    return { label: `lens/run prompt ${describeValue(prompt)}`, expect: "either", method: "lens/run", params: { prompt, settings: { maxNewTokens: 1 } } };
  }
  if (kind === 5) {
    const tokens = rng.pick<unknown>([[5], "x", null, [], [""], ["a".repeat(100_000)], Array.from({ length: 100_000 }, () => "a"), [null], [["a"]]]);
    const ok = Array.isArray(tokens) && tokens.length > 0 && tokens.length < 1000 && tokens.every((t) => typeof t === "string" && t.length > 0);
    return { label: `lens/trackTokens tokens = ${describeValue(tokens)}`, expect: ok ? "either" : "error", method: "lens/trackTokens", params: { tokens } };
  }
  // A field of a method's params set to an odd value.
  const method = rng.pick(names.filter((n) => n !== "lens/initialize" || kind === 9));
  const spec = methods[method];
  const field = rng.pick(Object.keys(spec.fields));
  let v = rng.pick<OddValue>([...ODD_VALUES, MISSING, "x", hugeString(rng), [5], ["x"]]);
  if (method === "lens/openModel" && field === "folder" && v === "") v = "\u0000"; // "" is the bundled model, a valid request
  const params = JSON.parse(JSON.stringify(spec.valid)) as Record<string, unknown>;
  if (field.includes(".") && typeof params[field.split(".")[0]] !== "object") params[field.split(".")[0]] = {};
  setPath(params, field, v);
  const required = (method === "lens/run" && field === "prompt") || (method === "lens/openModel" && field === "folder") || (method === "lens/trackTokens" && field === "tokens") || (method !== "lens/run" && field === "file");
  let expect: Expect = accepts(spec.fields[field], v) && !(required && v === MISSING) ? "either" : "error";
  if (method === "lens/initialize" && field === "clientName" && v === MISSING) expect = "either";
  return { label: `${method} ${field} = ${describeValue(v)}`, expect, method, params };
}

// ---------------------------------------------------------------------------------------------
// The command line

export interface CliContext {
  model: string;
  image: string;
  /** A folder for the case's files. */
  dir: string;
}

export interface CliCase {
  label: string;
  expect: Expect;
  args: string[];
  /** Files to make in the case's folder first. */
  write?: Record<string, FileSpec>;
}

const CLI_KINDS: ((rng: Rng, c: CliContext) => CliCase)[] = [
  (rng, c) => {
    const v = rng.pick<[string, string, Record<string, FileSpec>]>([
      ["/dev/zero", "/dev/zero", {}],
      ["a FIFO", `${c.dir}/fifo.png`, { "fifo.png": { fifo: true } }],
      ["a folder", c.dir, {}],
      ["an empty path", "", {}],
      ["a missing file", `${c.dir}/missing.png`, {}],
      ["garbage bytes", `${c.dir}/g.png`, { "g.png": "not an image" }],
    ]);
    return { label: `--image ${v[0]}`, expect: "error", args: ["--model", c.model, "--image", v[1], "--prompt", "hi", "--max-new-tokens", "1"], write: v[2] };
  },
  (rng, c) => {
    // An empty prompt with an image is a question about the image alone: valid.
    const prompt = rng.pick(["a".repeat(32_000), "word ".repeat(8000), "", " ", "a".repeat(2000)]);
    return { label: `--prompt ${describeValue(prompt)}`, expect: "either", args: ["--model", c.model, "--image", c.image, "--prompt", prompt, "--max-new-tokens", "1"] };
  },
  (rng, c) => {
    const v = rng.pick<[string, string]>([["--top-k", "0"], ["--top-k", "1e9"], ["--top-k", "abc"], ["--max-new-tokens", "-1"], ["--max-new-tokens", "1e9"], ["--threads", "1e9"], ["--device", "bogus"], ["--positions", "bogus"], ["--mask", "x"], ["--mask", "99:0"], ["--mask-random", "abc"], ["--mask-top-image", "-1"]]);
    return { label: `${v[0]} ${v[1]}`, expect: "error", args: ["--model", c.model, "--image", c.image, "--prompt", "hi", "--max-new-tokens", "1", ...v] };
  },
  (rng, c) => {
    const v = rng.pick<[string, string, Record<string, FileSpec>]>([
      ["a missing folder", "/no/such/model", {}],
      ["a file", c.image, {}],
      ["a folder whose config.json is a FIFO", `${c.dir}/m`, { "m/config.json": { fifo: true } }],
      ["an empty folder", `${c.dir}/e`, { e: { folder: true } }],
    ]);
    return { label: `--model ${v[0]}`, expect: "error", args: ["--model", v[1], "--image", c.image, "--prompt", "hi"], write: v[2] };
  },
  (rng, c) => {
    const v = rng.pick<[string, FileSpec]>([["missing", ""], ["invalid JSON", "{"], ["a link to /dev/zero", { link: "/dev/zero" }], ["a FIFO", { fifo: true }], ["nested 100,000 deep", "[".repeat(100_000) + "]".repeat(100_000)]]);
    const write: Record<string, FileSpec> = v[0] === "missing" ? {} : { "x.lens.json": v[1] };
    return { label: `run EXPERIMENT that is ${v[0]}`, expect: "error", args: ["run", `${c.dir}/x.lens.json`], write };
  },
  (rng, c) => {
    const v = rng.pick<[string, FileSpec]>([["garbage", "{"], ["a FIFO", { fifo: true }], ["an empty file", ""], ["a non-record", "{}"]]);
    return { label: `diff of ${v[0]}`, expect: "error", args: ["diff", `${c.dir}/a.json`, `${c.dir}/a.json`], write: { "a.json": v[1] } };
  },
  (rng) => {
    const args = rng.pick([["--bogus"], ["run"], ["diff"], ["--image"], ["--top-k"], ["nonsense-command"]]);
    return { label: `arguments ${args.join(" ")}`, expect: "error", args };
  },
];

export function cliCase(rng: Rng, i: number, c: CliContext): CliCase {
  return CLI_KINDS[i % CLI_KINDS.length](rng, c);
}
