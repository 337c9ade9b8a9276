/**
 * The only module that imports onnxruntime-node (lazily, so that the CUDA provider can be
 * attached from a folder of our own first: cudaLibraries.ts). It probes which providers really
 * work here, maps a device choice to the provider it runs on, creates sessions over compiled
 * graphs whose weights stay in the model folder, and converts tensors at the boundary so the
 * rest of the sidecar sees plain typed arrays.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import Module, { createRequire } from "node:module";
import * as path from "node:path";
import type * as Ort from "onnxruntime-node";
import type { DeviceDescription } from "../../shared/lensRecord";
import type { ProviderStatus } from "../../shared/protocol";
import { LensInputError } from "../errors";
import { GraphBuilder, type BuiltGraph } from "../graph/onnxBuilder";
import { BINDING_FILE, findCudaLibraries, makeBindingView, ortErrorDetail, ortPackage, type CudaLibraries, type OrtPackage } from "./cudaLibraries";
import { describeCpu, describeWebgpu, nvidiaGpu } from "./devices";
import { adapterName, isSoftwareAdapter, webgpuAdapter } from "./webgpuAdapter";

export const DEVICES = ["auto", "cpu", "cuda", "webgpu"] as const;
export type Device = (typeof DEVICES)[number];
export type Provider = "cpu" | "cuda" | "webgpu";

export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

export interface HostTensor {
  data: TensorData;
  dims: readonly number[];
  /** For Uint16Array data: float16 (onnxruntime-node's JavaScript has no bfloat16 tensors). */
  type?: "float16";
}

/**
 * A tensor a session left in device memory (SessionOptions.deviceOutputs): it has no host data
 * (onnxruntime-node 1.30 cannot download a WebGPU tensor: getData() aborts the process), so it
 * can only be fed to a later run, and its device memory is freed by dispose().
 */
export interface DeviceTensor {
  readonly location: "gpu-buffer";
  readonly dims: readonly number[];
  /** Whether its device memory has been freed (read from onnxruntime's own tensor). */
  readonly disposed: boolean;
  /** Frees the device memory; idempotent. */
  dispose(): void;
}

/** What a run can be fed: host data, or a device tensor an earlier run left on the device. */
export type FeedTensor = HostTensor | DeviceTensor;

export function isDeviceTensor(t: FeedTensor): t is DeviceTensor {
  return "location" in t && t.location === "gpu-buffer";
}

