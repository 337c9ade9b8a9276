/**
 * Chat templates are programs from the model folder: they render in their own process
 * (templateRenderer.ts) within the bounds of limits.ts, and every bound they hit is a one-line
 * LensInputError naming the template file. Without that, range(1e9) took the process down and
 * nested loops held it for minutes.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { MAX_PROMPT_CHARS, MAX_RENDERED_CHARS, MAX_TEMPLATE_LOOP_ITEMS, TEMPLATE_TIME_LIMIT_MS } from "../../src/sidecar/text/limits";
import { renderChatTemplate, stopChatTemplateRenderer } from "../../src/sidecar/text/templateRenderer";
import { TextProcessor } from "../../src/sidecar/text/textProcessor";
import { FIXTURES } from "../helpers/fixtures";

const FILE = "/models/m/chat_template.jinja";
const CONTEXT = { messages: [{ role: "user", content: [{ type: "text", text: "Why?" }] }], add_generation_prompt: true };
const LIMITS = { timeMs: TEMPLATE_TIME_LIMIT_MS, maxChars: MAX_RENDERED_CHARS, maxLoopItems: MAX_TEMPLATE_LOOP_ITEMS };

async function refusal(source: string, limits = LIMITS): Promise<LensInputError> {
  try {
    await renderChatTemplate(source, CONTEXT, FILE, limits);
  } catch (e) {
    expect(e).toBeInstanceOf(LensInputError);
    expect((e as LensInputError).file).toBe(FILE);
    expect((e as Error).message).not.toContain("\n");
    return e as LensInputError;
  }
  throw new Error("the template rendered");
}

const normal = "{% for m in messages %}USER: {{ m.content[0].text }}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}";

afterAll(() => stopChatTemplateRenderer());

describe("chat template bounds", () => {
  it("renders a normal template, warm renders in a few ms", async () => {
    expect(await renderChatTemplate(normal, CONTEXT, FILE)).toBe("USER: Why? ASSISTANT:");
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await renderChatTemplate(normal, CONTEXT, FILE);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    expect(times[10]).toBeLessThan(20); // measured: 0.2 ms
  });

  it("refuses range() over a billion items at once, with the limit", async () => {
    const t0 = performance.now();
    const e = await refusal("{% for i in range(1000000000) %}x{% endfor %}");
    expect(e.message).toBe(`${FILE}: the chat template loops over range() of 1,000,000,000 items, over the limit of 100,000: check the template`);
    expect(performance.now() - t0).toBeLessThan(TEMPLATE_TIME_LIMIT_MS);
  });

  it("keeps range() as jinja's otherwise", async () => {
    expect(await renderChatTemplate("{{ range(3) }}{{ range(10, 0, -3) }}{{ range(0, 10, 3) }}{{ range(2, 2) }}", CONTEXT, FILE)).toBe("[0, 1, 2][10, 7, 4, 1][0, 3, 6, 9][]");
  });

  it("stops nested loops at the time limit, and the next render still works", async () => {
    const t0 = performance.now();
    const e = await refusal("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", { ...LIMITS, timeMs: 500 });
    expect(e.message).toBe(`${FILE}: the chat template did not finish within 0.5 s: check the template for a loop that does not end or runs too long`);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(await renderChatTemplate(normal, CONTEXT, FILE)).toBe("USER: Why? ASSISTANT:");
  });

  it("refuses output over the character limit", async () => {
    const e = await refusal("{% for i in range(100) %}0123456789{% endfor %}", { ...LIMITS, maxChars: 999 });
    expect(e.message).toBe(`${FILE}: the chat template produced 1,000 characters, over the limit of 999: check the template`);
  });

  it("stops a template that exhausts its memory without harming this process", async () => {
    // the list doubles each step: 2^30 items, far over the renderer's heap
    const e = await refusal("{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}", { ...LIMITS, timeMs: 60_000 });
    expect(e.message).toMatch(/the chat template (used more than 256 MB of memory and was stopped|built a string or list too long to hold)/);
    expect(await renderChatTemplate(normal, CONTEXT, FILE)).toBe("USER: Why? ASSISTANT:");
  });

  it("reports the template's own errors as before", async () => {
    expect((await refusal("{{ raise_exception('no images here') }}")).message).toBe(`${FILE}: the chat template failed to render (no images here): check the template`);
    expect((await refusal("{% for %}")).message).toMatch(/failed to render \(Unexpected token/);
  });
});

describe("TextProcessor.renderPrompt", () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lens-template-"));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) fs.copyFileSync(path.join(FIXTURES, "llava-tied-f32/model", f), path.join(dir, f));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("names chat_template.jinja when its template runs away", async () => {
    const file = path.join(dir, "chat_template.jinja");
    fs.writeFileSync(file, "{% for i in range(1000000000) %}x{% endfor %}");
    const text = await TextProcessor.open(dir, undefined);
    await expect(text.renderPrompt("Why?", false)).rejects.toThrow(`${file}: the chat template loops over range() of 1,000,000,000 items, over the limit of 100,000: check the template`);
    fs.rmSync(file);
  });

  it("refuses a prompt over the character limit before rendering it", async () => {
    const text = await TextProcessor.open(dir, undefined);
    await expect(text.renderPrompt("a".repeat(MAX_PROMPT_CHARS + 1), false)).rejects.toThrow("the prompt is 100,001 characters, over the 100,000-character limit: shorten it");
    await expect(text.renderPrompt("a".repeat(MAX_PROMPT_CHARS), false)).resolves.toHaveLength(MAX_PROMPT_CHARS);
  });

  it.skipIf(process.platform === "win32")("refuses a chat_template.jinja that is a FIFO instead of waiting for a writer", async () => {
    const fifo = path.join(dir, "chat_template.jinja");
    execFileSync("mkfifo", [fifo]);
    try {
      await expect(TextProcessor.open(dir, undefined)).rejects.toThrow(`${fifo}: the chat template is a named pipe (FIFO), not a regular file`);
    } finally {
      fs.rmSync(fifo);
    }
  });
});
