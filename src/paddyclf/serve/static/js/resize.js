// The eval preprocessing of paddyclf (torchvision v2 on a Pillow image), ported so that the browser
// feeds the model the same pixels as `predict` and `serve`: resize the short side with Pillow's
// antialiased bilinear filter, centre-crop, normalise.
//
// Pillow resamples in two 8-bit passes (Resample.c), each rounded and clipped to uint8. Each output
// pixel is a weighted sum over a triangle filter stretched by the downscale factor, with weights in
// fixed point (22 fractional bits). This port follows that arithmetic step for step, in Pillow's
// order of passes, so its output equals Pillow's byte for byte (tests/test_browser_preprocessing.py);
// canvas drawImage does not (`paddyclf benchmark browser` measures both). Only the pixels inside
// the centre crop are computed: a pixel depends on its own row's and column's weights alone.

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

// Python's round(): halves go to the even neighbour (torchvision's centre crop uses it)
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

// torchvision's output size for Resize(short_side): [width, height]
export function resizedSize(width, height, shortSide) {
  if (width <= height) return [shortSide, Math.trunc((shortSide * height) / width)];
  return [Math.trunc((shortSide * width) / height), shortSide];
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc (bilinear, box [0, inSize]) for the output
// positions first .. first + count - 1: per output pixel, its first input pixel, how many, and weights.
function coefficients(inSize, outSize, first, count) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filterScale; // the bilinear filter's support is 1, stretched when downscaling
  const size = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(count * 2);
  const weights = new Int32Array(count * size);
  const raw = new Float64Array(size);
  const inverse = 1.0 / filterScale; // Pillow multiplies by the inverse (not the same last bit as dividing)
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * inverse);
      raw[x] = t < 1 ? 1 - t : 0;
      total += raw[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? raw[x] / total : raw[x];
      weights[i * size + x] = Math.trunc(w < 0 ? w * ONE - 0.5 : w * ONE + 0.5);
    }
    bounds[2 * i] = xmin;
    bounds[2 * i + 1] = xmax;
  }
  return { bounds, weights, size };
}

// Pillow's clip8: the fixed-point sum back to a byte (the sums are never negative for this filter)
function clip8(sum) {
  return sum >= 255 * ONE ? 255 : sum >> PRECISION_BITS;
}

// One 8-bit pass of Pillow's resampling along one axis, for `lines` lines across it: output pixel
// i of line l is the weighted sum of source pixels bounds[2i] - shift ... (+ bounds[2i+1] taps)
// along the axis. Strides are in array elements; 3 channels are read (RGB, or RGB of RGBA).
// The sums are integers below 2^31 (255 * 2^22 + 2^21), so int32 arithmetic (Math.imul) is exact.
function pass(src, along, across, shift, lines, { bounds, weights, size }, dst, dstAlong, dstAcross) {
  const count = bounds.length / 2;
  for (let l = 0; l < lines; l++) {
    for (let i = 0; i < count; i++) {
      const taps = bounds[2 * i + 1];
      let p = l * across + (bounds[2 * i] - shift) * along;
      let r = HALF, g = HALF, b = HALF;
      for (let k = i * size, end = k + taps; k < end; k++, p += along) {
        const w = weights[k];
        r = (r + Math.imul(src[p], w)) | 0;
        g = (g + Math.imul(src[p + 1], w)) | 0;
        b = (b + Math.imul(src[p + 2], w)) | 0;
      }
      const o = l * dstAcross + i * dstAlong;
      dst[o] = clip8(r);
      dst[o + 1] = clip8(g);
      dst[o + 2] = clip8(b);
    }
  }
}

// Pillow 13 resamples vertically first when the height shrinks, by more than twice as many pixels
// as the width does (python-pillow/Pillow#9549; measured on Pillow 13.0), horizontally first
// otherwise; the order changes the rounding of the 8-bit image between the passes. `rule`: whether
// the server's Pillow has that rule (/browser/model.json says, from pillow_vertical_first()).
export function verticalPassFirst(width, height, outWidth, outHeight, rule = true) {
  return rule && outHeight < height && height - outHeight > 2 * (width - outWidth);
}

// The centre crop of the resized image, as Pillow computes it: `crop` x `crop` RGB bytes (HWC).
// rgba: the decoded photo (width x height, 4 bytes per pixel, as canvas getImageData or
// VideoFrame.copyTo give it). Only the source rows and columns under the crop are resampled.
export function resizeAndCrop(rgba, width, height, shortSide, crop, verticalFirstRule = true) {
  const [outWidth, outHeight] = resizedSize(width, height, shortSide);
  if (outWidth < crop || outHeight < crop) throw new Error(`the resized photo is smaller than the ${crop} px crop`);
  const columns = coefficients(width, outWidth, roundHalfEven((outWidth - crop) / 2), crop);
  const rows = coefficients(height, outHeight, roundHalfEven((outHeight - crop) / 2), crop);
  const out = new Uint8Array(crop * crop * 3);
  if (verticalPassFirst(width, height, outWidth, outHeight, verticalFirstRule)) {
    const first = columns.bounds[0];
    const span = columns.bounds[2 * crop - 2] + columns.bounds[2 * crop - 1] - first;
    const temp = new Uint8Array(crop * span * 3); // crop rows x the source columns under the crop
    pass(rgba.subarray(first * 4), width * 4, 4, 0, span, rows, temp, span * 3, 3);
    pass(temp, 3, span * 3, first, crop, columns, out, 3, crop * 3);
  } else {
    const first = rows.bounds[0];
    const span = rows.bounds[2 * crop - 2] + rows.bounds[2 * crop - 1] - first;
    const temp = new Uint8Array(span * crop * 3); // the source rows under the crop x crop columns
    pass(rgba.subarray(first * width * 4), 4, width * 4, 0, span, columns, temp, 3, crop * 3);
    pass(temp, crop * 3, 3, first, crop, rows, out, crop * 3, 3);
  }
  return out;
}

// Per channel, byte -> normalised float32 as torchvision computes it: (v * (1/255) - mean) / std,
// each step rounded to float32 (ToDtype(scale=True), then Normalize).
export function normalizationTables(mean, std, scale = 1 / 255) {
  return [0, 1, 2].map((c) => {
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(Math.fround(v * Math.fround(scale)) - Math.fround(mean[c]));
      table[v] = Math.fround(x / Math.fround(std[c]));
    }
    return table;
  });
}

// RGB bytes (HWC, as resizeAndCrop returns them) -> the model's float32 input (3, S, S)
export function normalize(rgb, size, tables) {
  const [red, green, blue] = tables;
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = red[rgb[3 * i]];
    out[plane + i] = green[rgb[3 * i + 1]];
    out[2 * plane + i] = blue[rgb[3 * i + 2]];
  }
  return out;
}
