/**
 * Figure 2 of Madry et al.: the cross-entropy loss at every PGD iteration, for
 * 20 random restarts on one random test example, on the naturally and on the
 * adversarially trained model, MNIST (ε 0.3, 100 steps of 0.01) and CIFAR-10
 * (ε 8, 20 steps of 2, pixels in [0, 255]). The paper's observations are
 * measured: the loss rises quickly and plateaus after a few iterations, and the
 * final values of the restarts are close together (and far lower for the
 * adversarially trained model).
 *
 * The models are Figure 1's, the zoo's `A_nat` and `A` of the same recipe, so
 * the cached models are reused and never retrained (where none is cached they
 * are trained exactly as Figure 1 would).
 *
 *   deno task figure2                      # MNIST, and CIFAR-10 too where Figure 1's models are cached
 *   deno task figure2 --dataset cifar10    # CIFAR-10 only (Figure 1's CIFAR-10 quick models)
 *   deno task figure2 --preset paper       # Figure 1's paper models (model A; the wide ResNet)
 *   deno task figure2 --example 7          # test image #7 instead of a random one
 *
 * @module
 */
import {
  ATTACK_HELP,
  type AttackFields,
  type BaseConfig,
  CIFAR10_CLASSES,
  crossEntropy,
  DATASETS,
  defineExperiment,
  experimentMain,
  fmtNum,
  gather,
  logits,
  markdownTable,
  median,
  MODEL_COLORS,
  MODEL_PAIR,
  netText,
  pgd,
  ratio,
  type Results as ResultsOf,
  Rng,
  type RunContext,
  runMain,
  stats,
  tf,
  type TrainConfig,
  trainingText,
  UserError,
  type VegaLiteSpec,
} from "../mod.ts";

/** Seed of the attack's random starts; the same for both models, so restart r starts at the same point for both. */
export function attackSeed(c: Config): number {
  return c.seed * 1000 + 2;
}

/** Every hyperparameter: the zoo's recipe of Figure 1's models, the attack (its restarts on the one example). */
export interface Config extends BaseConfig, AttackFields {
  /** Test image attacked; -1 draws one from the seed (Figure 1's first example). */
  example: number;
}

/** What the attack did to one model. */
export interface ModelCurves {
  train: TrainConfig;
  hash: string;
  fromCache: boolean;
  trainSeconds: number;
  /** The model's class for the clean example. */
  cleanPrediction: number;
  /** Cross-entropy of the clean example. */
  cleanLoss: number;
  /** Restarts after which the model still classified the example correctly. */
  correctRestarts: number;
  /** The loss of restart r at iterate t (t = 0 is the random start, t = steps the final point): [restarts][steps+1]. */
  curves: number[][];
}

/** What `run` computes; the harness adds the header. */
export interface Body {
  /** Seed of the random starts passed to `pgd`. */
  attackSeed: number;
  /** The attacked test image. */
  example: { index: number; label: number };
  models: Record<"natural" | "adversarial", ModelCurves>;
}

/** The results file, `figure2_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

/** Figure 2 as an experiment of the harness. */
export const experiment = defineExperiment<Config, Body>({
  name: "figure2",
  summary: "cross-entropy loss at every PGD iteration, 20 random restarts on one example, natural vs adversarial model",
  models: () => [MODEL_PAIR.natural, MODEL_PAIR.adversarial],
  alsoCached: true,
  run,
  figure,
  table,
  datasets: {
    mnist: {
      // The paper's attack: it is cheap (2 × 100 steps on 20 copies).
      defaults: { eps: 0.3, steps: 100, stepSize: 0.01, restarts: 20, example: -1 },
      presets: { smoke: { steps: 3, restarts: 4 } },
    },
    cifar10: {
      // The paper's strongest CIFAR-10 attack, PGD 20 steps of 2 at ε 8.
      defaults: { eps: 8, steps: 20, stepSize: 2, restarts: 20, example: -1 },
      presets: { smoke: { steps: 2, restarts: 4 } },
    },
  },
  help: {
    ...ATTACK_HELP,
    example: "test image index, -1 for a random one",
  },
  counts: ["steps", "restarts"],
  validate(c) {
    if (c.restarts < 2) throw new UserError(`--restarts must be ≥ 2 to compare restarts, got ${c.restarts}`);
    if (!(c.stepSize > 0)) throw new UserError(`--step-size must be > 0, got ${c.stepSize}`);
    if (!Number.isInteger(c.example) || c.example < -1 || c.example >= 10000) {
      throw new UserError(`--example must be -1 (random) or a test index in 0..9999, got ${c.example}`);
    }
  },
});

