/**
 * Table 2 of Madry et al.: the CIFAR-10 adversarially trained ResNet A under
 * white-box attacks (FGSM, PGD with 7 and 20 steps of 2, the CW margin loss
 * with 30 steps) and transfer attacks (from A′, an independently trained copy,
 * and from A_nat, the naturally trained net), at ε = 8 in [0, 255] pixels, with
 * the per-example worst case over each group and the checks.
 *
 *   deno task table2                   # the quick models of Figure 1 and A′, 500 test images
 *   deno task table2 --preset paper    # the paper's wide ResNet, all 10,000 test images
 *
 * @module
 */
import { type Attack, experimentMain, runMain, type SuiteRow, type TableConfig, tableExperiment } from "../mod.ts";

/** Every hyperparameter: the zoo's recipe of A, A′ and A_nat, and the attacks'. */
export interface Config extends TableConfig {
  /** The training adversary's PGD: 7 iterations. */
  steps: number;
  /** The paper's strongest PGD: 20 iterations. */
  longSteps: number;
  /** Iterations of the CW attack: 30. */
  cwSteps: number;
}

/** Table 2's rows with the paper's accuracy. */
export function rows(c: Config): SuiteRow[] {
  const row = (method: Attack["method"], steps: number, source: string, paper: number): SuiteRow => ({
    name: `${method} ${steps} ${source}`,
    method,
    eps: c.eps,
    steps,
    stepSize: method === "fgsm" ? c.eps : c.stepSize,
    restarts: 1,
    source,
    group: source === "A" ? "white-box" : "transfer",
    paper,
  });
  return [
    row("natural", 1, "A", 0.873),
    row("fgsm", 1, "A", 0.561),
    row("pgd", c.steps, "A", 0.500),
    row("pgd", c.longSteps, "A", 0.458),
    row("cw", c.cwSteps, "A", 0.468),
    row("fgsm", 1, "A_prime", 0.670),
    row("pgd", c.steps, "A_prime", 0.642),
    row("cw", c.cwSteps, "A_prime", 0.787),
    row("fgsm", 1, "A_nat", 0.856),
    row("pgd", c.steps, "A_nat", 0.860),
  ];
}

/** Table 2 as an experiment. */
export const experiment = tableExperiment<Config>({
  name: "table2",
  summary: "CIFAR-10: accuracy of the adversarially trained ResNet A under white-box and transfer attacks, ε 8",
  dataset: "cifar10",
  rows,
  help: {
    steps: "PGD iterations (the paper's 7)",
    longSteps: "PGD iterations, strongest (20)",
    cwSteps: "CW steps (30)",
  },
  defaults: { eps: 8, stepSize: 2, steps: 7, longSteps: 20, cwSteps: 30 },
  presets: { smoke: { steps: 2, longSteps: 3, cwSteps: 2 } },
  counts: ["steps", "longSteps", "cwSteps"],
});

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
