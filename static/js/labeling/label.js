// The labeling page: draw quads / rectangles / masks over the photo, type each
// region's LaTeX with a live preview beside its rectified crop, save a draft,
// submit. Work is kept in localStorage until the server has it.
import { api, ApiError, claimNext, fieldErrors } from "./api.js";
import { activeCorner as activeCornerOf, clampToImage, drawActiveCorner, handleCornerKey, isArrow, settleQuad, showCornerStatus } from "./corners.js";
import { clockwiseQuad, pointInPolygon, quadCropSize, rollQuad, selfIntersecting, warpQuad } from "./geometry.js";
import { History } from "./history.js";
import { encodeCanvas } from "./rle.js";
import { colorOf, coverMask, ImageCanvas, maskCanvasFrom, renderLatex, rgbOf } from "./viewer.js";

const root = document.getElementById("label-app");
const TASK = Number(root.dataset.task);
const ME = Number(root.dataset.user);
const CATEGORIES = JSON.parse(document.getElementById("categories-data").textContent);
const STATUS = { draft: "Draft", submitted: "Submitted", accepted: "Accepted", rejected: "Rejected (rework)" };
const DRAFT_KEY = `mathset.labeling.task.${TASK}`;
const $ = (sel, el = document) => el.querySelector(sel);

const TOOL_HINTS = {
  select: "Select: click a region to edit it, drag a corner or the region to move it, drag empty space to pan. Keys 1–4 pick a corner, the arrows move it.",
  rect: "Rectangle: drag a box around one formula; it starts at the top-left as you see it. Adjust the corners with V, the start with T.",
  quad: "Quad: click the 4 corners of a formula, from its top-left as read, clockwise. Esc cancels.",
  brush: "Brush: paint over the formula's pixels. [ and ] change the brush size.",
  erase: "Eraser: remove pixels from the selected mask.",
};

const state = {
  task: null, annotation: null, version: null, startedFrom: null,
  regions: [], selected: -1, tool: "select", readOnly: false,
  quadDraft: [], drag: null, hover: null, space: false, brush: 24,
  corner: null, nudged: false,  // the active corner ({i: region, k: corner}) that the arrow keys move
  openedAt: Date.now(), lastSaveAt: Date.now(), dirty: false, busy: false,
};

const viewer = new ImageCanvas($("#canvas"), { overlay: drawOverlay });
const canvas = viewer.canvas;
const edits = new History({ limit: 100, onChange: updateHistoryButtons });
window.labeler = {
  state, viewer, history: edits,
  imageToScreen: (x, y) => viewer.view.toScreen(x, y),
  screenToImage: (x, y) => viewer.view.toImage(x, y),
  payload: () => payloadRegions(),
};

// ---------------------------------------------------------------- drawing

function drawOverlay(ctx, dpr) {
  viewer.drawMasks(state.regions, state.selected);
  viewer.drawQuads(state.regions, state.selected, dpr);
  const sel = state.regions[state.selected];
  drawActiveCorner(ctx, viewer.view, sel && sel.points, activeCorner(), dpr);
  ctx.save();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const d = state.drag;
  if (d && d.type === "rect") {
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.strokeRect(d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0);
  }
  if (state.quadDraft.length) {
    const pts = state.quadDraft.map(([x, y]) => viewer.view.toScreen(x, y));
    if (state.hover) pts.push(state.hover);
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.beginPath();
    pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    ctx.setLineDash([]);
    state.quadDraft.forEach(([x, y]) => {
      const [sx, sy] = viewer.view.toScreen(x, y);
      ctx.fillStyle = "#ffd400"; ctx.beginPath(); ctx.arc(sx, sy, 5, 0, Math.PI * 2); ctx.fill();
    });
  }
  if ((state.tool === "brush" || state.tool === "erase") && state.hover) {
    ctx.strokeStyle = state.tool === "brush" ? "#fff" : "#ff6b6b"; ctx.lineWidth = 1.5; ctx.setLineDash([]);
    ctx.beginPath(); ctx.arc(state.hover[0], state.hover[1], state.brush / 2, 0, Math.PI * 2); ctx.stroke();
  }
  ctx.restore();
}

// ---------------------------------------------------------------- regions

function newRegion(kind, extra = {}) {
  // A mask's canvas covers its bounding box only, from maskOrigin (image pixels) on: viewer.js.
  return { kind, points: null, maskCanvas: null, maskOrigin: [0, 0], bbox: null, rle: null, maskDirty: false,
    latex: "", illegible: false, cut_off: false, categories: [], errors: {}, ...extra };
}

function addRegion(r) {
  state.regions.push(r);
  select(state.regions.length - 1);
  changed();
  return r;
}

// The next corner becomes the first: set a quad's start to the formula's top-left as read.
function rollStart() {
  const r = state.regions[state.selected];
  if (!r || r.kind !== "quad" || !r.points || state.readOnly) return;
  r.points = rollQuad(r.points);
  const k = activeCorner();
  if (k >= 0) state.corner.k = (k + 3) % 4;  // the active corner stays the same point, renumbered
  changed();
  record();
  renderPanel();
  viewer.redraw();
}

function removeRegion(i) {
  if (i < 0 || i >= state.regions.length || state.readOnly) return;
  state.corner = null;
  state.regions.splice(i, 1);
  state.selected = Math.min(i, state.regions.length - 1);
  changed();
  record();
  renderPanel();
}

function select(i) {
  if (state.corner && state.corner.i !== i) state.corner = null;  // another region: pick its corner anew
  state.selected = i;
  renderPanel();
  viewer.redraw();
}

