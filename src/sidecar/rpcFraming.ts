/**
 * The sidecar's JSON-RPC input: our own framing in place of vscode-jsonrpc's StreamMessageReader,
 * which stops for good at the first malformed frame (a missing or non-numeric Content-Length, a
 * header without its blank line, bytes before a header): it reports an error, keeps its position
 * and then reads every later frame wrongly, so the sidecar stays alive but never answers again.
 *
 * Here a malformed frame is answered, as the JSON-RPC spec asks, with a parse error (-32700, id
 * null) and the reader moves on to the next `Content-Length: N` header; a well-framed body that
 * is not a valid JSON-RPC message gets -32600 (with the request's id when it has a usable one).
 * The decoder is total: no input throws out of it, and none makes it wait for bytes that cannot
 * come (the one wait left is a body whose Content-Length has not arrived yet, as on any stream).
 *
 * Framing, as in the LSP base protocol: header lines `Name: value`, a blank line, then exactly
 * Content-Length bytes of UTF-8 JSON. Lines ending in a bare LF are accepted too. Limits: headers
 * up to 8 KiB, bodies up to 64 MiB (a larger Content-Length is refused before anything is
 * allocated for it). Part of a frame left waiting FRAME_IDLE_MS for the rest is dropped too.
 *
 * Resynchronising relies on one fact: `Content-Length: <digits>` followed by a line break cannot
 * occur inside valid JSON (outside strings the word is not JSON; inside strings a raw line break
 * is not allowed). So such a header found inside a body that is still arriving means the frame
 * was cut short and the next one has begun, and a scan for it never stops inside a good body.
 */
import { AbstractMessageReader, type DataCallback, Disposable, type Message, type MessageReader } from "vscode-jsonrpc/node";

export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
export const MAX_HEADER_BYTES = 8 * 1024;
/**
 * How long part of a frame may wait for the rest before it is dropped and answered. A client
 * writes a frame in one go (vscode-jsonrpc: header, then body), so a quiet spell this long in
 * the middle of one means the frame is broken (a Content-Length larger than the body, a header
 * without its blank line), and its client would otherwise wait forever for an answer.
 */
export const FRAME_IDLE_MS = 3000;

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

/** A frame start: the Content-Length header line. Spaces bounded so that a match is at most ~90 bytes. */
const HEADER_START = /content-length[ \t]{0,16}:[ \t]{0,16}\d{1,20}[ \t]{0,16}\r?\n/i;
/** Bytes kept between chunks while scanning, so that a header split across chunks is still found. */
const OVERLAP = 128;

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const HEADER_LINE = new RegExp(`^(${TOKEN}+)[ \\t]*:[ \\t]*([\\t\\x20-\\x7e]*?)[ \\t]*$`);
/** What an unfinished header line may look like so far. */
const PARTIAL_LINE = new RegExp(`^${TOKEN}*[ \\t]*(?::[\\t\\x20-\\x7e]*)?\\r?$`);

const INITIAL_CAPACITY = 64 * 1024;

export type FrameEvent = { kind: "message"; message: unknown } | { kind: "bad"; reason: string };

const MIB = 1024 * 1024;
const quote = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);

/** Bytes in, JSON values (or reasons a frame was dropped) out. */
export class FrameDecoder {
  private buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  private start = 0;
  private end = 0;
  private mode: "header" | "body" | "resync" = "header";
  /** Body mode: `start` stays at the frame's header; the body begins `offset` bytes after it. */
  private body = { offset: 0, length: 0, refuse: undefined as string | undefined };
  /** Body mode: bytes of the body already scanned for a header. */
  private scanned = 0;
  private readonly utf8 = new TextDecoder("utf-8", { fatal: true });

  /** Bytes held now (for tests: a refused frame must not be buffered). */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Whether part of a frame is held, waiting for the rest. */
  get waiting(): boolean {
    return this.mode !== "resync" && this.end > this.start;
  }

  /**
   * The rest of the frame being read has not come (the reader calls this after a quiet spell):
   * drop it with a reason, so the client hears something, and look for a header after its first
   * byte (a Content-Length too large can hide the next frame's header inside its body).
   */
  expire(): FrameEvent[] {
    if (!this.waiting) return [];
    const events: FrameEvent[] = [];
    const held = this.end - this.start;
    const reason =
      this.mode === "body"
        ? `a frame's body stopped after ${held - this.body.offset} of its ${this.body.length} bytes: send as many bytes as Content-Length says`
        : "a frame's header stopped before its blank line: end the header lines with an empty line";
    this.badHeader(events, reason);
    this.run(events);
    return events;
  }

