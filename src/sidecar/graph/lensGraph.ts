/**
 * The lens graph: transformers-convention hidden states in, small statistics out. Full
 * vocabulary logits exist only inside the graph. It is the model's only unembedding: the
 * decoder stops at the final norm, so the unembedding matrix is mapped once.
 *
 *   inputs   hidden_states [layers, K, H]  the last entry already final-normed (transformers'
 *                                          convention), the others get the final norm
 *            top_k [1] int64
 *            target_ids [K, T] int64     -1 = the final layer's top-1 at that position
 *            tracked_ids [M] int64       tokens whose rank and probability to report (M may be 0)
 *            track_topk [] bool          also track every token that is some row's top-k
 *            full [] bool                false: only topk_ids (a decode step's next token, say;
 *                                        `layers` may then be any count); the other outputs are empty
 *   outputs  topk_ids, topk_probs [layers, K, k]; entropy, kl, cosine [layers, K];
 *            targets [K, T] (resolved ids); tracked [M'] (tracked_ids and, with track_topk,
 *            every top-k id: sorted, unique); target_prob, target_rank [layers, K, T];
 *            tracked_prob, tracked_rank [layers, K, M']; ranks are int32
 *
 * One Gemm unembeds every row (one pass over the unembedding matrix instead of one per chunk:
 * 191 against 319 ms for 414 rows of the bench:lens checkpoint); the logits stay in the graph
 * while a Scan computes the statistics a position at a time, so the set of tokens to track
 * (known only once every row's top-k is) costs no second unembedding.
 *
 * Ranks are 1-based positions in a stable descending sort of each row's logits (ties go to
 * the lower id), computed for the queried ids only and without sorting the vocabulary
 * (exactRanks below): a full sort per row was two thirds of a lens run.
 */
import type { ElemType } from "./onnxBuilder";
import { type GraphCtx, computeInput, float32Output, rmsNorm, toCompute, toFloat32, weightProduct } from "./blocks";

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
  const { hiddenSize: H, vocabSize: V } = spec;
  const states = b.input("hidden_states", "float32", ["layers", "positions", H]);
  const topK = b.input("top_k", "int64", [1]);
  const targetIds = b.input("target_ids", "int64", ["positions", "targets"]);
  const trackedIds = b.input("tracked_ids", "int64", ["tracked"]);
  const trackTopK = b.input("track_topk", "bool", []);
  const full = b.input("full", "bool", []);

  // Every entry but the last gets the final norm; the last already has it.
  // In a half-precision model the norm and the unembedding run in its dtype, as the model's own
  // head would (the states are exactly its values, widened); the statistics are float32.
  const early = rmsNorm(ctx, toCompute(ctx, b.op("Slice", [states, b.i64(0), b.i64(-1), b.i64(0)])), spec.normWeight, H, spec.normEps);
  const last = b.op("Slice", [states, b.i64(-1), b.i64(2 ** 62), b.i64(0)]);
  // Rows position-major (position, then layer): each position's rows are one slice of the Scan below.
  const shape = b.op("Shape", [states]);
  const layerCount = b.op("Slice", [shape, b.i64(0), b.i64(1)]);
  const positions = b.op("Slice", [shape, b.i64(1), b.i64(2)]);
  const rows = b.op("Reshape", [b.op("Transpose", [b.op("Concat", [early, toCompute(ctx, last)], { axis: 0 })], { perm: [1, 0, 2] }), b.i64(-1, H)]);
  const logits = toFloat32(ctx, weightProduct(ctx, rows, spec.unembedding, [V, H], { hint: "logits" }));

  // The top-k is a heap selection (ties to the lower id, the order the ranks use).
  const [, topI] = b.opMulti("TopK", [logits, topK], 2, { axis: -1, largest: 1, sorted: 1 }, "topk");
  const byPosition = (x: string, last: string) => b.op("Reshape", [x, b.op("Concat", [positions, layerCount, last], { axis: 0 })]);
  const topIds = byPosition(topI, topK);
  b.output(b.op("Transpose", [topIds], { perm: [1, 0, 2] }), "topk_ids", "int64", ["layers", "positions", "k"]);

  const outputs: [string, ElemType, (number | string)[]][] = [
    ["topk_probs", "float32", ["layers", "positions", "k"]],
    ["entropy", "float32", ["layers", "positions"]],
    ["kl", "float32", ["layers", "positions"]],
    ["cosine", "float32", ["layers", "positions"]],
    ["targets", "int64", ["positions", "targets"]],
    ["tracked", "int64", ["tracked_out"]],
    ["target_prob", "float32", ["layers", "positions", "targets"]],
    ["target_rank", "int32", ["layers", "positions", "targets"]],
    ["tracked_prob", "float32", ["layers", "positions", "tracked_out"]],
    ["tracked_rank", "int32", ["layers", "positions", "tracked_out"]],
  ];
  const values = b.ifElse(
    full,
    outputs.map(([, type]) => type),
    () => lensStatistics(ctx, spec, { states, last, logits, topI, topIds, positions, targetIds, trackedIds, trackTopK }, rankMethod),
    () => outputs.map(([, type, dims]) => b.constant(type === "float32" || type === "int32" ? type : "int64", [], dims.map(() => 0))),
    "statistics",
  );
  outputs.forEach(([name, type, dims], i) => b.output(values[i], name, type, dims));
}