function regionAt(sx, sy) {
  const [x, y] = viewer.view.toImage(sx, sy);
  const order = state.regions.map((_, i) => i).sort((a, b) => (a === state.selected ? -1 : b === state.selected ? 1 : b - a));
  for (const i of order) {
    const r = state.regions[i];
    if (r.kind === "quad" && r.points && pointInPolygon(x, y, r.points)) return i;
    if (r.kind === "mask" && r.maskCanvas && x >= 0 && y >= 0 && x < viewer.width && y < viewer.height) {
      const [ox, oy] = r.maskOrigin || [0, 0];
      const [mx, my] = [Math.floor(x) - ox, Math.floor(y) - oy];
      if (mx < 0 || my < 0 || mx >= r.maskCanvas.width || my >= r.maskCanvas.height) continue;
      const a = r.maskCanvas.getContext("2d").getImageData(mx, my, 1, 1).data[3];
      if (a >= 128) return i;
    }
  }
  return -1;
}

function cornerAt(sx, sy) {
  const r = state.regions[state.selected];
  if (!r || r.kind !== "quad") return -1;
  let best = -1, dist = 10;
  r.points.forEach(([x, y], k) => {
    const [px, py] = viewer.view.toScreen(x, y);
    const d = Math.hypot(px - sx, py - sy);
    if (d <= dist) { dist = d; best = k; }
  });
  return best;
}

function activeCorner() { return activeCornerOf(state); }
// The live status line: where the active corner is, for a screen reader and a precise eye.
function announceCorner() { showCornerStatus($("#corner-status"), state); }

// A corner key (corners.js): pick the active corner, or move it as a drag would, one undo step
// per key press (recorded when the key is released, so a held key is one step too).
function cornerKeyDown(e) {
  if (state.readOnly) return false;
  const used = handleCornerKey(e, state, viewer, (i, crossed) => {
    if (!crossed && selfIntersecting(state.regions[i].points)) flash("Those corners cross each other; move a corner to fix the shape.");
    state.nudged = true;
    changed();
    renderPanel();
  });
  if (used) { announceCorner(); viewer.redraw(); }
  return used;
}

function clampPoint(p) {
  return clampToImage(p, viewer.width, viewer.height);  // as the arrow keys clamp a corner (corners.js)
}

// Corners clamped onto the photo that no longer span it: a box or clicks beside the photo all
// land on its edge, a line the server refuses ("no area"). Such a shape is not kept.
const OFF_PHOTO = "That shape lies outside the photo: mark the formula on the photo itself.";
function flatOnPhoto(pts) {
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  return Math.max(...xs) - Math.min(...xs) < 1 || Math.max(...ys) - Math.min(...ys) < 1;
}

// ---------------------------------------------------------------- pointer

function maskTarget(create) {
  let r = state.regions[state.selected];
  if (r && r.kind === "mask") return r;
  if (!create) return null;
  const m = maskCanvasFrom(null, viewer.width, viewer.height, state.regions.length);
  return addRegion(newRegion("mask", { maskCanvas: m.canvas, maskOrigin: m.origin }));
}

function paint(from, to, erase) {
  const r = maskTarget(!erase);
  if (!r) { flash("Select a mask region to erase from (click it with V)."); return; }
  const i = state.regions.indexOf(r);
  const rad = state.brush / 2 / viewer.view.scale;
  // Grown by 2 pixels for antialiased edges: the canvas must hold it, RLE encoding reads only it.
  const b = [Math.floor(Math.min(from[0], to[0]) - rad - 2), Math.floor(Math.min(from[1], to[1]) - rad - 2),
    Math.ceil(Math.max(from[0], to[0]) + rad + 2), Math.ceil(Math.max(from[1], to[1]) + rad + 2)];
  if (!erase) coverMask(r, b, viewer.width, viewer.height);  // the eraser only works where the mask is
  const ctx = r.maskCanvas.getContext("2d");
  ctx.save();
  const [ox, oy] = r.maskOrigin || [0, 0];
  ctx.translate(-ox, -oy);
  ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
  const [cr, cg, cb] = rgbOf(i);
  ctx.strokeStyle = ctx.fillStyle = `rgb(${cr},${cg},${cb})`;
  ctx.lineWidth = rad * 2; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
  ctx.beginPath(); ctx.arc(to[0], to[1], rad, 0, Math.PI * 2); ctx.fill();
  ctx.restore();
  if (!erase) {
    r.bbox = r.bbox ? [Math.min(r.bbox[0], b[0]), Math.min(r.bbox[1], b[1]), Math.max(r.bbox[2], b[2]), Math.max(r.bbox[3], b[3])] : b;
    r.bbox = [Math.max(0, r.bbox[0]), Math.max(0, r.bbox[1]), Math.min(viewer.width, r.bbox[2]), Math.min(viewer.height, r.bbox[3])];
  }
  r.maskDirty = true;
  viewer.redraw();
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  canvas.focus();
  canvas.setPointerCapture(e.pointerId);
  const [sx, sy] = viewer.eventPoint(e);
  if (e.button === 1 || e.button === 2 || state.space || !viewer.bitmap) { viewer.startPan(e); return; }
  if (e.button !== 0) return;
  const img = viewer.view.toImage(sx, sy);
  if (state.readOnly) { const hit = regionAt(sx, sy); if (hit >= 0) select(hit); else viewer.startPan(e); return; }
  switch (state.tool) {
    case "rect":
      state.drag = { type: "rect", x0: sx, y0: sy, x1: sx, y1: sy };
      break;
    case "quad":
      state.quadDraft.push(clampPoint(img));
      if (state.quadDraft.length === 4) {
        const pts = clockwiseQuad(state.quadDraft);  // the first click stays the first corner
        state.quadDraft = [];
        if (flatOnPhoto(pts)) { flash(OFF_PHOTO); viewer.redraw(); break; }
        addRegion(newRegion("quad", { points: pts }));
        record();
        if (selfIntersecting(pts)) flash("Those corners cross each other; drag a corner to fix the shape.");
      }
      viewer.redraw();
      break;
    case "brush":
    case "erase":
      state.drag = { type: "paint", last: img, erase: state.tool === "erase" };
      paint(img, img, state.tool === "erase");
      break;
    default: {
      const corner = cornerAt(sx, sy);
      if (corner >= 0) {
        state.drag = { type: "corner", k: corner };
        state.corner = { i: state.selected, k: corner };  // the arrow keys then fine-tune it
        announceCorner();
        break;
      }
      const hit = regionAt(sx, sy);
      if (hit >= 0) {
        if (hit !== state.selected) select(hit);
        if (state.regions[hit].kind === "quad") state.drag = { type: "move", last: img, moved: false };
      } else {
        viewer.startPan(e);
      }
    }
  }
});

