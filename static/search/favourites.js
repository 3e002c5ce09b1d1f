// The favourites area: drop a result on it or press a star to keep the image; click it to see only
// the favourites. Stored through the favourites API for signed-in users; visitors are asked to sign in.
import { ApiError, favouriteAdd, favouriteRemove, favouritesList } from "./api.js";
import { el, safeUrl } from "./dom.js";
import { formatNumber, gettext } from "./i18n.js";
import { RESULT_MIME } from "./source.js";
import { toast } from "./toast.js";

const STRIP_SIZE = 6;
const carriesResult = (event) => Array.from(event.dataTransfer?.types || []).includes(RESULT_MIME);

export function createFavourites({ area, signedIn, loginUrl, onChange, onOpen }) {
  const count = area.querySelector("[data-favourites-count]");
  const strip = area.querySelector("[data-favourites-strip]");
  const byImage = new Map(); // image_id -> favourite
  let busy = false;

  function askSignIn() {
    const href = `${loginUrl}?next=${encodeURIComponent(location.pathname + location.search)}`;
    toast(gettext("Sign in to keep favourites; they are saved to your account."), { href, text: gettext("Sign in") });
  }

  function fail(err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return askSignIn();
    toast(err instanceof Error ? err.message : String(err));
  }

  function render() {
    count.textContent = formatNumber(byImage.size);
    const latest = [...byImage.values()].slice(-STRIP_SIZE).reverse();
    strip.replaceChildren(...latest.map((f) => el("li", {}, el("img", { src: safeUrl(f.thumbnail_url || f.image_url), alt: f.title || "" }))));
    strip.hidden = latest.length === 0;
    onChange();
  }

  async function load() {
    if (!signedIn) return;
    try {
      const list = await favouritesList();
      list.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
      for (const favourite of list) byImage.set(favourite.image_id, favourite);
      render();
    } catch (err) { fail(err); }
  }

  async function add(imageId) {
    if (!signedIn) return askSignIn();
    if (busy || byImage.has(imageId)) return;
    busy = true;
    try {
      byImage.set(imageId, await favouriteAdd(imageId));
      render();
      area.classList.add("just-added");
      setTimeout(() => area.classList.remove("just-added"), 700);
    } catch (err) { fail(err); } finally { busy = false; }
  }

  async function remove(imageId) {
    const favourite = byImage.get(imageId);
    if (!favourite || busy) return;
    busy = true;
    try {
      await favouriteRemove(favourite.id);
      byImage.delete(imageId);
      render();
    } catch (err) { fail(err); } finally { busy = false; }
  }

  listenForResults(area, (id) => add(id));
  area.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    if (!signedIn) return askSignIn();
    onOpen();
  });
  return {
    load,
    isFavourite: (imageId) => byImage.has(imageId),
    toggle: (item) => (byImage.has(item.image_id) ? remove(item.image_id) : add(item.image_id)),
    items: () => [...byImage.values()].reverse(),
    get size() { return byImage.size; },
  };
}

function listenForResults(area, onDrop) {
  area.addEventListener("dragenter", (event) => { if (carriesResult(event)) { event.preventDefault(); area.classList.add("is-over"); } });
  area.addEventListener("dragover", (event) => {
    if (!carriesResult(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  area.addEventListener("dragleave", (event) => { if (!area.contains(event.relatedTarget)) area.classList.remove("is-over"); });
  area.addEventListener("drop", (event) => {
    if (!carriesResult(event)) return;
    event.preventDefault();
    area.classList.remove("is-over");
    const { id } = JSON.parse(event.dataTransfer.getData(RESULT_MIME) || "{}");
    if (id) onDrop(id);
  });
}
