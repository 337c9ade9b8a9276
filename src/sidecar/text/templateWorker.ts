/**
 * The process that renders chat templates (entry point dist/templateWorker.js; started by
 * templateRenderer.ts with a capped heap and a time limit). A template is a program from the
 * model folder, so it runs here rather than in the sidecar: a runaway loop is killed with this
 * process and an exhausted heap ends only this process. Cheap bounds are checked here too, so
 * a loop over 1e9 items or an oversized result gets its own message rather than a timeout.
 */
import { Environment, Template } from "@huggingface/jinja";
import type { TemplateReply, TemplateRequest } from "./templateProtocol";

/** Parsed templates by source: a sidecar renders the same one or two templates all day. */
const parsed = new Map<string, Template>();

function template(source: string): Template {
  let t = parsed.get(source);
  if (!t) {
    t = new Template(source);
    parsed.set(source, t);
    if (parsed.size > 8) parsed.delete(parsed.keys().next().value!);
  }
  return t;
}

/** Thrown for a bound the template ran into; the renderer words it. */
class LimitError extends Error {}

/** Jinja's range(), refusing more than `maxItems` items before building any. */
function boundedRange(maxItems: number) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (![start, stop, step].every(Number.isFinite)) throw new Error("range() needs finite numbers");
    if (step === 0) throw new Error("range() step must not be zero");
    const items = Math.max(0, Math.ceil((stop - start) / step));
    if (items > maxItems) throw new LimitError(`loops over range() of ${items.toLocaleString("en-US")} items, over the limit of ${maxItems.toLocaleString("en-US")}`);
    const out = new Array<number>(items);
    for (let i = 0; i < items; i++) out[i] = start + i * step;
    return out;
  };
}

/**
 * Every render's global range() is the bounded one. Template.render declares its globals on a
 * fresh Environment and refuses a second `range`, so the declaration itself is wrapped; this
 * process renders nothing else.
 */
let loopLimit = 0;
const declare = Environment.prototype.set;
Environment.prototype.set = function (this: Environment, name: string, value: unknown) {
  return declare.call(this, name, name === "range" ? boundedRange(loopLimit) : value);
};

function render(req: TemplateRequest): TemplateReply {
  try {
    loopLimit = req.maxLoopItems;
    const text = template(req.source).render(req.context);
    if (typeof text !== "string") return { id: req.id, error: "the chat template did not produce text" };
    if (text.length > req.maxChars) return { id: req.id, limit: `produced ${text.length.toLocaleString("en-US")} characters, over the limit of ${req.maxChars.toLocaleString("en-US")}` };
    return { id: req.id, text };
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
    if (e instanceof LimitError) return { id: req.id, limit: message };
    if (e instanceof RangeError && /string length|array length/i.test(message)) return { id: req.id, limit: `built a string or list too long to hold (${message})` };
    return { id: req.id, error: message };
  }
}

process.on("message", (req: TemplateRequest) => process.send?.(render(req)));
// The sidecar went away: nothing more will come.
process.on("disconnect", () => process.exit(0));
process.send?.({ ready: true } satisfies TemplateReply);
