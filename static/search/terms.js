// Search terms (number of results, minimum similarity, categories, copies first) and refinement: a change that
// only narrows what an earlier job already returned is answered from its results, anything else re-runs. The region
// (region.js) is a term too: the page adds it, and a search of another part of the image always re-runs.
import { sameRegion } from "./region.js";

const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

export function readTerms(form, maxK) {
  const k = Math.round(Number(form.elements.k.value));
  const minScore = Number(form.elements.min_score.value);
  return {
    k: Number.isFinite(k) ? Math.min(Math.max(k, 1), maxK) : 20,
    min_score: Number.isFinite(minScore) ? Math.min(Math.max(minScore, 0), 1) : 0,
    categories: [...form.querySelectorAll("input[name=categories]:checked")].map((box) => box.value),
    rerank: form.elements.rerank.checked,
  };
}

export function writeTerms(form, terms) {
  form.elements.k.value = terms.k;
  form.elements.min_score.value = terms.min_score;
  for (const box of form.querySelectorAll("input[name=categories]")) box.checked = terms.categories.includes(box.value);
  form.elements.rerank.checked = terms.rerank;
  form.elements.min_score.dispatchEvent(new Event("input")); // redraws the slider's read-out
}

export function termsEqual(a, b) {
  return a.k === b.k && a.min_score === b.min_score && sameSet(a.categories, b.categories) && a.rerank === b.rerank
    && sameRegion(a.region, b.region);
}

/** Whether `terms` can be answered exactly from `job`'s results, without asking the server. */
export function canRefilter(job, terms) {
  if (terms.rerank !== job.rerank) return false; // re-ranking changes which results there are and their order
  if (!sameRegion(terms.region, job.region)) return false; // another part of the image is another query
  const jobCategories = job.categories || [];
  const narrower = jobCategories.length === 0 || (terms.categories.length > 0 && terms.categories.every((c) => jobCategories.includes(c)));
  // A job that returned fewer than k images returned every image that passed its terms.
  const exhaustive = job.count < job.k;
  const sameScope = sameSet(jobCategories, terms.categories) && terms.k <= job.k;
  return terms.min_score >= job.min_score && narrower && (exhaustive || sameScope);
}

export function refilter(job, terms) {
  return job.results
    .filter((r) => r.score >= terms.min_score)
    .filter((r) => terms.categories.length === 0 || (r.tags || []).some((t) => terms.categories.includes(t)))
    .slice(0, terms.k);
}

/** A minimum similarity that lets results through: just under the best score seen, else none. */
export function relaxedMinimum(job, terms) {
  const scores = job ? job.results.filter((r) => terms.categories.length === 0 || (r.tags || []).some((t) => terms.categories.includes(t))).map((r) => r.score) : [];
  const best = scores.length ? Math.max(...scores) : 0;
  const relaxed = Math.floor(best * 20) / 20; // the slider's 5% steps
  return relaxed < terms.min_score ? relaxed : 0;
}

export function termsFromUrl(params, fallback) {
  if (!["k", "min_score", "categories", "rerank"].some((name) => params.has(name))) return null;
  return {
    ...fallback,
    k: params.has("k") ? Number(params.get("k")) : fallback.k,
    min_score: params.has("min_score") ? Number(params.get("min_score")) : fallback.min_score,
    categories: params.has("categories") ? params.get("categories").split(",").filter(Boolean) : fallback.categories,
    rerank: params.has("rerank") ? !["false", "0"].includes(params.get("rerank")) : fallback.rerank,
  };
}
