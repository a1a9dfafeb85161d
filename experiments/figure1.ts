/**
 * Figure 1 of Madry et al.: the loss at the end of PGD from many random starts,
 * for a naturally and an adversarially trained MNIST model. The paper's claims
 * about those maxima are measured too: their loss values are concentrated, and
 * they are distinct points (pairwise L2 distances close to those of random points
 * in the ball, angles close to 90°).
 *
 *   deno task figure1                   # quick preset, minutes on a laptop CPU
 *   deno task figure1 --preset paper    # the paper's settings (about a CPU-day)
 *   deno task figure1 --restarts 50     # any config field is a flag
 *
 * @module
 */
import {
  checkEpsScale,
  currentBackend,
  type Dataset,
  evaluate,
  type ExperimentSpec,
  fmtNum,
  fmtPct,
  gather,
  isResNet,
  kebab,
  loadCifar10,
  loadMnist,
  markdownTable,
  optimizerText,
  pgd,
  RESNET_SIMPLE,
  RESNET_WIDE,
  Rng,
  runMain,
  tf,
  type tfl,
  type TrainConfig,
  trainModel,
  type VegaLiteSpec,
  versions,
} from "../mod.ts";
import { datasetFlag, type Drawing, experimentMain, redrawResults, writeResults } from "../lib/experiment/harness.ts";
import { UserError } from "../lib/core/errors.ts";

/** Every hyperparameter of the experiment. */
export interface Config {
  /** Dataset: "mnist" (pixels in [0,1]) or "cifar10" (pixels in [0,255]); each has its own defaults and presets. */
  dataset: "mnist" | "cifar10";
  /** ε of the attack, L∞ radius in pixel units (0.3 for MNIST, 8 for CIFAR-10). */
  eps: number;
  /** PGD iterations of each restart. */
  steps: number;
  /** PGD step size α. */
  stepSize: number;
  /** Random starts per example. */
  restarts: number;
  /** Random test examples shown. */
  examples: number;
  /** Test examples for the accuracy of each model. */
  evalExamples: number;
  /** PGD iterations of the accuracy evaluation (step size `stepSize`). */
  evalSteps: number;
  /** MNIST: filters of the first convolution. */
  conv1: number;
  /** Filters of the second convolution. */
  conv2: number;
  /** Units of the hidden FC layer. */
  fc: number;
  /** CIFAR-10: the ResNet, "simple" (16, 16, 32, 64 filters) or "wide" (16, 160, 320, 640). */
  resnet: "simple" | "wide";
  /** CIFAR-10: residual units per stage. */
  units: number;
  /** Learning rate: Adam's for MNIST; for CIFAR-10 momentum SGD's first rate (`steps`) or peak rate (`cyclic`). */
  lr: number;
  /**
   * CIFAR-10 learning-rate schedule: "steps" (the paper's: lr, /10 at 50% and
   * /100 at 75% of the steps) or "cyclic" (one cycle: linear from 0 up to lr at
   * 40% of the steps, then down to 0 at the end, as in Wong et al. 2020).
   */
  lrSchedule: "steps" | "cyclic";
  /** CIFAR-10: L2 weight decay on conv and FC kernels. */
  weightDecay: number;
  /** Training batch size. */
  batch: number;
  /** Training steps of the natural model. */
  naturalSteps: number;
  /** Training steps of the adversarially trained model. */
  advSteps: number;
  /** The training adversary: "pgd", or "fgsm" (one step of `trainAttackStepSize` from a random start). */
  trainMethod: "pgd" | "fgsm";
  /** PGD iterations of the training adversary (ε = `eps`, random start). */
  trainAttackSteps: number;
  /** Step size of the training adversary. */
  trainAttackStepSize: number;
  /** Training examples used (60,000 is all of MNIST, 50,000 all of CIFAR-10). */
  trainExamples: number;
  /** CIFAR-10: folder of the binary version ("": the CIFAR10_DIR variable, then the cache). */
  dataDir: string;
  /** Seed of everything: weights, data order, random starts, example choice. */
  seed: number;
}

