/** Small DOM helpers: elements built from JS (no innerHTML with data), SVG in its namespace. */

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

/** A <select> with options (value, label); `id` is the hook tests and labels use. */
export function select(id: string, label: string, options: readonly (readonly [string, string])[], value: string): { wrapper: HTMLLabelElement; select: HTMLSelectElement } {
  const s = el("select", { id });
  for (const [v, text] of options) s.append(el("option", { text, attrs: { value: v } }));
  s.value = value;
  const wrapper = el("label", { class: "control", attrs: { for: id } }, el("span", { class: "control-label", text: label }), s);
  return { wrapper, select: s };
}

export function button(text: string, props: ElementProps = {}): HTMLButtonElement {
  return el("button", { ...props, text, attrs: { type: "button", ...props.attrs } });
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
