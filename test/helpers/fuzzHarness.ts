/**
 * The harness of the fuzz suite (test/fuzz): a seeded PRNG, a sidecar process spoken to in raw
 * JSON-RPC frames (so that a case can also write bytes no client would), the rules a reply must
 * meet, and a runner that feeds one category's cases to one sidecar, checks after each that the
 * sidecar still answers a valid request, restarts it when it is gone, and tallies the outcomes.
 *
 * Every case must end in a clear error (a JSON-RPC error reply with a non-internal code and a
 * one-line message, naming the file where there is one) or a correct answer; a crash (exit by
 * signal, or an exit code other than 0 or the input-error code 1), a hang past the per-case limit,
 * an internal error, a message of many lines, or a sidecar that no longer answers afterwards is a
 * failure, listed with the seed that reproduces it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { decodeBlocks } from "../../src/shared/blockTransport";
import { ErrorCode, PROTOCOL_VERSION } from "../../src/shared/protocol";
import { validateLensRecord } from "../../src/shared/validateRecord";

/** The built sidecar bundle; $LOGIT_LENS_FUZZ_SIDECAR points the suite at another build (an older commit's, to compare). */
export const SIDECAR = process.env["LOGIT_LENS_FUZZ_SIDECAR"] || path.resolve(__dirname, "../../dist/sidecar.js");

// ---------------------------------------------------------------------------------------------
// Seeds

/** The base seed: $LOGIT_LENS_FUZZ_SEED (decimal or 0x hex), else a fixed default. */
export const FUZZ_SEED = parseSeed(process.env["LOGIT_LENS_FUZZ_SEED"]) ?? 0x15_f022;
/** How many cases per category, relative to the default sizes ($LOGIT_LENS_FUZZ_SCALE, e.g. 0.2 or 5). */
export const FUZZ_SCALE = Math.max(0, Number(process.env["LOGIT_LENS_FUZZ_SCALE"] ?? "1") || 1);
/** Limit per case (a request and its follow-up), in ms ($LOGIT_LENS_FUZZ_CASE_MS). */
export const CASE_LIMIT_MS = Number(process.env["LOGIT_LENS_FUZZ_CASE_MS"] ?? "") || 12_000;
/** Only these cases: "images" or "images#3,frames#10" ($LOGIT_LENS_FUZZ_ONLY). */
const ONLY = (process.env["LOGIT_LENS_FUZZ_ONLY"] ?? "").split(",").map((s) => s.trim()).filter(Boolean);

function parseSeed(s: string | undefined): number | undefined {
  if (!s) return undefined;
  const n = s.startsWith("0x") ? parseInt(s.slice(2), 16) : Number(s);
  return Number.isFinite(n) ? n >>> 0 : undefined;
}

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same cases on every machine. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}

