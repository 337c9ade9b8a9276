/**
 * The VS Code extension host side: commands, the sidecar's lifecycle, panels, the status bar,
 * the .lens.json preview, runs and Problems-panel checks. Activation is lazy (commands,
 * workspaces with experiments, restored panels); the sidecar starts on first use.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import { providerLabel } from "../shared/deviceLabel";
import type { ModelSummary } from "../shared/protocol";
import { runLogitLens, selectModel } from "./commands";
import { cudaProviderEnv, registerCudaProviderCommand } from "./cudaProvider";
import { registerExperimentDiagnostics } from "./experimentDiagnostics";
import { Experiments } from "./experiments";
import { LensPanels } from "./lensPanel";
import { openModelParams, readConfig, recordsFolder, SECTION } from "./settings";
import { SidecarClient, type SidecarState } from "./sidecarClient";

let client: SidecarClient | undefined;

export interface LogitLensApi {
  /** For tests: the sidecar client and the open panels. */
  client: SidecarClient;
  panels: LensPanels;
}

export function activate(context: vscode.ExtensionContext): LogitLensApi {
  const output = vscode.window.createOutputChannel("Logit Lens", { log: true });
  const sidecar = new SidecarClient({
    script: vscode.Uri.joinPath(context.extensionUri, "dist", "sidecar.js").fsPath,
    model: () => openModelParams(),
    log: output,
    clientName: `vscode ${vscode.version}`,
    env: cudaProviderEnv(context),
  });
  client = sidecar;
  const panels = new LensPanels(context, sidecar, output, () => recordsFolder(context));
  const experiments = new Experiments(sidecar, panels, output);
  panels.comparisonOf = (folder, file) => experiments.readComparison(folder, file);
  const status = vscode.window.createStatusBarItem("logitLens.status", vscode.StatusBarAlignment.Right, 100);
  status.name = "Logit Lens";
  status.command = "logitLens.selectModel";
  const showStatus = (s: SidecarState) => renderStatus(status, s);
  showStatus(sidecar.state);
  status.show();

  let warnedFailure = false;
  registerExperimentDiagnostics(context);
  context.subscriptions.push(
    output,
    status,
    panels,
    experiments,
    sidecar.onState((s) => {
      showStatus(s);
      if (s.kind === "failed" && !warnedFailure) {
        warnedFailure = true;
        const open = "Open Output";
        const retry = "Restart";
        void vscode.window.showErrorMessage(`Logit Lens: the sidecar stopped: ${s.message}`, open, retry).then((a) => {
          if (a === open) output.show(true);
          if (a === retry) {
            warnedFailure = false;
            sidecar.reset();
          }
        });
      }
      if (s.kind !== "failed") warnedFailure = false;
    }),
    vscode.commands.registerCommand("logitLens.runLogitLens", (uri?: vscode.Uri, prompt?: string) => runLogitLens(context, sidecar, panels, uri instanceof vscode.Uri ? uri : undefined, typeof prompt === "string" ? prompt : undefined)),
    vscode.commands.registerCommand("logitLens.selectModel", () => selectModel(sidecar)),
    vscode.commands.registerCommand("logitLens.openPreviewToSide", (uri?: vscode.Uri) => experiments.openPreview(uri instanceof vscode.Uri ? uri : undefined)),
    vscode.commands.registerCommand("logitLens.previewItem", (uri?: vscode.Uri) => experiments.chooseItem(uri instanceof vscode.Uri ? uri : undefined)),
    vscode.commands.registerCommand("logitLens.runExperiment", (uri?: vscode.Uri) => experiments.run(uri instanceof vscode.Uri ? uri : undefined)),
    vscode.commands.registerCommand("logitLens.compareResults", (uri?: vscode.Uri) => experiments.compare(uri instanceof vscode.Uri ? uri : undefined)),
    vscode.commands.registerCommand("logitLens.showOutput", () => output.show(true)),
    registerCudaProviderCommand(context, sidecar, output),
    vscode.commands.registerCommand("logitLens.restartSidecar", async () => {
      await sidecar.stop();
      sidecar.reset();
      output.info("sidecar stopped; it starts again on the next run");
    }),
    vscode.commands.registerCommand("logitLens.showRuntimeInfo", async () => {
      output.info(`sidecar: ${vscode.Uri.joinPath(context.extensionUri, "dist", "sidecar.js").fsPath}`);
      output.info(`node: ${process.version} (${process.platform}-${process.arch}), extension host ${vscode.env.remoteName ?? "local"}`);
      try {
        const server = await sidecar.server();
        // only the providers a probe session really ran on; the others say what is missing
        const working = server.providers.filter((p) => p.works);
        output.info(`sidecar ${server.serverVersion}, execution providers that work here: ${working.map((p) => providerLabel(p.name, p.device)).join("; ")}`);
        for (const p of server.providers.filter((p) => !p.works)) output.info(`${p.name} is not available: ${p.detail}`);
        output.info(`architectures: ${server.architectures.join(", ")}; bundled model: ${server.defaultModel}`);
        const state = sidecar.state;
        const model = "model" in state ? state.model : undefined;
        if (model) {
          output.info(`model: ${model.folder} (${model.architecture}), ${model.dtype} weights, ${model.computeDtype ?? "float32"} compute, on ${providerLabel(model.provider, model.device)}`);
          if (model.memory) output.info(`memory: ${model.memory.reason} (${(model.memory.availableBytes / 1e9).toFixed(1)} GB was free when it opened)`);
        }
      } catch (e) {
        output.error(String(e));
      }
      output.show(true);
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(`${SECTION}.model`) || e.affectsConfiguration(`${SECTION}.device`) || e.affectsConfiguration(`${SECTION}.dtype`) || e.affectsConfiguration(`${SECTION}.threads`)) {
        // the next request reopens with the new settings; forget crashes of the old model
        sidecar.reset();
        const cfg = readConfig();
        output.info(`model setting: ${cfg.model || "(bundled)"} on ${cfg.device}, dtype ${cfg.dtype}; it opens on the next run`);
      }
    }),
  );
  return { client: sidecar, panels };
}

