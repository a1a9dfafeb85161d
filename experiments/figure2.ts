/**
 * Figure 2 of Madry et al.: the cross-entropy loss at every PGD iteration, for
 * 20 random restarts on one random test example, on the naturally and on the
 * adversarially trained MNIST model. The paper's observations are measured: the
 * loss rises quickly and plateaus after a few iterations, and the final values of
 * the restarts are close together (and far lower for the adversarially trained
 * model).
 *
 * The models are Figure 1's: the training configs are built with its
 * `trainConfig` from the same fields, so the cached models are reused and never
 * retrained (where none is cached they are trained exactly as Figure 1 would).
 *
 *   deno task figure2                   # quick preset: Figure 1's quick models
 *   deno task figure2 --preset paper    # Figure 1's paper models (model A)
 *   deno task figure2 --example 7       # test image #7 instead of a random one
 *
 * @module
 */
import {
  crossEntropy,
  currentBackend,
  type Dataset,
  type ExperimentSpec,
  fmtNum,
  gather,
  kebab,
  loadMnist,
  logits,
  markdownTable,
  pgd,
  Rng,
  runMain,
  tf,
  type TrainConfig,
  trainModel,
  UserError,
  type VegaLiteSpec,
  versions,
} from "../mod.ts";
import { type Drawing, experimentMain, redrawResults, writeResults } from "../lib/experiment.ts";
import * as figure1 from "./figure1.ts";

/** Every hyperparameter of the experiment: the attack, the example, and Figure 1's training fields. */
export interface Config {
  /** Dataset: "mnist" (CIFAR-10 is not built yet). */
  dataset: string;
  /** ε of the attack, L∞ radius in pixel units ([0,1] pixels). */
  eps: number;
  /** PGD iterations of each restart. */
  steps: number;
  /** PGD step size α. */
  stepSize: number;
  /** Random starts, each a uniform point of the ε-ball (clipped to the pixel range). */
  restarts: number;
  /** Test image attacked; -1 draws one from the seed (Figure 1's first example). */
  example: number;
  /** ε of the training adversary (Figure 1 trains and attacks at the same ε). */
  trainEps: number;
  /** Filters of the first convolution. */
  conv1: number;
  /** Filters of the second convolution. */
  conv2: number;
  /** Units of the hidden FC layer. */
  fc: number;
  /** Adam learning rate of both models. */
  lr: number;
  /** Training batch size. */
  batch: number;
  /** Training steps of the natural model. */
  naturalSteps: number;
  /** Training steps of the adversarially trained model. */
  advSteps: number;
  /** PGD iterations of the training adversary. */
  trainAttackSteps: number;
  /** Step size of the training adversary. */
  trainAttackStepSize: number;
  /** Training examples used. */
  trainExamples: number;
  /** Seed of the models (as Figure 1), the example choice and the random starts. */
  seed: number;
}

/** The fields of Figure 1's config that decide its trained models. */
const TRAIN_FIELDS = [
  "conv1",
  "conv2",
  "fc",
  "lr",
  "batch",
  "naturalSteps",
  "advSteps",
  "trainAttackSteps",
  "trainAttackStepSize",
  "trainExamples",
] as const;

/** Figure 1's training fields of one of its presets (its defaults for "quick"), with its ε as `trainEps`. */
function figure1Training(preset: "quick" | "paper" | "smoke"): Partial<Config> {
  const c: figure1.Config = { ...figure1.DEFAULTS, ...(preset === "quick" ? {} : figure1.PRESETS[preset]) };
  const out: Partial<Config> = { trainEps: c.eps, seed: c.seed };
  for (const k of TRAIN_FIELDS) out[k] = c[k];
  return out;
}

/** The quick preset: Figure 1's quick models, the paper's attack (it is cheap: 2 × 100 steps on 20 copies). */
export const DEFAULTS: Config = {
  dataset: "mnist",
  eps: 0.3,
  steps: 100,
  stepSize: 0.01,
  restarts: 20,
  example: -1,
  ...figure1Training("quick"),
} as Config;

/** The paper's settings (Figure 1's paper models) and a tiny test preset (Figure 1's smoke models). */
export const PRESETS: Record<string, Partial<Config>> = {
  paper: { ...figure1Training("paper"), steps: 100, restarts: 20 },
  smoke: { ...figure1Training("smoke"), steps: 3, restarts: 4 },
};

