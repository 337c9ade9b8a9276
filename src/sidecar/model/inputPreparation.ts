/**
 * Input preparation: what transformers' processor does before the model runs. The chat
 * template renders the prompt, the image placeholder is expanded to the image's tokens, the
 * text is tokenized and the image preprocessed into the vision graph's inputs. Nothing here
 * knows about sessions or providers (engine/engine.ts) or the lens (lens/).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { cfgNumber, isObject, type JsonObject } from "../arch/configUtil";
import type { ArchitecturePlan, ImagePipeline, PreparedImage } from "../arch/types";
import { LensInputError } from "../errors";
import { type ClipProcessorConfig, parseClipProcessorConfig, preprocessClip } from "../image/clipProcessor";
import { decodeImage, type RgbImage } from "../image/decode";
import { checkContextLength } from "../text/limits";
import type { TextProcessor } from "../text/textProcessor";
import { readJsonObject } from "./jsonFile";

export interface PreparedInput {
  renderedPrompt: string;
  inputIds: number[];
  /** transformers' pixel_values, when the input has an image: NCHW for LLaVA, [patches, C*T*P*P] for Qwen2-VL. */
  pixelValues?: { data: Float32Array; shape: number[] };
  /** The original image's size. */
  image?: { width: number; height: number };
  /** The preprocessed image: vision-graph inputs, size after resizing, image-token grid. */
  vision?: PreparedImage;
}

/** Preprocessed image files kept per model (see InputPreparer.preparedImages). */
const PREPARED_IMAGES = 4;

export class InputPreparer {
  /**
   * The last few preprocessed image files, by path, modification time and size: a live preview
   * or a sweep runs one image with many prompts, and decoding plus resampling is 10-15 ms a run.
   */
  private readonly preparedImages = new Map<string, { rgb: { width: number; height: number }; vision: PreparedImage }>();

  constructor(
    readonly text: TextProcessor,
    private readonly imagePipeline: ImagePipeline | undefined,
    private readonly model: { folder: string; architecture: string; contextLength?: { length: number; field: string }; hasVision: boolean },
  ) {}

  /**
   * The image pipeline of a model with a vision tower: the architecture's own, or LLaVA's CLIP
   * preprocessing. Hub folders keep preprocessor_config.json; transformers 5 nests it in
   * processor_config.json. Its errors matter only to a vision model.
   */
  static async imagePipelineFor(
    plan: ArchitecturePlan,
    dir: string,
    text: TextProcessor,
    processorConfig: JsonObject | undefined,
    preprocessor: () => JsonObject | undefined,
  ): Promise<ImagePipeline | undefined> {
    if (!plan.vision && !plan.imagePipeline) return undefined;
    const preprocessorFile = path.join(dir, "preprocessor_config.json");
    const nested = processorConfig?.["image_processor"];
    const preprocessorConfig = preprocessor();
    const imageProcessor = preprocessorConfig
      ? { json: preprocessorConfig, file: preprocessorFile }
      : isObject(nested)
        ? { json: nested, file: path.join(dir, "processor_config.json") }
        : { json: await readJsonObject(preprocessorFile, "preprocessor_config.json"), file: preprocessorFile }; // throws: missing
    return plan.imagePipeline
      ? plan.imagePipeline({ folder: dir, imageProcessor, processorConfig, text })
      : clipImagePipeline(plan, parseClipProcessorConfig(imageProcessor.json, imageProcessor.file), processorConfig, text, dir);
  }

  /** Renders, expands and tokenizes the prompt, and preprocesses the image, as transformers' processor does. */
  async prepare(input: { prompt: string; image?: string | Uint8Array | RgbImage; maxNewTokens?: number }): Promise<PreparedInput> {
    const { folder, architecture, contextLength } = this.model;
    if (input.image !== undefined && !this.model.hasVision) {
      throw new LensInputError(folder, `${architecture} is a text-only model and cannot take an image: drop --image or pick a vision-language model`);
    }
    let rendered = await this.text.renderPrompt(input.prompt, input.image !== undefined);
    const fits = (ids: number[], imageTokens: number) => {
      checkContextLength({ promptTokens: ids.length, imageTokens, maxNewTokens: input.maxNewTokens ?? 0, context: contextLength, configFile: path.join(folder, "config.json") });
      return ids;
    };
    if (input.image === undefined || !this.imagePipeline) return { renderedPrompt: rendered, inputIds: fits(this.text.encodePrompt(rendered), 0) };
    const { rgb, vision } = await this.preprocessImage(input.image, this.imagePipeline);
    const token = this.imagePipeline.imageToken;
    rendered = rendered.split(token).join(vision.promptText ?? token.repeat(vision.tokenCount));
    return {
      renderedPrompt: rendered,
      inputIds: fits(this.text.encodePrompt(rendered), vision.tokenCount),
      pixelValues: vision.pixelValues,
      image: { width: rgb.width, height: rgb.height },
      vision,
    };
  }

