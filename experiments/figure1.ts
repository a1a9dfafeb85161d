/**
 * Figure 1 of Madry et al.: the loss at the end of PGD from many random starts,
 * for a naturally and an adversarially trained model (MNIST; CIFAR-10 with
 * `--dataset cifar10`). The paper's claims about those maxima are measured too:
 * their loss values are concentrated, and they are distinct points (pairwise L2
 * distances close to those of random points in the ball, angles close to 90°).
 *
 *   deno task figure1                   # quick preset, minutes on a laptop CPU
 *   deno task figure1 --preset paper    # the paper's settings (about a CPU-day)
 *   deno task figure1 --restarts 50     # any config field is a flag
 *
 * @module
 */
import {
  ATTACK_HELP,
  type AttackFields,
  type BaseConfig,
  DATASETS,
  defineExperiment,
  evaluate,
  experimentMain,
  fmtNum,
  fmtPct,
  gather,
  markdownTable,
  MODEL_COLORS,
  MODEL_PAIR,
  netText,
  pgd,
  type Results as ResultsOf,
  Rng,
  type RunContext,
  runMain,
  stats,
  type TrainConfig,
  trainingText,
  UserError,
  type VegaLiteSpec,
} from "../mod.ts";

/** Every hyperparameter: the zoo's recipe of the two models, and the attack (its restarts per example). */
export interface Config extends BaseConfig, AttackFields {
  /** Random test examples shown. */
  examples: number;
  /** Test examples for the accuracy of each model. */
  evalExamples: number;
  /** PGD iterations of the accuracy evaluation (step size `stepSize`). */
  evalSteps: number;
}

/** What one model shows on one example. */
export interface ModelOnExample {
  /** Pairwise geometry of the restarts' final perturbations. */
  geometry: ReturnType<typeof pairwiseGeometry>;
  /** Restarts after which the model still classified the example correctly. */
  robustRestarts: number;
}

/** What `run` computes; the harness adds the header. */
export interface Body {
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

/** The results file, `figure1_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

/** Figure 1 as an experiment of the harness. */
export const experiment = defineExperiment<Config, Body>({
  name: "figure1",
  summary: "loss values at the end of PGD from many random starts, natural vs adversarially trained model",
  models: () => [MODEL_PAIR.natural, MODEL_PAIR.adversarial],
  run,
  figure,
  table,
  datasets: {
    mnist: {
      defaults: { eps: 0.3, steps: 40, stepSize: 0.01, restarts: 100, examples: 4, evalExamples: 500, evalSteps: 40 },
      presets: {
        paper: { steps: 100, restarts: 200, evalExamples: 10000 },
        smoke: { steps: 3, restarts: 6, examples: 2, evalExamples: 40, evalSteps: 3 },
      },
    },
    cifar10: {
      defaults: { eps: 8, steps: 20, stepSize: 2, restarts: 50, examples: 4, evalExamples: 500, evalSteps: 7 },
      presets: {
        paper: { restarts: 200, evalSteps: 20, evalExamples: 10000 },
        smoke: { steps: 2, restarts: 4, examples: 2, evalExamples: 8, evalSteps: 2 },
      },
    },
  },
  help: {
    ...ATTACK_HELP,
    examples: "random test examples",
    evalExamples: "test examples for accuracy",
    evalSteps: "PGD iterations for accuracy",
  },
  counts: ["steps", "restarts", "examples", "evalExamples", "evalSteps"],
  validate(c) {
    if (c.restarts < 2) throw new UserError(`--restarts must be ≥ 2 to compare maxima, got ${c.restarts}`);
    if (!(c.stepSize > 0)) throw new UserError(`--step-size must be > 0, got ${c.stepSize}`);
    if (c.examples > 10000) throw new UserError(`--examples must be at most 10000 (the test set), got ${c.examples}`);
  },
});

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

/** Trains (or loads) both models, measures their accuracy, then PGD from many starts on random test examples. */
async function run(config: Config, ctx: RunContext): Promise<Body> {
  const test = await ctx.test();
  const attack = { eps: config.eps, stepSize: config.stepSize, range: test.range };
  const models = {} as Body["models"];
  const trained = {} as Record<"natural" | "adversarial", Awaited<ReturnType<typeof ctx.model>>["model"]>;
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await ctx.model(MODEL_PAIR[kind]);
    const acc = await evaluate(t.model, test, {
      limit: config.evalExamples,
      attack: { ...attack, steps: config.evalSteps, restarts: 1, seed: config.seed },
      label: ctx.quiet ? undefined : `eval ${kind} (PGD-${config.evalSteps})`,
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

  const picks = new Rng(config.seed).sample(test.n, config.examples);
  const d = test.shape[0] * test.shape[1] * test.shape[2], r = config.restarts;
  const [lo, hi] = test.range;
  const examples: Body["examples"] = [];
  for (const [e, index] of picks.entries()) {
    const { x, y } = gather(test, Array(r).fill(index));
    const x0 = await x.data() as Float32Array;
    const entry = { index, label: test.labels[index], losses: {} } as Body["examples"][number];
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
      entry[kind] = { geometry: pairwiseGeometry(delta, r, d), robustRestarts: res.correct[0].filter(Boolean).length };
    }
    x.dispose();
    y.dispose();
    examples.push(entry);
    ctx.log(`example ${e + 1}/${picks.length} (test #${index}) done`);
  }
  return { models, randomBallDistance: config.eps * Math.sqrt(2 * d / 3), examples };
}

/** The accuracies the paper reports for its models (Tables 1 and 2, and Sec. 4 for natural CIFAR-10 training). */
const PAPER_ACCURACY = {
  mnist: {
    natural: "99.2% natural (model A's net trained naturally, Sec. 5)",
    adversarial: "98.8% natural, 93.2% PGD-40 (model A, Table 1)",
  },
  cifar10: {
    natural: "95.2% natural (wide ResNet, Sec. 4)",
    adversarial: "87.3% natural, 45.8% PGD-20 (wide ResNet, Table 2)",
  },
} as const;

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
      text: `Figure 1 (${DATASETS[results.dataset].title}): loss at the end of PGD from ${c.restarts} random starts`,
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
          scale: {
            domain: ["natural training", "adversarial training"],
            range: [MODEL_COLORS.natural, MODEL_COLORS.adversarial],
          },
          legend: { title: null, orient: "top", labelLimit: 400 },
        },
      },
    },
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** The markdown table of what was measured, with the paper's claim beside each number. */
export function table(results: Results): string {
  const c = results.config;
  const m = results.models;
  const lines = [
    `# Figure 1 (${DATASETS[results.dataset].title}): loss values at the end of PGD`,
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

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