/**
 * Loads Figure 1's models (training them only where none is cached; the
 * training data is loaded only then), then PGD with the loss recorded at every
 * iterate, from `restarts` random starts (one batch of copies of the example,
 * each row its own start).
 */
async function run(config: Config, ctx: RunContext): Promise<Body> {
  const test = await ctx.test();
  const index = config.example >= 0 ? config.example : new Rng(config.seed).sample(test.n, 1)[0];
  if (index >= test.n) throw new UserError(`--example ${index} is beyond the ${test.n} test images`);
  const { x, y } = gather(test, Array(config.restarts).fill(index));
  const models = {} as Body["models"];
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await ctx.model(MODEL_PAIR[kind]);
    const [predT, lossT] = tf.tidy(() => {
      const z = logits(t.model, x.slice(0, 1));
      return [z.argMax(-1), crossEntropy(z, y.slice(0, 1))];
    });
    const cleanPrediction = (await predT.data())[0];
    const cleanLoss = (await lossT.data())[0];
    tf.dispose([predT, lossT]);
    const res = await pgd(t.model, x, y, {
      eps: config.eps,
      steps: config.steps,
      stepSize: config.stepSize,
      range: test.range,
      restarts: 1,
      seed: attackSeed(config),
      recordLosses: true,
    });
    res.adv.dispose();
    const iterates = res.lossCurves![0];
    models[kind] = {
      train: t.config,
      hash: t.hash,
      fromCache: t.fromCache,
      trainSeconds: t.trainSeconds,
      cleanPrediction,
      cleanLoss,
      correctRestarts: res.correct[0].filter(Boolean).length,
      curves: Array.from({ length: config.restarts }, (_, r) => iterates.map((l) => l[r])),
    };
    t.model.dispose();
    ctx.log(`${kind} model: PGD ${config.restarts} × ${config.steps} steps done`);
  }
  x.dispose();
  y.dispose();
  return { attackSeed: attackSeed(config), example: { index, label: test.labels[index] }, models };
}

/**
 * The first iterate at which a curve has made `fraction` of its rise from the
 * start (iterate 0) to its final value; 0 when the loss did not rise.
 */
export function iterationsToFraction(curve: number[], fraction = 0.9): number {
  const first = curve[0], last = curve[curve.length - 1];
  if (!(last > first)) return 0;
  const target = first + fraction * (last - first);
  return curve.findIndex((v) => v >= target);
}

/** What the table reports of one model's curves. */
export function summarize(m: ModelCurves) {
  const finals = m.curves.map((c) => c[c.length - 1]);
  const starts = m.curves.map((c) => c[0]);
  const steps = m.curves[0].length - 1;
  const half = Math.floor(steps / 2);
  const to50 = m.curves.map((c) => iterationsToFraction(c, 0.5));
  const to90 = m.curves.map((c) => iterationsToFraction(c, 0.9));
  const riseLate = m.curves.map((c) => {
    const rise = c[steps] - c[0];
    return rise > 0 ? (c[steps] - c[half]) / rise : 0;
  });
  const f = stats(finals);
  return {
    start: stats(starts),
    final: f,
    /** Standard deviation of the final losses over their mean. */
    relSpread: f.std / Math.max(Math.abs(f.mean), 1e-12),
    /** Iterations to half of the rise: median and slowest restart. */
    to50: { median: median(to50), max: Math.max(...to50) },
    /** Iterations to 90% of the rise: median and slowest restart. */
    to90: { median: median(to90), max: Math.max(...to90) },
    /** Share of the rise made in the second half of the iterations, mean over restarts. */
    lateRise: stats(riseLate).mean,
    steps,
  };
}