canvas.addEventListener("pointermove", (e) => {
  const [sx, sy] = viewer.eventPoint(e);
  state.hover = [sx, sy];
  if (viewer.movePan(e)) return;
  const d = state.drag;
  const img = viewer.view.toImage(sx, sy);
  if (d) {
    const r = state.regions[state.selected];
    if (d.type === "rect") { d.x1 = sx; d.y1 = sy; }
    else if (d.type === "corner" && r) { r.points[d.k] = clampPoint(img); d.moved = true; }
    else if (d.type === "move" && r) {
      const dx = img[0] - d.last[0], dy = img[1] - d.last[1];
      r.points = r.points.map(([x, y]) => [x + dx, y + dy]);
      d.last = img; d.moved = true;
    } else if (d.type === "paint") { paint(d.last, img, d.erase); d.last = img; }
  } else if (state.tool === "select") {
    canvas.style.cursor = cornerAt(sx, sy) >= 0 ? "move" : regionAt(sx, sy) >= 0 ? "pointer" : "grab";
  }
  viewer.redraw();
});

canvas.addEventListener("pointerup", () => {
  if (viewer.endPan()) return;
  const d = state.drag;
  state.drag = null;
  if (!d) return;
  const r = state.regions[state.selected];
  if (d.type === "rect") {
    if (Math.abs(d.x1 - d.x0) < 4 || Math.abs(d.y1 - d.y0) < 4) { viewer.redraw(); return; }
    // From the top-left as seen on screen (the view may be turned to read the formula upright), clockwise.
    const [x0, x1] = [Math.min(d.x0, d.x1), Math.max(d.x0, d.x1)], [y0, y1] = [Math.min(d.y0, d.y1), Math.max(d.y0, d.y1)];
    const corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
      .map(([x, y]) => clampPoint(viewer.view.toImage(x, y)));
    if (flatOnPhoto(corners)) { flash(OFF_PHOTO); viewer.redraw(); return; }
    addRegion(newRegion("quad", { points: clockwiseQuad(corners) }));
    record();
  } else if ((d.type === "corner" || d.type === "move") && r && d.moved) {
    const settled = settleQuad(r.points.map(clampPoint), d.type === "corner" ? d.k : -1);
    r.points = settled.points;
    if (d.type === "corner") state.corner = { i: state.selected, k: settled.corner };
    if (selfIntersecting(r.points)) flash("Those corners cross each other; drag a corner to fix the shape.");
    changed();
    record();  // one step per drag, on release
    renderPanel();
  } else if (d.type === "paint") {
    changed();
    record();  // one step per stroke (a new mask and its first stroke included)
    renderPanel();
  }
  viewer.redraw();
});
canvas.addEventListener("pointerleave", () => { state.hover = null; viewer.redraw(); });
canvas.addEventListener("viewchange", () => { $("#zoom-level").textContent = `${Math.round(viewer.view.scale * 100)}%`; });

// ---------------------------------------------------------------- panel

function regionTitle(r, i) {
  const what = r.kind === "quad" ? "Quad" : "Mask";
  const tex = r.latex ? r.latex.slice(0, 28) : r.illegible ? "(illegible)" : "— no LaTeX yet —";
  return `${i + 1}. ${what}: ${tex}`;
}

function renderList() {
  const ol = $("#region-list");
  ol.innerHTML = "";
  state.regions.forEach((r, i) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = `region-item${i === state.selected ? " selected" : ""}${Object.keys(r.errors).length ? " has-error" : ""}`;
    b.style.borderLeftColor = colorOf(i);
    if (hasConfidence(r)) b.append(confidenceBadge(r), " ");
    b.append(regionTitle(r, i));
    b.setAttribute("aria-pressed", i === state.selected ? "true" : "false");
    b.addEventListener("click", () => select(i));
    li.appendChild(b);
    ol.appendChild(li);
  });
  $("#region-empty").hidden = state.regions.length > 0;
  $("#region-count").textContent = String(state.regions.length);
}

function renderPanel() {
  renderList();
  announceCorner();
  const r = state.regions[state.selected];
  const ed = $("#region-editor");
  ed.hidden = !r;
  if (!r) return;
  $("#region-heading").textContent = `Region ${state.selected + 1} (${r.kind === "quad" ? "4 corners" : "pixel mask"})`;
  $("#region-heading").style.borderLeftColor = colorOf(state.selected);
  const ta = $("#latex-input");
  if (ta.value !== r.latex) ta.value = r.latex;
  $("#flag-illegible").checked = r.illegible;
  $("#flag-cutoff").checked = r.cut_off;
  document.querySelectorAll("#category-boxes input").forEach((box) => { box.checked = r.categories.includes(box.value); });
  updatePreview();
  const errs = Object.entries(r.errors);
  const box = $("#region-errors");
  box.hidden = !errs.length;
  box.innerHTML = "";
  errs.forEach(([field, msg]) => {
    const li = document.createElement("li");
    li.textContent = `${field === "region" ? "" : `${field}: `}${msg}`;
    box.appendChild(li);
  });
  ta.setAttribute("aria-invalid", r.errors.latex ? "true" : "false");
  $("#roll-start").hidden = r.kind !== "quad";
  [ta, $("#flag-illegible"), $("#flag-cutoff"), $("#delete-region"), $("#roll-start")].forEach((el) => { el.disabled = state.readOnly; });
  drawCrop();
}

function updatePreview() {
  const r = state.regions[state.selected];
  if (!r) return;
  const err = renderLatex($("#latex-preview"), r.latex);
  const el = $("#latex-error");
  el.hidden = !err;
  el.textContent = err ? `KaTeX cannot render this: ${err}` : "";
  $("#latex-preview-empty").hidden = !!r.latex.trim();
}

