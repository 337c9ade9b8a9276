/**
 * Published tokenizer layouts open as transformers opens them: tools/reference/
 * make_tokenizer_fixtures.py records what transformers' AutoTokenizer renders and encodes for
 * each layout (test/fixtures/tokenizers/cases/*.json), and the TextProcessor must give the same
 * chat prompt, ids, decoded text and special tokens. Files that cannot be a tokenizer are refused
 * with one line naming the file.
 *
 * The Qwen layouts use vocab.json + merges.txt of ../shared/reference-configs (4.4 MB, not copied
 * into the repository), which sits beside the repository in CI.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { TextProcessor } from "../../src/sidecar/text/textProcessor";
import { readTokenizerFiles } from "../../src/sidecar/text/tokenizerFiles";
import { openTokenizer, readsOffThread } from "../../src/sidecar/text/tokenizerThread";

const REPO = path.resolve(__dirname, "../..");
const FIXTURES = path.join(REPO, "test/fixtures/tokenizers");
const QWEN25 = path.resolve(REPO, "../shared/reference-configs/Qwen__Qwen2.5-VL-3B-Instruct");
const LLAVA = path.join(REPO, "test/fixtures/models/llava-gqa-f32/model");

interface Case {
  text: string;
  ids: number[];
  ids_no_special: number[];
  decoded: string;
  decoded_skip_special: string;
  tokenizers_ids?: number[];
}

interface Reference {
  layout: string;
  chat: { text: string; rendered: string; add_special_tokens: boolean; ids: number[] };
  special_tokens: Record<string, string | null>;
  eos_token_id: number | null;
  added_tokens: Record<string, string>;
  cases: Case[];
}

const temps: string[] = [];
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-tokenizer-"));
  temps.push(dir);
  return dir;
}

function readMergePairs(): [string, string][] {
  return fs
    .readFileSync(path.join(QWEN25, "merges.txt"), "utf8")
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#version"))
    .map((l) => l.split(" ") as [string, string]);
}

/** The Qwen2-VL-2B-style folder: the skeleton tokenizer.json filled with the published vocabulary and merges. */
function qwen2vlStyleFolder(): string {
  const dir = tempDir();
  const src = path.join(FIXTURES, "qwen2vl-style");
  const skeleton = JSON.parse(fs.readFileSync(path.join(src, "tokenizer.skeleton.json"), "utf8")) as { model: Record<string, unknown> };
  expect(skeleton.model.vocab).toBe("@vocab.json");
  skeleton.model.vocab = JSON.parse(fs.readFileSync(path.join(QWEN25, "vocab.json"), "utf8"));
  const pairs = readMergePairs();
  skeleton.model.merges = skeleton.model.merges === "@merges.txt as pairs" ? pairs : pairs.map((p) => p.join(" "));
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(skeleton));
  for (const f of ["tokenizer_config.json", "chat_template.json"]) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  return dir;
}

function qwen2LegacyFolder(): string {
  const dir = tempDir();
  const src = path.join(FIXTURES, "qwen2-legacy");
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  for (const f of ["vocab.json", "merges.txt"]) fs.copyFileSync(path.join(QWEN25, f), path.join(dir, f));
  return dir;
}

const LAYOUTS: Record<string, () => string> = {
  "qwen25vl-published": () => QWEN25,
  "qwen2vl-style": qwen2vlStyleFolder,
  "qwen2-legacy": qwen2LegacyFolder,
  "llava-spm-bpe": () => LLAVA,
};

describe("the shared reference configs are beside the repository", () => {
  it("has the Qwen2.5-VL-3B-Instruct tokenizer files", () => {
    for (const f of ["vocab.json", "merges.txt", "tokenizer_config.json"]) expect(fs.existsSync(path.join(QWEN25, f)), `${QWEN25}/${f}`).toBe(true);
    expect(fs.existsSync(path.join(QWEN25, "tokenizer.json"))).toBe(false);
  });
});

