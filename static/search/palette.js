// Tag colours: a stable hue per tag (from a hash of its name), spread apart over the index's whole tag
// list so that tags shown side by side differ. Colours are picked in OKLCH, where equal hue steps look
// equally far apart, at a lightness where white text reads at 4.5:1 or better (WCAG AA).

const MIN_CONTRAST = 4.6; // 4.5 plus room for rounding to whole bytes
const TONES = [0.56, 0.42]; // OKLCH lightness; the darker tone doubles the distinct colours for long tag lists
const TWO_TONES_FROM = 11;

function hash(tag) {
  let h = 0x811c9dc5; // FNV-1a: cheap and the same in every browser
  for (const ch of tag) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const hueGap = (a, b) => Math.min(Math.abs(a - b), 360 - Math.abs(a - b));
const nearest = (hue, taken) => Math.min(360, ...taken.map((t) => hueGap(hue, t)));

/** The hue free of `taken` by at least `gap`, closest to the tag's own hash hue. */
function freeHue(own, taken, gap) {
  if (nearest(own, taken) >= gap) return own;
  let best = own;
  let bestScore = -Infinity;
  for (let hue = 0; hue < 360; hue += 1) {
    const score = Math.min(nearest(hue, taken), gap) * 1000 - hueGap(hue, own);
    if (score > bestScore) [best, bestScore] = [hue, score];
  }
  return best;
}

/** {hue, tone} for each tag; tags of one tone keep at least 360/n degrees apart where they can. */
export function assignColours(tags) {
  const sorted = [...new Set(tags)].sort();
  const toneOf = (tag) => (sorted.length >= TWO_TONES_FROM ? (hash(tag) >>> 9) % 2 : 0);
  const taken = TONES.map(() => []);
  const colours = new Map();
  for (const tone of TONES.keys()) {
    const group = sorted.filter((tag) => toneOf(tag) === tone);
    const gap = (360 / Math.max(group.length, 1)) * 0.8;
    for (const tag of group) {
      const hue = freeHue(hash(tag) % 360, taken[tone], Math.min(gap, 60));
      taken[tone].push(hue);
      colours.set(tag, { hue, tone });
    }
  }
  return colours;
}

function oklchToRgb(l, c, hue) {
  const a = c * Math.cos((hue * Math.PI) / 180);
  const b = c * Math.sin((hue * Math.PI) / 180);
  const lms = [l + 0.3963377774 * a + 0.2158037573 * b, l - 0.1055613458 * a - 0.0638541728 * b, l - 0.0894841775 * a - 1.291485548 * b].map((v) => v ** 3);
  const linear = [
    4.0767416621 * lms[0] - 3.3077115913 * lms[1] + 0.2309699292 * lms[2],
    -1.2684380046 * lms[0] + 2.6097574011 * lms[1] - 0.3413193965 * lms[2],
    -0.0041960863 * lms[0] - 0.7034186147 * lms[1] + 1.707614701 * lms[2],
  ];
  return linear.every((v) => v >= 0 && v <= 1) ? linear : null;
}

const luminance = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
const toByte = (v) => Math.round(255 * (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055));

/** The most colourful in-gamut colour of this hue and tone on which white text reads at 4.5:1. */
export function chipColour(hue, tone = 0) {
  for (let l = TONES[tone]; l > 0.2; l -= 0.01) {
    for (let c = 0.16; c > 0.02; c -= 0.01) {
      const linear = oklchToRgb(l, c, hue);
      if (linear && 1.05 / (luminance(linear) + 0.05) >= MIN_CONTRAST) return `rgb(${linear.map(toByte).join(" ")})`;
    }
  }
  return "rgb(60 60 60)";
}

export function createPalette(knownTags) {
  const colours = assignColours(knownTags);
  const cache = new Map();
  return (tag) => {
    if (!cache.has(tag)) {
      const { hue, tone } = colours.get(tag) || { hue: hash(tag) % 360, tone: 0 };
      cache.set(tag, chipColour(hue, tone));
    }
    return cache.get(tag);
  };
}
