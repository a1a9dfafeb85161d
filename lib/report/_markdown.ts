/**
 * A small markdown-to-HTML converter for the subset the experiments' `.md`
 * files use: ATX headings, paragraphs, pipe tables with alignment, fenced code
 * blocks, block quotes, lists (nested by indentation), rules, and inline bold,
 * italics (`*x*` only: `_` is too common in names like `x_adv`), code spans,
 * links and images. Everything else is text, escaped.
 *
 * Parsing and rendering are separate so that a reader of the blocks (the
 * gallery, looking for the claims table) need not parse HTML.
 *
 * ```ts
 * import { markdownToHtml } from "./_markdown.ts";
 * markdownToHtml("| a | b |\n| :- | -: |\n| **x** | `1` |\n");
 * // <div class="table-scroll"><table>…<td style="text-align:right"><code>1</code></td>…</table></div>
 * ```
 *
 * @module
 */

/** Column alignment of a pipe table; undefined where the delimiter row gives none. */
export type CellAlign = "left" | "right" | "center" | undefined;

/** One block of a markdown document; inline text is kept as markdown, rendered by {@link inlineHtml}. */
export type Block =
  | { kind: "heading"; level: number; text: string }
  | { kind: "paragraph"; text: string }
  | { kind: "table"; align: CellAlign[]; header: string[]; rows: string[][] }
  | { kind: "code"; lang: string; text: string }
  | { kind: "quote"; blocks: Block[] }
  | { kind: "list"; ordered: boolean; start: number; items: Block[][] }
  | { kind: "rule" };

/** How {@link renderBlocks} writes some elements. */
export interface RenderOptions {
  /** Added to every heading level (an `#` title under the page's `<h1>`: 1), capped at 6. */
  headingOffset?: number;
  /** Prefix of heading ids (`<prefix>-<slug>`), so that several documents share one page; none: no ids. */
  idPrefix?: string;
  /** Replaces an image: HTML to write instead, or undefined for a plain `<img>`. */
  image?: (src: string, alt: string) => string | undefined;
}

const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$/;
const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const DELIMITER_CELL = /^\s*:?-+:?\s*$/;

/** Parses markdown text into blocks. */
export function parseMarkdown(text: string): Block[] {
  return parseLines(text.replace(/\r\n?/g, "\n").split("\n"));
}

function parseLines(lines: string[]): Block[] {
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    const fence = line.match(FENCE);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[2])) body.push(lines[i++]);
      i++; // the closing fence (or the end)
      blocks.push({ kind: "code", lang: fence[3], text: body.join("\n") });
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      blocks.push({ kind: "heading", level: heading[1].length, text: heading[2] });
      i++;
      continue;
    }
    if (RULE.test(line)) {
      blocks.push({ kind: "rule" });
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      blocks.push({ kind: "quote", blocks: parseLines(body) });
      continue;
    }
    if (isTableStart(lines, i)) {
      const header = splitRow(line);
      const align = splitRow(lines[i + 1]).map(alignOf);
      const rows: string[][] = [];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
        const cells = splitRow(lines[i++]);
        rows.push(header.map((_, c) => cells[c] ?? ""));
      }
      blocks.push({ kind: "table", align: header.map((_, c) => align[c]), header, rows });
      continue;
    }
    if (LIST_ITEM.test(line)) {
      i = parseList(lines, i, blocks);
      continue;
    }
    const para: string[] = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) para.push(lines[i++].trim());
    blocks.push({ kind: "paragraph", text: para.join("\n") });
  }
  return blocks;
}

/** Whether line `i` starts a block other than a paragraph (which it then interrupts). */
function startsBlock(lines: string[], i: number): boolean {
  const line = lines[i];
  return HEADING.test(line) || FENCE.test(line) || /^\s*>/.test(line) || LIST_ITEM.test(line) ||
    RULE.test(line) || isTableStart(lines, i);
}

function isTableStart(lines: string[], i: number): boolean {
  if (i + 1 >= lines.length || !lines[i].includes("|")) return false;
  const delimiter = lines[i + 1];
  if (!delimiter.includes("-")) return false;
  const cells = splitRow(delimiter);
  return cells.length > 0 && cells.every((c) => DELIMITER_CELL.test(c)) &&
    cells.length === splitRow(lines[i]).length;
}