for (const [name, folderOf] of Object.entries(LAYOUTS)) for (const thread of [undefined, true]) {
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, "cases", `${name}.json`), "utf8")) as Reference;
  // by its size (Qwen's vocabularies on a thread, LLaVA's in place), and on a thread whatever its size
  describe(`${name} (${ref.layout}${thread ? ", its tokenizer on a thread" : ""}) matches transformers`, () => {
    let text: TextProcessor;
    const open = async () => (text ??= await TextProcessor.open(folderOf(), undefined, { thread }));
    afterAll(() => text?.close());

    it("renders the chat prompt and encodes it as transformers does", async () => {
      const t = await open();
      expect(await t.renderPrompt(ref.chat.text, true)).toBe(ref.chat.rendered);
      expect(t.encode(ref.chat.rendered, ref.chat.add_special_tokens)).toEqual(ref.chat.ids);
    });

    it("has transformers' special tokens and added token ids", async () => {
      const t = await open();
      expect(t.bosToken).toBe(ref.special_tokens["bos_token"] ?? undefined);
      expect(t.eosTokenId).toBe(ref.eos_token_id ?? undefined);
      const added = Object.entries(ref.added_tokens);
      expect(added.length).toBeGreaterThan(0);
      for (const [id, content] of added) expect([content, t.tokenToId(content)]).toEqual([content, Number(id)]);
    });

    it.each(ref.cases.map((c) => [JSON.stringify(c.text).slice(0, 50), c] as const))("encodes and decodes %s", async (_label, c) => {
      const t = await open();
      expect(t.encode(c.text, true)).toEqual(c.ids);
      expect(t.encode(c.text, false)).toEqual(c.ids_no_special);
      if (c.tokenizers_ids) expect(t.encode(c.text, true)).toEqual(c.tokenizers_ids);
      if (c.ids_no_special.length > 0) {
        expect(t.decode(c.ids_no_special)).toBe(c.decoded);
        expect(t.decode(c.ids_no_special, true)).toBe(c.decoded_skip_special);
      }
    });
  });
}