function renderStatus(item: vscode.StatusBarItem, s: SidecarState): void {
  const modelName = (folder: string | undefined) => (folder ? path.basename(folder) : "no model");
  switch (s.kind) {
    case "stopped":
      item.text = "$(telescope) Logit Lens";
      item.tooltip = `Logit Lens: ${readConfig().model || "bundled model"} (starts on first run). Click to select a model.`;
      item.backgroundColor = undefined;
      break;
    case "starting":
      item.text = "$(loading~spin) Logit Lens: starting";
      item.tooltip = "Starting the sidecar";
      break;
    case "ready":
      item.text = `$(telescope) ${modelName(s.model?.folder)}${s.model ? ` · ${s.model.provider} ${shortDtype(s.model.computeDtype)}` : ""}`;
      item.tooltip = s.model ? modelTooltip(s.model) : "Logit Lens: ready";
      item.backgroundColor = undefined;
      break;
    case "busy":
      item.text = `$(loading~spin) ${modelName(s.model?.folder)}: ${s.what}`;
      item.tooltip = `Logit Lens: ${s.what}`;
      break;
    case "failed":
      item.text = "$(error) Logit Lens";
      item.tooltip = `Logit Lens: ${s.message}`;
      item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
      break;
  }
}

/** "f32", "f16", "bf16": the compute dtype in the status bar's text. */
function shortDtype(dtype: ModelSummary["computeDtype"]): string {
  return { float32: "f32", float16: "f16", bfloat16: "bf16" }[dtype ?? "float32"];
}

const WEIGHT_PLANS: Record<NonNullable<ModelSummary["weightPlan"]>, string> = {
  float32: "float32 weights in memory",
  "half-per-use": "half weights kept half, converted per use",
  half: "weights used as stored",
};

/** The model, where it runs, in what precision, and the memory it was estimated to need. */
function modelTooltip(m: ModelSummary): string {
  const lines = [
    `Logit Lens: ${m.folder}`,
    `${m.architecture}, ${m.numLayers} layers; ${m.dtype} weights, ${m.computeDtype ?? "float32"} compute${m.weightPlan ? ` (${WEIGHT_PLANS[m.weightPlan]})` : ""}`,
    `on ${providerLabel(m.provider, m.device)}`,
  ];
  if (m.memory) lines.push(`memory: ${m.memory.reason} (${(m.memory.availableBytes / 1e9).toFixed(1)} GB was free)`);
  lines.push("Click to select a model.");
  return lines.join("\n");
}

export async function deactivate(): Promise<void> {
  await client?.dispose();
  client = undefined;
}