/**
 * The quick preset: a smaller net (conv 16, conv 32, FC 512: scale 8 of the
 * conference version's capacity family) trained with Adam 1e-3 for 1,300 steps
 * on 4-step PGD of 0.1 from a random start, which reaches a robust model (about
 * 98% natural, 84% PGD-40 accuracy) in about 7 minutes on two cores.
 */
export const DEFAULTS: Config = {
  dataset: "mnist",
  eps: 0.3,
  steps: 40,
  stepSize: 0.01,
  restarts: 100,
  examples: 4,
  evalExamples: 500,
  evalSteps: 40,
  conv1: 16,
  conv2: 32,
  fc: 512,
  resnet: "simple",
  units: 5,
  lr: 1e-3,
  lrSchedule: "steps",
  weightDecay: 0,
  batch: 50,
  naturalSteps: 300,
  advSteps: 1300,
  trainMethod: "pgd",
  trainAttackSteps: 4,
  trainAttackStepSize: 0.1,
  trainExamples: 60000,
  dataDir: "",
  seed: 0,
};

/**
 * The CIFAR-10 quick preset (`--dataset cifar10`): the simple ResNet trained with
 * momentum SGD, batch 128, for a few epochs on one cycle of the learning rate
 * (up to 0.3 and back to 0, which gets much further than the paper's step
 * schedule compressed into the same steps) with weight decay 5e-4 (Wong et al.'s;
 * rate and decay chosen by the sweep in bench/sweep_torch.py); the adversarially
 * trained one on FGSM from a random start with a step of 10 (the "fast adversarial
 * training" recipe, Wong et al. 2020), which reaches far more robustness than
 * 7-step PGD in the same CPU time. The `paper` preset keeps the paper's rate,
 * decay and schedule, 7-step PGD of 2 and the wide ResNet.
 */
export const CIFAR_DEFAULTS: Config = {
  ...DEFAULTS,
  dataset: "cifar10",
  eps: 8,
  steps: 20,
  stepSize: 2,
  restarts: 50,
  examples: 4,
  evalExamples: 500,
  evalSteps: 7,
  lr: 0.3,
  lrSchedule: "cyclic",
  weightDecay: 5e-4,
  batch: 128,
  naturalSteps: 1600,
  advSteps: 1050,
  trainMethod: "fgsm",
  trainAttackSteps: 1,
  trainAttackStepSize: 10,
  trainExamples: 50000,
};

/** CIFAR-10 presets: the paper's (wide ResNet, 80k steps of 7-step PGD) and a tiny test one. */
export const CIFAR_PRESETS: Record<string, Partial<Config>> = {
  paper: {
    resnet: "wide",
    lr: 0.1,
    lrSchedule: "steps",
    weightDecay: 2e-4,
    restarts: 200,
    evalSteps: 20,
    naturalSteps: 80000,
    advSteps: 80000,
    trainMethod: "pgd",
    trainAttackSteps: 7,
    trainAttackStepSize: 2,
    evalExamples: 10000,
  },
  smoke: {
    steps: 2,
    restarts: 4,
    examples: 2,
    evalExamples: 8,
    evalSteps: 2,
    units: 1,
    batch: 8,
    naturalSteps: 2,
    advSteps: 2,
    trainExamples: 64,
  },
};

/** The paper's settings (model A, Adam 1e-4, 100k steps of 40-step PGD of 0.01) and a tiny test preset. */
export const PRESETS: Record<string, Partial<Config>> = {
  paper: {
    steps: 100,
    restarts: 200,
    conv1: 32,
    conv2: 64,
    fc: 1024,
    lr: 1e-4,
    naturalSteps: 100000,
    advSteps: 100000,
    trainAttackSteps: 40,
    trainAttackStepSize: 0.01,
    evalExamples: 10000,
  },
  smoke: {
    steps: 3,
    restarts: 6,
    examples: 2,
    evalExamples: 40,
    evalSteps: 3,
    conv1: 2,
    conv2: 4,
    fc: 8,
    naturalSteps: 4,
    advSteps: 4,
    trainAttackSteps: 2,
    trainExamples: 400,
  },
};

