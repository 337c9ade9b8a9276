/**
 * A model folder is read only through regular files: a FIFO or a link to /dev/zero in place of
 * config.json or a weight shard must give one line at once, not hold the sidecar (found by the
 * fuzz suite). Also: a chat template that is not text names its file, and an input error built
 * from a huge value stays a readable line.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { LensInputError } from "../../src/sidecar/errors";
import { LoadedModel } from "../../src/sidecar/model/loadedModel";
import { copyFixtureModel, editJson } from "../helpers/tempModel";

const open = (dir: string) => LoadedModel.open(dir, { device: "cpu" });

describe("special files in a model folder", () => {
  it("refuses config.json as a FIFO without waiting for a writer", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    fs.rmSync(path.join(dir, "config.json"));
    execFileSync("mkfifo", [path.join(dir, "config.json")]);
    await expect(open(dir)).rejects.toThrow(/config\.json: config\.json is a named pipe \(FIFO\), not a regular file: re-download the model$/);
  });

  it("refuses config.json linked to /dev/zero instead of reading forever", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    fs.rmSync(path.join(dir, "config.json"));
    fs.symlinkSync("/dev/zero", path.join(dir, "config.json"));
    await expect(open(dir)).rejects.toThrow(/config\.json is a device, not a regular file/);
  });

  it("refuses a weight shard that is a FIFO", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    fs.rmSync(path.join(dir, "model.safetensors"));
    execFileSync("mkfifo", [path.join(dir, "model.safetensors")]);
    await expect(open(dir)).rejects.toThrow(/model\.safetensors: .*named pipe \(FIFO\), not a regular file: re-download the model/);
  });
});

describe("chat templates that are not text", () => {
  it("names chat_template.json when its chat_template is an empty list", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    for (const f of ["chat_template.jinja"]) fs.rmSync(path.join(dir, f), { force: true });
    fs.writeFileSync(path.join(dir, "chat_template.json"), JSON.stringify({ chat_template: [] }));
    await expect(open(dir)).rejects.toThrow(/chat_template\.json: chat_template must be the template's text, got an empty list: repair or re-download the file$/);
  });

  it("names tokenizer_config.json when its chat_template is a number", async () => {
    const dir = copyFixtureModel("llava-gqa-f32");
    for (const f of ["chat_template.jinja", "chat_template.json"]) fs.rmSync(path.join(dir, f), { force: true });
    editJson(path.join(dir, "tokenizer_config.json"), (j) => (j["chat_template"] = 5));
    await expect(open(dir)).rejects.toThrow(/tokenizer_config\.json: chat_template must be the template's text or a list of \{name, template\}, got 5/);
  });
});

describe("input errors built from huge values", () => {
  it("shorten the path and cut the line", () => {
    const e = new LensInputError("/x/" + "a".repeat(1_000_000), "model folder does not exist: pass a Hugging Face model folder");
    expect(e.message.length).toBeLessThan(1000);
    expect(e.message).toMatch(/^\/x\/a+…a+ \(1,000,003 characters\): model folder does not exist/);
    expect(new LensInputError(undefined, "b".repeat(5000) + "\nnext").message).toMatch(/^b{990}… \(cut\)$/);
  });
});
