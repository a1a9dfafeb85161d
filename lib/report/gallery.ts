/**
 * The gallery: one self-contained HTML page of every result in a figures
 * folder, `<dir>/index.html`. For each `<stem>.results.json` it shows the
 * figure (`<stem>.svg`, inlined), the table (`<stem>.md`, rendered), the
 * paper's claims with how many held where the markdown says, a provenance line
 * from the results header, and links to the files themselves.
 *
 * Results are discovered from the `*.results.json` files, so a new experiment
 * appears without editing anything here; markdown files that no results file
 * belongs to (notes such as a hyperparameter sweep) follow under "Notes". The
 * page has no script and loads nothing: it opens from the file system, and it
 * is a pure function of the files (no date of its own), so it can be committed.
 *
 * ```ts
 * import { writeGallery } from "./gallery.ts";
 * const path = await writeGallery("figures"); // figures/index.html
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../core/fs.ts";
import { type Block, escapeHtml, inlineHtml, parseMarkdown, plainText, renderBlocks, slug } from "./_markdown.ts";
import { inlineSvg } from "./_inline_svg.ts";

/** The provenance a results file's header records; any field may be missing in older or foreign files. */
export interface Provenance {
  experiment?: string;
  dataset?: string;
  preset?: string;
  seed?: number;
  backend?: { name?: string; detail?: string };
  versions?: Record<string, string>;
  wall_seconds?: number;
  command?: string;
  commit?: string;
  units?: { total?: number; missing?: string[] };
}

/** One result of the gallery: a results file and what was drawn from it. */
export interface GalleryEntry {
  /** The files' common name, `<experiment>_<dataset>` (the results file's name without `.results.json`). */
  stem: string;
  /** The results file's header, or undefined when it could not be read (`error` says why). */
  provenance?: Provenance;
  error?: string;
  /** The markdown and the SVG drawn from the results, where they exist. */
  markdown?: string;
  svg?: string;
  /** Which of the result's files exist beside the page (file names). */
  files: string[];
}

/** A markdown file that no results file belongs to. */
export interface GalleryNote {
  file: string;
  markdown: string;
}

/** What the page is made from. */
export interface GallerySource {
  entries: GalleryEntry[];
  notes: GalleryNote[];
}

/** The files of a result the page links to, in order, with what each is. */
const LINKED: [suffix: string, what: string][] = [
  [".results.json", "results JSON"],
  [".md", "table (markdown)"],
  [".vl.json", "Vega-Lite spec"],
  [".svg", "SVG"],
  [".png", "PNG"],
];

/** Datasets in the paper's order; others follow alphabetically. */
const DATASET_ORDER = ["mnist", "cifar10"];
/** Experiments in the paper's order by the kind their name starts with (figures, then tables); others follow. */
const KIND_ORDER = ["figure", "table"];

/** The page's file name inside the folder. */
export const GALLERY_FILE = "index.html";

/** Reads what the page shows from `dir`: every `*.results.json` with its files, and the other markdown files. */
export async function readGallery(dir: string): Promise<GallerySource> {
  const names = new Set<string>();
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.add(e.name);
  const stems = [...names].filter((n) => n.endsWith(".results.json")).map((n) => n.slice(0, -".results.json".length));
  const entries: GalleryEntry[] = [];
  for (const stem of stems) {
    const entry: GalleryEntry = {
      stem,
      files: LINKED.map(([suffix]) => stem + suffix).filter((n) => names.has(n)),
    };
    try {
      const json = JSON.parse(await Deno.readTextFile(join(dir, `${stem}.results.json`)));
      if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error("not a JSON object");
      entry.provenance = json as Provenance;
    } catch (err) {
      entry.error = `cannot read ${stem}.results.json: ${(err as Error).message}`;
    }
    if (names.has(`${stem}.md`)) entry.markdown = await Deno.readTextFile(join(dir, `${stem}.md`));
    if (names.has(`${stem}.svg`)) entry.svg = await Deno.readTextFile(join(dir, `${stem}.svg`));
    entries.push(entry);
  }
  const owned = new Set(stems.map((s) => `${s}.md`));
  const notes: GalleryNote[] = [];
  for (const file of [...names].filter((n) => n.endsWith(".md") && !owned.has(n)).sort()) {
    notes.push({ file, markdown: await Deno.readTextFile(join(dir, file)) });
  }
  return { entries: entries.sort(compareEntries), notes };
}

