/**
 * Runs inside desktop VS Code's extension host (@vscode/test-electron loads it as
 * extensionTestsPath): activates the extension, runs the lens on a bundled sample through the
 * command users run, and checks the panel's record. Plain node:assert, no test framework.
 */
import * as assert from "node:assert/strict";
import * as path from "node:path";
import * as vscode from "vscode";
import type { LogitLensApi } from "../../src/extension/extension";

export async function run(): Promise<void> {
  const ext = vscode.extensions.getExtension<LogitLensApi>("logit-lens.logit-lens-vlm");
  assert.ok(ext, "the extension is installed in the test instance");
  const api = await ext.activate();
  const commands = await vscode.commands.getCommands(true);
  for (const c of ["logitLens.runLogitLens", "logitLens.selectModel", "logitLens.openPreviewToSide", "logitLens.runExperiment"]) {
    assert.ok(commands.includes(c), `${c} is registered`);
  }
  const image = vscode.Uri.file(path.join(ext.extensionPath, "media", "samples", "color-of-shape.png"));
  await vscode.commands.executeCommand("logitLens.runLogitLens", image, "What color is the circle? Answer with one word.");
  const panels = api.panels.panels;
  assert.equal(panels.length, 1, "one panel per run");
  const record = panels[0].record;
  assert.ok(record, "the panel holds the run's record");
  assert.equal(record.model.architecture, "LlavaForConditionalGeneration");
  assert.equal(record.layerLabels.length, 9, "embeddings + 8 blocks of the bundled model");
  assert.ok(record.generation.ids.length > 0, "it generated an answer");
  await api.client.stop();
}
