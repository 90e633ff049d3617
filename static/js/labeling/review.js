// Review page: the annotation drawn over the image, each region's LaTeX rendered
// beside its straightened crop; accept, accept with corrections (each region's text is
// editable, previewed live by the labeling page's KaTeX renderer, and a selected quad's corners
// can be dragged on the image or moved with the keys 1-4 and the arrows), or reject with reasons,
// then the next one.
import { api, ApiError, fieldErrors } from "./api.js";
import { activeCorner as activeCornerOf, clampToImage, drawActiveCorner, handleCornerKey, settleQuad, showCornerStatus } from "./corners.js";
import { pointInPolygon, quadCropSize, selfIntersecting, warpQuad } from "./geometry.js";
import { colorOf, ImageCanvas, maskCanvasFrom, renderLatex } from "./viewer.js";

const root = document.getElementById("review-app");
const ANN = Number(root.dataset.annotation);
const $ = (s) => document.querySelector(s);
// corner: the active corner ({i: region, k: corner}) that the arrow keys move.
const state = { annotation: null, regions: [], selected: -1, drag: null, corner: null };
const viewer = new ImageCanvas($("#canvas"), {
  overlay: (ctx, dpr) => {
    viewer.drawMasks(state.regions, state.selected);
    viewer.drawQuads(state.regions, state.selected, dpr);
    const r = state.regions[state.selected];
    drawActiveCorner(ctx, viewer.view, r && r.points, activeCorner(), dpr);
  },
});
window.reviewer = { state, viewer };

function flash(text, kind = "info") {
  const div = document.createElement("div");
  div.className = `note note-${kind}`;
  div.setAttribute("role", kind === "error" ? "alert" : "status");
  div.textContent = text;
  $("#messages").prepend(div);
}

function crop(canvas, r) {
  const ctx = canvas.getContext("2d");
  const MAXW = 330, MAXH = 110;
  if (r.kind === "quad") {
    const q = r.points;  // straightened from its first corner, the formula's top-left as read
    const [w, h] = quadCropSize(q);
    const s = Math.min(MAXW / w, MAXH / h, 4);
    canvas.width = Math.max(1, Math.round(w * s)); canvas.height = Math.max(1, Math.round(h * s));
    warpQuad(ctx, viewer.bitmap, q, canvas.width, canvas.height);
  } else if (r.bbox) {
    const [x0, y0, x1, y1] = r.bbox;
    const s = Math.min(MAXW / (x1 - x0), MAXH / (y1 - y0), 4);
    canvas.width = Math.round((x1 - x0) * s); canvas.height = Math.round((y1 - y0) * s);
    ctx.drawImage(viewer.bitmap, x0, y0, x1 - x0, y1 - y0, 0, 0, canvas.width, canvas.height);
  }
}

// The preview of one region's LaTeX, with KaTeX's complaint under it (the same renderer as the
// labeling page's live preview: viewer.js renderLatex).
function preview(i) {
  const r = state.regions[i];
  const err = renderLatex($(`#latex-preview-${i}`), r.latex || "");
  const el = $(`#latex-error-${i}`);
  el.hidden = !err && !r.serverError;
  el.textContent = r.serverError || (err ? `KaTeX cannot render this: ${err}` : "");
  $(`#latex-${i}`).setAttribute("aria-invalid", r.serverError ? "true" : "false");
}

const latexChanged = (r) => (r.latex || "").trim() !== (r.original || "").trim();  // trimmed, as the server compares
const pointsChanged = (r) => !!r.points && JSON.stringify(r.points) !== JSON.stringify(r.originalPoints);

// What the reviewer changed, as the API takes it: {index: latex} for text only (the form the
// server has always taken), {index: {points, latex?}} for a region whose corners were moved.
function corrections() {
  const out = {};
  state.regions.forEach((r, i) => {
    const key = r.index ?? i;
    if (pointsChanged(r)) out[key] = { points: r.points, ...(latexChanged(r) ? { latex: r.latex.trim() } : {}) };
    else if (latexChanged(r)) out[key] = r.latex.trim();
  });
  return out;
}

function markChanged(i) {
  const r = state.regions[i];
  const changed = latexChanged(r) || pointsChanged(r);
  $(`#region-${i}`).classList.toggle("corrected", changed);
  $(`#undo-${i}`).hidden = !changed;
  $(`#moved-${i}`).hidden = !pointsChanged(r);
  const n = Object.keys(corrections()).length;
  $("#corrections-count").textContent = n ? `${n} region(s) corrected` : "";
  // A fix means accepting with it, unless the reviewer already chose to reject.
  if (changed && !$("#decision-reject").checked) $("#decision-correct").checked = true;
}