/** Paper order: figures by number, then tables, then other experiments; MNIST before CIFAR-10 within one. */
function compareEntries(a: GalleryEntry, b: GalleryEntry): number {
  const rank = (e: GalleryEntry) => {
    const name = e.provenance?.experiment ?? e.stem;
    const kind = KIND_ORDER.findIndex((k) => new RegExp(`^${k}\\d`).test(name));
    const dataset = e.provenance?.dataset ?? "";
    const d = DATASET_ORDER.indexOf(dataset);
    return { kind: kind < 0 ? KIND_ORDER.length : kind, name, d: d < 0 ? DATASET_ORDER.length : d, dataset };
  };
  const ra = rank(a), rb = rank(b);
  const byName = ra.name.localeCompare(rb.name, "en", { numeric: true });
  return ra.kind - rb.kind || byName || ra.d - rb.d || ra.dataset.localeCompare(rb.dataset) ||
    a.stem.localeCompare(b.stem);
}

/** A table's verdicts: how many of its rows held (yes, pass), failed (no, fail) or were not tested (–). */
export interface Verdicts {
  /** "claims" (the paper's claims, observations, statements) or "checks" (anything else with a verdict column). */
  kind: "claims" | "checks";
  /** The id of the section's heading (without the page prefix), where the table sits under one. */
  section?: string;
  rows: number;
  /** Undefined when the table compares without a verdict column (the reader judges from the numbers). */
  held?: number;
  failed?: number;
  untested?: number;
}

const HELD = new Set(["yes", "pass", "passes", "holds", "held", "true", "✓", "ok"]);
const FAILED = new Set(["no", "fail", "fails", "failed", "does not hold", "false", "✗"]);
const UNTESTED = new Set(["–", "-", "—", "n/a", "untested", "not tested", ""]);
const VERDICT_HEADER = /^(holds?|held|verdict|pass(es|ed)?|result|ok)$/i;
const CLAIM = /\b(claims?|observations?|statements?)\b/i;

function verdictOf(cell: string): "held" | "failed" | "untested" | undefined {
  const v = plainText(cell).trim().toLowerCase();
  return HELD.has(v) ? "held" : FAILED.has(v) ? "failed" : UNTESTED.has(v) ? "untested" : undefined;
}

/**
 * The verdict tables of a markdown document: a table is about the paper's
 * claims when its first column or its section's heading says claim,
 * observation or statement; its verdict column is one headed holds, pass,
 * verdict... or one whose every cell is a verdict (yes, no, pass, fail, –).
 */
export function verdictsOf(blocks: Block[]): Verdicts[] {
  const out: Verdicts[] = [];
  let heading: string | undefined;
  for (const b of blocks) {
    if (b.kind === "heading") heading = b.level > 1 ? b.text : undefined;
    if (b.kind !== "table" || !b.rows.length) continue;
    const column = b.header.findIndex((h, c) =>
      c > 0 && (VERDICT_HEADER.test(plainText(h).trim()) ||
        (b.rows.every((r) => verdictOf(r[c]) !== undefined) && b.rows.some((r) => verdictOf(r[c]) !== "untested")))
    );
    const claims = CLAIM.test(plainText(b.header[0])) || (heading !== undefined && CLAIM.test(plainText(heading)));
    if (column < 0 && !claims) continue;
    const v: Verdicts = { kind: claims ? "claims" : "checks", rows: b.rows.length };
    if (heading !== undefined) v.section = slug(heading);
    if (column >= 0) {
      const counts = b.rows.map((r) => verdictOf(r[column]));
      v.held = counts.filter((c) => c === "held").length;
      v.failed = counts.filter((c) => c === "failed").length;
      v.untested = counts.length - v.held - v.failed;
    }
    out.push(v);
  }
  return out;
}

/** The verdicts in words: "3 of 4 claims hold", "10 of 10 checks pass", "4 claims, no verdict recorded". */
export function verdictText(v: Verdicts): string {
  const noun = v.kind === "claims" ? (v.rows === 1 ? "claim" : "claims") : (v.rows === 1 ? "check" : "checks");
  if (v.held === undefined) return `${v.rows} ${noun}, no verdict recorded`;
  const verb = v.kind === "claims" ? (v.rows === 1 ? "holds" : "hold") : (v.rows === 1 ? "passes" : "pass");
  const untested = v.untested ? `, ${v.untested} not tested` : "";
  return `${v.held} of ${v.rows} ${noun} ${verb}${untested}`;
}

