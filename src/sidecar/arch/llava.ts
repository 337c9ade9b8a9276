/**
 * LlavaForConditionalGeneration: CLIP vision tower -> two-layer projector -> LLaMA decoder,
 * image features replacing the expanded image tokens.
 */
import { LensInputError } from "../errors";
import { activation, computeInput, float32Output, linear } from "../graph/blocks";
import { buildClipVision, checkVisionTowerWeights, parseClipVisionConfig } from "./clip";
import { ConfigSection } from "./configUtil";
import { buildLlamaDecoder, llamaLensSpec, parseLlamaConfig, resolveDecoderNames } from "./llama";
import type { ArchitectureModule } from "./types";

export const llava: ArchitectureModule = {
  architectures: ["LlavaForConditionalGeneration"],
  plan(config, configFile, ctx) {
    const top = new ConfigSection(config, configFile);
    const text = parseLlamaConfig(top.section("text_config"), top.optionalBool("tie_word_embeddings"));
    const visionSection = top.section("vision_config");
    const visionType = visionSection.json["model_type"];
    if (visionType !== undefined && visionType !== "clip_vision_model") {
      throw new LensInputError(configFile, `vision tower "${String(visionType)}" is not supported for LLaVA (supported: clip_vision_model)`);
    }
    const vision = parseClipVisionConfig(visionSection);
    const imageTokenKey = top.has("image_token_id") ? "image_token_id" : "image_token_index";
    const imageTokenId = top.index(imageTokenKey, 32000);
    if (imageTokenId >= text.vocabSize) {
      throw top.error(imageTokenKey, `${imageTokenId} is not a token of the ${text.vocabSize}-token vocabulary (text_config.vocab_size): fix the config or re-download it`);
    }
    const strategy = top.string("vision_feature_select_strategy", "default");
    if (strategy !== "default" && strategy !== "full") {
      throw new LensInputError(configFile, `vision_feature_select_strategy "${strategy}" is not supported (supported: default, full)`);
    }
    const layerSpec = config["vision_feature_layer"] ?? -2;
    const layers = (Array.isArray(layerSpec) ? layerSpec : [layerSpec]).map((l) => {
      const n = typeof l === "number" ? l : NaN;
      const index = n < 0 ? vision.numLayers + 1 + n : n;
      if (!Number.isInteger(n) || index < 0 || index > vision.numLayers) {
        throw new LensInputError(configFile, `vision_feature_layer ${JSON.stringify(l)} is outside the tower's ${vision.numLayers} layers: fix the config`);
      }
      return index;
    });
    const projectorAct = top.string("projector_hidden_act", "gelu");
    const projectorBias = top.bool("multimodal_projector_bias", true);
    const patches = (vision.imageSize / vision.patchSize) ** 2;
    const tokensPerImage = patches + (strategy === "full" ? 1 : 0);

    const names = resolveDecoderNames(ctx, text, ["language_model.model.", "model.language_model."], ["language_model.", ""]);
    const visionPrefix = ctx.weights.findPrefix(
      ["vision_tower.vision_model.", "model.vision_tower.vision_model.", "vision_tower.", "model.vision_tower."],
      "embeddings.patch_embedding.weight",
      "vision tower",
    );
    const positionRows = [patches + 1, `vision_config.image_size / patch_size = ${vision.imageSize} / ${vision.patchSize} (${patches} patches and CLS)`] as const;
    checkVisionTowerWeights(ctx, vision, visionPrefix, positionRows, Math.max(...layers));
    const projectorPrefix = ctx.weights.findPrefix(["multi_modal_projector.", "model.multi_modal_projector."], "linear_1.weight", "projector");
    const textHidden = [text.hiddenSize, `text_config.hidden_size ${text.hiddenSize}`] as const;
    ctx.weights.checkShape(`${projectorPrefix}linear_1.weight`, [textHidden, [vision.hiddenSize * layers.length, `vision_config.hidden_size x ${layers.length} feature layer(s) = ${vision.hiddenSize} x ${layers.length}`]]);
    ctx.weights.checkShape(`${projectorPrefix}linear_2.weight`, [textHidden, textHidden]);
    if (!projectorBias) {
      for (const l of ["linear_1", "linear_2"]) ctx.weights.checkAbsent(`${projectorPrefix}${l}.bias`, ctx.weights.says("multimodal_projector_bias false"));
    }

    return {
      architecture: "LlavaForConditionalGeneration",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      imageTokenId,
      vision: { imageSize: vision.imageSize, patchSize: vision.patchSize, numChannels: vision.numChannels, tokensPerImage },
      lens: llamaLensSpec(text, names),
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, { imageTokenId }, configFile),
      buildVision: (c) => {
        const { b } = c;
        const pixels = computeInput(c, "pixel_values", [1, vision.numChannels, vision.imageSize, vision.imageSize]);
        const states = buildClipVision(c, vision, visionPrefix, pixels, layers, configFile);
        let features = states.length === 1 ? states[0] : b.op("Concat", states, { axis: -1 });
        if (strategy === "default") features = b.op("Slice", [features, b.i64(1), b.i64(patches + 1), b.i64(0)]);
        const featureDim = vision.hiddenSize * layers.length;
        const projected = b.scoped("projector", () =>
          linear(
            c,
            activation(c, linear(c, features, `${projectorPrefix}linear_1`, featureDim, text.hiddenSize, projectorBias), projectorAct, configFile),
            `${projectorPrefix}linear_2`,
            text.hiddenSize,
            text.hiddenSize,
            projectorBias,
          ),
        );
        float32Output(c, projected, "image_features", [tokensPerImage, text.hiddenSize]);
      },
    };
  },
};
