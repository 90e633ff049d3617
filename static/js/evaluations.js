// Evaluation pages: while a run is queued or running, poll the API and show its status and
// progress as the worker stores batches; once it has finished (done, failed or cancelled),
// reload, so the server renders its metrics, verdicts and best-per-column highlighting (and the
// Cancel button goes). Plain ES module, no framework, no build step.

const POLL_MS = 2000;
const BUSY = new Set(["queued", "running"]);
const LABELS = { queued: "Queued", running: "Running", done: "Done", failed: "Failed", cancelled: "Cancelled" };

async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function render(el, run) {
  const badge = el.querySelector("[data-field=status]");
  if (badge) {
    badge.className = `status status-${run.status}`;
    badge.textContent = LABELS[run.status] || run.status;
  }
  for (const bar of el.querySelectorAll("progress[data-field=progress]")) {
    bar.max = run.total;
    bar.value = run.processed;
  }
  for (const count of el.querySelectorAll("[data-field=count]")) count.textContent = `${run.processed}/${run.total}`;
}

async function poll(el) {
  while (BUSY.has(el.dataset.status)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const run = await fetchJson(el.dataset.url);
      el.dataset.status = run.status;
      render(el, run);
    } catch (err) {
      console.warn(err); // a hiccup of the network: try again on the next tick
    }
  }
  window.location.reload();
}

for (const el of document.querySelectorAll("[data-run-poll]")) {
  if (BUSY.has(el.dataset.status)) poll(el);
}
