/**
 * The model zoo: every trained model the paper uses, by name, with its
 * training config for a dataset and preset. Experiments ask for a model by
 * name; `trainModel` caches it by a hash of that config, so a model is trained
 * once and shared by every figure and table that reads it.
 *
 * - `A`: the adversarially trained net (model A on MNIST, the ResNet on CIFAR-10)
 * - `A_nat`: the same net, trained naturally
 * - `A_prime` (A′): `A` trained again from another seed (the transfer source)
 * - `A_fgsm`: the same net trained on the paper's FGSM (one step of ε, no random start)
 * - `B`: Tramèr et al.'s MNIST model B, naturally trained (a transfer source of Table 1)
 * - {@link capacityConfig}: any capacity of Figure 3's family, trained naturally, with FGSM or with PGD
 *
 * A recipe ({@link Recipe}) holds the training fields an experiment exposes
 * as flags; {@link RECIPES} has one per dataset and preset.
 *
 * @module
 */
import { capacityShape, type MnistNetShape } from "../nn/mnist_net.ts";
import { MODEL_B } from "../nn/model_b.ts";
import { RESNET_SIMPLE, RESNET_WIDE } from "../nn/resnet.ts";
import type { TrainConfig } from "./train.ts";

/** The datasets of the paper. */
export type DatasetName = "mnist" | "cifar10";

/** The training fields of a dataset's models: one recipe gives every model of the zoo. */
export interface Recipe {
  /** MNIST: filters of the first convolution of model A's shape. */
  conv1: number;
  /** MNIST: filters of the second convolution. */
  conv2: number;
  /** MNIST: units of the hidden FC layer. */
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
   * 40% of the steps, then down to 0, as in Wong et al. 2020).
   */
  lrSchedule: "steps" | "cyclic";
  /** CIFAR-10: L2 weight decay on conv and FC kernels. */
  weightDecay: number;
  /** Training batch size. */
  batch: number;
  /** Training steps of the naturally trained models. */
  naturalSteps: number;
  /** Training steps of the adversarially trained models. */
  advSteps: number;
  /** The training adversary of `A`: "pgd", or "fgsm" (one step of `trainAttackStepSize`). */
  trainMethod: "pgd" | "fgsm";
  /** ε of the training adversary, pixel units. */
  trainEps: number;
  /** PGD iterations of the training adversary. */
  trainAttackSteps: number;
  /** Step size of the training adversary, pixel units. */
  trainAttackStepSize: number;
  /** Whether the training adversary starts from a uniform random point of the ε-ball. */
  trainRandomStart: boolean;
  /** Steps over which the training adversary's ε rises linearly from 0 (0: full ε from the first step). */
  trainEpsRamp: number;
  /**
   * Batch norm while the training adversary runs: "inference" (running
   * statistics) or "train" (batch statistics, as MadryLab's code). No effect on
   * nets without batch norm (MNIST).
   */
  attackBn: "train" | "inference";
  /** Training examples used (60,000 is all of MNIST, 50,000 all of CIFAR-10). */
  trainExamples: number;
  /** MNIST: training steps of model B (batch 64, Adam 1e-3; the paper's 6 epochs are 5,625 steps). */
  bSteps: number;
  /** Seed of the weights, the data order and the training adversary's random starts. */
  seed: number;
}

/** The names of the zoo's models (the capacity family is {@link capacityConfig}). */
export const MODEL_NAMES = ["A", "A_nat", "A_prime", "A_fgsm", "B"] as const;
/** A model of the zoo. */
export type ModelName = typeof MODEL_NAMES[number];

/** The two models Figures 1, 2 and 4 compare, by the names their results use: naturally and adversarially trained. */
export const MODEL_PAIR = { natural: "A_nat", adversarial: "A" } as const satisfies Record<string, ModelName>;

/**
 * MNIST, quick: a smaller net (conv 16, conv 32, FC 512: scale 8 of the
 * conference version's capacity family) trained with Adam 1e-3 for 1,300 steps
 * on 4-step PGD of 0.1 from a random start, its ε rising from 0 to 0.3 over the
 * first 100 steps (about 98% natural, 84% PGD-40 accuracy in a few minutes on
 * two cores). Without the ramp 3 of seeds 0–3 collapsed to chance (11% training
 * accuracy after 1,300 steps); with it all four reach 86–89%.
 */
const MNIST_QUICK: Recipe = {
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
  trainEps: 0.3,
  trainAttackSteps: 4,
  trainAttackStepSize: 0.1,
  trainRandomStart: true,
  trainEpsRamp: 100,
  attackBn: "inference",
  trainExamples: 60000,
  bSteps: 900,
  seed: 0,
};

