/**
 * Tokenizer and chat template of a model folder, the way transformers' processors use them:
 * render the chat template, expand each image placeholder to the number of image tokens the
 * vision tower yields, then tokenize (adding BOS unless the template already wrote it).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { LensInputError } from "../errors";
import type { JsonObject } from "../arch/configUtil";
import { readJsonObject, settledValue } from "../model/jsonFile";
import { readInputText } from "../util/readInput";
import { checkPromptLength, checkTargetLength, MAX_TEMPLATE_SOURCE_BYTES } from "./limits";
import { renderChatTemplate } from "./templateRenderer";
import type { TextTokenizer } from "./tokenizer";
import { openTokenizer } from "./tokenizerThread";

export interface ChatContentPart {
  type: "image" | "text";
  text?: string;
}

export class TextProcessor {
  private constructor(
    private readonly tokenizer: TextTokenizer,
    readonly tokenizerConfig: JsonObject,
    /** The chat template source and the file it came from, if the folder has one. */
    readonly chatTemplate: { source: string; file: string } | undefined,
    private readonly specialTokens: Record<string, string>,
  ) {}

  /** `thread`: build the tokenizer on a thread of its own, whatever its size (tokenizerThread.ts; for tests). */
  static async open(folder: string, processorConfig: JsonObject | undefined, opts: { thread?: boolean } = {}): Promise<TextProcessor> {
    // Every file the text side may need is read at once; errors still come in this order.
    const [tokenizerOpen, jinjaRead, templateJsonRead] = await Promise.allSettled([
      openTokenizer(folder, opts),
      readChatTemplateJinja(path.join(folder, "chat_template.jinja")),
      readJsonObject(path.join(folder, "chat_template.json"), "chat_template.json", true),
    ]);
    const { tokenizer, summary } = settledValue(tokenizerOpen);
    try {
      const chatTemplate = chooseChatTemplate(folder, settledValue(jinjaRead), () => settledValue(templateJsonRead), summary.tokenizerConfig, processorConfig);
      return new TextProcessor(tokenizer, summary.tokenizerConfig, chatTemplate, summary.specialTokens);
    } catch (e) {
      tokenizer.close();
      throw e;
    }
  }

  /** Frees the tokenizer's thread, if it has one; the text processor cannot tokenize afterwards. */
  close(): void {
    this.tokenizer.close();
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.tokenToId(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.idToToken(id);
  }

  get bosToken(): string | undefined {
    return this.specialTokens["bos_token"];
  }

  /** The tokenizer's unknown token, when it has one (a word piece the vocabulary lacks becomes it). */
  get unkTokenId(): number | undefined {
    const unk = this.specialTokens["unk_token"];
    return unk === undefined ? undefined : this.tokenToId(unk);
  }

  get eosTokenId(): number | undefined {
    const eos = this.specialTokens["eos_token"];
    return eos === undefined ? undefined : this.tokenToId(eos);
  }

  /**
   * How one token reads on its own: its decoded text, or its vocabulary piece (`<0xE2>`) when
   * it is a fragment of a multi-byte character that does not decode alone.
   */
  tokenLabel(id: number): string {
    let label = this.labels.get(id);
    if (label === undefined) {
      const text = this.decode([id]);
      label = text.includes("\uFFFD") ? (this.idToToken(id) ?? text) : text;
      this.labels.set(id, label);
    }
    return label;
  }

  /** tokenLabel's answers: a lens record labels its ~1,000 tokens, 8 ms of decoding a run. */
  private readonly labels = new Map<number, string>();

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tokenizer.encode(text, addSpecialTokens);
  }

  /**
   * Ids of `text` as it would continue a sequence, without special tokens. SentencePiece-style
   * tokenizers prepend "▁" themselves, so a leading space in `text` would become a second,
   * lone "▁" piece; for them the text is encoded without its leading spaces (" red" and
   * "red" both give "▁red"). Byte-level BPE tokenizers ("Ġred") take the text as it is.
   */
  encodeContinuation(text: string): number[] {
    checkTargetLength(text);
    return this.encode(this.prependsSpace ? text.trimStart() : text, false);
  }

  private prependsSpaceCache: boolean | undefined;
  private get prependsSpace(): boolean {
    if (this.prependsSpaceCache === undefined) {
      const first = this.encode("a", false)[0];
      this.prependsSpaceCache = first !== undefined && (this.idToToken(first) ?? "").startsWith("\u2581");
    }
    return this.prependsSpaceCache;
  }

  decode(ids: number[], skipSpecialTokens = false): string {
    return this.tokenizer.decode(ids, skipSpecialTokens);
  }

  /**
   * The prompt as the model sees it: the chat template rendered for one user turn (the image
   * first, then the text) with the generation prompt, or the raw text when there is no template.
   * The template runs in its own process within the bounds of limits.ts (templateRenderer.ts).
   */
  async renderPrompt(prompt: string, withImage: boolean): Promise<string> {
    checkPromptLength(prompt);
    if (!this.chatTemplate) {
      if (withImage) throw new LensInputError(undefined, "this model folder has no chat template, so there is nowhere to put the image: add chat_template.jinja");
      return prompt;
    }
    const { source, file } = this.chatTemplate;
    if (source.length > MAX_TEMPLATE_SOURCE_BYTES) {
      throw new LensInputError(file, `the chat template is ${source.length.toLocaleString("en-US")} characters, over the ${MAX_TEMPLATE_SOURCE_BYTES.toLocaleString("en-US")}-character limit: check the template`);
    }
    const content: ChatContentPart[] = withImage ? [{ type: "image" }, { type: "text", text: prompt }] : [{ type: "text", text: prompt }];
    return renderChatTemplate(source, { messages: [{ role: "user", content }], add_generation_prompt: true, ...this.specialTokens }, file);
  }

  /**
   * Token ids of a rendered prompt. BOS is added by the tokenizer unless the template wrote it
   * already (transformers' apply_chat_template(tokenize=True) makes the same choice).
   */
  encodePrompt(rendered: string): number[] {
    const bos = this.bosToken;
    return this.encode(rendered, !(bos && rendered.startsWith(bos)));
  }
}

