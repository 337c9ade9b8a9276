/**
 * Logit Lens panels: one webview per run (and one live preview per .lens.json, and comparison
 * views of finished sweeps). Each panel's data reaches it only by postMessage; the record is
 * also kept in the records folder so that a panel restored after a reload (the serializer below)
 * reads it back instead of rerunning.
 *
 * Security: CSP default-src 'none' with a nonce per page (src/webview/html.ts), scripts only
 * from the extension's dist folder, localResourceRoots limited to dist, media and the analysed
 * image's folder.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as vscode from "vscode";
import { decodeBlocks, encodeBlocks } from "../shared/blockTransport";
import { recordToCsv, recordToJson } from "../shared/exportCsv";
import type { LensRecord } from "../shared/lensRecord";
import { aggregatesToCsv } from "../shared/sweep";
import { AttentionPatternRequest, ErrorCode, type RunParams, RunRequest, TrackTokensRequest } from "../shared/protocol";
import type { ComparisonMessage, HostState, HostToWebview, PanelState, ProblemsMessage, ShowRecordMessage, StatusMessage, WebviewToHost } from "../shared/webviewProtocol";
import { writeFileAtomic } from "../sidecar/util/atomicWrite";
import { withHead } from "../webview/headModel";
import { panelHtml } from "../webview/html";
import { exportFolder } from "./experimentPaths";
import { IMAGE_OVERLAY } from "./settings";
import type { SidecarClient } from "./sidecarClient";

export const PANEL_VIEW_TYPE = "logitLens.panel";

/** What the host keeps per panel; `recordFile` also lives in the webview state for restores. */
interface PanelEntry {
  panel: vscode.WebviewPanel;
  kind: PanelState["kind"];
  last?: ShowRecordMessage | ComparisonMessage;
  record?: LensRecord;
  imagePath?: string;
  /** The request that made the record, to rerun it when the sidecar's last run is another one. */
  request?: RunParams;
  /** Where the record is kept, for the page to store in its state (sent again on every "ready"). */
  host?: HostState;
  ready: boolean;
  /** A preview's .lens.json file (where its exports go when there is no workspace). */
  sourceFile?: string;
  /** The last problems and status posted, sent again on "ready": a page still loading drops what is posted to it. */
  problems?: ProblemsMessage;
  status?: StatusMessage;
  /** A comparison view's handler for its per-item table. */
  openItem?: (id: string) => Promise<void>;
  /** A live preview's handlers (experiments.ts). */
  preview?: PreviewHandlers;
}

/** What a live preview's panel asks of the experiment it follows. */
export interface PreviewHandlers {
  /** Show planned item `index`. */
  showItem(index: number): void;
  /** List the planned items to choose one. */
  chooseItem(): Promise<void>;
  /** Compute the shown item again, as the sidecar's last run. */
  rerun(): Promise<void>;
}


