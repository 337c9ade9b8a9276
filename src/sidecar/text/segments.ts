/**
 * Which part of the prompt each token belongs to, for the attention breakdown and the token
 * strip: BOS, the chat template's own text, the user's text, image tokens (with their patch
 * row and column), and generated tokens.
 *
 * The user's text is found by character offsets: the prompt is located in the decoded
 * sequence, and each token's span is the growth of the decoded prefix it adds. A token that
 * overlaps the prompt's span is "text"; this keeps a merged piece like "▁What" (template
 * space + user word) on the user's side.
 */
import type { LensToken, Segment } from "../../shared/lensRecord";

export interface SegmentInput {
  ids: readonly number[];
  prompt: string;
  bosId?: number;
  imageTokenId?: number;
  /**
   * Image token grid (rows, cols) and whether the first image token is a CLS token with no patch.
   * Tokens beyond one grid belong to the next tile (Idefics3), whose index they carry.
   */
  imageGrid?: { rows: number; cols: number; leadingCls: boolean };
  decode: (ids: number[]) => string;
  label: (id: number) => string;
}

export function segmentTokens(input: SegmentInput): LensToken[] {
  const { ids } = input;
  const ends: number[] = [];
  for (let i = 0; i < ids.length; i++) ends.push(input.decode(ids.slice(0, i + 1) as number[]).length);
  const full = input.decode(ids as number[]);
  const promptStart = input.prompt ? full.lastIndexOf(input.prompt) : -1;
  const promptEnd = promptStart + input.prompt.length;

  const tokens: LensToken[] = [];
  let imageIndex = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const start = i === 0 ? 0 : ends[i - 1];
    let segment: Segment;
    let image: LensToken["image"];
    if (i === 0 && id === input.bosId) segment = "bos";
    else if (id === input.imageTokenId) {
      segment = "image";
      const grid = input.imageGrid;
      const patch = grid?.leadingCls ? imageIndex - 1 : imageIndex;
      if (grid && patch >= 0) {
        const perTile = grid.rows * grid.cols;
        const within = patch % perTile;
        image = { index: Math.floor(patch / perTile), row: Math.floor(within / grid.cols), col: within % grid.cols };
      }
      imageIndex++;
    } else if (promptStart >= 0 && start < promptEnd && ends[i] > promptStart) segment = "text";
    else segment = "template";
    tokens.push({ id, text: input.label(id), segment, ...(image ? { image } : {}) });
  }
  return tokens;
}
