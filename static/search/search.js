// Search-by-image page: preview, submit, poll the job, render results.
// Plain ES module, no dependencies. All data goes into the DOM via textContent.

const API_URL = "/api/v1/searches/";
const POLL_MS = 400;
const POLL_TIMEOUT_MS = 2 * 60 * 1000;

const form = document.getElementById("search-form");
const fileInput = form.elements.namedItem("image");
const button = form.querySelector('button[type="submit"]');
const preview = document.getElementById("preview");
const statusBox = document.getElementById("status");
const spinner = statusBox.querySelector(".spinner");
const statusText = statusBox.querySelector(".status-text");
const errorBox = document.getElementById("error");
const countLine = document.getElementById("count");
const results = document.getElementById("results");
const maxUploadMb = Number(form.dataset.maxUploadMb) || 0;

let previewUrl = null;

function el(tag, props = {}, text) {
  const node = Object.assign(document.createElement(tag), props);
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

// Only allow http(s) links coming from the API (no javascript: URLs).
function safeUrl(url) {
  try {
    const u = new URL(String(url), window.location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function setBusy(busy, message = "") {
  button.disabled = busy;
  spinner.hidden = !busy;
  statusText.textContent = message;
  form.setAttribute("aria-busy", String(busy));
}

function showError(message) {
  setBusy(false);
  errorBox.textContent = message || "Something went wrong. Please try again.";
  errorBox.hidden = false;
}

function clearOutput() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  countLine.textContent = "";
  results.replaceChildren();
}

// Turn {"detail": "..."} or DRF field errors {"k": ["..."]} into readable text.
function errorMessage(data, fallback) {
  if (!data || typeof data !== "object") return fallback;
  if (typeof data.detail === "string") return data.detail;
  const lines = [];
  for (const [field, value] of Object.entries(data)) {
    const messages = (Array.isArray(value) ? value : [value]).flat(Infinity)
      .map((m) => (typeof m === "string" ? m : JSON.stringify(m)));
    const input = form.elements.namedItem(field);
    const label = input && input.id ? form.querySelector(`label[for="${input.id}"]`) : null;
    const name = label ? label.textContent.trim() : field === "non_field_errors" ? "" : field;
    for (const m of messages) lines.push(name ? `${name}: ${m}` : m);
  }
  return lines.length ? lines.join("\n") : fallback;
}

function statusMessage(status, data) {
  switch (status) {
    case 413: return `The image is too large${maxUploadMb ? ` (maximum ${maxUploadMb} MB)` : ""}.`;
    case 429: return "Too many searches right now. Please wait a moment and try again.";
    case 503: return "The search service is temporarily unavailable. Please try again shortly.";
    case 400: return errorMessage(data, "The search request was not valid.");
    default: return errorMessage(data, `The server answered with an error (HTTP ${status}).`);
  }
}

async function request(url, options) {
  let res;
  try {
    res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
  } catch {
    throw new Error("Could not reach the server. Check your connection and try again.");
  }
  let data = null;
  try { data = await res.json(); } catch { /* non-JSON body, e.g. proxy error page */ }
  if (!res.ok) throw new Error(statusMessage(res.status, data));
  if (!data) throw new Error("The server sent an unexpected response.");
  return { status: res.status, data };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pollJob(url) {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const { data } = await request(url, { method: "GET" });
    if (data.status === "done") return data;
    if (data.status === "failed") throw new Error(data.error || "The search failed.");
    setBusy(true, data.status === "running" ? "Searching…" : "Waiting in queue…");
    await sleep(POLL_MS);
  }
  throw new Error("The search is taking too long. Please try again later.");
}

function renderResults(job) {
  const items = Array.isArray(job.results) ? job.results : [];
  const n = Number.isInteger(job.count) ? job.count : items.length;
  countLine.textContent = n === 0 ? "No similar images found"
    : n === 1 ? "1 similar image found" : `${n} similar images found`;
  const cards = items.map((r) => {
    const title = r.title || `Image ${r.image_id}`;
    const card = el("li", { className: "card" });
    const img = el("img", { alt: title, loading: "lazy", decoding: "async" });
    const thumb = safeUrl(r.thumbnail_url || r.image_url);
    if (thumb) img.src = thumb;
    const href = safeUrl(r.image_url);
    const media = href ? el("a", { href, target: "_blank", rel: "noopener" }) : el("div");
    media.className = "card-media";
    media.append(img);
    const score = Number(r.score);
    card.append(media, el("p", { className: "card-title", title }, title),
      el("p", { className: "card-score" }, Number.isFinite(score) ? `${(score * 100).toFixed(1)}%` : ""));
    if (Array.isArray(r.tags) && r.tags.length) {
      const chips = el("ul", { className: "chips" });
      for (const tag of r.tags) chips.append(el("li", { className: "chip" }, String(tag)));
      card.append(chips);
    }
    return card;
  });
  results.replaceChildren(...cards);
}

fileInput.addEventListener("change", () => {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  const file = fileInput.files && fileInput.files[0];
  if (!file) { preview.replaceChildren(); preview.hidden = true; return; }
  previewUrl = URL.createObjectURL(file);
  preview.replaceChildren(
    el("img", { src: previewUrl, alt: "" }),
    el("p", { className: "preview-meta" }, `${file.name} (${formatSize(file.size)})`),
  );
  preview.hidden = false;
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (button.disabled) return;
  clearOutput();
  const file = fileInput.files && fileInput.files[0];
  if (!file) return showError("Please choose an image first.");
  if (maxUploadMb && file.size > maxUploadMb * 1024 * 1024) {
    return showError(`The image is too large (${formatSize(file.size)}; maximum ${maxUploadMb} MB).`);
  }
  setBusy(true, "Uploading…");
  try {
    const csrf = form.elements.namedItem("csrfmiddlewaretoken");
    const { data } = await request(API_URL, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json", "X-CSRFToken": csrf ? csrf.value : "" },
    });
    if (!data.url) throw new Error("The server sent an unexpected response.");
    const job = await pollJob(data.url);
    setBusy(false);
    renderResults(job);
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
  }
});