/** The command line of this experiment. */
export const SPEC: ExperimentSpec<Config> = {
  name: "figure2",
  summary: "cross-entropy loss at every PGD iteration, 20 random restarts on one example, natural vs adversarial model",
  defaults: DEFAULTS,
  presets: PRESETS,
  help: {
    dataset: "dataset: mnist (cifar10 is not built yet)",
    eps: "L∞ radius ε of the attack, pixels in [0,1]",
    steps: "PGD iterations per restart",
    stepSize: "PGD step size α",
    restarts: "random starts",
    example: "test image index, -1 for a random one",
    trainEps: "ε of the training adversary (Figure 1's models)",
    conv1: "filters of conv 1",
    conv2: "filters of conv 2",
    fc: "units of the FC layer",
    lr: "Adam learning rate",
    batch: "training batch size",
    naturalSteps: "training steps, natural model",
    advSteps: "training steps, adversarial model",
    trainAttackSteps: "PGD steps of the training adversary",
    trainAttackStepSize: "PGD step size of the training adversary",
    trainExamples: "training examples used",
    seed: "random seed (models, example, starts)",
  },
  validate(c) {
    checkDataset(c.dataset);
    for (const [k, v] of [["eps", c.eps], ["train-eps", c.trainEps]] as const) {
      if (!(v > 0 && v <= 1)) throw new UserError(`--${k} must be in (0, 1] for MNIST pixels in [0,1], got ${v}`);
    }
    for (const k of ["steps", "restarts", "naturalSteps", "advSteps"] as const) {
      if (!Number.isInteger(c[k]) || c[k] < 1) throw new UserError(`--${kebab(k)} must be an integer ≥ 1, got ${c[k]}`);
    }
    if (c.restarts < 2) throw new UserError(`--restarts must be ≥ 2 to compare restarts, got ${c.restarts}`);
    if (!(c.stepSize > 0)) throw new UserError(`--step-size must be > 0, got ${c.stepSize}`);
    if (!Number.isInteger(c.example) || c.example < -1 || c.example >= 10000) {
      throw new UserError(`--example must be -1 (random) or a test index in 0..9999, got ${c.example}`);
    }
  },
};

/** Throws the one-line error for a dataset other than MNIST. */
export function checkDataset(dataset: string): void {
  if (dataset === "cifar10") {
    throw new UserError(
      "--dataset cifar10 is not available yet (its data, models and training are not built); use mnist",
    );
  }
  if (dataset !== "mnist") throw new UserError(`--dataset must be mnist (cifar10 is not built yet), got "${dataset}"`);
}

/** Figure 1's training config of the natural or the adversarially trained model (same hash, same cache entry). */
export function trainConfigOf(c: Config, kind: "natural" | "adversarial"): TrainConfig {
  return figure1.trainConfig({ ...figure1.DEFAULTS, ...c, dataset: "mnist", eps: c.trainEps }, kind);
}