function badge(v: Verdicts, href: string | undefined): string {
  const state = v.held === undefined ? "open" : v.failed ? "failed" : v.untested ? "partial" : "held";
  const text = escapeHtml(verdictText(v));
  return href
    ? `<a class="badge ${state}" href="${escapeHtml(href)}">${text}</a>`
    : `<span class="badge ${state}">${text}</span>`;
}

/** Seconds as "0.1 s", "85 s", "47 min 44 s", "2 h 05 min". */
export function fmtSeconds(s: number): string {
  if (s < 10) return `${Number(s.toFixed(1))} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.round(s) / 60;
  if (m < 60) return `${Math.floor(m)} min ${Math.round(s) % 60} s`;
  const minutes = Math.round(s / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** The provenance line of a results header, as HTML (fields that are missing are left out). */
export function provenanceHtml(p: Provenance): string {
  const parts: string[] = [];
  const field = (label: string, value: unknown, title?: string) => {
    if (value === undefined || value === null || value === "") return;
    const t = title ? ` title="${escapeHtml(title)}"` : "";
    parts.push(`<span${t}>${escapeHtml(label)}${label ? " " : ""}<b>${escapeHtml(String(value))}</b></span>`);
  };
  field("experiment", p.experiment);
  field("dataset", p.dataset);
  field("preset", p.preset);
  field("seed", p.seed);
  field("backend", p.backend?.name, p.backend?.detail);
  if (typeof p.wall_seconds === "number") field("wall time", fmtSeconds(p.wall_seconds));
  if (p.units?.total !== undefined) {
    const missing = p.units.missing?.length ? `, ${p.units.missing.length} missing` : "";
    field("units", `${p.units.total}${missing}`);
  }
  if (p.versions && typeof p.versions === "object") {
    const v = Object.entries(p.versions).map(([k, ver]) => `${k} ${ver}`).join(", ");
    field("versions", v);
  }
  if (p.command) parts.push(`<span>command <code>${escapeHtml(p.command)}</code></span>`);
  if (p.commit) {
    parts.push(`<span>commit <code title="${escapeHtml(p.commit)}">${escapeHtml(p.commit.slice(0, 12))}</code></span>`);
  }
  if (!p.command && !p.commit) parts.push(`<span class="muted">command and commit not recorded (an older file)</span>`);
  return parts.join(" · ");
}

/** A file name as an id fragment: letters, digits, `_` and `-` (others become `-`). */
function idSafe(name: string): string {
  return name.replace(/[^\w-]/g, "-");
}

/** Markdown blocks rendered with the claims sections set apart (`<section class="claims">`). */
function renderWithClaims(
  blocks: Block[],
  stem: string,
  claimSections: Set<string>,
  image: (src: string, alt: string) => string | undefined,
): string {
  const options = { headingOffset: 1, idPrefix: stem, image };
  const parts: string[] = [];
  let group: Block[] = [], claims = false;
  const flush = () => {
    if (!group.length) return;
    const html = renderBlocks(group, options);
    parts.push(claims ? `<section class="claims">\n${html}\n</section>` : html);
    group = [];
  };
  for (const b of blocks) {
    if (b.kind === "heading" && b.level <= 2) {
      flush();
      claims = b.level === 2 && claimSections.has(slug(b.text));
    }
    group.push(b);
  }
  flush();
  return parts.join("\n");
}

interface Rendered {
  stem: string;
  title: string;
  subtitle: string;
  verdicts: Verdicts[];
  html: string;
}

function renderEntry(e: GalleryEntry): Rendered {
  const p = e.provenance ?? {};
  const fallback = [p.experiment ?? e.stem, p.dataset ? `(${p.dataset})` : ""].join(" ").trim();
  const blocks = e.markdown === undefined ? [] : parseMarkdown(e.markdown);
  const first = blocks[0]?.kind === "heading" ? blocks[0] : undefined;
  const title = first?.text ?? fallback;
  const body = first ? blocks.slice(1) : blocks;
  const verdicts = verdictsOf(blocks);
  const claimSections = new Set(verdicts.filter((v) => v.kind === "claims" && v.section).map((v) => v.section!));

  let figureUsed = false;
  const svgLink = `<a href="${escapeHtml(e.stem)}.svg">Open the figure on its own</a> to zoom in.`;
  const figure = e.svg === undefined
    ? undefined
    : `<figure class="chart">${inlineSvg(e.svg, idSafe(e.stem), plainText(title))}` +
      `<figcaption>${svgLink}</figcaption></figure>`;
  const image = (src: string) => {
    if (figure === undefined || figureUsed || (src !== `${e.stem}.png` && src !== `${e.stem}.svg`)) return undefined;
    figureUsed = true;
    return figure;
  };
  const content = renderWithClaims(body, e.stem, claimSections, image);

  const links = LINKED.filter(([suffix]) => e.files.includes(e.stem + suffix))
    .map(([suffix, what]) => `<a href="${escapeHtml(e.stem + suffix)}">${escapeHtml(what)}</a>`);
  const badges = verdicts.map((v) => badge(v, v.section ? `#${e.stem}-${v.section}` : undefined));
  const notes: string[] = [];
  if (e.error) notes.push(`<p class="warning">${escapeHtml(e.error)}</p>`);
  if (e.markdown === undefined && e.svg === undefined) {
    notes.push(
      `<p class="warning">No figure or table drawn from this results file yet: <code>deno task figures</code> draws them.</p>`,
    );
  }
  const subtitle = [p.dataset, p.preset ? `preset ${p.preset}` : undefined].filter(Boolean).join(" · ");
  const html = [
    `<article class="result" id="${escapeHtml(e.stem)}">`,
    `<h2>${inlineHtml(title)}</h2>`,
    `<p class="provenance">${provenanceHtml(p)}</p>`,
    `<p class="files">Files: ${links.join(" · ")}</p>`,
    ...(badges.length ? [`<p class="verdicts">${badges.join(" ")}</p>`] : []),
    ...notes,
    // The figure goes first when the markdown did not place it (no image of it).
    ...(figure !== undefined && !figureUsed ? [figure] : []),
    content,
    `<p class="top"><a href="#contents">↑ contents</a></p>`,
    `</article>`,
  ];
  return { stem: e.stem, title, subtitle, verdicts, html: html.join("\n") };
}

