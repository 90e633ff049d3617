// Upload page: many image files through POST /api/v1/images/bulk/ in chunks (by count and bytes),
// with a real progress bar (XHR upload progress + files done), and a zip import
// job polled until it finishes. Plain ES module, no build step.

import { renderCategoryBoxes, tickedCategories } from "./category_boxes.js";

const config = JSON.parse(document.getElementById("upload-config").textContent);
const form = document.getElementById("upload-form");
const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
const specSelect = document.getElementById("up-spec");
const sourceSelect = document.getElementById("up-source");
const sessionInput = document.getElementById("up-session");
const categoryBox = document.getElementById("up-categories");
const licenceWarning = document.getElementById("licence-warning");
const dropzone = document.getElementById("dropzone");
const fileInput = document.getElementById("up-files");
const selection = document.getElementById("selection");
const startButton = document.getElementById("up-start");
const clearButton = document.getElementById("up-clear");
const panel = document.getElementById("up-progress-panel");
const bar = document.getElementById("up-progress");
const statusLine = document.getElementById("up-status");
const resultsBody = document.querySelector("#up-results tbody");

let queue = []; // File objects chosen and not yet uploaded
let busy = false;

// ------------------------------------------------------------ form state

function renderCategories() {
  renderCategoryBoxes(categoryBox, config.categories[specSelect.value] || [], Boolean(specSelect.value));
}

function checkLicence() {
  // The server refuses this too; saying it before the upload saves a round trip.
  const spec = config.specs[specSelect.value];
  const source = config.sources[sourceSelect.value];
  const clash = spec && source && spec.commercial && !source.commercial;
  licenceWarning.hidden = !clash;
  licenceWarning.textContent = clash
    ? `${source.licence} forbids commercial use, and ${spec.name} is for a commercial product: the server will refuse these images.`
    : "";
  return !clash;
}

function refreshButtons() {
  startButton.disabled = busy || queue.length === 0 || !specSelect.value || !sourceSelect.value;
  clearButton.disabled = busy || queue.length === 0;
  startButton.textContent = queue.length ? `Upload ${queue.length} file${queue.length === 1 ? "" : "s"}` : "Upload";
  const bytes = queue.reduce((n, f) => n + f.size, 0);
  selection.textContent = queue.length
    ? `${queue.length} file${queue.length === 1 ? "" : "s"} chosen (${formatBytes(bytes)}).`
    : "No file chosen.";
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function addFiles(fileList) {
  for (const file of fileList) queue.push(file);
  refreshButtons();
}

specSelect.addEventListener("change", () => { renderCategories(); checkLicence(); refreshButtons(); });
sourceSelect.addEventListener("change", () => { checkLicence(); refreshButtons(); });
fileInput.addEventListener("change", () => { addFiles(fileInput.files); fileInput.value = ""; });
clearButton.addEventListener("click", () => { queue = []; refreshButtons(); });
dropzone.addEventListener("click", () => fileInput.click());
dropzone.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
});
for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (e) => { e.preventDefault(); dropzone.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, (e) => { e.preventDefault(); dropzone.classList.remove("over"); });
}
dropzone.addEventListener("drop", (e) => addFiles(e.dataTransfer.files));

// --------------------------------------------------------------- results

// `look` picks the colour: a repeated file is shown like a duplicate (nothing new stored).
function addResult(name, kind, text, imageId, look = kind) {
  const row = document.createElement("tr");
  row.dataset.result = kind;
  const nameCell = document.createElement("td");
  nameCell.textContent = name;
  const resultCell = document.createElement("td");
  resultCell.className = `result-${look}`;
  if (imageId) {
    const link = document.createElement("a");
    link.href = config.imageUrl.replace("{id}", imageId);
    link.textContent = text;
    resultCell.append(link);
  } else {
    resultCell.textContent = text;
  }
  row.append(nameCell, resultCell);
  resultsBody.append(row);
}

