/** The supported architectures. Adding one means adding a module here, never editing another. */
import { LensInputError } from "../errors";
import { idefics3 } from "./idefics3";
import { llamaForCausalLM } from "./llamaForCausalLM";
import { llava } from "./llava";
import { qwen2vl } from "./qwen2vl";
import type { ArchitectureModule } from "./types";

const MODULES: readonly ArchitectureModule[] = [llava, qwen2vl, idefics3, llamaForCausalLM];

export const SUPPORTED_ARCHITECTURES: readonly string[] = MODULES.flatMap((m) => m.architectures);

export function findArchitecture(architectures: unknown, configFile: string): { name: string; module: ArchitectureModule } {
  const names = Array.isArray(architectures) ? architectures.map(String) : [];
  for (const name of names) {
    const module = MODULES.find((m) => m.architectures.includes(name));
    if (module) return { name, module };
  }
  const got = names.length ? names.join(", ") : "none listed";
  throw new LensInputError(configFile, `architecture ${got} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(", ")}): pick a model of a supported architecture`);
}