/** The seed of case `index` of `category`, from the base seed (FNV-1a over "<base>:<category>:<index>"). */
export function caseSeed(category: string, index: number, base = FUZZ_SEED): number {
  let h = 0x811c9dc5;
  for (const ch of `${base}:${category}:${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

/** Number of cases of a category: its default size times FUZZ_SCALE (at least 1). */
export function caseCount(defaultCount: number): number {
  return Math.max(1, Math.round(defaultCount * FUZZ_SCALE));
}

export function selected(category: string, index: number): boolean {
  return ONLY.length === 0 || ONLY.includes(category) || ONLY.includes(`${category}#${index}`);
}

// ---------------------------------------------------------------------------------------------
// A sidecar in raw JSON-RPC frames

export type Reply =
  | { kind: "result"; result: unknown; ms: number }
  | { kind: "error"; code: number; message: string; data?: unknown; ms: number }
  | { kind: "timeout"; ms: number }
  | { kind: "exit"; code: number | null; signal: NodeJS.Signals | null; ms: number };

export interface Message {
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

const STDERR_KEEP = 16_000;

export class RawSidecar {
  readonly child: ChildProcess;
  /** The tail of what the sidecar wrote to stderr. */
  stderr = "";
  /** lens/log notifications, in order. */
  readonly logs: { level: string; message: string }[] = [];
  /** Replies that answer no request of ours (e.g. a parse error with id null), in order. */
  readonly orphans: Message[] = [];
  /** Set when stdout carried something that is not a JSON-RPC frame. */
  garbage: string | undefined;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private buffer: Buffer = Buffer.alloc(0);
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes the frame being read needs before it can be parsed. */
  private needed = 0;
  private readonly pending = new Map<number, (m: Message | { exit: true }) => void>();
  private nextId = 1;

  private constructor() {
    this.child = spawn(process.execPath, [SIDECAR, "serve"], { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdin!.on("error", () => undefined); // a sidecar that exited closes the pipe under us
    this.child.stderr!.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-STDERR_KEEP);
    });
    this.child.stdout!.on("data", (d: Buffer) => this.onData(d));
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        for (const settle of this.pending.values()) settle({ exit: true });
        this.pending.clear();
        resolve(this.exitInfo);
      });
    });
  }

  /** Spawns `sidecar.js serve`; with `initialize` (the default) also does the handshake. */
  static async start(initialize = true): Promise<RawSidecar> {
    const sc = new RawSidecar();
    if (initialize) {
      const r = await sc.request("lens/initialize", { protocolVersion: PROTOCOL_VERSION, clientName: "fuzz" }, 30_000);
      if (r.kind !== "result") throw new Error(`the sidecar did not initialize: ${describeReply(r)}; stderr: ${sc.stderr.slice(-500)}`);
    }
    return sc;
  }

  get alive(): boolean {
    return this.exitInfo === undefined && !this.killedByHarness;
  }

  /** Sends a request (params omitted when undefined) and waits for its answer, its exit, or the limit. */
  request(method: string, params: unknown, timeoutMs = CASE_LIMIT_MS): Promise<Reply> {
    const id = this.nextId++;
    const body: Message & { jsonrpc: string } = { jsonrpc: "2.0", id, method };
    if (params !== undefined) body.params = params;
    return this.awaitReply(id, timeoutMs, () => this.writeFrame(JSON.stringify(body)));
  }

  /** Waits for the reply to `id` (a request written by `write`, possibly raw bytes). */
  awaitReply(id: number, timeoutMs: number, write: () => void): Promise<Reply> {
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    if (!this.alive) return Promise.resolve({ kind: "exit", code: this.exitInfo?.code ?? null, signal: this.exitInfo?.signal ?? "SIGKILL", ms: 0 });
    return new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ kind: "timeout", ms: ms() });
      }, timeoutMs);
      this.pending.set(id, (m) => {
        clearTimeout(timer);
        if ("exit" in m) resolve({ kind: "exit", code: this.exitInfo?.code ?? null, signal: this.exitInfo?.signal ?? "SIGKILL", ms: ms() });
        else if (m.error) resolve({ kind: "error", code: m.error.code, message: String(m.error.message), data: m.error.data, ms: ms() });
        else resolve({ kind: "result", result: decodeBlocks(m.result), ms: ms() });
      });
      write();
    });
  }

  /** An id no request of ours uses yet, for hand-written frames. */
  reserveId(): number {
    return this.nextId++;
  }

  writeFrame(body: string | Buffer): void {
    const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
    this.writeRaw(Buffer.concat([Buffer.from(`Content-Length: ${bytes.length}\r\n\r\n`, "ascii"), bytes]));
  }

  writeRaw(bytes: Buffer | string): void {
    if (this.alive && this.child.stdin!.writable) this.child.stdin!.write(bytes);
  }

  /** Resolves when the sidecar has exited, or after `ms`. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.exitInfo) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
    clearTimeout(timer);
    return done;
  }

  /** Closes stdin (the sidecar ends on a closed stream), then kills it if it lingers. */
  async stop(): Promise<void> {
    if (this.exitInfo) return;
    if (this.killedByHarness) {
      await this.waitExit(3000);
      return;
    }
    this.child.stdin!.end();
    if (!(await this.waitExit(3000))) this.kill();
    await this.waitExit(3000);
  }

  /** Set when the harness killed it (a hang, a deaf sidecar), so that exit is not taken for a crash. */
  killedByHarness = false;

  kill(): void {
    if (!this.alive) return;
    this.killedByHarness = true;
    this.child.kill("SIGKILL");
    for (const settle of this.pending.values()) settle({ exit: true });
    this.pending.clear();
  }

  private onData(d: Buffer): void {
    if (this.garbage !== undefined) return;
    this.chunks.push(d);
    this.buffered += d.length;
    // A large body arrives in many chunks: join them only once it is all there.
    if (this.buffered < this.needed) return;
    this.buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = [this.buffer];
    for (;;) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) {
        if (this.buffer.length > 4096) this.garbage = this.buffer.subarray(0, 200).toString();
        break;
      }
      const header = this.buffer.subarray(0, end).toString("ascii");
      const m = /^Content-Length: (\d+)$/im.exec(header);
      if (!m) {
        this.garbage = this.buffer.subarray(0, 200).toString();
        return;
      }
      const length = Number(m[1]);
      if (this.buffer.length < end + 4 + length) {
        this.needed = end + 4 + length;
        break;
      }
      this.needed = 0;
      const body = this.buffer.subarray(end + 4, end + 4 + length).toString("utf8");
      this.buffer = this.buffer.subarray(end + 4 + length);
      let msg: Message;
      try {
        msg = JSON.parse(body) as Message;
      } catch {
        this.garbage = body.slice(0, 200);
        return;
      }
      this.onMessage(msg);
    }
    this.chunks = [this.buffer];
    this.buffered = this.buffer.length;
  }

  private onMessage(msg: Message): void {
    if (msg.method !== undefined) {
      if (msg.method === "lens/log") this.logs.push(msg.params as { level: string; message: string });
      return;
    }
    const settle = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
    if (settle) {
      this.pending.delete(msg.id as number);
      settle(msg);
    } else this.orphans.push(msg);
  }
}

