/** The built sidecar bundle as a child process speaking JSON-RPC, for the integration suites that talk to it directly. */
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { type CancellationToken, createMessageConnection, type MessageConnection, type RequestType, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import { decodeBlocks } from "../../src/shared/blockTransport";
import { InitializeRequest, PROTOCOL_VERSION, ShutdownRequest } from "../../src/shared/protocol";

export const SIDECAR = path.resolve(__dirname, "../../dist/sidecar.js");

export interface SidecarProcess {
  child: ChildProcess;
  /** The raw connection: answers as they travel, large blocks still encoded. */
  connection: MessageConnection;
  /** Sends a request and decodes the answer's encoded blocks, as SidecarClient does. */
  send<P, R>(type: RequestType<P, R, void>, params: P, token?: CancellationToken): Promise<R>;
}

/** Starts `logit-lens serve`; call `connection.listen()` after adding notification handlers. */
export function spawnSidecar(stderr: "pipe" | "inherit"): SidecarProcess {
  const child = spawn(process.execPath, [SIDECAR, "serve"], { stdio: ["pipe", "pipe", stderr] });
  const connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  return {
    child,
    connection,
    send: (type, params, token) => (token ? connection.sendRequest(type, params, token) : connection.sendRequest(type, params)).then((r) => decodeBlocks(r)),
  };
}

/** A started and initialized sidecar; `close()` shuts it down and ends the process. */
export async function initializedSidecar(stderr: "pipe" | "inherit" = "inherit"): Promise<SidecarProcess & { close: () => Promise<void> }> {
  const sidecar = spawnSidecar(stderr);
  sidecar.connection.listen();
  await sidecar.connection.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION, clientName: "test" });
  return {
    ...sidecar,
    close: async () => {
      await sidecar.connection.sendRequest(ShutdownRequest).catch(() => undefined);
      sidecar.connection.dispose();
      sidecar.child.kill();
    },
  };
}
