/**
 * Where a model folder's tokenizer comes from, assembled the way transformers' AutoTokenizer
 * assembles it, as one tokenizer.json-shaped object for @huggingface/tokenizers:
 *
 * 1. the pipeline: tokenizer.json, or, when a folder has none, vocab.json + merges.txt built into
 *    the byte-level BPE that transformers' Qwen2Tokenizer / GPT2Tokenizer construct;
 * 2. the added tokens, in transformers' order: tokenizer.json's `added_tokens`, then
 *    tokenizer_config.json's `added_tokens_decoder` (with its special / lstrip / rstrip /
 *    normalized / single_word flags), or, for older saves without it, `added_tokens.json` with
 *    `special_tokens_map.json`; then the named special tokens (bos, eos, unk, pad, ...) and the
 *    additional / extra special tokens not added yet.
 *
 * Published Qwen2-VL-2B-Instruct needs step 2: its tokenizer.json lists 12 added tokens and
 * `<|image_pad|>` (151655) exists only in tokenizer_config.json. An added token gets the id the
 * `tokenizers` library would give it: its vocabulary id when the vocabulary has it, else the next
 * free id after the vocabulary and the tokens added before it.
 *
 * Files that cannot describe a tokenizer (an empty or malformed vocabulary, merges that name
 * pieces the vocabulary lacks) are refused with one line naming the file.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { LensInputError } from "../errors";
import { isObject, type JsonObject } from "../arch/configUtil";
import { MAX_TEXT_INPUT_BYTES, readInputText } from "../util/readInput";

/** One added token as tokenizer.json stores it. */
export interface AddedTokenEntry {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface TokenizerFiles {
  /** tokenizer.json's shape with every added token merged in: the input of `new Tokenizer`. */
  tokenizerJson: JsonObject;
  /** tokenizer_config.json (with special_tokens_map.json's tokens where it had none), as given to `new Tokenizer`. */
  tokenizerConfig: JsonObject;
  /** Contents of the named special tokens that are set: bos_token, eos_token, unk_token, pad_token. */
  specialTokens: Record<string, string>;
  /** The file the pipeline came from (tokenizer.json or vocab.json), for messages. */
  file: string;
  /** Where the tokens came from, one phrase each, e.g. "tokenizer_config.json added_tokens_decoder: 10 tokens". */
  merged: string[];
}

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] as const;
const RESAVE = "re-save the tokenizer with transformers (AutoTokenizer.from_pretrained(folder).save_pretrained(folder))";

/** Byte-level BPE classes whose vocab.json + merges.txt layout we build (transformers 5.x's constructors). */
const BYTE_LEVEL_CLASSES: Record<string, { pipeline: (addPrefixSpace: boolean) => JsonObject; defaults: Record<string, string> }> = {
  Qwen2Tokenizer: {
    pipeline: (addPrefixSpace) => ({
      normalizer: { type: "NFC" },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          // Qwen2's split: contractions, letters with one leading non-letter, single digits,
          // punctuation runs with their newlines, newline runs, whitespace
          { type: "Split", pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: false },
        ],
      },
    }),
    defaults: { unk_token: "<|endoftext|>", eos_token: "<|endoftext|>", pad_token: "<|endoftext|>" },
  },
  GPT2Tokenizer: {
    pipeline: (addPrefixSpace) => ({
      normalizer: null,
      pre_tokenizer: { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true },
    }),
    defaults: { unk_token: "<|endoftext|>", bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" },
  },
};

function byteLevelClass(config: JsonObject): (typeof BYTE_LEVEL_CLASSES)[string] | undefined {
  const name = typeof config["tokenizer_class"] === "string" ? config["tokenizer_class"].replace(/Fast$/, "") : undefined;
  return name === undefined ? undefined : BYTE_LEVEL_CLASSES[name];
}

