/**
 * Small summaries that the experiments' tables and figures share: statistics
 * of a list of numbers, ratios in words, the colours of the two models, and a
 * trained model's net and training in words.
 *
 * @module
 */
import { fmtNum } from "./table.ts";
import { isResNet, optimizerText, type TrainConfig } from "../train/train.ts";
import { isModelB } from "../nn/model_b.ts";

/** Mean, (population) standard deviation, min and max of `xs`. */
export function stats(xs: ArrayLike<number>): { mean: number; std: number; min: number; max: number } {
  const a = Array.from(xs);
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
  return { mean, std, min: Math.min(...a), max: Math.max(...a) };
}

/** The median of `xs`. */
export function median(xs: number[]): number {
  const a = [...xs].sort((p, q) => p - q);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/** `a / b` as "12×" or, below 10, "1.3×". */
export function ratio(a: number, b: number): string {
  const r = a / Math.max(b, 1e-12);
  return `${fmtNum(r, r < 10 ? 1 : 0)}×`;
}

/** The colours of the naturally (blue) and adversarially (red) trained models in every figure. */
export const MODEL_COLORS = { natural: "#1f77b4", adversarial: "#d62728" } as const;

/** The network of a training config in words: "conv 16, conv 32, FC 512" or "ResNet, 5 units/stage, filters ...". */
export function netText(t: TrainConfig): string {
  if (isModelB(t.model)) return "model B (Tramèr et al.: conv 64 8×8/2, conv 128 6×6/2, conv 128 5×5, FC 10)";
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
  const ramp = t.epsRamp && t.method !== "natural" ? ` (ε ramped up over the first ${t.epsRamp} steps)` : "";
  return `${t.steps} steps of ${t.batch}, ${opt}${adversary}${ramp}`;
}
