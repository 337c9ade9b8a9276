/**
 * The command "Logit Lens: Install the CUDA Provider": downloads onnxruntime-node's CUDA
 * provider libraries (hundreds of MB, so never in the VSIX) into the extension's global storage,
 * with cancellable progress, then restarts the sidecar, which loads them from there
 * (LOGIT_LENS_CUDA_PROVIDER_DIR, see src/sidecar/runtime/cudaLibraries.ts) and says whether
 * CUDA really works on this machine.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import { CUDA_PROVIDER_DIR_ENV } from "../shared/cudaProvider";
import { providerLabel } from "../shared/deviceLabel";
import { InstallCancelledError, installCudaProvider, sourceFromOnnxruntimeNode } from "./cudaProviderInstall";
import type { SidecarClient } from "./sidecarClient";

/** A NuGet v3 service index to download from instead of onnxruntime-node's own feed (a mirror; the editor suite's local feed). */
export const CUDA_FEED_ENV = "LOGIT_LENS_CUDA_FEED";

function onnxruntimeNode(context: vscode.ExtensionContext): { dir: string; version: string } {
  const dir = vscode.Uri.joinPath(context.extensionUri, "node_modules", "onnxruntime-node").fsPath;
  const version = (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
  return { dir, version };
}

/** The folder the provider of the bundled onnxruntime-node version lives in. */
export function cudaProviderFolder(context: vscode.ExtensionContext): string {
  let version = "unknown";
  try {
    version = onnxruntimeNode(context).version;
  } catch {
    // no onnxruntime-node beside the extension: the sidecar will say so itself
  }
  return path.join(context.globalStorageUri.fsPath, "cuda-provider", version);
}

/** The sidecar's environment: where to look for the provider. */
export function cudaProviderEnv(context: vscode.ExtensionContext): NodeJS.ProcessEnv {
  return { [CUDA_PROVIDER_DIR_ENV]: cudaProviderFolder(context) };
}

async function install(context: vscode.ExtensionContext, sidecar: SidecarClient, log: vscode.LogOutputChannel): Promise<void> {
  if (process.platform !== "linux" || process.arch !== "x64") {
    void vscode.window.showErrorMessage(`Logit Lens: onnxruntime-node has a CUDA provider for Linux x64 only, not ${process.platform}-${process.arch}; use device cpu or webgpu`);
    return;
  }
  const ort = onnxruntimeNode(context);
  const mirror = process.env[CUDA_FEED_ENV];
  const source = { ...sourceFromOnnxruntimeNode(ort.dir), ...(mirror ? { index: mirror } : {}) };
  const target = cudaProviderFolder(context);
  log.info(`installing the CUDA provider (${source.packageName} ${source.version}${mirror ? ` from ${mirror}` : ""}) into ${target}`);
  try {
    const manifest = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "Logit Lens: CUDA provider", cancellable: true },
      (progress, token) => {
        const abort = new AbortController();
        const cancel = token.onCancellationRequested(() => abort.abort());
        let shown = 0;
        return installCudaProvider({
          source,
          target,
          onnxruntimeVersion: ort.version,
          signal: abort.signal,
          onProgress: (p) => {
            const increment = p.fraction === undefined ? undefined : Math.max(0, p.fraction * 100 - shown);
            if (increment !== undefined) shown += increment;
            progress.report({ message: p.message, ...(increment ? { increment } : {}) });
          },
        }).finally(() => cancel.dispose());
      },
    );
    log.info(`CUDA provider installed: ${Object.entries(manifest.files).map(([f, m]) => `${f} (${(m.bytes / 2 ** 20).toFixed(0)} MB, sha256 ${m.sha256.slice(0, 12)}…)`).join(", ")}`);
    // the sidecar probes the provider when it starts: restart it to know whether CUDA works here
    await sidecar.stop();
    sidecar.reset();
    const cuda = (await sidecar.server()).providers.find((p) => p.name === "cuda");
    if (cuda?.works) {
      void vscode.window.showInformationMessage(`Logit Lens: the CUDA provider is installed and works: ${providerLabel("cuda", cuda.device)}. Device auto now runs on it.`);
    } else {
      log.warn(`CUDA provider installed in ${target}, but ${cuda?.detail ?? "the sidecar did not report it"}`);
      void vscode.window.showWarningMessage(`Logit Lens: the CUDA provider is installed, but it does not work here: ${cuda?.detail ?? "the sidecar did not report it"}`);
    }
  } catch (e) {
    if (e instanceof InstallCancelledError) {
      log.info(e.message);
      return;
    }
    const message = e instanceof Error ? e.message : String(e);
    log.error(`the CUDA provider was not installed: ${message}`);
    void vscode.window.showErrorMessage(`Logit Lens: the CUDA provider was not installed: ${message}`);
  }
}

export function registerCudaProviderCommand(context: vscode.ExtensionContext, sidecar: SidecarClient, log: vscode.LogOutputChannel): vscode.Disposable {
  return vscode.commands.registerCommand("logitLens.installCudaProvider", () => install(context, sidecar, log));
}
