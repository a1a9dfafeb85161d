/**
 * Figure 3 of Madry et al. (section 4, "Network capacity and adversarial
 * robustness"): networks of growing capacity, each trained naturally, with
 * FGSM and with PGD, then evaluated on natural, FGSM and PGD test examples;
 * and the final training loss against the training adversary (the value of
 * the saddle point problem) against capacity.
 *
 *   deno task figure3                      # MNIST: scales 1–16 (conv 2s, conv 4s, FC 8s), ε 0.1
 *   deno task figure3 --dataset cifar10    # CIFAR-10: ResNet width factors 1 and 2 (paper: 1 and 10), ε 8
 *   deno task figure3 --shard 0/4          # a quarter of the cells (a Slurm array sets it by itself); then --merge
 *
 * Every (capacity, training) cell is a unit: its model is cached, its numbers
 * are kept, a rerun or a resumed sweep redoes neither.
 *
 * @module
 */
import {
  type BaseConfig,
  capacityConfig,
  check,
  DATASETS,
  defineExperiment,
  evaluate,
  experimentMain,
  fmtNum,
  fmtPct,
  markdownTable,
  netText,
  type Results as ResultsOf,
  type RunContext,
  runMain,
  type Unit,
  type VegaLiteSpec,
} from "../mod.ts";

/** Every hyperparameter: the zoo's recipe (its training fields train every cell) and the figure's own. */
export interface Config extends BaseConfig {
  /** Capacities, comma-separated: MNIST scales (conv 2s, conv 4s, FC fcBase·s), CIFAR-10 ResNet width factors. */
  scales: string;
  /** MNIST: units of the FC layer at scale 1 (8 in this version of the paper, 64 in the conference one). */
  fcBase: number;
  /** ε of the evaluation's FGSM and PGD, pixel units (the training adversary's is trainEps). */
  eps: number;
  /** PGD iterations of the evaluation (from a random start). */
  evalSteps: number;
  /** PGD step size of the evaluation, pixel units. */
  evalStepSize: number;
  /** Test examples evaluated (the first ones). */
  evalExamples: number;
}

/** The three ways every capacity is trained, and the three ways it is evaluated. */
export const METHODS = ["natural", "fgsm", "pgd"] as const;
type Method = typeof METHODS[number];

/** One cell: a capacity trained one way, its accuracies and its final training loss. */
export interface Cell {
  scale: number;
  training: Method;
  /** The net in words and its parameter count. */
  net: string;
  params: number;
  /** Hash of its training config (names its cache folder). */
  hash: string;
  /** Accuracy on natural, FGSM and PGD test examples. */
  natural: number;
  fgsm: number;
  pgd: number;
  /** Mean training loss over the last tenth of training, on the training adversary's examples (clean for natural). */
  trainLoss: number;
}

/** What `run` computes; the harness adds the header (config, seed, backend, versions, time, command line). */
export interface Body {
  cells: Cell[];
  observations: Observation[];
}
/** The results file, `figure3_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

/** One of the paper's observations, measured: holding or not, with the numbers. */
export interface Observation {
  claim: string;
  holds: boolean | null;
  measured: string;
}

/** The capacities of a config, in order. */
export function scalesOf(c: Config): number[] {
  return c.scales.split(",").map((s) => Number(s.trim()));
}

const SMOKE = { scales: "1,2", evalExamples: 8, evalSteps: 2 };