/** Panel labels; an FGSM-trained model (CIFAR-10's quick preset) is named as such. */
function labels(results: Results): Record<"natural" | "adversarial", string> {
  const fgsm = results.models.adversarial.train.method === "fgsm";
  return {
    natural: "natural training",
    adversarial: `adversarial training${fgsm ? " (FGSM from a random start)" : ""}`,
  };
}

/** A class label in words: "7" on MNIST, "3 (cat)" on CIFAR-10. */
function classText(dataset: Results["dataset"], label: number): string {
  return dataset === "cifar10" ? `${label} (${CIFAR10_CLASSES[label] ?? "?"})` : `${label}`;
}

/** A label in a sentence: "label 7" on MNIST, "label 3, cat" on CIFAR-10. */
function labelText(dataset: Results["dataset"], label: number): string {
  return dataset === "cifar10" ? `label ${label}, ${CIFAR10_CLASSES[label] ?? "?"}` : `label ${label}`;
}

/** The Vega-Lite spec: one panel per model (independent loss axes), one line per restart. */
export function figure(results: Results): VegaLiteSpec {
  const LABELS = labels(results);
  const rows = (["natural", "adversarial"] as const).flatMap((kind) =>
    results.models[kind].curves.flatMap((curve, restart) =>
      curve.map((loss, iteration) => ({ model: LABELS[kind], restart, iteration, loss }))
    )
  );
  const c = results.config;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text:
        `Figure 2 (${
          DATASETS[results.dataset].title
        }): cross-entropy loss along PGD from ${c.restarts} random starts on ` +
        "one test example",
      subtitle: [
        `Test image #${results.example.index} (${labelText(results.dataset, results.example.label)}), ` +
        `ε = ${c.eps}, ${c.steps} PGD steps ` +
        `of ${c.stepSize}; each line is one restart (iteration 0: its random start).`,
        "Blue: naturally trained model, red: adversarially trained model; note the different loss axes.",
        "Paper: the loss rises quickly and plateaus after a few iterations; the restarts' final values are close",
        "together, and far lower for the adversarially trained model.",
      ],
      anchor: "start",
    },
    data: { values: rows },
    facet: {
      column: {
        field: "model",
        type: "nominal",
        sort: [LABELS.natural, LABELS.adversarial],
        title: null,
        header: { labelFontSize: 13 },
      },
    },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 330,
      height: 220,
      mark: { type: "line", opacity: 0.55, strokeWidth: 1.2 },
      encoding: {
        x: { field: "iteration", type: "quantitative", title: "PGD iteration", scale: { domain: [0, c.steps] } },
        y: { field: "loss", type: "quantitative", title: "cross-entropy loss", scale: { zero: true } },
        detail: { field: "restart", type: "nominal" },
        color: {
          field: "model",
          type: "nominal",
          scale: {
            domain: [LABELS.natural, LABELS.adversarial],
            range: [MODEL_COLORS.natural, MODEL_COLORS.adversarial],
          },
          legend: null,
        },
      },
    },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** A loss: 3 decimals from 0.1 up, else 2 significant digits (0.0081, 0.00031). */
function fmtLoss(x: number): string {
  return Math.abs(x) >= 0.1 || x === 0 ? fmtNum(x, 3) : x.toPrecision(2);
}

/** A sentence naming the models that misclassify the attacked image before any attack ("" when none does). */
function misclassified(results: Results): string {
  const wrong = (["natural", "adversarial"] as const).filter((k) =>
    results.models[k].cleanPrediction !== results.example.label
  );
  if (!wrong.length) return "";
  const who = wrong.map((k) => k === "natural" ? "naturally trained" : "adversarially trained").join(" and the ");
  return ` The ${who} model${wrong.length > 1 ? "s" : ""} already misclassif${wrong.length > 1 ? "y" : "ies"} ` +
    "the unperturbed image: the attack starts from a wrong prediction.";
}

