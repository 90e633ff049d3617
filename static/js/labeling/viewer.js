// The image on a canvas: decoded once into an ImageBitmap, redrawn under a view
// transform on requestAnimationFrame; wheel zoom around the cursor, drag to pan,
// rotate by 90 degrees, fit. Shared by the labeling and the review page.
import { View } from "./geometry.js";
import { decodeToImageData, rleBox } from "./rle.js";

export const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
export const colorOf = (i) => COLORS[i % COLORS.length];
export const rgbOf = (i) => {
  const h = colorOf(i);
  return [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));
};

export class ImageCanvas {
  constructor(canvas, { overlay } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.view = new View();
    this.bitmap = null;
    this.overlay = overlay || (() => {});
    this.maskOpacity = 0.45;
    this.panning = null;
    this._pending = false;
    this.resize = this.resize.bind(this);
    new ResizeObserver(this.resize).observe(canvas.parentElement);
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [sx, sy] = this.eventPoint(e);
      this.view.zoomAt(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), sx, sy);
      this.autoFit = false;
      this.changed();
    }, { passive: false });
  }

  async load(url, width, height) {
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) throw new Error(`The image could not be loaded (HTTP ${res.status}).`);
    // The server already applied EXIF orientation: do not let the browser apply it twice.
    this.bitmap = await createImageBitmap(await res.blob(), { imageOrientation: "none" });
    this.width = width || this.bitmap.width;
    this.height = height || this.bitmap.height;
    this.resize();
    this.fit();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.cssW = Math.max(1, box.width);
    this.cssH = Math.max(1, box.height);
    this.canvas.style.width = `${this.cssW}px`;
    this.canvas.style.height = `${this.cssH}px`;
    this.canvas.width = Math.round(this.cssW * dpr);
    this.canvas.height = Math.round(this.cssH * dpr);
    // Until the person zooms or pans, keep the whole image in view as the layout settles.
    if (this.autoFit && this.bitmap) this.view.fit(this.width, this.height, this.cssW, this.cssH);
    this.redraw();
  }

  eventPoint(e) {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  fit() { if (this.bitmap) { this.view.fit(this.width, this.height, this.cssW, this.cssH); this.autoFit = true; this.changed(); } }
  zoom(f) { this.view.zoomAt(f, this.cssW / 2, this.cssH / 2); this.autoFit = false; this.changed(); }
  rotate(steps = 1) { this.view.rotate(steps, this.cssW / 2, this.cssH / 2); this.autoFit = false; this.changed(); }
  changed() { this.redraw(); this.canvas.dispatchEvent(new CustomEvent("viewchange")); }

  startPan(e) { this.panning = { x: e.clientX, y: e.clientY }; this.canvas.classList.add("panning"); }
  movePan(e) {
    if (!this.panning) return false;
    this.autoFit = false;
    this.view.tx += e.clientX - this.panning.x;
    this.view.ty += e.clientY - this.panning.y;
    this.panning = { x: e.clientX, y: e.clientY };
    this.changed();
    return true;
  }
  endPan() { const was = !!this.panning; this.panning = null; this.canvas.classList.remove("panning"); return was; }

  redraw() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => { this._pending = false; this.draw(); });
  }

  draw() {
    const { ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#2b2f36";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.bitmap) return;
    const [a, b, c, d, e, f] = this.view.matrix();
    ctx.setTransform(a * dpr, b * dpr, c * dpr, d * dpr, e * dpr, f * dpr);
    // Crisp pixels when zoomed in, so corners can be placed on exact pixels.
    ctx.imageSmoothingEnabled = this.view.scale < 2;
    ctx.drawImage(this.bitmap, 0, 0);
    this.overlay(ctx, dpr);
  }

  // In image transform: draw mask canvases with the overlay opacity.
  drawMasks(regions, selected) {
    const { ctx } = this;
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    regions.forEach((r, i) => {
      if (r.kind !== "mask" || !r.maskCanvas) return;
      ctx.globalAlpha = Math.min(1, this.maskOpacity + (i === selected ? 0.15 : 0));
      const [ox, oy] = r.maskOrigin || [0, 0];
      ctx.drawImage(r.maskCanvas, ox, oy);
    });
    ctx.restore();
  }

  // In screen space: quad outlines with numbered labels and corner handles.
  drawQuads(regions, selected, dpr) {
    const { ctx } = this;
    ctx.save();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    regions.forEach((r, i) => {
      const col = colorOf(i);
      let label = null;
      if (r.kind === "quad" && r.points) {
        const pts = r.points.map(([x, y]) => this.view.toScreen(x, y));
        ctx.beginPath();
        pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.closePath();
        ctx.fillStyle = `${col}${i === selected ? "33" : "1a"}`;
        ctx.fill();
        ctx.lineWidth = i === selected ? 3 : 2;
        ctx.strokeStyle = col;
        ctx.stroke();
        // The formula's top edge as read (corner 1 to corner 2) thicker, corner 1 a filled dot.
        ctx.beginPath(); ctx.moveTo(pts[0][0], pts[0][1]); ctx.lineTo(pts[1][0], pts[1][1]);
        ctx.lineWidth = i === selected ? 6 : 4; ctx.lineCap = "round"; ctx.stroke(); ctx.lineCap = "butt";
        if (i === selected) {
          pts.forEach(([x, y]) => {
            ctx.fillStyle = "#fff"; ctx.fillRect(x - 5, y - 5, 10, 10);
            ctx.strokeStyle = col; ctx.lineWidth = 2; ctx.strokeRect(x - 5, y - 5, 10, 10);
          });
        }
        ctx.beginPath(); ctx.arc(pts[0][0], pts[0][1], 6, 0, Math.PI * 2);
        ctx.fillStyle = col; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
        label = pts.reduce((m, p) => (p[1] < m[1] || (p[1] === m[1] && p[0] < m[0]) ? p : m));
      } else if (r.kind === "mask" && r.bbox) {
        const [x0, y0] = [r.bbox[0], r.bbox[1]];
        label = this.view.toScreen(x0, y0);
      }
      if (label) {
        const text = String(i + 1);
        ctx.font = "bold 13px system-ui, sans-serif";
        const w = ctx.measureText(text).width + 8;
        ctx.fillStyle = col;
        ctx.fillRect(label[0], label[1] - 18, w, 17);
        ctx.fillStyle = "#fff";
        ctx.fillText(text, label[0] + 4, label[1] - 5);
      }
    });
    ctx.restore();
  }
}

