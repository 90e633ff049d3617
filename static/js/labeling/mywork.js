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
      msg.textContent = blocked.length ? `No task yet: ${blocked.join(" ")}` : "No task is waiting for you right now. Check back later.";
    } catch (e) {
      msg.textContent = `Could not get a task: ${e.message}`;
    }
    btn.disabled = false;
  });
}
