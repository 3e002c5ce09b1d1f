// A short message at the bottom of the screen, where it is seen wherever the page is scrolled to. It is a
// popover, so it also shows above the large view (a modal dialog, which covers everything else).
import { el } from "./dom.js";

const SHOW_MS = 8000;
let timer = null;

function setOpen(box, open) {
  if (open && !box.matches(":popover-open")) box.showPopover();
  if (!open && box.matches(":popover-open")) box.hidePopover();
}

/** Show `message`, with an optional link {href, text}; it hides itself after a while or on its close button. */
export function toast(message, link = null) {
  const box = document.getElementById("toast");
  const text = box.querySelector("[data-toast-text]");
  text.replaceChildren(el("span", {}, message), link ? el("a", { href: link.href }, link.text) : "");
  setOpen(box, false); // re-opening puts it on top of a dialog opened since
  // Outside an open modal dialog everything is inert (no clicks), so the message moves into it.
  const host = document.querySelector("dialog[open]") || document.body;
  if (box.parentElement !== host) host.append(box);
  setOpen(box, true);
  clearTimeout(timer);
  timer = setTimeout(() => setOpen(box, false), SHOW_MS);
  if (!box.dataset.wired) {
    box.dataset.wired = "true";
    box.querySelector("[data-toast-close]").addEventListener("click", () => setOpen(box, false));
  }
}
