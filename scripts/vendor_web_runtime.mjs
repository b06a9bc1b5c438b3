// Copy the files of ONNX Runtime Web that `paddyclf serve` needs from node_modules (npm ci) into the
// package's static folder (git-ignored; built wheels and sdists carry them), with gzip copies of the
// large ones: the server sends those precompressed (the WASM file: 14 MB, 3.7 MB gzipped).
// Run by `make web-runtime` (part of `make test`) through `npm run vendor`; no dependency but Node's own modules.
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "node_modules", "onnxruntime-web");
const target = join(root, "src", "paddyclf", "serve", "static", "vendor", "onnxruntime-web");
// the ES module of the WASM-only build, and the WASM runtime (SIMD; threads when the page is cross-origin isolated)
const FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];

const staging = `${target}.tmp`; // written in full, then renamed: never half a runtime in the package
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
for (const name of FILES) {
  copyFileSync(join(source, "dist", name), join(staging, name));
  const gz = gzipSync(readFileSync(join(source, "dist", name)), { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(staging, `${name}.gz`), gz);
}
const about = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
writeFileSync(
  join(staging, "VERSION"),
  `onnxruntime-web ${about.version} (${about.license} license, ${about.homepage || "https://onnxruntime.ai"})\n`,
);
rmSync(target, { recursive: true, force: true });
renameSync(staging, target);
console.log(`onnxruntime-web ${about.version} -> ${target}`);
