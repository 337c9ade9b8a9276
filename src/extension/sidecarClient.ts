/**
 * The extension's side of the sidecar: one Node child process speaking JSON-RPC (vscode-jsonrpc)
 * over stdio. It starts on first use, performs the versioned `lens/initialize` handshake, opens
 * the configured model, forwards cancellation ($/cancelRequest through CancellationTokens),
 * restarts after a crash with backoff (at most `maxRestarts` tries in a row, then it gives up
 * until `reset()`), and shuts down cleanly.
 *
 * Nothing here imports vscode, so the whole lifecycle is tested against the real sidecar bundle
 * in plain Node (test/integration/sidecarClient.test.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  type CancellationToken,
  createMessageConnection,
  type MessageConnection,
  type NotificationType,
  type RequestType,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-jsonrpc/node";
import { decodeBlocks } from "../shared/blockTransport";
import {
  ExperimentProgressNotification,
  type ExperimentProgressParams,
  InitializeRequest,
  type InitializeResult,
  LogNotification,
  ModelChangedNotification,
  type LogParams,
  type ModelSummary,
  OpenModelRequest,
  type OpenModelParams,
  PROTOCOL_VERSION,
  ProgressNotification,
  ShutdownRequest,
} from "../shared/protocol";

export interface SidecarLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface SidecarOptions {
  /** The built sidecar bundle (dist/sidecar.js). */
  script: string;
  /** The Node executable: process.execPath (in desktop VS Code that is Electron, run as Node). */
  execPath?: string;
  /** The model to open after each (re)start; read anew each time. */
  model: () => OpenModelParams;
  log: SidecarLogger;
  /** How many restarts in a row after crashes before giving up (default 3). */
  maxRestarts?: number;
  /** Backoff before restart n (1-based), in ms (default 500 * 2^(n-1)). */
  backoffMs?: (attempt: number) => number;
  clientName?: string;
  env?: NodeJS.ProcessEnv;
}

export type SidecarState =
  | { kind: "stopped" }
  | { kind: "starting" }
  | { kind: "ready"; model: ModelSummary | null; server: InitializeResult }
  | { kind: "busy"; model: ModelSummary | null; what: string }
  | { kind: "failed"; message: string };

/**
 * Whether a request may have left another model open in the sidecar than the one the settings
 * name: an experiment opens the model its file names. A preview says which model it ran; a
 * whole sweep, and a request that failed, are taken to have opened their own.
 */
function opensItsOwnModel(method: string, result: unknown, open: ModelSummary | null): boolean {
  if (method === "lens/runExperiment") return true;
  if (method !== "lens/previewExperiment") return false;
  const folder = (result as { record?: { model?: { folder?: string } } } | undefined)?.record?.model?.folder;
  return folder === undefined || folder !== open?.folder;
}

/** Thrown when the sidecar cannot be (re)started any more; the message names what happened. */
export class SidecarUnavailableError extends Error {}

interface Running {
  child: ChildProcess;
  connection: MessageConnection;
  server: InitializeResult;
  model: ModelSummary | null;
  modelKey: string;
}

