/**
 * Figure 2 of Madry et al.: the cross-entropy loss at every PGD iteration, for
 * 20 random restarts on one random test example, on the naturally and on the
 * adversarially trained model, MNIST (ε 0.3, 100 steps of 0.01) and CIFAR-10
 * (ε 8, 20 steps of 2, pixels in [0, 255]). The paper's observations are
 * measured: the loss rises quickly and plateaus after a few iterations, and the
 * final values of the restarts are close together (and far lower for the
 * adversarially trained model).
 *
 * The models are Figure 1's: the training configs are built with its
 * `trainConfig` from the same fields and presets of each dataset, so the cached
 * models are reused and never retrained (where none is cached they are trained
 * exactly as Figure 1 would).
 *
 *   deno task figure2                      # MNIST, and CIFAR-10 too where Figure 1's models are cached
 *   deno task figure2 --dataset cifar10    # CIFAR-10 only (Figure 1's CIFAR-10 quick models)
 *   deno task figure2 --preset paper       # Figure 1's paper models (model A; the wide ResNet)
 *   deno task figure2 --example 7          # test image #7 instead of a random one
 *
 * @module
 */
import {
  checkEpsScale,
  CIFAR10_CLASSES,
  crossEntropy,
  currentBackend,
  type Dataset,
  type ExperimentSpec,
  fmtNum,
  gather,
  kebab,
  loadCifar10,
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
import {
  datasetFlag,
  type Datasets,
  datasetsMain,
  type Drawing,
  redrawResults,
  writeResults,
} from "../lib/experiment/harness.ts";
import * as figure1 from "./figure1.ts";

/** Every hyperparameter of the experiment: the attack, the example, and Figure 1's training fields. */
export interface Config {
  /** Dataset: "mnist" (pixels in [0,1]) or "cifar10" (pixels in [0,255]); each has its own defaults and presets. */
  dataset: "mnist" | "cifar10";
  /** ε of the attack, L∞ radius in pixel units (0.3 for MNIST, 8 for CIFAR-10). */
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
  /** MNIST: filters of the first convolution. */
  conv1: number;
  /** MNIST: filters of the second convolution. */
  conv2: number;
  /** MNIST: units of the hidden FC layer. */
  fc: number;
  /** CIFAR-10: the ResNet, "simple" or "wide". */
  resnet: "simple" | "wide";
  /** CIFAR-10: residual units per stage. */
  units: number;
  /** Learning rate: Adam's for MNIST, momentum SGD's first or peak rate for CIFAR-10 (as Figure 1). */
  lr: number;
  /** CIFAR-10 learning-rate schedule, "steps" or "cyclic" (as Figure 1). */
  lrSchedule: "steps" | "cyclic";
  /** CIFAR-10: L2 weight decay on kernels. */
  weightDecay: number;
  /** Training batch size. */
  batch: number;
  /** Training steps of the natural model. */
  naturalSteps: number;
  /** Training steps of the adversarially trained model. */
  advSteps: number;
  /** CIFAR-10: the training adversary, "pgd" or "fgsm" (one step from a random start). */
  trainMethod: "pgd" | "fgsm";
  /** PGD iterations of the training adversary. */
  trainAttackSteps: number;
  /** Step size of the training adversary. */
  trainAttackStepSize: number;
  /** Training examples used. */
  trainExamples: number;
  /** CIFAR-10: folder of the binary version ("": the CIFAR10_DIR variable, then the cache). */
  dataDir: string;
  /** Seed of the models (as Figure 1), the example choice and the random starts. */
  seed: number;
}

/** The fields taken from Figure 1's config: those that decide its trained models, and where its data is. */
const TRAIN_FIELDS = [
  "conv1",
  "conv2",
  "fc",
  "resnet",
  "units",
  "lr",
  "lrSchedule",
  "weightDecay",
  "batch",
  "naturalSteps",
  "advSteps",
  "trainMethod",
  "trainAttackSteps",
  "trainAttackStepSize",
  "trainExamples",
  "dataDir",
] as const;

/** Figure 1's training fields of one of its presets of `dataset` (its defaults for "quick"), its ε as `trainEps`. */
function figure1Training(dataset: "mnist" | "cifar10", preset: "quick" | "paper" | "smoke"): Partial<Config> {
  const [defaults, presets] = dataset === "cifar10"
    ? [figure1.CIFAR_DEFAULTS, figure1.CIFAR_PRESETS]
    : [figure1.DEFAULTS, figure1.PRESETS];
  const c: figure1.Config = { ...defaults, ...(preset === "quick" ? {} : presets[preset]) };
  const out: Record<string, unknown> = { trainEps: c.eps, seed: c.seed };
  for (const k of TRAIN_FIELDS) out[k] = c[k];
  return out as Partial<Config>;
}

/** The MNIST quick preset: Figure 1's quick models, the paper's attack (it is cheap: 2 × 100 steps on 20 copies). */
export const DEFAULTS: Config = {
  dataset: "mnist",
  eps: 0.3,
  steps: 100,
  stepSize: 0.01,
  restarts: 20,
  example: -1,
  ...figure1Training("mnist", "quick"),
} as Config;

/** The MNIST paper settings (Figure 1's paper models) and a tiny test preset (Figure 1's smoke models). */
export const PRESETS: Record<string, Partial<Config>> = {
  paper: { ...figure1Training("mnist", "paper"), steps: 100, restarts: 20 },
  smoke: { ...figure1Training("mnist", "smoke"), steps: 3, restarts: 4 },
};

/**
 * The CIFAR-10 quick preset (`--dataset cifar10`): Figure 1's CIFAR-10 quick
 * models (the simple ResNet; its adversarially trained one on FGSM from a random
 * start) and the paper's strongest CIFAR-10 attack, PGD 20 steps of 2 at ε 8.
 */
export const CIFAR_DEFAULTS: Config = {
  dataset: "cifar10",
  eps: 8,
  steps: 20,
  stepSize: 2,
  restarts: 20,
  example: -1,
  ...figure1Training("cifar10", "quick"),
} as Config;

/** CIFAR-10 presets: Figure 1's paper models (wide ResNet, 7-step PGD training) and its smoke models. */
export const CIFAR_PRESETS: Record<string, Partial<Config>> = {
  paper: { ...figure1Training("cifar10", "paper"), steps: 20, restarts: 20 },
  smoke: { ...figure1Training("cifar10", "smoke"), steps: 2, restarts: 4 },
};

/** The command line of this experiment. */
export const SPEC: ExperimentSpec<Config> = {
  name: "figure2",
  summary:
    "cross-entropy loss at every PGD iteration, 20 random restarts on one example, natural vs adversarial model " +
    "(--dataset mnist|cifar10; without it MNIST, and CIFAR-10 too where Figure 1's CIFAR-10 models are cached)",
  defaults: DEFAULTS,
  presets: PRESETS,
  help: {
    dataset: "mnist or cifar10 (sets that dataset's defaults and presets; not given: both if cached, else mnist)",
    eps: "L∞ radius ε of the attack in pixel units (MNIST [0,1], CIFAR-10 [0,255])",
    steps: "PGD iterations per restart",
    stepSize: "PGD step size α",
    restarts: "random starts",
    example: "test image index, -1 for a random one",
    trainEps: "ε of the training adversary (Figure 1's models)",
    ...figure1.TRAIN_HELP,
    dataDir: "CIFAR-10 binary folder (default: CIFAR10_DIR, then the cache)",
    seed: "random seed (models, example, starts)",
  },
  validate(c) {
    if (c.dataset !== "mnist" && c.dataset !== "cifar10") {
      throw new UserError(`--dataset must be mnist or cifar10, got "${c.dataset}"`);
    }
    for (const [k, v] of [["eps", c.eps], ["train-eps", c.trainEps]] as const) {
      if (c.dataset === "cifar10") {
        try {
          checkEpsScale(v, [0, 255]);
        } catch (e) {
          throw new UserError(`--${k}: ${(e as Error).message}`);
        }
      } else if (!(v > 0 && v <= 1)) {
        throw new UserError(`--${k} must be in (0, 1] for MNIST pixels in [0,1], got ${v}`);
      }
    }
    figure1.checkTrainingChoices(c);
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

/** The command line for `args`: `--dataset cifar10` switches to the CIFAR-10 defaults and presets. */
export function specFor(args: string[]): ExperimentSpec<Config> {
  return datasetFlag(args) === "cifar10" ? { ...SPEC, defaults: CIFAR_DEFAULTS, presets: CIFAR_PRESETS } : SPEC;
}

/** Figure 1's training config of the natural or the adversarially trained model (same hash, same cache entry). */
export function trainConfigOf(c: Config, kind: "natural" | "adversarial"): TrainConfig {
  return figure1.trainConfigFor({ ...c, eps: c.trainEps }, kind);
}

/** How the command line picks its datasets: Figure 1's two models of the config must be cached for CIFAR-10. */
export const DATASETS: Datasets<Config> = {
  specFor,
  models: (c) => [trainConfigOf(c, "natural"), trainConfigOf(c, "adversarial")],
  trainedBy: "deno task figure1 --dataset cifar10 (same --preset)",
};

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

/** The results file, `figure2_<dataset>.results.json`. */
export interface Results {
  experiment: "figure2";
  dataset: "mnist" | "cifar10";
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
 * cached; the training data is loaded only then), then PGD with the loss
 * recorded at every iterate, from `restarts` random starts (one batch of copies
 * of the example, each row its own start).
 */
export async function run(
  config: Config,
  options: { preset?: string; cacheDir?: string; retrain?: boolean; quiet?: boolean; train?: Dataset; test?: Dataset } =
    {},
): Promise<Results> {
  SPEC.validate!(config);
  const start = performance.now();
  const load = (split: "train" | "test", limit?: number) =>
    config.dataset === "cifar10"
      ? loadCifar10(split, { dataDir: config.dataDir || undefined, cacheDir: options.cacheDir, limit })
      : loadMnist(split, { limit });
  const test = options.test ?? await load("test");
  let train = options.train;
  const index = config.example >= 0 ? config.example : new Rng(config.seed).sample(test.n, 1)[0];
  if (index >= test.n) throw new UserError(`--example ${index} is beyond the ${test.n} test images`);
  const { x, y } = gather(test, Array(config.restarts).fill(index));
  const models = {} as Results["models"];
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await trainModel(trainConfigOf(config, kind), {
      data: async () => train ??= await load("train", config.trainExamples),
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
    if (!options.quiet) console.error(`${kind} model: PGD ${config.restarts} × ${config.steps} steps done`);
  }
  x.dispose();
  y.dispose();
  const backend = currentBackend();
  return {
    experiment: "figure2",
    dataset: config.dataset,
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
const TITLE = { mnist: "MNIST", cifar10: "CIFAR-10" } as const;

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
      text: `Figure 2 (${TITLE[results.dataset]}): cross-entropy loss along PGD from ${c.restarts} random starts on ` +
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
    `# Figure 2 (${TITLE[results.dataset]}): the loss along PGD iterations`,
    "",
    `ε = ${c.eps}, PGD ${c.steps} steps of ${c.stepSize}, ${c.restarts} random starts (the same starts for both ` +
    `models) on test image #${results.example.index} (${labelText(results.dataset, results.example.label)}). ` +
    `Preset \`${results.preset}\`, seed ${results.seed}, backend ${results.backend.name}, ` +
    `${fmtNum(results.wall_seconds, 0)} s. The models are Figure 1's (${origin}), ` +
    `${figure1.netText(m.natural.train)}; naturally trained: ${figure1.trainingText(m.natural.train)}; ` +
    `adversarially trained: ${figure1.trainingText(m.adversarial.train)}` +
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

/** The command line: `deno task figure2 [flags]`; without `--dataset`, MNIST and CIFAR-10 where its models are cached. */
export function main(args: string[]): Promise<void> {
  return datasetsMain(args, DATASETS, (config, common) => run(config, { ...common }), DRAWING);
}

if (import.meta.main) await runMain(() => main(Deno.args));
