/**
 * The lens graph: transformers-convention hidden states in, small statistics out. Full
 * vocabulary logits exist only inside the graph. It is the model's only unembedding: the
 * decoder stops at the final norm, so the unembedding matrix is mapped once.
 *
 *   inputs   hidden_states [L+1, K, H]   entry L already final-normed (transformers' convention)
 *            top_k [1] int64
 *            target_ids [K, T] int64     -1 = the final layer's top-1 at that position
 *            tracked_ids [M] int64       tokens whose rank and probability to report (M may be 0)
 *            full [] bool                false: only topk_ids (a decode step's next token and
 *                                        the tokens to track); the other outputs are empty
 *   outputs  topk_ids, topk_probs [L+1, K, k]; entropy, kl, cosine [L+1, K];
 *            targets [K, T] (resolved ids); target_prob, target_rank [L+1, K, T];
 *            tracked_prob, tracked_rank [L+1, K, M]
 *
 * Ranks are 1-based positions in a stable descending sort of each row's logits (ties go to
 * the lower id), computed for the queried ids only and without sorting the vocabulary
 * (exactRanks below): a full sort per row was two thirds of a lens run.
 */
import type { ElemType } from "./onnxBuilder";
import { type GraphCtx, param, rmsNorm } from "./blocks";

export interface LensHeadSpec {
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  normWeight: string;
  normEps: number;
  unembedding: string;
}

export function buildLensGraph(ctx: GraphCtx, spec: LensHeadSpec, rankMethod?: RankMethod): void {
  const { b } = ctx;
  const { numLayers: L, hiddenSize: H, vocabSize: V } = spec;
  const states = b.input("hidden_states", "float32", [L + 1, "positions", H]);
  const topK = b.input("top_k", "int64", [1]);
  const targetIds = b.input("target_ids", "int64", ["positions", "targets"]);
  const trackedIds = b.input("tracked_ids", "int64", ["tracked"]);
  const full = b.input("full", "bool", []);

  // Entries 0..L-1 get the final norm; entry L already has it.
  const early = rmsNorm(ctx, b.op("Slice", [states, b.i64(0), b.i64(L), b.i64(0)]), spec.normWeight, H, spec.normEps);
  const last = b.op("Slice", [states, b.i64(L), b.i64(L + 1), b.i64(0)]);
  const rows = b.op("Reshape", [b.op("Concat", [early, last], { axis: 0 }), b.i64(-1, H)]);
  const logits = b.op("Gemm", [rows, param(ctx, spec.unembedding, [V, H])], { transB: 1 }, "logits");

  // The top-k is a heap selection (ties to the lower id, the order the ranks use).
  const [, topI] = b.opMulti("TopK", [logits, topK], 2, { axis: -1, largest: 1, sorted: 1 }, "topk");
  const kShape = b.op("Concat", [b.i64(L + 1, -1), topK], { axis: 0 });
  b.output(b.op("Reshape", [topI, kShape]), "topk_ids", "int64", [L + 1, "positions", "k"]);

  const outputs: [string, ElemType, (number | string)[]][] = [
    ["topk_probs", "float32", ["layers", "positions", "k"]],
    ["entropy", "float32", ["layers", "positions"]],
    ["kl", "float32", ["layers", "positions"]],
    ["cosine", "float32", ["layers", "positions"]],
    ["targets", "int64", ["positions", "targets"]],
    ["target_prob", "float32", ["layers", "positions", "targets"]],
    ["target_rank", "int64", ["layers", "positions", "targets"]],
    ["tracked_prob", "float32", ["layers", "positions", "tracked"]],
    ["tracked_rank", "int64", ["layers", "positions", "tracked"]],
  ];
  const values = b.ifElse(
    full,
    outputs.map(([, type]) => type),
    () => lensStatistics(ctx, spec, { states, last, logits, topI, kShape, targetIds, trackedIds }, rankMethod),
    () => outputs.map(([, type, dims]) => b.constant(type === "float32" ? "float32" : "int64", [], dims.map(() => 0))),
    "statistics",
  );
  outputs.forEach(([name, type, dims], i) => b.output(values[i], name, type, dims));
}

/** Final-normed states [K, H] in, logits [K, V] out: the unembedding alone, for whole distributions. */
export function buildUnembeddingGraph(ctx: GraphCtx, spec: LensHeadSpec): void {
  const { b } = ctx;
  const states = b.input("final_states", "float32", ["positions", spec.hiddenSize]);
  b.output(b.op("Gemm", [states, param(ctx, spec.unembedding, [spec.vocabSize, spec.hiddenSize])], { transB: 1 }), "logits", "float32", ["positions", spec.vocabSize]);
}

