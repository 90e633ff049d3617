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

// Same, reading only the bounding box [x0, y0, x1, y1) of the mask (everything outside it is
// known to be empty): O(box area) instead of O(image area). The canvas may be smaller than the
// image: it then holds the image's pixels from `origin` ([x, y]) on, and `width` x `height` is
// the image's size (the canvas's own size by default: an image-sized canvas).
export function encodeCanvas(canvas, bbox, { width, height, origin } = {}) {
  const W = width || canvas.width, H = height || canvas.height;
  const [ox, oy] = origin || [0, 0];
  const counts = [];
  let cur = 0, run = 0;
  const push = (v, n) => {
    if (!n) return;
    if (v !== cur) { counts.push(run); run = 0; cur = v; }
    run += n;
  };
  if (bbox) {
    // Only what the canvas holds can be painted: the box is cut to it, and to the image.
    const x0 = Math.max(0, ox, Math.floor(bbox[0])), y0 = Math.max(0, oy, Math.floor(bbox[1]));
    const x1 = Math.min(W, ox + canvas.width, Math.ceil(bbox[2])), y1 = Math.min(H, oy + canvas.height, Math.ceil(bbox[3]));
    const bw = x1 - x0, bh = y1 - y0;
    if (bw > 0 && bh > 0) {
      const d = canvas.getContext("2d").getImageData(x0 - ox, y0 - oy, bw, bh).data;
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

// The pixel box [x0, y0, x1, y1) a mask covers, read from its runs (no pixel drawn); null if empty.
export function rleBox(rle) {
  const h = rle.size[0];
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1, pos = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (i % 2 && n > 0) {
      const a = Math.floor(pos / h), b = Math.floor((pos + n - 1) / h);
      x0 = Math.min(x0, a); x1 = Math.max(x1, b);
      if (a === b) { y0 = Math.min(y0, pos - a * h); y1 = Math.max(y1, pos + n - 1 - a * h); }
      else { y0 = 0; y1 = h - 1; }  // down to the bottom of one column and on from the top of the next
    }
    pos += n;
  }
  return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
}

// Paint an RLE into a fresh RGBA buffer with `rgb` on mask pixels: the buffer covers `box`
// ([x0, y0, x1, y1), the whole image by default) and nothing else. Returns ImageData.
export function decodeToImageData(rle, rgb, box = null) {
  const [h, w] = rle.size;
  const [bx0, by0, bx1, by1] = box || [0, 0, w, h];
  const bw = Math.max(1, bx1 - bx0), bh = Math.max(1, by1 - by0);
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const img = new ImageData(bw, bh);
  const px = new Uint32Array(img.data.buffer);
  const c = new Uint8ClampedArray([rgb[0], rgb[1], rgb[2], 255]);
  const colour = new Uint32Array(c.buffer)[0];  // the platform's byte order, as ImageData's
  let pos = 0, v = 0;
  for (const n of counts) {
    if (v) {
      // One column at a time: a run goes down a column and on at the top of the next.
      let k = pos;
      const end = pos + n;
      while (k < end) {
        const x = Math.floor(k / h), y = k - x * h, stop = Math.min(end, (x + 1) * h);
        if (x >= bx0 && x < bx1) {
          for (let yy = Math.max(y, by0), ye = Math.min(y + stop - k, by1); yy < ye; yy++) px[(yy - by0) * bw + (x - bx0)] = colour;
        }
        k = stop;
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
