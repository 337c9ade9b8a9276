/**
 * Small DOM helpers: elements built from JS (no innerHTML with data), SVG in its namespace, and
 * the panel's controls from @vscode-elements/elements (VS Code's own look, theme-aware, keyboard
 * accessible; the maintained successor of @vscode/webview-ui-toolkit).
 */
import "@vscode-elements/elements/dist/vscode-button/index.js";
import "@vscode-elements/elements/dist/vscode-option/index.js";
import "@vscode-elements/elements/dist/vscode-single-select/index.js";
import "@vscode-elements/elements/dist/vscode-textfield/index.js";
import type { VscodeButton, VscodeSingleSelect, VscodeTextfield } from "@vscode-elements/elements";

export type Select = VscodeSingleSelect;
export type Button = VscodeButton;
export type TextField = VscodeTextfield;

export const SVG_NS = "http://www.w3.org/2000/svg";

export interface ElementProps {
  id?: string;
  class?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string | number | boolean | undefined>;
}

function apply(node: Element, props: ElementProps | undefined): void {
  if (!props) return;
  if (props.id) node.id = props.id;
  if (props.class) node.setAttribute("class", props.class);
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title !== undefined) node.setAttribute("title", props.title);
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props?: ElementProps, ...children: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  apply(node, props);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A drop-down (vscode-single-select) with options (value, label); `id` is the hook tests and labels use. */
export function select(id: string, label: string, options: readonly (readonly [string, string])[], value: string): { wrapper: HTMLLabelElement; select: Select } {
  const s = el("vscode-single-select", { id, attrs: { "aria-label": label } });
  s.append(...options.map(([v, text]) => option(v, text)));
  s.value = value;
  const wrapper = el("label", { class: "control", attrs: { for: id } }, el("span", { class: "control-label", text: label }), s);
  return { wrapper, select: s };
}

export function option(value: string, text: string): HTMLElement {
  return el("vscode-option", { text, attrs: { value } });
}

/** A button (vscode-button); the class "small" makes it a secondary one. */
export function button(text: string, props: ElementProps = {}): Button {
  const b = el("vscode-button", { ...props, text });
  if (props.class?.split(" ").includes("small")) b.secondary = true;
  return b;
}

/** A text field (vscode-textfield). */
export function textField(id: string, label: string, placeholder: string): TextField {
  return el("vscode-textfield", { id, attrs: { placeholder, "aria-label": label, spellcheck: "false" } });
}

/** Moves focus among `items` with the arrow keys, Home and End (a roving tabindex). */
export function rovingFocus(container: HTMLElement, items: () => HTMLElement[], orientation: "horizontal" | "vertical" | "both" = "horizontal"): void {
  container.addEventListener("keydown", (event) => {
    const list = items();
    const current = list.indexOf(document.activeElement as HTMLElement);
    if (current < 0) return;
    const next = (() => {
      const back = orientation === "vertical" ? ["ArrowUp"] : orientation === "horizontal" ? ["ArrowLeft"] : ["ArrowLeft", "ArrowUp"];
      const fwd = orientation === "vertical" ? ["ArrowDown"] : orientation === "horizontal" ? ["ArrowRight"] : ["ArrowRight", "ArrowDown"];
      if (back.includes(event.key)) return Math.max(0, current - 1);
      if (fwd.includes(event.key)) return Math.min(list.length - 1, current + 1);
      if (event.key === "Home") return 0;
      if (event.key === "End") return list.length - 1;
      return -1;
    })();
    if (next < 0) return;
    event.preventDefault();
    list[current].tabIndex = -1;
    list[next].tabIndex = 0;
    list[next].focus();
  });
}

export function formatNumber(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return "–";
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}
