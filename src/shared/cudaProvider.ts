/**
 * The CUDA provider's folder, as the extension's installer writes it and the sidecar reads it:
 * onnxruntime-node's provider libraries of one onnxruntime version, and a manifest.
 */

/** The folder that holds a downloaded CUDA provider (the extension sets it when it starts the sidecar). */
export const CUDA_PROVIDER_DIR_ENV = "LOGIT_LENS_CUDA_PROVIDER_DIR";

/** The libraries the CUDA provider needs beside libonnxruntime.so.1 (TensorRT's is not used). */
export const CUDA_LIBRARIES = ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"] as const;

export const CUDA_MANIFEST = "manifest.json";

/** What a downloaded provider folder records about itself. */
export interface CudaManifest {
  /** The onnxruntime version the libraries were built for: they load only into the same version. */
  onnxruntimeVersion: string;
  /** The package they came from (name and version) and its address. */
  package: string;
  source: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

export const CUDA_HOWTO =
  "with internet, run `npm install onnxruntime-node --onnxruntime-node-install=cuda12` where the sidecar is installed, or in VS Code the command Logit Lens: Install the CUDA Provider";
