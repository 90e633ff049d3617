// Moving a quad's corners from the keyboard, shared by the labeling and the review page: 1-4 pick
// the active corner (1 is the formula's top-left as read, then clockwise), the arrow keys move it
// by one image pixel (with Shift: 10) in the direction it appears to move on screen, whatever the
// view's rotation and zoom. Corners stay on the photo and the quad stays clockwise from its first
// corner, as after a mouse drag. The pages apply the result through their own drag paths.
import { clockwiseQuad, selfIntersecting } from "./geometry.js";

const PICK = { 1: 0, 2: 1, 3: 2, 4: 3 };
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
export const BIG_STEP = 10;

export const isArrow = (key) => Object.hasOwn(ARROWS, key);

export function clampToImage([x, y], width, height) {
  return [Math.min(width, Math.max(0, x)), Math.min(height, Math.max(0, y))];
}

// The quad as stored (clockwise from its first corner) and where corner k went: clockwiseQuad
// keeps the first corner and reverses the others when the quad had turned counter-clockwise.
export function settleQuad(pts, k = -1) {
  const out = clockwiseQuad(pts);
  const same = (a, b) => a[0] === b[0] && a[1] === b[1];
  return { points: out, corner: k < 0 || same(out[k], pts[k]) ? k : (4 - k) % 4 };
}

// A focused control that uses the arrow keys itself (a text field, a slider, a radio group, a list box).
function ownsArrows(el) {
  if (!el) return false;
  if (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable) return true;
  return el.tagName === "INPUT" && !["checkbox", "button", "submit", "reset", "image", "file", "color"].includes(el.type);
}

// What a key press does to the selected quad: null when it is no corner key (or none applies now);
// { corner } when it picks the active corner; { corner, points, moved } when an arrow moves it
// (`moved` false when the photo's edge held it where it was).
export function cornerKey(e, { points, corner, view, width, height }) {
  if (!points || e.ctrlKey || e.metaKey || e.altKey) return null;
  if (Object.hasOwn(PICK, e.key)) return { corner: PICK[e.key] };
  const dir = ARROWS[e.key];
  if (!dir || corner < 0 || corner > 3 || ownsArrows(document.activeElement)) return null;
  const step = e.shiftKey ? BIG_STEP : 1;
  const [dx, dy] = view.toImageDir(dir[0] * step, dir[1] * step);
  const pts = points.map(([x, y]) => [x, y]);
  pts[corner] = clampToImage([pts[corner][0] + dx, pts[corner][1] + dy], width, height);
  const moved = pts[corner][0] !== points[corner][0] || pts[corner][1] !== points[corner][1];
  return { ...settleQuad(pts, corner), moved };
}

// A page's keydown step: a corner key picks or moves the active corner of the selected quad
// (`state` as below; `viewer` an ImageCanvas); after a move, `moved(i, crossedBefore)` runs the
// page's own drag-release path for region i. True when the key was a corner key (then consumed).
export function handleCornerKey(e, state, viewer, moved) {
  const i = state.selected, r = state.regions[i];
  if (state.drag || !r || r.kind !== "quad" || !r.points) return false;
  const act = cornerKey(e, { points: r.points, corner: activeCorner(state), view: viewer.view, width: viewer.width, height: viewer.height });
  if (!act) return false;
  e.preventDefault();
  state.corner = { i, k: act.corner };
  if (act.moved) {
    const crossed = selfIntersecting(r.points);
    r.points = act.points;
    moved(i, crossed);
  }
  return true;
}

// The selected quad's active corner (0-3), or -1: a page's state holds regions, selected and
// corner ({i: region, k: corner}, or null), the corner picked last.
export function activeCorner(state) {
  const c = state.corner, r = state.regions[state.selected];
  return c && c.i === state.selected && r && r.kind === "quad" && r.points ? c.k : -1;
}

// Put the active corner's place on the page's live status line (`el`), or empty it.
export function showCornerStatus(el, state) {
  const r = state.regions[state.selected];
  const text = cornerStatus(state.selected, activeCorner(state), r && r.points);
  if (el.textContent !== text) el.textContent = text;  // unchanged: nothing to read out again
}

const fmt = (v) => String(Number(v.toFixed(2)));

// What the status line says (and a screen reader reads out): "Corner 2 of region 3: (x, y)".
export function cornerStatus(region, k, points) {
  if (k < 0 || !points) return "";
  const [x, y] = points[k];
  return `Corner ${k + 1} of region ${region + 1}: (${fmt(x)}, ${fmt(y)})`;
}

// The active corner, highlighted over the handles viewer.drawQuads draws: a yellow ring with a
// dark edge (visible on light and dark photos) and the corner's number. In screen space.
export function drawActiveCorner(ctx, view, points, k, dpr) {
  if (k < 0 || !points) return;
  const [x, y] = view.toScreen(points[k][0], points[k][1]);
  ctx.save();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.beginPath(); ctx.arc(x, y, 10, 0, Math.PI * 2);
  ctx.lineWidth = 5; ctx.strokeStyle = "#1f242b"; ctx.stroke();
  ctx.lineWidth = 3; ctx.strokeStyle = "#ffd400"; ctx.stroke();
  ctx.font = "bold 12px system-ui, sans-serif";
  const text = String(k + 1), w = ctx.measureText(text).width + 6;
  ctx.fillStyle = "#ffd400"; ctx.fillRect(x + 11, y + 6, w, 15);
  ctx.fillStyle = "#1f242b"; ctx.fillText(text, x + 14, y + 18);
  ctx.restore();
}
