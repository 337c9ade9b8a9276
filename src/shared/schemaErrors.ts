/**
 * Ajv's schema errors in words, one line each: "<JSON pointer>: <what is wrong>", e.g.
 * "/lens/entropy/shape: must have 2 items". Shared by the LensRecord and experiment validators.
 */
import type { ErrorObject } from "ajv";

/** `keyHint` finishes "is not a valid key here (...)" for objects whose keys the schema restricts. */
export function describeSchemaErrors(errors: ErrorObject[], keyHint = "see the schema"): string[] {
  // "propertyNames" wraps the error of the key itself, which says more.
  return errors.filter((e) => e.keyword !== "propertyNames").map((e) => describeSchemaError(e, keyHint));
}

function describeSchemaError(e: ErrorObject, keyHint: string): string {
  const here = e.instancePath || "/";
  const params = e.params as Record<string, unknown>;
  const limits = e.parentSchema as { minItems?: number; maxItems?: number; properties?: Record<string, unknown> } | undefined;
  if (e.propertyName !== undefined) {
    return `${child(e.instancePath, e.propertyName)}: is not a valid key here (${keyHint})`;
  }
  switch (e.keyword) {
    case "required":
      return `${child(e.instancePath, String(params.missingProperty))}: is required but missing`;
    case "additionalProperties":
      return `${child(e.instancePath, String(params.additionalProperty))}: is not a field of this object (fields: ${Object.keys(limits?.properties ?? {}).join(", ")})`;
    case "const":
      return `${here}: must be ${JSON.stringify(params.allowedValue)}, got ${preview(e.data)}`;
    case "enum":
      return `${here}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}; got ${preview(e.data)}`;
    case "type": {
      const types = String(params.type).split(",");
      return `${here}: must be ${types.map(withArticle).join(" or ")}, got ${kindOf(e.data)}`;
    }
    case "minItems":
    case "maxItems":
    case "additionalItems": {
      const count = Array.isArray(e.data) ? `, got ${e.data.length}` : "";
      const items = (n: unknown) => `${String(n)} item${Number(n) === 1 ? "" : "s"}`;
      if (limits?.minItems !== undefined && limits.minItems === limits.maxItems) return `${here}: must have ${items(limits.minItems)}${count}`;
      if (e.keyword === "minItems") return `${here}: must have at least ${items(params.limit)}${count}`;
      return `${here}: must have at most ${items(params.limit ?? limits?.maxItems)}${count}`;
    }
    case "minimum":
    case "maximum":
      return `${here}: must be ${String(params.comparison)} ${String(params.limit)}, got ${preview(e.data)}`;
    case "pattern":
      return `${here}: must match ${String(params.pattern)}, got ${preview(e.data)}`;
    case "uniqueItems":
      return `${here}: must not repeat a value (items ${Math.min(Number(params.i), Number(params.j))} and ${Math.max(Number(params.i), Number(params.j))} are equal)`;
    default:
      return `${here}: ${e.message ?? "is invalid"}`;
  }
}

function child(pointer: string, key: string): string {
  return `${pointer}/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

function withArticle(type: string): string {
  return type === "null" ? "null" : `${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`;
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number") return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  if (typeof v === "string") return `the string ${preview(v)}`;
  return withArticle(typeof v);
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