/** Everything but the top-k ids, in the order buildLensGraph declares its outputs. */
function lensStatistics(
  ctx: GraphCtx,
  spec: LensHeadSpec,
  v: { states: string; last: string; logits: string; topI: string; kShape: string; targetIds: string; trackedIds: string },
  rankMethod?: RankMethod,
): string[] {
  const { b } = ctx;
  const { numLayers: L, vocabSize: V } = spec;
  const { states, last, logits, topI, kShape, targetIds, trackedIds } = v;
  const logp = b.op("LogSoftmax", [logits], { axis: -1 }, "logp");
  const probs = b.op("Exp", [logp], {}, "probs");
  const byLayer = (x: string, last: number | string) => b.op("Reshape", [x, typeof last === "number" ? b.i64(L + 1, -1, last) : last]);
  const topP = b.op("Reshape", [b.op("GatherElements", [probs, topI], { axis: 1 }, "head_probs"), kShape]);

  const entropy = byLayer(b.op("Neg", [b.op("ReduceSum", [b.op("Mul", [probs, logp]), b.i64(-1)], { keepdims: 0 })]), b.i64(L + 1, -1));

  // KL(final || layer): the final layer's rows broadcast over all layers.
  const logp3 = byLayer(logp, V);
  const finalLogp = b.op("Slice", [logp3, b.i64(L), b.i64(L + 1), b.i64(0)]);
  const kl = b.op("ReduceSum", [b.op("Mul", [b.op("Exp", [finalLogp]), b.op("Sub", [finalLogp, logp3])]), b.i64(-1)], { keepdims: 0 });

  const dot = b.op("ReduceSum", [b.op("Mul", [states, last]), b.i64(-1)], { keepdims: 0 });
  const norm = (x: string) => b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [x, x]), b.i64(-1)], { keepdims: 0 })]);
  const cosine = b.op("Div", [dot, b.op("Max", [b.op("Mul", [norm(states), norm(last)]), b.f32(1e-8)])]);

  const positions = b.op("Slice", [b.op("Shape", [states]), b.i64(1), b.i64(2)]);

  // Targets: -1 means the final layer's top-1 (ArgMax keeps the first maximum, like the ranks).
  const finalLogits = b.op("Slice", [byLayer(logits, V), b.i64(L), b.i64(L + 1), b.i64(0)]);
  const finalTop1 = b.op("ArgMax", [b.op("Squeeze", [finalLogits, b.i64(0)])], { axis: -1, keepdims: 1 });
  const targets = b.op("Where", [b.op("Less", [targetIds, b.i64Scalar(0)]), b.op("Expand", [finalTop1, b.op("Shape", [targetIds])]), targetIds]);

  // One query row per (layer, position): its targets, then the tracked ids. An explicit row
  // count, and allowzero, because the tracked axis may be 0 (no tracked tokens).
  const rowCount = b.op("Mul", [b.i64(L + 1), positions]);
  const targetRows = b.op("Reshape", [
    b.op("Expand", [b.op("Unsqueeze", [targets, b.i64(0)]), b.op("Concat", [b.i64(L + 1), b.op("Shape", [targets])], { axis: 0 })]),
    b.op("Concat", [rowCount, b.i64(-1)], { axis: 0 }),
  ]);
  const trackedCount = b.op("Shape", [trackedIds]);
  const trackedRows = b.op("Reshape", [b.op("Expand", [b.op("Unsqueeze", [trackedIds, b.i64(0)]), b.op("Concat", [rowCount, trackedCount], { axis: 0 })]), b.op("Concat", [rowCount, trackedCount], { axis: 0 })], { allowzero: 1 });
  const queries = b.op("Concat", [targetRows, trackedRows], { axis: 1 });
  const ranks = exactRanks(ctx, logits, queries, V, rankMethod);
  const queryProbs = b.op("GatherElements", [probs, queries], { axis: 1 });

  const targetCount = b.op("Slice", [b.op("Shape", [targetIds]), b.i64(1), b.i64(2)]);
  const split = (x: string) => {
    const part = (from: string, to: string, count: string) =>
      b.op("Reshape", [b.op("Slice", [x, from, to, b.i64(1)]), b.op("Concat", [b.i64(L + 1), positions, count], { axis: 0 })], { allowzero: 1 });
    const total = b.op("Slice", [b.op("Shape", [x]), b.i64(1), b.i64(2)]);
    return [part(b.i64(0), targetCount, targetCount), part(targetCount, total, trackedCount)];
  };
  const [targetProb, trackedProb] = split(queryProbs);
  const [targetRank, trackedRank] = split(ranks);
  return [topP, entropy, kl, cosine, targets, targetProb, targetRank, trackedProb, trackedRank];
}

