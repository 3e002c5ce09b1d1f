// The region: a box drawn on the source image, so that the search uses only that part of it. Drawn and changed with
// a mouse, a finger or a pen (drag on the image to draw, drag the box to move it, drag a corner to resize it) or with
// keys (the box is a button: the arrow keys move it, Shift and the arrow keys resize it, Delete clears it). Its value
// is {x, y, width, height} in fractions of the image as shown (upright), as the API's `region` takes it; null: all.
import { format, formatPercent, gettext } from "./i18n.js";

const STEP = 0.02; // a key press moves or resizes the box by 2% of the image
const SMALLEST = 0.04; // a box is at least 4% of each side: a smaller drag is a click, not a box
const FIRST = { x: 0.2, y: 0.2, width: 0.6, height: 0.6 }; // the box "Select a part" draws
const KEY_SETTLE_MS = 600; // a run of key presses makes one change

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const tidy = (v) => Math.round(v * 10000) / 10000;

export function regionText(region) {
  return format(gettext("%(width)s × %(height)s of the image, from %(x)s left and %(y)s top"), {
    width: formatPercent(region.width), height: formatPercent(region.height), x: formatPercent(region.x), y: formatPercent(region.y),
  });
}

export function sameRegion(a, b) {
  if (!a || !b) return !a && !b;
  return ["x", "y", "width", "height"].every((key) => Math.abs(a[key] - b[key]) < 1e-4);
}

export function createRegion({ area, image, box, tools, status, draw, clear, onChange }) {
  let value = null;
  let drag = null; // {mode, anchor | offset, before, pointerId} while a pointer draws, moves or resizes
  let settle = null;

  function usable() {
    return !image.hidden && Boolean(image.getAttribute("src"));
  }

  function render() {
    const shown = usable();
    tools.hidden = !shown;
    area.classList.toggle("can-draw", shown);
    box.hidden = !shown || !value;
    draw.hidden = Boolean(value);
    clear.hidden = !value;
    status.textContent = value ? regionText(value) : gettext("The whole image");
    if (!value) return;
    Object.assign(box.style, { left: `${value.x * 100}%`, top: `${value.y * 100}%`, width: `${value.width * 100}%`, height: `${value.height * 100}%` });
    box.setAttribute("aria-label", format(gettext("Region searched: %(region)s"), { region: regionText(value) }));
  }

  function set(region, { notify = false } = {}) {
    value = region ? {
      x: tidy(clamp(region.x, 0, 1 - SMALLEST)), y: tidy(clamp(region.y, 0, 1 - SMALLEST)),
      width: 0, height: 0,
    } : null;
    if (value) {
      value.width = tidy(clamp(region.width, SMALLEST, 1 - value.x));
      value.height = tidy(clamp(region.height, SMALLEST, 1 - value.y));
    }
    render();
    if (notify) onChange(value);
  }

  // Keys: each press redraws at once; the change is announced once the presses stop.
  function nudge(dx, dy, resize) {
    const r = value;
    if (resize) set({ ...r, width: r.width + dx, height: r.height + dy });
    else set({ ...r, x: clamp(r.x + dx, 0, 1 - r.width), y: clamp(r.y + dy, 0, 1 - r.height) });
    clearTimeout(settle);
    settle = setTimeout(() => onChange(value), KEY_SETTLE_MS);
  }

  box.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] };
    if (event.key in moves && value) {
      event.preventDefault();
      nudge(...moves[event.key], event.shiftKey);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      clearTimeout(settle);
      set(null, { notify: true });
      draw.focus();
    }
  });

  // Pointers: in fractions of the image as drawn on the page.
  function point(event) {
    const rect = image.getBoundingClientRect();
    return { x: clamp((event.clientX - rect.left) / rect.width, 0, 1), y: clamp((event.clientY - rect.top) / rect.height, 0, 1) };
  }

  function between(a, b) {
    return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), width: Math.abs(a.x - b.x), height: Math.abs(a.y - b.y) };
  }

  area.addEventListener("pointerdown", (event) => {
    if (!usable() || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault(); // no text selection, no image drag, no scrolling while drawing
    const p = point(event);
    const handle = event.target.closest("[data-handle]");
    const r = value;
    if (handle && r) {
      const [vertical, horizontal] = handle.dataset.handle; // "nw": the anchor is the opposite corner
      const anchor = { x: horizontal === "w" ? r.x + r.width : r.x, y: vertical === "n" ? r.y + r.height : r.y };
      drag = { mode: "draw", anchor };
    } else if (r && box.contains(event.target)) {
      drag = { mode: "move", offset: { x: p.x - r.x, y: p.y - r.y } };
    } else {
      drag = { mode: "draw", anchor: p, fresh: true };
    }
    drag.before = value;
    drag.pointerId = event.pointerId;
    area.setPointerCapture(event.pointerId);
  });

  area.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const p = point(event);
    if (drag.mode === "move") {
      const r = value;
      set({ ...r, x: clamp(p.x - drag.offset.x, 0, 1 - r.width), y: clamp(p.y - drag.offset.y, 0, 1 - r.height) });
      return;
    }
    const r = between(drag.anchor, p);
    if (drag.fresh && r.width < SMALLEST && r.height < SMALLEST) return; // not a box yet: maybe a click
    drag.drawn = true;
    set(r);
  });

  function end(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const { before, fresh, drawn } = drag;
    drag = null;
    if (event.type === "pointercancel") return set(before);
    if (fresh && !drawn) return; // a click on the image draws nothing
    if (!sameRegion(before, value)) onChange(value);
    box.focus({ preventScroll: true });
  }
  area.addEventListener("pointerup", end);
  area.addEventListener("pointercancel", end);

  draw.addEventListener("click", () => {
    set(FIRST, { notify: true });
    box.focus();
  });
  clear.addEventListener("click", () => {
    set(null, { notify: true });
    draw.focus();
  });
  image.addEventListener("load", render);
  image.addEventListener("error", render);

  return {
    get value() { return value; },
    set: (region) => set(region),
    render,
  };
}
