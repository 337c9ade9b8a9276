/** An SvgNode tree (colourBar.ts, which has no DOM) as SVG elements, for the panel. */
import type { SvgNode } from "./colourBar";
import { SVG_NS } from "./dom";

/** The same tree as SVG elements (in the panel). */
export function svgNodeElement(node: SvgNode): SVGElement {
  const e = document.createElementNS(SVG_NS, node.tag);
  for (const [k, v] of Object.entries(node.attrs)) e.setAttribute(k, String(v));
  if (node.text !== undefined) e.textContent = node.text;
  for (const c of node.children ?? []) e.append(svgNodeElement(c));
  return e;
}
