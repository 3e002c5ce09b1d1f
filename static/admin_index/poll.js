// Following a background run from the admin: poll its staff-only JSON view every second while it is under way
// (reindex runs: progress.js; duplicate finder runs: duplicates.js).
const POLL_MS = 1000;

export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => (key in values ? String(values[key]) : ""));
}

// Calls render(section, run) with each answer of section.dataset.url until the run is no longer active, then
// ended(section, wasActive) where given (wasActive: the page saw it under way).
export async function follow(section, render, ended) {
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
      if (ended) ended(section, wasActive);
      return;
    }
    wasActive = true;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
