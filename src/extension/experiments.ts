/**
 * .lens.json experiments in the editor: the live preview that follows the experiment being
 * edited (as Markdown's preview follows its source), and "Run Experiment" with progress, cancel
 * and a comparison view of the results.
 *
 * Before anything runs from an experiment file, paths it names outside the workspace (model,
 * inputs, output folder) and a results folder outside the file's own folder need the user's
 * confirmation, and so does any run in an untrusted workspace. The answer is remembered per file and set of paths for the session.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import { checkExperimentText, type LensExperiment } from "../shared/experiment";
import type { LensRecord } from "../shared/lensRecord";
import { PlanExperimentRequest, PreviewExperimentRequest, RunExperimentRequest } from "../shared/protocol";
import type { SweepAggregates, SweepRow } from "../shared/sweep";
import { comparisonItems } from "../shared/sweepCompare";
import type { ComparisonMessage } from "../shared/webviewProtocol";
import { MIB, readInputText } from "../sidecar/util/readInput";
import { experimentPaths, pathsNeedingConsent, previewImagePath } from "./experimentPaths";
import { isExperimentDocument } from "./experimentDiagnostics";
import type { LensPanels, PreviewPanel } from "./lensPanel";
import type { SidecarClient } from "./sidecarClient";
import { readSweepRows, SweepRecordIndex } from "./sweepItems";

const PREVIEW_DEBOUNCE_MS = 400;

export class Experiments implements vscode.Disposable {
  private preview: {
    panel: PreviewPanel;
    doc: vscode.TextDocument;
    timer?: ReturnType<typeof setTimeout>;
    cts?: vscode.CancellationTokenSource;
    version: number;
    /** The file the user opened the preview for: only its confirmation is asked for unprompted. */
    asked: string;
    /** The planned item the preview shows (the panel's arrows, its variant list and "Preview Item..." choose it). */
    item: number;
  } | null = null;
  private readonly confirmed = new Set<string>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly client: SidecarClient,
    private readonly panels: LensPanels,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (this.preview && e.document === this.preview.doc) this.schedule();
      }),
      vscode.window.onDidChangeActiveTextEditor((editor) => {
        // follow the active experiment, like Markdown's preview
        if (this.preview && editor && isExperimentDocument(editor.document) && editor.document !== this.preview.doc) {
          this.preview.doc = editor.document;
          this.schedule(0);
        }
      }),
    );
  }

  /** "Logit Lens: Open Preview to the Side". */
  async openPreview(uri?: vscode.Uri): Promise<void> {
    const doc = await experimentDocument(uri);
    if (!doc) return;
    if (this.preview) {
      this.preview.doc = doc;
      this.preview.asked = doc.uri.fsPath;
      this.preview.panel.panel.reveal(vscode.ViewColumn.Beside, true);
    } else {
      const panel = this.panels.createPreview(doc.uri.fsPath, {
        showItem: (index) => this.showItem(index),
        chooseItem: () => this.chooseItem(),
        rerun: () => this.rerunPreview(),
      });
      this.preview = { panel, doc, version: 0, asked: doc.uri.fsPath, item: 0 };
      panel.panel.onDidDispose(() => {
        this.preview?.cts?.cancel();
        if (this.preview?.timer) clearTimeout(this.preview.timer);
        this.preview = null;
      });
    }
    this.schedule(0);
  }

  /** The preview shows planned item `index` of its file (clamped to the plan). */
  showItem(index: number): void {
    const p = this.preview;
    if (!p) return;
    p.item = Math.max(0, Math.floor(index));
    this.schedule(0);
  }

  /** "Logit Lens: Preview Item...": a list of the previewed file's planned items (image, prompt, variant) to show one of. */
  async chooseItem(uri?: vscode.Uri): Promise<void> {
    if (!this.preview || (uri && uri.fsPath !== this.preview.doc.uri.fsPath)) await this.openPreview(uri);
    const p = this.preview;
    if (!p) return;
    const file = p.doc.uri.fsPath;
    const plan = await this.client.request(PlanExperimentRequest, { file, text: p.doc.getText() }, undefined, "planning the items").catch((e: unknown) => {
      void vscode.window.showErrorMessage(`Logit Lens: ${path.basename(file)}: ${errorText(e)}`);
      return null;
    });
    if (!plan) return;
    const picks = plan.items.map((i) => ({
      label: `${i.index + 1}. ${i.image}`,
      description: plan.variants.length > 1 ? `variant ${i.variant}` : undefined,
      detail: `${i.prompt}${i.expected !== null ? `  →  expected “${i.expected}”` : ""}`,
      index: i.index,
      picked: i.index === p.item,
    }));
    const more = plan.total > plan.items.length ? ` (the first ${plan.items.length} of ${plan.total})` : "";
    const chosen = await vscode.window.showQuickPick(picks, {
      title: `Preview which item of ${path.basename(file)}?${more}`,
      placeHolder: "type to filter by image, prompt or variant",
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (chosen && this.preview === p) this.showItem(chosen.index);
  }

  /** Computes the previewed item again so that it is the sidecar's last run (tracking and head patterns answer over it). */
  private async rerunPreview(): Promise<void> {
    const p = this.preview;
    if (!p) throw new Error("the preview is closed");
    const file = p.doc.uri.fsPath;
    await this.client.request(PreviewExperimentRequest, { file, text: p.doc.getText(), item: p.item, clampItem: true, keepRun: true }, undefined, "preview");
  }

  /** "Logit Lens: Run Experiment": every item, with progress and cancel, then the comparison view. */
  async run(uri?: vscode.Uri): Promise<void> {
    const doc = await experimentDocument(uri);
    if (!doc) return;
    const file = doc.uri.fsPath;
    // the sidecar reads the file itself: what it runs must be what the editor shows
    if (doc.isDirty && !(await doc.save())) {
      void vscode.window.showErrorMessage(`Logit Lens: ${path.basename(file)} could not be saved, so it was not run: save it, then run it again`);
      return;
    }
    const { experiment, problems } = checkExperimentText(doc.getText());
    if (!experiment) {
      void vscode.window.showErrorMessage(`${path.basename(file)}: ${problems[0]?.pointer ?? "/"}: ${problems[0]?.message ?? "invalid experiment"} (see the Problems panel)`);
      return;
    }
    if (!(await this.allowed(file, experiment))) return;
    const name = path.basename(file);
    const summary = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Logit Lens: ${name}`, cancellable: true },
      async (progress, token) => {
        let last = 0;
        const sub = this.client.onExperimentProgress((p) => {
          if (path.resolve(p.file) !== path.resolve(file) || p.total === 0) return;
          const pct = (100 * p.done) / p.total;
          const eta = p.etaSeconds > 0 ? `, ${formatSeconds(p.etaSeconds)} left` : "";
          progress.report({ increment: pct - last, message: `${p.done} of ${p.total} (${p.rate.toFixed(1)}/s${eta})${p.resumed ? `, ${p.resumed} done before` : ""}` });
          last = pct;
        });
        try {
          return await this.client.request(RunExperimentRequest, { file }, tokenOf(token), `running ${name}`);
        } finally {
          sub.dispose();
        }
      },
    ).then(
      (s) => s,
      (e: unknown) => {
        void vscode.window.showErrorMessage(`Logit Lens: ${errorText(e)}`);
        return null;
      },
    );
    if (!summary) return;
    this.log.info(`${name}: ran ${summary.ran}, resumed ${summary.resumed}, of ${summary.total} in ${summary.seconds.toFixed(1)} s${summary.cancelled ? " (cancelled)" : ""} -> ${summary.outDir}`);
    await this.showComparison(`Compare ${experiment.name}`, summary.aggregates, summary.outDir, file);
    const open = "Open Results Folder";
    const done = summary.cancelled ? `cancelled after ${summary.ran} new items (rerun to continue)` : `${summary.total} items done (${summary.ran} run now)`;
    void vscode.window.showInformationMessage(`Logit Lens: ${name}: ${done}.`, open).then((a) => {
      if (a === open) void vscode.commands.executeCommand("revealFileInOS", vscode.Uri.file(summary.outDir));
    });
  }

  /** "Logit Lens: Compare Results...": the comparison view of a results folder (its aggregates.json), e.g. of a sweep run by the CLI. */
  async compare(uri?: vscode.Uri): Promise<void> {
    let target = uri;
    if (!target) {
      const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: "A results folder (or its aggregates.json)" });
      target = picked?.[0];
    }
    if (!target) return;
    const file = target.fsPath.endsWith(".json") ? target.fsPath : path.join(target.fsPath, "aggregates.json");
    let read: { message: ComparisonMessage; openItem: (id: string) => Promise<void>; experimentFile: string | null };
    try {
      read = await this.readComparison(path.dirname(file), undefined, file);
    } catch (e) {
      void vscode.window.showErrorMessage(`Logit Lens: ${file}: not a sweep's aggregates (${errorText(e)}): pick the folder that \`logit-lens run FILE.lens.json\` wrote`);
      return;
    }
    this.panels.showComparison(read.message, read.openItem, { resultsFolder: path.dirname(file), experimentFile: read.experimentFile });
  }

  /**
   * A results folder's comparison: its aggregates.json, its per-item rows and the handler that
   * opens an item. `experimentFile`: the experiment that wrote it (default: what its run.json
   * names, which can compute an item again when no record was kept). A restored comparison view
   * reads its folder again through this (LensPanels.comparisonOf).
   */
  async readComparison(outDir: string, experimentFile?: string | null, aggregatesFile = path.join(outDir, "aggregates.json")): Promise<{ message: ComparisonMessage; openItem: (id: string) => Promise<void>; experimentFile: string | null }> {
    // a regular file of sane size: a FIFO picked here would hang the extension host
    const data = JSON.parse(await readInputText(aggregatesFile, { what: "aggregates file", maxBytes: 256 * MIB })) as SweepAggregates & { experiment?: string };
    if (!Array.isArray(data.groups) || typeof data.layers !== "number") throw new Error("it holds no groups");
    let file = experimentFile ?? null;
    if (experimentFile === undefined) {
      try {
        const run = JSON.parse(await readInputText(path.join(outDir, "run.json"), { what: "run file", maxBytes: MIB })) as { file?: unknown };
        if (typeof run.file === "string") file = run.file;
      } catch {
        // a folder without run.json: its items open only from records.jsonl
      }
    }
    const aggregates = { layers: data.layers, groups: data.groups, variants: data.variants, differences: data.differences };
    const built = await this.comparison(`Compare ${data.experiment ?? path.basename(outDir)}`, aggregates, outDir, file);
    return { ...built, experimentFile: file };
  }

  private async showComparison(title: string, aggregates: SweepAggregates, outDir: string, experimentFile: string | null): Promise<void> {
    const { message, openItem } = await this.comparison(title, aggregates, outDir, experimentFile);
    this.panels.showComparison(message, openItem, { resultsFolder: outDir, experimentFile });
  }

  private async comparison(title: string, aggregates: SweepAggregates, outDir: string, experimentFile: string | null): Promise<{ message: ComparisonMessage; openItem: (id: string) => Promise<void> }> {
    let rows: SweepRow[] = [];
    try {
      rows = await readSweepRows(outDir);
    } catch (e) {
      this.log.warn(`${path.join(outDir, "results.jsonl")}: ${errorText(e)}; the comparison has no per-item table`);
    }
    // records.jsonl is indexed on the first item opened, once for this comparison
    let records: Promise<SweepRecordIndex | null> | undefined;
    const kept = (id: string) => (records ??= SweepRecordIndex.open(outDir)).then((index) => index?.get(id) ?? null);
    return { message: comparisonMessage(title, aggregates, comparisonItems(rows)), openItem: (id) => this.openItem(outDir, experimentFile, rows, id, kept) };
  }

  /** A row of the comparison's per-item table, in a run panel: its kept record, or that planned item computed again. */
  private async openItem(outDir: string, experimentFile: string | null, rows: readonly SweepRow[], id: string, keptRecord: (id: string) => Promise<LensRecord | null>): Promise<void> {
    const row = rows.find((r) => r.id === id);
    if (!row) throw new Error(`${path.join(outDir, "results.jsonl")} has no item ${id}`);
    const image = row.image !== null && experimentFile ? path.resolve(path.dirname(experimentFile), row.image) : undefined;
    const kept = await keptRecord(id);
    const heading = `Item ${row.index + 1} (${row.variant})`;
    if (kept) {
      await this.panels.showRun(kept, undefined, image, heading);
      return;
    }
    if (!experimentFile) throw new Error(`${outDir} kept no record of item ${row.index + 1} and its run.json names no experiment to compute it again: rerun the sweep with output.records on`);
    const text = await readInputText(experimentFile, { what: "experiment file", maxBytes: MIB });
    const { experiment, problems } = checkExperimentText(text);
    if (!experiment) throw new Error(`${experimentFile}: ${problems[0]?.message ?? "not a valid experiment"}: fix it, or rerun the sweep with output.records on`);
    if (!(await this.allowed(experimentFile, experiment, true, "preview"))) return;
    const r = await this.client.request(PreviewExperimentRequest, { file: experimentFile, text, item: row.index }, undefined, `computing item ${row.index + 1}`);
    if (r.item.id !== id) throw new Error(`${experimentFile} changed since this sweep: its item ${row.index + 1} is now another one (${r.item.variant} on ${r.item.image}); rerun the sweep to open its items`);
    await this.panels.showRun(r.record, undefined, image, heading);
  }

  dispose(): void {
    this.preview?.cts?.cancel();
    this.disposables.forEach((d) => d.dispose());
  }

  private schedule(ms = PREVIEW_DEBOUNCE_MS): void {
    const p = this.preview;
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    p.timer = setTimeout(() => void this.update(), ms);
  }

  private async update(): Promise<void> {
    const p = this.preview;
    if (!p) return;
    const version = ++p.version;
    const doc = p.doc;
    const file = doc.uri.fsPath;
    const text = doc.getText();
    p.panel.sourceFile = file;
    const { experiment, problems } = checkExperimentText(text);
    if (!experiment) {
      p.panel.post({
        type: "problems",
        file,
        problems: problems.map((q) => {
          const pos = doc.positionAt(q.offset);
          return { path: q.pointer, message: q.message, line: pos.line + 1, column: pos.character + 1 };
        }),
      });
      return;
    }
    // a preview that merely followed the active editor never pops a dialog by itself
    if (!(await this.allowed(file, experiment, p.asked === file, "preview"))) {
      p.panel.post({ type: "status", state: "error", message: `${path.basename(file)} reads a model or inputs outside the workspace (or the workspace is not trusted): run "Logit Lens: Open Preview to the Side" on it to allow them.` });
      return;
    }
    p.cts?.cancel();
    const cts = new vscode.CancellationTokenSource();
    p.cts = cts;
    p.panel.post({ type: "status", state: "running", message: `previewing ${path.basename(file)}` });
    try {
      const r = await this.client.request(PreviewExperimentRequest, { file, text, item: p.item, clampItem: true }, tokenOf(cts.token), "preview");
      if (version !== p.version || this.preview !== p) return; // a newer edit won
      p.item = r.item.index; // clamped when the file lost items
      const title = `Preview ${path.basename(file)}`;
      await p.panel.show(
        r.record,
        title,
        { file, index: r.item.index, total: r.item.total, variant: r.item.variant, variants: r.variants, image: r.item.image, expected: r.item.expected, cached: r.cached },
        previewImagePath(file, r.item),
      );
      p.panel.post({ type: "status", state: "idle" });
    } catch (e) {
      if ((e as { code?: number }).code === -32800) return; // superseded by a newer edit
      const data = (e as { data?: { errors?: string[] } }).data;
      if (data?.errors?.length) {
        p.panel.post({ type: "problems", file, problems: data.errors.map((m) => ({ path: "/", message: m })) });
      } else {
        p.panel.post({ type: "status", state: "error", message: errorText(e) });
      }
    }
  }

  /** The user's consent for untrusted workspaces and for paths outside the workspace. */
  private async allowed(file: string, experiment: LensExperiment, ask = true, purpose: "run" | "preview" = "run"): Promise<boolean> {
    const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
    // a preview writes nothing: it never asks about the results folder (Run Experiment does)
    const outside = pathsNeedingConsent(experimentPaths(experiment, file), folders, file, purpose);
    const untrusted = !vscode.workspace.isTrusted;
    if (!outside.length && !untrusted) return true;
    const key = `${file}\n${untrusted}\n${outside.map((o) => o.path).join("\n")}`;
    if (this.confirmed.has(key)) return true;
    if (!ask) return false;
    const lines = outside.map((o) => `${o.role}: ${o.path} (${o.reason})`);
    const detail = [
      untrusted ? "This workspace is not trusted; the experiment file decides which model runs and which files are read and written." : "",
      lines.length ? `It names paths that need your permission:\n${lines.join("\n")}` : "",
    ]
      .filter(Boolean)
      .join("\n\n");
    const allow = "Allow";
    const answer = await vscode.window.showWarningMessage(`${purpose === "preview" ? "Preview" : "Run"} ${path.basename(file)}?`, { modal: true, detail }, allow);
    if (answer !== allow) return false;
    this.confirmed.add(key);
    return true;
  }
}

function comparisonMessage(title: string, aggregates: SweepAggregates, items: ComparisonMessage["items"]): ComparisonMessage {
  const layerLabels = ["embeddings", ...Array.from({ length: Math.max(0, aggregates.layers - 1) }, (_, i) => `block ${i + 1}`)];
  return { type: "comparison", title, aggregates, layerLabels, items };
}

async function experimentDocument(uri?: vscode.Uri): Promise<vscode.TextDocument | undefined> {
  if (uri) return vscode.workspace.openTextDocument(uri);
  const doc = vscode.window.activeTextEditor?.document;
  if (doc && isExperimentDocument(doc)) return doc;
  const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { "Lens experiments": ["lens.json", "json"] }, title: "Choose a .lens.json experiment" });
  return picked?.[0] ? vscode.workspace.openTextDocument(picked[0]) : undefined;
}

/** vscode's CancellationToken and vscode-jsonrpc's have the same shape. */
function tokenOf(token: vscode.CancellationToken) {
  return token as unknown as import("vscode-jsonrpc").CancellationToken;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : typeof e === "object" && e && "message" in e ? String((e as { message: unknown }).message) : String(e);
}

function formatSeconds(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
