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
export { tf, tfl } from "./lib/core/tf.ts";
export {
  type BackendInfo,
  type BackendName,
  BACKENDS,
  currentBackend,
  useBackend,
  versions,
} from "./lib/backends/select.ts";
export { type Dataset, gather, imageSize, slice, take } from "./lib/data/dataset.ts";
export { loadMnist, MNIST_DIR, parseIdxImages, parseIdxLabels } from "./lib/data/mnist.ts";
export { CAPACITY_SCALES, capacityShape, logits, mnistNet, type MnistNetShape, MODEL_A } from "./lib/nn/mnist_net.ts";
export {
  checkEpsScale,
  CIFAR10_ARCHIVE,
  CIFAR10_CLASSES,
  CIFAR10_FILES,
  cifar10CacheDir,
  type Cifar10Options,
  findCifar10Dir,
  loadCifar10,
  parseCifarBatch,
} from "./lib/data/cifar10.ts";
export {
  ChannelPad,
  cifarResNet,
  decayedWeights,
  PerImageStandardization,
  RESNET_SIMPLE,
  RESNET_WIDE,
  type ResNetShape,
} from "./lib/nn/resnet.ts";
export { augmentBatch } from "./lib/data/augment.ts";
export { crossEntropy, cwLoss, isCorrect } from "./lib/nn/losses.ts";
export {
  fgsm,
  perturb,
  pgd,
  type PgdOptions,
  type PgdResult,
  pgdStep,
  signStep,
  validatePgdOptions,
} from "./lib/attacks/pgd.ts";
export { Adam, Momentum, type Optimizer } from "./lib/train/optim.ts";
export {
  isResNet,
  isTrained,
  modelDir,
  optimizerText,
  type TrainConfig,
  type TrainedModel,
  type TrainHistory,
  trainModel,
  type TrainOptions,
  trainStep,
  validateTrainConfig,
} from "./lib/train/train.ts";
export { type Accuracy, type EvalOptions, evaluate } from "./lib/attacks/eval.ts";
export { loadCheckpoint, loadModel, saveCheckpoint, saveModel } from "./lib/train/checkpoint.ts";
export { Rng } from "./lib/core/rng.ts";
export { check, UserError } from "./lib/core/errors.ts";
export {
  type CommonFlags,
  ensureWritable,
  type ExperimentSpec,
  kebab,
  parseExperimentArgs,
  runMain,
} from "./lib/experiment/cli.ts";
export { Progress } from "./lib/core/progress.ts";
export { toPng, toSvg, type VegaLiteSpec, writeFigure, writeJsonAtomic } from "./lib/report/vega.ts";
export { fmtNum, fmtPct, markdownTable } from "./lib/report/table.ts";