let cropPending = false;
function drawCrop() {
  if (cropPending) return;
  cropPending = true;
  requestAnimationFrame(() => {
    cropPending = false;
    const r = state.regions[state.selected];
    const c = $("#crop");
    const ctx = c.getContext("2d");
    const MAXW = c.parentElement.clientWidth || 320, MAXH = 140;
    if (!r || !viewer.bitmap) return;
    if (r.kind === "quad" && r.points) {
      // Straightened from the first corner (the formula's top-left as read), as the exports are:
      // upright when the start is right, turned when it is not (T moves it on).
      const q = r.points;
      const [w, h] = quadCropSize(q);
      const s = Math.min(MAXW / w, MAXH / h, 4);
      c.width = Math.max(1, Math.round(w * s)); c.height = Math.max(1, Math.round(h * s));
      ctx.clearRect(0, 0, c.width, c.height);
      warpQuad(ctx, viewer.bitmap, q, c.width, c.height);
    } else if (r.kind === "mask" && r.bbox) {
      const [x0, y0, x1, y1] = r.bbox;
      const w = Math.max(1, x1 - x0), h = Math.max(1, y1 - y0);
      const s = Math.min(MAXW / w, MAXH / h, 4);
      c.width = Math.max(1, Math.round(w * s)); c.height = Math.max(1, Math.round(h * s));
      ctx.drawImage(viewer.bitmap, x0, y0, w, h, 0, 0, c.width, c.height);
    } else {
      c.width = 1; c.height = 1;
    }
  });
}

$("#latex-input").addEventListener("input", (e) => {
  const r = state.regions[state.selected];
  if (!r) return;
  r.latex = e.target.value;
  delete r.errors.latex;
  updatePreview();
  renderList();
  changed();
});
// The field keeps its own undo while it has the focus; a LaTeX edit becomes one page step when it is left.
$("#latex-input").addEventListener("change", () => record());
$("#flag-illegible").addEventListener("change", (e) => { const r = state.regions[state.selected]; if (r) { r.illegible = e.target.checked; delete r.errors.latex; changed(); record(); renderList(); } });
$("#flag-cutoff").addEventListener("change", (e) => { const r = state.regions[state.selected]; if (r) { r.cut_off = e.target.checked; changed(); record(); } });
$("#category-boxes").addEventListener("change", () => {
  const r = state.regions[state.selected];
  if (!r) return;
  r.categories = [...document.querySelectorAll("#category-boxes input:checked")].map((b) => b.value);
  delete r.errors.categories;
  changed();
  record();
});
$("#delete-region").addEventListener("click", () => removeRegion(state.selected));
$("#roll-start").addEventListener("click", () => rollStart());
$("#opacity").addEventListener("input", (e) => { viewer.maskOpacity = Number(e.target.value) / 100; viewer.redraw(); });
$("#brush-size").addEventListener("input", (e) => { state.brush = Number(e.target.value); $("#brush-size-out").textContent = `${state.brush}px`; viewer.redraw(); });

CATEGORIES.forEach((c) => {
  const id = `cat-${c.slug}`;
  const label = document.createElement("label");
  label.className = "check";
  label.htmlFor = id;
  label.innerHTML = `<input type="checkbox" id="${id}" value="${c.slug}"> `;
  label.appendChild(document.createTextNode(c.name));
  $("#category-boxes").appendChild(label);
});
$("#category-none").hidden = CATEGORIES.length > 0;

// ---------------------------------------------------------------- tools & keys

function setTool(tool) {
  if (state.readOnly && tool !== "select") return;
  state.tool = tool;
  state.quadDraft = [];
  document.querySelectorAll("[data-tool]").forEach((b) => b.setAttribute("aria-pressed", b.dataset.tool === tool ? "true" : "false"));
  $("#tool-hint").textContent = TOOL_HINTS[tool];
  setCursor();
  $("#brush-controls").classList.toggle("active", tool === "brush" || tool === "erase");
  viewer.redraw();
}

function setCursor() {
  const tool = state.tool;
  canvas.style.cursor = tool === "select" ? "grab" : tool === "brush" || tool === "erase" ? "none" : "crosshair";
}

document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
$("#zoom-in").addEventListener("click", () => viewer.zoom(1.25));
$("#zoom-out").addEventListener("click", () => viewer.zoom(0.8));
$("#zoom-fit").addEventListener("click", () => viewer.fit());
$("#rotate").addEventListener("click", () => { viewer.rotate(1); drawCrop(); });
$("#undo").addEventListener("click", () => undo());
$("#redo").addEventListener("click", () => redo());

function typing(el) {
  return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes(el.type)));
}

// A focused control that Space (and, for a form field, Delete / Backspace) works on itself: a
// checkbox ticks, a button presses, a <details> opens; the page's shortcuts leave those keys to it.
function ownsKey(el, key) {
  if (!el) return false;
  if (key === " ") return ["BUTTON", "INPUT", "SELECT", "SUMMARY", "A"].includes(el.tagName);
  if (key === "Delete" || key === "Backspace") return el.tagName === "INPUT" || el.tagName === "SELECT";
  return false;
}

function nextRegion(step) {
  if (!state.regions.length) return;
  const n = state.regions.length;
  record();  // LaTeX typed in the region being left is a step of its own
  select(((state.selected + step) % n + n) % n);
  $("#latex-input").focus();
}

