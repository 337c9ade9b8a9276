/**
 * The fuzz suite that keeps issue 15 fixed: seeded bad inputs of every kind a careless user, a
 * corrupt download or a hostile file gives the sidecar (safetensors headers, config values, chat
 * templates, images, .lens.json files, JSON-RPC frames and request parameters), each sent to one
 * real sidecar process per category (dist/sidecar.js serve). Every case must end in a clear
 * one-line error or a correct answer, within the per-case limit, without a crash, and the sidecar
 * must answer a valid request afterwards (test/helpers/fuzzHarness.ts has the rules).
 *
 * Vary it with LOGIT_LENS_FUZZ_SEED=<n>, LOGIT_LENS_FUZZ_SCALE=<factor>; rerun single cases with
 * LOGIT_LENS_FUZZ_ONLY=images#3,frames (the failure list prints the line for each).
 * Needs `npm run build` first (npm test does it).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/shared/protocol";
import { FIXTURES } from "../helpers/fixtures";
import {
  type CaseResult,
  caseCount,
  caseSeed,
  type CategorySpec,
  CASE_LIMIT_MS,
  clearError,
  correctAnswer,
  describeReply,
  errorProblem,
  type Expectation,
  failure,
  failureList,
  type FuzzCase,
  FUZZ_SEED,
  judge,
  judgeCli,
  RawSidecar,
  recordProblem,
  type Reply,
  Rng,
  runCategory,
  runCli,
  selected,
  short,
  SIDECAR,
  slowest,
  tallyTable,
  type Verdict,
  waitFor,
} from "../helpers/fuzzHarness";
import {
  baseExperiment,
  EXTRA_FRAME_IDS,
  ID_BASE,
  ID_PLACEHOLDER,
  cliCase,
  configCase,
  experimentCase,
  type FileSpec,
  frameCase,
  imageCase,
  type ImageSources,
  paramsCase,
  safetensorsCase,
  templateCase,
} from "./generators";

const LLAMA = path.join(FIXTURES, "llama-f32/model");
const LLAVA = path.join(FIXTURES, "llava-gqa-f32/model");
const IMAGE = path.join(FIXTURES, "images/square.png");
const IMAGES = path.resolve(__dirname, "../fixtures/images");
const SCENES = path.resolve(__dirname, "../fixtures/scenes");
/** Per category: a whole test's limit, so that a sidecar that hangs on every case still ends. */
const CATEGORY_LIMIT_MS = 600_000;

const results: CaseResult[] = [];
let root: string;

beforeAll(() => {
  if (!fs.existsSync(SIDECAR)) throw new Error(`${SIDECAR} is missing: run npm run build first`);
  root = fs.mkdtempSync(path.join(os.tmpdir(), "lens-fuzz-"));
});

afterAll(() => {
  if (results.length) {
    process.stderr.write(`\nfuzz suite, seed ${FUZZ_SEED} (LOGIT_LENS_FUZZ_SEED), limit ${CASE_LIMIT_MS / 1000} s a case:\n${tallyTable(results)}\nslowest: ${slowest(results)}\n`);
    const failed = failureList(results);
    if (failed) process.stderr.write(`failures:\n${failed}\n`);
  }
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(path.join(os.tmpdir(), "lens-fuzz-outside.results"), { recursive: true, force: true });
});

/** The cases of a category: case i from its own seed, so any one reproduces alone. */
function makeCases<T>(category: string, count: number, make: (rng: Rng, i: number) => T): (FuzzCase & T)[] {
  return Array.from({ length: caseCount(count) }, (_, i) => {
    const seed = caseSeed(category, i);
    const made = make(new Rng(seed), i) as T & { label: string };
    return { ...made, id: `${category}#${i}`, seed, label: made.label };
  });
}

async function runAndRecord<C extends FuzzCase>(spec: CategorySpec<C>): Promise<void> {
  const rs = await runCategory(spec);
  results.push(...rs);
  expect(failureList(rs), `${spec.name}: failing cases`).toBe("");
}

