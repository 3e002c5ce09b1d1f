// Where the query lies in a copy: the API's evidence.transform drawn over the large view's picture (its outline mapped
// by the transform: cropped, turned, mirrored), and said in words beside it.
import { el } from "./dom.js";
import { format, formatNumber, formatPercent, gettext } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** An SVG in the picture's own pixels, laid over it (CSS: the same box as the picture, which keeps its proportions),
 * drawing the query's outline; its top edge is bold and a dot marks its top left corner, so a turn or a mirroring
 * shows. Decorative: copyFacts says the same in words. */
export function copyOutline(transform) {
  const [width, height] = transform.result_size;
  const corners = transform.outline.map(([x, y]) => [x * width, y * height]);
  const points = corners.map((p) => p.join(",")).join(" ");
  const [[x0, y0], [x1, y1]] = corners;
  const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "xMidYMid meet", class: "copy-outline", "aria-hidden": "true" });
  drawing.append(
    svg("polygon", { points, class: "copy-outline-halo" }),
    svg("polygon", { points, class: "copy-outline-line" }),
    svg("line", { x1: x0, y1: y0, x2: x1, y2: y1, class: "copy-outline-top" }),
    svg("circle", { cx: x0, cy: y0, r: Math.max(width, height) * 0.015, class: "copy-outline-corner" }),
  );
  return drawing;
}

function turnText(degrees) {
  const turn = Math.round(Math.abs(degrees));
  if (turn === 0) return gettext("Not turned");
  return format(degrees > 0 ? gettext("%(degrees)s° clockwise") : gettext("%(degrees)s° anticlockwise"), { degrees: formatNumber(turn) });
}

/** The transform in words: scale, turn, mirroring and the keypoints that fit it. */
export function copyFacts(transform, inliers) {
  const facts = [
    [gettext("Scale"), formatPercent(transform.scale)],
    [gettext("Turned"), turnText(transform.rotation)],
    [gettext("Mirrored"), transform.mirrored ? gettext("Yes") : gettext("No")],
    [gettext("Matching points"), formatNumber(inliers || 0)],
  ];
  return el("div", { className: "copy-facts" },
    el("p", { className: "help" }, gettext("Your picture is in this one. The outline shows where; its dot marks your picture's top left corner.")),
    el("dl", {}, ...facts.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)])));
}
