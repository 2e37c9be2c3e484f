// Builds the app into the Python package, which serves it at /ui/ (no Node.js at run time).
import { defineConfig } from "vite";

// Relative to this directory (Vite's root); `npm run build -- --outDir X` writes elsewhere.
const outDir = "../components/chroma/api/static/ui";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const api: string = (globalThis as any).process?.env?.CHROMA_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/ui/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact", legalComments: "none" },
  resolve: { alias: { react: "preact/compat", "react-dom": "preact/compat" } },
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2020",
    // Reproducible output: no source maps (they embed absolute paths), stable names.
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 600,
  },
  // `npm run dev` / `vite preview` forward the API to a running `chroma run` (CHROMA_API).
  server: { proxy: { "/api": api } },
  preview: { proxy: { "/api": api } },
});
