/**
 * Figure writer: Vega-Lite spec → SVG (vega, headless) → PNG (resvg-wasm with
 * the bundled DejaVu fonts), plus atomic JSON writes for results files.
 *
 * Output is deterministic: the same spec gives byte-identical SVG and PNG on
 * every machine and in every order of calls (vega's clip/gradient id counters
 * are reset before each render, no system font is ever consulted). The spec
 * passed in is never modified.
 *
 * Permissions: `--allow-read=node_modules` (the resvg wasm binary and the
 * DejaVu fonts are read from the installed npm packages) and `--allow-write`
 * for the folder figures go to.
 *
 * ```ts
 * import { writeFigure } from "./vega.ts";
 * await writeFigure("figures", "demo", {
 *   data: { values: [{ x: 1 }, { x: 2 }, { x: 2 }] },
 *   mark: "bar",
 *   encoding: { x: { field: "x", bin: true }, y: { aggregate: "count" } },
 * }, "A demo histogram.\n");
 * ```
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import { initWasm, Resvg } from "@resvg/resvg-wasm";
import { fileURLToPath } from "node:url";
import { writeFileSet } from "./file_set.ts";
import { writeFileAtomic } from "../core/fs.ts";

/** A Vega-Lite top-level spec (unit, layer, facet, repeat or concat). */
export type VegaLiteSpec = vl.TopLevelSpec;

/** The font family the PNG renderer resolves every font name to. */
export const FONT_FAMILY = "DejaVu Sans";

/**
 * Advance widths of DejaVu Sans, in ems, by character class (from the font's
 * metrics, rounded). Without a canvas vega guesses 0.8 em for every character,
 * which made long titles and legends look twice their size and left a wide
 * blank strip on the right of every figure.
 */
function advance(ch: string): number {
  if (" .,:;'!|".includes(ch)) return 0.32;
  if ("ijl".includes(ch)) return 0.28;
  if ("frt()[]-".includes(ch)) return 0.4;
  if ("mw".includes(ch)) return 0.9;
  if ("MW".includes(ch)) return 0.93;
  if (ch >= "0" && ch <= "9") return 0.64;
  if (ch >= "a" && ch <= "z") return 0.6;
  if (ch >= "A" && ch <= "Z") return 0.72;
  return 0.65;
}

/** Text width in pixels of a vega text item in DejaVu Sans (bold about 8% wider). */
function dejaVuWidth(item: { fontSize?: number; fontWeight?: string | number }, text: unknown): number {
  const size = item.fontSize != null ? +item.fontSize || 0 : 11;
  const bold = /bold|[6-9]00/.test(String(item.fontWeight ?? ""));
  let ems = 0;
  for (const ch of text == null ? "" : String(text).trim()) ems += advance(ch);
  return ems * size * (bold ? 1.08 : 1);
}

// vega exports textMetrics (vega-scenegraph) though its typings do not say so; its `width` may be replaced.
(vega as unknown as { textMetrics: { width: typeof dejaVuWidth } }).textMetrics.width = dejaVuWidth;

/**
 * Compile a Vega-Lite spec and render it to an SVG string headlessly.
 * Deterministic: no timestamps, and vega's global clip/gradient id counters
 * are reset first, so the output does not depend on what was rendered before.
 */
