/**
 * Markdown tables and the number formats the tables and figures share.
 *
 * ```ts
 * import { fmtPct, markdownTable } from "./table.ts";
 * markdownTable(["model", "adv acc"], [["natural", fmtPct(0.035)]], ["l", "r"]);
 * // | model   | adv acc |
 * // | :------ | ------: |
 * // | natural |    3.5% |
 * ```
 *
 * @module
 */

/** Column alignment: left, right or centre. */
export type Align = "l" | "r" | "c";

/** A cell's text with `|` escaped and line breaks turned into spaces. */
function cellText(cell: string | number): string {
  return String(cell).replace(/\r?\n/g, " ").replaceAll("|", "\\|");
}

function pad(text: string, width: number, align: Align): string {
  const gap = width - text.length;
  if (gap <= 0) return text;
  if (align === "r") return " ".repeat(gap) + text;
  if (align === "c") {
    const left = Math.floor(gap / 2);
    return " ".repeat(left) + text + " ".repeat(gap - left);
  }
  return text + " ".repeat(gap);
}

function rule(width: number, align: Align): string {
  if (align === "r") return "-".repeat(width - 1) + ":";
  if (align === "c") return ":" + "-".repeat(width - 2) + ":";
  return ":" + "-".repeat(width - 1);
}

/**
 * A GitHub-flavoured markdown table, padded so the source reads as a table.
 * `align` gives one entry per column (default: all left). Every row must have
 * as many cells as the header. Ends with a newline.
 */
export function markdownTable(
  header: string[],
  rows: (string | number)[][],
  align?: Align[],
): string {
  const n = header.length;
  if (n === 0) throw new Error("a table needs at least one column, got 0");
  const aligns = align ?? header.map((): Align => "l");
  if (aligns.length !== n) {
    throw new Error(
      `align must have one entry per column (${n}), got ${aligns.length}`,
    );
  }
  rows.forEach((row, i) => {
    if (row.length !== n) {
      throw new Error(
        `row ${i} must have ${n} cells like the header, got ${row.length}`,
      );
    }
  });
  const cells = [header, ...rows].map((row) => row.map(cellText));
  const widths = header.map((_, j) => Math.max(3, ...cells.map((row) => row[j].length)));
  const line = (row: string[]) => `| ${row.map((c, j) => pad(c, widths[j], aligns[j])).join(" | ")} |`;
  return [
    line(cells[0]),
    `| ${widths.map((w, j) => rule(w, aligns[j])).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ].join("\n") + "\n";
}

/** A fraction as a percentage: `fmtPct(0.971)` → `"97.1%"`. */
export function fmtPct(x: number, digits = 1): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : String(x);
}

/** A number with a fixed count of decimals: `fmtNum(0.3141, 2)` → `"0.31"`. */
export function fmtNum(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}
