/**
 * Table 1 of Madry et al.: the MNIST adversarially trained model A under every
 * attack the authors had, white-box (FGSM, PGD with 40 or 100 steps and 1 or 20
 * restarts, targeted PGD, the CW margin loss with κ 0 and 50) and transfer (from
 * A′, an independently trained copy, and from Tramèr et al.'s model B), at
 * ε = 0.3, with the per-example worst case over each group and the checks.
 *
 *   deno task table1                   # the quick models of Figure 1 (cached), 500 test images
 *   deno task table1 --preset paper    # model A of the paper, all 10,000 test images
 *
 * @module
 */
import { type Attack, experimentMain, runMain, type SuiteRow, type TableConfig, tableExperiment } from "../mod.ts";

/** Every hyperparameter: the zoo's recipe of A, A′, A_nat and B, and the attacks'. */
export interface Config extends TableConfig {
  /** The paper's shorter attack: 40 iterations. */
  steps: number;
  /** The paper's longer attack: 100 iterations. */
  longSteps: number;
  /** The paper's restarts: 20. */
  restarts: number;
}

/** Table 1's rows with the paper's accuracy: `steps` (40) or `longSteps` (100) of `stepSize`, ε = `eps`. */
export function rows(c: Config): SuiteRow[] {
  const row = (method: Attack["method"], steps: number, restarts: number, source: string, paper: number): SuiteRow => ({
    name: `${method} ${steps}×${restarts} ${source}`,
    method,
    eps: c.eps,
    steps,
    stepSize: method === "fgsm" ? c.eps : c.stepSize,
    restarts,
    source,
    group: source === "A" ? "white-box" : "transfer",
    paper,
  });
  return [
    row("natural", 1, 1, "A", 0.988),
    row("fgsm", 1, 1, "A", 0.956),
    row("pgd", c.steps, 1, "A", 0.932),
    row("pgd", c.longSteps, 1, "A", 0.918),
    row("pgd", c.steps, c.restarts, "A", 0.904),
    row("pgd", c.longSteps, c.restarts, "A", 0.893),
    row("targeted", c.steps, 1, "A", 0.927),
    row("cw", c.steps, 1, "A", 0.940),
    row("cw+", c.steps, 1, "A", 0.939),
    row("fgsm", 1, 1, "A_prime", 0.968),
    row("pgd", c.steps, 1, "A_prime", 0.960),
    row("pgd", c.longSteps, c.restarts, "A_prime", 0.957),
    row("cw", c.steps, 1, "A_prime", 0.970),
    row("cw+", c.steps, 1, "A_prime", 0.964),
    row("fgsm", 1, 1, "B", 0.954),
    row("pgd", c.steps, 1, "B", 0.964),
    row("cw", c.steps, 1, "B", 0.957), // the paper gives no step count for this row
  ];
}

/** Table 1 as an experiment. */
export const experiment = tableExperiment<Config>({
  name: "table1",
  summary: "MNIST: accuracy of the adversarially trained model A under white-box and transfer attacks, ε 0.3",
  dataset: "mnist",
  rows,
  defaults: { eps: 0.3, stepSize: 0.01, steps: 40, longSteps: 100, restarts: 20 },
  presets: { smoke: { steps: 2, longSteps: 3, restarts: 2 } },
  counts: ["steps", "longSteps", "restarts"],
  help: {
    steps: "PGD iterations (the paper's 40)",
    longSteps: "PGD iterations, longer (100)",
    restarts: "restarts (20)",
  },
});

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