function renderRegions() {
  const ol = $("#review-regions");
  ol.innerHTML = "";
  state.regions.forEach((r, i) => {
    const li = document.createElement("li");
    li.id = `region-${i}`;
    li.style.borderLeftColor = colorOf(i);
    const head = document.createElement("button");
    head.type = "button"; head.className = "link-btn";
    head.textContent = `${i + 1}. ${r.kind === "quad" ? "Quad" : "Mask"}${r.illegible ? " · illegible" : ""}${r.cut_off ? " · cut off" : ""}${r.categories.length ? ` · ${r.categories.join(", ")}` : ""}`;
    head.addEventListener("click", () => select(i));
    const box = document.createElement("div"); box.className = "crop-box";
    const c = document.createElement("canvas"); c.id = `crop-${i}`; c.setAttribute("aria-label", `Crop of region ${i + 1}`);
    box.appendChild(c);
    const tex = document.createElement("div"); tex.className = "latex-preview"; tex.id = `latex-preview-${i}`;
    const label = document.createElement("label");
    label.htmlFor = `latex-${i}`; label.className = "small";
    label.textContent = `LaTeX of region ${i + 1} (edit to correct it)`;
    const ta = document.createElement("textarea");
    ta.id = `latex-${i}`; ta.rows = 2; ta.spellcheck = false; ta.autocomplete = "off"; ta.className = "review-latex";
    ta.value = r.latex || "";
    if (r.illegible) {
      // The server refuses it: no export delivers an illegible region's text (reject to have it read).
      ta.readOnly = true;
      label.textContent = `LaTeX of region ${i + 1} (flagged illegible: not delivered, so not corrected; reject to have it read)`;
    }
    ta.setAttribute("aria-describedby", `latex-error-${i}`);
    const err = document.createElement("p"); err.id = `latex-error-${i}`; err.className = "latex-error-msg"; err.hidden = true;
    err.setAttribute("role", "alert");
    const undo = document.createElement("button");
    undo.type = "button"; undo.id = `undo-${i}`; undo.className = "link-btn small"; undo.hidden = true;
    undo.textContent = "Undo my correction";
    undo.addEventListener("click", () => {
      r.latex = r.original; ta.value = r.original; delete r.serverError;
      if (r.originalPoints) { r.points = copyPoints(r.originalPoints); crop(c, r); announceCorner(); viewer.redraw(); }
      preview(i); markChanged(i); ta.focus();
    });
    ta.addEventListener("input", () => {
      r.latex = ta.value;
      delete r.serverError;
      preview(i);
      markChanged(i);
    });
    const moved = document.createElement("p");
    moved.id = `moved-${i}`; moved.className = "small corners-moved"; moved.hidden = true;
    moved.textContent = "Corners moved by you (sent with Accept with corrections).";
    li.append(head, box, tex, label, ta, err, moved, undo);
    ol.appendChild(li);
    crop(c, r);
    preview(i);
  });
}

async function start() {
  const ann = await api("GET", `/api/v1/annotations/${ANN}/`);
  state.annotation = ann;
  const task = await api("GET", `/api/v1/tasks/${ann.task}/`);
  await viewer.load(task.image_url, task.image_width, task.image_height);
  state.regions = ann.regions.map((r, i) => {
    // Own copies of the corners: dragging one must leave the answer as loaded (what "changed" compares with).
    const own = { ...r, original: r.latex, points: copyPoints(r.points), originalPoints: copyPoints(r.points) };
    if (r.kind === "mask") { const m = maskCanvasFrom(r.mask, viewer.width, viewer.height, i); return { ...own, maskCanvas: m.canvas, maskOrigin: m.origin, bbox: m.bbox }; }
    return own;
  });
  renderRegions();
  viewer.redraw();
  root.dataset.ready = "1";
}