/**
 * rank[r, n] = 1 + #{ j : logits[r, j] > x } + #{ j < q : logits[r, j] == x }, for q =
 * queries[r, n] and x = logits[r, q]: the 1-based position of q in row r's stable descending
 * order, exactly. Small vocabularies sort each row; large ones avoid the sort (it was two
 * thirds of a lens run at 32k tokens) with a few linear passes per row:
 *
 * every vocabulary entry j is bucketed by value (monotone: a higher bin means a higher value,
 * an equal value the same bin) into B uniform bins between the lowest and highest query, plus
 * one bin below and one above. With the queries sorted ascending in that same order (value,
 * then id descending), let c_j be the number of queries that j comes before: all queries in
 * lower bins, plus those in j's own bin that it beats. Only entries that share a bin with some
 * query need that last, exact comparison; they are picked out with NonZero. A histogram of c
 * then gives, for the i-th query, the entries that come before it: those with c_j > i.
 */
/** Bins per query, at least: enough that few entries share a bin with a query. */
const BINS_PER_QUERY = 16;
/** Up to this vocabulary size a full sort per row is cheaper than binning (and never slower on clustered logits). */
const SORT_UP_TO = 4096;

export type RankMethod = "sort" | "bins";

export function exactRanks(ctx: GraphCtx, logits: string, queries: string, V: number, method: RankMethod = V <= SORT_UP_TO ? "sort" : "bins"): string {
  return method === "sort" ? ranksBySort(ctx, logits, queries, V) : ranksByBins(ctx, logits, queries, V);
}

/** Sort each row (TopK with k = V) and invert the permutation, so any id's rank is one gather away. */
function ranksBySort(ctx: GraphCtx, logits: string, queries: string, V: number): string {
  const { b } = ctx;
  const [, order] = b.opMulti("TopK", [logits, b.i64(V)], 2, { axis: -1, largest: 1, sorted: 1 }, "sort");
  const ladder = b.op("Expand", [b.op("Unsqueeze", [b.op("Range", [b.i64Scalar(0), b.i64Scalar(V), b.i64Scalar(1)]), b.i64(0)]), b.op("Shape", [logits])]);
  const rankOf = b.op("ScatterElements", [ladder, order, ladder], { axis: 1 }, "rank_of");
  return b.op("Add", [b.op("GatherElements", [rankOf, queries], { axis: 1 }), b.i64Scalar(1)], {}, "ranks");
}

