// "Start labeling": ask the queue for the next task and open it.
import { claimNext } from "./api.js";

const btn = document.getElementById("start-labeling");
const msg = document.getElementById("start-message");
if (btn) {
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    msg.textContent = "Finding your next image…";
    try {
      const next = await claimNext();
      if (next.task) { window.location.href = `/label/${next.task.id}/`; return; }
      const blocked = Object.values(next.blocked || {});
      if (!blocked.length) { msg.textContent = "No task is waiting for you right now. Check back later."; }
      else { showBlocked(blocked); }
    } catch (e) {
      msg.textContent = `Could not get a task: ${e.message}`;
    }
    btn.disabled = false;
  });
}

// Why the queue held work back (e.g. a guide to acknowledge first), with its link clickable.
function showBlocked(reasons) {
  msg.replaceChildren(document.createTextNode("No task yet: "));
  for (const reason of reasons) {
    const m = reason.match(/^(.*?)(\/[\w\-\/]+\/)\s*$/);
    if (!m) { msg.append(reason + " "); continue; }
    const link = document.createElement("a");
    link.href = m[2];
    link.textContent = "open the guide";
    msg.append(m[1], link, " ");
  }
}