function setProgress(fraction, filesDone, filesTotal, counts) {
  const percent = Math.min(100, Math.round(fraction * 100));
  bar.firstElementChild.style.width = `${percent}%`;
  bar.setAttribute("aria-valuenow", String(percent));
  bar.setAttribute("aria-valuetext", `${percent}%, ${filesDone} of ${filesTotal} files`);
  statusLine.textContent = `${percent}% · ${filesDone} of ${filesTotal} files done · `
    + `${counts.created} created, ${counts.duplicate} duplicate${counts.duplicate === 1 ? "" : "s"}, `
    + `${counts.error} error${counts.error === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------- upload

function postFiles(files, onProgress) {
  return new Promise((resolve) => {
    const body = new FormData();
    body.append("spec", specSelect.value);
    body.append("source", sourceSelect.value);
    body.append("capture_session", sessionInput.value);
    for (const slug of tickedCategories(categoryBox)) body.append("categories", slug);
    for (const file of files) body.append("files", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", config.bulkUrl);
    xhr.setRequestHeader("X-CSRFToken", csrfToken);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      resolve({ status: xhr.status, data });
    });
    xhr.addEventListener("error", () => resolve({ status: 0, data: null }));
    xhr.send(body);
  });
}

function messagesOf(value) {
  if (Array.isArray(value)) return value.map(messagesOf).join(" ");
  if (value && typeof value === "object") {
    return Object.entries(value)
      .map(([key, v]) => (key === "detail" || key === "non_field_errors" ? messagesOf(v) : `${key}: ${messagesOf(v)}`))
      .join(" ");
  }
  return String(value);
}

// Which files of `files` a 400 names: {"files[3]": [...]} or, for one file, {"file": [...]}.
function fileErrors(data, files) {
  const named = new Map();
  if (!data || typeof data !== "object") return named;
  for (const [key, value] of Object.entries(data)) {
    const match = /^files\[(\d+)\]$/.exec(key);
    if (match && Number(match[1]) < files.length) named.set(Number(match[1]), messagesOf(value));
    else if ((key === "file" || key === "files") && files.length === 1) named.set(0, messagesOf(value));
  }
  return named;
}

// Requests of at most chunkSize files that add up to at most chunkBytes: the server refuses a
// request whose files add up to more. A file bigger than that alone goes alone (and is refused by name).
function chunksOf(files) {
  const chunks = [];
  let chunk = [];
  let bytes = 0;
  for (const file of files) {
    if (chunk.length && (chunk.length >= config.chunkSize || bytes + file.size > config.chunkBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(file);
    bytes += file.size;
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

// Send one chunk. The bulk endpoint is all or nothing: when it names a bad file,
// that file is reported and the rest of the chunk is sent again.
async function sendChunk(chunk, state) {
  let pending = chunk.slice();
  while (pending.length) {
    const pendingBytes = pending.reduce((n, f) => n + f.size, 0);
    const { status, data } = await postFiles(pending, (fraction) => {
      state.sentBytes = state.settledBytes + fraction * pendingBytes;
      state.render();
    });
    if (status === 201) {
      // `files` answers each sent file by its place in the request. Names cannot be used:
      // two folders' IMG_0001.jpg share one, and the server cuts names over 255 characters.
      const byIndex = new Map((data.files || []).map((outcome) => [outcome.index, outcome]));
      pending.forEach((file, index) => {
        const hit = byIndex.get(index);
        const image = hit && hit.image;
        if (!hit) {
          addResult(file.name, "created", "stored");
          state.counts.created += 1;
        } else if (hit.outcome === "created") {
          addResult(file.name, "created", `created (image ${image.id}, ${image.width}×${image.height})`, image.id);
          state.counts.created += 1;
        } else if (hit.outcome === "repeated") {
          const earlier = pending[hit.same_as];
          const what = earlier ? earlier.name : "an earlier file";
          addResult(file.name, "repeated", `same bytes as ${what}, stored once (image ${image.id})`, image.id, "duplicate");
          state.counts.duplicate += 1;
        } else {
          addResult(file.name, "duplicate", `duplicate of image ${image.id}, not stored again`, image.id);
          state.counts.duplicate += 1;
        }
      });
      state.settle(pending);
      return true;
    }
    const named = status === 400 ? fileErrors(data, pending) : new Map();
    if (named.size) {
      const bad = [];
      named.forEach((message, index) => {
        addResult(pending[index].name, "error", message);
        state.counts.error += 1;
        bad.push(pending[index]);
      });
      state.settle(bad);
      pending = pending.filter((_, index) => !named.has(index));
      continue;
    }
    // Not about one file (spec, source, categories, permissions): the rest would fail alike.
    const message = status === 0 ? "network error: the server could not be reached"
      : data ? messagesOf(data) : `HTTP ${status}`;
    for (const file of pending) {
      addResult(file.name, "error", message);
      state.counts.error += 1;
    }
    state.settle(pending);
    return false;
  }
  return true;
}

async function uploadAll() {
  if (!checkLicence() && !confirm("The server will refuse this licence for this spec. Send anyway?")) return;
  busy = true;
  refreshButtons();
  const files = queue;
  queue = [];
  panel.hidden = false;
  delete panel.dataset.done;
  resultsBody.replaceChildren();
  const totalBytes = files.reduce((n, f) => n + f.size, 0) || 1;
  const state = {
    counts: { created: 0, duplicate: 0, error: 0 },
    settledBytes: 0,
    sentBytes: 0,
    filesDone: 0,
    render() { setProgress(this.sentBytes / totalBytes, this.filesDone, files.length, this.counts); },
    settle(done) {
      this.filesDone += done.length;
      this.settledBytes += done.reduce((n, f) => n + f.size, 0);
      this.sentBytes = this.settledBytes;
      this.render();
    },
  };
  state.render();
  const tooBig = files.filter((f) => f.size > config.maxBytes);
  for (const file of tooBig) {
    addResult(file.name, "error", `${file.name}: the file is ${file.size} bytes; the limit is ${config.maxBytes} bytes.`);
    state.counts.error += 1;
  }
  state.settle(tooBig);
  const chunks = chunksOf(files.filter((f) => f.size <= config.maxBytes));
  for (let i = 0; i < chunks.length; i += 1) {
    const ok = await sendChunk(chunks[i], state);
    if (!ok) {
      const rest = chunks.slice(i + 1).flat();
      for (const file of rest) {
        addResult(file.name, "error", "not sent: the request before it was refused");
        state.counts.error += 1;
      }
      state.settle(rest);
      break;
    }
  }
  panel.dataset.done = "true";
  statusLine.textContent += " · finished";
  busy = false;
  refreshButtons();
}

form.addEventListener("submit", (e) => { e.preventDefault(); if (!busy) uploadAll(); });

// ------------------------------------------------------------ zip import

const zipForm = document.getElementById("zip-form");
const zipFile = document.getElementById("zip-file");
const zipPanel = document.getElementById("zip-panel");
const zipStatus = document.getElementById("zip-status");
const zipCounts = document.getElementById("zip-counts");
const zipErrors = document.getElementById("zip-errors");
const zipBar = document.getElementById("zip-progress");

function showJob(job) {
  zipPanel.hidden = false;
  document.getElementById("zip-id").textContent = `#${job.id}`;
  zipStatus.textContent = job.status;
  zipStatus.className = `status status-${job.status}`;
  // Files refused count as settled as they happen (the worker records them chunk by chunk).
  const done = job.imported + job.duplicates + job.errors.length;
  const percent = job.status === "done" ? 100 : job.total ? Math.min(100, Math.round((100 * done) / job.total)) : 0;
  zipBar.firstElementChild.style.width = `${percent}%`;
  zipBar.setAttribute("aria-valuenow", String(percent));
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  zipCounts.textContent = `${plural(job.total, "file")} in the zip · ${job.imported} imported · `
    + `${plural(job.duplicates, "duplicate")} · ${plural(job.errors.length, "error")}`;
  zipErrors.replaceChildren(...job.errors.map((err) => {
    const li = document.createElement("li");
    // Ingest errors already start with the file's base name.
    const base = err.file.split("/").pop();
    li.textContent = err.error.startsWith(`${base}:`) ? `${err.file}${err.error.slice(base.length)}` : `${err.file}: ${err.error}`;
    return li;
  }));
}

