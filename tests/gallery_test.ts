import { fileURLToPath, pathToFileURL } from "node:url";
import { assert, assertEquals } from "./assert.ts";
import { galleryHtml, readGallery, verdictsOf, verdictText, writeGallery } from "../lib/report/mod.ts";
import { type Block, markdownToHtml, parseMarkdown } from "../lib/report/_markdown.ts";
import { inlineSvg } from "../lib/report/_inline_svg.ts";
import { Browser, CHROMIUM, chromiumFound } from "./fixtures/cdp.ts";

Deno.test("markdown: a table with alignment, bold, code and a link become HTML", () => {
  const html = markdownToHtml(
    [
      "# Title",
      "",
      "Some **bold** text with `a|b` and [a link](x.md).",
      "",
      "| name | value | note |",
      "| :--- | ----: | :--: |",
      "| **A** | `1.5` | [see](y.json) |",
      "| b \\| c | 2 | – |",
    ].join("\n"),
    { headingOffset: 1, idPrefix: "t" },
  );
  assert(html.includes('<h2 id="t-title">Title</h2>'), html);
  assert(
    html.includes('<p>Some <strong>bold</strong> text with <code>a|b</code> and <a href="x.md">a link</a>.</p>'),
    html,
  );
  assert(html.includes('<div class="table-scroll"><table>'), html);
  assert(html.includes('<th style="text-align:left">name</th><th style="text-align:right">value</th>'), html);
  assert(html.includes('<th style="text-align:center">note</th>'), html);
  assert(
    html.includes(
      '<td style="text-align:left"><strong>A</strong></td><td style="text-align:right"><code>1.5</code></td>',
    ),
    html,
  );
  assert(html.includes('<td style="text-align:center"><a href="y.json">see</a></td>'), html);
  assert(html.includes('<td style="text-align:left">b | c</td>'), html);
  assertEquals(html.match(/<tr>/g)?.length, 3);
});

Deno.test("markdown: quotes, lists with continuation lines, code blocks, images; text is escaped", () => {
  const html = markdownToHtml(
    [
      "> **Incomplete:** 2 of 5 <units>",
      "",
      "What it says:",
      "- first item",
      "  continued here",
      "- second & last",
      "",
      "```sh",
      "deno task gallery --out <dir>",
      "```",
      "",
      "![a figure](f.png) and [bad](javascript:alert(1))",
    ].join("\n"),
  );
  assert(html.includes("<blockquote>\n<p><strong>Incomplete:</strong> 2 of 5 &lt;units&gt;</p>\n</blockquote>"), html);
  assert(html.includes("<ul>\n<li>first item\ncontinued here</li>\n<li>second &amp; last</li>\n</ul>"), html);
  assert(html.includes('<pre><code class="language-sh">deno task gallery --out &lt;dir&gt;</code></pre>'), html);
  assert(html.includes('<img src="f.png" alt="a figure">'), html);
  assert(!html.includes("javascript:"), html);
});

Deno.test("verdicts: a claims table with a holds column is counted; one without says so; checks apart", () => {
  const md = [
    "## The paper's observations, measured",
    "| claim | holds | measured |",
    "| :- | :- | :- |",
    "| a | yes | 1 |",
    "| b | **no** | 2 |",
    "| c | – | cells missing |",
    "## The paper's claims beside ours",
    "| claim (Sec. 3) | measured here |",
    "| :- | :- |",
    "| d | 3 |",
    "## Checks",
    "| check | | measured |",
    "| :- | :- | :- |",
    "| e | pass | 4 |",
    "| f | pass | 5 |",
  ].join("\n");
  const v = verdictsOf(parseMarkdown(md));
  assertEquals(v.map(verdictText), [
    "1 of 3 claims hold, 1 not tested",
    "1 claim, no verdict recorded",
    "2 of 2 checks pass",
  ]);
  assertEquals(v[0].section, "the-paper-s-observations-measured");
});

Deno.test("inlined SVGs get ids of their own, tooltips from their labels, and one label as an image", () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" viewBox="0 0 10 10">' +
    '<defs><clipPath id="clip1"><rect width="5" height="5"/></clipPath></defs>' +
    '<g clip-path="url(#clip1)"><path aria-label="x: 1; y: 2" role="graphics-symbol" ' +
    'aria-roledescription="circle" transform="translate(1.23456,2)" d="M0,0h1"/></g></svg>';
  const a = inlineSvg(svg, "fig_a", "Figure A"), b = inlineSvg(svg, "fig_b", "Figure B");
  assert(a.includes('id="fig_a-clip1"') && a.includes("url(#fig_a-clip1)"), a);
  assert(b.includes('id="fig_b-clip1"') && !b.includes("fig_a"), b);
  assert(a.startsWith('<svg role="img" aria-label="Figure A"'), a);
  assert(a.includes('<path transform="translate(1.23,2)" d="M0,0h1"><title>x: 1; y: 2</title></path>'), a);
  assert(!inlineSvg(svg, "c", "C", 0).includes("<title>"), "no tooltips past the limit");
});

