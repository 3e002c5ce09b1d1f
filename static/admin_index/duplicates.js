// The duplicate finder's page: the run's live progress (polled from the staff-only JSON view while it is under way,
// through poll.js, as for reindex runs), a link to the groups once it ends, and a confirmation before "keep this one".
import { fill, follow } from "./poll.js";

function render(section, run) {
  const text = section.dataset;
  const bar = section.querySelector(".reindex-bar");
  bar.max = Math.max(run.total, 1);
  bar.value = run.processed;
  section.querySelector(".reindex-status").textContent = fill(text.textStatus, { status: run.status_label });
  section.querySelector(".reindex-counts").textContent = fill(text.textCounts, run);
  section.querySelector(".reindex-speed").textContent = run.rate ? fill(text.textRate, { rate: run.rate.toFixed(1) }) : "";
  const error = section.querySelector(".reindex-error");
  error.textContent = run.error || "";
  error.hidden = !run.error;
}

// New groups are on the page's next load: offer it once a run the page saw under way has ended.
const offerReload = (section, wasActive) => {
  if (wasActive) section.querySelector(".dup-reload").hidden = false;
};
document.querySelectorAll(".dup-progress[data-url]").forEach((section) => follow(section, render, offerReload));
document.querySelectorAll("form.dup-keep[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
