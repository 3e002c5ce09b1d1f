// The search page: wires the query image, the terms, the job, the results and the favourites together.
import { searchCreate, searchUrl, searchWait } from "./api.js";
import { createFavourites } from "./favourites.js";
import { format, formatPercent, gettext, ngettext } from "./i18n.js";
import { createLightbox } from "./lightbox.js";
import { createPalette } from "./palette.js";
import { createRegion, regionText } from "./region.js";
import { createResults, titleOf } from "./results.js";
import { createSource } from "./source.js";
import { canRefilter, readTerms, refilter, relaxedMinimum, termsEqual, termsFromUrl, writeTerms } from "./terms.js";

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const ui = {
  status: $("status"), statusText: $("status-text"), error: $("error"), start: $("start"), view: $("results-view"),
  count: $("count"), summary: $("terms-summary"), empty: $("empty"), emptyText: $("empty-text"), relax: $("relax-button"),
  back: $("back-button"), button: $("search-button"), grid: $("results"), thumbSize: $("thumb-size"), copies: $("copies"),
};
const maxK = Number(form.dataset.maxK) || 100;
const palette = createPalette(JSON.parse($("tag-names").textContent));
const STATUS_TEXT = {
  uploading: gettext("Sending your image…"),
  pending: gettext("Waiting for a free worker…"),
  running: gettext("Comparing with the index…"),
};

const state = { job: null, terms: null, items: [], view: "results", controller: null, refocus: false };
const jobTerms = (job) => ({ k: job.k, min_score: job.min_score, categories: job.categories || [], rerank: job.rerank, region: job.region || null });