function ranksByBins(ctx: GraphCtx, logits: string, queries: string, V: number): string {
  const { b } = ctx;
  // Index arithmetic in int32 (half the memory traffic of int64); sizes stay far below 2^31.
  const int32 = (x: string) => b.op("Cast", [x], { to: 6 });
  const int64 = (x: string) => b.op("Cast", [x], { to: 7 });
  const rows = b.op("Slice", [b.op("Shape", [logits]), b.i64(0), b.i64(1)]);
  const n = b.op("Slice", [b.op("Shape", [queries]), b.i64(1), b.i64(2)]);
  // Queries in (value, then id descending) ascending order: order by id descending first, then
  // a stable ascending sort by value keeps that order among equal values.
  const [, byId] = b.opMulti("TopK", [queries, n], 2, { axis: -1, largest: 1, sorted: 1 });
  const [, byValue] = b.opMulti("TopK", [b.op("GatherElements", [logits, b.op("GatherElements", [queries, byId], { axis: 1 })], { axis: 1 }), n], 2, { axis: -1, largest: 0, sorted: 1 });
  const perm = b.op("GatherElements", [byId, byValue], { axis: 1 }, "query_order");
  const sortedIds = b.op("GatherElements", [queries, perm], { axis: 1 });
  const sortedValues = b.op("GatherElements", [logits, sortedIds], { axis: 1 });

  // Bins span the queries' values only: bin 0 holds everything below the lowest query (it
  // comes before none), bin B+1 everything above the highest (before all), and B uniform bins
  // lie between, B at least V and many more than there are queries, so that few entries share
  // a bin with a query. Any monotone binning gives exact ranks; a good one keeps it fast.
  const bins = b.op("Max", [b.i64(V), b.op("Mul", [n, b.i64(BINS_PER_QUERY)])], {}, "bin_count");
  const B = int32(b.op("Squeeze", [bins, b.i64(0)]));
  const lo = b.op("ReduceMin", [sortedValues], { axes: [1], keepdims: 1 });
  const hi = b.op("ReduceMax", [sortedValues], { axes: [1], keepdims: 1 });
  const scale = b.op("Div", [b.op("Cast", [B], { to: 1 }), b.op("Max", [b.op("Sub", [hi, lo]), b.f32(1e-30)])]);
  const inRange = b.op("Add", [b.op("Min", [int32(b.op("Floor", [b.op("Mul", [b.op("Sub", [logits, lo]), scale])])), b.op("Sub", [B, b.i32Scalar(1)])]), b.i32Scalar(1)]);
  const bin = b.op("Where", [b.op("Greater", [logits, hi]), b.op("Add", [B, b.i32Scalar(1)]), b.op("Where", [b.op("Less", [logits, lo]), b.i32Scalar(0), inRange])], {}, "bin");
  const sortedBins = b.op("GatherElements", [bin, sortedIds], { axis: 1 });

  const filled = (value: string, shape: string) => b.op("Expand", [value, shape]);
  const countInto = (shape: string, at: string) => b.op("ScatterElements", [filled(b.i32Scalar(0), shape), at, filled(b.i32Scalar(1), b.op("Shape", [at]))], { axis: 1, reduction: "add" });
  const queriesIn = countInto(b.op("Concat", [rows, b.op("Add", [bins, b.i64(2)])], { axis: 0 }), sortedBins);
  const queriesBelow = b.op("CumSum", [queriesIn, b.i64Scalar(1)], { exclusive: 1 }, "queries_below");

  // Every entry comes before the queries of lower bins: c0_j = queriesBelow[bin_j].
  const below = b.op("GatherElements", [queriesBelow, bin], { axis: 1 });
  const hist0 = countInto(b.op("Concat", [rows, b.op("Add", [n, b.i64(1)])], { axis: 0 }), below);

  // Entries sharing a bin with a query, against that bin's queries (at most C of them, which
  // sit together in the sorted order starting at queriesBelow).
  const sharing = b.op("GatherElements", [queriesIn, bin], { axis: 1 });
  const at = b.op("Transpose", [b.op("NonZero", [b.op("Greater", [sharing, b.i32Scalar(0)])])], { perm: [1, 0] }, "shared_bins");
  const pick = (x: string) => b.op("GatherND", [x, at]);
  const candidateBelow = pick(below);
  const candidateIn = pick(sharing);
  const C = b.op("ReduceMax", [queriesIn], { keepdims: 0 }, "bin_capacity");
  const slots = b.op("Range", [b.i32Scalar(0), C, b.i32Scalar(1)]);
  const lastQuery = b.op("Sub", [int32(b.op("Squeeze", [n, b.i64(0)])), b.i32Scalar(1)]);
  const queryAt = b.op("Min", [b.op("Add", [b.op("Unsqueeze", [candidateBelow, b.i64(1)]), slots]), lastQuery]);
  const pairs = b.op("Concat", [
    b.op("Expand", [b.op("Unsqueeze", [b.op("Slice", [at, b.i64(0), b.i64(1), b.i64(1)]), b.i64(2)]), b.op("Concat", [b.op("Shape", [queryAt]), b.i64(1)], { axis: 0 })]),
    int64(b.op("Unsqueeze", [queryAt, b.i64(2)])),
  ], { axis: 2 });
  const queryValue = b.op("GatherND", [sortedValues, pairs]);
  const queryId = int32(b.op("GatherND", [sortedIds, pairs]));
  const value = b.op("Unsqueeze", [pick(logits), b.i64(1)]);
  const id = int32(b.op("Slice", [at, b.i64(1), b.i64(2), b.i64(1)]));
  const valid = b.op("Less", [slots, b.op("Unsqueeze", [candidateIn, b.i64(1)])]);
  const beats = b.op("And", [valid, b.op("Or", [b.op("Less", [queryValue, value]), b.op("And", [b.op("Equal", [queryValue, value]), b.op("Greater", [queryId, id])])])]);
  const inBin = b.op("ReduceSum", [b.op("Cast", [beats], { to: 6 }), b.i64(1)], { keepdims: 0 });

  // Move each such entry from c0 to c0 + inBin in the histogram.
  const rowOf = b.op("Slice", [at, b.i64(0), b.i64(1), b.i64(1)]);
  const moveFrom = b.op("Concat", [rowOf, int64(b.op("Unsqueeze", [candidateBelow, b.i64(1)]))], { axis: 1 });
  const moveTo = b.op("Concat", [rowOf, int64(b.op("Unsqueeze", [b.op("Add", [candidateBelow, inBin]), b.i64(1)]))], { axis: 1 });
  const ones = filled(b.i32Scalar(1), b.op("Shape", [inBin]));
  const hist = b.op("ScatterND", [b.op("ScatterND", [hist0, moveFrom, b.op("Neg", [ones])], { reduction: "add" }), moveTo, ones], { reduction: "add" });

  const ahead = b.op("CumSum", [hist, b.i64Scalar(1)], { exclusive: 1, reverse: 1 });
  const sortedRanks = int64(b.op("Add", [b.op("Slice", [ahead, b.i64(0), n, b.i64(1)]), b.i32Scalar(1)]));
  return b.op("ScatterElements", [filled(b.i64Scalar(0), b.op("Shape", [queries])), perm, sortedRanks], { axis: 1 }, "ranks");
}
