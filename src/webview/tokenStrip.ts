/**
 * The prompt and answer as a row of chips coloured by segment. Chips are buttons in one tab
 * stop (arrow keys move between them); hovering or focusing one shows its ranks, activating an
 * analysed one selects its column, activating the image chip expands or collapses the image run.
 */
import { type Button, button, el, rovingFocus } from "./dom";
import { type LensView, type StripChip, tokenStrip } from "./model";

export interface StripCallbacks {
  /** Token index under the pointer or focus, or -1. */
  onHover(token: number): void;
  onActivate(chip: StripChip): void;
  onToggleImages(): void;
}

export class TokenStrip {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private chips: HTMLButtonElement[] = [];
  private readonly toggle: Button;

  constructor(private readonly callbacks: StripCallbacks) {
    this.list = el("div", { class: "strip", attrs: { role: "toolbar", "aria-label": "Tokens (arrow keys to move, Enter to select)" } });
    this.toggle = button("Collapse image tokens", { id: "toggle-images", class: "small" });
    this.toggle.addEventListener("click", () => this.callbacks.onToggleImages());
    this.element = el("section", { class: "card strip-card", attrs: { "aria-label": "Tokens" } }, el("div", { class: "card-head" }, el("h3", { class: "card-title", text: "Tokens" }), this.toggle), this.list);
    rovingFocus(this.list, () => this.chips, "horizontal");
    this.list.addEventListener("mouseleave", () => this.callbacks.onHover(-1));
  }

  render(view: LensView, collapseImages: boolean, selectedToken: number): void {
    const chips = tokenStrip(view, collapseImages);
    let focusable = 0;
    this.chips = chips.map((chip, i) => {
      const analysed = chip.p >= 0;
      const b = el("button", {
        class: `chip seg-${chip.segment}${analysed ? " analysed" : ""}${chip.end - chip.start > 1 ? " run" : ""}`,
        text: chip.label,
        title: chip.end - chip.start > 1 ? `${chip.label}: Enter to ${collapseImages ? "expand" : "collapse"}` : `token ${chip.start} (${chip.segment})${analysed ? "" : ", not analysed"}`,
        attrs: { type: "button", tabindex: -1, "data-token": chip.start, "aria-pressed": chip.start === selectedToken ? "true" : "false" },
      });
      if (chip.start === selectedToken) focusable = i;
      b.addEventListener("mouseenter", () => this.callbacks.onHover(chip.end - chip.start > 1 ? -1 : chip.start));
      b.addEventListener("focus", () => this.callbacks.onHover(chip.end - chip.start > 1 ? -1 : chip.start));
      b.addEventListener("click", () => this.callbacks.onActivate(chip));
      return b;
    });
    if (this.chips[focusable]) this.chips[focusable].tabIndex = 0;
    this.list.replaceChildren(...this.chips);
    const images = view.record.tokens.filter((t) => t.segment === "image").length;
    this.toggle.hidden = images === 0;
    this.toggle.textContent = collapseImages ? `Show ${images} image tokens` : "Collapse image tokens";
    this.toggle.setAttribute("aria-pressed", collapseImages ? "false" : "true");
  }

  /** Lights the chip of a token whose patch the pointer is on (-1: none). */
  markLit(token: number): void {
    for (const b of this.chips) b.classList.toggle("lit", token >= 0 && b.dataset["token"] === String(token));
  }

  markSelected(token: number): void {
    for (const b of this.chips) b.setAttribute("aria-pressed", b.dataset["token"] === String(token) ? "true" : "false");
  }
}
