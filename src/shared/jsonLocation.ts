/**
 * Where a JSON pointer (as in validator errors: "/variants/1/name") is in a document's text, so
 * that editors can underline the exact value. For a pointer to a missing member, the nearest
 * existing parent is returned. Uses jsonc-parser's tolerant parse, so it works on text that is
 * being edited.
 */
import { findNodeAtLocation, type Node, parseTree } from "jsonc-parser";

export interface TextSpan {
  offset: number;
  length: number;
}

/** "/a/0/b~1c" -> ["a", 0, "b/c"] (array indices as numbers). */
export function pointerSegments(pointer: string): (string | number)[] {
  if (pointer === "" || pointer === "/") return [];
  return pointer
    .replace(/^\//, "")
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

/**
 * The span of the value at `pointer`, or of its nearest existing ancestor. With `member`, the
 * whole member (key and value): for problems with the key itself, such as an unknown field.
 */
export function locatePointer(text: string, pointer: string, member = false): TextSpan {
  const root = parseTree(text);
  if (!root) return { offset: 0, length: Math.min(text.length, 1) };
  const path = pointerSegments(pointer);
  for (let n = path.length; n >= 0; n--) {
    const node = findNodeAtLocation(root, path.slice(0, n));
    if (!node) continue;
    const target: Node = member && node.parent?.type === "property" && n === path.length ? node.parent : node;
    if (n < path.length && node.type === "object") {
      // A missing member of an object: underline the object's opening brace only.
      return { offset: node.offset, length: 1 };
    }
    return { offset: target.offset, length: target.length };
  }
  return { offset: 0, length: 1 };
}

/** Splits "<pointer>: <message>" as the validators write it. */
export function splitProblem(problem: string): { pointer: string; message: string } {
  const m = /^(\/[^:]*|\/):\s(.*)$/s.exec(problem);
  return m ? { pointer: m[1], message: m[2] } : { pointer: "/", message: problem };
}

/** Line and column (0-based) of an offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 0;
  let start = 0;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start };
}
