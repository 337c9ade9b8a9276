/** Sweep rows and aggregates on small rows whose figures are worked out by hand below. */
import { describe, expect, it } from "vitest";
import { aggregateRows, aggregatesToCsv, answerMatches, median, rowsToCsv, type SweepRow } from "../../src/shared/sweep";

function row(id: string, variant: string, group: string, over: Partial<SweepRow>): SweepRow {
  return {
    v: 1, id, index: 0, image: `${id}.png`, imageSha256: null, promptName: "prompt", prompt: "Q", variant, groups: { group },
    expected: "red", generated: "red", correct: true, headMask: null, answerPosition: 5, targetId: 7, targetText: "red", finalId: 7, finalText: "red",
    entropy: [0, 0, 0], targetProb: [0, 0, 0], targetRank: [1, 1, 1], kl: [0, 0, 0], cosine: [1, 1, 1], top1: [7, 7, 7], finalRank: [1, 1, 1],
    convergenceLayer: 0, imageShare: [0, 0], seconds: 0, ...over,
  };
}

describe("sweep aggregates", () => {
  const rows = [
    row("a", "base", "x", { entropy: [3, 2, 1], targetProb: [0.1, 0.5, 0.9], targetRank: [10, 2, 1], convergenceLayer: 2, imageShare: [0.5, 0.25] }),
    row("b", "base", "x", { entropy: [1, 1, 1], targetProb: [0.3, 0.3, 0.6], targetRank: [4, 1, 1], convergenceLayer: 1, imageShare: [0.1, 0.35], correct: false, generated: "blue" }),
    row("c", "base", "y", { entropy: [2, 0, 0], targetProb: [0.2, 0.7, 0.8], targetRank: [7, 3, 1], convergenceLayer: 2, imageShare: [0.3, 0.3] }),
    row("d", "masked", "y", { entropy: [5, 5, 5], convergenceLayer: 0, correct: null, expected: null }),
  ];
  const a = aggregateRows(rows, ["group"]);

  it("groups per variant: all, then each value of each key, sorted", () => {
    expect(a.layers).toBe(3);
    expect(a.groups.map((g) => `${g.variant}/${g.key}=${g.value}:${g.n}`)).toEqual(["base/all=all:3", "base/group=x:2", "base/group=y:1", "masked/all=all:1", "masked/group=y:1"]);
  });

  it("means, accuracy, convergence histogram and median, worked out by hand", () => {
    const all = a.groups[0];
    expect(all.meanEntropy).toEqual([2, 1, 2 / 3]); // (3+1+2)/3, (2+1+0)/3, (1+1+0)/3
    expect(all.meanTargetProb.map((v) => +v.toFixed(12))).toEqual([0.2, 0.5, 0.766666666667]); // (.1+.3+.2)/3, (.5+.3+.7)/3, (.9+.6+.8)/3
    expect(all.meanTargetRank).toEqual([7, 2, 1]); // (10+4+7)/3, (2+1+3)/3
    expect(all.accuracy).toBe(2 / 3);
    expect(all.convergenceHistogram).toEqual([0, 1, 2]);
    expect(all.medianConvergenceLayer).toBe(2);
    expect(all.meanImageShare.map((v) => +v.toFixed(12))).toEqual([0.3, 0.3]); // (.5+.1+.3)/3, (.25+.35+.3)/3
    const x = a.groups[1];
    expect(x.meanEntropy).toEqual([2, 1.5, 1]);
    expect(x.accuracy).toBe(0.5);
    expect(x.medianConvergenceLayer).toBe(1.5);
    // No expected answers: accuracy is not a number to report.
    expect(a.groups[3]).toMatchObject({ scored: 0, accuracy: null, meanEntropy: [5, 5, 5] });
  });

  it("median of odd and even counts", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("matches answers ignoring case, trailing punctuation and words after a one-word answer", () => {
    expect(answerMatches(" Red.", "red")).toBe(true);
    expect(answerMatches("red circle", "red")).toBe(true);
    expect(answerMatches("reddish", "red")).toBe(false);
    expect(answerMatches("a red circle", "a red circle")).toBe(true);
    expect(answerMatches("a red circle and more", "a red circle")).toBe(false);
  });

  it("CSVs: one line per item and layer, and per group and layer", () => {
    const csv = rowsToCsv(rows).trimEnd().split("\n");
    expect(csv[0]).toBe("id,index,image,prompt_name,variant,group:group,expected,generated,correct,convergence_layer,layer,entropy,target_prob,target_rank,kl,cosine,top1_id,final_rank,image_share");
    expect(csv).toHaveLength(1 + 4 * 3);
    expect(csv[2]).toBe("a,0,a.png,prompt,base,x,red,red,true,2,1,2,0.5,2,0,1,7,1,0.5");
    const agg = aggregatesToCsv(a).trimEnd().split("\n");
    expect(agg).toHaveLength(1 + 5 * 3);
    expect(agg[0]).toBe("variant,key,value,n,accuracy,accuracy_ci_low,accuracy_ci_high,empty_answers,median_convergence_layer,layer,mean_entropy,mean_target_prob,mean_target_rank,mean_kl,converged_here,mean_image_share");
    expect(agg[1]).toBe("base,all,all,3,0.6666667,0.2076596,0.93850806,0,2,0,2,0.2,7,0,0,");
  });
});