/**
 * CIFAR-10, quick: the simple ResNet with momentum SGD, batch 128, for a few
 * epochs on one cycle of the learning rate (up to 0.3 and back to 0) with
 * weight decay 5e-4 (rate and decay chosen by bench/sweep_torch.py); the
 * adversarially trained one on FGSM from a random start with a step of 10 (the
 * "fast adversarial training" of Wong et al. 2020), far more robust than 7-step
 * PGD in the same CPU time.
 */
const CIFAR_QUICK: Recipe = {
  ...MNIST_QUICK,
  trainEpsRamp: 0,
  lr: 0.3,
  lrSchedule: "cyclic",
  weightDecay: 5e-4,
  batch: 128,
  naturalSteps: 1600,
  advSteps: 1050,
  trainMethod: "fgsm",
  trainEps: 8,
  trainAttackSteps: 1,
  trainAttackStepSize: 10,
  trainExamples: 50000,
};

/** Every dataset's recipe per preset: `quick` (the default), `paper` (the paper's settings) and `smoke` (tests). */
export const RECIPES: Record<DatasetName, Record<"quick" | "paper" | "smoke", Recipe>> = {
  mnist: {
    quick: MNIST_QUICK,
    paper: {
      ...MNIST_QUICK,
      conv1: 32,
      conv2: 64,
      fc: 1024,
      lr: 1e-4,
      naturalSteps: 100000,
      advSteps: 100000,
      trainAttackSteps: 40,
      trainAttackStepSize: 0.01,
      trainEpsRamp: 0,
      bSteps: 5625,
    },
    smoke: {
      ...MNIST_QUICK,
      conv1: 2,
      conv2: 4,
      fc: 8,
      naturalSteps: 4,
      advSteps: 4,
      trainAttackSteps: 2,
      trainExamples: 400,
      trainEpsRamp: 0,
      bSteps: 4,
    },
  },
  cifar10: {
    quick: CIFAR_QUICK,
    paper: {
      ...CIFAR_QUICK,
      resnet: "wide",
      lr: 0.1,
      lrSchedule: "steps",
      weightDecay: 2e-4,
      naturalSteps: 80000,
      advSteps: 80000,
      trainMethod: "pgd",
      trainAttackSteps: 7,
      trainAttackStepSize: 2,
      attackBn: "train",
    },
    smoke: { ...CIFAR_QUICK, units: 1, batch: 8, naturalSteps: 2, advSteps: 2, trainExamples: 64 },
  },
};

/** Help of each recipe field as a flag. */
export const RECIPE_HELP: Record<keyof Recipe, string> = {
  conv1: "MNIST filters of conv 1",
  conv2: "MNIST filters of conv 2",
  fc: "MNIST units of the FC layer",
  resnet: "CIFAR-10 ResNet: simple or wide",
  units: "CIFAR-10 residual units per stage",
  lr: "learning rate (MNIST Adam; CIFAR-10 momentum SGD: first rate, or peak of the cycle)",
  lrSchedule: "CIFAR-10: steps (/10 at 50%, /100 at 75%) or cyclic (0 → lr at 40% → 0)",
  weightDecay: "CIFAR-10 weight decay on kernels",
  batch: "training batch size",
  naturalSteps: "training steps, natural models",
  advSteps: "training steps, adversarially trained models",
  trainMethod: "training adversary of model A: pgd or fgsm (one step of --train-attack-step-size)",
  trainEps: "ε of the training adversary in pixel units",
  trainAttackSteps: "PGD steps of the training adversary",
  trainAttackStepSize: "step size of the training adversary",
  trainRandomStart: "training adversary starts from a random point of the ε-ball",
  trainEpsRamp: "steps over which the training ε rises from 0 (0: none)",
  attackBn: "batch norm while the training adversary runs: inference or train (CIFAR-10)",
  trainExamples: "training examples used",
  bSteps: "MNIST model B: training steps at batch 64",
  seed: "random seed",
};

/** The fields of a recipe that take one of a few names, with those names. */
export const RECIPE_CHOICES = {
  resnet: ["simple", "wide"],
  lrSchedule: ["steps", "cyclic"],
  trainMethod: ["pgd", "fgsm"],
  attackBn: ["inference", "train"],
} as const;

/** The fields of a recipe that must be integers ≥ 1. */
export const RECIPE_COUNTS = [
  "conv1",
  "conv2",
  "fc",
  "units",
  "batch",
  "naturalSteps",
  "advSteps",
  "trainAttackSteps",
  "trainExamples",
  "bSteps",
] as const;

