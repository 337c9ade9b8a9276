/**
 * A small ONNX graph builder over onnx-proto. Architecture modules describe the forward pass
 * with `op()` calls on value names; this file alone knows protobuf field numbers and enums.
 *
 * Weights are never embedded: `externalWeight()` makes an initializer whose bytes stay inside
 * the model's .safetensors file (ONNX external data: location + offset + length), and the
 * session resolves those locations against the model folder.
 */
import { onnx } from "onnx-proto";

export type ElemType = "float32" | "float16" | "bfloat16" | "float64" | "int64" | "int32" | "int8" | "uint8" | "bool";

const ELEM_TYPE_CODE: Record<ElemType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};

export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

/** ONNX opset of the default domain that every graph is built against. */
export const OPSET = 17;

/** onnxruntime's contributed operators (QuickGelu, FusedMatMul, GroupQueryAttention, ...); which providers have kernels for which types varies (see GraphCtx.provider). */
const MS_DOMAIN = "com.microsoft";

/** A serialised graph and what its session needs to know about it. */
export interface BuiltGraph {
  /** The builder's name (decoder, vision, lens, ...): onnxruntime's log id for its session. */
  name: string;
  bytes: Uint8Array;
  /**
   * Whether some node computes only from initializers and constants (a cast of F16/BF16
   * weights, say), so onnxruntime's constant folding pays for itself at load. Graphs without
   * such work open with graph optimisation off: it cost a third of session creation and
   * changed nothing else, since the graphs are built already fused.
   */
  foldsConstants: boolean;
  /**
   * Nodes to run on the CPU even when a GPU provider has kernels for them (see
   * GraphBuilder.onCpu): onnxruntime's WebGPU provider takes them as forceCpuNodeNames.
   */
  cpuNodes: readonly string[];
  /**
   * Half-precision weights the graph takes as float32 inputs (GraphBuilder.fedWeight): the
   * engine widens each once at open and feeds the same array to every run, so that no Cast is
   * left for onnxruntime to fold at session creation (25-40x the time to read the weights).
   */
  fedWeights: readonly FedWeight[];
}

/** A graph input that carries a checkpoint tensor, widened to float32, with the dims the graph declares. */
export interface FedWeight {
  input: string;
  tensor: string;
  dims: readonly number[];
}

export class GraphBuilder {
  private nodes: onnx.INodeProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly constCache = new Map<string, string>();
  private readonly usedNames = new Set<string>();
  private readonly externalNames = new Map<string, string>();
  private scopeStack: string[] = [];
  private counter = 0;
  private usesContribOps = false;
  private readonly outputAliases: { value: string; name: string }[] = [];
  private cpuDepth = 0;
  private readonly cpuNodes: string[] = [];
  private readonly fedWeights = new Map<string, FedWeight>();

  constructor(readonly name: string) {}