/** Help of the flags that set the models' training, shared by the experiments that reuse Figure 1's models. */
export const TRAIN_HELP = {
  conv1: "MNIST filters of conv 1",
  conv2: "MNIST filters of conv 2",
  fc: "MNIST units of the FC layer",
  resnet: "CIFAR-10 ResNet: simple or wide",
  units: "CIFAR-10 residual units per stage",
  lr: "learning rate (MNIST Adam; CIFAR-10 momentum SGD: first rate, or peak of the cycle)",
  lrSchedule: "CIFAR-10: steps (/10 at 50%, /100 at 75%) or cyclic (0 → lr at 40% → 0)",
  weightDecay: "CIFAR-10 weight decay on kernels",
  trainMethod: "training adversary: pgd or fgsm (one step from a random start)",
  batch: "training batch size",
  naturalSteps: "training steps, natural model",
  advSteps: "training steps, adversarial model",
  trainAttackSteps: "PGD steps of the training adversary",
  trainAttackStepSize: "PGD step size of the training adversary",
  trainExamples: "training examples used",
};

/** Checks the training fields that take one of a few names (shared with the experiments that reuse these models). */
export function checkTrainingChoices(c: Pick<Config, "resnet" | "lrSchedule" | "trainMethod">): void {
  if (c.resnet !== "simple" && c.resnet !== "wide") {
    throw new UserError(`--resnet must be simple or wide, got "${c.resnet}"`);
  }
  if (c.lrSchedule !== "steps" && c.lrSchedule !== "cyclic") {
    throw new UserError(`--lr-schedule must be steps or cyclic, got "${c.lrSchedule}"`);
  }
  if (c.trainMethod !== "pgd" && c.trainMethod !== "fgsm") {
    throw new UserError(`--train-method must be pgd or fgsm, got "${c.trainMethod}"`);
  }
}

/** The command line of this experiment. */
export const SPEC: ExperimentSpec<Config> = {
  name: "figure1",
  summary: "loss values at the end of PGD from many random starts, natural vs adversarially trained model " +
    "(--dataset mnist|cifar10)",
  defaults: DEFAULTS,
  presets: PRESETS,
  help: {
    dataset: "mnist or cifar10 (sets that dataset's defaults and presets)",
    eps: "L∞ radius ε in pixel units (MNIST [0,1], CIFAR-10 [0,255])",
    steps: "PGD iterations per restart",
    stepSize: "PGD step size α",
    restarts: "random starts per example",
    examples: "random test examples",
    evalExamples: "test examples for accuracy",
    evalSteps: "PGD iterations for accuracy",
    ...TRAIN_HELP,
    dataDir: "CIFAR-10 binary folder (default: CIFAR10_DIR, then the cache)",
    seed: "random seed",
  },
  validate(c) {
    if (c.dataset !== "mnist" && c.dataset !== "cifar10") {
      throw new UserError(`--dataset must be mnist or cifar10, got "${c.dataset}"`);
    }
    if (c.dataset === "mnist" && !(c.eps > 0 && c.eps <= 1)) {
      throw new UserError(`--eps must be in (0, 1] for MNIST pixels in [0,1], got ${c.eps}`);
    }
    if (c.dataset === "cifar10") checkEpsScale(c.eps, [0, 255]);
    checkTrainingChoices(c);
    for (
      const k of ["steps", "restarts", "examples", "evalExamples", "evalSteps", "naturalSteps", "advSteps"] as const
    ) {
      if (!Number.isInteger(c[k]) || c[k] < 1) throw new UserError(`--${kebab(k)} must be an integer ≥ 1, got ${c[k]}`);
    }
    if (c.restarts < 2) throw new UserError(`--restarts must be ≥ 2 to compare maxima, got ${c.restarts}`);
    if (!(c.stepSize > 0)) throw new UserError(`--step-size must be > 0, got ${c.stepSize}`);
    if (c.examples > 10000) {
      throw new UserError(`--examples must be at most 10000 (the test set), got ${c.examples}`);
    }
  },
};

