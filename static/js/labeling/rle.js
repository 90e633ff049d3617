// COCO compressed RLE, byte-for-byte what pycocotools writes (column-major runs,
// starting with a run of zeros; counts after the third stored as deltas, 5 bits a char).

export function encodeCounts(counts) {
  let s = "";
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

export function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// RGBA ImageData of the mask canvas -> {size: [h, w], counts}; a pixel is "in" when alpha >= 128.
export function encodeImageData(data, w, h) {
  const counts = [];
  let cur = 0, run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = data[(y * w + x) * 4 + 3] >= 128 ? 1 : 0;
      if (v !== cur) { counts.push(run); run = 0; cur = v; }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts: encodeCounts(counts) };
}

// Same, reading only the bounding box [x0, y0, x1, y1) of the mask canvas (everything
// outside it is known to be empty): O(box area) instead of O(image area).
export function encodeCanvas(canvas, bbox) {
  const W = canvas.width, H = canvas.height;
  const counts = [];
  let cur = 0, run = 0;
  const push = (v, n) => {
    if (!n) return;
    if (v !== cur) { counts.push(run); run = 0; cur = v; }
    run += n;
  };
  if (bbox) {
    const x0 = Math.max(0, Math.floor(bbox[0])), y0 = Math.max(0, Math.floor(bbox[1]));
    const x1 = Math.min(W, Math.ceil(bbox[2])), y1 = Math.min(H, Math.ceil(bbox[3]));
    const bw = x1 - x0, bh = y1 - y0;
    if (bw > 0 && bh > 0) {
      const d = canvas.getContext("2d").getImageData(x0, y0, bw, bh).data;
      push(0, x0 * H);
      for (let x = 0; x < bw; x++) {
        push(0, y0);
        for (let y = 0; y < bh; y++) push(d[(y * bw + x) * 4 + 3] >= 128 ? 1 : 0, 1);
        push(0, H - y1);
      }
      push(0, (W - x1) * H);
    } else push(0, W * H);
  } else push(0, W * H);
  counts.push(run);
  return { size: [H, W], counts: encodeCounts(counts) };
}

// Paint an RLE into a fresh RGBA buffer with `rgb` on mask pixels; returns ImageData.
export function decodeToImageData(rle, rgb) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const img = new ImageData(w, h);
  const d = img.data;
  let pos = 0, v = 0;
  for (const n of counts) {
    if (v) {
      for (let k = pos; k < pos + n; k++) {
        const x = Math.floor(k / h), y = k - x * h, o = (y * w + x) * 4;
        d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = 255;
      }
    }
    pos += n; v = 1 - v;
  }
  return img;
}

export function isEmpty(rle) {
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  return counts.length < 2;
}
