/**
 * Accuracy against ε of Figure 1's natural and adversarially trained models
 * under PGD, ε from 0 to twice the training ε: what every robustness claim
 * should come with, and the template to copy for a new experiment.
 *
 *   deno task eps_sweep                     # MNIST quick models (Figure 1's cache)
 *   deno task eps_sweep --dataset cifar10   # CIFAR-10
 *
 * @module
 */
import {
  type BaseConfig,
  check,
  DATASETS,
  defineExperiment,
  evaluate,
  experimentMain,
  fmtPct,
  markdownTable,
  MODEL_COLORS,
  MODEL_PAIR,
  type ModelName,
  type Results as ResultsOf,
  type RunContext,
  runMain,
  type VegaLiteSpec,
} from "../mod.ts";

/** Every hyperparameter: the zoo's recipe of the models (BaseConfig), and the sweep's own fields. */
export interface Config extends BaseConfig {
  maxFactor: number; // largest ε, as a multiple of the training ε
  points: number; // points of the sweep, ε = 0 included
  steps: number; // PGD iterations; the step size is 2.5 ε / steps (Madry et al.'s rule)
  evalExamples: number; // test examples
}

/** What `run` computes; the harness adds the header (config, seed, backend, versions, time, command line). */
export interface Body {
  rows: { model: "natural" | "adversarial"; eps: number; accuracy: number }[];
}
/** The results file, `eps_sweep_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

const SMOKE = { points: 3, steps: 2, evalExamples: 20 }; // the tests' preset
/** The experiment: per dataset, its own defaults and presets (the harness adds the zoo's recipe of each). */
export const experiment = defineExperiment<Config, Body>({
  name: "eps_sweep",
  summary: "accuracy of Figure 1's models under PGD against ε, from 0 to twice the training ε",
  models: () => Object.values(MODEL_PAIR),
  run,
  figure,
  table,
  datasets: {
    mnist: { defaults: { maxFactor: 2, points: 7, steps: 40, evalExamples: 500 }, presets: { smoke: SMOKE } },
    cifar10: { defaults: { maxFactor: 2, points: 5, steps: 10, evalExamples: 200 }, presets: { smoke: SMOKE } },
  },
  help: { maxFactor: "max ε ÷ train ε", points: "ε values, 0 too", steps: "PGD steps", evalExamples: "test images" },
  counts: ["points", "steps", "evalExamples"],
  validate: (c) =>
    check(c.points >= 2 && c.maxFactor > 0, `need --points ≥ 2 and --max-factor > 0, got ${c.points}, ${c.maxFactor}`),
});

/** The experiment's computation: models from the zoo (cached, else trained), then PGD at each ε. */
async function run(config: Config, ctx: RunContext): Promise<Body> {
  const test = await ctx.test();
  const rows: Body["rows"] = [];
  for (const [kind, name] of Object.entries(MODEL_PAIR) as [keyof typeof MODEL_PAIR, ModelName][]) {
    const { model } = await ctx.model(name);
    for (let i = 0; i < config.points; i++) {
      const eps = config.trainEps * config.maxFactor * i / (config.points - 1);
      const attack = eps > 0 ? { eps, steps: config.steps, stepSize: 2.5 * eps / config.steps, seed: config.seed } : 0;
      const acc = await evaluate(model, test, { limit: config.evalExamples, attack: attack || undefined });
      rows.push({ model: kind, eps, accuracy: attack ? acc.adversarial! : acc.natural });
      ctx.log(`${kind}: ε ${eps.toPrecision(3)} → ${fmtPct(rows.at(-1)!.accuracy)}`);
    }
    model.dispose();
  }
  return { rows };
}

/** Accuracy against ε, one line per model. */
export function figure(r: Results): VegaLiteSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `PGD-${r.config.steps} accuracy against ε, ${DATASETS[r.dataset].title}, trained at ε ${r.config.trainEps}`,
    data: { values: r.rows },
    width: 360,
    height: 220,
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "eps", type: "quantitative", title: "ε (pixel units)" },
      y: { field: "accuracy", type: "quantitative", axis: { format: "%" }, scale: { domain: [0, 1] } },
      color: {
        field: "model",
        type: "nominal",
        scale: { domain: ["natural", "adversarial"], range: [MODEL_COLORS.natural, MODEL_COLORS.adversarial] },
        legend: { title: "training", orient: "top" },
      },
    },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** The same numbers as a table, one row per ε. */
export function table(r: Results): string {
  const epsValues = [...new Set(r.rows.map((x) => x.eps))];
  const at = (m: string, eps: number) => r.rows.find((x) => x.model === m && x.eps === eps)!.accuracy;
  return [
    `# Accuracy against ε (${DATASETS[r.dataset].title})\n\n![accuracy against ε](eps_sweep_${r.dataset}.png)\n`,
    markdownTable(
      ["ε", "naturally trained", "adversarially trained"],
      epsValues.map((e) => [e.toPrecision(3), fmtPct(at("natural", e)), fmtPct(at("adversarial", e))]),
    ),
    "",
  ].join("\n");
}

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