document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); submit(); return; }
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") { e.preventDefault(); saveDraft(); return; }
  const inText = typing(document.activeElement);
  // Undo / redo the page's regions, except in a text field, which keeps its own.
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !inText) {
    const key = e.key.toLowerCase();
    if (key === "z") { e.preventDefault(); if (e.shiftKey) redo(); else undo(); return; }
    if (key === "y" && !e.shiftKey) { e.preventDefault(); redo(); return; }
  }
  if (e.key === "Tab" && !e.altKey && (document.activeElement === canvas || document.activeElement?.id === "latex-input") && state.regions.length) {
    e.preventDefault(); nextRegion(e.shiftKey ? -1 : 1); return;
  }
  if (e.key === "Escape") {
    if (inText) { document.activeElement.blur(); canvas.focus(); return; }
    state.quadDraft = []; state.drag = null; state.corner = null; announceCorner(); viewer.redraw(); return;
  }
  if (inText || e.ctrlKey || e.metaKey || e.altKey || ownsKey(document.activeElement, e.key)) return;
  if (e.key === " ") { state.space = true; canvas.style.cursor = "grab"; e.preventDefault(); return; }
  if (cornerKeyDown(e)) return;
  const k = e.key;
  const actions = {
    q: () => setTool("quad"), r: () => setTool("rect"), b: () => setTool("brush"), e: () => setTool("erase"), v: () => setTool("select"),
    R: () => { viewer.rotate(1); drawCrop(); }, s: () => saveDraft(), S: () => saveDraft(),
    "+": () => viewer.zoom(1.25), "=": () => viewer.zoom(1.25), "-": () => viewer.zoom(0.8), 0: () => viewer.fit(),
    Delete: () => removeRegion(state.selected), Backspace: () => removeRegion(state.selected),
    t: () => rollStart(), T: () => rollStart(),
    "[": () => { state.brush = Math.max(2, state.brush - 4); $("#brush-size").value = state.brush; $("#brush-size").dispatchEvent(new Event("input")); },
    "]": () => { state.brush = Math.min(200, state.brush + 4); $("#brush-size").value = state.brush; $("#brush-size").dispatchEvent(new Event("input")); },
  };
  const fn = actions[k === "R" && !e.shiftKey ? "r" : k];
  if (fn) { e.preventDefault(); fn(); }
});
// Releasing Space only restores the tool's cursor: corners of a quad being clicked stay.
document.addEventListener("keyup", (e) => {
  if (e.key === " " && state.space) { state.space = false; setCursor(); }
  if (isArrow(e.key)) recordNudge();
});
window.addEventListener("blur", () => recordNudge());  // an arrow released in another window
function recordNudge() { if (state.nudged) { state.nudged = false; record(); } }

// ---------------------------------------------------------------- messages

function flash(text, kind = "info") {
  const box = $("#messages");
  const div = document.createElement("div");
  div.className = `note note-${kind}`;
  div.setAttribute("role", kind === "error" ? "alert" : "status");
  div.textContent = text;
  box.prepend(div);
  if (kind === "info" || kind === "ok") setTimeout(() => div.remove(), 6000);
  return div;
}

function clearErrors() {
  state.regions.forEach((r) => { r.errors = {}; });
  $("#messages").querySelectorAll(".note-error").forEach((n) => n.remove());
}

function showErrors(body) {
  let general = [];
  let first = -1;
  for (const [key, msg] of fieldErrors(body)) {
    const m = key.match(/^regions\[(\d+)\](?:\.(\w+))?/);
    if (key === "guide") guideHold(msg);
    else if (m && state.regions[Number(m[1])]) {
      const i = Number(m[1]);
      state.regions[i].errors[m[2] || "region"] = msg;
      if (first < 0) first = i;
    } else {
      general.push(key && key !== "detail" && key !== "non_field_errors" && key !== "regions" ? `${key}: ${msg}` : msg);
    }
  }
  if (first >= 0) { general.unshift(`Region ${first + 1} needs a fix (marked in red in the list).`); select(first); }
  else renderPanel();
  general.forEach((g) => flash(g, "error"));
}

// The work guide gate (labeling/gating.py), as `tasks/next/` words it: "Read and acknowledge
// version N of the work guide for … before handing in work from batch …: /guides/G/". The link
// opens in another tab, so this task stays as it is until the annotator comes back to submit.
function guideHold(message, savedAsDraft = false) {
  const m = message.match(/^(.*): (\/\S*)$/);
  const box = flash("", "error");
  box.textContent = `${m ? m[1] : message}.${savedAsDraft ? " Your answer is saved as a draft." : ""} `;
  if (m) {
    const a = document.createElement("a");
    a.href = m[2]; a.target = "_blank"; a.rel = "noopener"; a.textContent = "Open the guide";
    box.append(a, ", acknowledge it, then submit again.");
  }
  return box;
}

// ---------------------------------------------------------------- persistence

function maskRle(r) {
  if (r.maskDirty || !r.rle) {
    r.rle = encodeCanvas(r.maskCanvas, r.bbox, { width: viewer.width, height: viewer.height, origin: r.maskOrigin });
    r.maskDirty = false;
  }
  return r.rle;
}

function payloadRegions() {
  return state.regions.map((r) => {
    const out = { kind: r.kind, latex: r.latex, illegible: r.illegible, cut_off: r.cut_off, categories: r.categories };
    if (r.kind === "quad") out.points = r.points.map(([x, y]) => [Math.round(x * 100) / 100, Math.round(y * 100) / 100]);
    else out.mask = maskRle(r);
    return out;
  });
}

let autosaveTimer = null;
let changeCount = 0;  // bumped by every edit: tells afterSave whether the saved copy is still the latest
function changed() {
  changeCount += 1;
  state.dirty = true;
  $("#save-state").textContent = "Unsaved changes";
  clearTimeout(autosaveTimer);
  autosaveTimer = setTimeout(saveLocal, 700);
  drawCrop();
}

function saveLocal() {
  if (state.readOnly) return false;
  try {
    localStorage.setItem(DRAFT_KEY, JSON.stringify({
      savedAt: new Date().toISOString(), baseVersion: state.version || 0, annotation: state.annotation?.id || null,
      startedFrom: state.startedFrom, regions: payloadRegions(),
    }));
    $("#save-state").textContent = `Kept in this browser at ${new Date().toLocaleTimeString()}`;
    return true;
  } catch (e) {
    $("#save-state").textContent = "Could not keep a copy in this browser (storage full); save a draft (S).";
    return false;
  }
}