/** The experiment: MNIST as the paper's text, CIFAR-10 with width factors the quick preset can train here. */
export const experiment = defineExperiment<Config, Body>({
  name: "figure3",
  summary: "capacity × training adversary × evaluation adversary: accuracy and the saddle point value",
  units: "one per capacity and training method (natural, FGSM, PGD): its model and its accuracies",
  datasets: {
    mnist: {
      // ε 0.1 as the paper's capacity study; PGD training 4 steps of 0.04 from a random start; 1,000 steps each.
      defaults: {
        scales: "1,2,4,8,16",
        fcBase: 8,
        eps: 0.1,
        evalSteps: 40,
        evalStepSize: 0.01,
        evalExamples: 1000,
        trainEps: 0.1,
        trainAttackStepSize: 0.04,
        trainEpsRamp: 0,
        naturalSteps: 1000,
        advSteps: 1000,
      } as Omit<Config, keyof BaseConfig>,
      // The defaults above set recipe fields too, so each preset sets its recipe's again (the paper's: 100,000
      // steps of 40-step PGD of 0.01).
      presets: {
        paper: { trainAttackStepSize: 0.01, naturalSteps: 100000, advSteps: 100000, evalExamples: 10000 },
        smoke: { ...SMOKE, naturalSteps: 4, advSteps: 4 },
      },
    },
    cifar10: {
      // Width factors 1 (the simple ResNet) and 2 here; 400 steps each, PGD training 3 steps of 3 from a random start.
      defaults: {
        scales: "1,2",
        fcBase: 8,
        eps: 8,
        evalSteps: 7,
        evalStepSize: 2,
        evalExamples: 500,
        naturalSteps: 400,
        advSteps: 400,
        trainAttackSteps: 3,
        trainAttackStepSize: 3,
      } as Omit<Config, keyof BaseConfig>,
      presets: {
        paper: {
          scales: "1,10",
          evalSteps: 20,
          evalExamples: 10000,
          naturalSteps: 80000,
          advSteps: 80000,
          trainAttackSteps: 7,
          trainAttackStepSize: 2,
        },
        smoke: { ...SMOKE, naturalSteps: 2, advSteps: 2, trainAttackSteps: 1 },
      },
    },
  },
  help: {
    scales: "capacities, comma-separated (MNIST scale s: conv 2s, conv 4s, FC fc-base·s; CIFAR-10 width factor)",
    fcBase: "MNIST FC units at scale 1 (8; the conference version's 64)",
    eps: "ε of the evaluation's FGSM and PGD",
    evalSteps: "PGD iterations of the evaluation",
    evalStepSize: "PGD step size of the evaluation",
    evalExamples: "test images evaluated",
  },
  counts: ["fcBase", "evalSteps", "evalExamples"],
  validate: (c) => {
    const s = scalesOf(c);
    check(
      s.length >= 2 && s.every((v) => Number.isInteger(v) && v >= 1) && s.every((v, i) => i === 0 || v > s[i - 1]),
      `--scales must be at least two rising whole numbers ≥ 1, comma-separated, got "${c.scales}"`,
    );
  },
  run,
  figure,
  table,
});

/** Every cell as a unit: train (or read from the cache), evaluate, keep the numbers. */
async function run(c: Config, ctx: RunContext): Promise<Body> {
  const units: Unit<Cell>[] = scalesOf(c).flatMap((scale) =>
    METHODS.map((training) => ({ key: `scale-${scale}-${training}`, run: () => cell(c, ctx, scale, training) }))
  );
  const done = await ctx.units(units);
  const cells = units.flatMap((u) => done.has(u.key) ? [done.get(u.key)!] : []);
  return { cells, observations: observe(cells) };
}

async function cell(c: Config, ctx: RunContext, scale: number, training: Method): Promise<Cell> {
  const config = capacityConfig(c.dataset, c, scale, training, c.fcBase);
  const t = await ctx.modelOf(config, `scale ${scale} ${training}`);
  const test = await ctx.test();
  const limit = c.evalExamples;
  const fgsm = await evaluate(t.model, test, {
    limit,
    attack: { eps: c.eps, steps: 1, stepSize: c.eps, randomStart: false },
  });
  const pgd = await evaluate(t.model, test, {
    limit,
    attack: { eps: c.eps, steps: c.evalSteps, stepSize: c.evalStepSize, randomStart: true, seed: c.seed },
  });
  const loss = t.history.loss;
  const tail = loss.slice(Math.floor(loss.length * 0.9));
  const result: Cell = {
    scale,
    training,
    net: netText(config),
    params: t.model.countParams(),
    hash: t.hash,
    natural: fgsm.natural,
    fgsm: fgsm.adversarial!,
    pgd: pgd.adversarial!,
    trainLoss: tail.reduce((a, b) => a + b, 0) / Math.max(1, tail.length),
  };
  t.model.dispose();
  ctx.log(
    `scale ${scale} ${training}: natural ${fmtPct(result.natural)}, FGSM ${fmtPct(result.fgsm)}, ` +
      `PGD ${fmtPct(result.pgd)}, training loss ${fmtNum(result.trainLoss, 3)}`,
  );
  return result;
}