  push(chunk: Uint8Array): FrameEvent[] {
    this.append(chunk);
    const events: FrameEvent[] = [];
    this.run(events);
    return events;
  }

  private run(events: FrameEvent[]): void {
    for (;;) {
      if (this.mode === "header") {
        if (!this.readHeader(events)) break;
      } else if (this.mode === "body") {
        if (!this.readBody(events)) break;
      } else if (!this.resync()) break;
    }
    if (this.start === this.end) {
      this.start = this.end = 0;
      if (this.buf.length > 4 * INITIAL_CAPACITY) this.buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
    }
  }

  private append(chunk: Uint8Array): void {
    const held = this.end - this.start;
    if (this.end + chunk.length > this.buf.length) {
      const need = held + chunk.length;
      if (need <= this.buf.length) {
        this.buf.copy(this.buf, 0, this.start, this.end);
      } else {
        const next = Buffer.allocUnsafe(Math.max(need, 2 * this.buf.length));
        this.buf.copy(next, 0, this.start, this.end);
        this.buf = next;
      }
      this.start = 0;
      this.end = held;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Finds a frame start in [from, to); returns its position or -1. */
  private findHeader(from: number, to: number): number {
    if (to <= from) return -1;
    const m = HEADER_START.exec(this.buf.toString("latin1", from, to));
    return m ? from + m.index : -1;
  }

  /** A bad header at `start`: report it and look for the next header after its first byte. */
  private badHeader(events: FrameEvent[], reason: string): true {
    events.push({ kind: "bad", reason });
    this.start += 1;
    this.mode = "resync";
    return true;
  }

  /** Returns whether to go on (false: wait for more bytes). */
  private readHeader(events: FrameEvent[]): boolean {
    // Whitespace between frames is harmless.
    while (this.start < this.end && isSpace(this.buf[this.start])) this.start++;
    if (this.start === this.end) return false;
    const headers = new Map<string, string>();
    let pos = this.start;
    for (;;) {
      const limit = Math.min(this.end, this.start + MAX_HEADER_BYTES);
      const nl = this.buf.indexOf(0x0a, pos);
      if (nl === -1 || nl >= limit) {
        const partial = this.buf.toString("latin1", pos, limit);
        if (!PARTIAL_LINE.test(partial)) return this.badHeader(events, `a frame must start with header lines such as "Content-Length: 42", got ${quote(partial)}: send Content-Length, a blank line, then the JSON body`);
        if (this.end - this.start >= MAX_HEADER_BYTES) return this.badHeader(events, `a frame's headers did not end within ${MAX_HEADER_BYTES / 1024} KiB: end them with a blank line`);
        return false;
      }
      let line = this.buf.toString("latin1", pos, nl);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      pos = nl + 1;
      if (line === "") break;
      const m = HEADER_LINE.exec(line);
      if (!m) return this.badHeader(events, `${quote(line)} is not a frame header line (Name: value): send Content-Length, a blank line, then the JSON body`);
      const name = m[1].toLowerCase();
      const earlier = headers.get(name);
      if (name === "content-length" && earlier !== undefined && earlier !== m[2]) return this.badHeader(events, `a frame has two different Content-Length headers (${earlier} and ${m[2]}): send one`);
      headers.set(name, m[2]);
    }
    const length = headers.get("content-length");
    if (length === undefined) return this.badHeader(events, "a frame has no Content-Length header: give every message its length in bytes");
    if (!/^\d+$/.test(length)) return this.badHeader(events, `a frame's Content-Length must be a byte count, got ${quote(length)}`);
    if (length.length > 12 || Number(length) > MAX_FRAME_BYTES) {
      return this.badHeader(events, `a frame's Content-Length ${length.length > 20 ? `${length.slice(0, 20)}...` : length} is over the ${MAX_FRAME_BYTES / MIB} MiB limit on one message: send smaller messages`);
    }
    this.body = { offset: pos - this.start, length: Number(length), refuse: charsetProblem(headers.get("content-type")) };
    this.scanned = 0;
    this.mode = "body";
    return true;
  }

  private readBody(events: FrameEvent[]): boolean {
    const { offset, length, refuse } = this.body;
    const bodyStart = this.start + offset;
    const held = this.end - bodyStart;
    const upTo = Math.min(held, length);
    // A header inside the body: the frame was cut short and the next one has begun.
    const next = this.findHeader(bodyStart + Math.max(0, this.scanned - OVERLAP), bodyStart + upTo);
    if (next !== -1) {
      events.push({ kind: "bad", reason: `a frame's body was cut short: the next Content-Length header came after ${next - bodyStart} of its ${length} bytes` });
      this.start = next;
      this.mode = "header";
      return true;
    }
    this.scanned = upTo;
    if (held < length) return false;
    const bytes = this.buf.subarray(bodyStart, bodyStart + length);
    let problem = refuse;
    let message: unknown;
    if (!problem) {
      let text: string | undefined;
      try {
        text = this.utf8.decode(bytes);
      } catch {
        problem = "a frame's body is not valid UTF-8: send UTF-8 JSON";
      }
      if (text !== undefined) {
        try {
          message = JSON.parse(text);
        } catch (e) {
          problem = `a frame's body is not valid JSON (${firstLine(e)}): send one JSON-RPC message per frame`;
        }
      }
    }
    if (problem) {
      events.push({ kind: "bad", reason: problem });
      // A body that does not parse may hold (or end inside) the next frame's header: look again from its start.
      this.start = bodyStart;
      this.mode = "resync";
      return true;
    }
    events.push({ kind: "message", message });
    this.start = bodyStart + length;
    this.mode = "header";
    return true;
  }

  /** Skips to the next frame start; keeps only a short tail while none is in sight. */
  private resync(): boolean {
    const next = this.findHeader(this.start, this.end);
    if (next !== -1) {
      this.start = next;
      this.mode = "header";
      return true;
    }
    this.start = Math.max(this.start, this.end - OVERLAP);
    return false;
  }
}

const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;

function charsetProblem(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  for (const param of contentType.split(";").slice(1)) {
    const [key, ...rest] = param.split("=");
    if (key.trim().toLowerCase() !== "charset") continue;
    const charset = rest.join("=").trim().replace(/^"(.*)"$/, "$1").toLowerCase();
    if (charset !== "utf-8" && charset !== "utf8") return `a frame's charset ${quote(charset)} is not supported: send UTF-8`;
  }
  return undefined;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 200);
}

export interface ErrorReply {
  jsonrpc: "2.0";
  id: string | number | null;
  error: { code: number; message: string };
}

export type Classified = { kind: "deliver"; message: Message } | { kind: "reject"; reason: string; reply?: ErrorReply | ErrorReply[] };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const usableId = (v: unknown): string | number | null => (typeof v === "string" || typeof v === "number" ? v : null);
/** A value in a message, short and without walking it (a deeply nested one would overflow JSON.stringify). */
function short(v: unknown): string {
  if (v === undefined) return "none";
  if (typeof v === "string") return quote(v);
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object" && v !== null) return "an object";
  return String(v);
}
const errorReply = (id: string | number | null, code: number, message: string): ErrorReply => ({ jsonrpc: "2.0", id, error: { code, message } });

/**
 * Whether a parsed body is a JSON-RPC message the connection can handle (requests and
 * notifications; the sidecar sends no requests, so it expects no responses), and the error
 * reply when it is not. The connection itself would throw on some of these (a $/cancelRequest
 * without params) or never answer them (a request with id null).
 */
export function classifyMessage(value: unknown): Classified {
  if (Array.isArray(value)) {
    const reason = "batches are not supported: send one JSON-RPC message per frame";
    if (value.length === 0) return { kind: "reject", reason, reply: errorReply(null, INVALID_REQUEST, reason) };
    const replies = value.filter((v) => !(isObject(v) && typeof v.method === "string" && v.id === undefined)).map((v) => errorReply(isObject(v) ? usableId(v.id) : null, INVALID_REQUEST, reason));
    return { kind: "reject", reason, reply: replies.length > 0 ? replies : undefined };
  }
  if (!isObject(value)) {
    const reason = `a JSON-RPC message must be an object, got ${value === null ? "null" : typeof value}`;
    return { kind: "reject", reason, reply: errorReply(null, INVALID_REQUEST, reason) };
  }
  const id = usableId(value.id);
  const invalid = (reason: string): Classified => ({ kind: "reject", reason, reply: errorReply(id, INVALID_REQUEST, reason) });
  if (!("method" in value) && ("result" in value || "error" in value)) return { kind: "reject", reason: `ignored a response (id ${short(value.id)}): the sidecar sends no requests` };
  if (value.jsonrpc !== "2.0") return invalid(`a JSON-RPC message must have "jsonrpc": "2.0", got ${short(value.jsonrpc)}`);
  if (typeof value.method !== "string") return invalid(`a request must have a string "method", got ${short(value.method)}`);
  if (value.id === undefined) {
    // A notification gets no reply, right or wrong; this one the connection would choke on.
    if (value.method === "$/cancelRequest" && !(isObject(value.params) && usableId(value.params.id) !== null)) {
      return { kind: "reject", reason: "ignored a $/cancelRequest without params.id (a string or a number)" };
    }
    return { kind: "deliver", message: value as unknown as Message };
  }
  if (id === null) return invalid(`a request's id must be a string or a number, got ${short(value.id)}`);
  // Params of any shape go on: each method's check (shared/protocolValidation.ts) names the bad field.
  return { kind: "deliver", message: value as unknown as Message };
}

/** A refused frame or message: why, and the error reply to send (none for notifications and responses). */
export interface Rejection {
  reason: string;
  reply?: ErrorReply | ErrorReply[];
}

/**
 * A vscode-jsonrpc MessageReader over a byte stream with the framing above. Refusals go to
 * `onReject` (the server writes the reply and logs the reason); good messages to the connection.
 */
export class FramedMessageReader extends AbstractMessageReader implements MessageReader {
  private decoder = new FrameDecoder();
  private closed = false;
  private idle: NodeJS.Timeout | undefined;

