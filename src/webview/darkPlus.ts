/** No DOM here: the webview bench (a Node script) imports it too. */

/** VS Code's Dark+ values of the variables the panel reads: the fallback when one is missing (and the bench's theme). */
export const DARK_PLUS: Readonly<Record<string, string>> = {
  "--vscode-foreground": "#cccccc",
  "--vscode-editor-background": "#1e1e1e",
  "--vscode-descriptionForeground": "#9d9d9d",
  "--vscode-panel-border": "#80808059",
  "--vscode-focusBorder": "#007fd4",
  "--vscode-editor-selectionBackground": "#264f78",
  "--vscode-errorForeground": "#f48771",
  "--vscode-charts-blue": "#3794ff",
  "--vscode-charts-red": "#f14c4c",
  "--vscode-charts-green": "#89d185",
  "--vscode-charts-yellow": "#cca700",
  "--vscode-charts-orange": "#d18616",
  "--vscode-charts-purple": "#b180d7",
  "--vscode-charts-foreground": "#cccccc",
  "--vscode-font-family": "system-ui, sans-serif",
  "--vscode-editor-font-family": "monospace",
  "--vscode-font-size": "13px",
};