function alignOf(delimiter: string): CellAlign {
  const d = delimiter.trim();
  const left = d.startsWith(":"), right = d.endsWith(":");
  return left && right ? "center" : right ? "right" : left ? "left" : undefined;
}

/** The cells of a table row: split on `|` outside code spans and not escaped, outer pipes dropped, trimmed. */
export function splitRow(line: string): string[] {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  const cells: string[] = [];
  let cell = "", code = 0;
  for (let k = 0; k < s.length; k++) {
    const ch = s[k];
    if (ch === "\\" && s[k + 1] === "|") {
      cell += code ? "\\|" : "|";
      k++;
    } else if (ch === "`") {
      let run = 1;
      while (s[k + run] === "`") run++;
      code = code === run ? 0 : code || run;
      cell += "`".repeat(run);
      k += run - 1;
    } else if (ch === "|" && !code) {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += ch;
    }
  }
  cells.push(cell.trim());
  return cells;
}

/** Parses the list starting at line `i` into `blocks`; returns the index after it. */
function parseList(lines: string[], i: number, blocks: Block[]): number {
  const first = lines[i].match(LIST_ITEM)!;
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items: string[][] = [];
  while (i < lines.length) {
    const line = lines[i];
    const m = line.match(LIST_ITEM);
    if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
      items.push([m[3]]);
      i++;
      continue;
    }
    if (!line.trim()) {
      // A blank line ends the list unless the next line continues it (indented, or a sibling item).
      const next = lines[i + 1];
      const nm = next?.match(LIST_ITEM);
      const sibling = nm && nm[1].length === indent;
      if (next === undefined || !(sibling || leadingSpaces(next) > indent)) break;
      items[items.length - 1].push("");
      i++;
      continue;
    }
    if (leadingSpaces(line) > indent || (!m && !startsBlock(lines, i))) {
      items[items.length - 1].push(line);
      i++;
      continue;
    }
    break;
  }
  blocks.push({
    kind: "list",
    ordered,
    start: ordered ? parseInt(first[2]) : 1,
    items: items.map((item) => parseLines(dedent(item))),
  });
  return i;
}

function leadingSpaces(line: string): number {
  return line.length - line.trimStart().length;
}

/** Removes the common indentation of the continuation lines (the first line has none). */
function dedent(item: string[]): string[] {
  const rest = item.slice(1).filter((l) => l.trim());
  const cut = rest.length ? Math.min(...rest.map(leadingSpaces)) : 0;
  return [item[0], ...item.slice(1).map((l) => l.slice(Math.min(cut, leadingSpaces(l))))];
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/** A URL kept only when relative, a fragment, http(s) or mailto; anything else (javascript:, data:) becomes `#`. */
function safeUrl(url: string): string {
  const scheme = url.match(/^([a-z][a-z0-9+.-]*):/i)?.[1].toLowerCase();
  return scheme === undefined || ["http", "https", "mailto"].includes(scheme) ? url : "#";
}

/** The text of inline markdown with the markup removed (for ids, alt text and table analysis). */
export function plainText(text: string): string {
  return text.replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/\*\*|`/g, "").replace(/\\([\\`*_[\]|])/g, "$1");
}

/** An id fragment from heading text: lower case, letters and digits joined by `-`. */
export function slug(text: string): string {
  return plainText(text).toLowerCase().normalize("NFKD").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "");
}

