/**
 * An error caused by the user's input (a file, a folder, a flag) rather than by a bug.
 * Its message is one line that names the file and says what to do; the CLI prints it
 * without a stack trace unless --verbose is given, and the sidecar returns it as a
 * JSON-RPC error and keeps running.
 */
export class LensInputError extends Error {
  override readonly name = "LensInputError";
  constructor(
    /** The file or folder the problem is in, when there is one. */
    readonly file: string | undefined,
    /** What is wrong, then what to do about it, in one line. */
    readonly reason: string,
  ) {
    super(clip(file ? `${shorten(file)}: ${reason}` : reason));
  }
}

export function isLensInputError(e: unknown): e is LensInputError {
  return e instanceof LensInputError;
}

/** A path as a message shows it: whole up to 300 characters, else its start and its end. */
function shorten(file: string): string {
  return file.length <= 300 ? file : `${file.slice(0, 150)}…${file.slice(-120)} (${file.length.toLocaleString("en-US")} characters)`;
}

/** One line, and a readable one: a message built from a huge value is cut. */
function clip(message: string): string {
  const line = message.replace(/[\r\n]+/g, " ");
  return line.length <= 1000 ? line : `${line.slice(0, 990)}… (cut)`;
}