/** Polls `cond` every 50 ms until it holds or `ms` passed; returns whether it held. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Verdicts

export type Outcome = "error" | "answer" | "failure";
export interface Verdict {
  outcome: Outcome;
  detail: string;
}
export const clearError = (detail: string): Verdict => ({ outcome: "error", detail });
export const correctAnswer = (detail = "answered"): Verdict => ({ outcome: "answer", detail });
export const failure = (detail: string): Verdict => ({ outcome: "failure", detail });

/** JSON-RPC's own codes a bad request may get, and the sidecar's input codes (not -32603, internal). */
export const CLEAR_ERROR_CODES: ReadonlySet<number> = new Set([-32700, -32600, -32601, -32602, ...Object.values(ErrorCode)]);
/** The CLI's exit code for input errors; the sidecar may also end with it after a fatal frame. */
export const INPUT_ERROR_EXIT = 1;
/** A one-line message longer than this (an echoed 10 MB prompt) is not a clear message. */
const MAX_MESSAGE_CHARS = 2000;

export function short(s: string, n = 300): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > n ? `${one.slice(0, n - 3)}...` : one;
}

export function describeReply(r: Reply): string {
  switch (r.kind) {
    case "result":
      return `result ${short(JSON.stringify(r.result) ?? "undefined", 160)}`;
    case "error":
      return `error ${r.code} "${short(r.message, 300)}"`;
    case "timeout":
      return `no answer within ${(r.ms / 1000).toFixed(1)} s (hang)`;
    case "exit":
      return r.signal ? `the sidecar was killed by ${r.signal}` : `the sidecar exited with code ${r.code}`;
  }
}

/** What a case allows: an error only, or an error or an answer (which `check` then inspects). */
export interface Expectation {
  expect: "error" | "either" | "answer";
  /** An error must contain one of these (the file or folder at fault), when given. */
  names?: string[];
  /** Inspects a successful result; returns what is wrong with it, if anything. */
  check?: (result: unknown) => string | undefined;
}

/** Whether an error reply is a clear one: a non-internal code and one short line (naming the file when asked). */
export function errorProblem(r: Extract<Reply, { kind: "error" }>, names?: string[]): string | undefined {
  if (!CLEAR_ERROR_CODES.has(r.code)) return `internal error ${r.code}: "${short(r.message)}"`;
  if (/internal error/i.test(r.message)) return `error ${r.code} reads as an internal error: "${short(r.message)}"`;
  if (!r.message.trim()) return `error ${r.code} with an empty message`;
  if (/[\r\n]/.test(r.message)) return `error ${r.code} message has several lines: "${short(r.message)}"`;
  if (r.message.length > MAX_MESSAGE_CHARS) return `error ${r.code} message is ${r.message.length} characters: "${short(r.message, 120)}"`;
  if (names && names.length && !names.some((n) => r.message.includes(n))) return `error ${r.code} does not name ${names.join(" or ")}: "${short(r.message)}"`;
  return undefined;
}

export function judge(r: Reply, e: Expectation): Verdict {
  switch (r.kind) {
    case "timeout":
    case "exit":
      return failure(describeReply(r));
    case "error": {
      const problem = errorProblem(r, e.names);
      if (problem) return failure(problem);
      if (e.expect === "answer") return failure(`a valid request was refused: ${describeReply(r)}`);
      return clearError(`${r.code} ${short(r.message, 160)}`);
    }
    case "result": {
      if (e.expect === "error") return failure(`accepted (should be a clear error): ${describeReply(r)}`);
      const problem = e.check?.(r.result);
      return problem ? failure(`answered wrongly: ${problem}`) : correctAnswer(`answered in ${r.ms} ms`);
    }
  }
}

/**
 * A result that must be a LensRecord, whose lens values are finite (NaN travels as null) unless
 * the record warns about them.
 */