/** The paper's observations of section 4, measured on the cells (null where a cell they need is missing). */
export function observe(cells: Cell[]): Observation[] {
  const scales = [...new Set(cells.map((x) => x.scale))].sort((a, b) => a - b);
  const at = (training: Method, scale: number | undefined) =>
    cells.find((x) => x.training === training && x.scale === scale);
  const small = scales[0], large = scales.at(-1);
  const both = (training: Method) => {
    const a = at(training, small), b = at(training, large);
    return a && b && small !== large ? [a, b] as const : undefined;
  };
  const observation = (claim: string, test: () => [boolean, string] | undefined): Observation => {
    const r = test();
    return r ? { claim, holds: r[0], measured: r[1] } : { claim, holds: null, measured: "cells missing" };
  };
  const pair = (what: string, a: number, b: number, f = fmtPct) =>
    `${what} ${f(a)} at capacity ${small} → ${f(b)} at ${large}`;
  return [
    observation("Capacity alone helps: natural training gains FGSM accuracy with capacity", () => {
      const p = both("natural");
      return p && [p[1].fgsm > p[0].fgsm, pair("FGSM accuracy", p[0].fgsm, p[1].fgsm)];
    }),
    observation(
      "FGSM training at small capacity leaks labels (FGSM accuracy above natural) and gives no PGD robustness",
      () => {
        const f = at("fgsm", small), p = at("pgd", small);
        if (!f || !p) return undefined;
        const leaks = cells.filter((x) => x.training === "fgsm" && x.fgsm > x.natural).map((x) => x.scale);
        return [
          f.fgsm > f.natural && f.pgd <= p.pgd,
          `capacity ${small}: FGSM ${fmtPct(f.fgsm)} vs natural ${fmtPct(f.natural)}, PGD ${fmtPct(f.pgd)} ` +
          `(PGD training ${fmtPct(p.pgd)}); label leaking at capacities ${leaks.join(", ") || "none"}`,
        ];
      },
    ),
    observation(
      "Weak models fail to converge under PGD training (natural accuracy far below natural training's)",
      () => {
        const p = at("pgd", small), n = at("natural", small);
        return p && n && [
          n.natural - p.natural >= 0.1,
          `capacity ${small}: natural accuracy ${fmtPct(p.natural)} with PGD training vs ${fmtPct(n.natural)} with ` +
          "natural training (holds at a gap of 10 points or more)",
        ];
      },
    ),
    observation("The value of the saddle point problem falls as capacity grows (PGD training loss)", () => {
      const p = both("pgd");
      return p &&
        [
          p[1].trainLoss < p[0].trainLoss,
          pair("final PGD training loss", p[0].trainLoss, p[1].trainLoss, (v) => fmtNum(v, 3)),
        ];
    }),
    observation("PGD-trained robust accuracy rises with capacity", () => {
      const p = both("pgd");
      return p && [p[1].pgd > p[0].pgd, pair("PGD accuracy of PGD training", p[0].pgd, p[1].pgd)];
    }),
  ];
}

const TRAINING_LABEL: Record<Method, string> = {
  natural: "natural training",
  fgsm: "FGSM training",
  pgd: "PGD training",
};
const EVAL_COLORS = { natural: "#1f77b4", FGSM: "#ff7f0e", PGD: "#d62728" };

/** The capacity axis's title. */
function capacityTitle(r: Results): string {
  return r.dataset === "mnist"
    ? `capacity scale (conv ${"2s"}, conv 4s, FC ${r.config.fcBase}s)`
    : "ResNet width factor s (filters 16, 16s, 32s, 64s)";
}