function setStatus(kind) {
  ui.status.dataset.state = kind;
  ui.statusText.textContent = STATUS_TEXT[kind] || "";
  const busy = kind in STATUS_TEXT;
  // Disabled while a search runs, Search! lets go of the focus: it gets it back when the search ends, unless the
  // person has moved on meanwhile, so a keyboard user goes on from where they were.
  if (busy && document.activeElement === ui.button) state.refocus = true;
  ui.button.disabled = busy;
  if (!busy && state.refocus) {
    state.refocus = false;
    if (document.activeElement === document.body) ui.button.focus();
  }
  ui.view.setAttribute("aria-busy", String(busy));
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

let regionTimer = null;
const region = createRegion({
  area: document.querySelector("[data-region-area]"), image: document.querySelector("[data-source-preview] img"),
  box: document.querySelector("[data-region-box]"), tools: document.querySelector("[data-region-tools]"),
  status: document.querySelector("[data-region-status]"), draw: $("region-draw"), clear: $("region-clear"),
  // A new box, or none, re-runs a search on the screen, as a change of the other terms does.
  onChange: () => {
    if (!state.job) return;
    clearTimeout(regionTimer);
    regionTimer = setTimeout(search, 250);
  },
});

const source = createSource({
  zone: $("dropzone"), input: $("id_image"), maxBytes: Number(form.dataset.maxBytes) || 0,
  onChange: () => { showError(""); region.set(null); }, // a box drawn on another image means nothing on this one
  onError: showError,
});

const favourites = createFavourites({
  area: $("favourites"), signedIn: form.dataset.signedIn === "true", loginUrl: form.dataset.loginUrl,
  onChange: () => (state.view === "favourites" ? render() : results.refreshStars()),
  onOpen: () => { state.view = state.view === "favourites" ? "results" : "favourites"; render(); ui.view.scrollIntoView({ block: "nearest" }); },
});

const handlers = {
  onOpen: (item, opener) => lightbox.open(results.visible(), item, opener),
  onStar: (item) => favourites.toggle(item),
  onSearchWith: (item) => searchWith(item),
};
const results = createResults({ grid: ui.grid, filter: $("tag-filter"), palette, isFavourite: favourites.isFavourite, handlers });
const lightbox = createLightbox({ dialog: $("lightbox"), palette, isFavourite: favourites.isFavourite, ...handlers });

function summaryPills(terms) {
  const pills = [format(gettext("Image: %(name)s"), { name: source.current ? source.current.name : "" }),
    format(ngettext("Up to %(k)s result", "Up to %(k)s results", terms.k), { k: terms.k })];
  if (terms.min_score > 0) pills.push(format(gettext("Similarity ≥ %(score)s"), { score: formatPercent(terms.min_score) }));
  pills.push(terms.categories.length ? format(gettext("Categories: %(list)s"), { list: terms.categories.join(", ") }) : gettext("All categories"));
  if (terms.region) pills.push(format(gettext("Region: %(region)s"), { region: regionText(terms.region) }));
  return pills.map((text) => Object.assign(document.createElement("li"), { textContent: text }));
}

function renderEmpty(favouritesView, n) {
  ui.empty.hidden = n > 0;
  ui.relax.hidden = true;
  if (n > 0) return;
  if (favouritesView) return (ui.emptyText.textContent = gettext("No favourites yet. Drag a result onto the favourites area, or press its star."));
  const relaxed = state.terms.min_score > 0 ? relaxedMinimum(state.job, state.terms) : null;
  if (relaxed === null) return (ui.emptyText.textContent = gettext("Nothing matched. Try more categories or another image."));
  ui.emptyText.textContent = format(gettext("No image is at least %(score)s similar."), { score: formatPercent(state.terms.min_score) });
  ui.relax.textContent = relaxed > 0 ? format(gettext("Lower the minimum to %(score)s"), { score: formatPercent(relaxed) }) : gettext("Show the closest images anyway");
  ui.relax.dataset.minScore = String(relaxed);
  ui.relax.hidden = false;
}

function render() {
  const favouritesView = state.view === "favourites";
  const items = favouritesView ? favourites.items() : state.items;
  const n = items.length;
  ui.start.hidden = favouritesView || state.job !== null;
  ui.view.hidden = !ui.start.hidden;
  ui.view.classList.toggle("is-favourites", favouritesView);
  ui.count.textContent = favouritesView
    ? format(ngettext("%(count)s favourite", "%(count)s favourites", n), { count: n })
    : format(ngettext("%(count)s similar image found", "%(count)s similar images found", n), { count: n });
  const copies = favouritesView ? 0 : items.filter((item) => item.match === "copy").length;
  ui.copies.hidden = copies === 0;
  ui.copies.textContent = format(ngettext("%(count)s of them is the same picture as yours",
    "%(count)s of them are the same picture as yours", copies), { count: copies });
  ui.summary.replaceChildren(...(favouritesView || !state.terms ? [] : summaryPills(state.terms)));
  ui.back.hidden = !favouritesView;
  ui.thumbSize.closest("label").hidden = n === 0;
  $("favourites-toggle").setAttribute("aria-pressed", String(favouritesView));
  if (!ui.view.hidden) renderEmpty(favouritesView, n);
  results.render(items);
}

function show(job, terms) {
  Object.assign(state, { job, terms, items: refilter(job, terms), view: "results" });
  render();
  const params = new URLSearchParams({ job: job.id });
  if (!termsEqual(terms, jobTerms(job))) {
    params.set("k", terms.k);
    params.set("min_score", terms.min_score);
    params.set("categories", terms.categories.join(","));
    params.set("rerank", terms.rerank);
  }
  history.replaceState(null, "", `${location.pathname}?${params}`);
  // Announced by the live region, shown only to screen readers.
  ui.statusText.textContent = ui.copies.hidden ? ui.count.textContent : `${ui.count.textContent}. ${ui.copies.textContent}`;
}

function sourceFields(current) {
  if (current.kind === "file") return { image: current.file };
  if (current.kind === "image") return { image_id: current.imageId };
  return { from_search: current.jobId };
}

/** Start a job on the server and follow it; a newer search or Clear aborts this one. */
async function run(current, terms) {
  if (state.controller) state.controller.abort();
  const controller = (state.controller = new AbortController());
  showError("");
  setStatus(current.kind === "file" ? "uploading" : "pending");
  try {
    const area = terms.region ? ["x", "y", "width", "height"].map((key) => terms.region[key]).join(",") : undefined;
    const created = await searchCreate({ ...sourceFields(current), ...terms, region: area }, controller.signal);
    setStatus(created.status);
    const job = await searchWait(created.url, setStatus, controller.signal);
    source.replace({ kind: "job", jobId: job.id, name: current.name });
    setStatus("done");
    show(job, jobTerms(job));
    // On a phone the results start below the form: bring them into view.
    if (ui.view.getBoundingClientRect().top > window.innerHeight * 0.8) ui.view.scrollIntoView({ behavior: "smooth" });
  } catch (err) {
    if (err.name === "AbortError") return;
    setStatus("failed");
    showError(err.message);
  }
}

/** Search!, or a change of terms: answered from the current results when they suffice. */
function search() {
  const current = source.current;
  if (!current) return showError(gettext("First choose, drop or paste an image."));
  const terms = { ...readTerms(form, maxK), region: region.value };
  form.elements.k.value = terms.k; // an out-of-range number is searched clamped: show what was used
  if (state.job && current.kind === "job" && current.jobId === state.job.id && canRefilter(state.job, terms)) {
    showError("");
    return show(state.job, terms);
  }
  run(current, terms);
}

function searchWith(item) {
  source.setRemote({ kind: "image", imageId: item.image_id, name: titleOf(item) }, item.thumbnail_url || item.image_url);
  $("dropzone").scrollIntoView({ block: "nearest", behavior: "smooth" });
  search();
}

function clear() {
  if (state.controller) state.controller.abort();
  Object.assign(state, { job: null, terms: null, items: [], view: "results", controller: null });
  source.clear();
  region.set(null);
  form.reset();
  form.elements.min_score.dispatchEvent(new Event("input"));
  results.setTag(null);
  showError("");
  setStatus("idle");
  history.replaceState(null, "", location.pathname);
  render();
  $("choose-button").focus();
}

/** `?job=<id>` (a reload, a shared link): follow that job and show its results with the same terms. */
async function resume(jobId) {
  const controller = (state.controller = new AbortController());
  setStatus("pending");
  try {
    const job = await searchWait(searchUrl(jobId), setStatus, controller.signal);
    // A search made with an indexed image shows that image, by its title, where it is among the results.
    const shown = job.results.find((r) => r.image_id === job.source_image_id);
    source.setRemote({ kind: "job", jobId: job.id, name: job.query_name || shown?.title || gettext("Your earlier search") },
      job.query_image_url || (shown ? shown.thumbnail_url || shown.image_url : ""));
    region.set(job.region || null);
    setStatus("done");
    const wanted = termsFromUrl(new URLSearchParams(location.search), jobTerms(job));
    writeTerms(form, wanted || jobTerms(job));
    state.job = job;
    if (wanted) search();
    else show(job, jobTerms(job));
  } catch (err) {
    if (err.name === "AbortError") return;
    setStatus("failed");
    showError(err.message);
  }
}

function wireForm() {
  let timer = null;
  form.addEventListener("submit", (event) => { event.preventDefault(); search(); });
  form.addEventListener("change", (event) => {
    if (!["k", "min_score", "categories", "rerank"].includes(event.target.name) || !state.job) return;
    clearTimeout(timer);
    timer = setTimeout(search, 250); // several quick changes make one search
  });
  form.elements.min_score.addEventListener("input", () => { $("min-score-value").textContent = formatPercent(Number(form.elements.min_score.value)); });
  $("choose-button").addEventListener("click", () => $("id_image").click());
  $("clear-button").addEventListener("click", clear);
  document.querySelectorAll(".sample").forEach((button) => button.addEventListener("click", () => searchWith(
    { image_id: Number(button.dataset.imageId), title: button.dataset.title, thumbnail_url: button.dataset.thumbnailUrl })));
  ui.relax.addEventListener("click", () => { writeTerms(form, { ...readTerms(form, maxK), min_score: Number(ui.relax.dataset.minScore) }); search(); });
  region.render();
  ui.back.addEventListener("click", () => { state.view = "results"; render(); });
  document.addEventListener("keydown", (event) => {
    // Enter searches from anywhere that has no Enter of its own (after a paste, say).
    if (event.key === "Enter" && (event.target === document.body || event.target.id === "dropzone")) search();
  });
}

function wireThumbSize() {
  const apply = () => ui.grid.style.setProperty("--thumb", `${ui.thumbSize.value}px`);
  const saved = localStorage.getItem("imgsearch.thumb");
  if (saved) ui.thumbSize.value = saved;
  apply();
  ui.thumbSize.addEventListener("input", () => { apply(); localStorage.setItem("imgsearch.thumb", ui.thumbSize.value); });
}

wireForm();
wireThumbSize();
document.querySelectorAll(".category-name[data-tag]").forEach((node) => node.style.setProperty("--tag", palette(node.dataset.tag)));
favourites.load();
if (form.dataset.job) resume(form.dataset.job);
else render();