function renderNote(n: GalleryNote): { id: string; title: string; html: string } {
  const blocks = parseMarkdown(n.markdown);
  const stem = idSafe(n.file.replace(/\.md$/, ""));
  const title = blocks[0]?.kind === "heading" ? blocks[0].text : n.file;
  const first = blocks[0]?.kind === "heading" ? 1 : 0;
  const html = [
    `<article class="note" id="note-${escapeHtml(stem)}">`,
    `<h2>${inlineHtml(title)}</h2>`,
    `<p class="files">File: <a href="${escapeHtml(n.file)}">${escapeHtml(n.file)}</a></p>`,
    renderBlocks(blocks.slice(first), { headingOffset: 1, idPrefix: `note-${stem}` }),
    `<p class="top"><a href="#contents">↑ contents</a></p>`,
    `</article>`,
  ].join("\n");
  return { id: `note-${stem}`, title, html };
}

const STYLE = `
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --card: #fff; --page: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: var(--page); color: var(--fg); overflow-wrap: break-word;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 16px; }
header h1 { margin: 24px 0 4px; font-size: 1.8rem; line-height: 1.25; }
a { color: var(--accent); }
nav#contents, article { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
nav#contents h2 { margin-top: 0; }
nav#contents ol { padding-left: 1.4em; margin: 0; }
nav#contents li { margin: 6px 0; }
nav#contents .sub { color: var(--muted); font-size: .85rem; }
article h2 { font-size: 1.35rem; line-height: 1.3; margin: 0 0 8px; }
article h3 { font-size: 1.1rem; margin: 24px 0 8px; }
article h4 { font-size: 1rem; }
.provenance, .files, .top, .muted, footer { color: var(--muted); font-size: .85rem; }
.provenance { margin: 4px 0; }
.provenance b { color: var(--fg); font-weight: 600; }
.files { margin: 4px 0 8px; }
.badge { display: inline-block; margin: 2px 4px 2px 0; padding: 1px 10px; border-radius: 999px; font-size: .85rem;
  text-decoration: none; border: 1px solid; }
.badge.held { color: #1a7f37; background: #dafbe1; border-color: #4ac26b; }
.badge.failed { color: #b3261e; background: #ffebe9; border-color: #ff8182; }
.badge.partial { color: #7d4e00; background: #fff8c5; border-color: #d4a72c; }
.badge.open { color: var(--muted); background: #f6f8fa; border-color: var(--line); }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; }
figure.chart { margin: 16px 0; }
figure.chart svg, article img { display: block; max-width: 100%; height: auto; }
figure.chart figcaption { display: none; font-size: .85rem; color: var(--muted); }
.table-scroll { overflow-x: auto; margin: 12px 0; max-width: 100%; }
/* As wide as its text wants, up to the container or, on a phone, 50em (then it scrolls): no columns one word wide. */
.table-scroll table { width: max-content; max-width: max(100%, 50em); }
/* Right-aligned columns hold numbers ("8.376 ± 0.685"), which read badly broken over lines. */
.table-scroll td[style*="right"] { white-space: nowrap; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; overflow-wrap: normal; }
th { background: #f6f8fa; text-align: left; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
code { font: .85em/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #eff2f5;
  padding: .1em .3em; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: #eff2f5; padding: 8px 12px; border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
pre code { padding: 0; background: none; }
blockquote { margin: 12px 0; padding: 4px 12px; border-left: 4px solid #d4a72c; background: #fff8c5; }
section.claims { border-left: 4px solid var(--accent); background: #f3f8ff; padding: 4px 12px; margin: 16px 0;
  border-radius: 0 6px 6px 0; }
section.claims td, section.claims th { background: #fff; }
.top { margin: 16px 0 0; }
footer { padding-bottom: 32px; }
@media (max-width: 600px) {
  header, main, footer { padding: 0 8px; }
  header h1 { font-size: 1.5rem; }
  nav#contents, article { padding: 12px; border-radius: 6px; }
  article h2 { font-size: 1.2rem; }
  section.claims { padding: 4px 8px; }
  figure.chart figcaption { display: block; }
}
`.trim();

