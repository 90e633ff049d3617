// Review page: the annotation drawn over the image, each region's LaTeX rendered
// beside its straightened crop; accept or reject with reasons, then the next one.
import { api, ApiError, fieldErrors } from "./api.js";
import { quadCropSize, warpQuad } from "./geometry.js";
import { colorOf, ImageCanvas, maskCanvasFrom, renderLatex } from "./viewer.js";

const root = document.getElementById("review-app");
const ANN = Number(root.dataset.annotation);
const $ = (s) => document.querySelector(s);
const state = { annotation: null, regions: [], selected: -1 };
const viewer = new ImageCanvas($("#canvas"), {
  overlay: (ctx, dpr) => { viewer.drawMasks(state.regions, state.selected); viewer.drawQuads(state.regions, state.selected, dpr); },
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

function renderRegions() {
  const ol = $("#review-regions");
  ol.innerHTML = "";
  state.regions.forEach((r, i) => {
    const li = document.createElement("li");
    li.style.borderLeftColor = colorOf(i);
    const head = document.createElement("button");
    head.type = "button"; head.className = "link-btn";
    head.textContent = `${i + 1}. ${r.kind === "quad" ? "Quad" : "Mask"}${r.illegible ? " · illegible" : ""}${r.cut_off ? " · cut off" : ""}${r.categories.length ? ` · ${r.categories.join(", ")}` : ""}`;
    head.addEventListener("click", () => { state.selected = i; viewer.redraw(); });
    const box = document.createElement("div"); box.className = "crop-box";
    const c = document.createElement("canvas"); c.setAttribute("aria-label", `Crop of region ${i + 1}`);
    box.appendChild(c);
    const tex = document.createElement("div"); tex.className = "latex-preview";
    const code = document.createElement("code"); code.textContent = r.latex || "(no LaTeX)";
    li.append(head, box, tex, code);
    ol.appendChild(li);
    crop(c, r);
    const err = renderLatex(tex, r.latex || "");
    if (err) { tex.textContent = `KaTeX cannot render this: ${err}`; tex.classList.add("latex-error-msg"); }
  });
}

async function start() {
  const ann = await api("GET", `/api/v1/annotations/${ANN}/`);
  state.annotation = ann;
  const task = await api("GET", `/api/v1/tasks/${ann.task}/`);
  await viewer.load(task.image_url, task.image_width, task.image_height);
  state.regions = ann.regions.map((r, i) => {
    if (r.kind === "mask") { const m = maskCanvasFrom(r.mask, viewer.width, viewer.height, i); return { ...r, maskCanvas: m.canvas, maskOrigin: m.origin, bbox: m.bbox }; }
    return { ...r };
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
const canvas = viewer.canvas;
canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); viewer.startPan(e); });
canvas.addEventListener("pointermove", (e) => viewer.movePan(e));
canvas.addEventListener("pointerup", () => viewer.endPan());
canvas.addEventListener("viewchange", () => { $("#zoom-level").textContent = `${Math.round(viewer.view.scale * 100)}%`; });
document.addEventListener("keydown", (e) => {
  const t = document.activeElement;
  if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" && t.type === "text")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const act = { a: () => $("#decision-accept").click(), x: () => $("#decision-reject").click(), "+": () => viewer.zoom(1.25),
    "-": () => viewer.zoom(0.8), 0: () => viewer.fit(), R: () => viewer.rotate(1) }[e.key];
  if (act) { e.preventDefault(); act(); }
});

$("#btn-send").addEventListener("click", async () => {
  const decision = document.querySelector('input[name="decision"]:checked')?.value;
  // Reasons belong to a rejection: ones ticked before the reviewer chose Accept are not sent with it.
  const reasons = decision === "reject" ? [...document.querySelectorAll('input[name="reasons"]:checked')].map((b) => b.value) : [];
  const comment = $("#review-comment").value;
  if (!decision) { flash("Choose Accept or Reject first.", "error"); return; }
  if (decision === "reject" && !reasons.length) { flash("Tick at least one reason for the rejection.", "error"); return; }
  $("#btn-send").disabled = true;
  $("#save-state").textContent = "Sending…";
  try {
    await api("POST", "/api/v1/reviews/", { annotation: ANN, decision, reasons, comment, version: state.annotation.version });
    $("#save-state").textContent = "Sent. Opening the next one…";
    openNext();
  } catch (e) {
    $("#btn-send").disabled = false;
    $("#save-state").textContent = "";
    if (e instanceof ApiError && e.status === 400 && e.body.annotation && await decidedElsewhere()) return;
    if (e instanceof ApiError && e.status === 400) fieldErrors(e.body).forEach(([k, m]) => flash(`${k}: ${m}`, "error"));
    else if (e instanceof ApiError && e.status === 409) flash(`${e.message} Reload the page to see the new version.`, "error");
    else flash(e.message, "error");
  }
});

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
