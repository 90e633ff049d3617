// Pre-labeling jobs page: live progress from the API while any job runs.
async function refresh() {
  const rows = document.querySelectorAll("#jobs tr[data-job]");
  let running = false;
  for (const row of rows) {
    if (row.querySelector(".status").textContent !== "running") continue;
    running = true;
    const r = await fetch(`/api/v1/prelabel-jobs/${row.dataset.job}/`, { credentials: "same-origin" });
    if (!r.ok) continue;
    const job = await r.json(), p = job.progress;
    row.querySelector(".status").textContent = job.status;
    row.querySelector("progress").value = p.finished;
    row.querySelector(".count").textContent = `${p.finished}/${p.total}`;
    for (const k of ["done", "skipped", "failed"]) row.querySelector("." + k).textContent = p[k];
    row.querySelector(".eta").textContent = p.eta_seconds ? `${Math.round(p.eta_seconds)} s` : "–";
    row.querySelector("progress").max = p.total;
    if (job.status !== "running") {
      // Finished (or cancelled elsewhere): nothing left to cancel; the failures list is the server's.
      row.querySelector('form[action$="/cancel/"]')?.remove();
      if (p.failed && !document.querySelector(`[data-failures-of="${job.id}"]`)) {
        const note = document.createElement("tr");
        note.className = "job-failures"; note.dataset.failuresOf = job.id;
        const cell = document.createElement("td");
        cell.colSpan = 9;
        const link = document.createElement("a");
        link.href = window.location.href; link.textContent = `${p.failed} image${p.failed === 1 ? "" : "s"} failed: reload to see why`;
        cell.append(link); note.append(cell); row.after(note);
      }
    }
  }
  if (running) setTimeout(refresh, 3000);
}
setTimeout(refresh, 3000);