/** The command line for `args`: `--dataset cifar10` switches to the CIFAR-10 defaults and presets. */
export function specFor(args: string[]): ExperimentSpec<Config> {
  return datasetFlag(args) === "cifar10" ? { ...SPEC, defaults: CIFAR_DEFAULTS, presets: CIFAR_PRESETS } : SPEC;
}

/**
 * The training config of `kind` for another experiment's config: its training
 * fields, the rest from Figure 1's defaults of its dataset; the same config, so
 * the same cached model, as Figure 1's run of those fields.
 */
export function trainConfigFor(c: Partial<Config> & { dataset: string }, kind: "natural" | "adversarial"): TrainConfig {
  return trainConfig({ ...(c.dataset === "cifar10" ? CIFAR_DEFAULTS : DEFAULTS), ...c }, kind);
}

/** The training config of the natural or the adversarially trained model. */
export function trainConfig(c: Config, kind: "natural" | "adversarial"): TrainConfig {
  if (c.dataset === "cifar10") {
    const steps = kind === "natural" ? c.naturalSteps : c.advSteps;
    return {
      dataset: "cifar10",
      model: { ...(c.resnet === "wide" ? RESNET_WIDE : RESNET_SIMPLE), units: c.units },
      method: kind === "natural" ? "natural" : c.trainMethod,
      eps: c.eps,
      attackSteps: c.trainMethod === "fgsm" ? 1 : c.trainAttackSteps,
      attackStepSize: c.trainAttackStepSize,
      randomStart: true,
      optimizer: "sgd",
      lr: c.lr,
      ...(c.lrSchedule === "cyclic"
        ? { lrPoints: [[0, 0], [Math.round(steps * 0.4), c.lr], [steps, 0]] as [number, number][] }
        : { lrBoundaries: [Math.round(steps / 2), Math.round(steps * 3 / 4)], lrValues: [c.lr / 10, c.lr / 100] }),
      weightDecay: c.weightDecay,
      augment: true,
      batch: c.batch,
      steps,
      trainExamples: c.trainExamples,
      seed: c.seed,
    };
  }
  return {
    dataset: "mnist",
    model: { conv1: c.conv1, conv2: c.conv2, fc: c.fc },
    method: kind === "natural" ? "natural" : "pgd",
    eps: c.eps,
    attackSteps: c.trainAttackSteps,
    attackStepSize: c.trainAttackStepSize,
    randomStart: true,
    optimizer: "adam",
    lr: c.lr,
    batch: c.batch,
    steps: kind === "natural" ? c.naturalSteps : c.advSteps,
    trainExamples: c.trainExamples,
    seed: c.seed,
  };
}

/** Mean and standard deviation. */
function stats(xs: ArrayLike<number>): { mean: number; std: number; min: number; max: number } {
  const a = Array.from(xs);
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
  return { mean, std, min: Math.min(...a), max: Math.max(...a) };
}

/** Pairwise L2 distances and angles (degrees) between `r` vectors of length `d`. */
export function pairwiseGeometry(v: Float32Array, r: number, d: number) {
  const norms = new Float64Array(r);
  for (let i = 0; i < r; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += v[i * d + k] ** 2;
    norms[i] = Math.sqrt(s);
  }
  const dist: number[] = [], angle: number[] = [];
  for (let i = 0; i < r; i++) {
    for (let j = i + 1; j < r; j++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += v[i * d + k] * v[j * d + k];
      dist.push(Math.sqrt(Math.max(norms[i] ** 2 + norms[j] ** 2 - 2 * dot, 0)));
      const cos = dot / (norms[i] * norms[j] || 1);
      angle.push(Math.acos(Math.min(1, Math.max(-1, cos))) * 180 / Math.PI);
    }
  }
  return { distance: stats(dist), angle: stats(angle) };
}

