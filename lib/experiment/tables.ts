/**
 * The robustness tables (Madry et al., Tables 1 and 2) as experiments: an
 * experiment file gives its rows (with the paper's numbers) and presets; this
 * module loads the target and every source model from the zoo, runs the suite
 * and its checks as units (`attackSlice` per row and batch, `modelChecks`), and draws the table and chart.
 *
 * @module
 */
import type { tfl } from "../core/tf.ts";
import { configHash } from "../core/hash.ts";
import {
  advName,
  attackSlice,
  type Check,
  modelChecks,
  outcomeChecks,
  type RobustnessResult,
  savedCheck,
  type SlicePart,
  type SuiteRow,
  worstRows,
} from "../attacks/robustness.ts";
import { accuracy, type AttackOutcome, mergeOutcomes } from "../attacks/suite.ts";
import { suiteFigure, suiteMarkdown, type SuiteReport } from "../report/suite_report.ts";
import type { TrainConfig, TrainedModel } from "../train/train.ts";
import { type DatasetName, type ModelName, recipeOf, zooConfig } from "../train/zoo.ts";
import type { Unit } from "./units.ts";
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
  /** Folder of the saved adversarial examples ("": <cache-dir>/adv/<table>_<dataset>), one folder per row. */
  saveAdv: string;
  /** Beyond the paper: iterations of APGD-CE and of APGD-T per target class (100, as AutoAttack). */
  apgdSteps: number;
  /** Beyond the paper: Square's queries per example (5,000, as AutoAttack). */
  squareQueries: number;
}

/** What a table's `run` computes; the harness adds the header. */
export interface TableBody {
  target: ModelName;
  /** Every model read, by zoo name: its training config and the hash naming its cache folder. */
  models: Record<string, { train: TrainConfig; hash: string }>;
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
export const TABLE_DEFAULTS = {
  evalExamples: 500,
  attackBatch: 100,
  checkExamples: 100,
  saveAdv: "",
  apgdSteps: 100,
  squareQueries: 5000,
};

/** Every table's evaluation presets: `paper` (all 10,000 test images) and `smoke` (the tests'). */
export const TABLE_PRESETS: Record<string, Partial<TableConfig>> = {
  paper: { evalExamples: 10000 },
  smoke: { evalExamples: 6, attackBatch: 4, checkExamples: 4, apgdSteps: 3, squareQueries: 20 },
};

/**
 * The rows every table adds beyond the paper: the attacks of AutoAttack
 * (Croce and Hein 2020) without FAB-T, white-box on the target: APGD-CE,
 * APGD-T (9 target classes) and Square (score-based, forward passes only);
 * and, where the paper's rows lack it, PGD with as many steps as APGD and one
 * restart, which APGD-CE is checked against.
 */
export function beyondRows(c: TableConfig, paperRows: SuiteRow[]): SuiteRow[] {
  const row = (method: SuiteRow["method"], steps: number, stepSize = 2 * c.eps): SuiteRow => ({
    name: `${method} ${steps} A`,
    method,
    eps: c.eps,
    steps,
    stepSize,
    restarts: 1,
    source: "A",
    group: "beyond the paper",
  });
  const hasPgd = paperRows.some((r) =>
    r.method === "pgd" && r.source === "A" && r.steps === c.apgdSteps && r.restarts === 1
  );
  return [
    ...(hasPgd ? [] : [row("pgd", c.apgdSteps, c.stepSize)]),
    row("apgd-ce", c.apgdSteps),
    row("apgd-t", c.apgdSteps),
    row("square", c.squareQueries),
  ];
}

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
      apgdSteps: "APGD-CE iterations, and APGD-T's per target class (beyond the paper)",
      squareQueries: "Square's queries per example (beyond the paper)",
      saveAdv: "folder of the saved adversarial examples (default <cache-dir>/adv/<name>)",
      ...t.help,
    } as Experiment<C, TableBody>["help"],
    counts: ["evalExamples", "attackBatch", "checkExamples", "apgdSteps", "squareQueries", ...(t.counts ?? [])] as (
      keyof C & string
    )[],
    units: "one per row and batch of --attack-batch test examples, one for the checks that run models",
    async run(config, ctx) {
      const names = sources(config);
      const loaded = new Map<string, TrainedModel>();
      // Each model is read (or trained) once, on first use, one at a time: a merge reads none.
      const models = async () => {
        for (const name of names) if (!loaded.has(name)) loaded.set(name, await ctx.model(name));
        return Object.fromEntries(names.map((name) => [name, loaded.get(name)!.model])) as Record<
          string,
          tfl.LayersModel
        >;
      };
      const paperRows = t.rows(config);
      const rows = [...paperRows, ...beyondRows(config, paperRows)];
      const n = Math.min(config.evalExamples, ctx.testCount());
      const indices = Array.from({ length: n }, (_, i) => i);
      const saveDir = config.saveAdv || `${ctx.cacheDir}/adv/${t.name}_${config.dataset}`;
      const common = { target: "A", natural: "A_nat", rows, eps: config.eps, seed: config.seed, saveDir, log: ctx.log };
      const slices: number[][] = [];
      for (let s = 0; s < n; s += config.attackBatch) slices.push(indices.slice(s, s + config.attackBatch));
      // A unit per row and slice, named by the row (its hash too: a row that changes is redone, the others kept).
      const tags = await Promise.all(rows.map(async (row) => `${advName(row)}-${(await configHash(row)).slice(0, 6)}`));
      const key = (k: number, ix: number[]) => `${tags[k]}-${pad(ix[0])}-${pad(ix[ix.length - 1])}`;
      const units: Unit<unknown>[] = [
        {
          key: "checks",
          run: async () =>
            modelChecks({
              ...common,
              models: await models(),
              data: await ctx.test(),
              indices,
              checkExamples: Math.min(config.checkExamples, n),
            }),
        },
        ...slices.flatMap((ix) =>
          rows.map((row, k) => ({
            key: key(k, ix),
            run: async () =>
              attackSlice({
                ...common,
                rows: [row],
                models: await models(),
                data: await ctx.test(),
                indices: ix,
                batch: ix.length,
              }),
          }))
        ),
      ];
      const done = await ctx.units(units);
      for (const m of loaded.values()) m.model.dispose();
      // The examples of the slices that every row has done (all of them, unless a merge finds units missing).
      const complete = slices.filter((ix) => rows.every((_, k) => done.has(key(k, ix))));
      const parts = complete.flatMap((ix) => rows.map((_, k) => done.get(key(k, ix)) as SlicePart));
      const outcomes: AttackOutcome[] = rows.map((row, k) =>
        complete.length
          ? mergeOutcomes(complete.map((ix) => (done.get(key(k, ix)) as SlicePart).outcomes))[0]
          : { name: row.name, index: [], correct: [], loss: [] }
      );
      const own = done.get("checks") as Pick<RobustnessResult, "epsCurve" | "checks"> | undefined;
      const made: TableBody["models"] = {};
      for (const name of names) {
        const train = zooConfig(name, config.dataset, recipeOf(config));
        made[name] = { train, hash: await configHash(train) };
      }
      return {
        target: "A",
        models: made,
        rows: rows.map((row, k) => ({ ...row, accuracy: accuracy(outcomes[k].correct) })),
        worst: worstRows(rows, outcomes),
        epsCurve: own?.epsCurve ?? [],
        checks: [
          ...(own?.checks ?? [{
            name: "the checks that run models (accuracy against ε, the natural model, gradients, logits)",
            pass: false,
            detail: 'not run: the unit "checks" has no result yet',
          }]),
          ...outcomeChecks(rows, outcomes),
          savedCheck(parts, saveDir, DATASETS[config.dataset].range),
        ],
        targetRule: TARGET_RULE,
        saveDir,
        outcomes,
      };
    },
    figure: (results) => suiteFigure(report(t, results)),
    table: (results) => suiteMarkdown(report(t, results)),
  });
}

