/**
 * Renders chat templates in a child process (templateWorker.ts) with a capped heap and a time
 * limit. A template is a program from the model folder: `{% for i in range(1000000000) %}`
 * exhausted the sidecar's heap and took it down, and nested loops held it for minutes where
 * cancel could not reach. A worker thread is not enough: V8 ends the whole process when a
 * thread's heap runs out while an array grows. One process stays warm per sidecar (about a
 * millisecond a render once started) and is replaced after it is killed.
 */
import { type ChildProcess, fork } from "node:child_process";
import { LensInputError } from "../errors";
import { bundledEntry } from "../util/bundledEntry";
import { MAX_RENDERED_CHARS, MAX_TEMPLATE_LOOP_ITEMS, TEMPLATE_MEMORY_MB, TEMPLATE_TIME_LIMIT_MS } from "./limits";
import type { TemplateReply, TemplateRequest } from "./templateProtocol";

/** How long the process may take to start (a loaded machine, a cold disk). */
const START_LIMIT_MS = 30_000;

export interface RenderLimits {
  timeMs: number;
  maxChars: number;
  maxLoopItems: number;
}

const DEFAULT_LIMITS: RenderLimits = { timeMs: TEMPLATE_TIME_LIMIT_MS, maxChars: MAX_RENDERED_CHARS, maxLoopItems: MAX_TEMPLATE_LOOP_ITEMS };

class TemplateProcess {
  private readonly child: ChildProcess;
  readonly ready: Promise<void>;
  private waiting?: { resolve: (r: TemplateReply) => void; reject: (how: string) => void };
  private exitReason?: string;

  constructor(entry: string) {
    // stdout and stderr ignored: the sidecar's stdout is JSON-RPC, and V8's out-of-memory report is many lines
    this.child = fork(entry, [], { execArgv: [`--max-old-space-size=${TEMPLATE_MEMORY_MB}`], stdio: ["ignore", "ignore", "ignore", "ipc"], serialization: "json" });
    this.idle();
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(new Error(`the chat template renderer did not start within ${START_LIMIT_MS / 1000} s`));
      }, START_LIMIT_MS);
      this.waiting = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (how) => {
          clearTimeout(timer);
          reject(new Error(`the chat template renderer could not start (${how})`));
        },
      };
    });
    this.ready.catch(() => undefined);
    this.child.on("message", (m: TemplateReply) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.resolve(m);
    });
    this.child.on("error", (e) => this.ended(e.message));
    this.child.on("exit", (code, signal) => this.ended(signal ? `signal ${signal}` : `exit code ${code}`));
  }

  get alive(): boolean {
    return this.exitReason === undefined;
  }

  /** Sends one request; resolves with its reply, rejects with how the process ended. */
  request(req: TemplateRequest): Promise<TemplateReply> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject: (how) => reject(new Error(how)) };
      this.child.ref();
      this.child.channel?.ref();
      this.child.send(req);
    }).finally(() => this.idle()) as Promise<TemplateReply>;
  }

  kill(): void {
    this.exitReason ??= "killed";
    // held until its exit is seen, so a pending render learns of it
    this.child.ref();
    this.child.kill("SIGKILL");
  }

  /** An idle renderer does not keep the CLI alive; it exits when the sidecar's channel closes. */
  private idle(): void {
    this.child.unref();
    this.child.channel?.unref();
  }

  private ended(how: string): void {
    this.exitReason ??= how;
    this.child.unref();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(this.exitReason);
  }
}

let current: TemplateProcess | undefined;
let queue: Promise<unknown> = Promise.resolve();
let nextId = 1;

/**
 * `source` rendered with `context`, within the limits (by default those of limits.ts). Every
 * failure of the template is a one-line LensInputError naming `file`. Renders run one at a time.
 */
export function renderChatTemplate(source: string, context: Record<string, unknown>, file: string, limits: RenderLimits = DEFAULT_LIMITS): Promise<string> {
  const run = queue.then(() => renderOnce(source, context, file, limits));
  queue = run.catch(() => undefined);
  return run;
}

async function renderOnce(source: string, context: Record<string, unknown>, file: string, limits: RenderLimits): Promise<string> {
  if (!current?.alive) current = new TemplateProcess(bundledEntry("templateWorker", __dirname));
  const proc = current;
  await proc.ready;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill();
  }, limits.timeMs);
  let reply: TemplateReply;
  try {
    reply = await proc.request({ id: nextId++, source, context, maxChars: limits.maxChars, maxLoopItems: limits.maxLoopItems });
  } catch (e) {
    if (timedOut) {
      throw new LensInputError(file, `the chat template did not finish within ${limits.timeMs / 1000} s: check the template for a loop that does not end or runs too long`);
    }
    const how = (e as Error).message;
    if (/SIGABRT|SIGTRAP|SIGSEGV|exit code 134/.test(how)) {
      throw new LensInputError(file, `the chat template used more than ${TEMPLATE_MEMORY_MB} MB of memory and was stopped: check the template for a loop that builds a huge string or list`);
    }
    throw new LensInputError(file, `the chat template's renderer stopped while rendering it (${how}): check the template`);
  } finally {
    clearTimeout(timer);
  }
  if ("text" in reply) return reply.text;
  if ("limit" in reply) throw new LensInputError(file, `the chat template ${reply.limit}: check the template`);
  if ("error" in reply) throw new LensInputError(file, `the chat template failed to render (${reply.error}): check the template`);
  throw new Error("the chat template renderer answered out of turn");
}

/** Stops the renderer process, if one runs (tests; the process also ends with the sidecar). */
export function stopChatTemplateRenderer(): void {
  current?.kill();
  current = undefined;
}
