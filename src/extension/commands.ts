/**
 * The user's daily path: "Run Logit Lens" on an image (Explorer context menu, the image
 * preview's title bar, the Command Palette), a prompt with history, a progress notification
 * with cancel, and a panel with the record. And "Select Model...": a folder, the bundled model,
 * or a supported model from the Hugging Face cache.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import { RunRequest, type RunParams } from "../shared/protocol";
import { errorText } from "./experiments";
import type { LensPanels } from "./lensPanel";
import { describeModelFolder, findCachedModels, hubCacheFolder } from "./modelFolders";
import { readConfig, runSettings, SECTION } from "./settings";
import type { SidecarClient } from "./sidecarClient";

export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"];
const HISTORY_KEY = "logitLens.promptHistory";
const HISTORY_MAX = 30;

export async function runLogitLens(
  context: vscode.ExtensionContext,
  client: SidecarClient,
  panels: LensPanels,
  uri: vscode.Uri | undefined,
  promptArg?: string,
): Promise<void> {
  const image = uri ?? activeImage() ?? (await pickImage());
  if (!image) return;
  if (image.scheme !== "file") {
    void vscode.window.showErrorMessage(`Logit Lens: ${image.toString()} is not a local file: open the folder on the machine that runs the extension (Remote-SSH runs it there)`);
    return;
  }
  if (!IMAGE_EXTENSIONS.includes(path.extname(image.fsPath).toLowerCase())) {
    void vscode.window.showErrorMessage(`Logit Lens: ${path.basename(image.fsPath)} is not an image the lens reads (${IMAGE_EXTENSIONS.join(", ")})`);
    return;
  }
  // an empty prompt given by a caller (a keybinding's args) asks, as no prompt does
  const prompt = promptArg?.trim() ? promptArg : await askPrompt(context);
  if (prompt === undefined) return;
  const request: RunParams = { prompt, image: image.fsPath, settings: runSettings() };
  try {
    const record = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Logit Lens: ${path.basename(image.fsPath)}`, cancellable: true },
      async (progress, token) => {
        progress.report({ message: client.state.kind === "ready" || client.state.kind === "busy" ? "running" : "starting the model" });
        const sub = client.onProgress((stage) => progress.report({ message: stage }));
        try {
          return await client.request(RunRequest, request, token as unknown as import("vscode-jsonrpc").CancellationToken, "running the lens");
        } finally {
          sub.dispose();
        }
      },
    );
    await panels.showRun(record, request, image.fsPath);
  } catch (e) {
    if ((e as { code?: number }).code === -32800) return; // cancelled by the user
    const open = "Open Output";
    const answer = await vscode.window.showErrorMessage(`Logit Lens: ${errorText(e)}`, open);
    if (answer === open) void vscode.commands.executeCommand("logitLens.showOutput");
  }
}

/** The image in the active tab: VS Code's image preview (a custom editor) or an image file. */
function activeImage(): vscode.Uri | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  const uri = input instanceof vscode.TabInputCustom || input instanceof vscode.TabInputText ? input.uri : undefined;
  return uri && IMAGE_EXTENSIONS.includes(path.extname(uri.path).toLowerCase()) ? uri : undefined;
}

async function pickImage(): Promise<vscode.Uri | undefined> {
  const picked = await vscode.window.showOpenDialog({
    canSelectMany: false,
    title: "Run Logit Lens on an image",
    filters: { Images: IMAGE_EXTENSIONS.map((e) => e.slice(1)) },
  });
  return picked?.[0];
}

/**
 * The prompt an accepted prompt box stands for: the typed text, or the picked earlier prompt
 * when the typed text is only the start of it; undefined when both are empty (nothing to run).
 */
export function acceptedPrompt(typed: string, selected: string | undefined): string | undefined {
  const text = typed.trim();
  const chosen = text && (!selected || !selected.startsWith(text)) ? text : (selected ?? text);
  return chosen.trim() ? chosen : undefined;
}

export const EMPTY_PROMPT_MESSAGE = "Type a prompt first: an empty prompt has nothing to run (Escape cancels)";

/**
 * A prompt box that offers earlier prompts (most recent first) and takes any new text. Enter
 * on an empty box keeps it open and says a prompt is needed; only Escape cancels.
 */
