/**
 * Browser side of a Logit Lens panel. It renders only from data the extension posts (see
 * src/shared/webviewProtocol.ts) and says "ready" once it listens, after every (re)load.
 */
import { App, type VsCodeApi } from "./app";
import { watchTheme } from "./theme";
import { decodeBlocks } from "../shared/blockTransport";
import type { HostToWebview } from "../shared/webviewProtocol";

declare function acquireVsCodeApi(): VsCodeApi;

function start(): void {
  const root = document.getElementById("root");
  if (!root) throw new Error("the panel's HTML has no #root element: build it with panelHtml()");
  const api = acquireVsCodeApi();
  const app = new App(api, root);
  window.addEventListener("message", (event: MessageEvent<HostToWebview>) => {
    const message = event.data;
    if (!message || typeof message !== "object" || typeof message.type !== "string") return;
    // The host sends large blocks as typed arrays (shared/blockTransport.ts).
    app.handle(decodeBlocks(message));
  });
  watchTheme(() => app.themeChanged());
  api.postMessage({ type: "ready" });
}

start();
