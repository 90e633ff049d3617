// Snapshot page: poll the API while the snapshot is being built (then reload to show it)
// and while exports are queued or running (then update their row in place and show the
// download link). Plain ES module, no framework, no build step.

const POLL_MS = 1000;
const BUSY = new Set(["queued", "running", "building"]);
const LABELS = { queued: "Queued", running: "Running", building: "Building", done: "Done", ready: "Ready", failed: "Failed" };

async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function setStatus(el, status) {
  el.className = `status status-${status}`;
  el.textContent = LABELS[status] || status;
}

function formatSize(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit ? `${value.toFixed(1)}\u00a0${units[unit]}` : `${value}\u00a0bytes`;
}

function renderExport(row, job) {
  const cell = (name) => row.querySelector(`[data-field="${name}"]`);
  row.dataset.status = job.status;
  setStatus(cell("status"), job.status);
  if (!BUSY.has(job.status)) cell("progress")?.remove();
  for (const name of ["images", "regions", "excluded_images"]) cell(name).textContent = String(job[name]);
  cell("size").textContent = job.size ? formatSize(job.size) : "";
  const download = cell("download");
  download.replaceChildren();
  if (job.status === "done" && job.download_url) {
    const link = document.createElement("a");
    link.href = job.download_url;
    link.setAttribute("download", "");
    link.textContent = "Download zip";
    download.append(link);
  } else if (job.status === "failed") {
    const error = document.createElement("span");
    error.className = "result-error";
    error.textContent = job.error;
    download.append(error);
  }
}

async function pollExport(row) {
  while (BUSY.has(row.dataset.status)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      renderExport(row, await fetchJson(row.dataset.url));
    } catch (err) {
      console.warn(err); // a hiccup of the network: try again on the next tick
    }
  }
}

async function pollSnapshot(badge) {
  while (BUSY.has(badge.dataset.status)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const snapshot = await fetchJson(badge.dataset.url);
      if (snapshot.status !== badge.dataset.status) {
        badge.dataset.status = snapshot.status;
        setStatus(badge, snapshot.status);
      }
    } catch (err) {
      console.warn(err);
    }
  }
  window.location.reload(); // built or failed: the server renders the split and licence tables
}

const badge = document.getElementById("snapshot-status");
if (badge && BUSY.has(badge.dataset.status)) pollSnapshot(badge);
for (const row of document.querySelectorAll("#export-table tr[data-export]")) {
  if (BUSY.has(row.dataset.status)) pollExport(row);
}
