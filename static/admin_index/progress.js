// Live progress of a reindex run: polls the staff-only JSON view every second while the run is under way.
const POLL_MS = 1000;

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => (key in values ? String(values[key]) : ""));
}

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

async function follow(section) {
  for (;;) {
    let run;
    try {
      const response = await fetch(section.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return; // signed out, or the run was deleted: stop polling
      run = await response.json();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS * 5)); // network blip: try again later
      continue;
    }
    render(section, run);
    if (!run.active) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

document.querySelectorAll(".reindex-progress[data-url]").forEach(follow);
