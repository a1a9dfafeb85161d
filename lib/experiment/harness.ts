/**
 * What every experiment script shares after its own `run`, `figure` and
 * `table`: writing the results JSON and the figure files drawn from it,
 * redrawing from a saved results file, and the command-line entry point.
 *
 * @module
 */
import { type CommonFlags, ensureWritable, type ExperimentSpec, parseExperimentArgs } from "./cli.ts";
import { useBackend } from "../backends/select.ts";
import { UserError } from "../core/errors.ts";
import { isTrained, modelDir, type TrainConfig } from "../train/train.ts";
import { type VegaLiteSpec, writeFigure, writeJsonAtomic } from "../report/vega.ts";

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

/** The value of `--dataset` in `args` (`--dataset x` or `--dataset=x`): undefined when absent, "" when it has none. */
export function datasetFlag(args: string[]): string | undefined {
  const i = args.findIndex((a) => a === "--dataset" || a.startsWith("--dataset="));
  if (i < 0) return undefined;
  return args[i].includes("=") ? args[i].slice(args[i].indexOf("=") + 1) : args[i + 1] ?? "";
}

/** What {@link chooseDatasets} needs to know of an experiment that runs on MNIST and CIFAR-10. */
export interface Datasets<C extends object> {
  /** The command line for `args`: its `--dataset` picks that dataset's defaults and presets. */
  specFor(args: string[]): ExperimentSpec<C>;
  /** The trained models a run of `config` reads (from the cache, else it trains them). */
  models(config: C): TrainConfig[];
  /** The command that trains the CIFAR-10 models, named in the explanation when they are missing. */
  trainedBy: string;
}

/**
 * Which datasets a command line runs, and why, in one line. With `--dataset`
 * (or `--help`) just that one. Without it MNIST, and CIFAR-10 as well when
 * every model the CIFAR-10 run of the same flags reads is already trained in
 * the cache, so that no `--dataset` never starts hours of CIFAR-10 training.
 * Flags that do not fit CIFAR-10 (an ε of 0.3) and `--retrain` keep it to MNIST.
 */
export async function chooseDatasets<C extends object>(
  args: string[],
  d: Datasets<C>,
): Promise<{ datasets: ("mnist" | "cifar10")[]; why: string }> {
  const named = datasetFlag(args);
  if (named !== undefined || args.includes("--help")) {
    return { datasets: [named === "cifar10" ? "cifar10" : "mnist"], why: `--dataset ${named ?? "mnist"}` };
  }
  const head = "no --dataset given: running mnist";
  const cifarArgs = [...args, "--dataset", "cifar10"];
  let parsed;
  try {
    parsed = parseExperimentArgs(cifarArgs, d.specFor(cifarArgs));
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return { datasets: ["mnist"], why: `${head} only; these flags do not fit cifar10 (${e.message})` };
  }
  if ("help" in parsed) return { datasets: ["mnist"], why: head };
  const { config, common } = parsed;
  if (common.retrain) {
    return {
      datasets: ["mnist"],
      why:
        `${head} only; --retrain retrains only a dataset it is given, name --dataset cifar10 to retrain those models`,
    };
  }
  const models = d.models(config);
  const dirs = await Promise.all(models.map((c) => modelDir(c, common.cacheDir)));
  const missing: string[] = [];
  for (const [i, c] of models.entries()) if (!(await isTrained(c, common.cacheDir))) missing.push(dirs[i]);
  const what = `the cifar10 models of preset ${common.preset}${args.length ? " with these flags" : ""}`;
  if (missing.length) {
    return {
      datasets: ["mnist"],
      why: `${head} only; cifar10 is skipped because ${what} are not trained in the cache (missing ` +
        `${missing.join(", ")}): train them with ${d.trainedBy}, or name --dataset cifar10 to train them here`,
    };
  }
  return { datasets: ["mnist", "cifar10"], why: `${head} and cifar10, since ${what} are cached (${dirs.join(", ")})` };
}

/**
 * The command line of an experiment on MNIST and CIFAR-10: `--dataset` runs
 * that one; without it {@link chooseDatasets} decides, prints which datasets run
 * and why, and each runs in turn as if named.
 */
export async function datasetsMain<C extends object, R extends { dataset: string }>(
  args: string[],
  d: Datasets<C>,
  run: (config: C, common: CommonFlags) => Promise<R>,
  drawing: Drawing<R>,
): Promise<void> {
  if (datasetFlag(args) !== undefined || args.includes("--help")) {
    return await experimentMain(args, d.specFor(args), run, drawing);
  }
  const { datasets, why } = await chooseDatasets(args, d);
  console.log(`${d.specFor(args).name}: ${why}`);
  for (const dataset of datasets) {
    const withDataset = [...args, "--dataset", dataset];
    await experimentMain(withDataset, d.specFor(withDataset), run, drawing);
  }
}
