/**
 * Figure 4 of Madry et al.: the adversarial training loss (the cross-entropy on
 * the adversarial examples each step trains on) over training iterations, MNIST
 * and CIFAR-10, with the natural model's training loss on clean examples for
 * contrast. The paper reads the steady decrease as the saddle point problem
 * being solved; on CIFAR-10 its sharp drops are the learning-rate decreases.
 *
 * Nothing is retrained: the loss histories are those that `trainModel` recorded
 * while training Figure 1's models (the zoo's `A_nat` and `A` of the same
 * recipe, so the same cache entries); a cached model needs no
 * data. Where a model is not cached it is trained as Figure 1 would train it.
 *
 *   deno task figure4                      # MNIST, and CIFAR-10 too where Figure 1's models are cached
 *   deno task figure4 --dataset cifar10    # CIFAR-10 only (Figure 1's CIFAR-10 quick models)
 *   deno task figure4 --preset paper       # Figure 1's paper models (model A; the wide ResNet)
 *   deno task figure4 --smooth 200         # moving average over 200 steps
 *
 * The results file keeps every step's loss up to {@link MAX_STORED} steps per
 * model; a longer history (the paper preset's 100,000 steps) is stored as means
 * of consecutive blocks of `every` steps. The figure draws at most `maxPoints`
 * raw points per model and the moving average as a line.
 *
 * @module
 */
import {
  type BaseConfig,
  DATASETS,
  defineExperiment,
  experimentMain,
  fmtNum,
  fmtPct,
  markdownTable,
  MODEL_COLORS,
  MODEL_PAIR,
  optimizerText,
  ratio,
  type Results as ResultsOf,
  type RunContext,
  runMain,
  type TrainConfig,
  type VegaLiteSpec,
} from "../mod.ts";

/** Every hyperparameter: the zoo's recipe of Figure 1's models, and how the curves are drawn. */
export interface Config extends BaseConfig {
  /** Window of the moving average drawn over the raw losses, in training steps. */
  smooth: number;
  /** Raw loss points drawn per model at most (evenly spaced); the results keep more. */
  maxPoints: number;
}

/** Steps of history stored per model in the results file before it is stored as block means. */
export const MAX_STORED = 20000;

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

/** What `run` computes; the harness adds the header. */
export interface Body {
  models: Record<"natural" | "adversarial", ModelHistory>;
}

/** The results file, `figure4_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

/** Figure 4 as an experiment of the harness. */
export const experiment = defineExperiment<Config, Body>({
  name: "figure4",
  summary:
    "adversarial training loss over training iterations (Figure 1's models, not retrained), natural for contrast",
  run,
  figure,
  table,
  // Figure 1's models: read from its cache, trained only where missing; other datasets run only where cached.
  models: () => [MODEL_PAIR.natural, MODEL_PAIR.adversarial],
  alsoCached: true,
  datasets: {
    mnist: { defaults: { smooth: 50, maxPoints: 1500 }, presets: { paper: { smooth: 1000 }, smoke: { smooth: 2 } } },
    cifar10: { defaults: { smooth: 25, maxPoints: 1500 }, presets: { paper: { smooth: 1000 }, smoke: { smooth: 2 } } },
  },
  help: { smooth: "moving-average window, training steps", maxPoints: "raw points drawn per model" },
  counts: ["smooth", "maxPoints"],
});

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

/** The loss histories of Figure 1's models (trained only where none is cached; the training data is loaded only then). */
async function run(_config: Config, ctx: RunContext): Promise<Body> {
  const models = {} as Body["models"];
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await ctx.model(MODEL_PAIR[kind]);
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
  return { models };
}

/** Floor of the log loss axis: a batch loss of exactly 0 would not be drawn. */
const FLOOR = 1e-4;

/** The training adversary in one word: "PGD" or "FGSM". */
function adversaryName(t: TrainConfig): string {
  return t.method === "fgsm" ? "FGSM" : "PGD";
}

/** Legend labels of the two models. */
function labels(results: Results): Record<"natural" | "adversarial", string> {
  return {
    natural: "natural training (loss on clean examples)",
    adversarial: `adversarial training (loss on ${adversaryName(results.models.adversarial.train)} examples)`,
  };
}

/** The learning-rate decreases of a model's schedule: the step and the rates before and after. */
export function lrDrops(t: TrainConfig): { step: number; from: number; to: number }[] {
  const b = t.lrBoundaries ?? [];
  return b.map((step, i) => ({ step, from: i === 0 ? t.lr : t.lrValues![i - 1], to: t.lrValues![i] }));
}

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

/**
 * The Vega-Lite spec: raw losses as faint points, their moving average as a
 * line, log loss axis; dashed rules at the learning-rate decreases where the
 * schedule has any (CIFAR-10).
 */