/** Reads and assembles a folder's tokenizer files (see the module comment). */
export async function readTokenizerFiles(folder: string): Promise<TokenizerFiles> {
  const at = (name: string) => path.join(folder, name);
  // Every file is read at once; errors still come in a fixed order.
  const names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model"] as const;
  const reads = await Promise.allSettled(names.map((n) => (n === "tokenizer.model" ? exists(at(n)) : readOptional(at(n)))));
  const value = <T>(i: number): T => {
    const r = reads[i];
    if (r.status === "rejected") throw r.reason;
    return r.value as T;
  };
  const tokenizerText = value<string | undefined>(0);
  const config = parseJsonObject(value<string | undefined>(1), at("tokenizer_config.json")) ?? {};
  const specialMap = parseJsonObject(value<string | undefined>(2), at("special_tokens_map.json"));
  const addedJson = parseJsonObject(value<string | undefined>(3), at("added_tokens.json"));
  const merged: string[] = [];

  let tokenizerJson: JsonObject;
  let file: string;
  if (tokenizerText !== undefined) {
    file = at("tokenizer.json");
    const parsed = parseJsonObject(tokenizerText, file);
    if (parsed === undefined) throw new Error("unreachable");
    tokenizerJson = parsed;
    checkTokenizerJson(tokenizerJson, file);
    merged.push(`tokenizer.json: ${(tokenizerJson["added_tokens"] as unknown[]).length} added tokens`);
  } else {
    const vocabText = value<string | undefined>(4);
    const mergesText = value<string | undefined>(5);
    const hasModel = value<boolean>(6);
    if (vocabText === undefined) {
      if (hasModel) throw new LensInputError(folder, "the tokenizer is only a SentencePiece tokenizer.model, which cannot be read here: save a tokenizer.json beside it with transformers (AutoTokenizer.from_pretrained(folder).save_pretrained(folder))");
      throw new LensInputError(at("tokenizer.json"), "tokenizer.json does not exist (nor vocab.json + merges.txt): pick a Hugging Face model folder with its tokenizer files");
    }
    file = at("vocab.json");
    if (mergesText === undefined) throw new LensInputError(folder, `the folder has vocab.json but no merges.txt (and no tokenizer.json): add merges.txt from the model's repository, or ${RESAVE}`);
    const cls = byteLevelClass(config);
    if (!cls) {
      const name = typeof config["tokenizer_class"] === "string" ? `tokenizer class ${config["tokenizer_class"]}` : "a tokenizer without tokenizer_class";
      throw new LensInputError(at("tokenizer_config.json"), `${name} with vocab.json + merges.txt is not supported (only Qwen2Tokenizer and GPT2Tokenizer are built from them): ${RESAVE} to write tokenizer.json`);
    }
    tokenizerJson = byteLevelTokenizer(cls.pipeline(config["add_prefix_space"] === true), readVocab(vocabText, file), readMerges(mergesText, at("merges.txt")));
    checkBpeMerges(tokenizerJson["model"] as JsonObject, at("merges.txt"), "merges.txt");
    merged.push("vocab.json + merges.txt: byte-level BPE");
  }

  // transformers reads special_tokens_map.json and added_tokens.json only for saves without added_tokens_decoder
  const decoder = config["added_tokens_decoder"];
  const legacy = decoder === undefined;
  const cfg: JsonObject = { ...config };
  if (legacy && specialMap) {
    for (const [key, v] of Object.entries(specialMap)) if (cfg[key] === undefined) cfg[key] = v;
    merged.push("special_tokens_map.json");
  }
  const cls = byteLevelClass(cfg);
  for (const [key, v] of Object.entries(cls?.defaults ?? {})) if (!(key in cfg)) cfg[key] = v;

  const vocab = new VocabIds(tokenizerJson);
  if (!legacy) {
    const entries = addedTokensDecoder(decoder, at("tokenizer_config.json"));
    for (const t of entries) vocab.add(t);
    merged.push(`tokenizer_config.json added_tokens_decoder: ${entries.length} tokens`);
  } else if (addedJson) {
    const specials = new Set([...SPECIAL_KEYS.map((k) => tokenContent(cfg[k])), ...extraSpecialTokens(cfg).map(tokenContent)].filter((c): c is string => c !== undefined));
    const entries = Object.entries(addedJson).map(([content, id]) => {
      if (!Number.isSafeInteger(id) || (id as number) < 0) throw new LensInputError(at("added_tokens.json"), `the id of ${JSON.stringify(content)} is ${JSON.stringify(id)}, not a token id: repair the file or ${RESAVE}`);
      const special = specials.has(content);
      return { id: id as number, content, special, normalized: !special, lstrip: false, rstrip: false, single_word: false };
    });
    for (const t of entries.sort((a, b) => a.id - b.id)) vocab.add(t);
    merged.push(`added_tokens.json: ${entries.length} tokens`);
  }
  const specialTokens: Record<string, string> = {};
  for (const key of SPECIAL_KEYS) {
    const content = tokenContent(cfg[key]);
    if (content === undefined) continue;
    if (key === "bos_token" || key === "eos_token" || key === "unk_token" || key === "pad_token") specialTokens[key] = content;
    vocab.addSpecial(cfg[key], content);
  }
  const extras = extraSpecialTokens(cfg);
  for (const t of extras) {
    const content = tokenContent(t);
    if (content !== undefined) vocab.addSpecial(t, content);
  }
  merged.push(`${vocab.addedCount} added tokens in all`);

  tokenizerJson = { ...tokenizerJson, added_tokens: vocab.addedTokens() };
  // @huggingface/tokenizers skips these on decode(skip_special_tokens) next to the tokens flagged special
  cfg["additional_special_tokens"] = extras.map(tokenContent).filter((c): c is string => c !== undefined);
  // transformers 5 does not clean up tokenization spaces unless the config asks; the library's default is to
  cfg["clean_up_tokenization_spaces"] = cfg["clean_up_tokenization_spaces"] === true;
  return { tokenizerJson, tokenizerConfig: cfg, specialTokens, file, merged };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch {
    return false;
  }
}

