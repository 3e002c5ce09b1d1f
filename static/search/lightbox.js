// The large view of a result: a modal <dialog> (Escape closes it), arrow keys step through the results. On a copy
// verified by its keypoints it can draw where the query lies in the picture (outline.js).
import { el, icon, safeUrl } from "./dom.js";
import { format, formatNumber, gettext } from "./i18n.js";
import { copyFacts, copyOutline } from "./outline.js";
import { matchBadge, scoreLine, setStar, tagList, titleOf } from "./results.js";

export function createLightbox({ dialog, palette, isFavourite, onStar, onSearchWith }) {
  const figure = dialog.querySelector("[data-lightbox-body]");
  const position = dialog.querySelector("[data-lightbox-position]");
  let items = [];
  let index = 0;
  let opener = null;
  let outlined = true; // whether a copy's outline is drawn; the choice holds from one image to the next

  function draw() {
    const item = items[index];
    const title = titleOf(item);
    const star = el("button", { type: "button", className: "star star-labelled", dataset: { action: "star" } }, icon("star"), el("span", {}, gettext("Favourite")));
    setStar(star, isFavourite(item.image_id), title);
    star.addEventListener("click", async () => { await onStar(item); setStar(star, isFavourite(item.image_id), title); });
    const again = el("button", { type: "button", className: "button button-primary", dataset: { action: "search" } }, icon("search"), gettext("Search with this image"));
    again.addEventListener("click", () => { dialog.close(); onSearchWith(item); });
    const where = item.evidence && item.evidence.transform;
    const picture = el("div", { className: "lightbox-picture" }, el("img", { src: safeUrl(item.image_url || item.thumbnail_url), alt: title }));
    let toggle = null;
    if (where) {
      picture.append(copyOutline(where));
      picture.classList.toggle("is-outlined", outlined);
      toggle = el("button", { type: "button", className: "button button-secondary button-small outline-toggle", dataset: { action: "outline" },
        "aria-pressed": String(outlined) }, gettext("Show where your picture is"));
      toggle.addEventListener("click", () => {
        outlined = !outlined;
        toggle.setAttribute("aria-pressed", String(outlined));
        picture.classList.toggle("is-outlined", outlined);
      });
    }
    // The arrow keys step on from a button of the image, which is drawn anew: its twin of the next image takes the
    // focus (the star where the next image has no twin: only a copy has the outline's toggle).
    const focused = figure.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    figure.replaceChildren(
      picture,
      el("figcaption", {}, el("h2", { id: "lightbox-title" }, title), matchBadge(item), scoreLine(item.score),
        where ? copyFacts(where, item.evidence.inliers) : null, toggle,
        tagList(item.tags, palette), el("div", { className: "lightbox-actions" }, star, again)),
    );
    if (focused) (figure.querySelector(`[data-action="${focused}"]`) || star).focus();
    position.textContent = format(gettext("%(index)s of %(total)s"), { index: formatNumber(index + 1), total: formatNumber(items.length) });
    dialog.querySelectorAll("[data-step]").forEach((b) => { b.hidden = items.length < 2; });
  }

  function step(delta) {
    index = (index + delta + items.length) % items.length;
    draw();
  }

  function open(list, item, from) {
    items = list;
    index = Math.max(0, list.findIndex((i) => i.image_id === item.image_id));
    opener = from;
    draw();
    dialog.showModal();
  }

  dialog.querySelector("[data-lightbox-close]").addEventListener("click", () => dialog.close());
  dialog.querySelectorAll("[data-step]").forEach((b) => b.addEventListener("click", () => step(Number(b.dataset.step))));
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); }); // the backdrop
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight" && items.length > 1) step(1);
    if (event.key === "ArrowLeft" && items.length > 1) step(-1);
  });
  // Closing gives the focus back to the thumbnail that opened the view (browsers do, this makes sure); not when
  // the person has moved on already: the close event comes a moment after the dialog has gone.
  dialog.addEventListener("close", () => {
    if (opener && opener.isConnected && document.activeElement === document.body) opener.focus();
  });
  return { open, get isOpen() { return dialog.open; } };
}
