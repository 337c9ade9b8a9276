/**
 * The sidecar's frame decoder and message check (src/sidecar/rpcFraming.ts) on their own: good
 * frames in any chunking, each kind of malformed frame answered and skipped, a refused huge
 * Content-Length that allocates nothing, and random garbage that never throws and never keeps
 * the next good frame from being read.
 */
import { mulberry32 } from "../../src/shared/seededRandom";
import { describe, expect, it } from "vitest";
import { classifyMessage, FrameDecoder, type FrameEvent, INVALID_REQUEST, MAX_FRAME_BYTES } from "../../src/sidecar/rpcFraming";

const frame = (message: unknown, headers = "") => {
  const body = Buffer.from(JSON.stringify(message));
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n${headers}\r\n`), body]);
};
const request = (id: number) => ({ jsonrpc: "2.0", id, method: "lens/initialize", params: { protocolVersion: 2, clientName: "t" } });
const ids = (events: FrameEvent[]) => events.flatMap((e) => (e.kind === "message" ? [(e.message as { id: number }).id] : []));
const bad = (events: FrameEvent[]) => events.filter((e) => e.kind === "bad").map((e) => (e as { reason: string }).reason);

function decodeAll(...chunks: (Buffer | string)[]): FrameEvent[] {
  const d = new FrameDecoder();
  return chunks.flatMap((c) => d.push(typeof c === "string" ? Buffer.from(c, "latin1") : c));
}


describe("FrameDecoder", () => {
  it("reads a frame split at any byte, and several frames in one chunk", () => {
    const bytes = frame(request(1));
    for (let cut = 0; cut <= bytes.length; cut++) expect(ids(decodeAll(bytes.subarray(0, cut), bytes.subarray(cut)))).toEqual([1]);
    expect(ids(decodeAll(Buffer.concat([frame(request(1)), frame(request(2)), Buffer.from("\r\n"), frame(request(3))])))).toEqual([1, 2, 3]);
  });

  it("accepts LF-only header lines, other headers and a utf-8 charset", () => {
    const body = JSON.stringify(request(4));
    expect(ids(decodeAll(`Content-Length: ${body.length}\n\n${body}`))).toEqual([4]);
    expect(ids(decodeAll(frame(request(5), "Content-Type: application/vscode-jsonrpc; charset=UTF-8\r\n")))).toEqual([5]);
  });

  const cases: [string, string, RegExp][] = [
    ["no Content-Length", "Content-Type: application/json\r\n\r\n{}", /no Content-Length header/],
    ["a non-numeric Content-Length", "Content-Length: abc\r\n\r\n{}", /must be a byte count, got "abc"/],
    ["a negative Content-Length", "Content-Length: -5\r\n\r\n{}", /must be a byte count, got "-5"/],
    ["a huge Content-Length", "Content-Length: 99999999999999999999\r\n\r\n{}", /over the 64 MiB limit/],
    ["a Content-Length just over the limit", `Content-Length: ${MAX_FRAME_BYTES + 1}\r\n\r\n{}`, /over the 64 MiB limit/],
    ["two Content-Lengths", "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", /two different Content-Length headers/],
    ["an unknown charset", "Content-Length: 2\r\nContent-Type: application/json; charset=latin1\r\n\r\n{}", /charset "latin1" is not supported/],
    ["NUL bytes before a header", "\0\0\0\0", /is not a frame header line|must start with header lines/],
    ["NUL bytes as the body", "Content-Length: 4\r\n\r\n\0\0\0\0", /not valid JSON/],
    ["a body without a header", '{"jsonrpc":"2.0","id":9,"method":"x"}', /must start with header lines/],
    ["a body that is not JSON", "Content-Length: 5\r\n\r\n{bad}", /not valid JSON/],
    ["an empty body", "Content-Length: 0\r\n\r\n", /not valid JSON/],
    ["a body that is not UTF-8", "Content-Length: 4\r\n\r\n\"\xff\xfe\"", /not valid UTF-8/],
    ["a Content-Length shorter than the body", 'Content-Length: 3\r\n\r\n{"jsonrpc":"2.0","id":9,"method":"x"}', /not valid JSON/],
    ["a Content-Length longer than the body", "Content-Length: 500\r\n\r\n{}", /cut short/],
    ["a header line that is not a header", "Content-Length 5\r\n\r\n{}", /not a frame header line/],
    ["headers that never end", `X-Long: ${"x".repeat(9000)}`, /did not end within 8 KiB/],
  ];
  for (const [what, bytes, reason] of cases) {
    it(`answers ${what} and reads the next frame`, () => {
      const events = decodeAll(bytes, frame(request(7)));
      // Each bad frame is answered; resynchronising may meet one more broken header inside it.
      expect(bad(events).length).toBeGreaterThanOrEqual(1);
      expect(bad(events)[0]).toMatch(reason);
      for (const r of bad(events)) expect(r).not.toContain("\n");
      expect(ids(events)).toEqual([7]);
    });
  }

  it("does not hold a refused frame's bytes: a huge Content-Length allocates nothing", () => {
    const d = new FrameDecoder();
    expect(bad(d.push(Buffer.from("Content-Length: 1000000000000\r\n\r\n")))).toHaveLength(1);
    const junk = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 8; i++) expect(d.push(junk)).toEqual([]);
    expect(d.buffered).toBeLessThanOrEqual(128);
    expect(ids(d.push(frame(request(8))))).toEqual([8]);
  });

  it("answers a frame whose rest never comes once the reader gives up waiting, then reads the next", () => {
    const d = new FrameDecoder();
    expect(d.push(Buffer.from("Content-Length: 500\r\n\r\n{\"jsonrpc\""))).toEqual([]);
    expect(d.waiting).toBe(true);
    expect(bad(d.expire())[0]).toMatch(/body stopped after 10 of its 500 bytes/);
    expect(ids(d.push(frame(request(9))))).toEqual([9]);
    // a header without its blank line
    expect(d.push(Buffer.from("Content-Length: 5"))).toEqual([]);
    expect(bad(d.expire())[0]).toMatch(/header stopped before its blank line/);
    expect(ids(d.push(frame(request(10))))).toEqual([10]);
  });

  it("a good frame swallowed as another frame's body comes back when the reader gives up waiting", () => {
    const d = new FrameDecoder();
    // a header block that takes the next frame's Content-Length line as its own extra header
    expect(ids(d.push(Buffer.concat([Buffer.from("Content-Length: 5000\r\nX-Junk: "), frame(request(11))])))).toEqual([]);
    expect(ids(d.expire())).toEqual([11]);
  });

  it("reads the same messages however a stream of good and bad frames is chunked", () => {
    const parts = [frame(request(1)), Buffer.from("garbage\r\n\r\n"), frame(request(2)), Buffer.from("Content-Length: x\r\n\r\n{}"), frame(request(3)), Buffer.from("Content-Length: 3\r\n\r\n[1,"), frame(request(4))];
    const stream = Buffer.concat(parts);
    const whole = decodeAll(stream);
    expect(ids(whole)).toEqual([1, 2, 3, 4]);
    const rand = mulberry32(1);
    for (let trial = 0; trial < 200; trial++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(rand() * 40);
        chunks.push(stream.subarray(at, at + n));
        at += n;
      }
      const events = decodeAll(...chunks);
      expect(ids(events)).toEqual([1, 2, 3, 4]);
      expect(bad(events)).toHaveLength(bad(whole).length);
    }
  });

  it("never throws on random bytes, and reads a good frame after them", () => {
    const rand = mulberry32(42);
    const alphabet = ["Content-Length: ", "Content-Type: ", "charset=", "\r\n", "\n", "\r\n\r\n", "{", "}", '"', ":", "\0", "\xff", "12", "-1", "9999999999999", " ", "x"];
    for (let trial = 0; trial < 500; trial++) {
      let junk = "";
      const n = Math.floor(rand() * 30);
      for (let i = 0; i < n; i++) junk += rand() < 0.7 ? alphabet[Math.floor(rand() * alphabet.length)] : String.fromCharCode(Math.floor(rand() * 256));
      const d = new FrameDecoder();
      const events = d.push(Buffer.concat([Buffer.from(junk, "latin1"), frame(request(1))]));
      for (let i = 0; i < 10 && d.waiting; i++) events.push(...d.expire());
      expect(d.waiting, `trial ${trial}: ${JSON.stringify(junk)}`).toBe(false);
      events.push(...d.push(frame(request(2))));
      expect(ids(events), `trial ${trial}: ${JSON.stringify(junk)}`).toContain(2);
      for (const reason of bad(events)) expect(reason).not.toContain("\n");
    }
  });
});

describe("classifyMessage", () => {
  const rejected = (v: unknown) => {
    const c = classifyMessage(v);
    if (c.kind !== "reject") throw new Error(`delivered ${JSON.stringify(v)}`);
    return c;
  };

  it("delivers requests and notifications", () => {
    expect(classifyMessage(request(1)).kind).toBe("deliver");
    expect(classifyMessage({ jsonrpc: "2.0", id: "a", method: "lens/run", params: 5 }).kind).toBe("deliver"); // params are the method's to check
    expect(classifyMessage({ jsonrpc: "2.0", method: "$/cancelRequest", params: { id: 3 } }).kind).toBe("deliver");
  });

  it("answers invalid requests with -32600, with their id when it is usable", () => {
    for (const [v, id] of [
      [5, null],
      ["x", null],
      [null, null],
      [{ id: 1, method: "lens/run" }, 1],
      [{ jsonrpc: "1.0", id: 2, method: "lens/run" }, 2],
      [{ jsonrpc: "2.0", id: 3, method: 5 }, 3],
      [{ jsonrpc: "2.0", id: 4 }, 4],
      [{ jsonrpc: "2.0", id: null, method: "lens/run" }, null],
      [{ jsonrpc: "2.0", id: { a: 1 }, method: "lens/run" }, null],
      [[], null],
    ] as [unknown, number | null][]) {
      const c = rejected(v);
      expect(c.reply, JSON.stringify(v)).toMatchObject({ jsonrpc: "2.0", id, error: { code: INVALID_REQUEST } });
    }
  });

  it("describes deeply nested members without walking them", () => {
    const deep = JSON.parse(`${"[".repeat(100_000)}${"]".repeat(100_000)}`) as unknown;
    expect(rejected({ jsonrpc: "2.0", id: 1, method: deep }).reply).toMatchObject({ id: 1, error: { code: INVALID_REQUEST, message: 'a request must have a string "method", got an array' } });
    expect(rejected({ jsonrpc: "2.0", id: deep, method: "x" }).reply).toMatchObject({ id: null, error: { code: INVALID_REQUEST } });
    expect(rejected({ jsonrpc: deep, id: 2, method: "x" }).reply).toMatchObject({ id: 2, error: { code: INVALID_REQUEST } });
    expect(rejected({ jsonrpc: "2.0", id: deep, result: 1 }).reply).toBeUndefined();
  });

  it("answers each request of a batch and no notification", () => {
    const c = rejected([request(1), { jsonrpc: "2.0", method: "lens/log" }, 7]);
    expect(c.reply).toEqual([
      { jsonrpc: "2.0", id: 1, error: { code: INVALID_REQUEST, message: expect.stringMatching(/batches are not supported/) } },
      { jsonrpc: "2.0", id: null, error: { code: INVALID_REQUEST, message: expect.stringMatching(/batches are not supported/) } },
    ]);
    expect(rejected([{ jsonrpc: "2.0", method: "lens/log" }]).reply).toBeUndefined();
  });

  it("drops, without an answer, responses and a $/cancelRequest the connection would throw on", () => {
    expect(rejected({ jsonrpc: "2.0", id: 1, result: null }).reply).toBeUndefined();
    expect(rejected({ jsonrpc: "2.0", method: "$/cancelRequest" }).reply).toBeUndefined();
    expect(rejected({ jsonrpc: "2.0", method: "$/cancelRequest", params: { id: [1] } }).reply).toBeUndefined();
  });
});
