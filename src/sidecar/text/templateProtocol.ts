/** Messages between the sidecar (templateRenderer.ts) and its chat-template process (templateWorker.ts), over Node's IPC channel. */

/** Sent by the renderer for each render, one at a time. */
export interface TemplateRequest {
  id: number;
  source: string;
  context: Record<string, unknown>;
  maxChars: number;
  maxLoopItems: number;
}

/**
 * Sent by the worker: `ready` once at start; then per request its text, the bound it ran into
 * (`limit`, worded to follow "the chat template ...") or the template's own error.
 */
export type TemplateReply = { ready: true } | { id: number; text: string } | { id: number; limit: string } | { id: number; error: string };