/** A text file's contents, or undefined when it does not exist. */
async function readOptional(file: string): Promise<string | undefined> {
  try {
    await fs.lstat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
  }
  return readInputText(file, { maxBytes: MAX_TEXT_INPUT_BYTES, what: path.basename(file), fix: `replace it with the model's ${path.basename(file)}` });
}

function parseJsonObject(text: string | undefined, file: string): JsonObject | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LensInputError(file, `${path.basename(file)} is not valid JSON (${(e as Error).message.split("\n")[0]}): repair or re-download it`);
  }
  if (!isObject(value)) throw new LensInputError(file, `${path.basename(file)} must hold a JSON object: repair or re-download it`);
  return value;
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v["content"] === "string") return v["content"];
  return undefined;
}

/** additional_special_tokens (transformers 4) or extra_special_tokens (5.x: a list, or a dict of named tokens). */
function extraSpecialTokens(cfg: JsonObject): unknown[] {
  const extra = cfg["extra_special_tokens"];
  const additional = cfg["additional_special_tokens"];
  const list = Array.isArray(extra) && extra.length > 0 ? extra : isObject(extra) ? Object.values(extra) : Array.isArray(additional) ? additional : [];
  return list;
}

function flag(v: unknown, fallback: boolean): boolean {
  return typeof v === "boolean" ? v : fallback;
}

function addedTokensDecoder(decoder: unknown, file: string): AddedTokenEntry[] {
  if (!isObject(decoder)) throw new LensInputError(file, `added_tokens_decoder must be an object of id: token: repair the file or ${RESAVE}`);
  const entries: AddedTokenEntry[] = [];
  for (const [key, t] of Object.entries(decoder)) {
    const id = Number(key);
    const content = tokenContent(t);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id) || content === undefined || content === "") {
      throw new LensInputError(file, `added_tokens_decoder entry ${JSON.stringify(key)} is not an id with a token content: repair the file or ${RESAVE}`);
    }
    const o = isObject(t) ? t : {};
    const special = flag(o["special"], false);
    entries.push({ id, content, special, normalized: flag(o["normalized"], !special), lstrip: flag(o["lstrip"], false), rstrip: flag(o["rstrip"], false), single_word: flag(o["single_word"], false) });
  }
  return entries.sort((a, b) => a.id - b.id);
}

