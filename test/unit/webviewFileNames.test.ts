// The file names the panel proposes for its exports: from the image and the prompt, safe everywhere.
import { describe, expect, it } from "vitest";
import { exportBaseName, imageStem, slug } from "../../src/webview/fileNames";
import { sampleRecord } from "../helpers/sampleRecord";

describe("export file names", () => {
  it("are made from the image's name and the prompt, not the panel title", () => {
    const record = sampleRecord();
    record.input.prompt = "What colour is the shape?\n";
    record.input.image = { ...record.input.image!, path: "/ws/media/samples/color-of-shape.png" };
    expect(imageStem(record)).toBe("color-of-shape");
    expect(exportBaseName(record, "Preview head-masking.lens.json")).toBe("color-of-shape-What-colour-is-the-shape");
    record.input.image = { ...record.input.image, path: "C:\\pics\\Café au lait.jpeg" };
    expect(exportBaseName(record)).toBe("Cafe-au-lait-What-colour-is-the-shape");
  });

  it("never hold a folder, a leading dot, a control character or a character a file system refuses", () => {
    const record = sampleRecord();
    record.input.prompt = '../../etc/passwd\u000b:*?"<>|\u0000 é';
    record.input.image = null;
    const name = exportBaseName(record);
    expect(name).toBe("text-etc-passwd-e");
    expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9-]*$/u);
    expect(exportBaseName(undefined, "Compare Masking image heads")).toBe("Compare-Masking-image-heads");
    expect(exportBaseName(undefined, "///")).toBe("logit-lens");
    expect(slug("x".repeat(100), 48)).toHaveLength(48);
  });
});