/** What one model shows on one example. */
export interface ModelOnExample {
  /** Per-restart final losses (same values as `losses.<model>` of the example). */
  geometry: ReturnType<typeof pairwiseGeometry>;
  /** Restarts after which the model still classified the example correctly. */
  robustRestarts: number;
}

/** The results file, `figure1_<dataset>.results.json`. */
export interface Results {
  experiment: "figure1";
  dataset: "mnist" | "cifar10";
  preset: string;
  config: Config;
  seed: number;
  backend: { name: string; detail: string };
  versions: Record<string, string>;
  wall_seconds: number;
  models: Record<"natural" | "adversarial", {
    train: TrainConfig;
    hash: string;
    fromCache: boolean;
    trainSeconds: number;
    accuracy: { n: number; natural: number; pgd: number };
  }>;
  /** Expected distance of two uniform points of the ε-cube in d dimensions: ε·sqrt(2d/3). */
  randomBallDistance: number;
  examples: {
    index: number;
    label: number;
    losses: { natural: number[]; adversarial: number[] };
    /** Geometry of the random starts themselves (points of the ball clipped to pixels), the baseline. */
    randomGeometry: ReturnType<typeof pairwiseGeometry>;
    natural: ModelOnExample;
    adversarial: ModelOnExample;
  }[];
}

/** Runs the experiment: trains (or loads) both models, then PGD from many starts. */
export async function run(
  config: Config,
  options: { preset?: string; cacheDir?: string; retrain?: boolean; quiet?: boolean; train?: Dataset; test?: Dataset } =
    {},
): Promise<Results> {
  const start = performance.now();
  const load = (split: "train" | "test", limit?: number) =>
    config.dataset === "cifar10"
      ? loadCifar10(split, { dataDir: config.dataDir || undefined, limit })
      : loadMnist(split, { limit });
  // The training split is read only if a model has to be trained (not when both are cached).
  let train: Promise<Dataset> | undefined;
  const trainData = () =>
    train ??= options.train ? Promise.resolve(options.train) : load("train", config.trainExamples);
  const test = options.test ?? await load("test");
  const attack = { eps: config.eps, stepSize: config.stepSize, range: test.range };
  const models = {} as Results["models"];
  const trained = {} as Record<"natural" | "adversarial", tfl.LayersModel>;
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await trainModel(trainConfig(config, kind), {
      data: trainData,
      cacheDir: options.cacheDir,
      retrain: options.retrain,
      quiet: options.quiet,
      label: `train ${kind}`,
    });
    if (t.fromCache && !options.quiet) console.error(`${kind} model: cached at ${t.dir}`);
    const acc = await evaluate(t.model, test, {
      limit: config.evalExamples,
      attack: { ...attack, steps: config.evalSteps, restarts: 1, seed: config.seed },
      label: options.quiet ? undefined : `eval ${kind} (PGD-${config.evalSteps})`,
    });
    models[kind] = {
      train: t.config,
      hash: t.hash,
      fromCache: t.fromCache,
      trainSeconds: t.trainSeconds,
      accuracy: { n: acc.n, natural: acc.natural, pgd: acc.adversarial! },
    };
    trained[kind] = t.model;
  }

  const rng = new Rng(config.seed);
  const picks = rng.sample(test.n, config.examples);
  const d = test.shape[0] * test.shape[1] * test.shape[2], r = config.restarts;
  const [lo, hi] = test.range;
  const examples: Results["examples"] = [];
  for (const [e, index] of picks.entries()) {
    const { x, y } = gather(test, Array(r).fill(index));
    const x0 = await x.data() as Float32Array;
    const entry = { index, label: test.labels[index], losses: {} } as Results["examples"][number];
    // The random starts themselves: uniform points of the ball, clipped to the pixel range.
    const starts = new Float32Array(r * d);
    const noise = new Rng(config.seed + 7 + e).uniform(r * d, -config.eps, config.eps);
    for (let i = 0; i < r * d; i++) starts[i] = Math.min(hi, Math.max(lo, x0[i] + noise[i])) - x0[i];
    entry.randomGeometry = pairwiseGeometry(starts, r, d);
    for (const kind of ["natural", "adversarial"] as const) {
      const res = await pgd(trained[kind], x, y, {
        ...attack,
        steps: config.steps,
        restarts: 1,
        seed: config.seed * 1000 + e,
      });
      const adv = await res.adv.data() as Float32Array;
      res.adv.dispose();
      const delta = new Float32Array(r * d);
      for (let i = 0; i < r * d; i++) delta[i] = adv[i] - x0[i];
      entry.losses[kind] = Array.from(res.finalLosses[0]);
      entry[kind] = {
        geometry: pairwiseGeometry(delta, r, d),
        robustRestarts: res.correct[0].filter(Boolean).length,
      };
    }
    x.dispose();
    y.dispose();
    examples.push(entry);
    if (!options.quiet) console.error(`example ${e + 1}/${picks.length} (test #${index}) done`);
  }
  const backend = currentBackend();
  return {
    experiment: "figure1",
    dataset: config.dataset,
    preset: options.preset ?? "quick",
    config,
    seed: config.seed,
    backend: { name: backend?.name ?? tf.getBackend(), detail: backend?.detail ?? "" },
    versions: versions(),
    wall_seconds: (performance.now() - start) / 1000,
    models,
    randomBallDistance: config.eps * Math.sqrt(2 * d / 3),
    examples,
  };
}