/**
 * The model vocabulary plus the added tokens, assigning ids as the `tokenizers` library's
 * AddedVocabulary does: a token already known keeps its id (a token added again replaces the
 * flags of the earlier one); a new one gets the vocabulary size, or one past the largest added id
 * when that is already beyond the vocabulary.
 */
class VocabIds {
  private readonly modelId: (token: string) => number | undefined;
  private readonly modelSize: number;
  private readonly added = new Map<string, AddedTokenEntry>();

  constructor(tokenizerJson: JsonObject) {
    const model = tokenizerJson["model"] as JsonObject;
    const vocab = model["vocab"];
    if (Array.isArray(vocab)) {
      const ids = new Map(vocab.map((e, i) => [String((e as unknown[])[0]), i]));
      this.modelId = (t) => ids.get(t);
      this.modelSize = ids.size;
    } else {
      const ids = vocab as Record<string, number>;
      this.modelId = (t) => (Object.prototype.hasOwnProperty.call(ids, t) ? ids[t] : undefined);
      this.modelSize = Object.keys(ids).length;
    }
    for (const t of tokenizerJson["added_tokens"] as AddedTokenEntry[]) this.added.set(t.content, t);
  }

  get addedCount(): number {
    return this.added.size;
  }

  add(token: Omit<AddedTokenEntry, "id"> & { id?: number }): void {
    const known = this.added.get(token.content);
    const id = known?.id ?? this.modelId(token.content) ?? this.nextId();
    this.added.set(token.content, { ...token, id });
  }

  /** A named or extra special token, added unless an added token already has its content. */
  addSpecial(value: unknown, content: string): void {
    if (this.added.has(content)) return;
    const o = isObject(value) ? value : {};
    this.add({ content, special: true, normalized: flag(o["normalized"], false), lstrip: flag(o["lstrip"], false), rstrip: flag(o["rstrip"], false), single_word: flag(o["single_word"], false) });
  }

  private nextId(): number {
    let max = -1;
    for (const t of this.added.values()) max = Math.max(max, t.id);
    if (max < 0) return this.modelSize;
    return max >= this.modelSize || this.modelSize === 0 ? max + 1 : this.modelSize;
  }

  addedTokens(): AddedTokenEntry[] {
    return [...this.added.values()].sort((a, b) => a.id - b.id);
  }
}

function byteLevelTokenizer(pipeline: JsonObject, vocab: Record<string, number>, merges: [string, string][]): JsonObject {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    ...pipeline,
    // transformers' update_post_processor: no BOS/EOS for these classes unless add_bos_token says so (Qwen2's does not)
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
}

function readVocab(text: string, file: string): Record<string, number> {
  const vocab = parseJsonObject(text, file) as JsonObject;
  checkVocabObject(vocab, file, "vocab.json");
  return vocab as Record<string, number>;
}

/** merges.txt: one "left right" pair a line, after an optional "#version" line. */
function readMerges(text: string, file: string): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new LensInputError(file, `line ${i + 1} is not a merge of two pieces separated by one space: re-download merges.txt`);
    }
    merges.push([parts[0], parts[1]]);
  }
  if (merges.length === 0) throw new LensInputError(file, "merges.txt has no merges: re-download it from the model's repository");
  return merges;
}

function checkVocabObject(vocab: JsonObject, file: string, what: string): void {
  // 150k-entry vocabularies: one pass, ids marked in a byte array (a Map here costs 200 ms)
  let seen = new Uint8Array(1 << 18);
  let count = 0;
  for (const token in vocab) {
    const id = vocab[token];
    count++;
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id >= 2 ** 31) {
      throw new LensInputError(file, `the vocabulary in ${what} maps ${JSON.stringify(token.slice(0, 40))} to ${JSON.stringify(id)?.slice(0, 40)}, not a token id: re-download the tokenizer files`);
    }
    if (id >= seen.length) {
      const grown = new Uint8Array(Math.max(seen.length * 2, id + 1));
      grown.set(seen);
      seen = grown;
    }
    if (seen[id]) {
      const other = Object.keys(vocab).find((t) => vocab[t] === id) ?? "";
      throw new LensInputError(file, `the vocabulary in ${what} gives id ${id} to both ${JSON.stringify(other.slice(0, 40))} and ${JSON.stringify(token.slice(0, 40))}: re-download the tokenizer files`);
    }
    seen[id] = 1;
  }
  if (count === 0) throw new LensInputError(file, `the vocabulary in ${what} is empty: re-download the tokenizer files`);
}