/** Final-normed states [K, H] in, logits [K, V] out: the unembedding alone, for whole distributions. */
export function buildUnembeddingGraph(ctx: GraphCtx, spec: LensHeadSpec): void {
  const states = computeInput(ctx, "final_states", ["positions", spec.hiddenSize]);
  float32Output(ctx, weightProduct(ctx, states, spec.unembedding, [spec.vocabSize, spec.hiddenSize], { hint: "unembed" }), "logits", ["positions", spec.vocabSize]);
}

/** Everything but the top-k ids, in the order buildLensGraph declares its outputs. */
function lensStatistics(
  ctx: GraphCtx,
  spec: LensHeadSpec,
  v: { states: string; last: string; logits: string; topI: string; topIds: string; positions: string; targetIds: string; trackedIds: string; trackTopK: string },
  rankMethod?: RankMethod,
): string[] {
  const { b } = ctx;
  const { numLayers: L, vocabSize: V } = spec;
  const { states, last, logits, topI, topIds, positions, targetIds, trackedIds, trackTopK } = v;

  // The tracked set: the given ids and, on request, every row's top-k.
  const allTop = b.op("Reshape", [topI, b.i64(-1)]);
  const topCount = b.op("Mul", [b.op("Cast", [b.op("Unsqueeze", [trackTopK, b.i64(0)])], { to: 7 }), b.op("Shape", [allTop])]);
  const tracked = b.op("Unique", [b.op("Concat", [trackedIds, b.op("Slice", [allTop, b.i64(0), topCount])], { axis: 0 })], { sorted: 1 }, "tracked_set");

  // Targets: -1 means the final layer's top-1.
  const finalTop1 = b.op("Reshape", [b.op("Slice", [topIds, b.i64(L, 0), b.i64(L + 1, 1), b.i64(1, 2)]), b.i64(-1, 1)]);
  const targets = b.op("Where", [b.op("Less", [targetIds, b.i64Scalar(0)]), b.op("Expand", [finalTop1, b.op("Shape", [targetIds])]), targetIds]);

  const dot = b.op("ReduceSum", [b.op("Mul", [states, last]), b.i64(-1)], { keepdims: 0 });
  const norm = (x: string) => b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [x, x]), b.i64(-1)], { keepdims: 0 })]);
  const cosine = b.op("Div", [dot, b.op("Max", [b.op("Mul", [norm(states), norm(last)]), b.f32(1e-8)])]);

  // Each position's queries: its targets, then the tracked ids, the same at every layer.
  const trackedCount = b.op("Shape", [tracked]);
  const trackedRows = b.op("Expand", [b.op("Unsqueeze", [tracked, b.i64(0)]), b.op("Concat", [positions, trackedCount], { axis: 0 })]);
  const queries = b.op("Concat", [targets, trackedRows], { axis: 1 }, "queries");
  const queryCount = b.op("Slice", [b.op("Shape", [queries]), b.i64(1), b.i64(2)]);

  // Statistics one position (all its layers) at a time: a Scan over the position-major
  // logits, whose slices are views, keeps the working set in cache (one position per step
  // took 480-490 ms for the bench:lens lens graph, four 525-530).
  const logits3 = b.op("Reshape", [logits, b.i64(-1, L + 1, V)]);
  const topK = b.op("Slice", [b.op("Shape", [topI]), b.i64(1), b.i64(2)]);
  const topI3 = b.op("Reshape", [topI, b.op("Concat", [b.i64(-1, L + 1), topK], { axis: 0 })]);
  const ones = b.op("Expand", [b.i32Scalar(1), b.i64(L + 1, V)], {}, "ones");
  const perPosition = b.scan(
    [
      { value: logits3, type: "float32" },
      { value: topI3, type: "int64" },
      { value: queries, type: "int64" },
    ],
    ["float32", "float32", "float32", "float32", "int32"],
    ([x, top, query]) => {
      const probs = b.op("Softmax", [x], { axis: -1 }, "probs");
      const topP = b.op("GatherElements", [probs, top], { axis: 1 }, "head_probs");
      // log-sum-exp per row from its top-1: x_top - log p_top (p_top is never tiny).
      const top1 = b.op("Slice", [top, b.i64(0), b.i64(1), b.i64(1)]);
      const lse = b.op("Sub", [b.op("GatherElements", [x, top1], { axis: 1 }), b.op("Log", [b.op("GatherElements", [probs, top1], { axis: 1 })])]);
      // Entropy = lse - sum p x; KL(final || layer) = sum p_final (logp_final - logp_layer),
      // with sum p_final logp_layer = (x_layer . p_final) - lse_layer: one matrix-vector product.
      const expectedLogit = b.op("ReduceSum", [b.op("Mul", [probs, x]), b.i64(-1)], { keepdims: 1 });
      const entropy = b.op("Squeeze", [b.op("Sub", [lse, expectedLogit]), b.i64(1)]);
      const finalProbs = b.op("Reshape", [b.op("Slice", [probs, b.i64(L), b.i64(L + 1), b.i64(0)]), b.i64(V, 1)]);
      const cross = b.op("Squeeze", [b.op("Sub", [b.op("MatMul", [x, finalProbs]), lse]), b.i64(1)]);
      const kl = b.op("Sub", [b.op("Slice", [cross, b.i64(L), b.i64(L + 1), b.i64(0)]), cross]);

      const q = b.op("Expand", [b.op("Unsqueeze", [query, b.i64(0)]), b.op("Concat", [b.i64(L + 1), queryCount], { axis: 0 })]);
      const queryProbs = b.op("GatherElements", [probs, q], { axis: 1 });
      return [topP, entropy, kl, queryProbs, exactRanks(ctx, x, q, V, rankMethod, ones)];
    },
    "positions",
  );
  const layerMajor = (x: string, rank: number) => b.op("Transpose", [x], { perm: rank === 2 ? [1, 0] : [1, 0, 2] });
  const [topP, entropy, kl, queryProbs, queryRanks] = perPosition.map((x, i) => layerMajor(x, i === 1 || i === 2 ? 2 : 3));

  const targetCount = b.op("Slice", [b.op("Shape", [targetIds]), b.i64(1), b.i64(2)]);
  const split = (x: string) => [b.op("Slice", [x, b.i64(0), targetCount, b.i64(2)]), b.op("Slice", [x, targetCount, b.i64(2 ** 62), b.i64(2)])];
  const [targetProb, trackedProb] = split(queryProbs);
  const [targetRank, trackedRank] = split(queryRanks);
  return [topP, entropy, kl, cosine, targets, tracked, targetProb, targetRank, trackedProb, trackedRank];
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

