/**
 * The panel's HTML skeleton, for the extension host (and the webview benchmark) to serve. Pure:
 * no DOM, no vscode import, so it compiles into the Node bundle. The page holds no data; the
 * record arrives by postMessage after the script posts "ready".
 */

export interface PanelHtmlOptions {
  /** Webview URI of dist/webview.js. */
  scriptUri: string;
  /** Webview URI of media/webview.css. */
  styleUri: string;
  /** webview.cspSource. */
  cspSource: string;
  /** A fresh random nonce per page load (letters and digits). */
  nonce: string;
  /** Webview URI of an extra script bundle (e.g. @vscode-elements' bundled.js), loaded before the panel's. */
  elementsUri?: string;
  /** Page title (defaults to "Logit Lens"). */
  title?: string;
}

const escapeHtml = (s: string): string => s.replace(/&/gu, "&amp;").replace(/"/gu, "&quot;").replace(/</gu, "&lt;").replace(/>/gu, "&gt;").replace(/'/gu, "&#39;");

/** The Content-Security-Policy of a panel: nothing by default; images, styles and fonts from the extension; scripts by nonce only. */
export function panelCsp(cspSource: string, nonce: string): string {
  return `default-src 'none'; img-src ${cspSource} data: blob:; style-src ${cspSource} 'nonce-${nonce}'; script-src 'nonce-${nonce}'; font-src ${cspSource}`;
}

export function panelHtml(options: PanelHtmlOptions): string {
  const { scriptUri, styleUri, cspSource, nonce, elementsUri } = options;
  if (!/^[A-Za-z0-9+/=_-]{16,}$/u.test(nonce)) throw new Error(`panel nonce "${nonce}" must be at least 16 letters, digits or base64 characters: make it with crypto.randomBytes(16).toString("base64url")`);
  if (/[;"\r\n]/u.test(cspSource)) throw new Error(`cspSource "${cspSource}" would break the Content-Security-Policy: pass webview.cspSource`);
  const title = escapeHtml(options.title ?? "Logit Lens");
  const elements = elementsUri ? `\n    <script nonce="${nonce}" type="module" src="${escapeHtml(elementsUri)}"></script>` : "";
  return `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta http-equiv="Content-Security-Policy" content="${escapeHtml(panelCsp(cspSource, nonce))}" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <link rel="stylesheet" nonce="${nonce}" href="${escapeHtml(styleUri)}" />
    <title>${title}</title>
  </head>
  <body>
    <main id="root" aria-busy="true"><p class="placeholder">Waiting for a lens run…</p></main>${elements}
    <script nonce="${nonce}" src="${escapeHtml(scriptUri)}"></script>
  </body>
</html>
`;
}