function makeFile(file: string, spec: FileSpec | Buffer): void {
  fs.rmSync(file, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (typeof spec === "string" || Buffer.isBuffer(spec)) fs.writeFileSync(file, spec);
  else if ("fifo" in spec) execFileSync("mkfifo", [file]);
  else if ("folder" in spec) fs.mkdirSync(file);
  else fs.symlinkSync(spec.link, file);
}

/** A copy of a fixture model folder for one case (without the files the case replaces). */
function copyModel(from: string, id: string, skip: string[] = []): string {
  const dir = path.join(root, id.replace("#", "-"));
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(from)) if (!skip.includes(f)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  return dir;
}

const openModel = (sc: RawSidecar, folder: string) => sc.request("lens/openModel", { folder, device: "cpu" });
const textRun = (sc: RawSidecar) => sc.request("lens/run", { prompt: "Hello there", settings: { maxNewTokens: 1, topK: 3 } });
const imageRun = (sc: RawSidecar, image = IMAGE) => sc.request("lens/run", { prompt: "What is it?", image, settings: { maxNewTokens: 1, topK: 3 } });

/**
 * Opens a (broken) model folder; if it opens, a run on it must end well too: with a clear error
 * (a bad template or config may only show when used), or, where the case allows, a valid record.
 */
async function openThenRun(sc: RawSidecar, dir: string, e: Expectation, withImage: boolean): Promise<Verdict> {
  const logsBefore = sc.logs.length;
  const opened = await openModel(sc, dir);
  if (opened.kind !== "result") return judge(opened, e);
  const run = await (withImage ? imageRun(sc) : textRun(sc));
  // A warning logged on the way covers values that are not finite (NaN weights).
  const warned = sc.logs.slice(logsBefore).some((l) => l.level === "warn" || l.level === "error");
  const v = judge(run, { ...e, check: (r) => (warned ? undefined : recordProblem(r)) });
  return v.outcome === "failure" && run.kind === "result" ? failure(`opened, then the run ${v.detail}`) : v;
}

const expectAnswer = async (p: Promise<Parameters<typeof judge>[0]>, check?: (r: unknown) => string | undefined): Promise<Verdict> => judge(await p, { expect: "answer", check });

const startWithModel = (folder: string) => async () => {
  const sc = await RawSidecar.start();
  const r = await openModel(sc, folder);
  if (r.kind !== "result") throw new Error(`cannot open ${folder}: ${describeReply(r)}`);
  return sc;
};

describe("fuzz", () => {
  it("safetensors headers", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const original = fs.readFileSync(path.join(LLAMA, "model.safetensors"));
    const cases = makeCases("safetensors", 57, (rng, i) => safetensorsCase(rng, i, original));
    await runAndRecord({
      name: "safetensors",
      cases,
      start: () => RawSidecar.start(),
      run: async (sc, c) => {
        const dir = copyModel(LLAMA, c.id, ["model.safetensors"]);
        const weights = path.join(dir, "model.safetensors");
        if (c.index) {
          makeFile(path.join(dir, c.index.shard), c.bytes!);
          makeFile(path.join(dir, "model.safetensors.index.json"), c.index.text);
        } else if (c.special) {
          const spec: Record<string, FileSpec> = { fifo: { fifo: true }, folder: { folder: true }, devzero: { link: "/dev/zero" }, loop: { link: weights }, dangling: { link: path.join(dir, "gone") } };
          makeFile(weights, spec[c.special]);
        } else makeFile(weights, c.bytes!);
        return openThenRun(sc, dir, { expect: c.expect, names: [dir] }, false);
      },
      probe: (sc) => expectAnswer(openModel(sc, LLAMA)),
    });
  });

  it("config values", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const read = (model: string, file: string) => fs.readFileSync(path.join(FIXTURES, model, "model", file), "utf8");
    const cases = makeCases("config", 48, (rng, i) => configCase(rng, i, read));
    await runAndRecord({
      name: "config",
      cases,
      start: () => RawSidecar.start(),
      run: async (sc, c) => {
        const from = path.join(FIXTURES, c.model, "model");
        const dir = copyModel(from, c.id, Object.keys(c.files));
        for (const [f, spec] of Object.entries(c.files)) makeFile(path.join(dir, f), spec);
        return openThenRun(sc, dir, { expect: c.expect, names: [dir] }, c.model === "llava-gqa-f32");
      },
      probe: (sc) => expectAnswer(openModel(sc, LLAVA)),
    });
  });

  it("chat templates", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const cases = makeCases("templates", 26, templateCase);
    await runAndRecord({
      name: "templates",
      cases,
      start: () => RawSidecar.start(),
      run: async (sc, c) => {
        const dir = copyModel(LLAVA, c.id, c.json !== undefined ? ["chat_template.json"] : []);
        if (c.json !== undefined) makeFile(path.join(dir, "chat_template.json"), c.json);
        else makeFile(path.join(dir, "chat_template.jinja"), c.jinja!);
        return openThenRun(sc, dir, { expect: c.expect, names: [dir] }, true);
      },
      probe: (sc) => expectAnswer(openModel(sc, LLAVA)),
    });
  });

  it("images", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const src: ImageSources = {
      png: fs.readFileSync(path.join(IMAGES, "photo-120x80.png")),
      jpg: fs.readFileSync(path.join(IMAGES, "photo-444.jpg")),
      webp: fs.readFileSync(path.join(IMAGES, "photo-lossy.webp")),
      gif: fs.readFileSync(path.join(IMAGES, "palette-trns-23x19.gif")),
      bmp: fs.readFileSync(path.resolve(__dirname, "../fixtures/bmp/palette8-11x6.bmp")),
    };
    const cases = makeCases("images", 44, (rng, i) => imageCase(rng, i, src));
    await runAndRecord({
      name: "images",
      cases,
      start: startWithModel(LLAVA),
      run: async (sc, c) => {
        const dir = path.join(root, c.id.replace("#", "-"));
        fs.mkdirSync(dir, { recursive: true });
        let image = path.join(dir, `image.${c.ext ?? "png"}`);
        let names: string[] | undefined = [image];
        if (c.make) makeFile(image, await sharp({ create: { width: c.make.width, height: c.make.height, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer());
        else if (c.bytes) makeFile(image, c.bytes);
        else {
          const special: Record<string, () => void> = {
            fifo: () => makeFile(image, { fifo: true }),
            folder: () => makeFile(image, { folder: true }),
            devzero: () => (image = "/dev/zero"),
            devnull: () => (image = "/dev/null"),
            urandom: () => (image = "/dev/urandom"),
            missing: () => undefined,
            "empty-path": () => ((image = ""), (names = undefined)),
            "nul-in-path": () => ((image = `${dir}/a\u0000b.png`), (names = [dir])),
            relative: () => (image = "no-such-relative-image.png"),
            dangling: () => makeFile(image, { link: path.join(dir, "gone.png") }),
            loop: () => makeFile(image, { link: image }),
            "link-to-folder": () => makeFile(image, { link: dir }),
            "sparse-huge": () => {
              fs.writeFileSync(image, src.png);
              fs.truncateSync(image, 300 * 1024 * 1024);
            },
          };
          special[c.special!]();
          if (names && names[0] !== image && image !== "") names = [image];
        }
        const r = await sc.request("lens/run", { prompt: "What is it?", image, settings: { maxNewTokens: 0, topK: 3 } });
        return judge(r, { expect: c.expect, names, check: (v) => recordProblem(v) ?? ((v as { input: { image: unknown } }).input.image ? undefined : "the record has no image") });
      },
      probe: (sc) => expectAnswer(imageRun(sc), recordProblem),
    });
  });

  it(".lens.json experiments", { timeout: CATEGORY_LIMIT_MS }, async () => {
    /** A folder with two images, a JSONL manifest and a CSV one, and the base experiment file. */
    const experimentFolder = (name: string) => {
      const dir = path.join(root, name);
      fs.mkdirSync(path.join(dir, "images"), { recursive: true });
      fs.copyFileSync(path.join(SCENES, "0000-color-main.png"), path.join(dir, "images/a.png"));
      fs.copyFileSync(path.join(SCENES, "0001-shape-main.png"), path.join(dir, "images/b.png"));
      fs.writeFileSync(path.join(dir, "rows.jsonl"), '{"image":"images/a.png","question":"Color?","answer":"red","set":"m"}\n{"image":"images/b.png","question":"Shape?","answer":"blue","set":"m"}\n');
      fs.writeFileSync(path.join(dir, "rows.csv"), "image,question,answer,set\nimages/a.png,Color?,red,c\n");
      const file = path.join(dir, "fuzz.lens.json");
      fs.writeFileSync(file, JSON.stringify(baseExperiment({ model: LLAVA, dir })));
      return { dir, file };
    };
    const probe = experimentFolder("experiment-probe");
    const probeText = JSON.stringify(baseExperiment({ model: LLAVA, dir: probe.dir }));
    const cases = makeCases("experiments", 45, (rng, i) => experimentCase(rng, i, { model: LLAVA, dir: path.join(root, `experiments-${i}`) }));
    await runAndRecord({
      name: "experiments",
      cases,
      start: startWithModel(LLAVA),
      run: async (sc, c) => {
        const { dir, file } = experimentFolder(c.id.replace("#", "-"));
        for (const [f, spec] of Object.entries(c.write ?? {})) makeFile(path.join(dir, f), spec);
        const names = c.file !== undefined || c.item !== undefined ? undefined : [dir, "/no/such"];
        if (c.sweep) {
          fs.writeFileSync(file, c.text!);
          const r = await sc.request("lens/runExperiment", { file });
          return judge(r, { expect: c.expect, names, check: (v) => (typeof (v as { total?: unknown }).total === "number" ? undefined : "no total in the summary") });
        }
        const params: Record<string, unknown> = { file: c.file ?? file };
        if (c.text !== undefined && c.file === undefined) params["text"] = c.text;
        if (c.item !== undefined) params["item"] = c.item;
        const r = await sc.request("lens/previewExperiment", params);
        return judge(r, { expect: c.expect, names, check: (v) => recordProblem((v as { record: unknown }).record) });
      },
      probe: (sc) => expectAnswer(sc.request("lens/previewExperiment", { file: probe.file, text: probeText }), (v) => recordProblem((v as { record: unknown }).record)),
    });
  });

  it("JSON-RPC frames", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const cases = makeCases("frames", 57, frameCase);
    await runAndRecord({
      name: "frames",
      cases,
      start: () => RawSidecar.start(),
      mayExit: (c) => (c.expect === "answer" ? undefined : "with a reason"),
      run: async (sc, c) => {
        // Six digits, as long as the "{{ID}}" they replace, so that the Content-Length stays right.
        const id = ID_BASE + sc.reserveId();
        const bytes = Buffer.from(c.bytes.toString("latin1").split(ID_PLACEHOLDER).join(String(id)), "latin1");
        const orphansBefore = sc.orphans.length;
        const write = () => {
          if (!c.slow) return sc.writeRaw(bytes);
          void (async () => {
            for (const b of bytes) {
              sc.writeRaw(Buffer.from([b]));
              await new Promise((r) => setTimeout(r, 1));
            }
          })();
        };
        // Replies without our id (a parse error answers with id null) count as the reply too.
        const orphaned = () => sc.orphans.length > orphansBefore || !sc.alive;
        let reply: Reply | undefined;
        if (c.hasId) {
          const answered = sc.awaitReply(id, CASE_LIMIT_MS, write).then((r) => (reply = r));
          await Promise.race([answered, waitFor(orphaned, CASE_LIMIT_MS).then((hit) => hit && waitFor(() => reply !== undefined, 300))]);
        } else {
          write();
          // A reply to a bad frame comes at once; no reply in 5 s is no reply.
          await waitFor(orphaned, c.expect === "reply" ? 5000 : 500);
        }
        const orphans = sc.orphans.slice(orphansBefore);
        for (const o of orphans) {
          if (typeof o.id === "number" && o.id >= EXTRA_FRAME_IDS) continue; // the answers to a case's extra valid frames
          if (o.id === id && !o.error) return correctAnswer("read leniently and answered"); // e.g. LF-only headers
          if (!o.error) return failure(`an answer to nothing: ${short(JSON.stringify(o), 160)}`);
          const problem = errorProblem({ kind: "error", code: o.error.code, message: String(o.error.message), ms: 0 });
          if (problem) return failure(`reply with id ${JSON.stringify(o.id)}: ${problem}`);
        }
        if (c.expect === "answer") return judge(reply ?? { kind: "timeout", ms: CASE_LIMIT_MS }, { expect: "answer" });
        if (reply && reply.kind !== "timeout" && reply.kind !== "exit") {
          if (reply.kind === "result") return failure(`an invalid message was answered as valid: ${describeReply(reply)}`);
          return judge(reply, { expect: "error" });
        }
        if (orphans.length) return clearError(`error reply ${orphans[0].error!.code} "${short(orphans[0].error!.message, 120)}"`);
        if (!sc.alive) return clearError("exited");
        if (c.expect === "reply") return failure("no error reply to an invalid message (JSON-RPC requires one)");
        return correctAnswer("ignored, kept serving");
      },
      // A frame that claims more bytes than it has may swallow the next request; a second one must then get through.
      probe: async (sc) => {
        const first = await sc.request("lens/initialize", { protocolVersion: 2, clientName: "fuzz" }, 2000);
        const r = first.kind === "timeout" ? await sc.request("lens/initialize", { protocolVersion: 2, clientName: "fuzz" }, 8000) : first;
        return judge(r, { expect: "answer" });
      },
    });
  });

  it("command line", { timeout: CATEGORY_LIMIT_MS }, async () => {
    // No sidecar here: each case is one CLI process, which must exit by 0, 1 or 2 with one error line.
    const cases = makeCases("cli", 14, (rng, i) => cliCase(rng, i, { model: LLAVA, image: IMAGE, dir: path.join(root, `cli-${i}`) }));
    const rs: CaseResult[] = [];
    for (const c of cases.filter((c) => selected("cli", Number(c.id.split("#")[1])))) {
      const dir = path.join(root, c.id.replace("#", "-"));
      fs.mkdirSync(dir, { recursive: true });
      for (const [f, spec] of Object.entries(c.write ?? {})) makeFile(path.join(dir, f), spec);
      const r = await runCli(c.args);
      rs.push({ ...c, category: "cli", ...judgeCli(r, c.expect), ms: r.ms });
    }
    results.push(...rs);
    expect(failureList(rs), "cli: failing cases").toBe("");
  });

  it("request parameters", { timeout: CATEGORY_LIMIT_MS }, async () => {
    const dir = path.join(root, "params");
    fs.mkdirSync(dir, { recursive: true });
    const experiment = path.join(dir, "p.lens.json");
    fs.writeFileSync(experiment, JSON.stringify({ model: LLAVA, inputs: [IMAGE], prompts: ["What is it?"], generation: { maxNewTokens: 1 } }));
    const cases = makeCases("params", 60, (rng, i) => paramsCase(rng, i, { model: LLAVA, image: IMAGE, experiment }));
    const check = (method: string) => (v: unknown) => (method === "lens/run" ? recordProblem(v) : method === "lens/previewExperiment" ? recordProblem((v as { record: unknown }).record) : undefined);
    await runAndRecord({
      name: "params",
      cases,
      start: async () => {
        const sc = await startWithModel(LLAVA)();
        const r = await imageRun(sc);
        if (r.kind !== "result") throw new Error(`the first run failed: ${describeReply(r)}`);
        return sc;
      },
      run: async (sc, c) => {
        if (!c.beforeInitialize) return judge(await sc.request(c.method, c.params), { expect: c.expect, check: check(c.method) });
        const fresh = await RawSidecar.start(false);
        try {
          const r = await fresh.request(c.method, c.params);
          const v = judge(r, { expect: "error" });
          if (v.outcome === "error" && r.kind === "error" && r.code !== ErrorCode.NOT_INITIALIZED) return failure(`answered ${r.code}, not NOT_INITIALIZED (${ErrorCode.NOT_INITIALIZED}): ${short(r.message)}`);
          if (await fresh.waitExit(200)) return failure(`${v.detail}; the sidecar then exited (code ${fresh.exitInfo!.code})`);
          return v;
        } finally {
          await fresh.stop();
        }
      },
      probe: (sc) => expectAnswer(imageRun(sc), recordProblem),
    });
  });
});
