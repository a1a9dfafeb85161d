/**
 * What every experiment script shares after its own `run`, `figure` and
 * `table`: writing the results JSON and the figure files drawn from it,
 * redrawing from a saved results file, and the command-line entry point.
 *
 * @module
 */
import { type CommonFlags, ensureWritable, type ExperimentSpec, parseExperimentArgs } from "./cli.ts";
import { useBackend } from "./backend.ts";
import { type VegaLiteSpec, writeFigure, writeJsonAtomic } from "./vega.ts";

/** How an experiment draws its results: the file prefix and two pure functions. */
export interface Drawing<R> {
  /** File prefix, e.g. "figure1"; files are `<prefix>_<dataset>.*`. */
  prefix: string;
  /** The Vega-Lite spec of the figure. */
  figure(results: R): VegaLiteSpec;
  /** The markdown table or summary. */
  table(results: R): string;
}

/** Writes `<out>/<prefix>_<dataset>.results.json` and, from it, the spec, SVG, PNG and markdown. */
export async function writeResults<R extends { dataset: string }>(
  drawing: Drawing<R>,
  results: R,
  out: string,
): Promise<string[]> {
  await Deno.mkdir(out, { recursive: true });
  const name = `${drawing.prefix}_${results.dataset}`;
  await writeJsonAtomic(`${out}/${name}.results.json`, results);
  return [
    `${out}/${name}.results.json`,
    ...await writeFigure(out, name, drawing.figure(results), drawing.table(results)),
  ];
}

/** Redraws the figure files from a saved results file, without recomputing. */
export async function redrawResults<R extends { dataset: string }>(
  drawing: Drawing<R>,
  resultsPath: string,
  out: string,
): Promise<string[]> {
  const results = JSON.parse(await Deno.readTextFile(resultsPath)) as R;
  const name = `${drawing.prefix}_${results.dataset}`;
  return await writeFigure(out, name, drawing.figure(results), drawing.table(results));
}

/**
 * The command line of an experiment: parse the flags strictly (or print
 * `--help`), check the output and cache folders are writable before any work,
 * choose the backend, run, and write the results and figures.
 */
export async function experimentMain<C extends object, R extends { dataset: string }>(
  args: string[],
  spec: ExperimentSpec<C>,
  run: (config: C, common: CommonFlags) => Promise<R>,
  drawing: Drawing<R>,
): Promise<void> {
  const parsed = parseExperimentArgs(args, spec);
  if ("help" in parsed) {
    console.log(parsed.help);
    return;
  }
  const { config, common } = parsed;
  await ensureWritable(common.out, "--out");
  await ensureWritable(common.cacheDir, "--cache-dir");
  await useBackend(common.backend, { quiet: common.quiet });
  const results = await run(config, common);
  for (const p of await writeResults(drawing, results, common.out)) console.log(`wrote ${p}`);
}