function loadRegions(list) {
  state.regions = (list || []).map((src, i) => {
    const answer = { latex: src.latex || "", illegible: !!src.illegible, cut_off: !!src.cut_off,
      categories: src.categories || [],
      // a pre-label's confidence (detection and reading): shown, never saved
      modelConfidence: typeof src.confidence === "number" ? src.confidence : null };
    if (src.kind === "mask") {
      const m = maskCanvasFrom(src.mask, viewer.width, viewer.height, i);
      return newRegion("mask", { maskCanvas: m.canvas, maskOrigin: m.origin, bbox: m.bbox, rle: src.mask, ...answer });
    }
    return newRegion("quad", { points: src.points.map(([x, y]) => [x, y]), ...answer });
  });
  state.selected = state.regions.length ? 0 : -1;
  state.corner = null;
}

// ---------------------------------------------------------------- undo / redo

// A snapshot holds the regions' answers, a quad's corners and a mask's RLE (never its
// canvas). A mask's RLE unchanged since the step before is the same object there, so a
// long history of quad edits beside a big mask keeps one copy of it.
const rleIds = new WeakMap();
let nextRleId = 1;
function rleId(rle) {
  if (!rleIds.has(rle)) rleIds.set(rle, nextRleId++);
  return rleIds.get(rle);
}
const countsOf = (rle) => (typeof rle.counts === "string" ? rle.counts : JSON.stringify(rle.counts));

// `prev`: the snapshot whose unchanged masks this one shares (none after a reset).
function capture(prev = edits.current) {
  let size = 0;
  const entries = state.regions.map((r) => {
    const e = { kind: r.kind, latex: r.latex, illegible: r.illegible, cut_off: r.cut_off,
      categories: [...r.categories], modelConfidence: r.modelConfidence ?? null };
    if (r.kind === "quad") {
      e.points = r.points.map(([x, y]) => [x, y]);
    } else {
      let rle = maskRle(r);
      const same = prev && prev.entries.find((o) => o.rle && (o.rle === rle || countsOf(o.rle) === countsOf(rle)));
      if (same) rle = r.rle = same.rle;  // a stroke that changed nothing, or a mask only renumbered
      else size += countsOf(rle).length;
      e.rle = rle;
      e.bbox = r.bbox ? [...r.bbox] : null;
    }
    return e;
  });
  const keys = entries.map((e) => JSON.stringify(e.kind === "mask" ? { ...e, rle: rleId(e.rle), bbox: null } : e));
  const key = keys.join("\n");
  return { entries, keys, key, selected: state.selected, size: size + key.length };
}

// After each completed action: one step, unless nothing changed.
function record() {
  if (!state.readOnly && state.task) edits.push(capture());
}

function resetHistory() {
  edits.reset(capture(null));
}

function restore(snap, from) {
  const old = state.regions;
  state.regions = snap.entries.map((e, i) => {
    const answer = { latex: e.latex, illegible: e.illegible, cut_off: e.cut_off,
      categories: [...e.categories], modelConfidence: e.modelConfidence };
    if (e.kind === "quad") return newRegion("quad", { points: e.points.map(([x, y]) => [x, y]), ...answer });
    const o = old[i];  // the same mask at the same place (same colour): keep its canvas
    if (o && o.kind === "mask" && o.rle === e.rle && !o.maskDirty) {
      return newRegion("mask", { maskCanvas: o.maskCanvas, maskOrigin: o.maskOrigin, bbox: e.bbox ? [...e.bbox] : null, rle: e.rle, ...answer });
    }
    const m = maskCanvasFrom(e.rle, viewer.width, viewer.height, i);
    return newRegion("mask", { maskCanvas: m.canvas, maskOrigin: m.origin, bbox: m.bbox, rle: e.rle, ...answer });
  });
  // Select what the step changed: the first region that differs, or, when regions went
  // away, what was selected in that state.
  let sel = snap.selected;
  if (snap.keys.length >= from.keys.length) {
    const k = snap.keys.findIndex((key, i) => key !== from.keys[i]);
    if (k >= 0) sel = k;
  }
  state.selected = Math.min(Math.max(sel, -1), state.regions.length - 1);
  state.quadDraft = [];
  state.drag = null;
  renderPanel();
  viewer.redraw();
  changed();
}

function travel(step) {
  if (state.readOnly || state.drag) return;
  if (step < 0 && state.quadDraft.length) { state.quadDraft.pop(); viewer.redraw(); return; }  // a quad being clicked: its last corner
  record();  // LaTeX typed but not yet left is kept as a step, so redo brings it back
  const from = edits.current;
  const to = step < 0 ? edits.undo() : edits.redo();
  if (to) restore(to, from);
}

function undo() { travel(-1); }
function redo() { travel(1); }

function updateHistoryButtons(h = edits) {
  $("#undo").disabled = state.readOnly || !h.canUndo;
  $("#redo").disabled = state.readOnly || !h.canRedo;
}

// A built-in pre-label's confidence is the chance that the region was found and read exactly
// right (the recognizer's is calibrated on validation inks: pipeline/ml/calibration.py); below
// one half the model's guess is more likely wrong than right, is marked and comes first.
const LOW_CONFIDENCE = 0.5;

function hasConfidence(r) { return r.modelConfidence !== null && r.modelConfidence !== undefined; }

function isUnsure(r) { return hasConfidence(r) && r.modelConfidence < LOW_CONFIDENCE; }

function confidenceBadge(r) {
  const span = document.createElement("span");
  span.className = `model-conf${isUnsure(r) ? " low" : ""}`;
  span.textContent = `${Math.round(r.modelConfidence * 100)}%`;
  span.title = isUnsure(r) ? "The model is more likely wrong than right here: check this region first"
    : "The model's estimate of the chance that this region is found and read exactly right";
  return span;
}

function spentSeconds() {
  const s = (Date.now() - state.lastSaveAt) / 1000;
  return Math.min(86400, Math.max(0, Math.round(s)));
}

