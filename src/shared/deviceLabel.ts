/** How a device is named in the status bar, the runtime info and the CLI's summary line. */
import type { DeviceDescription } from "./lensRecord";

/** "NVIDIA H200, 141 GiB" / "AMD EPYC 7B13 (2 threads), 8.3 GiB" / "adapter unknown". */
export function deviceLabel(d: DeviceDescription): string {
  const memory = d.memoryBytes ? `${(d.memoryBytes / 2 ** 30).toFixed(d.memoryBytes >= 10 * 2 ** 30 ? 0 : 1)} GiB` : undefined;
  return [d.name ?? "adapter unknown", memory].filter(Boolean).join(", ");
}

/** "cuda (NVIDIA H200, 141 GiB)", "cpu (AMD EPYC 7B13 (2 threads), 8.3 GiB; device auto took the CPU: …)", or the bare provider. */
export function providerLabel(provider: string, device?: DeviceDescription): string {
  if (!device) return provider;
  const named = device.name !== undefined || device.memoryBytes !== undefined;
  const details = [named ? deviceLabel(device) : undefined, device.note].filter(Boolean).join("; ");
  return details ? `${provider} (${details})` : provider;
}
