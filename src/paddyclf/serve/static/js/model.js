// The served model, run in the browser by ONNX Runtime Web (WASM): photo -> the server's verdict.
//
// The page asks the server for /browser/model.json (the export's sidecar: classes, preprocessing,
// temperature, thresholds, and the ONNX file's sha256) and runs /browser/model.onnx?sha256=...
// (the service worker keeps both, so this works offline). The verdict rule is paddyclf.trust's:
// p = softmax(logits / T); out_of_distribution when the OOD score is above its threshold, else
// unsure when max p is below unsure_below, else ok.
import { normalizationTables, normalize, resizeAndCrop } from "./resize.js";

const RUNTIME = "/static/vendor/onnxruntime-web/";

export const OK = "ok";
export const UNSURE = "unsure";
export const OUT_OF_DISTRIBUTION = "out_of_distribution";

// A photo file -> its pixels as the server decodes them: EXIF orientation applied, no colour
// management (Pillow ignores ICC profiles), no premultiplied alpha.
// Returns the ImageData (RGBA bytes, width, height), read back through a canvas. (A VideoFrame of
// the bitmap read back 0.8 ms faster for a 480 x 640 photo, but its RGBA conversion exists only
// from Chrome 126, and older browsers return their own layout without a word: BGRA, or YUV.)
export async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    const context = new OffscreenCanvas(bitmap.width, bitmap.height).getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

export function softmax(values, temperature) {
  const scaled = Array.from(values, (v) => v / temperature);
  const top = Math.max(...scaled);
  const exps = scaled.map((v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

// paddyclf.trust.verdicts for one photo
export function verdict(probabilities, oodScore, trust) {
  if (trust.ood_threshold != null && oodScore != null && oodScore > trust.ood_threshold) return OUT_OF_DISTRIBUTION;
  return Math.max(...probabilities) < (trust.unsure_below || 0) ? UNSURE : OK;
}

export class BrowserModel {
  constructor(ort, session, metadata) {
    this.ort = ort;
    this.session = session;
    this.metadata = metadata;
    this.trust = metadata.trust || { temperature: 1, unsure_below: 0, ood_threshold: null };
    this.classes = metadata.classes;
    this.sha256 = metadata.sha256;
    this.threads = ort.env.wasm.numThreads;
    const pre = metadata.preprocessing;
    this.tables = normalizationTables(pre.mean, pre.std, pre.scale);
  }

  // Load the runtime and the model; throws when either cannot load (the page then uses the server).
  static async load(threads = 1) {
    const response = await fetch("/browser/model.json");
    if (!response.ok) throw new Error(`no browser model (${response.status})`);
    const metadata = await response.json();
    const ort = await import(RUNTIME + "ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = RUNTIME;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    const model = await fetch(`/browser/model.onnx?sha256=${metadata.sha256}`);
    if (!model.ok) throw new Error(`the browser model did not download (${model.status})`);
    const bytes = new Uint8Array(await model.arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    return new BrowserModel(ort, session, metadata);
  }

  // The model's input tensor for a photo's pixels (ImageData)
  tensor(pixels) {
    const pre = this.metadata.preprocessing;
    const crop = pre.center_crop;
    const rule = this.metadata.pillow_vertical_first !== false;
    const rgb = resizeAndCrop(pixels.data, pixels.width, pixels.height, pre.resize_short_side, crop, rule);
    const data = normalize(rgb, crop, this.tables);
    return new this.ort.Tensor("float32", data, [1, 3, crop, crop]);
  }

  // Run the graph: {logits: Float32Array, oodScore: number | null}
  async run(tensor) {
    const outputs = await this.session.run({ [this.session.inputNames[0]]: tensor });
    const names = this.metadata.outputs || this.session.outputNames;
    const logits = outputs[names[0]].data;
    const ood = names.length > 1 && outputs[names[1]] ? Number(outputs[names[1]].data[0]) : null;
    return { logits, oodScore: ood };
  }

  // A photo (a Blob, or its pixels from decode()) -> {probabilities, oodScore, status, milliseconds}
  // (milliseconds: how long each step took, for `paddyclf benchmark browser`)
  async diagnose(photo) {
    const start = performance.now();
    const pixels = photo instanceof Blob ? await decode(photo) : photo;
    const decoded = performance.now();
    const tensor = this.tensor(pixels);
    const prepared = performance.now();
    const { logits, oodScore } = await this.run(tensor);
    const ran = performance.now();
    const probabilities = softmax(logits, this.trust.temperature || 1);
    const status = verdict(probabilities, oodScore, this.trust);
    const milliseconds = { decode: decoded - start, tensor: prepared - decoded, run: ran - prepared, verdict: performance.now() - ran };
    return { probabilities, oodScore, status, milliseconds };
  }
}

// paddyclf.trust.visit.combine_log_probabilities (rule "mean"): the photos the OOD gate accepted
// vote with their calibrated log-probabilities; the mean, renormalised, gets the unsure rule.
export function combineVisit(photos, unsureBelow) {
  const logs = photos.map((p) => p.probabilities.map((q) => Math.log(Math.min(Math.max(q, 1e-12), 1))));
  const accepted = photos.map((p) => p.status !== OUT_OF_DISTRIBUTION);
  const voters = logs.filter((_, i) => accepted[i]);
  const pool = voters.length ? voters : logs;
  const mean = pool[0].map((_, k) => pool.reduce((sum, row) => sum + row[k], 0) / pool.length);
  const probabilities = softmax(mean, 1);
  let status = OUT_OF_DISTRIBUTION;
  if (voters.length) status = Math.max(...probabilities) < unsureBelow ? UNSURE : OK;
  return { probabilities, status, accepted: voters.length, photos: photos.length };
}