/** Four panels: accuracy against capacity for each training method, and the final training loss. */
export function figure(r: Results): VegaLiteSpec {
  const scales = scalesOf(r.config);
  const x = {
    field: "scale",
    type: "quantitative",
    scale: { type: "log", base: 2, domain: [scales[0], scales[scales.length - 1]] },
    title: capacityTitle(r),
  };
  const accuracy = r.cells.flatMap((c) =>
    (["natural", "FGSM", "PGD"] as const).map((e) => ({
      training: TRAINING_LABEL[c.training],
      scale: c.scale,
      evaluation: e,
      accuracy: e === "natural" ? c.natural : e === "FGSM" ? c.fgsm : c.pgd,
    }))
  );
  const panel = (training: Method) => ({
    title: TRAINING_LABEL[training],
    width: 200,
    height: 180,
    transform: [{ filter: { field: "training", equal: TRAINING_LABEL[training] } }],
    mark: { type: "line", point: true },
    encoding: {
      x: { ...x, axis: { values: scalesOf(r.config) } },
      y: { field: "accuracy", type: "quantitative", axis: { format: "%" }, scale: { domain: [0, 1] } },
      color: {
        field: "evaluation",
        type: "nominal",
        scale: { domain: Object.keys(EVAL_COLORS), range: Object.values(EVAL_COLORS) },
        legend: { title: "test examples", orient: "bottom" },
      },
    },
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `Capacity and adversarial robustness, ${DATASETS[r.dataset].title}, ε ${r.config.eps}`,
      offset: 18,
      subtitle: `accuracy on the first ${r.config.evalExamples} test images; PGD ${r.config.evalSteps} steps of ` +
        `${r.config.evalStepSize} from a random start; preset ${r.preset}`,
    },
    hconcat: [
      { data: { values: accuracy }, hconcat: METHODS.map(panel) },
      {
        title: "final training loss",
        width: 200,
        height: 180,
        data: { values: r.cells.map((c) => ({ ...c, training: TRAINING_LABEL[c.training] })) },
        mark: { type: "line", point: true },
        encoding: {
          x: { ...x, axis: { values: scalesOf(r.config) } },
          y: { field: "trainLoss", type: "quantitative", title: "training loss" },
          color: {
            field: "training",
            type: "nominal",
            scale: { domain: Object.values(TRAINING_LABEL), range: ["#7f7f7f", "#9467bd", "#2ca02c"] },
            legend: { title: "training", orient: "bottom" },
          },
        },
      },
    ],
    resolve: { scale: { color: "independent" } },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** Every cell, then the paper's observations, holding or not. */
export function table(r: Results): string {
  const scaleNote = r.dataset === "cifar10" && !scalesOf(r.config).includes(10)
    ? " Width factors here are intermediate ones the quick preset can train on two cores; the paper compares 1 " +
      "(simple) with 10 (wide)."
    : "";
  return [
    `# Figure 3: capacity and adversarial robustness (${DATASETS[r.dataset].title})`,
    "",
    `![Figure 3](figure3_${r.dataset}.png)`,
    "",
    `ε ${r.config.eps}; training adversaries: FGSM (one step of ε ${r.config.trainEps}), PGD ` +
    `${r.config.trainAttackSteps} steps of ${r.config.trainAttackStepSize} from a random start; ` +
    `${r.config.advSteps} training steps (natural: ${r.config.naturalSteps}). Evaluation on the first ` +
    `${r.config.evalExamples} test images: FGSM, and PGD ${r.config.evalSteps} steps of ${r.config.evalStepSize} from ` +
    `a random start. Training loss: mean over the last tenth of training, on the training adversary's examples.` +
    scaleNote,
    "",
    markdownTable(
      ["capacity", "net", "parameters", "training", "natural", "FGSM", "PGD", "training loss"],
      r.cells.map((c) => [
        c.scale,
        c.net,
        c.params,
        TRAINING_LABEL[c.training],
        fmtPct(c.natural),
        fmtPct(c.fgsm),
        fmtPct(c.pgd),
        fmtNum(c.trainLoss, 3),
      ]),
      ["r", "l", "r", "l", "r", "r", "r", "r"],
    ),
    "",
    ...collapsed(r),
    "## The paper's observations (section 4), measured",
    "",
    markdownTable(
      ["claim", "holds", "measured"],
      r.observations.map((o) => [o.claim, o.holds === null ? "–" : o.holds ? "yes" : "**no**", o.measured]),
      ["l", "l", "l"],
    ),
    "",
  ].join("\n");
}

/** A line naming the cells whose training did not get off the ground (loss at that of a uniform guess, ln 10). */
function collapsed(r: Results): string[] {
  const flat = r.cells.filter((c) => c.trainLoss > 0.99 * Math.log(10));
  if (!flat.length) return [];
  return [
    `Did not train (final training loss within 1% of ln 10 = 2.303, a uniform guess; the net then answers one ` +
    `class for every image): ${flat.map((c) => `capacity ${c.scale} ${TRAINING_LABEL[c.training]}`).join(", ")}.`,
    "",
  ];
}

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