/** Refuses a tokenizer.json whose model cannot tokenize anything (issue 15, defect 7). */
function checkTokenizerJson(json: JsonObject, file: string): void {
  const model = json["model"];
  if (!isObject(model)) throw new LensInputError(file, `tokenizer.json has no model: re-download it or ${RESAVE}`);
  const type = model["type"] ?? (model["merges"] !== undefined ? "BPE" : undefined);
  const vocab = model["vocab"];
  if (type === "Unigram" || (type === undefined && Array.isArray(vocab))) {
    if (!Array.isArray(vocab) || vocab.length === 0) throw new LensInputError(file, "the Unigram vocabulary in tokenizer.json is empty or not a list: re-download the tokenizer files");
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number" || !Number.isFinite(e[1])) {
        throw new LensInputError(file, `entry ${i} of the Unigram vocabulary in tokenizer.json is not a [piece, score] pair: re-download the tokenizer files`);
      }
    });
  } else if (type === "BPE" || type === "WordPiece" || type === "WordLevel") {
    if (!isObject(vocab)) throw new LensInputError(file, "the vocabulary in tokenizer.json is missing or not an object of token: id: re-download the tokenizer files");
    checkVocabObject(vocab, file, "tokenizer.json");
    if (type === "BPE") checkBpeMerges(model, file, "tokenizer.json");
  } else {
    throw new LensInputError(file, `tokenizer.json has a model of type ${JSON.stringify(type)}, not BPE, WordPiece, WordLevel or Unigram: re-download it or ${RESAVE}`);
  }
  const added = json["added_tokens"] ?? [];
  if (!Array.isArray(added)) throw new LensInputError(file, `added_tokens in tokenizer.json is not a list: re-download it or ${RESAVE}`);
  const tokens: AddedTokenEntry[] = added.map((t, i) => {
    if (!isObject(t) || typeof t["content"] !== "string" || t["content"] === "" || !Number.isSafeInteger(t["id"]) || (t["id"] as number) < 0) {
      throw new LensInputError(file, `added token ${i} in tokenizer.json has no content or id: re-download it or ${RESAVE}`);
    }
    const special = flag(t["special"], false);
    return { id: t["id"] as number, content: t["content"], special, normalized: flag(t["normalized"], !special), lstrip: flag(t["lstrip"], false), rstrip: flag(t["rstrip"], false), single_word: flag(t["single_word"], false) };
  });
  json["added_tokens"] = tokens;
}

/** Every merge joins two pieces of the vocabulary into a third, as the `tokenizers` library requires. */
function checkBpeMerges(model: JsonObject, file: string, what: string): void {
  const vocab = model["vocab"] as Record<string, number>;
  const merges = model["merges"];
  if (!Array.isArray(merges)) throw new LensInputError(file, `the BPE merges in ${what} are missing or not a list: re-download the tokenizer files`);
  const prefix = typeof model["continuing_subword_prefix"] === "string" ? model["continuing_subword_prefix"] : "";
  const has = (t: string) => Object.prototype.hasOwnProperty.call(vocab, t);
  merges.forEach((m, i) => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      throw new LensInputError(file, `BPE merge ${i + 1} in ${what} is not a pair of pieces: re-download the tokenizer files`);
    }
    const [a, b] = pair as [string, string];
    const joined = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
    const missing = [a, b, joined].find((t) => !has(t));
    if (missing !== undefined) {
      throw new LensInputError(file, `BPE merge ${i + 1} in ${what} (${JSON.stringify(`${a} ${b}`.slice(0, 40))}) uses ${JSON.stringify(missing.slice(0, 40))}, which the vocabulary lacks: the vocabulary and merges do not belong together; re-download the tokenizer files`);
    }
  });
}
