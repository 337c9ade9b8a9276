/**
 * The real sidecar (`logit-lens serve`, the built bundle) fed raw bytes: malformed frames,
 * invalid JSON-RPC messages and wrong params. Each must get its error reply (-32700 for a
 * frame, -32600 for a message, -32601 for a method, INPUT_ERROR naming the field for params,
 * NOT_INITIALIZED before the handshake), and after each one the sidecar must still answer a good
 * request. Every wait is bounded, so a deaf sidecar fails its case instead of hanging the suite.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PROTOCOL_VERSION } from "../../src/shared/protocol";
import { SIDECAR } from "../helpers/sidecarProcess";

interface Reply {
  jsonrpc?: string;
  id?: string | number | null;
  method?: string;
  params?: { level?: string; message?: string };
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** The sidecar with a byte-level client: what it writes is parsed as frames (it is trusted to frame correctly). */
class RawSidecar {
  readonly child: ChildProcess;
  readonly messages: Reply[] = [];
  stderr = "";
  private pending = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private nextId = 1000;
  readonly exited: Promise<number | null>;

  constructor() {
    this.child = spawn(process.execPath, [SIDECAR, "serve"], { stdio: ["pipe", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
    this.child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.child.stdout!.on("data", (d: Buffer) => this.onData(d));
  }

  private onData(d: Buffer): void {
    this.pending = Buffer.concat([this.pending, d]);
    for (;;) {
      const sep = this.pending.indexOf("\r\n\r\n");
      if (sep === -1) return;
      const length = Number(/Content-Length: (\d+)/i.exec(this.pending.subarray(0, sep).toString("latin1"))?.[1]);
      if (this.pending.length < sep + 4 + length) return;
      const body = JSON.parse(this.pending.subarray(sep + 4, sep + 4 + length).toString("utf8")) as Reply | Reply[];
      this.pending = this.pending.subarray(sep + 4 + length);
      for (const m of Array.isArray(body) ? body : [body]) this.messages.push(m);
      for (const w of this.waiters.splice(0)) w();
    }
  }

  write(bytes: Buffer | string): void {
    this.child.stdin!.write(bytes);
  }

  /** Waits (bounded) until some message satisfies `test`. */
  async waitFor(test: (m: Reply) => boolean, what: string, ms = 8000): Promise<Reply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.messages.find(test);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) throw new Error(`no ${what} within ${ms} ms${this.child.exitCode !== null ? ` (the sidecar exited with ${this.child.exitCode})` : ""}; stderr: ${this.stderr.slice(-500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends a request and waits (bounded) for its answer. */
  async request(method: string, params?: unknown, ms?: number): Promise<Reply> {
    const id = this.nextId++;
    this.write(frame({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) }));
    return this.waitFor((m) => m.id === id && m.method === undefined, `answer to ${method} (id ${id})`, ms);
  }

  initialize(): Promise<Reply> {
    return this.request("lens/initialize", { protocolVersion: PROTOCOL_VERSION, clientName: "frames test" });
  }

  /** Error replies with id null so far. */
  nullIdErrors(): Reply[] {
    return this.messages.filter((m) => m.id === null && m.error);
  }
}

/** JSON text sent as it is (one JSON.stringify cannot write, such as a deeply nested value). */
class JsonText {
  constructor(readonly text: string) {}
}

function frame(message: unknown): Buffer {
  const body = Buffer.from(message instanceof JsonText ? message.text : JSON.stringify(message), "utf8");
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, "ascii"), body]);
}

const raw = (s: string) => Buffer.from(s, "latin1");

/** One sidecar for all the cases below (a fresh one for the handshake case): bad input piles up as it would in a session. */
let sidecar: RawSidecar;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-frames-"));
  sidecar = new RawSidecar();
  expect((await sidecar.initialize()).result).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
});

afterAll(() => {
  sidecar.child.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("the sidecar before the handshake", () => {
  it("refuses lens/shutdown and every other request before lens/initialize, and keeps running", async () => {
    const fresh = new RawSidecar();
    try {
      for (const method of ["lens/shutdown", "lens/run", "lens/openModel", "lens/trackTokens", "lens/runExperiment", "lens/previewExperiment"]) {
        const r = await fresh.request(method, method === "lens/shutdown" ? undefined : {});
        expect(r.error?.code, method).toBe(ErrorCode.NOT_INITIALIZED);
        expect(r.error?.message).toBe(`${method} came before lens/initialize: send lens/initialize first`);
      }
      expect(fresh.child.exitCode).toBeNull();
      // a malformed handshake is an input error, and the next one goes through
      expect((await fresh.request("lens/initialize", [null])).error).toMatchObject({ code: ErrorCode.INPUT_ERROR, message: "lens/initialize: params must be an object, got null" });
      expect((await fresh.initialize()).result).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
      expect((await fresh.request("lens/shutdown")).error).toBeUndefined();
      expect(await fresh.exited).toBe(0);
    } finally {
      fresh.child.kill();
    }
  });
});

describe("malformed frames are answered with -32700 and the next request is served", () => {
  const body = JSON.stringify({ jsonrpc: "2.0", id: "lost", method: "lens/initialize", params: { protocolVersion: PROTOCOL_VERSION, clientName: "x" } });
  const cases: [string, Buffer, RegExp][] = [
    ["a header without Content-Length", raw(`Content-Type: application/vscode-jsonrpc\r\n\r\n${body}`), /no Content-Length header/],
    ["a non-numeric Content-Length", raw(`Content-Length: twelve\r\n\r\n${body}`), /must be a byte count, got "twelve"/],
    ["a negative Content-Length", raw(`Content-Length: -12\r\n\r\n${body}`), /must be a byte count, got "-12"/],
    ["a huge Content-Length", raw(`Content-Length: 99999999999999\r\n\r\n${body}`), /over the 64 MiB limit/],
    ["an unknown charset", raw(`Content-Length: ${body.length}\r\nContent-Type: application/json; charset=ebcdic\r\n\r\n${body}`), /charset "ebcdic" is not supported/],
    ["NUL bytes before a frame", raw("\0\0\0\0\0\0\0\0"), /not a frame header|must start with header lines/],
    ["NUL bytes as a body", raw("Content-Length: 8\r\n\r\n\0\0\0\0\0\0\0\0"), /not valid JSON/],
    ["a body without a frame header", raw(body), /must start with header lines|not a frame header line/],
    ["a body shorter than its Content-Length", raw(`Content-Length: 400\r\n\r\n{"jsonrpc":"2.0"`), /cut short/],
    ["a body longer than its Content-Length", raw(`Content-Length: 10\r\n\r\n${body}`), /not valid JSON/],
    ["a body that is not UTF-8", raw('Content-Length: 4\r\n\r\n"\xc3\x28"'), /not valid UTF-8/],
    ["two different Content-Lengths", raw(`Content-Length: ${body.length}\r\nContent-Length: 3\r\n\r\n${body}`), /two different Content-Length headers/],
    ["a header line that is not a header", raw(`Content-Length ${body.length}\r\n\r\n${body}`), /not a frame header line/],
    ["headers that never end", raw(`X-Padding: ${"p".repeat(10_000)}`), /did not end within 8 KiB/],
    ["a body that is not JSON", raw("Content-Length: 9\r\n\r\n{jsonrpc:"), /not valid JSON/],
    ["an empty body", raw("Content-Length: 0\r\n\r\n"), /not valid JSON/],
  ];
  for (const [what, bytes, reason] of cases) {
    it(what, async () => {
      const before = sidecar.nullIdErrors().length;
      sidecar.write(bytes);
      const answer = await sidecar.initialize();
      expect(answer.result).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
      const errors = sidecar.nullIdErrors().slice(before);
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors[0].error!.code).toBe(-32700);
      expect(errors[0].error!.message).toMatch(reason);
      for (const e of errors) expect(e.error!.message).not.toContain("\n");
      // the same reason reaches the Output channel
      await sidecar.waitFor((m) => m.method === "lens/log" && m.params?.level === "warn" && m.params.message === `JSON-RPC input refused: ${errors[0].error!.message}`, "lens/log warning");
    }, 20_000);
  }

  it("accepts LF-only header lines", async () => {
    const id = "lf-only";
    const b = JSON.stringify({ jsonrpc: "2.0", id, method: "lens/initialize", params: { protocolVersion: PROTOCOL_VERSION, clientName: "x" } });
    sidecar.write(raw(`Content-Length: ${b.length}\n\n${b}`));
    expect((await sidecar.waitFor((m) => m.id === id, "answer to an LF-only frame")).result).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
  });

  it("answers a frame whose rest never comes within a few seconds, without a next request to show the way", async () => {
    const before = sidecar.nullIdErrors().length;
    sidecar.write(raw('Content-Length: 300\r\n\r\n{"jsonrpc":"2.0","id":1'));
    await sidecar.waitFor((m) => m.id === null && !!m.error && /body stopped after 23 of its 300 bytes/.test(m.error.message) && sidecar.nullIdErrors().length > before, "answer to a frame cut short", 10_000);
    expect((await sidecar.initialize()).result).toBeTruthy();
  }, 20_000);

  it("a huge frame is read and answered, not refused, when it is under the limit", async () => {
    const big = await sidecar.request("lens/initialize", { protocolVersion: PROTOCOL_VERSION, clientName: "x".repeat(8 * 1024 * 1024) }, 20_000);
    expect(big.result).toMatchObject({ protocolVersion: PROTOCOL_VERSION });
  }, 30_000);
});

describe("invalid JSON-RPC messages get the spec's error reply", () => {
  const cases: [string, unknown, string | number | null, number][] = [
    ["a number", 5, null, -32600],
    ["a string", "lens/initialize", null, -32600],
    ["null", null, null, -32600],
    ["an empty batch", [], null, -32600],
    ["no jsonrpc member", { id: 1, method: "lens/initialize", params: {} }, 1, -32600],
    ["a wrong jsonrpc version", { jsonrpc: "1.0", id: 2, method: "lens/initialize", params: {} }, 2, -32600],
    ["a method that is not a string", { jsonrpc: "2.0", id: 3, method: 5 }, 3, -32600],
    ["an id that is null", { jsonrpc: "2.0", id: null, method: "lens/initialize", params: {} }, null, -32600],
    ["an id that is an object", { jsonrpc: "2.0", id: { n: 1 }, method: "lens/initialize", params: {} }, null, -32600],
    ["neither a method nor a result", { jsonrpc: "2.0", id: 4 }, 4, -32600],
    ["an unknown method", { jsonrpc: "2.0", id: 5, method: "lens/nothing" }, 5, -32601],
    ["a method inherited by every object", { jsonrpc: "2.0", id: 6, method: "constructor" }, 6, -32601],
    ["a deeply nested method", new JsonText(`{"jsonrpc":"2.0","id":7,"method":${"[".repeat(100_000)}${"]".repeat(100_000)}}`), 7, -32600],
  ];
  for (const [what, message, id, code] of cases) {
    it(what, async () => {
      const count = sidecar.messages.length;
      sidecar.write(frame(message));
      const reply = await sidecar.waitFor((m) => sidecar.messages.indexOf(m) >= count && m.error !== undefined && m.id === id && m.method === undefined, `error reply to ${what}`);
      expect(reply.error!.code).toBe(code);
      expect(reply.error!.message).not.toContain("\n");
      expect((await sidecar.initialize()).result).toBeTruthy();
    }, 20_000);
  }

  it("answers each request in a batch, since batches are not supported", async () => {
    sidecar.write(frame([{ jsonrpc: "2.0", id: "b1", method: "lens/initialize", params: {} }, { jsonrpc: "2.0", method: "lens/log", params: {} }]));
    expect((await sidecar.waitFor((m) => m.id === "b1", "reply to a batched request")).error).toMatchObject({ code: -32600, message: expect.stringMatching(/batches are not supported/) });
    expect((await sidecar.initialize()).result).toBeTruthy();
  });

  it("ignores responses and notifications that would throw inside the connection, and stays up", async () => {
    sidecar.write(frame({ jsonrpc: "2.0", id: 77, result: null }));
    sidecar.write(frame({ jsonrpc: "2.0", method: "$/cancelRequest" }));
    sidecar.write(frame({ jsonrpc: "2.0", method: "$/cancelRequest", params: null }));
    sidecar.write(frame({ jsonrpc: "2.0", method: "$/progress" }));
    sidecar.write(frame({ jsonrpc: "2.0", method: "$/setTrace", params: 5 }));
    sidecar.write(frame({ jsonrpc: "2.0", method: "lens/whatever", params: [1, 2] }));
    expect((await sidecar.initialize()).result).toBeTruthy();
    expect(sidecar.child.exitCode).toBeNull();
  });
});

describe("wrong params are input errors that name the field", () => {
  const cases: [string, unknown, string][] = [
    ["lens/openModel", { folder: 5 }, "lens/openModel: params.folder must be a string, got 5"],
    ["lens/openModel", { folder: "", threads: 1e9 }, "lens/openModel: params.threads must be an integer from 0 to 256, got 1000000000"],
    ["lens/run", {}, "lens/run: params.prompt must be a string, got nothing"],
    ["lens/run", { prompt: 5 }, "lens/run: params.prompt must be a string, got 5"],
    ["lens/run", { prompt: "hi", settings: { topK: 1e9 } }, "lens/run: params.settings.topK must be an integer from 1 to 100, got 1000000000"],
    ["lens/run", { prompt: "hi", headMask: 5 }, "lens/run: params.headMask must be an object, got 5"],
    ["lens/trackTokens", { tokens: [5] }, "lens/trackTokens: params.tokens[0] must be a non-empty string, got 5"],
    ["lens/initialize", null, "lens/initialize: params must be an object, got null"],
    ["lens/runExperiment", { file: 5 }, "lens/runExperiment: params.file must be the path of a .lens.json file, got 5"],
    ["lens/previewExperiment", { file: "a.lens.json", item: -1 }, "lens/previewExperiment: params.item must be an integer from 0 to 9007199254740991, got -1"],
    ["lens/shutdown", { now: 1 }, "lens/shutdown: params must be absent (lens/shutdown takes none), got an object"],
  ];
  for (const [method, params, message] of cases) {
    it(`${method} ${JSON.stringify(params)}`, async () => {
      const r = await sidecar.request(method, params);
      expect(r.error).toMatchObject({ code: ErrorCode.INPUT_ERROR, message });
      expect((await sidecar.initialize()).result).toBeTruthy();
    });
  }
});

describe("the preview's image", () => {
  it("is refused, not waited for, when it is a named pipe", async () => {
    const fifo = path.join(dir, "pipe.png");
    try {
      execFileSync("mkfifo", [fifo]);
    } catch {
      return; // no mkfifo (Windows): nothing to check
    }
    const file = path.join(dir, "fifo.lens.json");
    fs.writeFileSync(file, JSON.stringify({ model: "default", inputs: [fifo], prompts: ["What is it?"] }));
    const r = await sidecar.request("lens/previewExperiment", { file }, 10_000);
    expect(r.error?.code).toBe(ErrorCode.INPUT_ERROR);
    expect(r.error?.message).toContain(fifo);
    expect(r.error?.message).toMatch(/named pipe|not a regular file/);
    expect((await sidecar.initialize()).result).toBeTruthy();
  }, 20_000);
});

describe("after all that", () => {
  it("shuts down cleanly, with nothing on stderr", async () => {
    const r = await sidecar.request("lens/shutdown");
    expect(r.error).toBeUndefined();
    expect(await sidecar.exited).toBe(0);
    expect(sidecar.stderr).toBe("");
  });
});
