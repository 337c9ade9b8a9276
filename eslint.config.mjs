import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "tools/**", "bin/**", "*.mjs"] },
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    // The sidecar's stdout belongs to JSON-RPC (and the CLI's to its report).
    files: ["src/sidecar/**/*.ts"],
    rules: { "no-console": ["error", { allow: ["error", "warn"] }] },
  },
  {
    // Only the runtime module may import onnxruntime-node, only the decoder module sharp.
    files: ["src/**/*.ts"],
    ignores: ["src/sidecar/runtime/ort.ts", "src/sidecar/image/decode.ts"],
    rules: {
      "no-restricted-imports": ["error", { paths: [
        { name: "onnxruntime-node", message: "Import the runtime through src/sidecar/runtime/ort.ts." },
        { name: "sharp", message: "Decode images through src/sidecar/image/decode.ts." },
      ] }],
    },
  },
);
