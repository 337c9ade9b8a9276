/**
 * The lens graph: transformers-convention hidden states in, small statistics out. Full
 * vocabulary logits exist only inside the graph.
 *
 *   inputs   hidden_states [L+1, K, H]   entry L already final-normed (transformers' convention)
 *            top_k [1] int64
 *            target_ids [K, T] int64     -1 = the final layer's top-1 at that position
 *            tracked_ids [M] int64       tokens whose rank and probability to report (M may be 0)
 *   outputs  topk_ids, topk_probs [L+1, K, k]; entropy, kl, cosine [L+1, K];
 *            targets [K, T] (resolved ids); target_prob, target_rank [L+1, K, T];
 *            tracked_prob, tracked_rank [L+1, K, M]
 *
 * Ranks are 1-based positions in a stable descending sort of each row's logits (ties go to
 * the lower id). They are computed for every token at once: sort each row (TopK with k = V),
 * then invert the permutation with ScatterElements, so any id's rank is one gather away.
 */
import { type GraphCtx, param, rmsNorm } from "./blocks";

export interface LensHeadSpec {
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  normWeight: string;
  normEps: number;
  unembedding: string;
}

export function buildLensGraph(ctx: GraphCtx, spec: LensHeadSpec): void {
  const { b } = ctx;
  const { numLayers: L, hiddenSize: H, vocabSize: V } = spec;
  const states = b.input("hidden_states", "float32", [L + 1, "positions", H]);
  const topK = b.input("top_k", "int64", [1]);
  const targetIds = b.input("target_ids", "int64", ["positions", "targets"]);
  const trackedIds = b.input("tracked_ids", "int64", ["tracked"]);

  // Entries 0..L-1 get the final norm; entry L already has it.
  const early = rmsNorm(ctx, b.op("Slice", [states, b.i64(0), b.i64(L), b.i64(0)]), spec.normWeight, H, spec.normEps);
  const last = b.op("Slice", [states, b.i64(L), b.i64(L + 1), b.i64(0)]);
  const rows = b.op("Reshape", [b.op("Concat", [early, last], { axis: 0 }), b.i64(-1, H)]);
  const logits = b.op("Gemm", [rows, param(ctx, spec.unembedding, [V, H])], { transB: 1 }, "logits");
  const logp = b.op("LogSoftmax", [logits], { axis: -1 }, "logp");
  const probs = b.op("Exp", [logp], {}, "probs");
  const byLayer = (x: string, last: number | string) => b.op("Reshape", [x, typeof last === "number" ? b.i64(L + 1, -1, last) : last]);

  const entropy = b.op("Neg", [b.op("ReduceSum", [b.op("Mul", [probs, logp]), b.i64(-1)], { keepdims: 0 })]);
  b.output(byLayer(entropy, b.i64(L + 1, -1)), "entropy", "float32", [L + 1, "positions"]);

  // KL(final || layer): the final layer's rows broadcast over all layers.
  const logp3 = byLayer(logp, V);
  const finalLogp = b.op("Slice", [logp3, b.i64(L), b.i64(L + 1), b.i64(0)]);
  const kl = b.op("ReduceSum", [b.op("Mul", [b.op("Exp", [finalLogp]), b.op("Sub", [finalLogp, logp3])]), b.i64(-1)], { keepdims: 0 });
  b.output(kl, "kl", "float32", [L + 1, "positions"]);

  const dot = b.op("ReduceSum", [b.op("Mul", [states, last]), b.i64(-1)], { keepdims: 0 });
  const norm = (x: string) => b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [x, x]), b.i64(-1)], { keepdims: 0 })]);
  const cosine = b.op("Div", [dot, b.op("Max", [b.op("Mul", [norm(states), norm(last)]), b.f32(1e-8)])]);
  b.output(cosine, "cosine", "float32", [L + 1, "positions"]);

  // rankOf[r, id] = 1 + position of id in row r's stable descending order.
  const vocab = b.op("Slice", [b.op("Shape", [logits]), b.i64(1), b.i64(2)]);
  const [, order] = b.opMulti("TopK", [logits, vocab], 2, { axis: -1, largest: 1, sorted: 1 }, "sort");

  // The top-k is the head of that same order, so top-k and ranks always agree, ties included.
  const topI = b.op("Slice", [order, b.i64(0), topK, b.i64(1)], {}, "head_of_order");
  const topP = b.op("GatherElements", [probs, topI], { axis: 1 }, "head_probs");
  const kShape = b.op("Concat", [b.i64(L + 1, -1), topK], { axis: 0 });
  b.output(b.op("Reshape", [topP, kShape]), "topk_probs", "float32", [L + 1, "positions", "k"]);
  b.output(b.op("Reshape", [topI, kShape]), "topk_ids", "int64", [L + 1, "positions", "k"]);
  const ladder = b.op("Expand", [b.op("Unsqueeze", [b.op("Range", [b.i64Scalar(0), b.i64Scalar(V), b.i64Scalar(1)]), b.i64(0)]), b.op("Shape", [logits])]);
  const rankOf = b.op("Add", [b.op("ScatterElements", [ladder, order, ladder], { axis: 1 }), b.i64Scalar(1)], {}, "rank_of");

  const positions = b.op("Slice", [b.op("Shape", [states]), b.i64(1), b.i64(2)]);

  // Per-row lookups: `ids` is [L+1, K, X] -> [R, X] for GatherElements over the vocabulary axis.
  const lookup = (ids: string, name: string, dims: (number | string)[]) => {
    // An explicit row count: Reshape cannot infer -1 when X is 0 (no tracked tokens).
    const rowCount = b.op("Mul", [b.i64(L + 1), positions]);
    // allowzero: a 0 in these shapes is a real zero-sized axis, not "copy the input's dim".
    const flat = b.op("Reshape", [ids, b.op("Concat", [rowCount, b.op("Slice", [b.op("Shape", [ids]), b.i64(2), b.i64(3)])], { axis: 0 })], { allowzero: 1 });
    const shape = b.op("Shape", [ids]);
    b.output(b.op("Reshape", [b.op("GatherElements", [probs, flat], { axis: 1 }), shape], { allowzero: 1 }), `${name}_prob`, "float32", dims);
    b.output(b.op("Reshape", [b.op("GatherElements", [rankOf, flat], { axis: 1 }), shape], { allowzero: 1 }), `${name}_rank`, "int64", dims);
  };

  // Targets: -1 means the final layer's top-1 (ArgMax keeps the first maximum, like the sort).
  const finalLogits = b.op("Slice", [byLayer(logits, V), b.i64(L), b.i64(L + 1), b.i64(0)]);
  const finalTop1 = b.op("ArgMax", [b.op("Squeeze", [finalLogits, b.i64(0)])], { axis: -1, keepdims: 1 });
  const targets = b.op("Where", [b.op("Less", [targetIds, b.i64Scalar(0)]), b.op("Expand", [finalTop1, b.op("Shape", [targetIds])]), targetIds]);
  b.output(targets, "targets", "int64", ["positions", "targets"]);
  const layersOf = (x: string) => b.op("Expand", [b.op("Unsqueeze", [x, b.i64(0)]), b.op("Concat", [b.i64(L + 1), b.op("Shape", [x])], { axis: 0 })]);
  lookup(layersOf(targets), "target", [L + 1, "positions", "targets"]);

  const trackedGrid = b.op("Expand", [b.op("Reshape", [trackedIds, b.i64(1, 1, -1)]), b.op("Concat", [b.i64(L + 1), positions, b.op("Shape", [trackedIds])], { axis: 0 })]);
  lookup(trackedGrid, "tracked", [L + 1, "positions", "tracked"]);
}
