/**
 * Reporting: Vega-Lite figures rendered to SVG and PNG, markdown tables, shared summaries, and the gallery page
 * of every result (`figures/index.html`).
 *
 * @module
 */
export { renderFigure, toPng, toSvg, type VegaLiteSpec, writeFigure, writeJsonAtomic } from "./vega.ts";
export { recoverFileSets, writeFileSet } from "./file_set.ts";
export { fmtNum, fmtPct, markdownTable } from "./table.ts";
export { median, MODEL_COLORS, netText, ratio, stats, trainingText } from "./summary.ts";
export { methodLabel, sourceLabel, suiteFigure, suiteMarkdown, type SuiteReport } from "./suite_report.ts";
export { galleryHtml, readGallery, verdictsOf, verdictText, writeGallery } from "./gallery.ts";