async function persist({ submitToo }) {
  state.savingChange = changeCount;
  const regions = payloadRegions();
  const body = { regions, time_spent_seconds: spentSeconds(), started_from: state.startedFrom, submit: submitToo };
  if (state.annotation) {
    // Ask first whether another tab or person saved meanwhile, so the choice below is
    // offered before anything is overwritten; the server's own 409 remains the guard.
    const cur = await api("GET", `/api/v1/annotations/${state.annotation.id}/`);
    if (cur.version !== state.version) {
      throw new ApiError(409, { detail: `Version ${cur.version} was saved elsewhere (another tab or person) after the one you edited.`,
        current_version: cur.version, current: cur });
    }
    return api("PUT", `/api/v1/annotations/${state.annotation.id}/`, { ...body, version: state.version });
  }
  try {
    return await api("POST", "/api/v1/annotations/", { ...body, task: TASK });
  } catch (e) {
    // Another tab (or an earlier visit whose save this page never heard of) created the
    // annotation first: offer the same choice as for a newer version instead of a dead end.
    if (!(e instanceof ApiError && e.status === 400 && e.body.task)) throw e;
    const mine = await api("GET", `/api/v1/annotations/?task=${TASK}&annotator=${ME}&limit=1`);
    const cur = (mine.results || [])[0];
    if (!cur) throw e;
    throw new ApiError(409, { detail: `Version ${cur.version} of this task was saved elsewhere (another tab or person) while you worked on it here.`,
      current_version: cur.version, current: cur });
  }
}

function afterSave(annotation) {
  state.annotation = annotation;
  state.version = annotation.version;
  state.lastSaveAt = Date.now();
  const saved = `Saved on the server (version ${annotation.version}) at ${new Date().toLocaleTimeString()}`;
  if (changeCount !== state.savingChange) {
    // Edited while the save was on its way: those edits are not on the server yet; the
    // browser copy (made on the version just saved) keeps them until the next save.
    saveLocal();
    $("#save-state").textContent = `${saved}; later changes not yet`;
    return;
  }
  // The browser copy pending from the last edit is now older than the server's: dropped, or
  // it would overwrite "Saved on the server" and come back as "unsaved work" on reload.
  clearTimeout(autosaveTimer);
  state.dirty = false;
  localStorage.removeItem(DRAFT_KEY);
  $("#save-state").textContent = saved;
  $("#status-badge").textContent = STATUS[annotation.status] || annotation.status;
}

async function run(label, fn) {
  if (state.busy || state.readOnly) return;
  state.busy = true;
  document.querySelectorAll(".actions button").forEach((b) => { b.disabled = true; });
  $("#save-state").textContent = label;
  try {
    clearErrors();
    await fn();
  } catch (e) {
    const kept = saveLocal();
    const where = kept ? "Your work is kept in this browser." : "This browser could not keep a copy either (its storage is full): keep this page open.";
    if (e instanceof ApiError && e.status === 409) conflict(e.body);
    else if (e instanceof ApiError && e.status === 400 && Object.keys(e.body).length) showErrors(e.body);
    // e.g. 413: the body over the server's limit, which the answer names
    else flash(`${e.message} ${where}`, "error");
    $("#save-state").textContent = kept ? "Not saved on the server — your work is kept in this browser"
      : "Not saved on the server, nor in this browser (storage full)";
  } finally {
    state.busy = false;
    document.querySelectorAll(".actions button").forEach((b) => { b.disabled = state.readOnly; });
  }
}

function saveDraft() {
  return run("Saving draft…", async () => {
    afterSave(await persist({ submitToo: false }));
    flash("Draft saved.", "ok");
  });
}

function submit() {
  return run("Submitting…", async () => {
    const missing = state.regions.findIndex((r) => !r.latex.trim() && !r.illegible);
    if (!state.regions.length) { flash("Mark at least one formula before submitting: drag a box around it (R).", "error"); return; }
    if (state.task.kind !== "regions" && missing >= 0) {
      state.regions[missing].errors.latex = "Type the formula, or tick “Illegible”.";
      select(missing);
      flash(`Region ${missing + 1} has no LaTeX yet.`, "error");
      return;
    }
    let saved;
    try {
      saved = await persist({ submitToo: true });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 400 && e.body.guide)) throw e;
      // Only an unread guide version stands between this answer and review: keep it on the
      // server as a draft (drafts are never gated) and say what to read.
      afterSave(await persist({ submitToo: false }));
      guideHold([].concat(e.body.guide).join(" "), true);
      return;
    }
    afterSave(saved);
    state.readOnly = true;
    updateHistoryButtons();
    flash("Submitted for review. Loading your next task…", "ok");
    await goNext();
  });
}

async function goNext() {
  const next = await claimNext();
  if (next.task && next.task.id !== TASK) window.location.href = `/label/${next.task.id}/`;
  else window.location.href = "/work/?done=1";
}

$("#btn-save").addEventListener("click", saveDraft);
$("#btn-submit").addEventListener("click", submit);
$("#btn-skip").addEventListener("click", async () => {
  if (state.annotation) { window.location.href = "/work/"; return; }
  if (state.dirty && state.regions.length && !window.confirm("Skip this image? Your marks on it will be discarded.")) return;
  try { await api("POST", `/api/v1/tasks/${TASK}/release/`); } catch (e) { /* the lease lapses anyway */ }
  localStorage.removeItem(DRAFT_KEY);
  window.location.href = "/work/?skipped=1";
});

function conflict(body) {
  const box = flash("", "error");
  box.innerHTML = "";
  const p = document.createElement("p");
  p.textContent = `${body.detail || "This annotation changed on the server."} Your copy is kept in this browser.`;
  const mine = document.createElement("button");
  mine.type = "button"; mine.className = "btn"; mine.textContent = `Keep mine (save over version ${body.current_version})`;
  mine.addEventListener("click", () => { state.version = body.current_version; state.annotation = body.current; box.remove(); saveDraft(); });
  const theirs = document.createElement("button");
  theirs.type = "button"; theirs.className = "btn secondary"; theirs.textContent = "Load the server's version";
  theirs.addEventListener("click", () => {
    localStorage.setItem(`${DRAFT_KEY}.conflict`, localStorage.getItem(DRAFT_KEY) || "");
    localStorage.removeItem(DRAFT_KEY);
    state.annotation = body.current; state.version = body.current_version;
    loadRegions(body.current.regions); resetHistory(); box.remove(); renderPanel(); viewer.redraw();
    flash("Loaded the server's version. Your copy stays saved in this browser under a conflict key.");
  });
  box.append(p, mine, " ", theirs);
}

