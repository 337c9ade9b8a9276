/**
 * Problems-panel diagnostics for `.lens.json` experiment files: every problem the validator
 * finds (src/shared/experiment.ts), underlined at the value it is about, updated as the file is
 * edited. VS Code's JSON language service shows the schema's own errors too; these add the
 * checks a schema cannot make and read the same way in the CLI and the sidecar.
 */
import * as vscode from "vscode";
import { checkExperimentText } from "../shared/experiment";

const DEBOUNCE_MS = 250;

export function isExperimentDocument(doc: vscode.TextDocument): boolean {
  return doc.uri.path.toLowerCase().endsWith(".lens.json");
}

export function registerExperimentDiagnostics(context: vscode.ExtensionContext): vscode.DiagnosticCollection {
  const collection = vscode.languages.createDiagnosticCollection("logitLens.experiments");
  const timers = new Map<string, ReturnType<typeof setTimeout>>();

  const check = (doc: vscode.TextDocument) => {
    if (!isExperimentDocument(doc)) return;
    const { problems } = checkExperimentText(doc.getText());
    collection.set(
      doc.uri,
      problems.map((p) => {
        const range = new vscode.Range(doc.positionAt(p.offset), doc.positionAt(p.offset + p.length));
        const d = new vscode.Diagnostic(range, p.pointer === "/" ? p.message : `${p.pointer}: ${p.message}`, vscode.DiagnosticSeverity.Error);
        d.source = "logit-lens";
        return d;
      }),
    );
  };
  const later = (doc: vscode.TextDocument) => {
    if (!isExperimentDocument(doc)) return;
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => {
      timers.delete(key);
      check(doc);
    }, DEBOUNCE_MS));
  };

  vscode.workspace.textDocuments.forEach(check);
  context.subscriptions.push(
    collection,
    vscode.workspace.onDidOpenTextDocument(check),
    vscode.workspace.onDidChangeTextDocument((e) => later(e.document)),
    vscode.workspace.onDidCloseTextDocument((doc) => collection.delete(doc.uri)),
    { dispose: () => timers.forEach((t) => clearTimeout(t)) },
  );
  return collection;
}