export class LensPanels implements vscode.Disposable {
  private readonly entries = new Set<PanelEntry>();
  /** The panel whose request was the sidecar's last lens/run (lens/trackTokens answers for it). */
  private lastRun: PanelEntry | null = null;
  private readonly disposables: vscode.Disposable[] = [];
  private disposing = false;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly client: SidecarClient,
    private readonly log: vscode.LogOutputChannel,
    private readonly recordsFolder: () => string,
  ) {
    this.disposables.push(vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, { deserializeWebviewPanel: (p, s) => this.restore(p, s) }));
  }

  /** Opens a panel for a finished run. */
  async showRun(record: LensRecord, request: RunParams | undefined, imagePath: string | undefined, heading?: string): Promise<vscode.WebviewPanel> {
    const title = heading ? `${heading}: ${panelTitle(record, imagePath)}` : panelTitle(record, imagePath);
    const entry = this.create("run", title, imagePath, vscode.ViewColumn.Beside);
    entry.request = request;
    this.lastRun = entry;
    await this.setRecord(entry, record, title, undefined);
    return entry.panel;
  }

  /** A panel that follows a .lens.json file (experimentPreview.ts drives it). */
  createPreview(file: string, handlers: PreviewHandlers): PreviewPanel {
    const entry = this.create("preview", `Preview ${path.basename(file)}`, undefined, vscode.ViewColumn.Beside, true);
    entry.sourceFile = file;
    entry.preview = handlers;
    return new PreviewPanel(this, entry);
  }

  /**
   * A comparison view of a finished sweep's aggregates; `openItem` opens a row of its per-item
   * table. With `source`, a panel restored after a reload reads its results folder again
   * (through `comparisonOf`) and its items open again.
   */
  showComparison(message: ComparisonMessage, openItem?: (id: string) => Promise<void>, source?: { resultsFolder: string; experimentFile: string | null }): vscode.WebviewPanel {
    const entry = this.create("comparison", message.title, undefined, vscode.ViewColumn.Active);
    entry.last = message;
    entry.openItem = openItem;
    this.post(entry, message);
    if (source) {
      entry.host = { kind: "comparison", title: message.title, ...source };
      this.post(entry, { type: "hostState", state: entry.host });
      void this.remember(entry.host, true);
    }
    return entry.panel;
  }

  /** How a restored comparison view gets its data again (experiments.ts sets it). */
  comparisonOf?: (resultsFolder: string, experimentFile: string | null) => Promise<{ message: ComparisonMessage; openItem: (id: string) => Promise<void> }>;

  /** The record a panel shows (for tests and the export command). */
  get panels(): readonly { panel: vscode.WebviewPanel; record?: LensRecord }[] {
    return [...this.entries];
  }

  dispose(): void {
    this.disposing = true;
    for (const e of this.entries) e.panel.dispose();
    this.disposables.forEach((d) => d.dispose());
  }

  /** @internal for PreviewPanel: whether the sidecar's last run is this panel's record now. */
  ranLast(entry: PanelEntry, yes: boolean): void {
    if (yes) this.lastRun = entry;
    else if (this.lastRun === entry) this.lastRun = null;
  }

  /** @internal for PreviewPanel */
  async setRecord(entry: PanelEntry, record: LensRecord, title: string, preview: ShowRecordMessage["preview"], imagePath?: string): Promise<void> {
    if (imagePath !== undefined && imagePath !== entry.imagePath) {
      entry.imagePath = imagePath;
      entry.panel.webview.options = this.webviewOptions(imagePath);
    }
    entry.record = record;
    entry.problems = undefined; // a good record replaces the problems (the page hides them too)
    entry.panel.title = title;
    const message: ShowRecordMessage = {
      type: "show",
      record,
      imageUri: entry.imagePath ? entry.panel.webview.asWebviewUri(vscode.Uri.file(entry.imagePath)).toString() : null,
      title,
      ...(preview ? { preview } : {}),
    };
    entry.last = message;
    this.post(entry, message);
    if (entry.kind === "run") await this.keepRecord(entry, record, title);
  }

  /** @internal */
  post(entry: PanelEntry, message: HostToWebview): void {
    if (message.type === "problems") entry.problems = message;
    else if (message.type === "status") entry.status = message;
    // Large blocks go as typed arrays, which VS Code hands to the page as bytes (main.ts decodes).
    if (entry.ready) void entry.panel.webview.postMessage(encodeBlocks(message, "typed"));
  }

  private create(kind: PanelState["kind"], title: string, imagePath: string | undefined, column: vscode.ViewColumn, preserveFocus = false): PanelEntry {
    const panel = vscode.window.createWebviewPanel(PANEL_VIEW_TYPE, title, { viewColumn: column, preserveFocus }, this.webviewOptions(imagePath));
    return this.attach(panel, kind, imagePath);
  }

  private attach(panel: vscode.WebviewPanel, kind: PanelState["kind"], imagePath: string | undefined): PanelEntry {
    const entry: PanelEntry = { panel, kind, imagePath, ready: false };
    panel.iconPath = vscode.Uri.joinPath(this.context.extensionUri, "media", "icon.svg");
    panel.webview.options = this.webviewOptions(imagePath);
    panel.webview.html = this.html(panel.webview);
    this.entries.add(entry);
    panel.webview.onDidReceiveMessage((m: WebviewToHost) => this.onMessage(entry, m), undefined, this.disposables);
    panel.onDidDispose(() => {
      this.entries.delete(entry);
      if (this.lastRun === entry) this.lastRun = null;
      // closed by the user (not by a reload, which disposes nothing): forget its kept record
      if (entry.host && !this.disposing) void this.remember(entry.host, false);
    });
    return entry;
  }

  private webviewOptions(imagePath: string | undefined): vscode.WebviewOptions {
    const roots = [vscode.Uri.joinPath(this.context.extensionUri, "dist"), vscode.Uri.joinPath(this.context.extensionUri, "media")];
    if (imagePath) roots.push(vscode.Uri.file(path.dirname(imagePath)));
    return { enableScripts: true, localResourceRoots: roots };
  }

  private html(webview: vscode.Webview): string {
    const uri = (...p: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(this.context.extensionUri, ...p)).toString();
    return panelHtml({
      scriptUri: uri("dist", "webview.js"),
      styleUri: uri("media", "webview.css"),
      cspSource: webview.cspSource,
      nonce: randomBytes(18).toString("base64url"),
    });
  }

  private async onMessage(entry: PanelEntry, m: WebviewToHost): Promise<void> {
    try {
      if (m.type === "ready") {
        entry.ready = true;
        if (entry.last) this.post(entry, entry.last);
        // after the record: its "show" hides problems, and these are newer
        if (entry.problems) this.post(entry, entry.problems);
        if (entry.status) this.post(entry, entry.status);
        if (entry.host) this.post(entry, { type: "hostState", state: entry.host });
      } else if (m.type === "track") {
        await this.track(entry, m.text, m.ids);
      } else if (m.type === "export") {
        await this.export(entry, m.format, m.name, m.data, m.error);
      } else if (m.type === "openItem") {
        if (!entry.openItem) throw new Error("this comparison no longer knows its results folder: open it again with Logit Lens: Compare Results");
        this.post(entry, { type: "status", state: "running", message: "opening the item" });
        await entry.openItem(m.id);
        this.post(entry, { type: "status", state: "idle" });
      } else if (m.type === "rerunWithOverlay") {
        await this.rerunWithOverlay(entry);
      } else if (m.type === "headPattern") {
        await this.headPattern(entry, m.block, m.head);
      } else if (m.type === "maskHead") {
        await this.maskHead(entry, m.block, m.head);
      } else if (m.type === "previewItem") {
        entry.preview?.showItem(m.index);
      } else if (m.type === "choosePreviewItem") {
        await entry.preview?.chooseItem();
      }
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const message = m.type === "export" ? `could not export ${m.name}: ${reason}` : reason;
      this.log.error(`panel ${m.type}: ${message}`);
      this.post(entry, { type: "status", state: "error", message });
      if (m.type === "export") void vscode.window.showErrorMessage(`Logit Lens: ${message}`);
    }
  }

  private async track(entry: PanelEntry, text: string, ids?: number[]): Promise<void> {
    if (!entry.record) return;
    const params = ids?.length ? { tokens: [], ids } : { tokens: [text] };
    const r = await this.overPanelRun(entry, `tracking "${text}"`, () => this.client.request(TrackTokensRequest, params, undefined, "tracking a token"));
    this.post(entry, { type: "tracked", ids: r.ids, texts: r.texts, asked: r.asked, pieces: r.pieces, unknown: r.unknown, rank: r.rank, prob: r.prob });
    this.post(entry, { type: "status", state: "idle" });
  }

  /** A head's whole attention pattern in this panel's run (lens/attentionPattern answers over the sidecar's last run). */
  private async headPattern(entry: PanelEntry, block: number, head: number): Promise<void> {
    if (!entry.record) return;
    const what = `reading block ${block + 1} head ${head}`;
    if (this.lastRun === entry) this.post(entry, { type: "status", state: "running", message: what });
    const r = await this.overPanelRun(entry, what, () => this.client.request(AttentionPatternRequest, { layer: block, head }, undefined, "reading a head"));
    this.post(entry, { type: "headPattern", block, head, rows: r.rows });
    this.post(entry, { type: "status", state: "idle" });
  }

  /** "Mask this head and rerun": the panel's request with the head added to its mask; the panel keeps its record and shows both. */
  private async maskHead(entry: PanelEntry, block: number, head: number): Promise<void> {
    if (!entry.record) return;
    if (entry.preview) throw new Error('a preview runs what its file says: add a variant with "mask": {"' + block + '": [' + head + "]} to the file to compare it");
    const base = requestOf(entry, entry.record);
    const heads = withHead(entry.record.headMask, { block, head });
    this.post(entry, { type: "status", state: "running", message: `running again with block ${block + 1} head ${head} masked` });
    const record = await this.client.request(RunRequest, { ...base, headMask: { heads } }, undefined, "running the lens");
    // the sidecar's last run is the masked one now, not the panel's
    this.ranLast(entry, false);
    this.post(entry, { type: "maskedRun", block, head, record });
    this.post(entry, { type: "status", state: "idle" });
  }

  /**
   * A request that answers over the sidecar's last run, made for this panel's record: the
   * panel's run again first when another one ran since, and once more when the sidecar has
   * forgotten its last run (another model was opened since).
   */
  private async overPanelRun<T>(entry: PanelEntry, what: string, send: () => Promise<T>): Promise<T> {
    if (this.lastRun !== entry) await this.makeLastRun(entry, what);
    return send().catch(async (e: unknown) => {
      if ((e as { code?: number }).code !== ErrorCode.NO_RUN) throw e;
      await this.makeLastRun(entry, what);
      return send();
    });
  }

  /**
   * Makes this panel's record the sidecar's last run again (lens/trackTokens and
   * lens/attentionPattern answer over it): a preview computes its item again (with its file's
   * model), a run panel reruns its request.
   */
  private async makeLastRun(entry: PanelEntry, what: string): Promise<void> {
    if (!entry.record) throw new Error("this panel has no record yet");
    this.post(entry, { type: "status", state: "running", message: what });
    if (entry.preview) await entry.preview.rerun();
    else await this.client.request(RunRequest, requestOf(entry, entry.record), undefined, "running the lens");
    this.lastRun = entry;
  }

  /** The card's "Run with the image overlay": the panel's run again, now keeping per-patch attention and the patch lens. */
  private async rerunWithOverlay(entry: PanelEntry): Promise<void> {
    if (entry.kind !== "run") throw new Error('a preview runs what its file says: set "imageAttention": true and "patchLens": true in its "lens" settings');
    if (!entry.record || !entry.imagePath) throw new Error("this panel has no image run to rerun");
    const base = requestOf(entry, entry.record);
    const request: RunParams = { ...base, settings: { ...base.settings, ...IMAGE_OVERLAY } };
    this.post(entry, { type: "status", state: "running", message: "running again with the image overlay" });
    const record = await this.client.request(RunRequest, request, undefined, "running the lens");
    entry.request = request;
    if (entry.kind === "run") this.lastRun = entry;
    await this.setRecord(entry, record, panelTitle(record, entry.imagePath), undefined);
    this.post(entry, { type: "status", state: "idle" });
  }

  private async export(entry: PanelEntry, format: "csv" | "json" | "svg" | "png", name: string, data?: string, error?: string): Promise<void> {
    // the panel could not make the file: its reason goes to the log and back to the panel (onMessage)
    if (error !== undefined) throw new Error(String(error));
    let bytes: Uint8Array;
    if ((format === "csv" || format === "json") && entry.last?.type === "comparison") {
      // a comparison view exports its aggregates, as aggregates.csv / aggregates.json of a sweep
      const a = entry.last.aggregates;
      bytes = Buffer.from(format === "csv" ? aggregatesToCsv(a) : `${JSON.stringify(a, null, 1)}\n`, "utf8");
    } else if (format === "csv" || format === "json") {
      if (!entry.record) throw new Error("this panel has no record to export");
      bytes = Buffer.from(format === "csv" ? recordToCsv(entry.record) : recordToJson(entry.record), "utf8");
    } else if (format === "svg") {
      if (!data?.startsWith("<svg")) throw new Error("the panel sent no SVG");
      bytes = Buffer.from(data, "utf8");
    } else {
      const match = /^data:image\/png;base64,(.+)$/su.exec(data ?? "");
      if (!match) throw new Error("the panel sent no PNG");
      bytes = Buffer.from(match[1], "base64");
    }
    const base = exportFolder((vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath), entry.imagePath, entry.sourceFile);
    const suggested = safeName(name, format);
    const target = await vscode.window.showSaveDialog({
      defaultUri: base ? vscode.Uri.file(path.join(base, suggested)) : undefined,
      filters: { [format.toUpperCase()]: [format] },
      title: `Export ${format.toUpperCase()}`,
    });
    if (!target) return;
    await writeFileAtomic(target.fsPath, bytes);
    this.log.info(`exported ${format} to ${target.fsPath}`);
    void vscode.window.setStatusBarMessage(`Logit Lens: saved ${path.basename(target.fsPath)}`, 4000);
  }

  /** Writes the record where a restored panel will find it, and tells the page to remember where. */
  private async keepRecord(entry: PanelEntry, record: LensRecord, title: string): Promise<void> {
    const folder = this.recordsFolder();
    const file = path.join(folder, `${new Date().toISOString().replace(/[:.]/gu, "-")}-${randomBytes(3).toString("hex")}.json`);
    try {
      await fs.mkdir(folder, { recursive: true });
      // A cache for restoring the panel, not a user's file: large blocks are kept as bytes.
      await writeFileAtomic(file, JSON.stringify(encodeBlocks(record, "base64")));
      entry.host = { recordFile: file, imagePath: entry.imagePath, title, kind: entry.kind };
      this.post(entry, { type: "hostState", state: entry.host });
      await this.remember(entry.host, true);
    } catch (e) {
      this.log.warn(`could not keep the record for restoring the panel: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Adds (or removes) a kept record (or a comparison's results folder) in the workspace's list, for restoring panels whose page state was lost. */
  private async remember(host: HostState, keep: boolean): Promise<void> {
    const same = (h: HostState) => (host.recordFile !== undefined ? h.recordFile === host.recordFile : h.resultsFolder === host.resultsFolder && h.title === host.title);
    const list = this.context.workspaceState.get<HostState[]>(KEPT_KEY, []).filter((h) => !same(h));
    if (keep) list.push(host);
    await this.context.workspaceState.update(KEPT_KEY, list.slice(-KEPT_MAX));
  }

  private async restore(panel: vscode.WebviewPanel, state: unknown): Promise<void> {
    const s = (state ?? {}) as PanelState;
    // The page's state can be lost when the window goes away before the workbench saved it: then
    // find the panel's kept record by its title among those this workspace remembers.
    if (!s.host?.recordFile && !s.host?.resultsFolder) {
      const known = this.context.workspaceState.get<HostState[]>(KEPT_KEY, []).filter((h) => h.title === panel.title);
      if (known.length) s.host = known[known.length - 1];
    }
    this.log.info(`restoring a panel (${s.kind ?? "unknown kind"}; kept record: ${s.host?.recordFile ?? "none"}; saved view: ${s.last ? "yes" : "no"})`);
    const host = s.host ?? {};
    const entry = this.attach(panel, host.kind ?? s.kind ?? "run", host.imagePath);
    if (host.resultsFolder && this.comparisonOf) {
      // a comparison reads its results folder again: its items open, and a rerun sweep shows its new figures
      try {
        const { message, openItem } = await this.comparisonOf(host.resultsFolder, host.experimentFile ?? null);
        entry.host = host;
        entry.last = message;
        entry.openItem = openItem;
        this.post(entry, message);
        if (entry.ready) this.post(entry, { type: "hostState", state: host });
        return;
      } catch (e) {
        this.log.warn(`could not restore a comparison of ${host.resultsFolder}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (host.recordFile) {
      try {
        const record = decodeBlocks(JSON.parse(await fs.readFile(host.recordFile, "utf8")) as LensRecord);
        entry.host = host;
        entry.record = record;
        entry.last = { type: "show", record, imageUri: host.imagePath ? panel.webview.asWebviewUri(vscode.Uri.file(host.imagePath)).toString() : null, title: host.title ?? panel.title };
        this.post(entry, entry.last);
        if (entry.ready) this.post(entry, { type: "hostState", state: host });
        return;
      } catch (e) {
        this.log.warn(`could not restore a panel from ${host.recordFile}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (s.last) {
      entry.last = s.last;
      if (s.last.type === "show") entry.record = s.last.record;
    }
  }
}

const KEPT_KEY = "logitLens.keptRecords";
const KEPT_MAX = 50;

/** The live preview's handle on its panel. */
export class PreviewPanel {
  constructor(
    private readonly panels: LensPanels,
    private readonly entry: PanelEntry,
  ) {}

  get panel(): vscode.WebviewPanel {
    return this.entry.panel;
  }

  /** Shows a previewed item; a computed one (not from the cache) is the sidecar's last run now. */
  show(record: LensRecord, title: string, preview: NonNullable<ShowRecordMessage["preview"]>, imagePath: string | undefined): Promise<void> {
    this.panels.ranLast(this.entry, !preview.cached);
    return this.panels.setRecord(this.entry, record, title, preview, imagePath);
  }

  post(message: HostToWebview): void {
    this.panels.post(this.entry, message);
  }

  /** The .lens.json file the preview follows now. */
  set sourceFile(file: string) {
    this.entry.sourceFile = file;
  }
}

function panelTitle(record: LensRecord, imagePath: string | undefined): string {
  const prompt = record.input.prompt.length > 40 ? `${record.input.prompt.slice(0, 39)}…` : record.input.prompt;
  return `${imagePath ? path.basename(imagePath) : "text"}: ${prompt}`;
}

/** The request that made a panel's record: the one kept, else one built from the record. */
function requestOf(entry: PanelEntry, record: LensRecord): RunParams {
  return entry.request ?? { prompt: record.input.prompt, ...(entry.imagePath ? { image: entry.imagePath } : {}), settings: record.input.settings, ...(record.headMask ? { headMask: { heads: record.headMask } } : {}) };
}

function safeName(name: string, format: string): string {
  const base = name.replace(/[^A-Za-z0-9._ -]+/gu, "_").replace(/^\.+/u, "") || "logit-lens";
  return base.toLowerCase().endsWith(`.${format}`) ? base : `${base}.${format}`;
}
