/**
 * Figure 4 of Madry et al.: the adversarial training loss (the cross-entropy on
 * the PGD examples each step trains on) over training iterations, with the
 * natural model's training loss on clean examples for contrast. The paper reads
 * the steady decrease as the saddle point problem being solved.
 *
 * Nothing is retrained: the loss histories are those that `trainModel` recorded
 * while training Figure 1's models (its `trainConfig`, the same fields, so the
 * same cache entries). Where a model is not cached it is trained as Figure 1
 * would train it.
 *
 *   deno task figure4                   # quick preset: Figure 1's quick models
 *   deno task figure4 --preset paper    # Figure 1's paper models (model A)
 *   deno task figure4 --smooth 200      # moving average over 200 steps
 *
 * The results file keeps every step's loss up to {@link MAX_STORED} steps per
 * model; a longer history (the paper preset's 100,000 steps) is stored as means
 * of consecutive blocks of `every` steps. The figure draws at most `maxPoints`
 * raw points per model and the moving average as a line.
 *
 * @module
 */
import {
  currentBackend,
  type Dataset,
  type ExperimentSpec,
  fmtNum,
  fmtPct,
  kebab,
  loadMnist,
  markdownTable,
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

/** Every hyperparameter: Figure 1's training fields, and how the curves are drawn. */
export interface Config {
  /** Dataset: "mnist" (CIFAR-10 is not built yet). */
  dataset: string;
  /** ε of the training adversary, pixel units. */
  eps: number;
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
  /** Seed of the models (as Figure 1). */
  seed: number;
  /** Window of the moving average drawn over the raw losses, in training steps. */
  smooth: number;
  /** Raw loss points drawn per model at most (evenly spaced); the results keep more. */
  maxPoints: number;
}

/** Steps of history stored per model in the results file before it is stored as block means. */
export const MAX_STORED = 20000;

/** The fields of Figure 1's config that decide its trained models. */
const TRAIN_FIELDS = [
  "eps",
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
  "seed",
] as const;

/** Figure 1's training fields of one of its presets (its defaults for "quick"). */
function figure1Training(preset: "quick" | "paper" | "smoke"): Partial<Config> {
  const c: figure1.Config = { ...figure1.DEFAULTS, ...(preset === "quick" ? {} : figure1.PRESETS[preset]) };
  const out: Partial<Config> = {};
  for (const k of TRAIN_FIELDS) out[k] = c[k];
  return out;
}

/** The quick preset: Figure 1's quick models. */
export const DEFAULTS: Config = {
  dataset: "mnist",
  ...figure1Training("quick"),
  smooth: 50,
  maxPoints: 1500,
} as Config;

/** Figure 1's paper models (100,000 steps each) and its smoke models. */
export const PRESETS: Record<string, Partial<Config>> = {
  paper: { ...figure1Training("paper"), smooth: 1000 },
  smoke: { ...figure1Training("smoke"), smooth: 2 },
};

/** The command line of this experiment. */
export const SPEC: ExperimentSpec<Config> = {
  name: "figure4",
  summary:
    "adversarial training loss over training iterations (Figure 1's models, not retrained), natural for contrast",
  defaults: DEFAULTS,
  presets: PRESETS,
  help: {
    dataset: "dataset: mnist (cifar10 is not built yet)",
    eps: "ε of the training adversary, pixels in [0,1]",
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
    seed: "random seed of the models",
    smooth: "moving-average window, training steps",
    maxPoints: "raw points drawn per model",
  },
  validate(c) {
    checkDataset(c.dataset);
    if (!(c.eps > 0 && c.eps <= 1)) {
      throw new UserError(`--eps must be in (0, 1] for MNIST pixels in [0,1], got ${c.eps}`);
    }
    for (const k of ["naturalSteps", "advSteps", "smooth", "maxPoints"] as const) {
      if (!Number.isInteger(c[k]) || c[k] < 1) throw new UserError(`--${kebab(k)} must be an integer ≥ 1, got ${c[k]}`);
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
  return figure1.trainConfig({ ...figure1.DEFAULTS, ...c, dataset: "mnist" }, kind);
}

/** One model's recorded training. */
export interface ModelHistory {
  train: TrainConfig;
  hash: string;
  /** True when the model and its history came from the cache (nothing trained in this run). */
  fromCache: boolean;
  trainSeconds: number;
  /** Training steps recorded. */
  steps: number;
  /** Each stored value is the mean over this many consecutive steps (1: every step). */
  every: number;
  /** Training loss (on PGD examples for the adversarial model, clean ones for the natural), per block of `every` steps. */
  loss: number[];
  /** Accuracy on the examples trained on, per block of `every` steps. */
  accuracy: number[];
}

/** The results file, `figure4_mnist.results.json`. */
export interface Results {
  experiment: "figure4";
  dataset: "mnist";
  preset: string;
  config: Config;
  seed: number;
  backend: { name: string; detail: string };
  versions: Record<string, string>;
  wall_seconds: number;
  models: Record<"natural" | "adversarial", ModelHistory>;
}

/** Means of consecutive blocks of `every` values (the last block may be shorter). */
export function blockMeans(xs: number[], every: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < xs.length; i += every) {
    const block = xs.slice(i, i + every);
    out.push(block.reduce((s, v) => s + v, 0) / block.length);
  }
  return out;
}

/** Centred moving average over `window` values (an odd window of 2⌊window/2⌋ + 1; narrower at the ends). */
export function movingAverage(xs: number[], window: number): number[] {
  const half = Math.floor(window / 2);
  const prefix = [0];
  for (const v of xs) prefix.push(prefix[prefix.length - 1] + v);
  return xs.map((_, i) => {
    const lo = Math.max(0, i - half), hi = Math.min(xs.length, i + half + 1);
    return (prefix[hi] - prefix[lo]) / (hi - lo);
  });
}

/** Runs the experiment: the loss histories of Figure 1's models (trained only where none is cached). */
export async function run(
  config: Config,
  options: { preset?: string; cacheDir?: string; retrain?: boolean; quiet?: boolean; train?: Dataset } = {},
): Promise<Results> {
  checkDataset(config.dataset);
  const start = performance.now();
  const train = options.train ?? await loadMnist("train", { limit: config.trainExamples });
  const models = {} as Results["models"];
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await trainModel(trainConfigOf(config, kind), {
      data: train,
      cacheDir: options.cacheDir,
      retrain: options.retrain,
      quiet: options.quiet,
      label: `train ${kind}`,
    });
    if (!options.quiet) {
      console.error(`${kind} model: ${t.fromCache ? `cached at ${t.dir}` : "trained in this run (none was cached)"}`);
    }
    const steps = t.history.loss.length;
    const every = Math.max(1, Math.ceil(steps / MAX_STORED));
    models[kind] = {
      train: t.config,
      hash: t.hash,
      fromCache: t.fromCache,
      trainSeconds: t.trainSeconds,
      steps,
      every,
      loss: blockMeans(t.history.loss, every),
      accuracy: blockMeans(t.history.accuracy, every),
    };
    t.model.dispose();
  }
  const backend = currentBackend();
  return {
    experiment: "figure4",
    dataset: "mnist",
    preset: options.preset ?? "quick",
    config,
    seed: config.seed,
    backend: { name: backend?.name ?? tf.getBackend(), detail: backend?.detail ?? "" },
    versions: versions(),
    wall_seconds: (performance.now() - start) / 1000,
    models,
  };
}

const COLORS = { natural: "#1f77b4", adversarial: "#d62728" };
const LABELS = {
  natural: "natural training (loss on clean examples)",
  adversarial: "adversarial training (loss on PGD examples)",
};
/** Floor of the log loss axis: a batch loss of exactly 0 would not be drawn. */
const FLOOR = 1e-4;

/** Evenly spaced indices into `n` values, at most `k` of them, always including the last. */
function thin(n: number, k: number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  const out = Array.from({ length: k }, (_, i) => Math.round(i * (n - 1) / (k - 1)));
  return [...new Set(out)];
}

/** The smoothed curve of one model: moving average of `config.smooth` steps, at its stored points. */
function smoothed(m: ModelHistory, smooth: number): number[] {
  return movingAverage(m.loss, Math.max(1, Math.round(smooth / m.every)));
}

/** The Vega-Lite spec: raw losses as faint points, their moving average as a line, log loss axis. */
export function figure(results: Results): VegaLiteSpec {
  const c = results.config;
  const raw: { model: string; step: number; loss: number }[] = [];
  const line: { model: string; step: number; loss: number }[] = [];
  for (const kind of ["natural", "adversarial"] as const) {
    const m = results.models[kind];
    // Step of stored value i: the last step of its block (1-based steps).
    const stepOf = (i: number) => Math.min((i + 1) * m.every, m.steps);
    for (const i of thin(m.loss.length, c.maxPoints)) {
      raw.push({ model: LABELS[kind], step: stepOf(i), loss: Math.max(m.loss[i], FLOOR) });
    }
    const s = smoothed(m, c.smooth);
    for (const i of thin(s.length, 600)) {
      line.push({ model: LABELS[kind], step: stepOf(i), loss: Math.max(s[i], FLOOR) });
    }
  }
  const color = {
    field: "model",
    type: "nominal",
    scale: { domain: [LABELS.natural, LABELS.adversarial], range: [COLORS.natural, COLORS.adversarial] },
    legend: {
      title: null,
      orient: "top",
      labelLimit: 400,
      symbolType: "stroke",
      symbolStrokeWidth: 3,
      symbolOpacity: 1,
    },
  };
  const x = {
    field: "step",
    type: "quantitative",
    title: `training iteration (batches of ${c.batch})`,
    axis: { tickMinStep: 1 },
  };
  const y = {
    field: "loss",
    type: "quantitative",
    title: "training cross-entropy loss (log scale)",
    scale: { type: "log" },
    axis: { format: "~g" },
  };
  const thinned = (["natural", "adversarial"] as const).some((k) => results.models[k].loss.length > c.maxPoints);
  const a = results.models.adversarial;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: "Figure 4 (MNIST): adversarial training loss over training iterations",
      subtitle: [
        `Red: loss on the PGD examples each step trains on (ε = ${a.train.eps}, ${a.train.attackSteps} steps of ` +
        `${a.train.attackStepSize}, random start).`,
        "Blue: the naturally trained model's loss on clean examples, for contrast.",
        `Points: per-batch losses${
          thinned ? " (evenly thinned)" : ""
        }; lines: centred moving average over ${c.smooth} steps.`,
        "Paper: the adversarial loss keeps decreasing during training, so the saddle point problem is being solved.",
      ],
      anchor: "start",
    },
    width: 620,
    height: 320,
    layer: [
      {
        data: { values: raw },
        mark: { type: "circle", size: 6, opacity: 0.22 },
        encoding: { x, y, color },
      },
      {
        data: { values: line },
        mark: { type: "line", strokeWidth: 2.2 },
        encoding: { x, y, color },
      },
    ],
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** Mean of the values from fraction `a` to fraction `b` of a series. */
function meanOver(xs: number[], a: number, b: number): number {
  const part = xs.slice(Math.floor(a * xs.length), Math.max(Math.floor(b * xs.length), Math.floor(a * xs.length) + 1));
  return part.reduce((s, v) => s + v, 0) / part.length;
}

/** What the table reports of one model's history. */
export function summarize(m: ModelHistory) {
  const quarters = [0, 1, 2, 3].map((q) => meanOver(m.loss, q / 4, (q + 1) / 4));
  return {
    quarters,
    /** Each quarter's mean loss below the previous one's. */
    decreasing: quarters.every((v, i) => i === 0 || v < quarters[i - 1]),
    /** Change of the last quarter's mean loss against the third's, as a fraction. */
    lastChange: quarters[3] / quarters[2] - 1,
    finalLoss: meanOver(m.loss, 0.9, 1),
    finalAccuracy: meanOver(m.accuracy, 0.9, 1),
  };
}

/** `a / b` as "12×" or, below 10, "1.3×". */
function ratio(a: number, b: number): string {
  const r = a / Math.max(b, 1e-12);
  return `${fmtNum(r, r < 10 ? 1 : 0)}×`;
}

/** The markdown summary: the paper's statement beside what was measured. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const s = { natural: summarize(m.natural), adversarial: summarize(m.adversarial) };
  const origin = (k: "natural" | "adversarial") =>
    m[k].fromCache ? "from the cache" : `trained in this run (${fmtNum(m[k].trainSeconds, 0)} s)`;
  const stored = (["natural", "adversarial"] as const).map((k) =>
    m[k].every === 1 ? `${k}: every step` : `${k}: means of ${m[k].every} steps`
  ).join(", ");
  const lines = [
    "# Figure 4 (MNIST): adversarial training loss over training iterations",
    "",
    `Loss histories recorded while training Figure 1's models (preset \`${results.preset}\`, seed ${results.seed}): ` +
    `natural model ${origin("natural")}, adversarially trained model ${
      origin("adversarial")
    }. Centred moving average over ` +
    `${c.smooth} steps. Backend ${results.backend.name}, ${fmtNum(results.wall_seconds, 0)} s. Stored in the results ` +
    `file: ${stored}.`,
    "",
    "![Figure 4](figure4_mnist.png)",
    "",
    "## Mean training loss per quarter of training",
    "",
    markdownTable(
      ["model", "training", "steps", "1st quarter", "2nd", "3rd", "4th", "last 10%", "accuracy, last 10%"],
      (["natural", "adversarial"] as const).map((k) => {
        const t = m[k].train;
        return [
          k === "natural" ? "naturally trained" : "adversarially trained",
          t.method === "natural"
            ? `clean examples, Adam ${t.lr}`
            : `PGD ${t.attackSteps}×${t.attackStepSize} (ε ${t.eps}), Adam ${t.lr}`,
          m[k].steps,
          ...s[k].quarters.map((v) => fmtNum(v, 3)),
          fmtNum(s[k].finalLoss, 3),
          fmtPct(s[k].finalAccuracy),
        ];
      }),
      ["l", "l", "r", "r", "r", "r", "r", "r", "r"],
    ),
    "",
    "Losses and accuracies are on the batches trained on: PGD examples made against the current weights for the " +
    "adversarially trained model, clean examples for the natural one.",
    "",
    "## The paper's statement beside ours",
    "",
    markdownTable(
      ["statement (Madry et al., Sec. 4, Figure 4)", "measured here"],
      [
        [
          "the adversarial training loss decreases consistently during training",
          `quarter means ${s.adversarial.quarters.map((v) => fmtNum(v, 3)).join(" → ")}: ` +
          `${s.adversarial.decreasing ? "decreasing in every quarter" : "not decreasing in every quarter"}; ` +
          `the last quarter is ${fmtNum(Math.abs(100 * s.adversarial.lastChange), 1)}% ` +
          `${s.adversarial.lastChange < 0 ? "below" : "above"} the third`,
        ],
        [
          "so the saddle point problem (min over weights of the max over perturbations) is being solved",
          `the inner maximum found by PGD falls from ${fmtNum(s.adversarial.quarters[0], 3)} to ` +
          `${fmtNum(s.adversarial.finalLoss, 3)} (last 10% of steps), with ${fmtPct(s.adversarial.finalAccuracy)} of ` +
          `the PGD examples classified correctly`,
        ],
        [
          "(contrast) the natural training loss, on clean examples",
          `${fmtNum(s.natural.quarters[0], 3)} → ${fmtNum(s.natural.finalLoss, 3)}, ` +
          `${ratio(s.adversarial.finalLoss, s.natural.finalLoss)} below the final ` +
          `adversarial loss`,
        ],
      ],
    ),
    "",
  ];
  return lines.join("\n");
}

/** How the results are drawn: `figure4_<dataset>.*`. */
export const DRAWING: Drawing<Results> = { prefix: "figure4", figure, table };

/** Writes the results JSON and, from it, the spec, SVG, PNG and markdown. */
export function write(results: Results, out: string): Promise<string[]> {
  return writeResults(DRAWING, results, out);
}

/** Redraws the figure from a saved results file. */
export function redraw(resultsPath: string, out: string): Promise<string[]> {
  return redrawResults(DRAWING, resultsPath, out);
}

/** The command line: `deno task figure4 [flags]`. */
export function main(args: string[]): Promise<void> {
  return experimentMain(args, SPEC, (config, common) => run(config, { ...common }), DRAWING);
}

if (import.meta.main) await runMain(() => main(Deno.args));
