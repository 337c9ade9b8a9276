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

  /** Declares `value` as a graph output called `name` (an Identity is inserted when they differ). */
  output(value: string, name: string, type: ElemType, dims: Dim[]): string {
    if (value !== name) {
      if (this.usedNames.has(name)) throw new Error(`graph ${this.name}: output name ${name} is already a value name; rename the node hint`);
      this.usedNames.add(name);
      this.nodes.push({ opType: "Identity", input: [value], output: [name], name: `${name}/identity` });
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
    return name;
  }

  opMulti(opType: string, inputs: string[], nOutputs: number, attrs: Record<string, AttrValue> = {}, hint?: string): string[] {
    const outputs = Array.from({ length: nOutputs }, (_, i) => this.fresh(`${hint ?? opType}${nOutputs > 1 ? `_${i}` : ""}`));
    this.nodes.push({
      opType,
      input: inputs,
      output: outputs,
      name: outputs[0],
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
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
   * the enclosing graph, and returns its outputs, which get names of their own (a subgraph may
   * return an outer value as is).
   */
  private subgraph(name: string, inputs: { name: string; type: ElemType }[], types: ElemType[], build: () => string[]): onnx.IGraphProto {
    const outer = this.nodes;
    this.nodes = [];
    try {
      const values = this.scoped(name, build);
      if (values.length !== types.length) throw new Error(`graph ${this.name}: subgraph ${name} returns ${values.length} values, expected ${types.length}`);
      const info = (n: string, type: ElemType) => ({ name: n, type: { tensorType: { elemType: ELEM_TYPE_CODE[type] } } });
      const outputs = values.map((v, i) => {
        const out = this.fresh(`${name}_out${i}`);
        this.nodes.push({ opType: "Identity", input: [v], output: [out], name: out });
        return info(out, types[i]);
      });
      return { name, node: this.nodes, input: inputs.map((x) => info(x.name, x.type)), output: outputs };
    } finally {
      this.nodes = outer;
    }
  }

  toModelBytes(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "logit-lens",
      opsetImport: [{ domain: "", version: OPSET }],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  get nodeCount(): number {
    return this.nodes.length;
  }
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