  private async preprocessImage(image: string | Uint8Array | RgbImage, pipeline: ImagePipeline): Promise<{ rgb: { width: number; height: number }; vision: PreparedImage }> {
    if (isRgbImage(image) || typeof image !== "string") {
      const rgb = isRgbImage(image) ? image : await decodeImage(image);
      return { rgb, vision: pipeline.preprocess(rgb) };
    }
    const stat = await fs.stat(image).catch(() => undefined);
    const key = stat && `${path.resolve(image)}|${stat.mtimeMs}|${stat.size}`;
    const hit = key && this.preparedImages.get(key);
    if (hit) return hit;
    const rgb = await decodeImage(image);
    const prepared = { rgb: { width: rgb.width, height: rgb.height }, vision: pipeline.preprocess(rgb) };
    if (key) {
      this.preparedImages.set(key, prepared);
      if (this.preparedImages.size > PREPARED_IMAGES) this.preparedImages.delete(this.preparedImages.keys().next().value!);
    }
    return prepared;
  }
}

function isRgbImage(x: unknown): x is RgbImage {
  return isObject(x) && x["data"] instanceof Uint8Array && typeof x["width"] === "number";
}

/**
 * LLaVA's image pipeline: CLIP preprocessing to one NCHW image, and the placeholder expanded as
 * LlavaProcessor computes it: (H // patch) * (W // patch) + num_additional_image_tokens, minus
 * one for the "default" strategy (which drops CLS). It must agree with what the vision graph yields.
 */
function clipImagePipeline(
  plan: ArchitecturePlan,
  imageConfig: ClipProcessorConfig,
  processorConfig: JsonObject | undefined,
  text: TextProcessor,
  dir: string,
): ImagePipeline {
  const { imageToken, imageTokensPerImage } = imageTokenLayout(plan, imageConfig, processorConfig, text, dir);
  const vision = plan.vision!;
  const side = vision.imageSize / vision.patchSize;
  return {
    imageToken,
    preprocess: (rgb) => {
      const { pixelValues, shape } = preprocessClip(rgb, imageConfig);
      return {
        feeds: { pixel_values: { data: pixelValues, dims: shape } },
        pixelValues: { data: pixelValues, shape },
        processedSize: { width: shape[3], height: shape[2] },
        tokenCount: imageTokensPerImage,
        grid: { frames: 1, rows: side, cols: side, leadingCls: vision.tokensPerImage === side * side + 1 },
      };
    },
  };
}

function imageTokenLayout(
  plan: ArchitecturePlan,
  imageConfig: ClipProcessorConfig,
  processorConfig: JsonObject | undefined,
  text: TextProcessor,
  dir: string,
): { imageToken: string; imageTokensPerImage: number } {
  const file = path.join(dir, "processor_config.json");
  const pc = processorConfig ?? {};
  const vision = plan.vision!;
  const imageToken = typeof pc["image_token"] === "string" ? pc["image_token"] : "<image>";
  const tokenId = text.tokenToId(imageToken);
  if (tokenId !== plan.imageTokenId) {
    throw new LensInputError(path.join(dir, "tokenizer.json"), `the image token ${imageToken} has id ${tokenId} but config.json says ${plan.imageTokenId}: the tokenizer does not belong to this model`);
  }
  const patch = cfgNumber(pc, "patch_size", file, vision.patchSize);
  const additional = cfgNumber(pc, "num_additional_image_tokens", file, 1);
  const strategy = typeof pc["vision_feature_select_strategy"] === "string" ? pc["vision_feature_select_strategy"] : "default";
  const crop = imageConfig.doCenterCrop ? imageConfig.cropSize : "height" in imageConfig.size ? imageConfig.size : { height: vision.imageSize, width: vision.imageSize };
  const count = Math.floor(crop.height / patch) * Math.floor(crop.width / patch) + additional - (strategy === "default" ? 1 : 0);
  if (count !== vision.tokensPerImage) {
    throw new LensInputError(file, `the processor expands an image to ${count} tokens but the vision tower yields ${vision.tokensPerImage}: the processor config does not match config.json`);
  }
  return { imageToken, imageTokensPerImage: count };
}