/** The recipe's fields of `config` (which may hold more), so a recipe can be given an experiment's config. */
export function recipeOf(config: Recipe): Recipe {
  const out = {} as Record<string, unknown>;
  for (const k of Object.keys(MNIST_QUICK)) out[k] = config[k as keyof Recipe];
  return out as unknown as Recipe;
}

/**
 * The training config of a zoo model under a recipe. The quick presets' `A`
 * and `A_nat` have the configs (so the hashes and cache entries) of Figure 1's
 * models as they were before the zoo.
 */
export function zooConfig(name: ModelName, dataset: DatasetName, r: Recipe): TrainConfig {
  switch (name) {
    case "A_nat":
      return trainConfig(dataset, r, "natural", r.naturalSteps);
    case "A":
      return trainConfig(dataset, r, r.trainMethod, r.advSteps);
    case "A_prime":
      return trainConfig(dataset, { ...r, seed: r.seed + 1 }, r.trainMethod, r.advSteps);
    case "A_fgsm":
      return trainConfig(
        dataset,
        { ...r, trainAttackStepSize: r.trainEps, trainRandomStart: false },
        "fgsm",
        r.advSteps,
      );
    case "B":
      if (dataset !== "mnist") throw new RangeError(`model B is an MNIST model; there is none for ${dataset}`);
      return {
        dataset: "mnist",
        model: MODEL_B,
        method: "natural",
        eps: r.trainEps,
        attackSteps: 1,
        attackStepSize: r.trainEps,
        randomStart: false,
        optimizer: "adam",
        lr: 1e-3,
        batch: 64,
        steps: r.bSteps,
        trainExamples: r.trainExamples,
        seed: r.seed,
      };
  }
}

/**
 * A model of Figure 3's capacity family, trained naturally, with FGSM or with
 * PGD. MNIST: scale s of {@link capacityShape} (conv 2s, conv 4s, FC
 * `fcBase`·s). CIFAR-10: width factor s of the ResNet (filters 16, 16s, 32s,
 * 64s: 1 is the simple net, 10 the wide one).
 */
export function capacityConfig(
  dataset: DatasetName,
  r: Recipe,
  scale: number,
  method: "natural" | "fgsm" | "pgd",
  fcBase = 8,
): TrainConfig {
  const shaped = dataset === "mnist" ? { ...r, ...capacityShape(scale, fcBase) } : { ...r, resnet: "simple" as const };
  const t = trainConfig(
    dataset,
    method === "fgsm" ? { ...shaped, trainAttackStepSize: r.trainEps, trainRandomStart: false } : shaped,
    method,
    method === "natural" ? r.naturalSteps : r.advSteps,
  );
  if (dataset === "cifar10" && "filters" in t.model) {
    t.model = { ...t.model, filters: [16, 16 * scale, 32 * scale, 64 * scale] };
  }
  return t;
}

function trainConfig(
  dataset: DatasetName,
  r: Recipe,
  method: "natural" | "fgsm" | "pgd",
  steps: number,
): TrainConfig {
  const adversary = {
    method,
    eps: r.trainEps,
    attackSteps: method === "fgsm" ? 1 : r.trainAttackSteps,
    attackStepSize: r.trainAttackStepSize,
    randomStart: r.trainRandomStart,
    // Absent unless set, so configs without a ramp keep their hashes.
    ...(r.trainEpsRamp > 0 && method !== "natural" ? { epsRamp: r.trainEpsRamp } : {}),
  };
  if (dataset === "cifar10") {
    return {
      dataset,
      model: { ...(r.resnet === "wide" ? RESNET_WIDE : RESNET_SIMPLE), units: r.units },
      ...adversary,
      // Only batch-norm statistics in the attack differ from the default: absent, the hash is as before the option.
      ...(r.attackBn === "train" && method !== "natural" ? { attackBn: "train" as const } : {}),
      optimizer: "sgd",
      lr: r.lr,
      ...(r.lrSchedule === "cyclic"
        ? { lrPoints: [[0, 0], [Math.round(steps * 0.4), r.lr], [steps, 0]] as [number, number][] }
        : { lrBoundaries: [Math.round(steps / 2), Math.round(steps * 3 / 4)], lrValues: [r.lr / 10, r.lr / 100] }),
      weightDecay: r.weightDecay,
      augment: true,
      batch: r.batch,
      steps,
      trainExamples: r.trainExamples,
      seed: r.seed,
    };
  }
  const model: MnistNetShape = { conv1: r.conv1, conv2: r.conv2, fc: r.fc };
  return {
    dataset,
    model,
    ...adversary,
    optimizer: "adam",
    lr: r.lr,
    batch: r.batch,
    steps,
    trainExamples: r.trainExamples,
    seed: r.seed,
  };
}
