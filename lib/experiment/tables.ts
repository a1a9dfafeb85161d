/**
 * The robustness tables (Madry et al., Tables 1 and 2) as experiments: an
 * experiment file gives its rows (with the paper's numbers) and presets; this
 * module loads the target and every source model from the zoo, runs the suite
 * and its checks ({@link evaluateRobustness}) and draws the table and chart.
 *
 * @module
 */
import type { tfl } from "../core/tf.ts";
import { type Check, evaluateRobustness, type SuiteRow, worstRows } from "../attacks/robustness.ts";
import type { AttackOutcome } from "../attacks/suite.ts";
import { accuracy } from "../attacks/suite.ts";
import { suiteFigure, suiteMarkdown, type SuiteReport } from "../report/suite_report.ts";
import type { TrainConfig } from "../train/train.ts";
import type { DatasetName, ModelName } from "../train/zoo.ts";
import { type BaseConfig, DATASETS, defineExperiment, type Experiment, type Results } from "./harness.ts";

/** The fields of a table experiment besides the zoo's recipe. */
export interface TableConfig extends BaseConfig {
  /** ε of every attack, pixel units. */
  eps: number;
  /** Step size of the iterative attacks, pixel units. */
  stepSize: number;
  /** Test examples evaluated (the first ones of the test set). */
  evalExamples: number;
  /** Examples per attack batch. */
  attackBatch: number;
  /** Examples of the checks that run attacks of their own (the ε curve, the natural model, gradients). */
  checkExamples: number;
  /** Folder of the saved adversarial examples ("": <cache-dir>/adv/<table>_<dataset>). */
  saveAdv: string;
}

/** What a table's `run` computes; the harness adds the header. */
export interface TableBody {
  target: ModelName;
  models: Record<string, { train: TrainConfig; hash: string; fromCache: boolean; trainSeconds: number }>;
  rows: (SuiteRow & { accuracy: number })[];
  worst: { name: string; accuracy: number }[];
  epsCurve: { eps: number; accuracy: number }[];
  checks: Check[];
  targetRule: string;
  /** Where the adversarial examples were saved (float32, one file per row). */
  saveDir: string;
  /** Per row, every example's outcome. */
  outcomes: AttackOutcome[];
}

/** What a table experiment file declares. */
export interface TableSpec<C extends TableConfig> {
  /** The task and file name, "table<N>" (the table's label, "Table N", comes from it). */
  name: string;
  summary: string;
  dataset: DatasetName;
  /** The rows for a config (ε and step size from it), with the paper's accuracy. */
  rows(config: C): SuiteRow[];
  /** Its own fields' quick defaults (the evaluation's come from {@link TABLE_DEFAULTS}). */
  defaults: Omit<C, keyof TableConfig> & Pick<C, "eps" | "stepSize">;
  /** Its presets, over {@link TABLE_PRESETS}. */
  presets: Record<string, Partial<C>>;
  help: Partial<Record<Exclude<keyof C, keyof BaseConfig>, string>>;
  /** Own fields that must be integers ≥ 1. */
  counts?: (keyof C & string)[];
}

/** Every table's evaluation fields, quick preset: the first 500 test images. */
export const TABLE_DEFAULTS = { evalExamples: 500, attackBatch: 100, checkExamples: 100, saveAdv: "" };

/** Every table's evaluation presets: `paper` (all 10,000 test images) and `smoke` (the tests'). */
export const TABLE_PRESETS: Record<string, Partial<TableConfig>> = {
  paper: { evalExamples: 10000 },
  smoke: { evalExamples: 6, attackBatch: 4, checkExamples: 4 },
};

const TARGET_RULE = "The targeted attack moves each example toward a wrong class drawn uniformly at random from " +
  "the other nine, seeded by the run's seed and the example's test index.";