/** The markdown summary: the paper's observations beside what was measured. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const s = { natural: summarize(m.natural), adversarial: summarize(m.adversarial) };
  const LABELS = labels(results);
  const cached = m.natural.fromCache && m.adversarial.fromCache;
  const origin = cached
    ? "loaded from its cache, not retrained"
    : (["natural", "adversarial"] as const).map((k) =>
      `${k} ${m[k].fromCache ? "from the cache" : `trained in this run (${fmtNum(m[k].trainSeconds, 0)} s)`}`
    ).join(", ");
  const far = Math.round(2 * c.eps / c.stepSize);
  const lines = [
    `# Figure 2 (${DATASETS[results.dataset].title}): the loss along PGD iterations`,
    "",
    `ε = ${c.eps}, PGD ${c.steps} steps of ${c.stepSize}, ${c.restarts} random starts (the same starts for both ` +
    `models) on test image #${results.example.index} (${labelText(results.dataset, results.example.label)}). ` +
    `Preset \`${results.preset}\`, seed ${results.seed}, backend ${results.backend.name}, ` +
    `${fmtNum(results.wall_seconds, 0)} s. The models are Figure 1's (${origin}), ` +
    `${netText(m.natural.train)}; naturally trained: ${trainingText(m.natural.train)}; ` +
    `adversarially trained: ${trainingText(m.adversarial.train)}` +
    `${m.adversarial.train.method === "fgsm" ? " (fast adversarial training, weaker than the paper's PGD)" : ""}.`,
    "",
    `![Figure 2](figure2_${results.dataset}.png)`,
    "",
    "## Per model",
    "",
    markdownTable(
      [
        "model",
        "clean prediction",
        "loss at the random starts",
        "final loss mean ± sd",
        "min – max",
        "iterations to 50% / 90% of the rise (median; max)",
        "still correct",
      ],
      (["natural", "adversarial"] as const).map((k) => [
        LABELS[k],
        `${classText(results.dataset, m[k].cleanPrediction)}, loss ${fmtLoss(m[k].cleanLoss)}`,
        `${fmtLoss(s[k].start.mean)} ± ${fmtLoss(s[k].start.std)}`,
        `${fmtLoss(s[k].final.mean)} ± ${fmtLoss(s[k].final.std)}`,
        `${fmtLoss(s[k].final.min)} – ${fmtLoss(s[k].final.max)}`,
        `${s[k].to50.median} / ${s[k].to90.median}; ${s[k].to50.max} / ${s[k].to90.max} of ${s[k].steps}`,
        `${m[k].correctRestarts}/${c.restarts}`,
      ]),
      ["l", "r", "r", "r", "r", "r", "r"],
    ),
    "",
    '"Iterations to 50% / 90% of the rise": the first iterate at which a restart\'s loss has made half (90%) of ' +
    'its rise from its random start to its final value; median and slowest of the restarts. "Still correct": ' +
    "restarts after which the model still classified the example correctly. A pixel moves at most α = " +
    `${c.stepSize} per iteration: from a uniform random start it is on average ε/α = ` +
    `${Math.round(c.eps / c.stepSize)} iterations from the face of the ball it is pushed toward, and up to 2ε/α = ` +
    `${far}, so with this step size the plateau comes after ${far >= 20 ? "tens of" : "a few"} iterations.` +
    misclassified(results),
    "",
    "## The paper's observations beside ours",
    "",
    markdownTable(
      ["observation (Madry et al., Sec. 3.1, Figure 2)", "measured here"],
      [
        [
          "the loss rises quickly and plateaus after a small number of iterations",
          `half of the rise after a median of ${s.natural.to50.median} (natural) and ${s.adversarial.to50.median} ` +
          `(adversarial) iterations, 90% after ${s.natural.to90.median} and ${s.adversarial.to90.median} of ` +
          `${c.steps}; the second half of the iterations adds ` +
          `${fmtNum(100 * s.natural.lateRise, 1)}% (natural) and ${fmtNum(100 * s.adversarial.lateRise, 1)}% ` +
          `(adversarial) of the rise`,
        ],
        [
          "the final loss values of the restarts are fairly concentrated",
          `sd / mean of the final losses: natural ${fmtLoss(s.natural.relSpread)}, adversarial ` +
          `${fmtLoss(s.adversarial.relSpread)}`,
        ],
        [
          "the final losses of the adversarially trained model are significantly smaller",
          `mean ${fmtLoss(s.adversarial.final.mean)} vs ${fmtLoss(s.natural.final.mean)} ` +
          `(${ratio(s.natural.final.mean, s.adversarial.final.mean)} lower)`,
        ],
      ],
    ),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