function report<C extends TableConfig>(t: TableSpec<C>, r: Results<C, TableBody>): SuiteReport {
  const n = r.outcomes[0]?.index.length ?? 0;
  const trained = Object.entries(r.models).map(([name, m]) => `${name} (${m.hash})`);
  const time = r.units && r.units.seconds > r.wall_seconds + 1
    ? `${Math.round(r.units.seconds)} s of units (this run ${Math.round(r.wall_seconds)} s)`
    : `${Math.round(r.wall_seconds)} s`;
  return {
    title: `${t.name.replace(/^table(\d+)$/, "Table $1")} (${DATASETS[r.dataset].title})`,
    png: `${t.name}_${r.dataset}.png`,
    about:
      `Target: model A of the zoo's \`${r.preset}\` recipe. ε = ${r.config.eps}, step size ${r.config.stepSize}, ` +
      `the first ${n} test images. Models: ${trained.join(", ")}. Seed ${r.seed}, backend ${r.backend.name}, ` +
      `${time}. Adversarial examples saved as float32 in \`${r.saveDir}\`, a folder per row.`,
    rows: r.rows,
    worst: r.worst,
    checks: r.checks,
    targetRule: r.targetRule,
    ...(r.rows.some((row) => row.group === "beyond the paper") ? { note: beyondNote(r.dataset) } : {}),
  };
}

/** What the rows beyond the paper are, and what they gave on the paper's own models. */
function beyondNote(dataset: DatasetName): string {
  const numbers = dataset === "mnist"
    ? "89.62% under PGD with 50 restarts, 88.50% under AutoAttack"
    : "47.04% under its PGD-20, 44.04% under AutoAttack";
  return "Beyond the paper: the attacks the field has reported robustness under since 2020, those of AutoAttack " +
    "(Croce and Hein 2020) without FAB-T, white-box on A: APGD-CE, APGD-T (the targeted DLR loss toward each of the 9 " +
    "classes next in the clean logits) and Square (score-based: it only queries A's logits), with their per-example " +
    `worst case. On the paper's own model (RobustBench): ${numbers}.`;
}

/** A test index with 5 digits, so that unit keys sort in test order. */
function pad(i: number): string {
  return String(i).padStart(5, "0");
}
