/** Entry point of the sidecar bundle: the CLI and the JSON-RPC server (`serve`). */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Writable } from "node:stream";
import { main } from "./cli";

/**
 * onnxruntime-node 1.30 crashes (SIGSEGV, deep recursion inside libonnxruntime) creating a
 * session when the process's command line is long: a 32,000-character --prompt or --target was
 * enough, 24,000 was not, whatever the argument was. So a command line over this many characters
 * is handed to a child of this same script through a pipe (fd 3), whose own command line is
 * short; the child's exit code, stdout and stderr are this process's.
 */
const LONG_COMMAND_LINE = 8 * 1024;
const ARGS_FD_FLAG = "--args-from-fd3";

function argv(): string[] {
  const args = process.argv.slice(2);
  if (args[0] === ARGS_FD_FLAG) return JSON.parse(readFileSync(3, "utf8")) as string[];
  return args;
}

function relaunchWithShortCommandLine(args: string[]): void {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], ARGS_FD_FLAG], { stdio: ["inherit", "inherit", "inherit", "pipe"] });
  (child.stdio[3] as Writable).end(JSON.stringify(args));
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => {
    process.exitCode = code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 70);
  });
}

// `logit-lens run --format json | head`: a reader that closes the pipe early ends the run quietly
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code !== "EPIPE") throw e;
  process.exit(process.exitCode ?? 0);
});

const args = argv();
if (process.argv[2] !== ARGS_FD_FLAG && args.reduce((n, a) => n + a.length + 1, 0) > LONG_COMMAND_LINE) {
  relaunchWithShortCommandLine(args);
} else {
  main(args).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`internal error: ${String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