export function recordProblem(value: unknown): string | undefined {
  const warned = ((value as { warnings?: unknown[] } | null)?.warnings ?? []).length > 0;
  const finite = !/\bnull\b|NaN|Infinity/.test(JSON.stringify((value as { lens?: unknown } | null)?.lens ?? null));
  if (!finite && !warned) return "the lens holds NaN or infinite values, and the record does not warn";
  if (!finite) return undefined; // the schema wants numbers; a warned record of NaN is the honest answer
  const v = validateLensRecord(value);
  return v.ok ? undefined : `not a valid LensRecord: ${short(v.errors.slice(0, 3).join("; "))}`;
}

// ---------------------------------------------------------------------------------------------
// The runner

export interface FuzzCase {
  /** "<category>#<index>". */
  id: string;
  seed: number;
  /** What the case does, in a few words. */
  label: string;
}

export interface CategorySpec<C extends FuzzCase> {
  name: string;
  cases: C[];
  /** Starts a sidecar ready for this category's cases (initialized, model open, ...). */
  start(): Promise<RawSidecar>;
  /** Runs one case and judges its reply. The sidecar may be gone afterwards (the runner checks how). */
  run(sc: RawSidecar, c: C): Promise<Verdict>;
  /** A valid request the sidecar must still answer after every case. */
  probe(sc: RawSidecar): Promise<Verdict>;
  /**
   * Whether a case may end the sidecar: "with a reason" (a fatal frame: it must say why on stderr
   * or in a lens/log, and exit by code 0 or 1) or "quietly" (lens/shutdown). Default: it may not.
   */
  mayExit?(c: C): "with a reason" | "quietly" | undefined;
}

export interface CaseResult extends FuzzCase {
  category: string;
  outcome: Outcome;
  detail: string;
  ms: number;
}

/** Stop a category after this many hangs: each costs the whole case limit. */
const MAX_HANGS = 2;
/** Or once it has taken this long ($LOGIT_LENS_FUZZ_CATEGORY_MS): a broken sidecar must not hold the suite for many minutes. */
const CATEGORY_BUDGET_MS = Number(process.env["LOGIT_LENS_FUZZ_CATEGORY_MS"] ?? "") || 90_000;

export async function runCategory<C extends FuzzCase>(spec: CategorySpec<C>): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const cases = spec.cases.filter((c) => selected(spec.name, Number(c.id.split("#")[1])));
  if (cases.length === 0) return results;
  let sc = await spec.start();
  let hangs = 0;
  const started = performance.now();
  try {
    for (const c of cases) {
      const stop = hangs >= MAX_HANGS ? `${MAX_HANGS} cases of this category hung already` : performance.now() - started > CATEGORY_BUDGET_MS ? `the category took over ${CATEGORY_BUDGET_MS / 1000} s already` : undefined;
      if (stop) {
        results.push({ ...c, category: spec.name, outcome: "failure", detail: `not run: ${stop}`, ms: 0 });
        continue;
      }
      if (!sc.alive) sc = await spec.start();
      const before = { stderr: sc.stderr.length, logs: sc.logs.length };
      const t0 = performance.now();
      let v: Verdict;
      try {
        v = await spec.run(sc, c);
      } catch (e) {
        v = failure(`harness error: ${e instanceof Error ? e.message : String(e)}`);
      }
      const hung = /\(hang\)/.test(v.detail);
      if (hung) hangs++;
      if (sc.garbage !== undefined) v = failure(`${v.detail}; stdout carried something other than JSON-RPC: "${short(sc.garbage, 120)}"`);
      if (hung) {
        sc.kill(); // the next case gets a fresh sidecar
      } else if (!(await sc.waitExit(0))) {
        const p = await spec.probe(sc);
        if (p.outcome === "failure" && !(await sc.waitExit(1000))) {
          v = failure(`${v.outcome === "failure" ? v.detail : v.outcome === "error" ? "clear error" : "answered"}; afterwards a valid request failed: ${p.detail}`);
          sc.kill();
        }
      }
      if (sc.exitInfo && !sc.killedByHarness) v = judgeExit(sc, c, spec, v, before);
      results.push({ ...c, category: spec.name, outcome: v.outcome, detail: v.detail, ms: Math.round(performance.now() - t0) });
    }
  } finally {
    await sc.stop();
  }
  return results;
}

