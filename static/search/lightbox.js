// The large view of a result: a modal <dialog> (Escape closes it), arrow keys step through the results.
import { el, icon, safeUrl } from "./dom.js";
import { format, formatNumber, gettext } from "./i18n.js";
import { matchBadge, scoreLine, setStar, tagList, titleOf } from "./results.js";

export function createLightbox({ dialog, palette, isFavourite, onStar, onSearchWith }) {
  const figure = dialog.querySelector("[data-lightbox-body]");
  const position = dialog.querySelector("[data-lightbox-position]");
  let items = [];
  let index = 0;
  let opener = null;

  function draw() {
    const item = items[index];
    const title = titleOf(item);
    const star = el("button", { type: "button", className: "star star-labelled", dataset: { action: "star" } }, icon("star"), el("span", {}, gettext("Favourite")));
    setStar(star, isFavourite(item.image_id), title);
    star.addEventListener("click", async () => { await onStar(item); setStar(star, isFavourite(item.image_id), title); });
    const again = el("button", { type: "button", className: "button button-primary", dataset: { action: "search" } }, icon("search"), gettext("Search with this image"));
    again.addEventListener("click", () => { dialog.close(); onSearchWith(item); });
    // The arrow keys step on from a button of the image, which is drawn anew: its twin of the next image takes the focus.
    const focused = figure.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    figure.replaceChildren(
      el("img", { src: safeUrl(item.image_url || item.thumbnail_url), alt: title }),
      el("figcaption", {}, el("h2", { id: "lightbox-title" }, title), matchBadge(item), scoreLine(item.score),
        tagList(item.tags, palette), el("div", { className: "lightbox-actions" }, star, again)),
    );
    if (focused) figure.querySelector(`[data-action="${focused}"]`).focus();
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
