import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { readInputFile, readInputText } from "../../src/sidecar/util/readInput";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "read-input-"));
const opts = { maxBytes: 1024, what: "image" };

describe("readInputFile reads only regular files, up to a cap", () => {
  it("reads a regular file and a link to one", async () => {
    fs.writeFileSync(path.join(dir, "a.bin"), Buffer.from([1, 2, 3]));
    fs.symlinkSync(path.join(dir, "a.bin"), path.join(dir, "link.bin"));
    expect([...(await readInputFile(path.join(dir, "a.bin"), opts))]).toEqual([1, 2, 3]);
    expect([...(await readInputFile(path.join(dir, "link.bin"), opts))]).toEqual([1, 2, 3]);
  });
  it("refuses /dev/zero at once instead of reading forever", async () => {
    await expect(readInputFile("/dev/zero", opts)).rejects.toThrow(/^\/dev\/zero: image is a device, not a regular file/);
  });
  it("refuses a FIFO without waiting for a writer", async () => {
    const fifo = path.join(dir, "pipe.png");
    execFileSync("mkfifo", [fifo]);
    await expect(readInputFile(fifo, opts)).rejects.toThrow(/named pipe \(FIFO\), not a regular file/);
  });
  it("refuses a folder, a missing file and a file over the cap, naming the limit", async () => {
    await expect(readInputFile(dir, opts)).rejects.toThrow(/is a folder/);
    await expect(readInputFile(path.join(dir, "none.png"), opts)).rejects.toThrow(/image not found: check the path/);
    fs.writeFileSync(path.join(dir, "big.bin"), Buffer.alloc(2048));
    await expect(readInputFile(path.join(dir, "big.bin"), opts)).rejects.toThrow(/image is 2 KiB, over the 1 KiB limit/);
  });
  it("drops a UTF-8 byte-order mark from text", async () => {
    fs.writeFileSync(path.join(dir, "bom.jsonl"), "\ufeff{\"a\":1}\n");
    expect(await readInputText(path.join(dir, "bom.jsonl"), { maxBytes: 100, what: "manifest" })).toBe("{\"a\":1}\n");
  });
});
