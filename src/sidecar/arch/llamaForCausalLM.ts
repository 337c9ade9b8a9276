/** LlamaForCausalLM: the text-only LLaMA family. */
import { ConfigSection } from "./configUtil";
import { buildLlamaDecoder, llamaLensSpec, parseLlamaConfig, resolveDecoderNames } from "./llama";
import type { ArchitectureModule } from "./types";

export const llamaForCausalLM: ArchitectureModule = {
  architectures: ["LlamaForCausalLM"],
  plan(config, configFile, ctx) {
    const text = parseLlamaConfig(new ConfigSection(config, configFile));
    const names = resolveDecoderNames(ctx, text, ["model.", ""], [""]);
    return {
      architecture: "LlamaForCausalLM",
      decoder: { numLayers: text.numLayers, numHeads: text.numHeads, numKvHeads: text.numKvHeads, headDim: text.headDim, hiddenSize: text.hiddenSize, vocabSize: text.vocabSize },
      lens: llamaLensSpec(text, names),
      buildDecoder: (c) => buildLlamaDecoder(c, text, names, {}, configFile),
    };
  },
};