/** `ones`, optionally: an int32 tensor of ones of the logits' shape, made once outside a loop. */
export function exactRanks(ctx: GraphCtx, logits: string, queries: string, V: number, method: RankMethod = V <= SORT_UP_TO ? "sort" : "bins", ones?: string): string {
  return method === "sort" ? ranksBySort(ctx, logits, queries, V) : ranksByBins(ctx, logits, queries, V, ones);
}

/** Sort each row (TopK with k = V) and invert the permutation, so any id's rank is one gather away. */
function ranksBySort(ctx: GraphCtx, logits: string, queries: string, V: number): string {
  const { b } = ctx;
  const [, order] = b.opMulti("TopK", [logits, b.i64(V)], 2, { axis: -1, largest: 1, sorted: 1 }, "sort");
  const ladder = b.op("Expand", [b.constant("int64", Array.from({ length: V }, (_, j) => j), [1, V]), b.op("Shape", [logits])]);
  const rankOf = b.op("ScatterElements", [ladder, order, ladder], { axis: 1 }, "rank_of");
  return b.op("Cast", [b.op("Add", [b.op("GatherElements", [rankOf, queries], { axis: 1 }), b.i64Scalar(1)])], { to: 6 }, "ranks");
}

function ranksByBins(ctx: GraphCtx, logits: string, queries: string, V: number, ones?: string): string {
  const { b } = ctx;
  // Index arithmetic in int32 (half the memory traffic of int64); sizes stay far below 2^31.
  const int32 = (x: string) => b.op("Cast", [x], { to: 6 });
  const int64 = (x: string) => b.op("Cast", [x], { to: 7 });
  const flat = (x: string) => b.op("Reshape", [x, b.i64(-1)]);
  const rows = b.op("Slice", [b.op("Shape", [logits]), b.i64(0), b.i64(1)]);
  const n = b.op("Slice", [b.op("Shape", [queries]), b.i64(1), b.i64(2)]);
  // Queries in (value, then id descending) ascending order: order by id descending first, then
  // a stable ascending sort by value keeps that order among equal values.
  const [, byId] = b.opMulti("TopK", [queries, n], 2, { axis: -1, largest: 1, sorted: 1 });
  const [, byValue] = b.opMulti("TopK", [b.op("GatherElements", [logits, b.op("GatherElements", [queries, byId], { axis: 1 })], { axis: 1 }), n], 2, { axis: -1, largest: 0, sorted: 1 });
  const perm = b.op("GatherElements", [byId, byValue], { axis: 1 }, "query_order");
  const sortedIds = b.op("GatherElements", [queries, perm], { axis: 1 });
  const sortedValues = b.op("GatherElements", [logits, sortedIds], { axis: 1 });

  // Bins span the queries' values only: bin 0 holds what lies below the lowest query (it comes
  // before none), bin B+1 what lies above the highest (before all), and B uniform bins lie
  // between, B at least V and many more than there are queries, so that few entries share a
  // bin with a query. Any monotone binning gives exact ranks; a good one keeps it fast. The
  // half-bin offset keeps the lowest query out of bin 0 despite rounding; four passes in all.
  const bins = b.op("Max", [b.i64(V), b.op("Mul", [n, b.i64(BINS_PER_QUERY)])], {}, "bin_count");
  const B = b.op("Cast", [b.op("Squeeze", [bins, b.i64(0)])], { to: 1 });
  const lo = b.op("Slice", [sortedValues, b.i64(0), b.i64(1), b.i64(1)]);
  const hi = b.op("Slice", [sortedValues, b.i64(-1), b.i64(2 ** 62), b.i64(1)]);
  const scale = b.op("Div", [B, b.op("Max", [b.op("Sub", [hi, lo]), b.f32(1e-30)])]);
  const offset = b.op("Sub", [b.f32(1.5), b.op("Mul", [lo, scale])]);
  const bin = int32(b.op("Clip", [b.op("Add", [b.op("Mul", [logits, scale]), offset]), b.f32(0), b.op("Add", [B, b.f32(1)])], {}, "bin_value"));
  const sortedBins = b.op("GatherElements", [bin, sortedIds], { axis: 1 });

  const filled = (value: string, shape: string) => b.op("Expand", [value, shape]);
  const countInto = (shape: string, at: string, weights = filled(b.i32Scalar(1), b.op("Shape", [at]))) => b.op("ScatterElements", [filled(b.i32Scalar(0), shape), at, weights], { axis: 1, reduction: "add" });
  const queriesIn = countInto(b.op("Concat", [rows, b.op("Add", [bins, b.i64(2)])], { axis: 0 }), sortedBins);
  const queriesBelow = b.op("CumSum", [queriesIn, b.i64Scalar(1)], { exclusive: 1 }, "queries_below");

  // Every entry comes before the queries of lower bins: c0_j = queriesBelow[bin_j].
  const below = b.op("GatherElements", [queriesBelow, bin], { axis: 1 });
  const hist0 = countInto(b.op("Concat", [rows, b.op("Add", [n, b.i64(1)])], { axis: 0 }), below, ones);

  // Entries sharing a bin with a query, against that bin's queries (at most C of them, which
  // sit together in the sorted order starting at queriesBelow). Slots past a bin's queries
  // read the next bins' queries, whose values are strictly higher (a lower bin means a lower
  // value), so they are never beaten and need no mask; a +inf sentinel ends each row. Values
  // are read with flat Gathers (GatherND's index tuples cost several times more).
  const sharing = b.op("GatherElements", [queriesIn, bin], { axis: 1 });
  const at = b.op("NonZero", [sharing], {}, "shared_bins");
  const rowOf = b.op("Squeeze", [b.op("Slice", [at, b.i64(0), b.i64(1), b.i64(0)]), b.i64(0)]);
  const id = b.op("Squeeze", [b.op("Slice", [at, b.i64(1), b.i64(2), b.i64(0)]), b.i64(0)]);
  const pick = (x: string) => b.op("Gather", [flat(x), b.op("Add", [b.op("Mul", [rowOf, b.i64Scalar(V)]), id])], { axis: 0 });
  const candidateBelow = pick(below);
  const width = b.op("Add", [n, b.i64(1)]);
  const first = b.op("Add", [b.op("Mul", [rowOf, width]), int64(candidateBelow)]);
  const padded = (x: string, sentinel: string) => flat(b.op("Concat", [x, b.op("Expand", [sentinel, b.op("Concat", [rows, b.i64(1)], { axis: 0 })])], { axis: 1 }));
  const valuesPadded = padded(sortedValues, b.f32(Infinity));
  const idsPadded = padded(sortedIds, b.i64Scalar(0));
  // Whether candidates (value v, id) come after the queries at flat positions `at` (same shape).
  const beaten = (at: string, v: string, entryId: string) => {
    const queryValue = b.op("Gather", [valuesPadded, at], { axis: 0 });
    const queryId = b.op("Gather", [idsPadded, at], { axis: 0 });
    return b.op("Cast", [b.op("Or", [b.op("Less", [queryValue, v]), b.op("And", [b.op("Equal", [queryValue, v]), b.op("Greater", [queryId, entryId])])])], { to: 6 });
  };
  // Most query bins hold one query: every candidate is compared with its bin's first query,
  // and only candidates of bins with more (found with NonZero) with the rest, up to C - 1 more.
  const value = pick(logits);
  const inBinFirst = beaten(first, value, id);
  const crowded = b.op("Squeeze", [b.op("NonZero", [b.op("Greater", [pick(sharing), b.i32Scalar(1)])]), b.i64(0)], {}, "crowded_bins");
  const C = int64(b.op("ReduceMax", [b.op("GatherElements", [queriesIn, sortedBins], { axis: 1 })], { keepdims: 0 }, "bin_capacity"));
  const more = b.op("Range", [b.i64Scalar(1), b.op("Max", [C, b.i64Scalar(1)]), b.i64Scalar(1)]);
  const crowdedRowEnd = b.op("Unsqueeze", [b.op("Add", [b.op("Mul", [b.op("Gather", [rowOf, crowded], { axis: 0 }), width]), n]), b.i64(1)]);
  const moreAt = b.op("Min", [b.op("Add", [b.op("Unsqueeze", [b.op("Gather", [first, crowded], { axis: 0 }), b.i64(1)]), more]), crowdedRowEnd]);
  const unsq = (x: string) => b.op("Unsqueeze", [b.op("Gather", [x, crowded], { axis: 0 }), b.i64(1)]);
  const inBinMore = b.op("ReduceSum", [beaten(moreAt, unsq(value), unsq(id)), b.i64(1)], { keepdims: 0 });
  const inBin = b.op("ScatterElements", [inBinFirst, crowded, inBinMore], { axis: 0, reduction: "add" });

  // Move each such entry from c0 to c0 + inBin in the histogram: one scatter of -1s and +1s.
  const histRow = b.op("Mul", [rowOf, b.op("Add", [n, b.i64(1)])]);
  const from = b.op("Add", [histRow, int64(candidateBelow)]);
  const to = b.op("Add", [histRow, int64(b.op("Add", [candidateBelow, inBin]))]);
  const step = filled(b.i32Scalar(1), b.op("Shape", [inBin]));
  const moved = b.op("ScatterElements", [flat(hist0), b.op("Concat", [from, to], { axis: 0 }), b.op("Concat", [b.op("Neg", [step]), step], { axis: 0 })], { axis: 0, reduction: "add" });
  const hist = b.op("Reshape", [moved, b.op("Shape", [hist0])]);

  const ahead = b.op("CumSum", [hist, b.i64Scalar(1)], { exclusive: 1, reverse: 1 });
  const sortedRanks = b.op("Add", [b.op("Slice", [ahead, b.i64(0), n, b.i64(1)]), b.i32Scalar(1)]);
  return b.op("ScatterElements", [filled(b.i32Scalar(0), b.op("Shape", [queries])), perm, sortedRanks], { axis: 1 }, "ranks");
}
