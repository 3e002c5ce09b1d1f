// The query image ("source file"): chosen with the file picker, dropped on the drop zone, pasted from
// the clipboard, or taken from a result. Shows it at once with its name and size.
import { format, formatSize, gettext } from "./i18n.js";

export const RESULT_MIME = "application/x-imgsearch-image";

const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
const hasResult = (event) => Array.from(event.dataTransfer?.types || []).includes(RESULT_MIME);

export function createSource({ zone, input, onChange, onError, maxBytes }) {
  const preview = zone.querySelector("[data-source-preview]");
  const image = preview.querySelector("img");
  const name = preview.querySelector("[data-source-name]");
  const meta = preview.querySelector("[data-source-meta]");
  let objectUrl = null;
  let current = null;

  function show(source, url, details) {
    if (objectUrl && objectUrl !== url) URL.revokeObjectURL(objectUrl);
    objectUrl = url && url.startsWith("blob:") ? url : null;
    current = source;
    image.hidden = !url;
    if (url) image.src = url;
    else image.removeAttribute("src");
    image.alt = format(gettext("Your image: %(name)s"), { name: source.name });
    name.textContent = source.name;
    meta.textContent = details;
    zone.classList.add("has-source");
    preview.hidden = false;
  }

  function setFile(file, pasted = false) {
    if (!file) return;
    if (!file.type.startsWith("image/")) return onError(gettext("This file is not an image. Choose a JPEG, PNG, GIF, WebP, BMP or TIFF file."));
    if (maxBytes && file.size > maxBytes) {
      return onError(format(gettext("The image is too large (%(size)s); the limit is %(limit)s."),
        { size: formatSize(file.size), limit: formatSize(maxBytes) }));
    }
    const label = pasted || !file.name ? gettext("Pasted image") : file.name;
    show({ kind: "file", file, name: label }, URL.createObjectURL(file), formatSize(file.size));
    onChange(current);
  }

  /** Use an image of the index (a result) or an earlier search as the query. */
  function setRemote(source, url) {
    show(source, url, source.kind === "image" ? gettext("From the index") : gettext("Your earlier search"));
    onChange(current);
  }

  function clear() {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = current = null;
    input.value = "";
    image.removeAttribute("src");
    preview.hidden = true;
    zone.classList.remove("has-source");
  }

  // Some formats the server takes (TIFF) are not ones a browser can show: keep the name and size only.
  image.addEventListener("error", () => { if (image.getAttribute("src")) image.hidden = true; });
  input.addEventListener("change", () => setFile(input.files && input.files[0]));
  listenForDrops(zone, setFile, (id, title, url) => setRemote({ kind: "image", imageId: id, name: title }, url));
  document.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData?.items || []).find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    setFile(item.getAsFile(), true);
  });
  return { get current() { return current; }, setFile, setRemote, clear, replace: (source) => { current = source; } };
}

function listenForDrops(zone, onFile, onResult) {
  // A file dropped beside the zone must not make the browser leave the page to open it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => { if (hasFiles(event)) event.preventDefault(); });
  }
  let depth = 0; // dragenter/dragleave fire for every child; count them to know when the drag really left
  zone.addEventListener("dragenter", (event) => {
    if (!hasFiles(event) && !hasResult(event)) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add("is-over");
  });
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event) && !hasResult(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("is-over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove("is-over");
    if (hasResult(event)) {
      const { id, title, url } = JSON.parse(event.dataTransfer.getData(RESULT_MIME) || "{}");
      return id && onResult(id, title, url);
    }
    onFile(event.dataTransfer.files[0]);
  });
}
