// The duplicate finder's page: the run's live progress (polled from the staff-only JSON view while it is under way,
// as progress.js does for reindex runs), a link to the groups once it ends, and a confirmation before "keep this one".
const POLL_MS = 1000;

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => (key in values ? String(values[key]) : ""));
}

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

async function follow(section) {
  let wasActive = false;
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
    if (!run.active) {
      if (wasActive) section.querySelector(".dup-reload").hidden = false; // new groups are on the page's next load
      return;
    }
    wasActive = true;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

document.querySelectorAll(".dup-progress[data-url]").forEach(follow);
document.querySelectorAll("form.dup-keep[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