function showZipError(message) {
  zipPanel.hidden = false;
  zipStatus.textContent = "refused";
  zipStatus.className = "status status-failed";
  zipCounts.textContent = "";
  const li = document.createElement("li");
  li.textContent = message;
  zipErrors.replaceChildren(li);
}

async function pollJob(id) {
  for (;;) {
    const response = await fetch(`${config.importUrl}${id}/`, { headers: { Accept: "application/json" } });
    if (!response.ok) { showZipError(`Could not read job ${id}: HTTP ${response.status}`); return; }
    const job = await response.json();
    showJob(job);
    if (job.status === "done" || job.status === "failed") return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

zipForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!specSelect.value || !sourceSelect.value) { showZipError("Choose a spec and a source above first."); return; }
  if (!zipFile.files.length) { showZipError("Choose a zip file."); return; }
  const zip = zipFile.files[0];
  // The server refuses it too, but only once the browser has sent what fits in its limit.
  if (zip.size > config.maxArchiveBytes) {
    showZipError(`${zip.name}: the file is ${zip.size} bytes; at most ${config.maxArchiveBytes} bytes are accepted.`);
    return;
  }
  const body = new FormData();
  body.append("spec", specSelect.value);
  body.append("source", sourceSelect.value);
  for (const slug of tickedCategories(categoryBox)) body.append("categories", slug);
  body.append("archive", zip);
  const button = document.getElementById("zip-start");
  button.disabled = true;
  try {
    const response = await fetch(config.importUrl, {
      method: "POST", body, headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
    });
    const data = await response.json().catch(() => null);
    if (response.status !== 201) {
      showZipError(data ? messagesOf(data) : `HTTP ${response.status}`);
      return;
    }
    showJob(data);
    await pollJob(data.id);
  } finally {
    button.disabled = false;
  }
});

renderCategories();
checkLicence();
refreshButtons();
