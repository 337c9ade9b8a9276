// The panel skeleton the extension serves: a strict CSP, scripts only by nonce, no data in the page.
import { describe, expect, it } from "vitest";
import { panelCsp, panelHtml } from "../../src/webview/html";

const options = {
  scriptUri: "https://file+.vscode-resource.vscode-cdn.net/ext/dist/webview.js",
  styleUri: "https://file+.vscode-resource.vscode-cdn.net/ext/media/webview.css",
  // what code-server 4.139 passes: quoted keywords are part of it
  cspSource: "'self' https://*.vscode-cdn.net",
  nonce: "N0nceN0nceN0nce12",
};

describe("panelHtml", () => {
  it("sets the CSP: nothing by default, images/styles/fonts from the extension, scripts by nonce", () => {
    const html = panelHtml(options);
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]*)"/u.exec(html)?.[1];
    expect(csp).toBe(
      "default-src 'none'; img-src 'self' https://*.vscode-cdn.net data: blob:; style-src 'self' https://*.vscode-cdn.net 'nonce-N0nceN0nceN0nce12'; script-src 'nonce-N0nceN0nceN0nce12'; font-src 'self' https://*.vscode-cdn.net".replace(/'/gu, "&#39;"),
    );
    expect(panelCsp(options.cspSource, options.nonce)).toBe(
      "default-src 'none'; img-src 'self' https://*.vscode-cdn.net data: blob:; style-src 'self' https://*.vscode-cdn.net 'nonce-N0nceN0nceN0nce12'; script-src 'nonce-N0nceN0nceN0nce12'; font-src 'self' https://*.vscode-cdn.net",
    );
  });

  it("loads the script and the stylesheet by URI, with the nonce, and nothing inline", () => {
    const html = panelHtml(options);
    const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/gu)];
    expect(scripts).toHaveLength(1);
    expect(scripts[0][1]).toContain(`nonce="${options.nonce}"`);
    expect(scripts[0][1]).toContain(`src="${options.scriptUri}"`);
    expect(scripts[0][2]).toBe("");
    expect(html).toContain(`<link rel="stylesheet" nonce="${options.nonce}" href="${options.styleUri}" />`);
    expect(html).not.toMatch(/<style|style="|\son[a-z]+=/u);
    expect(html).toContain('<main id="root"');
  });

  it("adds the elements bundle before the panel's script when given", () => {
    const html = panelHtml({ ...options, elementsUri: "https://x.vscode-cdn.net/elements/bundled.js" });
    const srcs = [...html.matchAll(/<script nonce="N0nceN0nceN0nce12"[^>]* src="([^"]+)"/gu)].map((m) => m[1]);
    expect(srcs).toEqual(["https://x.vscode-cdn.net/elements/bundled.js", options.scriptUri]);
  });

  it("escapes URIs and the title, and refuses a weak nonce or a CSP-breaking source", () => {
    const html = panelHtml({ ...options, scriptUri: 'https://x/a".js', title: "<b>&" });
    expect(html).toContain('src="https://x/a&quot;.js"');
    expect(html).toContain("<title>&lt;b&gt;&amp;</title>");
    expect(() => panelHtml({ ...options, nonce: "short" })).toThrow(/at least 16/u);
    expect(() => panelHtml({ ...options, nonce: "abc'def;ghijklmnopq" })).toThrow(/nonce/u);
    expect(() => panelHtml({ ...options, cspSource: "https://x; script-src *" })).toThrow(/cspSource/u);
  });
});
