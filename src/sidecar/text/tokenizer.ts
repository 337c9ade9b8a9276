/**
 * The four questions the runtime asks a tokenizer, answered by @huggingface/tokenizers either
 * in this thread (LocalTokenizer) or on a thread of its own (tokenizerThread.ts, for large
 * vocabularies). Both build it from the same assembled files (tokenizerFiles.ts) and give the
 * same answers.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { LensInputError } from "../errors";
import type { TokenizerFiles } from "./tokenizerFiles";

export interface TextTokenizer {
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: number[], skipSpecialTokens: boolean): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Frees what the tokenizer holds (its thread); asking it anything afterwards fails. */
  close(): void;
}

/** What the text side keeps of the tokenizer files besides the tokenizer itself. */
export type TokenizerSummary = Omit<TokenizerFiles, "tokenizerJson">;

export function summaryOf(files: TokenizerFiles): TokenizerSummary {
  const { tokenizerConfig, specialTokens, file, merged } = files;
  return { tokenizerConfig, specialTokens, file, merged };
}

/** A tokenizer in this thread. */
export class LocalTokenizer implements TextTokenizer {
  private constructor(private readonly tokenizer: Tokenizer) {}

  /** Builds the tokenizer of assembled files; a pipeline the library cannot build is refused naming the file. */
  static build(files: TokenizerFiles): LocalTokenizer {
    try {
      return new LocalTokenizer(new Tokenizer(files.tokenizerJson, files.tokenizerConfig));
    } catch (e) {
      throw new LensInputError(files.file, `cannot build the tokenizer (${(e as Error).message}): the tokenizer type may be unsupported; re-save it with a recent transformers`);
    }
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: number[], skipSpecialTokens: boolean): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  close(): void {}
}

/** One question to a tokenizer, as it crosses to its thread. */
export type TokenizerCall =
  | { op: "encode"; text: string; addSpecialTokens: boolean }
  | { op: "decode"; ids: number[]; skipSpecialTokens: boolean }
  | { op: "tokenToId"; token: string }
  | { op: "idToToken"; id: number };

/** The answer to a TokenizerCall. */
export function answer(tokenizer: TextTokenizer, call: TokenizerCall): unknown {
  switch (call.op) {
    case "encode":
      return tokenizer.encode(call.text, call.addSpecialTokens);
    case "decode":
      return tokenizer.decode(call.ids, call.skipSpecialTokens);
    case "tokenToId":
      return tokenizer.tokenToId(call.token);
    case "idToToken":
      return tokenizer.idToToken(call.id);
  }
}
