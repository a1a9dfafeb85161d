/**
 * The drawings of a robustness table (Madry et al., Tables 1 and 2): the
 * markdown table with the paper's accuracy, ours and the difference per row,
 * the most successful attack of each group in bold as the paper marks it, the
 * worst-case rows, and the checks; and a chart of accuracy per attack, ours
 * beside the paper's.
 *
 * @module
 */
import type { Check, SuiteRow } from "../attacks/robustness.ts";
import { fmtPct, markdownTable } from "./table.ts";
import type { VegaLiteSpec } from "./vega.ts";

/** What the drawings read of a robustness results file. */
export interface SuiteReport {
  /** e.g. "Table 1 (MNIST)". */
  title: string;
  /** The figure file's base name, for the markdown's image link. */
  png: string;
  /** One paragraph on what was run (models, examples, preset, backend). */
  about: string;
  rows: (SuiteRow & { accuracy: number })[];
  worst: { name: string; accuracy: number }[];
  checks: Check[];
  /** How the targeted attack chooses its classes. */
  targetRule: string;
  /** A further paragraph under the table (e.g. on the rows beyond the paper). */
  note?: string;
}

/** An attack's method as the paper writes it. */
export function methodLabel(method: SuiteRow["method"]): string {
  return {
    natural: "natural",
    fgsm: "FGSM",
    pgd: "PGD",
    targeted: "targeted PGD",
    cw: "CW",
    "cw+": "CW+ (κ 50)",
    "apgd-ce": "APGD-CE",
    "apgd-t": "APGD-T (9 targets)",
    square: "Square",
  }[method];
}

/** A zoo model's name as the paper writes it ("A_prime" → "A′", "A_nat" → "A_nat"). */
export function sourceLabel(source: string): string {
  return source === "A_prime" ? "A′" : source;
}

/** The markdown: the table, the worst cases, the checks. */
export function suiteMarkdown(r: SuiteReport): string {
  const best = (values: (number | undefined)[], group: string) => {
    const inGroup = r.rows.flatMap((row, i) =>
      row.group === group && row.method !== "natural" && values[i] !== undefined ? [values[i]!] : []
    );
    return inGroup.length ? Math.min(...inGroup) : NaN;
  };
  const ours = r.rows.map((row) => row.accuracy), paper = r.rows.map((row) => row.paper);
  const mark = (v: number | undefined, i: number, values: (number | undefined)[]) => {
    if (v === undefined) return "–";
    const text = fmtPct(v);
    return r.rows[i].method !== "natural" && v === best(values, r.rows[i].group) ? `**${text}**` : text;
  };
  const table = markdownTable(
    ["group", "attack", "source", "steps", "restarts", "paper", "ours", "ours − paper"],
    [
      ...r.rows.map((row, i) => [
        row.group,
        methodLabel(row.method),
        row.method === "natural" ? "–" : sourceLabel(row.source),
        row.method === "natural" || row.method === "fgsm" ? "–" : row.steps,
        row.method === "natural" || row.method === "fgsm" ? "–" : row.restarts,
        mark(paper[i], i, paper),
        mark(ours[i], i, ours),
        paper[i] === undefined ? "–" : `${(100 * (ours[i] - paper[i]!)).toFixed(1)}`,
      ]),
      ...r.worst.map((w) => ["", w.name, "", "", "", "–", fmtPct(w.accuracy), "–"]),
    ],
    ["l", "l", "l", "r", "r", "r", "r", "r"],
  );
  const checks = markdownTable(
    ["check", "", "measured"],
    r.checks.map((c) => [c.name, c.pass ? "pass" : "**FAIL**", c.detail]),
    ["l", "l", "l"],
  );
  const failed = r.checks.filter((c) => !c.pass).length;
  return [
    `# ${r.title}: accuracy of the adversarially trained model under every attack`,
    "",
    r.about,
    "",
    `![${r.title}](${r.png})`,
    "",
    table,
    "",
    "Accuracies in percent points; the most successful attack of each group is in bold, in the paper's column and in " +
    "ours. The worst-case rows are per example: an example counts as robust only if no attack of the set breaks it " +
    "(the paper has no such rows). Transfer rows craft on the source and score on the target without querying it " +
    `(restarts keep the one that fools the source, else the one of highest loss on it). ${r.targetRule}`,
    "",
    ...(r.note ? [r.note, ""] : []),
    `## Checks against fooling ourselves (${failed ? `${failed} FAILED` : "all pass"})`,
    "",
    checks,
    "",
  ].join("\n");
}

/** Accuracy per attack, ours beside the paper's, as horizontal bars. */
export function suiteFigure(r: SuiteReport): VegaLiteSpec {
  const label = (row: SuiteReport["rows"][number]) =>
    row.method === "natural"
      ? "natural"
      : row.method === "square"
      ? `Square, ${row.steps} queries to ${sourceLabel(row.source)}`
      : `${methodLabel(row.method)}${row.method === "fgsm" ? "" : ` ${row.steps}×${row.restarts}`} from ` +
        sourceLabel(row.source);
  const values = r.rows.flatMap((row) => [
    { attack: label(row), who: "ours", accuracy: row.accuracy, group: row.group },
    ...(row.paper === undefined ? [] : [{ attack: label(row), who: "paper", accuracy: row.paper, group: row.group }]),
  ]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `${r.title}: accuracy under each attack`,
      subtitle: "ours (dark: this run's models and test images, see the table) beside the paper's (light: its model A)",
    },
    data: { values },
    width: 420,
    height: { step: 11 },
    mark: { type: "bar" },
    encoding: {
      y: { field: "attack", type: "nominal", sort: null, title: null },
      yOffset: { field: "who", sort: ["ours", "paper"] },
      x: {
        field: "accuracy",
        type: "quantitative",
        axis: { format: "%", values: [0, 0.2, 0.4, 0.6, 0.8, 1] },
        scale: { domain: [0, 1] },
        title: "accuracy",
      },
      color: {
        field: "who",
        type: "nominal",
        scale: { domain: ["ours", "paper"], range: ["#d62728", "#f4a6a6"] },
        legend: { title: null, orient: "top" },
      },
    },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}