$("#zoom-in").addEventListener("click", () => viewer.zoom(1.25));
$("#zoom-out").addEventListener("click", () => viewer.zoom(0.8));
$("#zoom-fit").addEventListener("click", () => viewer.fit());
$("#rotate").addEventListener("click", () => viewer.rotate(1));
$("#opacity").addEventListener("input", (e) => { viewer.maskOpacity = Number(e.target.value) / 100; viewer.redraw(); });
// Moving corners: click a quad (or its name in the list) to select it, then drag one of its
// corner handles, as on the labeling page; anything else drags the view. Corners stay on the
// photo and the quad is kept clockwise from its first corner, as the server stores it.
const canvas = viewer.canvas;
const HANDLE_PX = 10;  // how near a corner handle a press must be, in screen pixels (as label.js)
const copyPoints = (pts) => (pts ? pts.map(([x, y]) => [x, y]) : null);
const clampPoint = (p) => clampToImage(p, viewer.width, viewer.height);

function select(i) {
  if (state.corner && state.corner.i !== i) state.corner = null;  // another region: pick its corner anew
  state.selected = i;
  announceCorner();
  viewer.redraw();
}

function activeCorner() { return activeCornerOf(state); }
// The live status line: where the active corner is, for a screen reader and a precise eye.
function announceCorner() { showCornerStatus($("#corner-status"), state); }

// After corners moved (a drag released, an arrow key): the crop, the preview and the region's
// "corrected" mark follow, and the decision becomes "Accept with corrections".
function cornersMoved(i, { warnCrossing = true } = {}) {
  const r = state.regions[i];
  if (warnCrossing && selfIntersecting(r.points)) flash(`Region ${i + 1}: those corners cross each other; move a corner to fix the shape.`, "error");
  delete r.serverError;
  crop($(`#crop-${i}`), r);
  preview(i);
  markChanged(i);
  announceCorner();
  viewer.redraw();
}

function cornerAt(sx, sy) {
  const r = state.regions[state.selected];
  if (!r || r.kind !== "quad" || !r.points) return -1;  // only a drawn quad shows handles (viewer.drawQuads)
  let best = -1, dist = HANDLE_PX;
  r.points.forEach(([x, y], k) => {
    const [px, py] = viewer.view.toScreen(x, y);
    const d = Math.hypot(px - sx, py - sy);
    if (d <= dist) { dist = d; best = k; }
  });
  return best;
}

function quadAt(sx, sy) {
  const [x, y] = viewer.view.toImage(sx, sy);
  for (let i = state.regions.length - 1; i >= 0; i--) {
    const r = state.regions[i];
    if (r.kind === "quad" && r.points && pointInPolygon(x, y, r.points)) return i;
  }
  return -1;
}

canvas.addEventListener("pointerdown", (e) => {
  canvas.setPointerCapture(e.pointerId);
  const [sx, sy] = viewer.eventPoint(e);
  if (e.button === 0 && viewer.bitmap) {
    const k = cornerAt(sx, sy);
    if (k >= 0) {
      state.drag = { k, moved: false };
      state.corner = { i: state.selected, k };  // the arrow keys then fine-tune it
      announceCorner();
      viewer.redraw();
      return;
    }
    const hit = quadAt(sx, sy);
    if (hit >= 0 && hit !== state.selected) select(hit);
  }
  viewer.startPan(e);
});
canvas.addEventListener("pointermove", (e) => {
  const [sx, sy] = viewer.eventPoint(e);
  const d = state.drag;
  if (d) {
    state.regions[state.selected].points[d.k] = clampPoint(viewer.view.toImage(sx, sy));
    d.moved = true;
    viewer.redraw();
    return;
  }
  if (!viewer.movePan(e)) canvas.style.cursor = cornerAt(sx, sy) >= 0 ? "move" : "";
});
canvas.addEventListener("pointerup", () => {
  const d = state.drag;
  state.drag = null;
  if (!d) { viewer.endPan(); return; }
  if (!d.moved) return;
  const i = state.selected, r = state.regions[i];
  const settled = settleQuad(r.points, d.k);
  r.points = settled.points;
  state.corner = { i, k: settled.corner };
  cornersMoved(i);
});

// A corner key (corners.js): pick the active corner of the selected quad, or move it as a drag would
// (a crossing is said once, when the corners come to cross, not at every key).
function cornerKeyDown(e) {
  const used = handleCornerKey(e, state, viewer, (i, crossed) => cornersMoved(i, { warnCrossing: !crossed }));
  if (used) { announceCorner(); viewer.redraw(); }
  return used;
}