export async function askPrompt(context: vscode.ExtensionContext): Promise<string | undefined> {
  const history = context.globalState.get<string[]>(HISTORY_KEY, []);
  const qp = vscode.window.createQuickPick();
  const title = "Logit Lens: prompt";
  qp.title = title;
  qp.placeholder = history.length ? "Type a prompt, or pick an earlier one" : 'Type a prompt, e.g. "What color is the circle? Answer with one word."';
  qp.items = history.map((h) => ({ label: h, description: "earlier prompt" }));
  qp.matchOnDescription = false;
  qp.ignoreFocusOut = true;
  const chosen = await new Promise<string | undefined>((resolve) => {
    qp.onDidAccept(() => {
      const prompt = acceptedPrompt(qp.value, qp.selectedItems[0]?.label);
      if (prompt === undefined) {
        // QuickPick has no validationMessage in this API version: the title and the placeholder
        // (shown while the box is empty) say it instead
        qp.title = `${title}: a prompt is needed`;
        qp.placeholder = EMPTY_PROMPT_MESSAGE;
        return;
      }
      resolve(prompt);
      qp.hide();
    });
    qp.onDidChangeValue(() => {
      if (qp.title !== title) qp.title = title;
    });
    qp.onDidHide(() => resolve(undefined));
    qp.show();
  });
  qp.dispose();
  if (!chosen) return undefined;
  await context.globalState.update(HISTORY_KEY, [chosen, ...history.filter((h) => h !== chosen)].slice(0, HISTORY_MAX));
  return chosen;
}

type ModelPick = vscode.QuickPickItem & { folder?: string; browse?: true; supported?: boolean };

/** "Logit Lens: Select Model...". */
export async function selectModel(client: SidecarClient): Promise<void> {
  let architectures: string[] = [];
  let bundled = "";
  try {
    const server = await client.server();
    architectures = server.architectures;
    bundled = server.defaultModel;
  } catch (e) {
    void vscode.window.showErrorMessage(`Logit Lens: ${errorText(e)}`);
    return;
  }
  const current = readConfig().model;
  const cached = await findCachedModels(architectures);
  const items: ModelPick[] = [
    { label: "$(folder-opened) Browse for a model folder...", browse: true },
    { label: "$(package) Bundled model", description: path.basename(bundled), detail: bundled, folder: "", supported: true, picked: current === "" },
  ];
  if (cached.length) items.push({ label: `Hugging Face cache (${hubCacheFolder()})`, kind: vscode.QuickPickItemKind.Separator });
  for (const m of cached) {
    items.push({
      label: `${m.supported ? "$(check)" : "$(circle-slash)"} ${m.id}`,
      description: `${m.architecture}${m.supported ? "" : " (not supported)"}`,
      detail: m.folder,
      folder: m.folder,
      supported: m.supported,
      picked: current === m.folder,
    });
  }
  const pick = await vscode.window.showQuickPick(items, { title: "Logit Lens: model", placeHolder: `Now: ${current || "the bundled model"}`, matchOnDetail: true });
  if (!pick) return;
  let folder = pick.folder;
  if (pick.browse) {
    const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, title: "A Hugging Face model folder (config.json, *.safetensors, tokenizer.json)" });
    if (!picked?.[0]) return;
    folder = picked[0].fsPath;
    const d = await describeModelFolder(folder, architectures);
    if (!d) {
      void vscode.window.showErrorMessage(`Logit Lens: ${path.join(folder, "config.json")} is missing or names no architecture: choose the folder that holds a Hugging Face model's config.json`);
      return;
    }
    if (!d.supported) {
      void vscode.window.showErrorMessage(`Logit Lens: ${d.architecture} is not supported (supported: ${architectures.join(", ")})`);
      return;
    }
  } else if (pick.supported === false) {
    void vscode.window.showErrorMessage(`Logit Lens: ${pick.description ?? "this architecture"}: supported are ${architectures.join(", ")}`);
    return;
  }
  const config = vscode.workspace.getConfiguration(SECTION);
  const inspect = config.inspect<string>("model");
  const target = inspect?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await config.update("model", folder ?? "", target);
  client.reset();
  try {
    const m = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: "Logit Lens: opening the model" }, () => client.model());
    void vscode.window.setStatusBarMessage(`Logit Lens: ${path.basename(m.folder)} open (${m.architecture}, ${m.provider})`, 5000);
  } catch (e) {
    void vscode.window.showErrorMessage(`Logit Lens: ${errorText(e)}`);
  }
}