/** chat_template.jinja's text, or undefined when the folder has none. */
async function readChatTemplateJinja(file: string): Promise<{ source: string; file: string } | undefined> {
  try {
    await fs.stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new LensInputError(file, `cannot read the chat template: ${(e as Error).message}`);
  }
  // a regular file of bounded size: a FIFO or /dev/zero here would hold the sidecar
  return { source: await readInputText(file, { maxBytes: MAX_TEMPLATE_SOURCE_BYTES, what: "the chat template", fix: "use a regular chat_template.jinja" }), file };
}

/**
 * Where transformers looks for a chat template, newest convention first: chat_template.jinja,
 * chat_template.json (its read error counts only when there is no .jinja, so a broken one beside
 * a .jinja does not matter), processor_config.json, tokenizer_config.json.
 */
function chooseChatTemplate(
  folder: string,
  jinja: { source: string; file: string } | undefined,
  templateJson: () => JsonObject | undefined,
  tokenizerConfig: JsonObject,
  processorConfig: JsonObject | undefined,
): { source: string; file: string } | undefined {
  if (jinja) return jinja;
  const jsonFile = path.join(folder, "chat_template.json");
  const json = templateJson();
  if (json && typeof json["chat_template"] === "string") return { source: json["chat_template"], file: jsonFile };
  if (json && "chat_template" in json) throw new LensInputError(jsonFile, `chat_template must be the template's text, got ${describeJson(json["chat_template"])}: repair or re-download the file`);
  if (processorConfig && typeof processorConfig["chat_template"] === "string") {
    return { source: processorConfig["chat_template"], file: path.join(folder, "processor_config.json") };
  }
  const t = tokenizerConfig["chat_template"];
  const tokFile = path.join(folder, "tokenizer_config.json");
  if (typeof t === "string") return { source: t, file: tokFile };
  if (Array.isArray(t)) {
    const named = t.find((x) => (x as { name?: string }).name === "default") ?? t[0];
    const source = (named as { template?: unknown } | undefined)?.template;
    if (typeof source === "string") return { source, file: tokFile };
  }
  if (t !== undefined && t !== null) throw new LensInputError(tokFile, `chat_template must be the template's text or a list of {name, template}, got ${describeJson(t)}: repair or re-download the file`);
  return undefined;
}

/** A JSON value in a few characters, for messages: "an empty list", "a list of 3 items", "5". */
function describeJson(v: unknown): string {
  if (Array.isArray(v)) return v.length === 0 ? "an empty list" : `a list of ${v.length} items without a template`;
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
