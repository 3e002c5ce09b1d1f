// The JSON API: searches and favourites. Errors become ApiError with a sentence fit to show.
import { format, gettext } from "./i18n.js";

const SEARCHES_URL = "/api/v1/searches/";
const FAVOURITES_URL = "/api/v1/favorites/";
const POLL_MS = 350;
const WAIT_S = 10;
const POLL_TIMEOUT_MS = 3 * 60 * 1000;

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

function csrfToken() {
  const field = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (field) return field.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function statusMessage(status, data) {
  const detail = data && typeof data.detail === "string" ? data.detail : "";
  if (status === 400 && detail) return detail;  // the API's own sentence (English only, for now)
  if (status === 401 || status === 403) return gettext("Please sign in to do this.");
  if (status === 404) return gettext("This search is no longer available. Start a new one.");
  if (status === 413) return gettext("The image is too large.");
  if (status === 429) return gettext("Too many searches right now. Please wait a moment and try again.");
  if (status >= 500) return gettext("The search service had a problem. Please try again shortly.");
  return format(gettext("The server answered with an error (HTTP %(status)s)."), { status });
}

export async function request(url, { method = "GET", body, json, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, { method, body, headers, signal, credentials: "same-origin" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(gettext("Could not reach the server. Check your connection and try again."));
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(statusMessage(response.status, data), response.status);
  if (data === null) throw new ApiError(gettext("The server sent an unexpected answer."), response.status);
  return data;
}

/** Start a search; `fields` holds exactly one of image / image_id / from_search, plus the terms. */
export function searchCreate(fields, signal) {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) value.forEach((v) => body.append(name, v));
    else if (value instanceof File) body.append(name, value, value.name);
    else if (value !== undefined && value !== null) body.append(name, String(value));
  }
  return request(SEARCHES_URL, { method: "POST", body, signal });
}

export function searchUrl(jobId) {
  return `${SEARCHES_URL}${encodeURIComponent(jobId)}/`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follow a job until it is done (returned) or failed (thrown); `onStatus` hears each state. The server holds
 * each request until the job ends (up to WAIT_S seconds), so results show the moment they are stored; when it
 * answers at once with the job still going (too busy to wait), we poll every POLL_MS instead. */
export async function searchWait(url, onStatus, signal) {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const asked = Date.now();
    const job = await request(`${url}?wait=${WAIT_S}`, { signal });
    if (job.status === "done") return job;
    if (job.status === "failed") throw new ApiError(job.error || gettext("The search failed."));
    onStatus(job.status);
    if (Date.now() - asked < POLL_MS) await sleep(POLL_MS);
    if (signal && signal.aborted) throw new DOMException("aborted", "AbortError");
  }
  throw new ApiError(gettext("The search is taking too long. Please try again later."));
}

export const favouritesList = () => request(FAVOURITES_URL);
export const favouriteAdd = (imageId) => request(FAVOURITES_URL, { method: "POST", json: { image_id: imageId } });
export const favouriteRemove = (id) => request(`${FAVOURITES_URL}${encodeURIComponent(id)}/`, { method: "DELETE" });