export class SidecarClient {
  private running: Running | null = null;
  private starting: Promise<Running> | null = null;
  private crashes = 0;
  private disposed = false;
  private busy = 0;
  private busyWhat = "";
  private failure: string | null = null;
  private readonly stateListeners = new Set<(s: SidecarState) => void>();
  private readonly progressListeners = new Set<(stage: string) => void>();
  private readonly experimentListeners = new Set<(p: ExperimentProgressParams) => void>();
  private stderrTail = "";
  /**
   * The last request sent, settled. The sidecar runs requests in arrival order and an experiment's
   * run or preview may open the file's own model: a run sent while one is in flight (or while
   * another request is still opening the settings' model) would run on that model. So requests
   * go one at a time, each checking the open model just before it is sent.
   */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: SidecarOptions) {}

  get state(): SidecarState {
    if (this.failure) return { kind: "failed", message: this.failure };
    if (this.running && this.busy > 0) return { kind: "busy", model: this.running.model, what: this.busyWhat };
    if (this.running) return { kind: "ready", model: this.running.model, server: this.running.server };
    return this.starting ? { kind: "starting" } : { kind: "stopped" };
  }

  /** The process id of the running sidecar (for tests and the runtime-info command). */
  get pid(): number | undefined {
    return this.running?.child.pid;
  }

  onState(listener: (s: SidecarState) => void): { dispose(): void } {
    this.stateListeners.add(listener);
    return { dispose: () => this.stateListeners.delete(listener) };
  }

  onProgress(listener: (stage: string) => void): { dispose(): void } {
    this.progressListeners.add(listener);
    return { dispose: () => this.progressListeners.delete(listener) };
  }

  onExperimentProgress(listener: (p: ExperimentProgressParams) => void): { dispose(): void } {
    this.experimentListeners.add(listener);
    return { dispose: () => this.experimentListeners.delete(listener) };
  }

  /** Forget earlier crashes (after the user changed the model or asked to retry). */
  reset(): void {
    this.crashes = 0;
    this.failure = null;
    this.emit();
  }

  /**
   * Sends a request once the sidecar is up with the configured model open (starting or
   * reopening it as needed). A crash while the request is in flight rejects it; the next call
   * restarts the sidecar.
   */
  async request<P, R>(type: RequestType<P, R, void>, params: P, token?: CancellationToken, what = type.method): Promise<R> {
    const done = this.queue.then(() => this.send(type, params, token, what));
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async send<P, R>(type: RequestType<P, R, void>, params: P, token: CancellationToken | undefined, what: string): Promise<R> {
    const running = await this.ensureModel();
    this.busy++;
    this.busyWhat = what;
    this.emit();
    try {
      let result: R;
      try {
        result = token ? await running.connection.sendRequest(type, params, token) : await running.connection.sendRequest(type, params);
      } catch (e) {
        // a failed experiment request may have opened the file's model before it failed
        if (opensItsOwnModel(type.method, undefined, running.model)) running.modelKey = "";
        throw e;
      }
      this.crashes = 0; // a request went through: earlier crashes no longer count towards giving up
      if (opensItsOwnModel(type.method, result, running.model)) running.modelKey = ""; // the next run reopens the setting's model
      return decodeBlocks(result);
    } finally {
      this.busy--;
      this.emit();
    }
  }

  /** The sidecar's handshake answer (supported architectures, providers), starting it when needed. */
  async server(): Promise<InitializeResult> {
    return (await this.ensureStarted()).server;
  }

  /** The summary of the open model, opening it (and starting the sidecar) when needed. */
  async model(): Promise<ModelSummary> {
    const running = await this.ensureModel();
    return running.model!;
  }

  /** Ends the process: `lens/shutdown`, then exit; killed if it does not end within `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    const running = this.running ?? (this.starting ? await this.starting.catch(() => null) : null);
    this.running = null;
    this.starting = null;
    if (!running) return;
    running.child.removeAllListeners("exit");
    const exited = new Promise<void>((resolve) => {
      if (running.child.exitCode !== null || running.child.signalCode !== null) resolve();
      else running.child.once("exit", () => resolve());
    });
    try {
      await Promise.race([running.connection.sendRequest(ShutdownRequest), delay(graceMs)]);
    } catch {
      // already gone
    }
    running.connection.dispose();
    running.child.stdin?.end();
    const timer = setTimeout(() => running.child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
    this.emit();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stop();
    this.stateListeners.clear();
  }

  private async ensureModel(): Promise<Running> {
    const params = this.options.model();
    // every field counts: another folder, device, threads or dtype reopens the model
    const key = JSON.stringify(params);
    let running = await this.ensureStarted();
    if (running.modelKey !== key || !running.model) {
      this.busy++;
      this.busyWhat = "opening model";
      this.emit();
      try {
        running.model = await running.connection.sendRequest(OpenModelRequest, params);
        running.modelKey = key;
        this.options.log.info(
          `model: ${running.model.folder} (${running.model.architecture}, ${running.model.dtype} weights, ${running.model.computeDtype ?? "float32"} compute, ${running.model.provider}, opened in ${running.model.openMs.toFixed(0)} ms)`,
        );
      } finally {
        this.busy--;
        this.emit();
      }
      running = this.running ?? running;
    }
    return running;
  }

  private ensureStarted(): Promise<Running> {
    if (this.disposed) return Promise.reject(new SidecarUnavailableError("the Logit Lens sidecar was shut down"));
    if (this.failure) return Promise.reject(new SidecarUnavailableError(this.failure));
    if (this.running) return Promise.resolve(this.running);
    if (!this.starting) {
      this.starting = this.start().then(
        (r) => {
          this.running = r;
          this.starting = null;
          this.emit();
          return r;
        },
        (e: unknown) => {
          this.starting = null;
          this.emit();
          throw e;
        },
      );
      this.emit();
    }
    return this.starting;
  }

  private async start(): Promise<Running> {
    if (this.crashes > 0) {
      const wait = (this.options.backoffMs ?? ((n) => 500 * 2 ** (n - 1)))(this.crashes);
      this.options.log.warn(`restarting the sidecar in ${wait} ms (try ${this.crashes} of ${this.maxRestarts})`);
      await delay(wait);
    }
    const exec = this.options.execPath ?? process.execPath;
    this.options.log.info(`starting the sidecar: ${exec} ${this.options.script} serve`);
    this.stderrTail = "";
    const child = spawn(exec, [this.options.script, "serve"], {
      stdio: ["pipe", "pipe", "pipe"],
      // desktop VS Code's process.execPath is Electron: make it behave as plain Node
      env: { ...process.env, ...this.options.env, ELECTRON_RUN_AS_NODE: "1" },
      windowsHide: true,
    });
    child.stderr!.on("data", (d: Buffer) => {
      const text = d.toString();
      this.stderrTail = (this.stderrTail + text).slice(-4000);
      for (const line of text.split("\n")) if (line.trim()) this.options.log.warn(`sidecar stderr: ${line}`);
    });
    const connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    connection.onNotification(LogNotification, (p: LogParams) => this.options.log[p.level](p.message));
    connection.onNotification(ProgressNotification, (p) => this.progressListeners.forEach((l) => l(p.stage)));
    this.forward(connection, ExperimentProgressNotification, this.experimentListeners);
    // the open model changed on its own (its float32 copies, made in the background, are in use)
    connection.onNotification(ModelChangedNotification, (m: ModelSummary) => {
      const running = this.running;
      if (running?.connection !== connection || running.model?.folder !== m.folder) return;
      running.model = m;
      this.emit();
    });
    connection.listen();
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", () => resolve());
      child.once("error", (e) => reject(new SidecarUnavailableError(`could not start the sidecar (${exec}): ${e.message}`)));
    });
    const exitedEarly = new Promise<never>((_, reject) => {
      child.once("exit", (code, signal) =>
        reject(new SidecarUnavailableError(`the sidecar exited during start (${signal ?? `code ${code}`})${this.stderrTail ? `: ${this.stderrTail.trim().split("\n").pop()}` : ""}`)),
      );
    });
    exitedEarly.catch(() => undefined);
    let server: InitializeResult;
    try {
      await Promise.race([spawned, exitedEarly]);
      server = await Promise.race([
        connection.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION, clientName: this.options.clientName ?? "vscode" }),
        exitedEarly,
      ]);
    } catch (e) {
      connection.dispose();
      child.kill("SIGKILL");
      this.noteCrash(e instanceof Error ? e.message : String(e));
      throw e instanceof SidecarUnavailableError ? e : new SidecarUnavailableError(String(e));
    }
    const running: Running = { child, connection, server, model: null, modelKey: "" };
    child.removeAllListeners("exit");
    child.once("exit", (code, signal) => this.onExit(running, code, signal));
    this.options.log.info(
      `sidecar ${server.serverVersion} ready (protocol ${server.protocolVersion}; working providers: ${server.providers.filter((p) => p.works).map((p) => p.name).join(", ")})`,
    );
    return running;
  }

  private get maxRestarts(): number {
    return this.options.maxRestarts ?? 3;
  }

  private onExit(running: Running, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.running !== running) return;
    this.running = null;
    running.connection.dispose();
    this.noteCrash(`the sidecar exited unexpectedly (${signal ?? `code ${code}`})`);
    // come back on our own (with backoff), so the model is open again before the next request
    if (!this.failure && !this.disposed) void this.ensureModel().catch(() => undefined);
  }

  private noteCrash(message: string): void {
    this.crashes++;
    this.options.log.error(message);
    if (this.crashes > this.maxRestarts) {
      this.failure = `${message}; gave up after ${this.maxRestarts} restarts`;
    }
    this.emit();
  }

  private forward<P>(connection: MessageConnection, type: NotificationType<P>, listeners: Set<(p: P) => void>): void {
    connection.onNotification(type, (p: P) => listeners.forEach((l) => l(p)));
  }

  private emit(): void {
    const s = this.state;
    for (const l of this.stateListeners) l(s);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
