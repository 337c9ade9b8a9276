/**
 * The only module that imports onnxruntime-node. It maps a device choice to execution
 * providers, creates sessions over compiled graphs whose weights stay in the model folder,
 * and converts tensors at the boundary so the rest of the sidecar sees plain typed arrays.
 */
import * as ort from "onnxruntime-node";
import { LensInputError } from "../errors";
import type { BuiltGraph } from "../graph/onnxBuilder";

export const DEVICES = ["auto", "cpu", "cuda", "webgpu"] as const;
export type Device = (typeof DEVICES)[number];

export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  data: TensorData;
  dims: readonly number[];
}

export interface GraphSession {
  /** The execution provider the session really runs on. */
  readonly provider: "cpu" | "cuda" | "webgpu";
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

export function parseDevice(value: string): Device {
  if ((DEVICES as readonly string[]).includes(value)) return value as Device;
  throw new LensInputError(undefined, `unknown device "${value}": choose one of ${DEVICES.join(", ")}`);
}

/** Backends the installed onnxruntime-node really carries (CUDA needs its libraries installed). */
export function availableProviders(): { name: string; bundled: boolean }[] {
  return ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
}

function isBundled(name: string): boolean {
  return availableProviders().some((b) => b.name === name && b.bundled);
}

/** The provider a session for `device` tries first, which graphs are built for. */
export function intendedProvider(device: Device): "cpu" | "cuda" | "webgpu" {
  return providersFor(device)[0];
}

function providersFor(device: Device): ("cpu" | "cuda" | "webgpu")[] {
  switch (device) {
    case "cpu":
      return ["cpu"];
    case "cuda":
      if (!isBundled("cuda")) {
        throw new LensInputError(
          undefined,
          "device cuda was asked for but onnxruntime-node was installed without its CUDA libraries: reinstall with --onnxruntime-node-install=cuda12, or choose auto or cpu",
        );
      }
      return ["cuda"];
    case "webgpu":
      return ["webgpu"];
    case "auto":
      // Never WebGPU: onnxruntime-node 1.30 cannot tell a hardware adapter from a software one
      // (SwiftShader, llvmpipe, WARP), which would run far slower than the CPU provider. Its
      // binding exports only sessions and listSupportedBackends, ort.env.webgpu stays empty in
      // Node, and the WebGPU provider logs its context's pointers, never the adapter it got.
      // An explicit `webgpu` device still runs on whatever adapter Dawn picks.
      return isBundled("cuda") ? ["cuda", "cpu"] : ["cpu"];
  }
}

export interface SessionOptions {
  /** Folder the graph's external-data locations are relative to (the model folder). */
  weightsFolder: string;
  device: Device;
  /** Intra-op threads; 0 lets onnxruntime use every core. */
  threads?: number;
  /**
   * Let onnxruntime re-lay out constant weights for its GEMM kernels at load. It copies every
   * matrix and dominates session creation; see bench/runtime.ts for what it buys per forward.
   */
  prepackWeights?: boolean;
  /** Keep freed buffers in onnxruntime's arena for reuse (default true). */
  memoryArena?: boolean;
  /**
   * Fold the graph's constant work at load (default true): the Cast of every F16/BF16 weight to
   * float32 then runs once, and the float32 copies stay resident (twice the half weights' size).
   * false keeps half weights half, mapped from their files, and converts each where it is used:
   * about the file's size of memory, sessions that open at once, and a cast per matrix per run
   * (on a 4096 x 4096 layer: +5% for a 600-token prefill, 6x a one-token decode step).
   */
  foldConstants?: boolean;
}

/**
 * onnxruntime's graph optimisation level for a graph on a provider. Our graphs are built fused
 * (QuickGelu, FusedMatMul, SimplifiedLayerNormalization), and on the CPU the "all" level found
 * nothing more that made a run measurably faster, while it took a third of session creation
 * (27 of 87 ms for the bench model's three sessions). So on the CPU a graph is only
 * constant-folded, and only when it has something to fold; other providers keep every
 * optimisation, since their fusions differ.
 */
function optimizationLevel(graph: BuiltGraph, provider: "cpu" | "cuda" | "webgpu", foldConstants: boolean): "disabled" | "basic" | "all" {
  if (provider !== "cpu") return "all";
  return graph.foldsConstants && foldConstants ? "basic" : "disabled";
}

/**
 * Set (to anything but "" or "0"), every session logs verbosely to the process's native stderr
 * under its graph's name, node placement included ("Node(s) placed on [CPUExecutionProvider]").
 * A hidden switch for test/helpers/webgpuPlacement.ts, which reads that log from a child process.
 */
export const VERBOSE_LOG_ENV = "LOGIT_LENS_ORT_VERBOSE";

function verboseLog(): boolean {
  const v = process.env[VERBOSE_LOG_ENV];
  return v !== undefined && v !== "" && v !== "0";
}

export async function openGraphSession(graph: BuiltGraph, opts: SessionOptions): Promise<GraphSession> {
  const candidates = providersFor(opts.device);
  let lastError: unknown;
  for (const provider of candidates) {
    try {
      const session = await ort.InferenceSession.create(graph.bytes, {
        executionProviders: [provider === "webgpu" && graph.cpuNodes.length > 0 ? { name: "webgpu", forceCpuNodeNames: graph.cpuNodes } : provider],
        logId: graph.name,
        ...(verboseLog() ? { logSeverityLevel: 0 as const, logVerbosityLevel: 0 } : {}),
        graphOptimizationLevel: optimizationLevel(graph, provider, opts.foldConstants ?? true),
        intraOpNumThreads: opts.threads ?? 0,
        enableCpuMemArena: opts.memoryArena ?? true,
        // Initializers point into the model's own .safetensors files: nothing is converted or copied.
        extra: {
          session: {
            model_external_initializers_file_folder_path: opts.weightsFolder,
            disable_prepacking: opts.prepackWeights ? "0" : "1",
            // No spinning intra-op workers. A model is three sessions (vision, decoder, lens),
            // each with its own pool, run one after the other, and workers still spinning from
            // the last run held the cores (the vision tower took 102-116 ms after a decoder run
            // instead of 48-51). Spinning during a run with force_spinning_stop at its end made
            // a 2-thread Gemm up to 2x faster and the forward 5-10%, but the code-server suite
            // then timed out in 4 of 9 runs (6 of 6 passed without it), so it stays off.
            // (The binding prefixes "session.", so this is "session.intra_op.allow_spinning".)
            intra_op: { allow_spinning: "0" },
          },
        },
      });
      return wrap(session, provider);
    } catch (e) {
      lastError = e;
      if (opts.device !== "auto") break;
    }
  }
  const message = lastError instanceof Error ? lastError.message : String(lastError);
  if (opts.device === "webgpu") {
    throw new LensInputError(undefined, `the webgpu execution provider failed to start (${firstLine(message)}): choose auto or cpu`);
  }
  throw new Error(`onnxruntime could not create a session on ${candidates.join("/")}: ${message}`);
}

function firstLine(s: string): string {
  return s.split("\n")[0].slice(0, 300);
}

function toOrt(t: HostTensor): ort.Tensor {
  const dims = [...t.dims];
  if (t.data instanceof Float32Array) return new ort.Tensor("float32", t.data, dims);
  if (t.data instanceof BigInt64Array) return new ort.Tensor("int64", t.data, dims);
  if (t.data instanceof Int32Array) return new ort.Tensor("int32", t.data, dims);
  return new ort.Tensor("bool", t.data, dims);
}

function fromOrt(t: ort.Tensor): HostTensor {
  return { data: t.data as TensorData, dims: t.dims };
}

function wrap(session: ort.InferenceSession, provider: "cpu" | "cuda" | "webgpu"): GraphSession {
  return {
    provider,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetches) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrt(t);
      const result = fetches ? await session.run(ortFeeds, [...fetches]) : await session.run(ortFeeds);
      const out: Record<string, HostTensor> = {};
      for (const [name, t] of Object.entries(result)) out[name] = fromOrt(t);
      return out;
    },
    release: () => session.release(),
  };
}