export interface GraphSession {
  /** The execution provider the session really runs on. */
  readonly provider: Provider;
  /** The device behind it, with the adapter's name and memory where known. */
  readonly device: DeviceDescription;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** The outputs this session leaves in device memory (SessionOptions.deviceOutputs, on a provider that has it); empty elsewhere. */
  readonly deviceOutputs: ReadonlySet<string>;
  /** A run whose every fetched output comes back as host data (none of deviceOutputs may be fetched). */
  run(feeds: Record<string, FeedTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>>;
  /** A run that returns the fetched deviceOutputs apart, as device tensors the caller must dispose. */
  runWithDeviceOutputs(feeds: Record<string, FeedTensor>, fetches?: readonly string[]): Promise<{ host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }>;
  release(): Promise<void>;
}

export function parseDevice(value: string): Device {
  if ((DEVICES as readonly string[]).includes(value)) return value as Device;
  throw new LensInputError(undefined, `unknown device "${value}": choose one of ${DEVICES.join(", ")}`);
}

interface LoadedOrt {
  ort: typeof Ort;
  pkg: OrtPackage;
  cuda: CudaLibraries;
  /** The binding view onnxruntime was loaded through (CUDA libraries from a folder of our own), if any. */
  view?: string;
}
let loaded: LoadedOrt | undefined;

/**
 * onnxruntime-node, loaded on first use. With CUDA libraries in LOGIT_LENS_CUDA_PROVIDER_DIR, its
 * binding is loaded from a binding view (cudaLibraries.ts) under the name onnxruntime-node's own
 * loader asks for: require's cache takes a module registered before the first require (Node's
 * documented require.cache), so onnxruntime-node's JavaScript runs unchanged over it.
 */
function loadOrt(): LoadedOrt {
  if (loaded) return loaded;
  const req = createRequire(__filename);
  const pkg = ortPackage();
  let cuda = findCudaLibraries(pkg);
  let view: string | undefined;
  if (cuda.state === "folder") {
    const key = fs.realpathSync(path.join(pkg.binDir, BINDING_FILE));
    if (req.cache[key] === undefined) {
      view = makeBindingView(cuda.dir, pkg);
      const binding = new Module(key);
      binding.filename = key;
      process.dlopen(binding, path.join(view, BINDING_FILE));
      binding.loaded = true;
      req.cache[key] = binding;
    } else {
      cuda = { state: "invalid", dir: cuda.dir, reason: `onnxruntime-node was loaded before the CUDA provider in ${cuda.dir} could be attached: restart the sidecar` };
    }
  }
  loaded = { ort: req("onnxruntime-node") as typeof Ort, pkg, cuda, view };
  return loaded;
}

/** A one-node graph (y = x + x) that a probe session runs on a provider. */
function probeGraph(): Uint8Array {
  const b = new GraphBuilder("probe");
  const x = b.input("x", "float32", [1, 4]);
  b.output(b.op("Add", [x, x]), "y", "float32", [1, 4]);
  return b.build().bytes;
}

/**
 * The probe runs in a child process: onnxruntime writes the real cause of a provider's failure
 * (the library it could not open, and why) only to the process's native stderr, and a provider
 * that fails badly takes only the child down. The child loads onnxruntime-node the way loadOrt
 * does, through the same kind of binding view.
 */
const PROBE_SCRIPT = `
const [ortDir, binding, view, graph, provider] = JSON.parse(process.argv[1]);
if (view) {
  const Module = require("module");
  const m = new Module(binding); m.filename = binding;
  process.dlopen(m, require("path").join(view, "onnxruntime_binding.node"));
  m.loaded = true; require.cache[binding] = m;
}
const ort = require(ortDir);
const say = (r) => process.stdout.write(JSON.stringify(r));
ort.InferenceSession.create(Buffer.from(graph, "base64"), { executionProviders: [provider] })
  .then((s) => s.run({ x: new ort.Tensor("float32", new Float32Array([1, 2, 3, 4]), [1, 4]) }))
  .then((r) => say(r.y.data[3] === 8 ? { ok: true } : { ok: false, message: "the probe graph computed " + Array.from(r.y.data) + " instead of 2,4,6,8" }))
  .catch((e) => say({ ok: false, message: String((e && e.message) || e) }));
`;

export const PROBE_TIMEOUT_MS = 60_000;

/** Runs the probe graph on `provider` in a child process; the failure is one line with onnxruntime's own cause. */
async function probeProvider(provider: Provider, view?: string): Promise<{ ok: true } | { ok: false; message: string }> {
  const { pkg } = loadOrt();
  const args = JSON.stringify([pkg.dir, fs.realpathSync(path.join(pkg.binDir, BINDING_FILE)), view ?? null, Buffer.from(probeGraph()).toString("base64"), provider]);
  return new Promise((resolve) => {
    execFile(process.execPath, ["-e", PROBE_SCRIPT, args], { timeout: PROBE_TIMEOUT_MS, env: { ...process.env, ELECTRON_RUN_AS_NODE: "1" }, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      let result: { ok: boolean; message?: string } | undefined;
      try {
        result = JSON.parse(stdout) as { ok: boolean; message?: string };
      } catch {
        // no answer: the child died or timed out (below)
      }
      if (result?.ok) return resolve({ ok: true });
      const detail = ortErrorDetail(stderr);
      const said = result?.message === undefined ? undefined : withoutSourceLocation(result.message.split("\n")[0]);
      const died = error ? (error.killed ? `the probe did not finish within ${PROBE_TIMEOUT_MS / 1000} s` : `the probe process failed (${error.message.split("\n")[0]})`) : "the probe gave no answer";
      resolve({ ok: false, message: [said, detail].filter(Boolean).join(": ") || died });
    });
  });
}

/**
 * onnxruntime's enforce messages start with its source file and the failed condition
 * ("/onnxruntime_src/…/webgpu_context.cc:136 …<lambda()> adapter_result.status == … was false.
 * Failed to get a WebGPU adapter: No supported adapters"): keep what it says after them.
 */
export function withoutSourceLocation(message: string): string {
  const m = /^\/onnxruntime_src\/\S+:\d+ .*? was false\. (.+)$/.exec(message);
  return m ? m[1] : message;
}

let cudaStatus: Promise<ProviderStatus> | undefined;
let webgpuStatus: Promise<ProviderStatus> | undefined;

/** Whether the CUDA provider really works here: its libraries found, loaded, and a session run on them (once per process). */
export function probeCuda(): Promise<ProviderStatus> {
  cudaStatus ??= (async (): Promise<ProviderStatus> => {
    const { cuda, view } = loadOrt();
    if (cuda.state === "missing" || cuda.state === "invalid") return { name: "cuda", works: false, detail: cuda.reason };
    const probe = await probeProvider("cuda", view);
    // the binding view is a temporary folder of links: name the folder the user knows
    const said = probe.ok ? "" : view ? probe.message.split(view).join(cuda.dir) : probe.message;
    if (!probe.ok) return { name: "cuda", works: false, detail: `the CUDA provider in ${cuda.dir} does not work here: ${said}` };
    const gpu = await nvidiaGpu();
    const device: DeviceDescription = { provider: "cuda", ...gpu, ...(gpu ? {} : { note: "nvidia-smi did not name the GPU" }) };
    return { name: "cuda", works: true, detail: `${gpu?.name ?? "a CUDA GPU"} (libraries in ${cuda.dir})`, device };
  })();
  return cudaStatus;
}

/** Whether a WebGPU session runs here, which needs an adapter (any: a software one counts). */
export function probeWebgpu(): Promise<ProviderStatus> {
  webgpuStatus ??= (async (): Promise<ProviderStatus> => {
    const probe = await probeProvider("webgpu", loadOrt().view);
    if (!probe.ok) return { name: "webgpu", works: false, detail: `no WebGPU adapter here: ${probe.message}` };
    const device = await webgpuDevice();
    return { name: "webgpu", works: true, detail: [device.name, device.note].filter(Boolean).join(": ") || "works", device };
  })();
  return webgpuStatus;
}

/** Every provider with whether it really works on this machine (for lens/initialize and the runtime info). */
export async function providerStatuses(): Promise<ProviderStatus[]> {
  const cpu: ProviderStatus = { name: "cpu", works: true, detail: "always available", device: describeCpu() };
  return [cpu, ...(await Promise.all([probeCuda(), probeWebgpu()]))];
}

/** The WebGPU device as Dawn names it, with an NVIDIA adapter's memory from nvidia-smi. */
async function webgpuDevice(): Promise<DeviceDescription> {
  const answer = await webgpuAdapter();
  const nvidia = "adapter" in answer && /nvidia/i.test(answer.adapter.vendor) ? await nvidiaGpu() : undefined;
  return describeWebgpu(answer, process.env, nvidia?.memoryBytes);
}

/** Why device auto took what it took, once it has decided. */
let autoNote: string | undefined;

/**
 * The provider a device choice runs on. auto: CUDA when its libraries load and a session runs
 * on them, else WebGPU when Dawn offers a hardware adapter and a session runs on it, else the
 * CPU; never a software adapter (SwiftShader, llvmpipe: slower than the CPU provider). cuda
 * without working libraries is refused with how to get them.
 */
export async function resolveDevice(device: Device): Promise<Provider> {
  // the note belongs to the model being opened (opens are serial): an explicit cpu carries none
  if (device !== "auto") autoNote = undefined;
  return providerFor(device);
}

/** resolveDevice for one session: the model's resolution (and auto's note) stands. */
async function providerFor(device: Device): Promise<Provider> {
  switch (device) {
    case "cpu":
    case "webgpu":
      return device;
    case "cuda": {
      const status = await probeCuda();
      if (!status.works) throw new LensInputError(undefined, `device cuda cannot run: ${status.detail}; or choose device auto or cpu`);
      return "cuda";
    }
    case "auto": {
      const cuda = await probeCuda();
      if (cuda.works) {
        autoNote = undefined;
        return (resolvedAuto = "cuda");
      }
      const noCuda = cuda.detail.split(":")[0];
      const answer = await webgpuAdapter();
      let noWebgpu: string;
      if ("none" in answer) noWebgpu = `no WebGPU adapter (${answer.none})`;
      else if (isSoftwareAdapter(answer.adapter)) noWebgpu = `the WebGPU adapter, ${adapterName(answer.adapter)}, is a software one`;
      else {
        const webgpu = await probeWebgpu();
        if (webgpu.works) {
          autoNote = `device auto took WebGPU on ${adapterName(answer.adapter)}: ${noCuda}`;
          return (resolvedAuto = "webgpu");
        }
        noWebgpu = `WebGPU on ${adapterName(answer.adapter)} does not run (${webgpu.detail})`;
      }
      autoNote = `device auto took the CPU: ${noCuda}; ${noWebgpu}`;
      return (resolvedAuto = "cpu");
    }
  }
}
let resolvedAuto: Provider | undefined;

/** The provider graphs for `device` are built for (auto: what resolveDevice last decided, else the CPU). */
export function intendedProvider(device: Device): Provider {
  return device === "auto" ? (resolvedAuto ?? "cpu") : device;
}

async function describeDevice(provider: Provider): Promise<DeviceDescription> {
  switch (provider) {
    case "cpu":
      return { ...describeCpu(), ...(autoNote ? { note: autoNote } : {}) };
    case "webgpu": {
      const device = await webgpuDevice();
      return resolvedAuto === "webgpu" && autoNote ? { ...device, note: [autoNote, device.note].filter(Boolean).join("; ") } : device;
    }
    case "cuda":
      return (await probeCuda()).device ?? { provider: "cuda" };
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
  /**
   * Outputs to leave in device memory where the provider has device tensors that can be fed
   * back (WebGPU: onnxruntime's preferredOutputLocation 'gpu-buffer'); every other output, and
   * every output on other providers (the CPU; CUDA, whose Node binding has no device buffers),
   * comes back as host data.
   */
  deviceOutputs?: readonly string[];
}

/**
 * onnxruntime's graph optimisation level for a graph on a provider. Our graphs are built fused
 * (QuickGelu, FusedMatMul, SimplifiedLayerNormalization), and on the CPU the "all" level found
 * nothing more that made a run measurably faster, while it took a third of session creation
 * (27 of 87 ms for the bench model's three sessions). So on the CPU a graph is only
 * constant-folded, and only when it has something to fold; other providers keep every
 * optimisation, since their fusions differ.
 */
function optimizationLevel(graph: BuiltGraph, provider: Provider, foldConstants: boolean): "disabled" | "basic" | "all" {
  if (provider !== "cpu") return "all";
  return graph.foldsConstants && foldConstants ? "basic" : "disabled";
}

/**
 * Set (to anything but "" or "0"), every session logs verbosely to the process's native stderr
 * under its graph's name, node placement included ("Node(s) placed on [CPUExecutionProvider]").
 * A hidden switch for test/helpers/webgpuPlacement.ts, which reads that log from a child process.
 */
export const VERBOSE_LOG_ENV = "LOGIT_LENS_ORT_VERBOSE";

/**
 * Set to a folder, every session writes onnxruntime's profile (each node's kernel time and
 * shapes, per run) there as `<graph>_<time>.json` when it is released: how the bench figures'
 * stages were broken down into operators. A hidden switch for development, like the one above.
 */
export const PROFILE_ENV = "LOGIT_LENS_ORT_PROFILE";

function verboseLog(): boolean {
  const v = process.env[VERBOSE_LOG_ENV];
  return v !== undefined && v !== "" && v !== "0";
}

export async function openGraphSession(graph: BuiltGraph, opts: SessionOptions): Promise<GraphSession> {
  const provider = await providerFor(opts.device);
  const { ort } = loadOrt();
  const deviceOutputs = new Set(provider === "webgpu" ? (opts.deviceOutputs ?? []) : []);
  const profileFolder = process.env[PROFILE_ENV] || undefined;
  try {
    const session = await ort.InferenceSession.create(graph.bytes, {
      executionProviders: [provider === "webgpu" && graph.cpuNodes.length > 0 ? { name: "webgpu", forceCpuNodeNames: graph.cpuNodes } : provider],
      logId: graph.name,
      ...(verboseLog() ? { logSeverityLevel: 0 as const, logVerbosityLevel: 0 } : {}),
      ...(profileFolder ? { enableProfiling: true, profileFilePrefix: path.join(profileFolder, graph.name) } : {}),
      graphOptimizationLevel: optimizationLevel(graph, provider, opts.foldConstants ?? true),
      intraOpNumThreads: opts.threads ?? 0,
      enableCpuMemArena: opts.memoryArena ?? true,
      ...(deviceOutputs.size > 0 ? { preferredOutputLocation: Object.fromEntries([...deviceOutputs].map((n) => [n, "gpu-buffer" as const])) } : {}),
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
    return wrap(ort, session, provider, await describeDevice(provider), deviceOutputs, profileFolder !== undefined);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (provider === "webgpu") {
      throw new LensInputError(undefined, `the webgpu execution provider failed to start (${firstLine(message)}): choose auto or cpu`);
    }
    throw new Error(`onnxruntime could not create a session on ${provider}: ${message}`);
  }
}

function firstLine(s: string): string {
  return s.split("\n")[0].slice(0, 300);
}

function toOrt(ort: typeof Ort, t: FeedTensor): Ort.Tensor {
  if (isDeviceTensor(t)) {
    if (!(t instanceof OrtDeviceTensor)) throw new Error("a device tensor that onnxruntime did not make was fed to a run");
    if (t.disposed) throw new Error("a disposed device tensor (a released KV cache) was fed to a run: decode from a cache that is still held");
    return t.tensor;
  }
  const dims = [...t.dims];
  if (t.data instanceof Float32Array) return new ort.Tensor("float32", t.data, dims);
  if (t.data instanceof BigInt64Array) return new ort.Tensor("int64", t.data, dims);
  if (t.data instanceof Int32Array) return new ort.Tensor("int32", t.data, dims);
  if (t.data instanceof Uint16Array) return new ort.Tensor(t.type ?? "float16", t.data, dims);
  return new ort.Tensor("bool", t.data, dims);
}

function fromOrt(t: Ort.Tensor): HostTensor {
  if (t.type === "float16") return { data: t.data as Uint16Array, dims: t.dims, type: "float16" };
  return { data: t.data as TensorData, dims: t.dims };
}

let liveDeviceTensors = 0;

/** How many device tensors sessions have made and nobody has disposed yet (a leak check for tests and diagnostics). */
export function deviceTensorCount(): number {
  return liveDeviceTensors;
}

class OrtDeviceTensor implements DeviceTensor {
  readonly location = "gpu-buffer" as const;
  readonly dims: readonly number[];
  private freed = false;
  constructor(readonly tensor: Ort.Tensor) {
    this.dims = tensor.dims;
    liveDeviceTensors++;
  }
  get disposed(): boolean {
    // onnxruntime marks a disposed tensor's location "none"
    return this.freed || this.tensor.location !== "gpu-buffer";
  }
  dispose(): void {
    if (this.freed) return;
    this.freed = true;
    liveDeviceTensors--;
    this.tensor.dispose();
  }
}

function wrap(ort: typeof Ort, session: Ort.InferenceSession, provider: Provider, device: DeviceDescription, deviceOutputs: ReadonlySet<string>, profiling: boolean): GraphSession {
  const runSplit = async (feeds: Record<string, FeedTensor>, fetches?: readonly string[]) => {
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrt(ort, t);
    const result = fetches ? await session.run(ortFeeds, [...fetches]) : await session.run(ortFeeds);
    const host: Record<string, HostTensor> = {};
    const onDevice: Record<string, DeviceTensor> = {};
    // a device output's data is never read (reading it throws; getData() aborts the process)
    for (const [name, t] of Object.entries(result)) {
      if (t.location === "gpu-buffer") onDevice[name] = new OrtDeviceTensor(t);
      else host[name] = fromOrt(t);
    }
    return { host, device: onDevice };
  };
  return {
    provider,
    device,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    deviceOutputs,
    async run(feeds, fetches) {
      const { host, device: onDevice } = await runSplit(feeds, fetches);
      const names = Object.keys(onDevice);
      if (names.length > 0) {
        for (const t of Object.values(onDevice)) t.dispose();
        throw new Error(`outputs ${names.join(", ")} stay on the device: fetch them with runWithDeviceOutputs`);
      }
      return host;
    },
    runWithDeviceOutputs: runSplit,
    release: async () => {
      if (profiling) session.endProfiling();
      await session.release();
    },
  };
}