const TITLE = { mnist: "MNIST", cifar10: "CIFAR-10" } as const;

/** The accuracies the paper reports for its models (Tables 1 and 2, and Sec. 4 for natural CIFAR-10 training). */
const PAPER_ACCURACY = {
  mnist: {
    natural: "98.8% natural (model A, Table 1)",
    adversarial: "98.8% natural, 93.2% PGD-40 (model A, Table 1)",
  },
  cifar10: {
    natural: "95.2% natural (wide ResNet, Sec. 4)",
    adversarial: "87.3% natural, 45.8% PGD-20 (wide ResNet, Table 2)",
  },
} as const;

const COLORS = { natural: "#1f77b4", adversarial: "#d62728" };

/** Histogram bins of `values` on a log10 scale: rows {lo, hi, count}. */
function logBins(values: number[], bins: number): { lo: number; hi: number; count: number }[] {
  const floor = 1e-4;
  const logs = values.map((v) => Math.log10(Math.max(v, floor)));
  let a = Math.min(...logs), b = Math.max(...logs);
  if (b - a < 0.02) {
    a -= 0.01;
    b += 0.01;
  }
  const w = (b - a) / bins;
  const counts = new Array(bins).fill(0);
  for (const l of logs) counts[Math.min(bins - 1, Math.floor((l - a) / w))]++;
  return counts.map((count, i) => ({ lo: 10 ** (a + i * w), hi: 10 ** (a + (i + 1) * w), count }));
}

