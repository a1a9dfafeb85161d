/**
 * Adversarially robust deep learning in TypeScript: the library behind the
 * experiment scripts that reproduce Madry et al., "Towards Deep Learning Models
 * Resistant to Adversarial Attacks" (PGD attacks, PGD adversarial training).
 *
 * @example Attack a naturally trained MNIST model with PGD
 * ```ts
 * import { evaluate, loadMnist, trainModel, useBackend } from "./mod.ts";
 *
 * await useBackend("auto");
 * const train = await loadMnist("train", { limit: 5000 });
 * const test = await loadMnist("test", { limit: 500 });
 * const { model } = await trainModel({
 *   dataset: "mnist", model: { conv1: 16, conv2: 32, fc: 512 }, method: "natural",
 *   eps: 0.3, attackSteps: 7, attackStepSize: 0.1, randomStart: true,
 *   optimizer: "adam", lr: 1e-3, batch: 50, steps: 200, seed: 0,
 * }, { data: train });
 * const acc = await evaluate(model, test, { attack: { eps: 0.3, steps: 40, stepSize: 0.01 } });
 * console.log(`natural ${acc.natural}, PGD-40 ${acc.adversarial}`);
 * ```
 *
 * @module
 */
export * from "./lib/core/mod.ts";
export * from "./lib/backends/mod.ts";
export * from "./lib/data/mod.ts";
export * from "./lib/nn/mod.ts";
export * from "./lib/attacks/mod.ts";
export * from "./lib/train/mod.ts";
export * from "./lib/report/mod.ts";
export * from "./lib/experiment/mod.ts";