// A copy kept in this browser from an older (or newer) version than the server's, e.g. work
// left unsaved in another tab whose save the server has since moved past: never dropped
// silently; the annotator chooses between it and the server's version.
function offerStaleCopy(local, ann) {
  const n = flash(`This browser kept unsaved work on this task from ${new Date(local.savedAt).toLocaleString()}, `
    + `made on version ${local.baseVersion || "none"}; the server now has version ${ann.version}, shown here.`, "info-sticky");
  const restore = document.createElement("button");
  restore.type = "button"; restore.className = "btn small"; restore.textContent = `Restore my copy (save over version ${ann.version})`;
  restore.addEventListener("click", () => {
    loadRegions(local.regions);
    state.startedFrom = local.startedFrom ?? state.startedFrom;
    changed(); record(); renderPanel(); viewer.redraw(); n.remove();
    flash("Restored your copy from this browser: save (S) to put it over the server's version.");
  });
  const discard = document.createElement("button");
  discard.type = "button"; discard.className = "link-btn"; discard.textContent = "Discard my copy";
  discard.addEventListener("click", () => { localStorage.removeItem(DRAFT_KEY); n.remove(); });
  n.append(" ", restore, " ", discard);
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const task = await api("GET", `/api/v1/tasks/${TASK}/`);
    state.task = task;
    const mine = await api("GET", `/api/v1/annotations/?task=${TASK}&annotator=${ME}&limit=1`);
    const ann = (mine.results || [])[0] || null;
    await viewer.load(task.image_url, task.image_width, task.image_height);
    let local = null;
    try { local = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null"); } catch (e) { local = null; }
    if (ann) {
      state.annotation = ann; state.version = ann.version; state.startedFrom = ann.started_from;
      $("#status-badge").textContent = STATUS[ann.status] || ann.status;
      if (ann.status === "submitted" || ann.status === "accepted") {
        state.readOnly = true;
        flash(ann.status === "accepted" ? "This annotation was accepted; it can no longer be changed." : "Submitted — waiting for review. You can look but not change it.", "info-sticky");
      }
      const lastReview = (ann.reviews || [])[0] || ann.last_review;  // newest first
      if (ann.status === "rejected" && lastReview) showRejection(lastReview);
      if (ann.status === "accepted" && lastReview && Object.keys(lastReview.corrections || {}).length) showCorrections(lastReview);
    }
    if (local && !state.readOnly && (local.baseVersion || 0) === (state.version || 0)) {
      loadRegions(local.regions);
      state.startedFrom = local.startedFrom ?? state.startedFrom;
      const n = flash(`Restored your unsaved work from this browser (kept at ${new Date(local.savedAt).toLocaleTimeString()}).`, "info-sticky");
      const discard = document.createElement("button");
      discard.type = "button"; discard.className = "link-btn"; discard.textContent = "Discard it";
      discard.addEventListener("click", () => { localStorage.removeItem(DRAFT_KEY); window.location.reload(); });
      n.append(" ", discard);
      state.dirty = true;
    } else if (ann) {
      loadRegions(ann.regions);
      if (local && !state.readOnly && Array.isArray(local.regions)) offerStaleCopy(local, ann);
    } else if (task.predictions && task.predictions.length) {
      const p = task.predictions[0];
      loadRegions(p.regions);
      state.startedFrom = p.id;
      const unsure = state.regions.filter(isUnsure);
      if (unsure.length) {  // open the least sure region first
        state.selected = state.regions.reduce((best, r, i) => (r.modelConfidence < state.regions[best].modelConfidence ? i : best), 0);
      }
      const note = unsure.length ? ` The model is unsure of ${unsure.length} of the ${state.regions.length} regions (marked in yellow).` : "";
      flash(`Started from the model's pre-labels (${p.model_name} ${p.model_version}).${note} Check every region and fix what is wrong.`, "info-sticky");
    }
    if (state.readOnly) document.querySelectorAll(".actions button, [data-tool]").forEach((b) => { b.disabled = true; });
    resetHistory();  // a task loaded: nothing to undo yet
    setTool(state.regions.length ? "select" : "rect");
    renderPanel();
    viewer.redraw();
    root.dataset.ready = "1";
  } catch (e) {
    flash(`This task could not be loaded: ${e.message}`, "error");
  }
}

function showRejection(review) {
  const box = $("#rejection");
  box.hidden = false;
  $("#rejection-reasons").textContent = (review.reasons || []).map((r) => REASONS[r] || r).join(", ") || "—";
  $("#rejection-comment").textContent = review.comment || "(no comment)";
}
const REASONS = JSON.parse(document.getElementById("reasons-data").textContent);

// Accepted with corrections: what the reviewer changed, region by region (old → new). The
// regions shown are already the corrected version; this says what was typed before.
function showCorrections(review) {
  const list = $("#corrections-list");
  list.innerHTML = "";
  Object.entries(review.corrections).sort((a, b) => Number(a[0]) - Number(b[0])).forEach(([i, [before, after]]) => {
    const li = document.createElement("li");
    const was = document.createElement("code"); was.textContent = before || "(none)";
    const now = document.createElement("code"); now.textContent = after;
    li.append(`Region ${Number(i) + 1}: `, was, " → ", now);
    list.appendChild(li);
  });
  $("#corrections-comment").textContent = review.comment || "(no comment)";
  $("#corrections").hidden = false;
}

// Leaving the page never loses typed work: the latest state goes to localStorage.
window.addEventListener("pagehide", () => { if (state.dirty) saveLocal(); });

start();