function judgeExit<C extends FuzzCase>(sc: RawSidecar, c: C, spec: CategorySpec<C>, v: Verdict, before: { stderr: number; logs: number }): Verdict {
  const { code, signal } = sc.exitInfo!;
  const logged = sc.logs.slice(before.logs).filter((l) => l.level !== "info").map((l) => l.message);
  const said = short([sc.stderr.slice(before.stderr), ...logged].join(" "), 200);
  if (signal) return failure(`the sidecar was killed by ${signal} (crash)${said ? `: ${said}` : ""}`);
  if (code !== 0 && code !== INPUT_ERROR_EXIT) return failure(`the sidecar exited with code ${code}${said ? `: ${said}` : " and said nothing"}`);
  const may = spec.mayExit?.(c);
  if (!may) return failure(`the sidecar exited (code ${code}) on a case it should survive${said ? `: ${said}` : ""}`);
  if (may === "quietly") return v.outcome === "failure" && !/exited/.test(v.detail) ? v : correctAnswer(`exited (code ${code}) as asked`);
  if (!said) return failure(`the sidecar exited (code ${code}) without saying why (stderr or lens/log)`);
  return v.outcome === "failure" && !/exited|\(hang\)/.test(v.detail) ? v : clearError(`exited (code ${code}) with a logged reason: ${said}`);
}

// ---------------------------------------------------------------------------------------------
// The report

export function tallyTable(results: CaseResult[]): string {
  const categories = [...new Set(results.map((r) => r.category))];
  const rows = categories.map((cat) => {
    const rs = results.filter((r) => r.category === cat);
    const n = (o: Outcome) => rs.filter((r) => r.outcome === o).length;
    const ms = rs.reduce((a, r) => a + r.ms, 0);
    return [cat, rs.length, n("error"), n("answer"), n("failure"), `${(ms / 1000).toFixed(1)} s`];
  });
  const total = ["total", results.length, ...(["error", "answer", "failure"] as const).map((o) => results.filter((r) => r.outcome === o).length), `${(results.reduce((a, r) => a + r.ms, 0) / 1000).toFixed(1)} s`];
  const head = ["category", "cases", "clear errors", "correct answers", "failures", "time"];
  const all = [head, ...rows, total].map((r) => r.map(String));
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ")).join("\n");
}

/** The slowest cases, to size the categories. */
export function slowest(results: CaseResult[], n = 5): string {
  return [...results]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, n)
    .map((r) => `${r.id} ${(r.ms / 1000).toFixed(1)} s (${short(r.label, 60)})`)
    .join(", ");
}

export function failureList(results: CaseResult[]): string {
  return results
    .filter((r) => r.outcome === "failure")
    .map((r) => `${r.id} (LOGIT_LENS_FUZZ_SEED=${FUZZ_SEED} LOGIT_LENS_FUZZ_ONLY=${r.id}, case seed ${r.seed}) ${r.label}: ${r.detail}`)
    .join("\n");
}

// ---------------------------------------------------------------------------------------------
// The command line

/** Exit codes the CLI may end with: 0, 1 (an input error) and 2 (a usage error). */
const CLI_EXIT_CODES: ReadonlySet<number> = new Set([0, INPUT_ERROR_EXIT, 2]);

/** Runs `sidecar.js <args>` (the CLI) with stdout discarded; kills it past the limit. */
export function runCli(args: string[], timeoutMs = CASE_LIMIT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; ms: number; timedOut: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SIDECAR, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let timedOut = false;
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_KEEP)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, ms: Math.round(performance.now() - t0), timedOut });
    });
  });
}

/** A CLI run must exit by 0, 1 or 2 within the limit; a failing one says why on one "error:" line. */
export function judgeCli(r: Awaited<ReturnType<typeof runCli>>, expect: "error" | "either"): Verdict {
  if (r.timedOut) return failure(`no exit within ${(r.ms / 1000).toFixed(1)} s (hang)`);
  if (r.signal) return failure(`killed by ${r.signal} (crash): ${short(r.stderr, 200)}`);
  if (!CLI_EXIT_CODES.has(r.code!)) return failure(`exit code ${r.code}: ${short(r.stderr, 200)}`);
  if (/\n\s+at /.test(r.stderr)) return failure(`a stack trace on stderr: ${short(r.stderr, 200)}`);
  if (r.code === 0) return expect === "error" ? failure("exit code 0 (should be a clear error)") : correctAnswer(`exit 0 in ${r.ms} ms`);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("error:"));
  if (errors.length !== 1) return failure(`exit code ${r.code} with ${errors.length} "error:" lines: ${short(r.stderr, 200)}`);
  if (/internal error/i.test(errors[0])) return failure(`an internal error: ${short(errors[0])}`);
  if (errors[0].length > 2000) return failure(`an error line of ${errors[0].length} characters`);
  return clearError(`exit ${r.code}: ${short(errors[0], 160)}`);
}