describe("what was merged", () => {
  it("the Qwen2-VL-style tokenizer.json has 12 added tokens; <|image_pad|> comes from tokenizer_config.json", async () => {
    const files = await readTokenizerFiles(qwen2vlStyleFolder());
    expect(files.merged).toEqual(["tokenizer.json: 12 added tokens", "tokenizer_config.json added_tokens_decoder: 22 tokens", "22 added tokens in all"]);
    const pad = (files.tokenizerJson["added_tokens"] as { id: number; content: string; special: boolean; normalized: boolean }[]).find((t) => t.content === "<|image_pad|>");
    expect(pad).toMatchObject({ id: 151655, special: true, normalized: false });
  });

  it("a token declared again with other flags takes the later flags, keeping its id", async () => {
    const dir = qwen2vlStyleFolder();
    const cfgFile = path.join(dir, "tokenizer_config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as { added_tokens_decoder: Record<string, Record<string, unknown>> };
    cfg.added_tokens_decoder["151652"]!.rstrip = true; // <|vision_start|>, also in tokenizer.json
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const t = await TextProcessor.open(dir, undefined);
    expect(t.tokenToId("<|vision_start|>")).toBe(151652);
    // rstrip: the spaces after the token are not encoded
    expect(t.encode("<|vision_start|>   x", false)).toEqual(t.encode("<|vision_start|>x", false));
  });
});

/** Opening `dir` fails with one LensInputError line that names `file` and matches `pattern`. */
async function expectRefused(dir: string, file: string, pattern: RegExp): Promise<void> {
  let error: unknown;
  try {
    await TextProcessor.open(dir, undefined);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(LensInputError);
  const message = (error as Error).message;
  expect(message).not.toContain("\n");
  expect(message.startsWith(`${path.join(dir, file)}: `), message).toBe(true);
  expect(message).toMatch(pattern);
}

function llavaWith(edit: (tokenizer: Record<string, unknown>) => void): string {
  const dir = tempDir();
  for (const f of ["tokenizer.json", "tokenizer_config.json", "chat_template.json"]) fs.copyFileSync(path.join(LLAVA, f), path.join(dir, f));
  const file = path.join(dir, "tokenizer.json");
  const json = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  edit(json);
  fs.writeFileSync(file, JSON.stringify(json));
  return dir;
}

const model = (t: Record<string, unknown>) => t["model"] as Record<string, unknown>;

describe("tokenizer files that cannot be a tokenizer are refused with one line", () => {
  it("an empty vocabulary in tokenizer.json", async () => {
    await expectRefused(llavaWith((t) => (model(t).vocab = {})), "tokenizer.json", /vocabulary in tokenizer\.json is empty/);
  });

  it("a vocabulary that is not an object", async () => {
    await expectRefused(llavaWith((t) => (model(t).vocab = "garbage")), "tokenizer.json", /vocabulary in tokenizer\.json is missing or not an object/);
  });

  it("a vocabulary whose ids are not ids", async () => {
    await expectRefused(llavaWith((t) => ((model(t).vocab as Record<string, unknown>)["▁red"] = "x")), "tokenizer.json", /maps "▁red" to "x", not a token id/);
  });

  it("two tokens with one id", async () => {
    await expectRefused(llavaWith((t) => ((model(t).vocab as Record<string, unknown>)["▁red"] = 5)), "tokenizer.json", /gives id 5 to both/);
  });

  it("merges that name pieces the vocabulary lacks", async () => {
    await expectRefused(llavaWith((t) => (model(t).merges = [["no", "such"]])), "tokenizer.json", /BPE merge 1 in tokenizer\.json .* uses "no", which the vocabulary lacks/);
  });

  it("no model", async () => {
    await expectRefused(llavaWith((t) => delete t["model"]), "tokenizer.json", /tokenizer\.json has no model/);
  });

  it("an unknown model type", async () => {
    await expectRefused(llavaWith((t) => (model(t).type = "Garbage")), "tokenizer.json", /model of type "Garbage"/);
  });

  it("an added token without content", async () => {
    await expectRefused(llavaWith((t) => (t["added_tokens"] = [{ id: 3 }])), "tokenizer.json", /added token 0 in tokenizer\.json has no content or id/);
  });

  it("tokenizer.json that is not JSON", async () => {
    const dir = llavaWith(() => undefined);
    fs.writeFileSync(path.join(dir, "tokenizer.json"), "{ not json");
    await expectRefused(dir, "tokenizer.json", /not valid JSON/);
  });

  it("an empty vocab.json", async () => {
    const dir = qwen2LegacyFolder();
    fs.writeFileSync(path.join(dir, "vocab.json"), "{}");
    await expectRefused(dir, "vocab.json", /vocabulary in vocab\.json is empty/);
  });

  it("a merges.txt line that is not a merge", async () => {
    const dir = qwen2LegacyFolder();
    fs.writeFileSync(path.join(dir, "merges.txt"), "#version: 0.2\nĠ Ġ\ngarbage\n");
    await expectRefused(dir, "merges.txt", /line 3 is not a merge/);
  });

  it("merges.txt from another vocabulary", async () => {
    const dir = qwen2LegacyFolder();
    fs.writeFileSync(path.join(dir, "merges.txt"), "Ġ Ġ\nzzq xxw\n");
    await expectRefused(dir, "merges.txt", /BPE merge 2 in merges\.txt .* uses "zzq", which the vocabulary lacks/);
  });

  it("an added_tokens_decoder entry without content", async () => {
    const dir = qwen2vlStyleFolder();
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ added_tokens_decoder: { "151655": { special: true } } }));
    await expectRefused(dir, "tokenizer_config.json", /added_tokens_decoder entry "151655" is not an id with a token content/);
  });
});

