/** "Run Logit Lens"'s prompt box: Enter on an empty box says a prompt is needed instead of cancelling. */
import { describe, expect, it, vi } from "vitest";

type Handler = () => void;

/** The part of a QuickPick askPrompt uses, with its handlers kept for the test to fire. */
class FakeQuickPick {
  title?: string;
  placeholder?: string;
  value = "";
  items: { label: string }[] = [];
  selectedItems: { label: string }[] = [];
  matchOnDescription = true;
  ignoreFocusOut = false;
  hidden = false;
  readonly accepted: Handler[] = [];
  readonly onHide: Handler[] = [];
  readonly changed: Handler[] = [];
  onDidAccept(h: Handler) {
    this.accepted.push(h);
  }
  onDidHide(h: Handler) {
    this.onHide.push(h);
  }
  onDidChangeValue(h: Handler) {
    this.changed.push(h);
  }
  show() {}
  hide() {
    this.hidden = true;
    this.onHide.forEach((h) => h());
  }
  dispose() {}
  accept() {
    this.accepted.forEach((h) => h());
  }
  type(text: string) {
    this.value = text;
    this.changed.forEach((h) => h());
  }
}

const picks: FakeQuickPick[] = [];

vi.mock("vscode", async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()),
  window: {
    createQuickPick: () => {
      const qp = new FakeQuickPick();
      picks.push(qp);
      return qp;
    },
  },
}));

const { acceptedPrompt, askPrompt, EMPTY_PROMPT_MESSAGE } = await import("../../src/extension/commands");

function context(history: string[] = []) {
  const state = new Map<string, unknown>([["logitLens.promptHistory", history]]);
  return { globalState: { get: (k: string, d: unknown) => state.get(k) ?? d, update: async (k: string, v: unknown) => void state.set(k, v) }, state } as never;
}

describe("prompt box", () => {
  it("an empty or blank accept is no prompt; a typed prefix of an earlier prompt picks that prompt", () => {
    expect(acceptedPrompt("", undefined)).toBeUndefined();
    expect(acceptedPrompt("   ", undefined)).toBeUndefined();
    expect(acceptedPrompt("What", "What color?")).toBe("What color?");
    expect(acceptedPrompt("Count", "What color?")).toBe("Count");
    expect(acceptedPrompt("", "What color?")).toBe("What color?");
  });

  it("stays open with a message on an empty Enter, and returns the prompt typed next", async () => {
    picks.length = 0;
    const ctx = context();
    const asked = askPrompt(ctx);
    const qp = picks[0];
    qp.accept();
    expect(qp.placeholder).toBe(EMPTY_PROMPT_MESSAGE);
    expect(qp.title).toMatch(/a prompt is needed/);
    expect(qp.hidden).toBe(false);
    qp.type("What color is it?");
    expect(qp.title).toBe("Logit Lens: prompt");
    qp.accept();
    expect(qp.hidden).toBe(true);
    await expect(asked).resolves.toBe("What color is it?");
    // Escape (hide) on an empty box still cancels
    const cancelled = askPrompt(ctx);
    picks[1].hide();
    await expect(cancelled).resolves.toBeUndefined();
  });
});