/** Renders inline markdown (code spans, images, links, bold, italics, backslash escapes) to HTML. */
export function inlineHtml(text: string, options: RenderOptions = {}): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const ch = text[i];
    if (ch === "\\" && /^[\\`*_[\]()#|!<>-]/.test(text[i + 1] ?? "")) {
      out += escapeHtml(text[i + 1]);
      i += 2;
      continue;
    }
    if (ch === "`") {
      const ticks = rest.match(/^`+/)![0];
      const end = text.indexOf(ticks, i + ticks.length);
      if (end > 0) {
        const code = text.slice(i + ticks.length, end).replace(/\n/g, " ");
        out += `<code>${
          escapeHtml(code.length > 2 && code.startsWith(" ") && code.endsWith(" ") ? code.slice(1, -1) : code)
        }</code>`;
        i = end + ticks.length;
        continue;
      }
    }
    const link = rest.match(/^(!?)\[((?:\\.|`[^`]*`|[^\]\\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+"([^"]*)")?\s*\)/);
    if (link) {
      const [all, bang, label, url, title] = link;
      const titleAttr = title ? ` title="${escapeHtml(title)}"` : "";
      if (bang) {
        const alt = plainText(label);
        out += options.image?.(url, alt) ??
          `<img src="${escapeHtml(safeUrl(url))}" alt="${escapeHtml(alt)}"${titleAttr}>`;
      } else {
        out += `<a href="${escapeHtml(safeUrl(url))}"${titleAttr}>${inlineHtml(label, options)}</a>`;
      }
      i += all.length;
      continue;
    }
    const strong = rest.match(/^\*\*(?=\S)([\s\S]*?\S)\*\*/);
    if (strong) {
      out += `<strong>${inlineHtml(strong[1], options)}</strong>`;
      i += strong[0].length;
      continue;
    }
    const em = rest.match(/^\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)/);
    if (em) {
      out += `<em>${inlineHtml(em[1], options)}</em>`;
      i += em[0].length;
      continue;
    }
    out += escapeHtml(ch);
    i++;
  }
  return out;
}

/** Renders blocks to HTML; tables are wrapped in `<div class="table-scroll">` (a container that scrolls sideways). */
export function renderBlocks(blocks: Block[], options: RenderOptions = {}): string {
  return blocks.map((b) => renderBlock(b, options)).join("\n");
}

function renderBlock(b: Block, options: RenderOptions): string {
  switch (b.kind) {
    case "heading": {
      const level = Math.min(6, b.level + (options.headingOffset ?? 0));
      const id = options.idPrefix === undefined ? "" : ` id="${escapeHtml(`${options.idPrefix}-${slug(b.text)}`)}"`;
      return `<h${level}${id}>${inlineHtml(b.text, options)}</h${level}>`;
    }
    case "paragraph": {
      // A paragraph of one image that `options.image` replaces is written bare: the replacement may be a block.
      const only = b.text.match(/^!\[((?:\\.|[^\]\\])*)\]\(\s*<?([^)\s>]*)>?\s*\)$/);
      const replaced = only ? options.image?.(only[2], plainText(only[1])) : undefined;
      return replaced ?? `<p>${inlineHtml(b.text, options)}</p>`;
    }
    case "table": {
      const cell = (tag: string, text: string, c: number) => {
        const style = b.align[c] ? ` style="text-align:${b.align[c]}"` : "";
        return `<${tag}${style}>${inlineHtml(text, options)}</${tag}>`;
      };
      const head = `<thead><tr>${b.header.map((h, c) => cell("th", h, c)).join("")}</tr></thead>`;
      const body = b.rows.map((r) => `<tr>${r.map((t, c) => cell("td", t, c)).join("")}</tr>`).join("\n");
      return `<div class="table-scroll"><table>\n${head}\n<tbody>\n${body}\n</tbody>\n</table></div>`;
    }
    case "code": {
      const cls = b.lang ? ` class="language-${escapeHtml(b.lang)}"` : "";
      return `<pre><code${cls}>${escapeHtml(b.text)}</code></pre>`;
    }
    case "quote":
      return `<blockquote>\n${renderBlocks(b.blocks, options)}\n</blockquote>`;
    case "list": {
      const tag = b.ordered ? "ol" : "ul";
      const start = b.ordered && b.start !== 1 ? ` start="${b.start}"` : "";
      const items = b.items.map((item) => {
        // A tight item (one paragraph, maybe a nested list) is written without <p>.
        const html = item.map((ib) =>
          ib.kind === "paragraph" ? inlineHtml(ib.text, options) : renderBlock(ib, options)
        );
        return `<li>${html.join("\n")}</li>`;
      });
      return `<${tag}${start}>\n${items.join("\n")}\n</${tag}>`;
    }
    case "rule":
      return "<hr>";
  }
}

/** Converts markdown to HTML: {@link parseMarkdown}, then {@link renderBlocks}. */
export function markdownToHtml(text: string, options: RenderOptions = {}): string {
  return renderBlocks(parseMarkdown(text), options);
}
