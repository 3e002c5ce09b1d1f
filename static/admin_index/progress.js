// Live progress of a reindex run: polls the staff-only JSON view every second while the run is under way.
import { fill, follow } from "./poll.js";

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function render(section, run) {
  const text = section.dataset;
  const bar = section.querySelector(".reindex-bar");
  bar.max = Math.max(run.total, 1);
  bar.value = run.processed;
  section.querySelector(".reindex-status").textContent = fill(text.textStatus, { status: run.status_label });
  section.querySelector(".reindex-counts").textContent = fill(text.textCounts, run);
  const speed = [];
  if (run.rate) speed.push(fill(text.textRate, { rate: run.rate.toFixed(1) }));
  if (run.eta_seconds !== null) speed.push(fill(text.textEta, { eta: duration(run.eta_seconds) }));
  section.querySelector(".reindex-speed").textContent = speed.join(", ");
  const error = section.querySelector(".reindex-error");
  error.textContent = run.error || "";
  error.hidden = !run.error;
  const cancel = section.querySelector(".reindex-cancel");
  if (cancel && !run.active) cancel.remove();
}

document.querySelectorAll(".reindex-progress[data-url]").forEach((section) => follow(section, render));