  /** Runs `fn` with node and value names prefixed by `scope/`, for readable graphs and profiles. */
  scoped<T>(scope: string, fn: () => T): T {
    this.scopeStack.push(scope);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  /**
   * Runs `fn` with every node it adds marked to run on the CPU under a GPU provider. For small
   * tables computed from positions once per run, before the layers: the rotary cos/sin, whose
   * WGSL builtins are accurate to 2^-11 only (inside [-pi, pi]; rotary angles reach thousands of
   * radians), where transformers computes them in float32.
   */
  onCpu<T>(fn: () => T): T {
    this.cpuDepth++;
    try {
      return fn();
    } finally {
      this.cpuDepth--;
    }
  }

  /**
   * Where nodes go now: the graph (0 for the top level, another number for each subgraph being
   * built) and the scopes `scoped` has entered, "0:layers.3" inside a decoder layer. Values made
   * under one scopePath can be read by every later node under it.
   */
  get scopePath(): string {
    return `${this.graphId}:${this.scopeStack.join("/")}`;
  }

  private graphId = 0;
  private graphCount = 0;

  /** Runs `build` with nodes going to `nodes` (a subgraph's), under a graph id of its own. */
  private inGraph<T>(nodes: onnx.INodeProto[], build: () => T): T {
    const [outerNodes, outerId] = [this.nodes, this.graphId];
    this.nodes = nodes;
    this.graphId = ++this.graphCount;
    try {
      return build();
    } finally {
      this.nodes = outerNodes;
      this.graphId = outerId;
    }
  }

  private fresh(hint: string): string {
    const base = [...this.scopeStack, hint].join("/");
    let name = base;
    while (this.usedNames.has(name)) name = `${base}_${++this.counter}`;
    this.usedNames.add(name);
    return name;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.usedNames.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Declares `value` as a graph output called `name`. At build the node that makes `value` is
   * renamed to produce `name` directly; an Identity (a copy on every run) is left only where
   * that cannot be done: `value` is an input, an initializer or another output.
   */
  output(value: string, name: string, type: ElemType, dims: Dim[]): string {
    if (value !== name) {
      if (this.usedNames.has(name)) throw new Error(`graph ${this.name}: output name ${name} is already a value name; rename the node hint`);
      this.usedNames.add(name);
      this.outputAliases.push({ value, name });
    }
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * An initializer whose bytes live in another file, resolved relative to the folder the
   * session is told about. Safetensors offsets need no alignment for onnxruntime.
   */
  externalWeight(name: string, type: ElemType, dims: number[], location: string, offset: number, length: number): string {
    const existing = this.externalNames.get(name);
    if (existing) return existing;
    this.usedNames.add(name);
    this.initializers.push({
      name,
      dims,
      dataType: ELEM_TYPE_CODE[type],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: location },
        { key: "offset", value: String(offset) },
        { key: "length", value: String(length) },
      ],
    });
    this.externalNames.set(name, name);
    return name;
  }

  /**
   * A float32 graph input that the session's runs are always fed the checkpoint tensor
   * `tensor` through (see BuiltGraph.fedWeights). `input` names it; the same input twice is one.
   */
  fedWeight(input: string, tensor: string, dims: readonly number[]): string {
    if (this.fedWeights.has(input)) return input;
    this.input(input, "float32", [...dims]);
    this.fedWeights.set(input, { input, tensor, dims: [...dims] });
    return input;
  }

  /** A small inline constant; identical constants are shared. */
  constant(type: "float32" | "int64" | "int32", values: ArrayLike<number>, dims: number[] = [values.length]): string {
    const bytes =
      type === "float32"
        ? new Uint8Array(Float32Array.from(values).buffer)
        : type === "int32"
          ? new Uint8Array(Int32Array.from(values).buffer)
          : new Uint8Array(BigInt64Array.from(Array.from(values, (v) => BigInt(v))).buffer);
    // Keyed by the stored bytes (base64 is native and quick even for a 64x64 matrix).
    const key = `${type}|${dims.join(",")}|${Buffer.from(bytes).toString("base64")}`;
    const cached = this.constCache.get(key);
    if (cached) return cached;
    const name = this.fresh(`const_${type}`);
    this.initializers.push({ name, dims, dataType: ELEM_TYPE_CODE[type], rawData: bytes });
    this.constCache.set(key, name);
    return name;
  }

  f32(...values: number[]): string {
    return this.constant("float32", values, values.length === 1 ? [] : [values.length]);
  }

  i64(...values: number[]): string {
    return this.constant("int64", values, [values.length]);
  }

  i32Scalar(value: number): string {
    return this.constant("int32", [value], []);
  }

  i64Scalar(value: number): string {
    return this.constant("int64", [value], []);
  }

  /** Adds one node and returns its single output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, hint?: string): string {
    return this.opMulti(opType, inputs, 1, attrs, hint)[0];
  }

  /**
   * Adds one node whose output is called exactly `name` (no scope prefix), for a value that is
   * also a graph output: `output()` then needs no Identity, which would copy it (a decode
   * step's KV cache, say).
   */
  opNamed(name: string, opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    if (this.usedNames.has(name)) throw new Error(`graph ${this.name}: value name ${name} is taken`);
    this.usedNames.add(name);
    this.nodes.push({ opType, input: inputs, output: [name], name, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    if (this.cpuDepth > 0) this.cpuNodes.push(name);
    return name;
  }

  opMulti(opType: string, inputs: string[], nOutputs: number, attrs: Record<string, AttrValue> = {}, hint?: string): string[] {
    return this.addNode(opType, undefined, inputs, nOutputs, attrs, hint);
  }

  /**
   * One of onnxruntime's contributed operators (domain com.microsoft), for the fusions its
   * optimiser would otherwise have to find at every session start: QuickGelu for SiLU,
   * FusedMatMul for a scaled product with a transposed operand.
   */
  contribOp(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, hint?: string): string {
    return this.contribOpMulti(opType, inputs, 1, attrs, hint)[0];
  }

  contribOpMulti(opType: string, inputs: string[], nOutputs: number, attrs: Record<string, AttrValue> = {}, hint?: string): string[] {
    this.usesContribOps = true;
    return this.addNode(opType, MS_DOMAIN, inputs, nOutputs, attrs, hint);
  }

  private addNode(opType: string, domain: string | undefined, inputs: string[], nOutputs: number, attrs: Record<string, AttrValue>, hint?: string): string[] {
    const outputs = Array.from({ length: nOutputs }, (_, i) => this.fresh(`${hint ?? opType}${nOutputs > 1 ? `_${i}` : ""}`));
    this.nodes.push({
      opType,
      ...(domain ? { domain } : {}),
      input: inputs,
      output: outputs,
      name: outputs[0],
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    if (this.cpuDepth > 0) this.cpuNodes.push(outputs[0]);
    return outputs;
  }

  /**
   * An If node: `then` and `otherwise` build the two branches (they may use any value of the
   * enclosing graph) and return their outputs, of the same types in the same order. Only the
   * branch taken runs, so a graph can skip work that one kind of call does not need.
   */
  ifElse(cond: string, types: ElemType[], then: () => string[], otherwise: () => string[], hint = "if"): string[] {
    const branch = (label: string, build: () => string[]) => this.subgraph(`${hint}_${label}`, [], types, build);
    const thenGraph = branch("then", then);
    const elseGraph = branch("else", otherwise);
    const outputs = types.map((_, i) => this.fresh(`${hint}_${i}`));
    const T = onnx.AttributeProto.AttributeType;
    this.nodes.push({
      opType: "If",
      input: [cond],
      output: outputs,
      name: outputs[0],
      attribute: [
        { name: "then_branch", type: T.GRAPH, g: thenGraph },
        { name: "else_branch", type: T.GRAPH, g: elseGraph },
      ],
    });
    return outputs;
  }

  /**
   * An If whose two branches compute the same values, grown one value at a time: each `add`
   * builds `make` in both branches and returns the node's new output. Values made together once
   * `cond` exists (blocks.ts whenUsed), one node however many there are: onnxruntime's session
   * creation pays for every If and its two subgraphs.
   */
  growingIf(cond: string, hint = "if"): { add(type: ElemType, make: () => string): string } {
    const T = onnx.AttributeProto.AttributeType;
    const name = this.fresh(hint);
    const branches = ["then", "else"].map((label) => ({ label, graph: { name: `${name}_${label}`, node: [] as onnx.INodeProto[], input: [], output: [] as onnx.IValueInfoProto[] } }));
    const output: string[] = [];
    this.nodes.push({
      opType: "If",
      input: [cond],
      output,
      name,
      attribute: branches.map(({ label, graph }) => ({ name: `${label}_branch`, type: T.GRAPH, g: graph })),
    });
    return {
      add: (type, make) => {
        for (const { label, graph } of branches) {
          this.inGraph(graph.node, () => {
            const before = graph.node.length;
            const value = this.scoped(`${hint}_${label}`, make);
            const producedHere = graph.node.slice(before).some((n) => (n.output ?? []).includes(value));
            graph.output.push(this.subgraphOutput(graph.node, value, producedHere, `${hint}_${label}_out`, type));
          });
        }
        const value = this.fresh(`${hint}_${output.length}`);
        output.push(value);
        return value;
      },
    };
  }

  /**
   * A Scan node over axis 0 of `inputs` (each of the given element type): `body` gets one
   * slice of each (that axis removed) and returns the per-slice outputs, which the node stacks
   * along a new axis 0. onnxruntime hands the body views of the inputs, not copies. The body
   * may read any value of the enclosing graph.
   */
  scan(inputs: { value: string; type: ElemType }[], outputTypes: ElemType[], body: (slices: string[]) => string[], hint = "scan"): string[] {
    const slices = inputs.map(({ type }) => ({ name: this.fresh(`${hint}/slice`), type }));
    const graph = this.subgraph(hint, slices, outputTypes, () => body(slices.map((x) => x.name)));
    const outputs = outputTypes.map((_, i) => this.fresh(`${hint}_${i}`));
    const T = onnx.AttributeProto.AttributeType;
    this.nodes.push({
      opType: "Scan",
      input: inputs.map((x) => x.value),
      output: outputs,
      name: outputs[0],
      attribute: [
        { name: "body", type: T.GRAPH, g: graph },
        { name: "num_scan_inputs", type: T.INT, i: inputs.length },
      ],
    });
    return outputs;
  }

  /**
   * A subgraph (an If branch, a Scan body): `build` adds its nodes, which may read any value of
   * the enclosing graph, and returns its outputs. A value computed inside is its own output; an
   * outer value or a subgraph input returned as is goes through an Identity, which ONNX requires.
   */
  private subgraph(name: string, inputs: { name: string; type: ElemType }[], types: ElemType[], build: () => string[]): onnx.IGraphProto {
    const nodes: onnx.INodeProto[] = [];
    return this.inGraph(nodes, () => {
      const values = this.scoped(name, build);
      if (values.length !== types.length) throw new Error(`graph ${this.name}: subgraph ${name} returns ${values.length} values, expected ${types.length}`);
      const producedHere = new Set(nodes.flatMap((n) => n.output ?? []));
      const returned = new Set<string>();
      const outputs = values.map((v, i) => {
        const own = producedHere.has(v) && !returned.has(v);
        returned.add(v);
        return this.subgraphOutput(nodes, v, own, `${name}_out${i}`, types[i]);
      });
      return { name, node: nodes, input: inputs.map((x) => valueType(x.name, x.type)), output: outputs };
    });
  }

  /**
   * A subgraph's output for `value`: the value itself when the subgraph computed it (`own`),
   * else an Identity of it added to `nodes`, which ONNX requires for an outer value, a subgraph
   * input, or a value returned twice.
   */
  private subgraphOutput(nodes: onnx.INodeProto[], value: string, own: boolean, hint: string, type: ElemType): onnx.IValueInfoProto {
    if (own) return valueType(value, type);
    const out = this.fresh(hint);
    nodes.push({ opType: "Identity", input: [value], output: [out], name: out });
    return valueType(out, type);
  }

  build(): BuiltGraph {
    const nodes = this.finalNodes();
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "logit-lens",
      opsetImport: [{ domain: "", version: OPSET }, ...(this.usesContribOps ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
      graph: {
        name: this.name,
        node: nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    const constants = new Set(this.initializers.map((t) => t.name ?? ""));
    return { name: this.name, bytes: onnx.ModelProto.encode(model).finish(), foldsConstants: foldsConstants(nodes, constants), cpuNodes: [...this.cpuNodes], fedWeights: [...this.fedWeights.values()] };
  }

  /** The nodes with the outputs' renames applied (see `output()`), and the Identities that remain. */
  private finalNodes(): onnx.INodeProto[] {
    const produced = new Set(this.nodes.flatMap((n) => n.output ?? []));
    const declared = new Set(this.outputs.map((o) => o.name ?? ""));
    const renames = new Map<string, string>();
    const copies: { value: string; name: string }[] = [];
    for (const { value, name } of this.outputAliases) {
      if (produced.has(value) && !declared.has(value) && !renames.has(value)) renames.set(value, name);
      else copies.push({ value, name });
    }
    return [
      ...(renames.size ? renameValues(this.nodes, renames) : this.nodes),
      ...copies.map(({ value, name }) => ({ opType: "Identity", input: [renames.get(value) ?? value], output: [name], name: `${name}/identity` })),
    ];
  }

  get nodeCount(): number {
    return this.nodes.length;
  }
}

/** `nodes` with every value in `renames` (inputs, outputs, and reads inside subgraphs) renamed. */
function renameValues(nodes: readonly onnx.INodeProto[], renames: ReadonlyMap<string, string>): onnx.INodeProto[] {
  const r = (x: string) => renames.get(x) ?? x;
  return nodes.map((n) => ({
    ...n,
    input: (n.input ?? []).map(r),
    output: (n.output ?? []).map(r),
    attribute: (n.attribute ?? []).map((a) => (a.g ? { ...a, g: { ...a.g, node: renameValues(a.g.node ?? [], renames), output: (a.g.output ?? []).map((o) => ({ ...o, name: r(o.name ?? "") })) } } : a)),
  }));
}

/**
 * Ops that only copy or broadcast their input: folding one saves no arithmetic, just stores
 * its output (a broadcast can be large), so it does not call for folding on its own.
 */
const ONLY_MATERIALISE: ReadonlySet<string> = new Set(["Identity", "Expand"]);

/**
 * Whether any node, here or in a subgraph, reads only initializers: work that constant folding
 * would do once at load instead of on every run. (The first such node in topological order
 * reads initializers only, so nothing needs propagating.)
 */
function foldsConstants(nodes: readonly onnx.INodeProto[], constants: ReadonlySet<string>): boolean {
  return nodes.some((node) => {
    const subgraphs = (node.attribute ?? []).flatMap((a) => (a.g ? [a.g] : []));
    if (subgraphs.length > 0) return subgraphs.some((g) => foldsConstants(g.node ?? [], constants));
    if (ONLY_MATERIALISE.has(node.opType ?? "")) return false;
    const inputs = (node.input ?? []).filter((x) => x !== "");
    return inputs.length > 0 && inputs.every((x) => constants.has(x));
  });
}

/** A value's name and element type, without a shape (a subgraph's inputs and outputs). */
function valueType(name: string, type: ElemType): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType: ELEM_TYPE_CODE[type] } } };
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE_CODE[type],
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use {float: x} for floats`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === "string") return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ("float" in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}