/** A robustness table as an experiment of the harness. */
export function tableExperiment<C extends TableConfig>(t: TableSpec<C>): Experiment<C, TableBody> {
  const sources = (c: C) => [...new Set(["A", "A_nat", ...t.rows(c).map((r) => r.source)])] as ModelName[];
  return defineExperiment<C, TableBody>({
    name: t.name,
    summary: t.summary,
    models: sources,
    datasets: {
      [t.dataset]: {
        defaults: { ...TABLE_DEFAULTS, ...t.defaults },
        presets: Object.fromEntries(
          [...new Set([...Object.keys(TABLE_PRESETS), ...Object.keys(t.presets)])].map((p) => [
            p,
            { ...TABLE_PRESETS[p], ...t.presets[p] },
          ]),
        ),
      },
    },
    help: {
      eps: "L∞ radius ε of every attack in pixel units",
      stepSize: "step size of the iterative attacks",
      evalExamples: "test examples evaluated (the first ones)",
      attackBatch: "examples per attack batch",
      checkExamples: "examples of the checks' own attacks",
      saveAdv: "folder of the saved adversarial examples (default <cache-dir>/adv/<name>)",
      ...t.help,
    } as Experiment<C, TableBody>["help"],
    counts: ["evalExamples", "attackBatch", "checkExamples", ...(t.counts ?? [])] as (keyof C & string)[],
    async run(config, ctx) {
      const test = await ctx.test();
      const models: Record<string, tfl.LayersModel> = {};
      const made: TableBody["models"] = {};
      for (const name of sources(config)) {
        const m = await ctx.model(name);
        models[name] = m.model;
        made[name] = { train: m.config, hash: m.hash, fromCache: m.fromCache, trainSeconds: m.trainSeconds };
      }
      const rows = t.rows(config);
      const n = Math.min(config.evalExamples, test.n);
      const saveDir = config.saveAdv || `${ctx.cacheDir}/adv/${t.name}_${config.dataset}`;
      const r = await evaluateRobustness({
        models,
        target: "A",
        natural: "A_nat",
        data: test,
        indices: Array.from({ length: n }, (_, i) => i),
        rows,
        eps: config.eps,
        seed: config.seed,
        batch: config.attackBatch,
        checkExamples: Math.min(config.checkExamples, n),
        saveDir,
        log: ctx.log,
      });
      for (const m of Object.values(models)) m.dispose();
      return {
        target: "A",
        models: made,
        rows: rows.map((row, k) => ({ ...row, accuracy: accuracy(r.outcomes[k].correct) })),
        worst: worstRows(rows, r.outcomes),
        epsCurve: r.epsCurve,
        checks: r.checks,
        targetRule: TARGET_RULE,
        saveDir,
        outcomes: r.outcomes,
      };
    },
    figure: (results) => suiteFigure(report(t, results)),
    table: (results) => suiteMarkdown(report(t, results)),
  });
}

function report<C extends TableConfig>(t: TableSpec<C>, r: Results<C, TableBody>): SuiteReport {
  const n = r.outcomes[0]?.index.length ?? 0;
  const trained = Object.entries(r.models).map(([name, m]) =>
    `${name} ${m.fromCache ? "from the cache" : `trained in this run (${Math.round(m.trainSeconds)} s)`}`
  );
  return {
    title: `${t.name.replace(/^table(\d+)$/, "Table $1")} (${DATASETS[r.dataset].title})`,
    png: `${t.name}_${r.dataset}.png`,
    about:
      `Target: model A of the zoo's \`${r.preset}\` recipe. ε = ${r.config.eps}, step size ${r.config.stepSize}, ` +
      `the first ${n} test images. Models: ${trained.join(", ")}. Seed ${r.seed}, backend ${r.backend.name}, ` +
      `${Math.round(r.wall_seconds)} s. Adversarial examples saved as float32 in \`${r.saveDir}\`.`,
    rows: r.rows,
    worst: r.worst,
    checks: r.checks,
    targetRule: r.targetRule,
  };
}
