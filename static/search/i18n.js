// Translations come from Django's JavaScriptCatalog (a classic script loaded before the modules).
// English source strings are the fallback, so the page still reads well if the catalog is missing.

export function gettext(message) {
  return typeof window.gettext === "function" ? window.gettext(message) : message;
}

export function ngettext(singular, plural, count) {
  if (typeof window.ngettext === "function") return window.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

// "%(name)s" placeholders, as in Django's Python strings, so translators see one syntax.
export function format(template, values) {
  return template.replace(/%\((\w+)\)s/g, (match, key) => (key in values ? String(values[key]) : match));
}

const locale = document.documentElement.lang || "en";

export function formatNumber(value) {
  return new Intl.NumberFormat(locale).format(value);
}

export function formatPercent(score) {
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 }).format(score);
}

export function formatSize(bytes) {
  const units = [[1024 * 1024, "MB"], [1024, "KB"]];
  for (const [size, unit] of units) {
    if (bytes >= size) return `${new Intl.NumberFormat(locale, { maximumFractionDigits: 1 }).format(bytes / size)} ${unit}`;
  }
  return `${formatNumber(bytes)} B`;
}
