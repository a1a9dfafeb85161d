/**
 * Reporting: Vega-Lite figures rendered to SVG and PNG, markdown tables, and shared summaries.
 *
 * @module
 */
export { renderFigure, toPng, toSvg, type VegaLiteSpec, writeFigure, writeJsonAtomic } from "./vega.ts";
export { recoverFileSets, writeFileSet } from "./file_set.ts";
export { fmtNum, fmtPct, markdownTable } from "./table.ts";
export { median, MODEL_COLORS, netText, ratio, stats, trainingText } from "./summary.ts";
export { methodLabel, sourceLabel, suiteFigure, suiteMarkdown, type SuiteReport } from "./suite_report.ts";
