// The results grid: cards with thumbnail, score and tags (and a badge on a verified copy of the query), chips
// that filter by tag, the star and "Search with this image" on every card. Cards can be dragged onto the
// favourites area.
import { el, icon, safeUrl } from "./dom.js";
import { format, formatNumber, formatPercent, gettext } from "./i18n.js";
import { RESULT_MIME } from "./source.js";

export function titleOf(item) {
  return item.title || format(gettext("Image %(id)s"), { id: item.image_id });
}

export function tagList(tags, palette) {
  const list = el("ul", { className: "tags", "aria-label": gettext("Tags") });
  for (const tag of tags || []) list.append(el("li", { className: "tag", style: `--tag: ${palette(tag)}` }, String(tag)));
  return list;
}

export function scoreLine(score) {
  if (typeof score !== "number") return null;
  const bar = el("span", { className: "score-bar", "aria-hidden": "true" }, el("span", { style: `width: ${Math.round(score * 100)}%` }));
  return el("p", { className: "score" }, bar, format(gettext("%(score)s similar"), { score: formatPercent(score) }));
}

/** The badge of a result that is (or looks like) the query's own picture; null for the others. "Same picture": the
 * very file, or verified (its keypoints fit the query's and, mapped onto it, it looks the same); "Looks alike": it
 * leads because it resembles the query closely, but nothing proves it is the same picture. */
export function matchBadge(item) {
  const by = item.evidence && item.evidence.by;
  if (item.match === "copy") {
    const title = by === "identical file"
      ? gettext("The very file you searched with")
      : gettext("Verified as the same picture as yours, possibly cropped or edited");
    return el("p", { className: "match-badge", title }, icon("verified"), el("span", {}, gettext("Same picture")));
  }
  if (item.evidence && item.evidence.verdict === "looks alike") {
    const title = gettext("Looks very like your picture, but is not verified as the same picture");
    return el("p", { className: "match-badge is-lookalike", title }, el("span", {}, gettext("Looks alike")));
  }
  return null;
}

/** Show a star button's state: pressed when the image is a favourite. */
export function setStar(button, pressed, title) {
  button.setAttribute("aria-pressed", String(pressed));
  button.title = pressed ? gettext("Remove from favourites") : gettext("Add to favourites");
  // The large view's star says "Favourite" and is named by that word, so that voice control finds it by what it
  // shows (WCAG 2.5.3); an icon-only star on a card names the image it keeps.
  if (button.classList.contains("star-labelled")) return;
  const label = pressed ? gettext("Remove %(title)s from favourites") : gettext("Add %(title)s to favourites");
  button.setAttribute("aria-label", format(label, { title }));
}

function cardActions(item, title, { isFavourite, handlers }) {
  const star = el("button", { type: "button", className: "star" }, icon("star"));
  setStar(star, isFavourite(item.image_id), title);
  star.addEventListener("click", () => handlers.onStar(item));
  // The name starts with the words shown, so "click Find similar" works by voice (WCAG 2.5.3).
  const again = el("button", { type: "button", className: "search-with", title: gettext("Search with this image"),
    "aria-label": format(gettext("Find similar: %(title)s"), { title }) }, icon("search"), el("span", {}, gettext("Find similar")));
  again.addEventListener("click", () => handlers.onSearchWith(item));
  return el("div", { className: "card-tools" }, star, again);
}

function makeDraggable(node, item, title) {
  node.draggable = true;
  node.addEventListener("dragstart", (event) => {
    const url = safeUrl(item.thumbnail_url || item.image_url);
    event.dataTransfer.effectAllowed = "copy";
    event.dataTransfer.setData(RESULT_MIME, JSON.stringify({ id: item.image_id, title, url }));
    event.dataTransfer.setData("text/uri-list", safeUrl(item.image_url));
    node.classList.add("is-dragging");
  });
  node.addEventListener("dragend", () => node.classList.remove("is-dragging"));
}

function card(item, options) {
  const title = titleOf(item);
  const image = el("img", { src: safeUrl(item.thumbnail_url || item.image_url), alt: title, loading: "lazy", decoding: "async", draggable: false });
  const media = el("button", { type: "button", className: "card-media", "aria-label": format(gettext("Enlarge %(title)s"), { title }) }, image);
  media.addEventListener("click", () => options.handlers.onOpen(item, media));
  const body = el("div", { className: "card-body" }, el("p", { className: "card-title", title }, title),
    scoreLine(item.score), tagList(item.tags, options.palette), cardActions(item, title, options));
  const node = el("li", { className: item.match === "copy" ? "card is-copy" : "card", dataset: { imageId: item.image_id } },
    media, matchBadge(item), body);
  makeDraggable(node, item, title);
  return node;
}

const UNTAGGED = ""; // the chip of the results with no tag at all: no given tag, and the classifier was unsure

function hasTag(item, tag) {
  const tags = item.tags || [];
  return tag === null || (tag === UNTAGGED ? tags.length === 0 : tags.includes(tag));
}

function tagCounts(items) {
  const counts = new Map();
  for (const item of items) for (const tag of new Set(item.tags || [])) counts.set(tag, (counts.get(tag) || 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

export function createResults({ grid, filter, palette, isFavourite, handlers }) {
  let items = [];
  let tag = null;

  function chip(label, value, count) {
    const kind = value === null ? "chip chip-all" : value === UNTAGGED ? "chip chip-untagged" : "chip";
    const button = el("button", { type: "button", className: kind,
      "aria-pressed": String(tag === value), dataset: value === null ? {} : { tag: value } },
    el("span", { className: "chip-label" }, label), el("span", { className: "chip-count" }, formatNumber(count)));
    if (value !== null && value !== UNTAGGED) button.style.setProperty("--tag", palette(value));
    button.addEventListener("click", () => setTag(value));
    return button;
  }

  function setTag(value) {
    tag = value;
    for (const button of filter.querySelectorAll(".chip")) button.setAttribute("aria-pressed", String((button.dataset.tag ?? null) === tag));
    grid.querySelectorAll(".card").forEach((node, i) => { node.hidden = !hasTag(items[i], tag); });
  }

  function render(list) {
    items = list;
    const counts = tagCounts(items);
    const untagged = items.filter((item) => hasTag(item, UNTAGGED)).length;
    if (untagged && counts.length) counts.push([UNTAGGED, untagged]); // last; with no tag at all it would be "All" again
    if (!counts.some(([name]) => name === tag)) tag = null;
    filter.replaceChildren(chip(gettext("All"), null, items.length),
      ...counts.map(([name, n]) => chip(name === UNTAGGED ? gettext("Untagged") : name, name, n)));
    filter.hidden = items.length === 0;
    grid.replaceChildren(...items.map((item) => card(item, { palette, isFavourite, handlers })));
    setTag(tag);
  }

  function refreshStars() {
    grid.querySelectorAll(".card").forEach((node, i) => setStar(node.querySelector(".star"), isFavourite(items[i].image_id), titleOf(items[i])));
  }

  const visible = () => items.filter((item) => hasTag(item, tag));
  return { render, refreshStars, visible, setTag, get items() { return items; } };
}
