// View transform (image pixels <-> screen CSS pixels) and quad helpers.
// screen = R(rot * 90deg) * (scale * image) + (tx, ty); rotation is a multiple of 90deg,
// so cos/sin are exact and the inverse never drifts.

const COS = [1, 0, -1, 0];
const SIN = [0, 1, 0, -1];

export class View {
  constructor() { this.scale = 1; this.rot = 0; this.tx = 0; this.ty = 0; }

  matrix() {
    const c = COS[this.rot] * this.scale, s = SIN[this.rot] * this.scale;
    return [c, s, -s, c, this.tx, this.ty]; // canvas setTransform(a, b, c, d, e, f)
  }

  toScreen(x, y) {
    const c = COS[this.rot], s = SIN[this.rot];
    return [this.scale * (c * x - s * y) + this.tx, this.scale * (s * x + c * y) + this.ty];
  }

  toImage(sx, sy) {
    const c = COS[this.rot], s = SIN[this.rot];
    const dx = (sx - this.tx) / this.scale, dy = (sy - this.ty) / this.scale;
    return [c * dx + s * dy, -s * dx + c * dy];
  }

  // An image-pixel step for a step of (dx, dy) along the screen's axes: turned back by the view's
  // rotation, not scaled (exact, as cos and sin are 0 or ±1).
  toImageDir(dx, dy) {
    const c = COS[this.rot], s = SIN[this.rot];
    return [c * dx + s * dy, -s * dx + c * dy];
  }

  fit(imgW, imgH, viewW, viewH, margin = 0.96) {
    const rw = this.rot % 2 ? imgH : imgW, rh = this.rot % 2 ? imgW : imgH;
    this.scale = Math.min(viewW / rw, viewH / rh) * margin;
    this.centerOn(imgW / 2, imgH / 2, viewW / 2, viewH / 2);
  }

  // Put image point (x, y) at screen point (sx, sy).
  centerOn(x, y, sx, sy) {
    this.tx = 0; this.ty = 0;
    const [ox, oy] = this.toScreen(x, y);
    this.tx = sx - ox; this.ty = sy - oy;
  }

  zoomAt(factor, sx, sy, min = 0.02, max = 40) {
    const [x, y] = this.toImage(sx, sy);
    this.scale = Math.min(max, Math.max(min, this.scale * factor));
    this.centerOn(x, y, sx, sy);
  }

  rotate(steps, sx, sy) {
    const [x, y] = this.toImage(sx, sy);
    this.rot = (((this.rot + steps) % 4) + 4) % 4;
    this.centerOn(x, y, sx, sy);
  }
}

// Clockwise on screen (y down), keeping the first corner: the formula's top-left as read,
// however the photo is turned. A counter-clockwise [p0, p1, p2, p3] becomes [p0, p3, p2, p1],
// as the server stores quads (common/geometry.py clockwise_quad).
export function clockwiseQuad(pts) {
  const p = pts.map(([x, y]) => [x, y]);
  let area2 = 0;
  for (let i = 0; i < 4; i++) area2 += p[i][0] * p[(i + 1) % 4][1] - p[(i + 1) % 4][0] * p[i][1];
  return area2 < 0 ? [p[0], p[3], p[2], p[1]] : p;
}

// The next corner (clockwise) becomes the first: turns the quad's reading direction by 90°.
export function rollQuad(pts) {
  return [1, 2, 3, 0].map((k) => [pts[k][0], pts[k][1]]);
}