export function figure(results: Results): VegaLiteSpec {
  const c = results.config;
  const LABELS = labels(results);
  const raw: { model: string; step: number; loss: number }[] = [];
  const line: { model: string; step: number; loss: number }[] = [];
  const drops: { model: string; step: number }[] = [];
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
    for (const d of lrDrops(m.train)) drops.push({ model: LABELS[kind], step: d.step });
  }
  const color = {
    field: "model",
    type: "nominal",
    scale: { domain: [LABELS.natural, LABELS.adversarial], range: [MODEL_COLORS.natural, MODEL_COLORS.adversarial] },
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
  // Losses within one decade (CIFAR-10's short runs: 1.1 to 2.4) would sit at the bottom of a "nice" log axis
  // rounded out to whole decades; such an axis spans the data instead.
  const all = raw.map((p) => p.loss);
  const [lo, hi] = [Math.min(...all), Math.max(...all)];
  const y = {
    field: "loss",
    type: "quantitative",
    title: "training cross-entropy loss (log scale)",
    scale: hi / lo < 10 ? { type: "log", domain: [lo / 1.05, hi * 1.05], nice: false } : { type: "log" },
    axis: { format: "~g" },
  };
  const thinned = (["natural", "adversarial"] as const).some((k) => results.models[k].loss.length > c.maxPoints);
  const a = results.models.adversarial.train;
  const adversary = a.method === "fgsm"
    ? `ε = ${a.eps}, one step of ${a.attackStepSize} from a random start: "fast" adversarial training`
    : `ε = ${a.eps}, ${a.attackSteps} steps of ${a.attackStepSize}, random start` +
      (a.epsRamp ? `, ε ramped up over the first ${a.epsRamp} steps` : "");
  const layer: unknown[] = [
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
  ];
  if (drops.length) {
    layer.push({
      data: { values: drops },
      mark: { type: "rule", strokeDash: [4, 4], strokeWidth: 1.2, opacity: 0.7 },
      encoding: { x, color },
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `Figure 4 (${DATASETS[results.dataset].title}): adversarial training loss over training iterations`,
      subtitle: [
        `Red: loss on the ${adversaryName(a)} examples each step trains on (${adversary}).`,
        "Blue: the naturally trained model's loss on clean examples, for contrast.",
        `Points: per-batch losses${
          thinned ? " (evenly thinned)" : ""
        }; lines: centred moving average over ${c.smooth} steps.`,
        ...(drops.length ? ["Dashed: each model's learning-rate decreases (÷10)."] : []),
        "Paper: the adversarial loss keeps decreasing during training, so the saddle point problem is being solved.",
        ...(drops.length ? ["Paper, CIFAR-10: its sharp drops correspond to decreases in the step size."] : []),
      ],
      anchor: "start",
    },
    width: 620,
    height: 320,
    layer,
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** Mean of the values from fraction `a` to fraction `b` of a series. */
function meanOver(xs: number[], a: number, b: number): number {
  const part = xs.slice(Math.floor(a * xs.length), Math.max(Math.floor(b * xs.length), Math.floor(a * xs.length) + 1));
  return part.reduce((s, v) => s + v, 0) / part.length;
}

function mean(xs: number[]): number {
  return xs.reduce((s, v) => s + v, 0) / Math.max(xs.length, 1);
}

/**
 * The mean loss over `window` training steps just before and just after each
 * learning-rate decrease of the model's schedule.
 */
export function aroundDrops(m: ModelHistory, window: number) {
  const w = Math.max(1, Math.round(window / m.every));
  return lrDrops(m.train).filter((d) => d.step < m.steps).map((d) => {
    const i = Math.round(d.step / m.every);
    return { ...d, before: mean(m.loss.slice(Math.max(0, i - w), i)), after: mean(m.loss.slice(i, i + w)) };
  });
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

/** A model's training in the table: its examples and optimiser ("PGD 4×0.1 (ε 0.3), Adam 0.001"). */
function trainingText(t: TrainConfig): string {
  const examples = t.method === "natural"
    ? "clean examples"
    : t.method === "fgsm"
    ? `FGSM step ${t.attackStepSize}${t.randomStart ? " from a random start" : ""} (ε ${t.eps})`
    : `PGD ${t.attackSteps}×${t.attackStepSize} (ε ${t.eps}${t.epsRamp ? `, ramped up over ${t.epsRamp} steps` : ""})`;
  return `${examples}, ${optimizerText(t)}`;
}

/** The markdown summary: the paper's statement beside what was measured. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const s = { natural: summarize(m.natural), adversarial: summarize(m.adversarial) };
  const adv = adversaryName(m.adversarial.train);
  const origin = (k: "natural" | "adversarial") =>
    m[k].fromCache ? "from the cache" : `trained in this run (${fmtNum(m[k].trainSeconds, 0)} s)`;
  const stored = (["natural", "adversarial"] as const).map((k) =>
    m[k].every === 1 ? `${k}: every step` : `${k}: means of ${m[k].every} steps`
  ).join(", ");
  const window = Math.max(5, Math.round(m.adversarial.steps / 25));
  const drops = { natural: aroundDrops(m.natural, window), adversarial: aroundDrops(m.adversarial, window) };
  const dropText = (k: "natural" | "adversarial") =>
    drops[k].map((d) =>
      `step ${d.step} (lr ${d.from} → ${d.to}): ${fmtNum(d.before, 3)} → ${fmtNum(d.after, 3)} ` +
      `(${fmtNum(100 * (d.after / d.before - 1), 1)}%)`
    ).join("; ");
  const rows: string[][] = [
    [
      "the adversarial training loss decreases consistently during training",
      `quarter means ${s.adversarial.quarters.map((v) => fmtNum(v, 3)).join(" → ")}: ` +
      `${s.adversarial.decreasing ? "decreasing in every quarter" : "not decreasing in every quarter"}; ` +
      `the last quarter is ${fmtNum(Math.abs(100 * s.adversarial.lastChange), 1)}% ` +
      `${s.adversarial.lastChange < 0 ? "below" : "above"} the third`,
    ],
    [
      "so the saddle point problem (min over weights of the max over perturbations) is being solved",
      `the inner maximum found by ${adv}${
        adv === "FGSM" ? " (one step: a weaker inner maximisation than the paper's PGD)" : ""
      } falls from ${fmtNum(s.adversarial.quarters[0], 3)} to ` +
      `${fmtNum(s.adversarial.finalLoss, 3)} (last 10% of steps), with ${fmtPct(s.adversarial.finalAccuracy)} of ` +
      `the ${adv} examples classified correctly`,
    ],
  ];
  if (drops.adversarial.length || drops.natural.length) {
    rows.push([
      "(CIFAR-10) the sharp drops in the loss correspond to decreases in the step size",
      `mean loss over the ${window} steps before → after each decrease: adversarial ${
        dropText("adversarial") || "none"
      }; natural ${dropText("natural") || "none"}`,
    ]);
  } else if (results.dataset === "cifar10") {
    rows.push([
      "(CIFAR-10) the sharp drops in the loss correspond to decreases in the step size",
      "not tested here: these models' learning rate changes linearly (one cycle), with no step decreases; " +
      "`--lr-schedule steps` (as in the `paper` preset) has them",
    ]);
  }
  rows.push([
    "(contrast) the natural training loss, on clean examples",
    `${fmtNum(s.natural.quarters[0], 3)} → ${fmtNum(s.natural.finalLoss, 3)}, ` +
    `${ratio(s.adversarial.finalLoss, s.natural.finalLoss)} below the final ` +
    `adversarial loss`,
  ]);
  const augmented = m.natural.train.augment || m.adversarial.train.augment;
  const lines = [
    `# Figure 4 (${DATASETS[results.dataset].title}): adversarial training loss over training iterations`,
    "",
    `Loss histories recorded while training Figure 1's models (preset \`${results.preset}\`, seed ${results.seed}): ` +
    `natural model ${origin("natural")}, adversarially trained model ${
      origin("adversarial")
    }. Centred moving average over ` +
    `${c.smooth} steps. Backend ${results.backend.name}, ${fmtNum(results.wall_seconds, 0)} s. Stored in the results ` +
    `file: ${stored}.`,
    "",
    `![Figure 4](figure4_${results.dataset}.png)`,
    "",
    "## Mean training loss per quarter of training",
    "",
    markdownTable(
      ["model", "training", "steps", "1st quarter", "2nd", "3rd", "4th", "last 10%", "accuracy, last 10%"],
      (["natural", "adversarial"] as const).map((k) => [
        k === "natural" ? "naturally trained" : "adversarially trained",
        trainingText(m[k].train),
        m[k].steps,
        ...s[k].quarters.map((v) => fmtNum(v, 3)),
        fmtNum(s[k].finalLoss, 3),
        fmtPct(s[k].finalAccuracy),
      ]),
      ["l", "l", "r", "r", "r", "r", "r", "r", "r"],
    ),
    "",
    `Losses and accuracies are on the batches trained on: ${adv} examples made against the current weights for the ` +
    `adversarially trained model, clean examples for the natural one${
      augmented ? " (both after the pad-4 crop and flip augmentation)" : ""
    }.`,
    "",
    "## The paper's statement beside ours",
    "",
    markdownTable(["statement (Madry et al., Sec. 4, Figure 4)", "measured here"], rows),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
