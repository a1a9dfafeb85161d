/**
 * Prepares an SVG file drawn by vega for inlining into an HTML page beside
 * others: ids made unique to the figure, the root labelled as one image
 * (`role="img"`, so the ARIA attributes of the marks inside go), each data
 * mark's label turned into a `<title>` child that the browser shows as a
 * tooltip on hover (up to {@link MAX_TOOLTIPS} marks), and coordinates rounded
 * to 1/100 px.
 *
 * vega numbers its clip paths and gradients from 1 in every figure, so two
 * inlined figures would both define `clip1` and the second would be clipped
 * by the first's path; hence the prefix.
 *
 * @module
 */

/**
 * Figures with more data marks than this get no tooltips: over a cloud of
 * thousands of overlapping points a hover label helps no one, and the labels
 * would double the page (Figure 4's 2,500 points: 0.4 MB of labels).
 */
export const MAX_TOOLTIPS = 500;

/** Attributes whose numbers are coordinates, rounded to two decimals. */
const COORDINATES = /\s(d|transform|points)="([^"]*)"/g;

/**
 * `svg` (the text of a vega SVG file) ready to sit in an HTML page: `prefix`
 * (letters, digits, `_`, `-`) namespaces its ids, `label` names the figure for
 * assistive technology; figures with more than `maxTooltips` data marks get no
 * tooltips.
 */
export function inlineSvg(svg: string, prefix: string, label: string, maxTooltips = MAX_TOOLTIPS): string {
  if (!/^[\w-]+$/.test(prefix)) throw new Error(`svg id prefix must be letters, digits, '_' or '-', got ${prefix}`);
  const start = svg.indexOf("<svg");
  if (start < 0) throw new Error(`not an SVG document: no <svg> element in ${JSON.stringify(svg.slice(0, 40))}`);
  let out = svg.slice(start).trim();
  out = out.replace(/\sid="([^"]*)"/g, (_, id) => ` id="${prefix}-${id}"`)
    .replace(/url\(#([^)]*)\)/g, (_, id) => `url(#${prefix}-${id})`)
    .replace(/\s(xlink:href|href)="#([^"]*)"/g, (_, attr, id) => ` ${attr}="#${prefix}-${id}"`);
  out = out.replace(COORDINATES, (_, attr, value: string) => ` ${attr}="${roundNumbers(value)}"`);
  const marks =
    out.match(/<\w+[^>]*\saria-label="[^>]*>/g)?.filter((t) => t.includes('role="graphics-symbol"')).length ?? 0;
  const tooltips = marks <= maxTooltips;
  out = out.replace(/<(\w+)(\s[^>]*?)(\/?)>/g, (tag, name: string, attrs: string, selfClosing: string) => {
    if (name === "svg") return tag;
    const label = attrs.match(/\saria-label="([^"]*)"/);
    // The root is role="img", which makes every element inside it presentational: their ARIA attributes go.
    const rest = attrs.replace(/\s(role|aria-roledescription|aria-hidden|aria-label)="[^"]*"/g, "");
    if (!label || !tooltips || !attrs.includes('role="graphics-symbol"')) return `<${name}${rest}${selfClosing}>`;
    // Attribute text from vega is escaped (&amp; &lt; &gt; &quot;), which is valid element text as it stands.
    const title = `<title>${label[1]}</title>`;
    return selfClosing ? `<${name}${rest}>${title}</${name}>` : `<${name}${rest}>${title}`;
  });
  const escaped = label.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll('"', "&quot;");
  const root = out.slice(0, out.indexOf(">"));
  return /\s(role|aria-label)=/.test(root) ? out : out.replace(/^<svg\b/, `<svg role="img" aria-label="${escaped}"`);
}

/** Numbers with three or more decimals rounded to two (trailing zeros dropped). */
function roundNumbers(value: string): string {
  return value.replace(/-?\d*\.\d{3,}(?:e-?\d+)?/g, (n) => {
    const r = Math.round(Number(n) * 100) / 100;
    return Object.is(r, -0) ? "0" : String(r);
  });
}