describe("layouts that are not supported say what to do", () => {
  it("only a SentencePiece tokenizer.model", async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "tokenizer.model"), Buffer.from([0x0a, 0x01]));
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "LlamaTokenizer" }));
    let message = "";
    await TextProcessor.open(dir, undefined).catch((e: Error) => (message = e.message));
    expect(message).toBe(`${dir}: the tokenizer is only a SentencePiece tokenizer.model, which cannot be read here: save a tokenizer.json beside it with transformers (AutoTokenizer.from_pretrained(folder).save_pretrained(folder))`);
  });

  it("vocab.json + merges.txt of a tokenizer class that is not byte-level BPE", async () => {
    const dir = qwen2LegacyFolder();
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "CLIPTokenizer" }));
    await expectRefused(dir, "tokenizer_config.json", /tokenizer class CLIPTokenizer with vocab\.json \+ merges\.txt is not supported .*save_pretrained/);
  });

  it("vocab.json without merges.txt", async () => {
    const dir = qwen2LegacyFolder();
    fs.rmSync(path.join(dir, "merges.txt"));
    let message = "";
    await TextProcessor.open(dir, undefined).catch((e: Error) => (message = e.message));
    expect(message).toMatch(new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: the folder has vocab\\.json but no merges\\.txt`));
  });

  it("no tokenizer files at all", async () => {
    await expectRefused(tempDir(), "tokenizer.json", /tokenizer\.json does not exist \(nor vocab\.json \+ merges\.txt\)/);
  });
});

describe("large tokenizers live on a thread of their own, with the same answers and the same errors", () => {
  it("gives Qwen's 4.4 MB vocab.json + merges.txt a thread and builds the small LLaVA tokenizer.json in place", async () => {
    expect(await readsOffThread(QWEN25)).toBe(true);
    expect(await readsOffThread(qwen2vlStyleFolder())).toBe(true);
    expect(await readsOffThread(LLAVA)).toBe(false);
  });

  for (const [name, folderOf] of Object.entries(LAYOUTS)) {
    it(`${name}: the thread's tokenizer answers as the one built in place`, async () => {
      const dir = folderOf();
      const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, "cases", `${name}.json`), "utf8")) as Reference;
      const [inPlace, onThread] = [await openTokenizer(dir, { thread: false }), await openTokenizer(dir, { thread: true })];
      try {
        expect(onThread.summary).toEqual(inPlace.summary);
        const texts = [...ref.cases.map((c) => c.text), ref.chat.rendered, ""];
        for (const t of texts) for (const special of [true, false]) expect(onThread.tokenizer.encode(t, special)).toEqual(inPlace.tokenizer.encode(t, special));
        const ids = ref.cases.flatMap((c) => c.ids);
        for (const skip of [true, false]) expect(onThread.tokenizer.decode(ids, skip)).toEqual(inPlace.tokenizer.decode(ids, skip));
        for (const id of [0, 1, 2, 100, ...Object.keys(ref.added_tokens).map(Number), 10_000_000]) expect(onThread.tokenizer.idToToken(id)).toEqual(inPlace.tokenizer.idToToken(id));
        for (const token of [...Object.values(ref.added_tokens), "not a token at all"]) expect(onThread.tokenizer.tokenToId(token)).toEqual(inPlace.tokenizer.tokenToId(token));
      } finally {
        inPlace.tokenizer.close();
        onThread.tokenizer.close();
      }
    });
  }

  it("a refusal on the thread is the same one-line LensInputError, naming the same file", async () => {
    const broken = [llavaWith((t) => ((model(t).vocab as Record<string, unknown>)["▁red"] = 5)), tempDir()];
    for (const dir of broken) {
      const inPlace = await openTokenizer(dir, { thread: false }).then(() => undefined, (e: unknown) => e);
      const onThread = await openTokenizer(dir, { thread: true }).then(() => undefined, (e: unknown) => e);
      expect(inPlace).toBeInstanceOf(LensInputError);
      expect(onThread).toBeInstanceOf(LensInputError);
      expect([(onThread as LensInputError).message, (onThread as LensInputError).file]).toEqual([(inPlace as LensInputError).message, (inPlace as LensInputError).file]);
    }
  });

  it("a pipeline the library cannot build is refused the same way on the thread", async () => {
    const dir = llavaWith((t) => (t["pre_tokenizer"] = { type: "NoSuchPreTokenizer" }));
    const inPlace = await openTokenizer(dir, { thread: false }).then(() => undefined, (e: unknown) => e);
    const onThread = await openTokenizer(dir, { thread: true }).then(() => undefined, (e: unknown) => e);
    expect((inPlace as Error).message).toMatch(/cannot build the tokenizer .*re-save it with a recent transformers/);
    expect([(onThread as LensInputError).message, (onThread as LensInputError).file]).toEqual([(inPlace as LensInputError).message, (inPlace as LensInputError).file]);
  });

  it("once closed with its model, the thread's tokenizer says so instead of answering", async () => {
    const { tokenizer } = await openTokenizer(LLAVA, { thread: true });
    expect(tokenizer.tokenToId("<image>")).toBeTypeOf("number");
    tokenizer.close();
    expect(() => tokenizer.encode("a red cube", true)).toThrow(/the tokenizer was closed with its model: open the model again/);
  });
});