/** The page: a pure function of what {@link readGallery} found. */
export function galleryHtml(source: GallerySource): string {
  const entries = source.entries.map(renderEntry);
  const notes = source.notes.map(renderNote);
  const experiments = new Set(source.entries.map((e) => e.provenance?.experiment ?? e.stem));
  const toc = entries.map((r) => {
    const badges = r.verdicts.map((v) => badge(v, undefined)).join(" ");
    const sub = [r.subtitle, badges].filter(Boolean).join(" · ");
    return `<li><a href="#${escapeHtml(r.stem)}">${escapeHtml(plainText(r.title))}</a>` +
      (sub ? `<br><span class="sub">${sub}</span>` : "") + `</li>`;
  });
  const noteToc = notes.map((n) => `<li><a href="#${escapeHtml(n.id)}">${escapeHtml(plainText(n.title))}</a></li>`);
  const count = `${entries.length} result${entries.length === 1 ? "" : "s"} of ${experiments.size} experiment${
    experiments.size === 1 ? "" : "s"
  }`;
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>Results gallery: Towards Deep Learning Models Resistant to Adversarial Attacks, reproduced</title>",
    `<style>\n${STYLE}\n</style>`,
    "</head>",
    "<body>",
    "<header>",
    "<h1>Results gallery</h1>",
    `<p class="muted">Every result in this folder (${count}): its figure, its tables, the paper's claims beside our ` +
    "numbers, and where it came from. Made by <code>deno task gallery</code> from the files beside this page, " +
    "which the links open.</p>",
    "</header>",
    "<main>",
    '<nav id="contents">',
    "<h2>Contents</h2>",
    entries.length ? `<ol>\n${toc.join("\n")}\n</ol>` : "<p>No results files in this folder yet.</p>",
    noteToc.length ? `<h3>Notes</h3>\n<ul>\n${noteToc.join("\n")}\n</ul>` : "",
    "</nav>",
    ...entries.map((r) => r.html),
    ...notes.map((n) => n.html),
    "</main>",
    "<footer><p>Figures are the SVG files drawn by the Vega-Lite pipeline (<code>deno task figures</code> redraws them " +
    "from the results files, and this page with them).</p></footer>",
    "</body>",
    "</html>",
    "",
  ].filter((l) => l !== "").join("\n");
}

/** Reads `dir` and writes the page to `<dir>/index.html` (atomically); returns its path. */
export async function writeGallery(dir: string): Promise<string> {
  const path = join(dir, GALLERY_FILE);
  await writeFileAtomic(path, galleryHtml(await readGallery(dir)));
  return path;
}
