/** The Problems-panel checks of .lens.json files, against a stand-in of the vscode module. */
import { describe, expect, it, vi } from "vitest";
import * as vscode from "vscode";
import { registerExperimentDiagnostics } from "../../src/extension/experimentDiagnostics";
import { changed, closed, collections, opened, stubDocument } from "../helpers/vscodeStub";

describe("experiment diagnostics", () => {
  const context = { subscriptions: [] as { dispose(): unknown }[] } as unknown as vscode.ExtensionContext;
  registerExperimentDiagnostics(context);
  const entries = collections.get("logitLens.experiments")!;

  it("underlines each problem of an opened .lens.json at its value, and ignores other JSON", () => {
    const text = '{\n  "inputs": ["a.png"],\n  "prompts": ["x"],\n  "lens": { "topK": 0 }\n}';
    opened.fire(stubDocument("/w/exp.lens.json", text));
    opened.fire(stubDocument("/w/package.json", "{ not json"));
    const got = entries.get("file:///w/exp.lens.json")!;
    expect(got).toHaveLength(1);
    expect(got[0].message).toBe("/lens/topK: must be >= 1, got 0");
    expect(got[0].source).toBe("logit-lens");
    expect([got[0].range.start, got[0].range.end]).toEqual([new vscode.Position(3, 20), new vscode.Position(3, 21)]);
    expect(entries.has("file:///w/package.json")).toBe(false);
  });

  it("rechecks after an edit (debounced) and clears when the file closes", async () => {
    vi.useFakeTimers();
    const fixed = stubDocument("/w/exp.lens.json", '{ "inputs": ["a.png"], "prompts": ["x"] }');
    changed.fire({ document: fixed });
    expect(entries.get("file:///w/exp.lens.json")).toHaveLength(1); // not yet
    await vi.advanceTimersByTimeAsync(300);
    expect(entries.get("file:///w/exp.lens.json")).toEqual([]);
    const broken = stubDocument("/w/exp.lens.json", '{ "inputs": ["a.png"], "prompts": ["x",] }');
    changed.fire({ document: broken });
    await vi.advanceTimersByTimeAsync(300);
    expect(entries.get("file:///w/exp.lens.json")![0].message).toMatch(/^JSON syntax: /);
    closed.fire(broken);
    expect(entries.has("file:///w/exp.lens.json")).toBe(false);
    vi.useRealTimers();
  });
});