// A mask is held on a canvas the size of its bounding box, placed at `origin` ([x, y] in image
// pixels), painted in the region's colour: an image-sized RGBA canvas per mask would take
// 192 MB each on a 48 MP photo (and a page has 20-60 formulas). Returns {canvas, bbox, origin}.
export function maskCanvasFrom(rle, width, height, index) {
  const box = rle ? rleBox(rle) : null;
  const c = document.createElement("canvas");
  c.width = box ? box[2] - box[0] : 1; c.height = box ? box[3] - box[1] : 1;
  // Masks are read back (hit tests, RLE encoding on save): a CPU-backed canvas makes that cheap.
  // The first getContext fixes the option for every later call on this canvas.
  const ctx = c.getContext("2d", { willReadFrequently: true });
  if (box) ctx.putImageData(decodeToImageData(rle, rgbOf(index), box), 0, 0);
  return { canvas: c, bbox: box, origin: box ? [box[0], box[1]] : [0, 0] };
}

// Make the mask canvas of region `r` cover `box` (image pixels, cut to the width x height image),
// growing it with some room to spare so that a stroke does not reallocate at every move.
export function coverMask(r, box, width, height) {
  const c = r.maskCanvas;
  const [ox, oy] = r.maskOrigin || [0, 0];
  const want = [Math.max(0, Math.floor(box[0])), Math.max(0, Math.floor(box[1])),
    Math.min(width, Math.ceil(box[2])), Math.min(height, Math.ceil(box[3]))];
  if (want[2] <= want[0] || want[3] <= want[1]) return;
  const empty = !r.bbox;  // a new mask's 1x1 canvas holds nothing yet
  if (!empty && want[0] >= ox && want[1] >= oy && want[2] <= ox + c.width && want[3] <= oy + c.height) return;
  const cur = empty ? want : [Math.min(ox, want[0]), Math.min(oy, want[1]), Math.max(ox + c.width, want[2]), Math.max(oy + c.height, want[3])];
  const padX = Math.max(64, Math.round((cur[2] - cur[0]) / 4)), padY = Math.max(64, Math.round((cur[3] - cur[1]) / 4));
  const next = [Math.max(0, cur[0] - padX), Math.max(0, cur[1] - padY), Math.min(width, cur[2] + padX), Math.min(height, cur[3] + padY)];
  const n = document.createElement("canvas");
  n.width = next[2] - next[0]; n.height = next[3] - next[1];
  const ctx = n.getContext("2d", { willReadFrequently: true });
  if (!empty) ctx.drawImage(c, ox - next[0], oy - next[1]);
  r.maskCanvas = n;
  r.maskOrigin = [next[0], next[1]];
}

export function bboxOf(img) {
  const { data, width, height } = img;
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4 + 3] >= 128) {
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
}

export function renderLatex(el, latex) {
  el.classList.remove("latex-error");
  if (!latex.trim()) { el.textContent = ""; return null; }
  if (!window.katex) { el.textContent = latex; return null; }
  try {
    window.katex.render(latex, el, { displayMode: true, throwOnError: true, strict: "ignore" });
    return null;
  } catch (e) {
    el.textContent = "";
    return String(e.message || e).replace(/^KaTeX parse error: /, "");
  }
}