Deno.test("a results file of an experiment nobody has heard of still gets its section, in a deterministic page", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gallery-discovery-" });
  try {
    await Deno.writeTextFile(
      `${dir}/zeta_probe_svhn.results.json`,
      JSON.stringify({ experiment: "zeta_probe", dataset: "svhn", preset: "quick", seed: 7, wall_seconds: 3725 }),
    );
    await Deno.writeTextFile(
      `${dir}/figure1_mnist.results.json`,
      JSON.stringify({ experiment: "figure1", dataset: "mnist", command: "deno task figure1", commit: "a".repeat(40) }),
    );
    await Deno.writeTextFile(`${dir}/figure1_mnist.md`, "# Figure 1 (MNIST)\n\n![Figure 1](figure1_mnist.png)\n");
    await Deno.writeTextFile(`${dir}/figure1_mnist.svg`, '<svg width="4" height="4" viewBox="0 0 4 4"></svg>');
    await Deno.writeTextFile(`${dir}/broken_mnist.results.json`, "{ not json");
    await Deno.writeTextFile(`${dir}/sweep.md`, "# A sweep\n\nNotes.\n");
    const html = galleryHtml(await readGallery(dir));
    assert(html.includes('<article class="result" id="zeta_probe_svhn">'), "the unknown experiment has its section");
    assert(html.includes('<a href="#zeta_probe_svhn">zeta_probe (svhn)</a>'), "and a line in the contents");
    assert(html.includes("seed <b>7</b>") && html.includes("wall time <b>1 h 02 min</b>"), "provenance");
    assert(html.includes("command and commit not recorded"), "an older file says so");
    assert(html.includes('<a href="zeta_probe_svhn.results.json">results JSON</a>'), "links its results");
    assert(html.includes("No figure or table drawn from this results file yet"), "says what is missing");
    assert(html.includes("cannot read broken_mnist.results.json"), "a broken file is shown, not skipped");
    assert(html.includes('<figure class="chart"><svg role="img" aria-label="Figure 1 (MNIST)"'), "svg inlined");
    assert(!html.includes('src="figure1_mnist.png"'), "the figure replaces the markdown's image of it");
    assert(html.indexOf('id="figure1_mnist"') < html.indexOf('id="zeta_probe_svhn"'), "paper's figures first");
    assert(html.includes('id="note-sweep"'), "a markdown file without results is a note");
    assert(!/\d{4}-\d\d-\d\dT\d\d:/.test(html), "no timestamps");
    const path = await writeGallery(dir);
    assertEquals(await Deno.readTextFile(path), html, "the written page is the same page again");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Every table of a document, nested ones (in quotes, lists) too. */
function tablesOf(blocks: Block[]): Extract<Block, { kind: "table" }>[] {
  return blocks.flatMap((b) =>
    b.kind === "table"
      ? [b]
      : b.kind === "quote"
      ? tablesOf(b.blocks)
      : b.kind === "list"
      ? b.items.flatMap(tablesOf)
      : []
  );
}

/** What the page says about itself at one width: measured in the browser. */
interface Layout {
  innerWidth: number;
  scrollWidth: number;
  /** Elements (outside table scroll containers) whose box or text pokes out of the viewport. */
  overflowing: string[];
  figures: { stem: string; width: number; height: number; children: number }[];
  tables: Record<string, number[]>;
  links: string[];
  anchors: { href: string; found: boolean }[];
}

/** Runs in the page: measures what the test checks. */
const MEASURE = `(() => {
  const vw = window.innerWidth;
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") +
    " " + JSON.stringify((el.textContent || "").trim().slice(0, 60));
  const exempt = (el) => el.closest(".table-scroll") !== null;
  const overflowing = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (exempt(el) || el.closest("svg") && el.tagName.toLowerCase() !== "svg") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -0.5 || r.right > vw + 0.5) overflowing.push(describe(el) + " box " + r.left.toFixed(1) + ".." + r.right.toFixed(1));
    else if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible" && el.clientWidth > 0)
      overflowing.push(describe(el) + " content " + el.scrollWidth + " > " + el.clientWidth);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || exempt(el) || el.closest("svg") || !n.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      if (r.left < -0.5 || r.right > vw + 0.5) { overflowing.push("text in " + describe(el)); break; }
    }
  }
  const figures = [...document.querySelectorAll("article.result")].flatMap((a) =>
    [...a.querySelectorAll("figure.chart > svg")].map((svg) => {
      const r = svg.getBoundingClientRect();
      return { stem: a.id, width: r.width, height: r.height, children: svg.querySelectorAll("*").length };
    }));
  const tables = {};
  for (const a of document.querySelectorAll("article")) {
    tables[a.id] = [...a.querySelectorAll("table")].map((t) => t.querySelectorAll("tbody tr").length);
  }
  const links = [...document.querySelectorAll("a[href], img[src]")]
    .map((e) => e.getAttribute("href") ?? e.getAttribute("src"))
    .filter((h) => !h.startsWith("#"))
    .map((h) => new URL(h, location.href).href);
  const anchors = [...document.querySelectorAll('a[href^="#"]')]
    .map((a) => a.getAttribute("href"))
    .map((href) => ({ href, found: document.getElementById(decodeURIComponent(href.slice(1))) !== null }));
  return { innerWidth: vw, scrollWidth: document.documentElement.scrollWidth, overflowing, figures, tables, links, anchors };
})()`;

const HAVE_CHROMIUM = chromiumFound();
if (!HAVE_CHROMIUM) {
  console.log(`gallery_test: no ${CHROMIUM} on PATH; the browser test is skipped (apt-get install chromium)`);
}

Deno.test({
  name:
    "the gallery of the committed figures in headless Chromium: no errors, every figure and table, links, no overflow",
  ignore: !HAVE_CHROMIUM,
  // The browser is another process: its pipe and socket close on their own schedule.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "gallery-browser-" });
    const dir = `${tmp}/figures`;
    await Deno.mkdir(dir);
    for (const e of Deno.readDirSync("figures")) {
      if (e.isFile && e.name !== "index.html") await Deno.copyFile(`figures/${e.name}`, `${dir}/${e.name}`);
    }
    const source = await readGallery(dir);
    assert(source.entries.length > 0, "figures/ has results files");
    const page = await writeGallery(dir);
    const expectedFigures = source.entries.filter((e) => e.svg !== undefined).map((e) => e.stem).sort();
    const expectedTables: Record<string, number[]> = {};
    for (const e of source.entries) {
      expectedTables[e.stem] = e.markdown === undefined
        ? []
        : tablesOf(parseMarkdown(e.markdown)).map((t) => t.rows.length);
    }
    for (const n of source.notes) {
      expectedTables[`note-${n.file.replace(/\.md$/, "").replace(/[^\w-]/g, "-")}`] = tablesOf(
        parseMarkdown(n.markdown),
      )
        .map((t) => t.rows.length);
    }

    const browser = await Browser.launch(`${tmp}/profile`);
    try {
      const tab = await browser.newPage();
      for (const [width, height, mobile] of [[1280, 800, false], [390, 844, true]] as const) {
        await tab.setViewport(width, height, mobile);
        await tab.navigate(pathToFileURL(page).href);
        const m = await tab.evaluate<Layout>(MEASURE);
        const at = `at ${width} px`;
        assertEquals(tab.errors, [], `console errors ${at}`);
        assertEquals(m.innerWidth, width, `the viewport is ${width} px wide (not zoomed out to fit) ${at}`);
        assert(m.scrollWidth <= width, `the page scrolls sideways ${at}: ${m.scrollWidth} > ${width}`);
        assertEquals(m.overflowing, [], `elements wider than the viewport ${at}`);
        assertEquals(m.figures.map((f) => f.stem).sort(), expectedFigures, `one figure per SVG ${at}`);
        for (const f of m.figures) {
          assert(f.width > 50 && f.height > 50 && f.children > 10, `${f.stem} rendered ${at}: ${JSON.stringify(f)}`);
          assert(f.width <= width, `${f.stem} fits ${at}: ${f.width}`);
        }
        assertEquals(m.tables, expectedTables, `every table with its rows ${at}`);
        for (const link of new Set(m.links)) {
          assert(link.startsWith("file://"), `a link leaves the file system: ${link}`);
          const path = fileURLToPath(link.replace(/#.*$/, ""));
          assert((await Deno.stat(path)).isFile, `link to ${path} resolves`);
        }
        assert(m.links.some((l) => l.endsWith(".results.json")), "links to the results files");
        assertEquals(m.anchors.filter((a) => !a.found), [], `in-page links find their targets ${at}`);
        await Deno.writeFile(`${tmp}/gallery-${width}.png`, await tab.screenshot(true));
      }
      console.log(
        `gallery_test: the page is ${((await Deno.stat(page)).size / 1024).toFixed(0)} KB; ` +
          `screenshots ${tmp}/gallery-1280.png and ${tmp}/gallery-390.png`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\nchromium stderr:\n${browser.stderr.slice(0, 4000)}`);
    } finally {
      await browser.close();
      // The screenshots stay for a person to look at; the copies and the profile go.
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(`${tmp}/profile`, { recursive: true }).catch(() => {});
    }
  },
});