canvas.addEventListener("viewchange", () => { $("#zoom-level").textContent = `${Math.round(viewer.view.scale * 100)}%`; });
document.addEventListener("keydown", (e) => {
  const t = document.activeElement;
  if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" && t.type === "text")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (cornerKeyDown(e)) return;
  if (e.key === "Escape" && state.corner) { state.corner = null; announceCorner(); viewer.redraw(); return; }
  const act = { a: () => $("#decision-accept").click(), c: () => $("#decision-correct").click(),
    x: () => $("#decision-reject").click(), "+": () => viewer.zoom(1.25),
    "-": () => viewer.zoom(0.8), 0: () => viewer.fit(), R: () => viewer.rotate(1) }[e.key];
  if (act) { e.preventDefault(); act(); }
});

$("#btn-send").addEventListener("click", async () => {
  const choice = document.querySelector('input[name="decision"]:checked')?.value;
  const decision = choice === "accept_corrected" ? "accept" : choice;
  // Reasons belong to a rejection: ones ticked before the reviewer chose Accept are not sent with it.
  const reasons = decision === "reject" ? [...document.querySelectorAll('input[name="reasons"]:checked')].map((b) => b.value) : [];
  const comment = $("#review-comment").value;
  const fixes = corrections();
  const n = Object.keys(fixes).length;
  if (!decision) { flash("Choose Accept, Accept with corrections or Reject first.", "error"); return; }
  if (decision === "reject" && !reasons.length) { flash("Tick at least one reason for the rejection.", "error"); return; }
  // Edits are never dropped silently: a plain Accept with changed LaTeX would deliver the old text.
  if (choice === "accept" && n) { flash(`You changed ${n} region(s): choose "Accept with corrections" to keep your changes, or undo them.`, "error"); return; }
  if (choice === "accept_corrected" && !n) { flash("Nothing was changed: edit a region's LaTeX or drag its corners, or choose Accept.", "error"); return; }
  $("#btn-send").disabled = true;
  $("#save-state").textContent = "Sending…";
  const body = { annotation: ANN, decision, reasons, comment, version: state.annotation.version };
  if (choice === "accept_corrected") body.corrections = fixes;
  try {
    await api("POST", "/api/v1/reviews/", body);
    $("#save-state").textContent = "Sent. Opening the next one…";
    openNext();
  } catch (e) {
    $("#btn-send").disabled = false;
    $("#save-state").textContent = "";
    if (e instanceof ApiError && e.status === 400 && e.body.annotation && await decidedElsewhere()) return;
    if (e instanceof ApiError && e.status === 400) fieldErrors(e.body).forEach(([k, m]) => showError(k, m));
    else if (e instanceof ApiError && e.status === 409) flash(`${e.message} Reload the page to see the new version.`, "error");
    else flash(e.message, "error");
  }
});

// A correction the server refused ("corrections.2", "corrections.2.latex", "corrections.2.points")
// is shown under that region's field; the rest as messages.
function showError(key, message) {
  const m = /^corrections\.(\d+)(?:\.(latex|points))?$/.exec(key);
  const i = m ? state.regions.findIndex((r, j) => String(r.index ?? j) === m[1]) : -1;
  if (i < 0) { flash(`${key}: ${message}`, "error"); return; }
  const corners = m[2] === "points";
  state.regions[i].serverError = corners ? `Corners: ${message}` : message;
  preview(i);
  if (corners) select(i); else $(`#latex-${i}`).focus();
  flash(`Region ${i + 1}${corners ? " (corners)" : ""}: ${message}`, "error");
}

// The next annotation is taken (held for this reviewer) by a POST, never by a GET: the page's
// #next-form carries the CSRF token, and the server answers 303 to that annotation's screen
// (or to the queue page when nothing is free).
function openNext() {
  $("#next-form").submit();
}

// A hold only steers the queue: another reviewer who opened this annotation by its address may
// have decided it first, and then this decision cannot be stored. Say so, and offer the next one (Send could only fail again).
async function decidedElsewhere() {
  let now = null;
  try { now = await api("GET", `/api/v1/annotations/${ANN}/`); } catch (e) { /* gone from view: still decided */ }
  if (now && now.status === "submitted") return false;  // still waiting: the error is about something else
  const what = now ? `already ${now.status}` : "already decided";
  flash(`Another reviewer has ${what} this annotation while you were looking at it; your decision was not stored.`, "error");
  $("#btn-send").disabled = true;
  const next = document.createElement("button");  // submits #next-form: a POST takes the next one
  next.type = "submit"; next.id = "open-next"; next.className = "btn";
  next.setAttribute("form", "next-form");
  next.textContent = "Open the next one";
  $("#btn-send").after(next);
  next.focus();
  return true;
}

start().catch((e) => flash(`This annotation could not be loaded: ${e.message}`, "error"));
