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
    message: string,
  ) {
    super(file ? `${file}: ${message}` : message);
  }
}

export function isLensInputError(e: unknown): e is LensInputError {
  return e instanceof LensInputError;
}
