/**
 * A live preview's line under the heading: the shown item (previewItems.ts) and the controls
 * that choose another one: previous / next item, another variant, and the whole list of items
 * (the host's quick pick).
 */
import type { WebviewToHost } from "../shared/webviewProtocol";
import { button, el, option, type Select } from "./dom";
import { type PreviewInfo, previewTargets, previewText } from "./previewItems";

/** The line's nodes: its text, then the controls (each posts a previewItem / choosePreviewItem message). */
export function previewLine(p: PreviewInfo, post: (m: WebviewToHost) => void): Node[] {
  const t = previewTargets(p);
  const go = (index: number | null) => () => {
    if (index !== null) post({ type: "previewItem", index });
  };
  const previous = button("◀ Previous", { class: "small", id: "preview-previous", title: "Show the planned item before this one" });
  const next = button("Next ▶", { class: "small", id: "preview-next", title: "Show the next planned item" });
  previous.disabled = t.previous === null;
  next.disabled = t.next === null;
  previous.addEventListener("click", go(t.previous));
  next.addEventListener("click", go(t.next));
  const choose = button("Choose item…", { class: "small", id: "preview-choose", title: "List the experiment's planned items (image, prompt, variant) and show one" });
  choose.addEventListener("click", () => post({ type: "choosePreviewItem" }));
  const controls: Node[] = [previous, next];
  if (t.variants.length > 1) {
    const s: Select = el("vscode-single-select", { id: "preview-variant", attrs: { "aria-label": "Variant" } });
    s.append(...t.variants.map((v) => option(String(v.index), v.name)));
    s.value = String(t.variants[t.variant]?.index ?? p.index);
    s.addEventListener("change", () => {
      const index = Number(s.value);
      if (Number.isInteger(index) && index !== p.index) post({ type: "previewItem", index });
    });
    controls.push(el("label", { class: "control", attrs: { for: "preview-variant" } }, el("span", { class: "control-label", text: "Variant" }), s));
  }
  controls.push(choose);
  return [el("span", { class: "preview-text", text: previewText(p), attrs: { title: p.file } }), el("span", { class: "preview-nav", attrs: { role: "group", "aria-label": "Choose the previewed item" } }, ...controls)];
}