export function pointInPolygon(x, y, pts) {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i], [xj, yj] = pts[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

export function selfIntersecting(p) {
  const cross = (a, b, c) => (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
  const hits = (a, b, c, d) => cross(a, b, c) * cross(a, b, d) < 0 && cross(c, d, a) * cross(c, d, b) < 0;
  return hits(p[0], p[1], p[2], p[3]) || hits(p[1], p[2], p[3], p[0]);
}

// Homography mapping the unit square corners (0,0),(1,0),(1,1),(0,1) to quad q.
function squareToQuad(q) {
  const [[x0, y0], [x1, y1], [x2, y2], [x3, y3]] = q;
  const dx1 = x1 - x2, dx2 = x3 - x2, dy1 = y1 - y2, dy2 = y3 - y2;
  const sx = x0 - x1 + x2 - x3, sy = y0 - y1 + y2 - y3;
  const den = dx1 * dy2 - dx2 * dy1 || 1e-12;
  const g = (sx * dy2 - dx2 * sy) / den, h = (dx1 * sy - sx * dy1) / den;
  return (u, v) => {
    const w = g * u + h * v + 1;
    return [((x1 - x0 + g * x1) * u + (x3 - x0 + h * x3) * v + x0) / w,
      ((y1 - y0 + g * y1) * u + (y3 - y0 + h * y3) * v + y0) / w];
  };
}

// Draw `src` (image pixels) warped so that quad q fills the W x H canvas context:
// a grid of cells, each split into two triangles drawn with an affine transform.
// Size of a quad straightened from its first corner (the formula's top-left as read):
// the longer of its top and bottom edges by the longer of its sides, as the exports crop it.
export function quadCropSize(q) {
  const d = (a, b) => Math.hypot(b[0] - a[0], b[1] - a[1]);
  return [Math.max(d(q[0], q[1]), d(q[3], q[2])), Math.max(d(q[0], q[3]), d(q[1], q[2]))];
}

export function warpQuad(ctx, src, q, W, H, n = 8) {
  const map = squareToQuad(q);
  const grid = [];
  for (let j = 0; j <= n; j++) for (let i = 0; i <= n; i++) grid.push(map(i / n, j / n));
  const P = (i, j) => grid[j * (n + 1) + i];
  const D = (i, j) => [(i / n) * W, (j / n) * H];
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      tri(ctx, src, [P(i, j), P(i + 1, j), P(i + 1, j + 1)], [D(i, j), D(i + 1, j), D(i + 1, j + 1)]);
      tri(ctx, src, [P(i, j), P(i + 1, j + 1), P(i, j + 1)], [D(i, j), D(i + 1, j + 1), D(i, j + 1)]);
    }
  }
}

function tri(ctx, src, s, d) {
  // Affine map taking source triangle s to destination triangle d.
  const [[x0, y0], [x1, y1], [x2, y2]] = s;
  const [[u0, v0], [u1, v1], [u2, v2]] = d;
  const den = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
  if (Math.abs(den) < 1e-9) return;
  const a = ((u1 - u0) * (y2 - y0) - (u2 - u0) * (y1 - y0)) / den;
  const c = ((u2 - u0) * (x1 - x0) - (u1 - u0) * (x2 - x0)) / den;
  const b = ((v1 - v0) * (y2 - y0) - (v2 - v0) * (y1 - y0)) / den;
  const dd = ((v2 - v0) * (x1 - x0) - (v1 - v0) * (x2 - x0)) / den;
  const e = u0 - a * x0 - c * y0, f = v0 - b * x0 - dd * y0;
  ctx.save();
  ctx.beginPath();
  // Grow the clip a little around the centroid so neighbouring cells leave no seam.
  const cx = (u0 + u1 + u2) / 3, cy = (v0 + v1 + v2) / 3;
  d.forEach(([u, v], k) => {
    const len = Math.hypot(u - cx, v - cy) || 1;
    const gx = u + ((u - cx) / len) * 0.7, gy = v + ((v - cy) / len) * 0.7;
    if (k === 0) ctx.moveTo(gx, gy); else ctx.lineTo(gx, gy);
  });
  ctx.closePath();
  ctx.clip();
  ctx.setTransform(a, b, c, dd, e, f);
  ctx.drawImage(src, 0, 0);
  ctx.restore();
}