/** The Vega-Lite spec of the figure: one panel per example, both models' histograms on a log loss axis. */
export function figure(results: Results): VegaLiteSpec {
  const rows = results.examples.flatMap((ex, i) =>
    (["natural", "adversarial"] as const).flatMap((model) =>
      logBins(ex.losses[model], 20).map((b) => ({
        example: `example ${i + 1} (test #${ex.index}, label ${ex.label})`,
        model: model === "natural" ? "natural training" : "adversarial training",
        ...b,
      }))
    )
  );
  const c = results.config;
  const lo = Math.min(...rows.map((r) => r.lo)), hi = Math.max(...rows.map((r) => r.hi));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `Figure 1 (${TITLE[results.dataset]}): loss at the end of PGD from ${c.restarts} random starts`,
      subtitle: [
        `ε = ${c.eps}, ${c.steps} PGD steps of ${c.stepSize}, ${results.examples.length} random test examples. ` +
        `Blue: naturally trained model, red: adversarially trained model.`,
        "Paper: the adversarially trained model's final losses are far lower, and both are well concentrated.",
      ],
    },
    data: { values: rows },
    facet: { column: { field: "example", type: "nominal", title: null } },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 190,
      height: 150,
      mark: { type: "rect", opacity: 0.75 },
      encoding: {
        x: {
          field: "lo",
          type: "quantitative",
          bin: "binned",
          scale: { type: "log", domain: [lo / 1.5, hi * 1.5], nice: false },
          title: "final loss (log scale)",
          axis: { format: "~g", labelOverlap: true },
        },
        x2: { field: "hi" },
        y: { field: "count", type: "quantitative", title: "restarts", stack: null },
        color: {
          field: "model",
          type: "nominal",
          scale: { domain: ["natural training", "adversarial training"], range: [COLORS.natural, COLORS.adversarial] },
          legend: { title: null, orient: "top", labelLimit: 400 },
        },
      },
    },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** The network of a training config in words: "conv 16, conv 32, FC 512" or "ResNet, 5 units/stage, filters ...". */
export function netText(t: TrainConfig): string {
  return isResNet(t.model)
    ? `ResNet, ${t.model.units} units/stage, filters ${t.model.filters.join(", ")}`
    : `conv ${t.model.conv1}, conv ${t.model.conv2}, FC ${t.model.fc}`;
}

/** The training of a config in words: steps, batch, optimiser and adversary ("..., PGD 4×0.1"). */
export function trainingText(t: TrainConfig): string {
  const opt = t.optimizer === "adam" ? optimizerText(t) : `${optimizerText(t)}, decay ${t.weightDecay ?? 0}`;
  const adversary = t.method === "pgd"
    ? `, PGD ${t.attackSteps}×${t.attackStepSize}`
    : t.method === "fgsm"
    ? `, FGSM step ${t.attackStepSize}${t.randomStart ? " from a random start" : ""}`
    : "";
  return `${t.steps} steps of ${t.batch}, ${opt}${adversary}`;
}