  constructor(
    private readonly readable: NodeJS.ReadableStream,
    private readonly onReject: (rejection: Rejection) => void,
    private readonly idleMs = FRAME_IDLE_MS,
  ) {
    super();
  }

  override dispose(): void {
    clearTimeout(this.idle);
    super.dispose();
  }

  listen(callback: DataCallback): Disposable {
    const onData = (chunk: Buffer | string) => this.receive(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk, callback);
    const onError = (e: unknown) => this.fireError(e instanceof Error ? e : new Error(String(e)));
    const onClose = () => {
      clearTimeout(this.idle);
      if (this.closed) return;
      this.closed = true;
      this.fireClose();
    };
    this.readable.on("data", onData);
    this.readable.on("error", onError);
    this.readable.on("end", onClose);
    this.readable.on("close", onClose);
    return Disposable.create(() => {
      clearTimeout(this.idle);
      this.readable.off("data", onData);
      this.readable.off("error", onError);
      this.readable.off("end", onClose);
      this.readable.off("close", onClose);
    });
  }

  private receive(chunk: Buffer, callback: DataCallback): void {
    this.handle(() => this.decoder.push(chunk), callback);
  }

  private handle(decode: () => FrameEvent[], callback: DataCallback): void {
    clearTimeout(this.idle);
    this.idle = undefined;
    let events: FrameEvent[];
    try {
      events = decode();
    } catch (e) {
      // Not expected (the decoder is total), but the reader must outlive anything: start over.
      this.decoder = new FrameDecoder();
      events = [{ kind: "bad", reason: `the frame reader failed (${firstLine(e)}) and dropped what it held: resend from the next frame` }];
    }
    if (this.decoder.waiting && !this.closed) {
      this.idle = setTimeout(() => this.handle(() => this.decoder.expire(), callback), this.idleMs);
      this.idle.unref();
    }
    for (const event of events) {
      try {
        if (event.kind === "bad") {
          this.reject({ reason: event.reason, reply: errorReply(null, PARSE_ERROR, event.reason) });
          continue;
        }
        const c = classifyMessage(event.message);
        if (c.kind === "deliver") callback(c.message);
        else this.reject({ reason: c.reason, reply: c.reply });
      } catch (e) {
        this.reject({ reason: `a message could not be handled: ${firstLine(e)}` });
      }
    }
  }

  private reject(rejection: Rejection): void {
    try {
      this.onReject(rejection);
    } catch {
      // the server's reporting must not stop the reader
    }
  }
}