export async function toSvg(spec: VegaLiteSpec): Promise<string> {
  // vega ingests inline data in place (it tags each datum with a tuple id and
  // some transforms write fields), so render a copy and leave `spec` as given.
  const compiled = vl.compile(structuredClone(spec)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    vega.resetSVGDefIds();
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Where an installed npm package file lives, as a file path. */
function packageFile(specifier: string, fallback: string): string {
  try {
    const url = import.meta.resolve(specifier);
    if (url.startsWith("file:")) return fileURLToPath(url);
  } catch {
    // resolution failed: fall through to the project's node_modules
  }
  return fileURLToPath(new URL(`../../node_modules/${fallback}`, import.meta.url));
}

let fonts: Promise<Uint8Array[]> | undefined;

/** Initialise resvg-wasm once and load the DejaVu fonts once. */
function resvgReady(): Promise<Uint8Array[]> {
  fonts ??= (async () => {
    const wasmPath = packageFile(
      "@resvg/resvg-wasm/index_bg.wasm",
      "@resvg/resvg-wasm/index_bg.wasm",
    );
    const wasm = await Deno.readFile(wasmPath).catch((err) => {
      throw new Error(
        `cannot read ${wasmPath} (is @resvg/resvg-wasm installed? run with --allow-read=node_modules): ${err}`,
      );
    });
    await initWasm(wasm);
    const buffers: Uint8Array[] = [];
    for (const file of ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"]) {
      const path = packageFile(
        `dejavu-fonts-ttf/ttf/${file}`,
        `dejavu-fonts-ttf/ttf/${file}`,
      );
      try {
        buffers.push(await Deno.readFile(path));
      } catch (err) {
        if (
          file === "DejaVuSans.ttf" || !(err instanceof Deno.errors.NotFound)
        ) {
          throw new Error(
            `cannot read the font ${path} (is the npm package dejavu-fonts-ttf installed? run with --allow-read=node_modules): ${err}`,
          );
        }
      }
    }
    return buffers;
  })();
  fonts.catch(() => fonts = undefined); // a failed start may be retried
  return fonts;
}

/**
 * Render an SVG string to PNG bytes on a white background, with the DejaVu
 * fonts and no system fonts. `scale` multiplies the SVG's pixel size
 * (default 2, for crisp images).
 */
export async function toPng(
  svg: string,
  opts: { scale?: number } = {},
): Promise<Uint8Array> {
  const scale = opts.scale ?? 2;
  if (!(scale > 0 && Number.isFinite(scale))) {
    throw new Error(`scale must be a positive finite number, got ${scale}`);
  }
  const fontBuffers = await resvgReady();
  // The wasm build never sees system fonts: only these buffers exist, and
  // every generic family resolves to DejaVu Sans.
  const resvg = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: scale },
    font: {
      fontBuffers,
      defaultFontFamily: FONT_FAMILY,
      sansSerifFamily: FONT_FAMILY,
      serifFamily: FONT_FAMILY,
      monospaceFamily: FONT_FAMILY,
      cursiveFamily: FONT_FAMILY,
      fantasyFamily: FONT_FAMILY,
    },
  });
  try {
    const image = resvg.render();
    try {
      return image.asPng();
    } finally {
      image.free();
    }
  } finally {
    resvg.free();
  }
}

/** Write `value` as pretty JSON with a trailing newline, atomically. */
export async function writeJsonAtomic(
  path: string,
  value: unknown,
): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/**
 * The files of a figure: `<name>.vl.json` (the spec), `<name>.svg`,
 * `<name>.png` (scale 2) and `<name>.md` (the given markdown), as
 * [file name, contents] in that order.
 */
export async function renderFigure(
  name: string,
  spec: VegaLiteSpec,
  markdown: string,
): Promise<[string, string | Uint8Array][]> {
  if (!/^[\w.-]+$/.test(name)) {
    throw new Error(`figure name must be letters, digits, '_', '-' or '.', got ${JSON.stringify(name)}`);
  }
  const svg = await toSvg(spec);
  return [
    [`${name}.vl.json`, JSON.stringify(spec, null, 2) + "\n"],
    [`${name}.svg`, svg],
    [`${name}.png`, await toPng(svg)],
    [`${name}.md`, markdown.endsWith("\n") ? markdown : markdown + "\n"],
  ];
}

/**
 * Write a figure into `dir` (created if missing) as one unit
 * ({@link writeFileSet}): `<name>.vl.json`, `.svg`, `.png` and `.md`.
 * Returns the paths written, in that order.
 */
export async function writeFigure(
  dir: string,
  name: string,
  spec: VegaLiteSpec,
  markdown: string,
): Promise<string[]> {
  return await writeFileSet(dir, await renderFigure(name, spec, markdown));
}
