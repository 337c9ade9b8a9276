/**
 * The VS Code extension host side. For now it registers the runtime-info command and the
 * Problems-panel checks of .lens.json files; the sidecar lifecycle, panels and the .lens.json
 * preview build on this entry point.
 */
import * as vscode from "vscode";
import { registerExperimentDiagnostics } from "./experimentDiagnostics";

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel("Logit Lens", { log: true });
  registerExperimentDiagnostics(context);
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand("logitLens.showRuntimeInfo", () => {
      const sidecar = vscode.Uri.joinPath(context.extensionUri, "dist", "sidecar.js").fsPath;
      output.info(`sidecar: ${sidecar}`);
      output.info(`node: ${process.version} (${process.platform}-${process.arch})`);
      output.show(true);
    }),
  );
}

export function deactivate(): void {}