/** The markdown table of what was measured, with the paper's claim beside each number. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const lines = [
    `# Figure 1 (${TITLE[results.dataset]}): loss values at the end of PGD`,
    "",
    `ε = ${c.eps}, PGD ${c.steps} steps of ${c.stepSize}, ${c.restarts} random starts on each of ${c.examples} random ` +
    `test examples. Preset \`${results.preset}\`, seed ${results.seed}, backend ${results.backend.name}, ` +
    `${fmtNum(results.wall_seconds, 0)} s.`,
    "",
    `![Figure 1](figure1_${results.dataset}.png)`,
    "",
    "## The models",
    "",
    markdownTable(
      ["model", "net", "training", "natural acc.", `PGD-${c.evalSteps} acc. (ε ${c.eps})`, "paper"],
      (["natural", "adversarial"] as const).map((k) => {
        const t = m[k].train;
        return [
          k === "natural" ? "naturally trained" : "adversarially trained",
          netText(t),
          trainingText(t),
          fmtPct(m[k].accuracy.natural),
          fmtPct(m[k].accuracy.pgd),
          PAPER_ACCURACY[results.dataset][k],
        ];
      }),
      ["l", "l", "l", "r", "r", "l"],
    ),
    "",
    `Accuracies on the first ${m.natural.accuracy.n} test images.`,
    "",
    "## The maxima, per example",
    "",
  ];
  const rows: (string | number)[][] = [];
  for (const [i, ex] of results.examples.entries()) {
    for (const k of ["natural", "adversarial"] as const) {
      const s = stats(ex.losses[k]);
      const g = ex[k].geometry;
      rows.push([
        `${i + 1} (#${ex.index})`,
        k,
        `${fmtNum(s.mean, 3)} ± ${fmtNum(s.std, 3)}`,
        `${fmtNum(s.min, 3)} – ${fmtNum(s.max, 3)}`,
        `${ex[k].robustRestarts}/${c.restarts}`,
        `${fmtNum(g.distance.mean, 2)} (random ${fmtNum(ex.randomGeometry.distance.mean, 2)})`,
        `${fmtNum(g.angle.mean, 1)}° (random ${fmtNum(ex.randomGeometry.angle.mean, 1)}°)`,
      ]);
    }
  }
  lines.push(
    markdownTable(
      ["example", "model", "final loss mean ± sd", "min – max", "still correct", "pairwise L2", "pairwise angle"],
      rows,
      ["l", "l", "r", "r", "r", "r", "r"],
    ),
    "",
    "## The paper's claims beside ours",
    "",
  );
  const all = (k: "natural" | "adversarial") => results.examples.flatMap((e) => e.losses[k]);
  const nat = stats(all("natural")), adv = stats(all("adversarial"));
  const dist = stats(results.examples.map((e) => e.adversarial.geometry.distance.mean));
  const rdist = stats(results.examples.map((e) => e.randomGeometry.distance.mean));
  const ang = stats(
    results.examples.flatMap((e) => [e.adversarial.geometry.angle.mean, e.natural.geometry.angle.mean]),
  );
  const spread = (s: ReturnType<typeof stats>) => s.std / Math.max(s.mean, 1e-12);
  lines.push(markdownTable(
    ["claim (Madry et al., Sec. 3.1)", "measured here"],
    [
      [
        "the adversarially trained model's final losses are far lower than the natural model's",
        `mean ${fmtNum(adv.mean, 3)} vs ${fmtNum(nat.mean, 3)} (${
          fmtNum(nat.mean / Math.max(adv.mean, 1e-12), 0)
        }× lower)`,
      ],
      [
        "the final losses are well concentrated, without extreme outliers",
        `per-example sd / mean: natural ${
          fmtNum(stats(results.examples.map((e) => spread(stats(e.losses.natural)))).mean, 3)
        }, adversarial ${fmtNum(stats(results.examples.map((e) => spread(stats(e.losses.adversarial)))).mean, 3)}`,
      ],
      [
        "pairwise L2 distances of the maxima are close to those of random points in the ℓ∞ ball",
        `adversarial model: ${fmtNum(dist.mean, 2)}; random starts (ball ∩ pixel range): ${fmtNum(rdist.mean, 2)}; ` +
        `uniform ε-cube: ${fmtNum(results.randomBallDistance, 2)}`,
      ],
      [
        "angles between the maxima are close to 90°",
        `mean ${fmtNum(ang.mean, 1)}° (both models, all examples); random starts: ${
          fmtNum(stats(results.examples.map((e) => e.randomGeometry.angle.mean)).mean, 1)
        }°`,
      ],
    ],
  ));
  lines.push(
    "",
    "Distances and angles are between the perturbations δ = x_adv − x of the restarts. The random-point baseline " +
      `clips the points to the pixel range [${results.dataset === "cifar10" ? "0, 255" : "0, 1"}] as the attack ` +
      "must; pixels at the edge of the range can only move one way, which makes that ball smaller than the full " +
      "ε-cube and tilts its points, so even random pairs meet at less than 90° (strongly on MNIST, whose " +
      "background is black).",
    "",
  );
  return lines.join("\n");
}

/** How the results are drawn: `figure1_<dataset>.*`. */
export const DRAWING: Drawing<Results> = { prefix: "figure1", figure, table };

/** Writes the results JSON and, from it, the spec, SVG, PNG and markdown. */
export function write(results: Results, out: string): Promise<string[]> {
  return writeResults(DRAWING, results, out);
}

/** Redraws the figure from a saved results file. */
export function redraw(resultsPath: string, out: string): Promise<string[]> {
  return redrawResults(DRAWING, resultsPath, out);
}

/** The command line: `deno task figure1 [flags]`. */
export function main(args: string[]): Promise<void> {
  return experimentMain(args, specFor(args), (config, common) => run(config, { ...common }), DRAWING);
}

if (import.meta.main) await runMain(() => main(Deno.args));
