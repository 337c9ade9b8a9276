/**
 * What one prompt may cost, stated once. A chat template is a program from the model folder
 * and a prompt or a target comes from the user: without bounds a template loop over 1e9 items
 * took the process down, and a 32,000-character prompt ran the decoder out of memory. Every
 * refusal is a one-line LensInputError that states the limit.
 */
import { isObject, type JsonObject } from "../arch/configUtil";
import { LensInputError } from "../errors";

/** Characters in one prompt, before the chat template; far more than any context window holds. */
export const MAX_PROMPT_CHARS = 100_000;
/** Characters in a target, a tracked token or a word the lens follows: these are short words. */
export const MAX_TARGET_CHARS = 200;

/** Wall-clock time one chat-template render may take (a normal one takes about a millisecond). */
export const TEMPLATE_TIME_LIMIT_MS = 2_000;
/** Heap of the process that renders chat templates. */
export const TEMPLATE_MEMORY_MB = 256;
/** Items one `range()` in a chat template may yield (templates loop over a few messages). */
export const MAX_TEMPLATE_LOOP_ITEMS = 100_000;
/** Characters a rendered chat template may hold (the prompt's limit plus the template's own text). */
export const MAX_RENDERED_CHARS = 1_000_000;
/** Size of a chat template's source. */
export const MAX_TEMPLATE_SOURCE_BYTES = 1024 * 1024;

const count = (n: number) => n.toLocaleString("en-US");

/** Refuses a prompt over MAX_PROMPT_CHARS before it is rendered or tokenized. */
export function checkPromptLength(prompt: string): void {
  if (prompt.length > MAX_PROMPT_CHARS) {
    throw new LensInputError(undefined, `the prompt is ${count(prompt.length)} characters, over the ${count(MAX_PROMPT_CHARS)}-character limit: shorten it`);
  }
}

/** Refuses a target or tracked token over MAX_TARGET_CHARS before it is tokenized. */
export function checkTargetLength(text: string, what = "a target or tracked token"): void {
  if (text.length > MAX_TARGET_CHARS) {
    throw new LensInputError(undefined, `${what} is ${count(text.length)} characters, over the ${count(MAX_TARGET_CHARS)}-character limit: give a short word`);
  }
}

/**
 * The decoder's context length: `max_position_embeddings` of config.json, or of its
 * `text_config` (LLaVA, Qwen2-VL, Idefics3), with the field it came from; undefined when the
 * config states none (then nothing is checked).
 */
export function contextLengthOf(config: JsonObject): { length: number; field: string } | undefined {
  const text = config["text_config"];
  for (const [where, field] of [
    [isObject(text) ? text : undefined, "text_config.max_position_embeddings"],
    [config, "max_position_embeddings"],
  ] as const) {
    const v = where?.["max_position_embeddings"];
    if (typeof v === "number" && Number.isInteger(v) && v > 0) return { length: v, field };
  }
  return undefined;
}

/**
 * Refuses a tokenized prompt that, with the tokens to be generated, does not fit the model's
 * context: positions past it were never trained (and a long prefill runs out of memory).
 */
export function checkContextLength(opts: {
  promptTokens: number;
  imageTokens: number;
  maxNewTokens: number;
  context: { length: number; field: string } | undefined;
  configFile: string;
}): void {
  const { promptTokens, imageTokens, maxNewTokens, context } = opts;
  if (!context || promptTokens + maxNewTokens <= context.length) return;
  const parts = [imageTokens > 0 ? `${count(promptTokens)} tokens (${count(imageTokens)} of them image tokens)` : `${count(promptTokens)} tokens`];
  const total = maxNewTokens > 0 ? `${parts[0]} plus ${count(maxNewTokens)} new tokens make ${count(promptTokens + maxNewTokens)}` : parts[0];
  throw new LensInputError(
    opts.configFile,
    `the prompt is ${total}, over the model's context length of ${count(context.length)} (${context.field}): shorten the prompt${maxNewTokens > 0 ? " or lower maxNewTokens" : ""}`,
  );
}
