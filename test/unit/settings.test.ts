/** The extension's settings reader (src/extension/settings.ts) against a stand-in configuration, and the settings package.json contributes. */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { DTYPE_CHOICES } from "../../src/shared/protocol";

const values = new Map<string, unknown>();

vi.mock("vscode", async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()),
  workspace: {
    getConfiguration: () => ({ get: <T>(key: string, fallback: T): T => (values.has(key) ? (values.get(key) as T) : fallback) }),
  },
}));

const { openModelParams, readConfig, runSettings } = await import("../../src/extension/settings");

const manifest = JSON.parse(fs.readFileSync(path.resolve(__dirname, "../../package.json"), "utf8")) as {
  contributes: { configuration: { properties: Record<string, { enum?: string[]; enumDescriptions?: string[]; default?: unknown; scope?: string }> } };
  capabilities: { untrustedWorkspaces: { restrictedConfigurations: string[] } };
};

describe("logitLens.dtype", () => {
  // SidecarClient keys the open model by these params, so a change of dtype reopens it.
  it("is read and sent with the model to open, auto by default", () => {
    values.clear();
    expect(readConfig().dtype).toBe("auto");
    values.set("dtype", "float16");
    values.set("device", "cuda");
    expect(openModelParams()).toEqual({ folder: "", device: "cuda", dtype: "float16" });
  });

  it("falls back to auto for a hand-edited value that is not a choice", () => {
    values.clear();
    values.set("dtype", "half");
    expect(readConfig().dtype).toBe("auto");
  });

  it("is contributed with the protocol's choices, one description each, and ignored from untrusted workspaces", () => {
    const setting = manifest.contributes.configuration.properties["logitLens.dtype"];
    expect(setting.enum).toEqual([...DTYPE_CHOICES]);
    expect(setting.enumDescriptions).toHaveLength(DTYPE_CHOICES.length);
    expect(setting).toMatchObject({ default: "auto", scope: "machine-overridable" });
    expect(manifest.capabilities.untrustedWorkspaces.restrictedConfigurations).toContain("logitLens.dtype");
  });
});

describe("logitLens.imageOverlay", () => {
  it("makes an image run ask for per-patch attention and the patch lens by default", () => {
    values.clear();
    values.set("topK", 5);
    expect(runSettings()).toEqual({ topK: 5, maxNewTokens: 8, imageAttention: true, patchLens: true });
  });

  it("leaves them out when turned off", () => {
    values.clear();
    values.set("imageOverlay", false);
    expect(runSettings()).toEqual({ topK: 10, maxNewTokens: 8 });
  });

  it("is contributed, on by default", () => {
    expect(manifest.contributes.configuration.properties["logitLens.imageOverlay"]).toMatchObject({ type: "boolean", default: true });
  });
});
