/**
 * The lens read-outs of decoder states: the logit lens statistics of every analysed row, the
 * greedy next token, and full logits for callers that want whole distributions. They run the
 * engine's lens and unembedding graphs; which device those run on is the engine's business.
 */
import type { DecoderShape } from "../arch/types";
import type { Engine } from "../engine/engine";
import type { HostTensor, Provider } from "../runtime/ort";

export interface LensStats {
  topK: number;
  topkIds: BigInt64Array;
  topkProbs: Float32Array;
  entropy: Float32Array;
  kl: Float32Array;
  cosine: Float32Array;
  targets: BigInt64Array;
  targetProb: Float32Array;
  targetRank: Int32Array;
  /** The tracked token ids, sorted: the columns of trackedProb and trackedRank. */
  tracked: number[];
  trackedProb: Float32Array;
  trackedRank: Int32Array;
}

/**
 * A lens run keeps the logits of all its rows inside the graph up to this size, so that every
 * row is unembedded once (bench:lens: 414 rows x 32000 tokens, 53 MB). Larger runs go in parts,
 * and a run in parts that tracks the top-k unembeds twice. On the CPU 1 GiB holds a full record
 * of a large-vocabulary model: Qwen2-VL-2B's 29 hidden states x 29 positions x 151,936 tokens
 * are 511 MB, whose lens took 5.3 s in two parts under 256 MiB and 3.9 s in one (bench:real).
 * On a GPU the logits are one device buffer, and WebGPU's default limit for a buffer is 256 MiB
 * (an adapter may allow more; none was measured), so GPUs keep that. The memory estimate counts
 * twice the budget, or less where the model's context is shorter.
 */
export function logitsBudgetFor(provider: Provider): number {
  return provider === "cpu" ? 2 ** 30 : 256 * 2 ** 20;
}
export class LensReadout {
  constructor(
    private readonly engine: Engine,
    private readonly decoder: DecoderShape,
    private readonly logitsBudget: number,
  ) {}

  /**
   * The logit lens over hidden states [L+1, K, H] (transformers' convention): top-k, entropy,
   * KL to the final layer, cosine to the final state, probability and rank of targets ([K, T];
   * -1 = the final top-1), and probability and rank of the tracked tokens: `tracked` and, with
   * `trackTopK`, every token that is some row's top-k (`LensStats.tracked`, sorted).
   *
   * Every row is unembedded once: the logits of all rows stay inside the graph while it finds
   * the tokens to track and works out the statistics a position at a time. Only past
   * the logits budget (logitsBudgetFor) does it split the rows into parts, and then, when it tracks the top-k, it
   * unembeds twice: once for the top-k of every part, once for the statistics.
   */
  async lens(hiddenStates: Float32Array, opts: { topK: number; targets?: readonly (readonly number[])[]; tracked?: readonly number[]; trackTopK?: boolean }): Promise<LensStats> {
    const { numLayers, hiddenSize: H, vocabSize: V } = this.decoder;
    const layers = numLayers + 1;
    const K = hiddenStates.length / (layers * H);
    const topK = Math.min(opts.topK, V);
    const T = opts.targets?.[0]?.length ?? 1;
    const perPosition = layers * V;
    const partSize = Math.max(1, Math.floor(this.logitsBudget / (perPosition * 4)));
    const run = (start: number, n: number, mode: { full: boolean; tracked: readonly number[]; trackTopK: boolean }) => {
      const states = new Float32Array(layers * n * H);
      for (let l = 0; l < layers; l++) states.set(hiddenStates.subarray((l * K + start) * H, (l * K + start + n) * H), l * n * H);
      const targets = new BigInt64Array(n * T);
      for (let p = 0; p < n; p++) for (let t = 0; t < T; t++) targets[p * T + t] = BigInt(opts.targets?.[start + p]?.[t] ?? -1);
      return this.engine.runLensGraph({ data: states, dims: [layers, n, H] }, { data: targets, dims: [n, T] }, { topK, ...mode });
    };
    const starts = Array.from({ length: Math.ceil(K / partSize) }, (_, i) => i * partSize);
    let tracked = opts.tracked ?? [];
    let trackTopK = opts.trackTopK ?? false;
    if (trackTopK && starts.length > 1) {
      const union = new Set(tracked);
      for (const start of starts) for (const id of (await run(start, Math.min(partSize, K - start), { full: false, tracked: [], trackTopK: false }))["topk_ids"].data as BigInt64Array) union.add(Number(id));
      tracked = [...union].sort((a, b) => a - b);
      trackTopK = false;
    }
    const parts: Record<string, HostTensor>[] = [];
    for (const start of starts) parts.push(await run(start, Math.min(partSize, K - start), { full: true, tracked, trackTopK }));
    const trackedIds = Array.from(parts[0]["tracked"].data as BigInt64Array, Number);
    const M = trackedIds.length;
    const join = <A extends Float32Array | BigInt64Array | Int32Array>(name: string, perRow: number, byLayer: boolean): A => {
      const first = parts[0][name].data as A;
      const out = new (first.constructor as new (n: number) => A)(byLayer ? layers * K * perRow : K * perRow);
      if (perRow === 0) return out;
      let offset = 0;
      for (const part of parts) {
        const data = part[name].data as A;
        const n = byLayer ? data.length / (layers * perRow) : data.length / perRow;
        if (byLayer) {
          for (let l = 0; l < layers; l++) out.set(data.subarray(l * n * perRow, (l + 1) * n * perRow) as never, (l * K + offset) * perRow);
        } else {
          out.set(data as never, offset * perRow);
        }
        offset += n;
      }
      return out;
    };
    return {
      topK,
      topkIds: join("topk_ids", topK, true),
      topkProbs: join("topk_probs", topK, true),
      entropy: join("entropy", 1, true),
      kl: join("kl", 1, true),
      cosine: join("cosine", 1, true),
      targets: join("targets", T, false),
      targetProb: join("target_prob", T, true),
      targetRank: join<Int32Array>("target_rank", T, true),
      tracked: trackedIds,
      trackedProb: join("tracked_prob", M, true),
      trackedRank: join<Int32Array>("tracked_rank", M, true),
    };
  }

  /** The greedy next token from one final-layer state [H]: the lens graph's top-1 over that single row. */
  async greedyNext(finalState: Float32Array): Promise<number> {
    const states = { data: finalState, dims: [1, 1, this.decoder.hiddenSize] };
    const out = await this.engine.runLensGraph(states, { data: new BigInt64Array(1), dims: [1, 1] }, { topK: 1, full: false, tracked: [], trackTopK: false });
    return Number((out["topk_ids"].data as BigInt64Array)[0]);
  }

  /** The final logits [K, vocab] of hidden states [L+1, K, H] at K positions. */
  logits(hiddenStates: Float32Array, positions: number): Promise<Float32Array> {
    const { numLayers, hiddenSize: H } = this.decoder;
    return this.engine.unembed({ data: hiddenStates.slice(numLayers * positions * H), dims: [positions, H] });
  }
}