/** Seed of the attack's random starts; the same for both models, so restart r starts at the same point for both. */
export function attackSeed(c: Config): number {
  return c.seed * 1000 + 2;
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

/** The results file, `figure2_mnist.results.json`. */
export interface Results {
  experiment: "figure2";
  dataset: "mnist";
  preset: string;
  config: Config;
  seed: number;
  /** Seed of the random starts passed to `pgd`. */
  attackSeed: number;
  backend: { name: string; detail: string };
  versions: Record<string, string>;
  wall_seconds: number;
  /** The attacked test image. */
  example: { index: number; label: number };
  models: Record<"natural" | "adversarial", ModelCurves>;
}

/**
 * Runs the experiment: loads Figure 1's models (training them only where none is
 * cached), then PGD with the loss recorded at every iterate, from `restarts`
 * random starts (one batch of copies of the example, each row its own start).
 */
export async function run(
  config: Config,
  options: { preset?: string; cacheDir?: string; retrain?: boolean; quiet?: boolean; train?: Dataset; test?: Dataset } =
    {},
): Promise<Results> {
  checkDataset(config.dataset);
  const start = performance.now();
  const test = options.test ?? await loadMnist("test");
  let train = options.train;
  const index = config.example >= 0 ? config.example : new Rng(config.seed).sample(test.n, 1)[0];
  if (index >= test.n) throw new UserError(`--example ${index} is beyond the ${test.n} test images`);
  const { x, y } = gather(test, Array(config.restarts).fill(index));
  const models = {} as Results["models"];
  for (const kind of ["natural", "adversarial"] as const) {
    train ??= await loadMnist("train", { limit: config.trainExamples });
    const t = await trainModel(trainConfigOf(config, kind), {
      data: train,
      cacheDir: options.cacheDir,
      retrain: options.retrain,
      quiet: options.quiet,
      label: `train ${kind}`,
    });
    if (!options.quiet) console.error(`${kind} model: ${t.fromCache ? `cached at ${t.dir}` : "trained (none cached)"}`);
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
      range: [0, 1],
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
    if (!options.quiet) console.error(`${kind} model: PGD ${config.restarts} × ${config.steps} steps done`);
  }
  x.dispose();
  y.dispose();
  const backend = currentBackend();
  return {
    experiment: "figure2",
    dataset: "mnist",
    preset: options.preset ?? "quick",
    config,
    seed: config.seed,
    attackSeed: attackSeed(config),
    backend: { name: backend?.name ?? tf.getBackend(), detail: backend?.detail ?? "" },
    versions: versions(),
    wall_seconds: (performance.now() - start) / 1000,
    example: { index, label: test.labels[index] },
    models,
  };
}

/** Mean, standard deviation, min and max. */
function stats(xs: number[]): { mean: number; std: number; min: number; max: number } {
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  const std = Math.sqrt(xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length);
  return { mean, std, min: Math.min(...xs), max: Math.max(...xs) };
}

function median(xs: number[]): number {
  const a = [...xs].sort((p, q) => p - q);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
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

const COLORS = { natural: "#1f77b4", adversarial: "#d62728" };
const LABELS = { natural: "natural training", adversarial: "adversarial training" };

/** The Vega-Lite spec: one panel per model (independent loss axes), one line per restart. */
export function figure(results: Results): VegaLiteSpec {
  const rows = (["natural", "adversarial"] as const).flatMap((kind) =>
    results.models[kind].curves.flatMap((curve, restart) =>
      curve.map((loss, iteration) => ({ model: LABELS[kind], restart, iteration, loss }))
    )
  );
  const c = results.config;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `Figure 2 (MNIST): cross-entropy loss along PGD from ${c.restarts} random starts on one test example`,
      subtitle: [
        `Test image #${results.example.index} (label ${results.example.label}), ε = ${c.eps}, ${c.steps} PGD steps ` +
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
          scale: { domain: [LABELS.natural, LABELS.adversarial], range: [COLORS.natural, COLORS.adversarial] },
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

/** `a / b` as "12×" or, below 10, "1.3×". */
function ratio(a: number, b: number): string {
  const r = a / Math.max(b, 1e-12);
  return `${fmtNum(r, r < 10 ? 1 : 0)}×`;
}

/** The markdown summary: the paper's observations beside what was measured. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const s = { natural: summarize(m.natural), adversarial: summarize(m.adversarial) };
  const cached = m.natural.fromCache && m.adversarial.fromCache;
  const lines = [
    "# Figure 2 (MNIST): the loss along PGD iterations",
    "",
    `ε = ${c.eps}, PGD ${c.steps} steps of ${c.stepSize}, ${c.restarts} random starts (the same starts for both ` +
    `models) on test image #${results.example.index} (label ${results.example.label}). Preset \`${results.preset}\`, ` +
    `seed ${results.seed}, backend ${results.backend.name}, ${fmtNum(results.wall_seconds, 0)} s. The models are ` +
    `Figure 1's (${cached ? "loaded from its cache, not retrained" : "trained in this run: none was cached"}).`,
    "",
    "![Figure 2](figure2_mnist.png)",
    "",
    "## Per model",
    "",
    markdownTable(
      [
        "model",
        "clean prediction (loss)",
        "loss at the random starts",
        "final loss mean ± sd",
        "min – max",
        "iterations to 50% / 90% of the rise (median; max)",
        "still correct",
      ],
      (["natural", "adversarial"] as const).map((k) => [
        LABELS[k],
        `${m[k].cleanPrediction} (${fmtLoss(m[k].cleanLoss)})`,
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
    `${Math.round(2 * c.eps / c.stepSize)}, so with this step size the plateau comes after tens of iterations.`,
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
          `sd / mean of the final losses: natural ${fmtNum(s.natural.relSpread, 3)}, adversarial ` +
          `${fmtNum(s.adversarial.relSpread, 3)}`,
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

/** How the results are drawn: `figure2_<dataset>.*`. */
export const DRAWING: Drawing<Results> = { prefix: "figure2", figure, table };

/** Writes the results JSON and, from it, the spec, SVG, PNG and markdown. */
export function write(results: Results, out: string): Promise<string[]> {
  return writeResults(DRAWING, results, out);
}

/** Redraws the figure from a saved results file. */
export function redraw(resultsPath: string, out: string): Promise<string[]> {
  return redrawResults(DRAWING, resultsPath, out);
}

/** The command line: `deno task figure2 [flags]`. */
export function main(args: string[]): Promise<void> {
  return experimentMain(args, SPEC, (config, common) => run(config, { ...common }), DRAWING);
}

if (import.meta.main) await runMain(() => main(Deno.args));
