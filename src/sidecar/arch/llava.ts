/**
 * LlavaForConditionalGeneration: CLIP vision tower -> two-layer projector -> LLaMA decoder,
 * image features replacing the expanded image tokens.
 */
import { LensInputError } from "../errors";
import { activation, linear } from "../graph/blocks";
import { buildClipVision, parseClipVisionConfig } from "./clip";
import { cfgBool, cfgNumber, cfgObject, cfgString } from "./configUtil";
import { buildLlamaDecoder, llamaLensSpec, parseLlamaConfig, resolveDecoderNames } from "./llama";
import type { ArchitectureModule } from "./types";

export const llava: ArchitectureModule = {
  architectures: ["LlavaForConditionalGeneration"],
  plan(config, configFile, ctx) {
    const topTie = typeof config["tie_word_embeddings"] === "boolean" ? (config["tie_word_embeddings"] as boolean) : undefined;
    const text = parseLlamaConfig(cfgObject(config, "text_config", configFile), configFile, topTie);
    const visionJson = cfgObject(config, "vision_config", configFile);
    const visionType = visionJson["model_type"];
    if (visionType !== undefined && visionType !== "clip_vision_model") {
      throw new LensInputError(configFile, `vision tower "${String(visionType)}" is not supported for LLaVA (supported: clip_vision_model)`);
    }
    const vision = parseClipVisionConfig(visionJson, configFile);
    const imageTokenId = cfgNumber(config, "image_token_id", configFile, cfgNumber(config, "image_token_index", configFile, 32000));
    const strategy = cfgString(config, "vision_feature_select_strategy", configFile, "default");
    if (strategy !== "default" && strategy !== "full") {
      throw new LensInputError(configFile, `vision_feature_select_strategy "${strategy}" is not supported (supported: default, full)`);
    }
    const layerSpec = config["vision_feature_layer"] ?? -2;
    const layers = (Array.isArray(layerSpec) ? layerSpec : [layerSpec]).map((l) => {
      const n = Number(l);
      const index = n < 0 ? vision.numLayers + 1 + n : n;
      if (!Number.isInteger(n) || index < 0 || index > vision.numLayers) {
        throw new LensInputError(configFile, `vision_feature_layer ${JSON.stringify(l)} is outside the tower's ${vision.numLayers} layers: fix the config`);
      }
      return index;
    });
    const projectorAct = cfgString(config, "projector_hidden_act", configFile, "gelu");
    const projectorBias = cfgBool(config, "multimodal_projector_bias", configFile, true);
    const patches = (vision.imageSize / vision.patchSize) ** 2;
    const tokensPerImage = patches + (strategy === "full" ? 1 : 0);

    const names = resolveDecoderNames(ctx, text, ["language_model.model.", "model.language_model."], ["language_model.", ""]);
    const visionPrefix = ctx.weights.findPrefix(
      ["vision_tower.vision_model.", "model.vision_tower.vision_model.", "vision_tower.", "model.vision_tower."],
      "embeddings.patch_embedding.weight",
      "vision tower",
    );
    const projectorPrefix = ctx.weights.findPrefix(["multi_modal_projector.", "model.multi_modal_projector."], "linear_1.weight", "projector");

    return {
      architecture: "LlavaForConditionalGeneration",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      imageTokenId,
      vision: { imageSize: vision.imageSize, patchSize: vision.patchSize, numChannels: vision.numChannels, tokensPerImage },
      lens: llamaLensSpec(text, names),
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, { imageTokenId }, configFile),
      buildVision: (c) => {
        const { b } = c;
        const pixels = b.input("pixel_values", "float32", [1, vision.numChannels, vision.imageSize, vision.imageSize]);
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
        b.output(projected, "image_features", "float32", [tokensPerImage, text.hiddenSize]);
      },
    };
  },
};
