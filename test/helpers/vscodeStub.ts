/**
 * A stand-in for the `vscode` module in unit tests of extension code: the value classes and the
 * registration points that code uses, recording what is registered. Not a VS Code: anything
 * that needs the editor is tested in the editor suites.
 */
export class Position {
  constructor(readonly line: number, readonly character: number) {}
}
export class Range {
  constructor(readonly start: Position, readonly end: Position) {}
}
export enum DiagnosticSeverity {
  Error = 0,
  Warning = 1,
}
export class Diagnostic {
  source?: string;
  constructor(readonly range: Range, readonly message: string, readonly severity: DiagnosticSeverity) {}
}
export class Uri {
  private constructor(readonly path: string) {}
  static file(p: string): Uri {
    return new Uri(p);
  }
  toString(): string {
    return `file://${this.path}`;
  }
}

type Listener<T> = (e: T) => void;
class Emitter<T> {
  private listeners: Listener<T>[] = [];
  readonly event = (l: Listener<T>) => {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  };
  fire(e: T): void {
    this.listeners.forEach((l) => l(e));
  }
}

export interface StubDocument {
  uri: Uri;
  getText(): string;
  positionAt(offset: number): Position;
}

/** A text document over a string, with positionAt as VS Code computes it. */
export function stubDocument(file: string, text: string): StubDocument {
  return {
    uri: Uri.file(file),
    getText: () => text,
    positionAt(offset: number) {
      const before = text.slice(0, offset).split("\n");
      return new Position(before.length - 1, before[before.length - 1].length);
    },
  };
}

export const collections = new Map<string, Map<string, Diagnostic[]>>();
export const opened = new Emitter<StubDocument>();
export const changed = new Emitter<{ document: StubDocument }>();
export const closed = new Emitter<StubDocument>();

export const languages = {
  createDiagnosticCollection(name: string) {
    const entries = new Map<string, Diagnostic[]>();
    collections.set(name, entries);
    return {
      set: (uri: Uri, diagnostics: Diagnostic[]) => entries.set(uri.toString(), diagnostics),
      delete: (uri: Uri) => entries.delete(uri.toString()),
      dispose: () => entries.clear(),
    };
  },
};

export const workspace = {
  textDocuments: [] as StubDocument[],
  onDidOpenTextDocument: opened.event,
  onDidChangeTextDocument: changed.event,
  onDidCloseTextDocument: closed.event,
};
