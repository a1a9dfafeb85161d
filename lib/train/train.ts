/**
 * Natural, FGSM and PGD adversarial training (Madry et al., Sec. 4), on the
 * adversarial examples only, with periodic checkpoints, exact resume after an
 * interruption, a recorded loss history, and a model cache keyed by a hash of
 * the config (a second run with the same config reuses the trained model).
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { type Dataset, gather } from "../data/dataset.ts";
import { crossEntropy, isCorrect } from "../nn/losses.ts";
import { mnistNet, type MnistNetShape } from "../nn/mnist_net.ts";
import { cifarResNet, type ResNetShape } from "../nn/resnet.ts";
import { isModelB, modelB, type ModelBShape } from "../nn/model_b.ts";
import { augmentBatch } from "../data/augment.ts";
import { perturb, validatePgdOptions } from "../attacks/pgd.ts";
import { Rng } from "../core/rng.ts";
import { Adam, Momentum, type Optimizer } from "./optim.ts";
import { configHash } from "../core/hash.ts";
import { type Checkpoint, loadCheckpoint, readLatestState, saveCheckpoint } from "./checkpoint.ts";
import { lockFolder } from "./_lock.ts";
import { Progress } from "../core/progress.ts";
import { check } from "../core/errors.ts";

/** Everything that determines a trained model; its hash names the cache entry. */
export interface TrainConfig {
  /** Dataset trained on. */
  dataset: "mnist" | "cifar10";
  /** Network: the MNIST conv net's widths, model B, or a CIFAR-10 ResNet's filters and units per stage. */
  model: MnistNetShape | ModelBShape | ResNetShape;
  /**
   * natural: clean examples; fgsm / pgd: adversarial examples only. FGSM is one
   * step of size `attackStepSize` (ε for the paper's FGSM; with `randomStart`
   * it is the "fast adversarial training" FGSM of Wong et al., 2020).
   */
  method: "natural" | "fgsm" | "pgd";
  /** ε of the training adversary, pixel units. */
  eps: number;
  /** PGD iterations of the training adversary. */
  attackSteps: number;
  /** PGD step size, pixel units. */
  attackStepSize: number;
  /** Random start of the training adversary. */
  randomStart: boolean;
  /**
   * Batch norm while the training adversary runs: "train" uses the batch's
   * statistics (as MadryLab's code); absent or "inference", the running ones.
   */
  attackBn?: "train" | "inference";
  /**
   * Steps over which the training adversary's ε rises linearly from 0 to `eps`
   * (absent: `eps` from the first step). A ramp keeps small nets from collapsing
   * to chance under a full-strength adversary before they learn anything.
   */
  epsRamp?: number;
  /** "adam", or "sgd" (momentum 0.9). */
  optimizer: "adam" | "sgd";
  /** Learning rate (the first value when `lrBoundaries` is set, the peak when `lrPoints` is). */
  lr: number;
  /** Steps at which the learning rate drops to the next of `lrValues`. */
  lrBoundaries?: number[];
  /** Learning rates after each boundary. */
  lrValues?: number[];
  /**
   * A piecewise-linear schedule instead: [step, learning rate] points in
   * increasing step order, linearly interpolated between them and held after
   * the last (e.g. the one-cycle [[0, 0], [0.4 T, lr], [T, 0]]).
   */
  lrPoints?: [number, number][];
  /** L2 weight decay on kernels (sgd only). */
  weightDecay?: number;
  /** Examples per step. */
  batch: number;
  /** Training steps. */
  steps: number;
  /** Pad-4 random crop and horizontal flip of every training batch (CIFAR-10). */
  augment?: boolean;
  /** Use only the first `trainExamples` training examples (all when absent). */
  trainExamples?: number;
  /** Seed of the initial weights, the data order and the random starts. */
  seed: number;
}

/** Per-step record of a training run (Figure 4 plots it). */
export interface TrainHistory {
  /** Training loss on the examples trained on (adversarial ones for fgsm / pgd), per step. */
  loss: number[];
  /** Accuracy on those examples, per step. */
  accuracy: number[];
}

/** Options of {@link trainModel} that do not change the trained model. */
export interface TrainOptions {
  /** Folder of the model cache (default `.cache`). */
  cacheDir?: string;
  /** Ignore a cached or partial model and train from scratch. */
  retrain?: boolean;
  /** Checkpoint every this many steps (default 500) ... */
  checkpointEvery?: number;
  /** ... or when this many seconds passed since the last one (default 60). */
  checkpointSeconds?: number;
  /** Stop after this step (a test of resume); the checkpoint is written. */
  stopAfter?: number;
  /** Print no progress. */
  quiet?: boolean;
  /** Label of the progress line. */
  label?: string;
  /**
   * Training examples (must match `config.dataset`), or a function that loads
   * them, called only when something is trained (a cached model needs no data).
   */
  data: Dataset | (() => Promise<Dataset>);
}

/** A trained (or cached) model with how it was made. */
export interface TrainedModel {
  model: tfl.LayersModel;
  config: TrainConfig;
  hash: string;
  /** Cache folder holding its checkpoint. */
  dir: string;
  history: TrainHistory;
  /** True when nothing was trained in this call. */
  fromCache: boolean;
  /** Seconds spent training, summed over resumed runs. */
  trainSeconds: number;
  /** Steps completed (equals config.steps unless stopped early). */
  step: number;
}

/** Checks a training config; throws a {@link UserError} naming the bad value. */
export function validateTrainConfig(c: TrainConfig): void {
  check(["mnist", "cifar10"].includes(c.dataset), `dataset must be mnist or cifar10, got ${c.dataset}`);
  check(isResNet(c.model) === (c.dataset === "cifar10"), `dataset ${c.dataset} does not match its model`);
  check(["natural", "fgsm", "pgd"].includes(c.method), `method must be natural, fgsm or pgd, got ${c.method}`);
  check(Number.isInteger(c.batch) && c.batch >= 1, `batch must be an integer ≥ 1, got ${c.batch}`);
  check(Number.isInteger(c.steps) && c.steps >= 1, `steps must be an integer ≥ 1, got ${c.steps}`);
  check(c.lr > 0, `lr must be > 0, got ${c.lr}`);
  check(
    c.epsRamp === undefined || (Number.isInteger(c.epsRamp) && c.epsRamp >= 1),
    `epsRamp must be an integer ≥ 1 (steps), got ${c.epsRamp}`,
  );
  if (c.lrPoints) {
    const p = c.lrPoints;
    check(p.length >= 1 && !c.lrBoundaries?.length, "lrPoints needs at least one point and no lrBoundaries");
    check(
      p.every(([s, lr], i) => s >= 0 && lr >= 0 && (i === 0 || s > p[i - 1][0])),
      `lrPoints must have increasing steps ≥ 0 and rates ≥ 0, got ${JSON.stringify(p)}`,
    );
  }
  check(
    c.attackBn === undefined || c.attackBn === "train" || c.attackBn === "inference",
    `attackBn must be train or inference (or absent, meaning inference), got ${JSON.stringify(c.attackBn)}`,
  );
  if (c.method !== "natural") {
    try {
      validatePgdOptions({
        eps: c.eps,
        steps: c.attackSteps,
        stepSize: c.attackStepSize,
        range: c.dataset === "cifar10" ? [0, 255] : [0, 1],
      });
    } catch (e) {
      check(false, `training adversary: ${(e as Error).message}`);
    }
  }
}

/** The learning rate at `step` under the config's schedule (piecewise constant, or linear between `lrPoints`). */
export function learningRate(c: TrainConfig, step: number): number {
  const p = c.lrPoints;
  if (p) {
    if (step <= p[0][0]) return p[0][1];
    for (let i = 1; i < p.length; i++) {
      const [s0, lr0] = p[i - 1], [s1, lr1] = p[i];
      if (step <= s1) return lr0 + (lr1 - lr0) * (step - s0) / (s1 - s0);
    }
    return p[p.length - 1][1];
  }
  const b = c.lrBoundaries ?? [];
  let lr = c.lr;
  for (let i = 0; i < b.length; i++) if (step >= b[i]) lr = c.lrValues![i];
  return lr;
}

/**
 * The optimiser and its learning-rate schedule in words: "Adam 0.001",
 * "momentum SGD, lr 0.1 → 0.01 → 0.001 at steps 40000, 60000", or
 * "momentum SGD, lr 0 → 0.2 → 0 linearly at steps 0, 640, 1600".
 */
export function optimizerText(t: TrainConfig): string {
  if (t.optimizer === "adam") return `Adam ${t.lr}`;
  if (t.lrPoints) {
    return `momentum SGD, lr ${t.lrPoints.map((p) => p[1]).join(" → ")} linearly at steps ${
      t.lrPoints.map((p) => p[0]).join(", ")
    }`;
  }
  const at = t.lrBoundaries?.length ? ` at steps ${t.lrBoundaries.join(", ")}` : "";
  return `momentum SGD, lr ${[t.lr, ...(t.lrValues ?? [])].join(" → ")}${at}`;
}

/** The example indices of training step `step`: a fresh permutation per epoch, from the seed. */
export function batchIndices(c: TrainConfig, n: number, step: number): Int32Array {
  const perEpoch = Math.floor(n / c.batch);
  const epoch = Math.floor(step / perEpoch);
  const i = step % perEpoch;
  return new Rng(c.seed * 1000003 + epoch).permutation(n).subarray(i * c.batch, (i + 1) * c.batch);
}

/** True for a CIFAR-10 ResNet shape. */
export function isResNet(shape: MnistNetShape | ModelBShape | ResNetShape): shape is ResNetShape {
  return "filters" in shape;
}

/** Builds the untrained network of a config. */
export function buildModel(c: TrainConfig): tfl.LayersModel {
  if (isModelB(c.model)) return modelB(c.seed);
  return isResNet(c.model) ? cifarResNet(c.model, c.seed) : mnistNet(c.model, c.seed);
}

/** The model's trainable variables, in a fixed order. */
export function trainableVariables(model: tfl.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

function makeOptimizer(c: TrainConfig, model: tfl.LayersModel): Optimizer {
  const vars = trainableVariables(model);
  if (c.optimizer === "adam") return new Adam(vars, c.lr);
  const decay = model.trainableWeights.map((w) => /kernel/.test(w.originalName));
  return new Momentum(vars, c.lr, 0.9, c.weightDecay ?? 0, decay);
}

/**
 * One training step on a batch: builds the training adversary's examples (none
 * for natural training) by attacking the current weights, in the batch-norm mode
 * of `c.attackBn` and leaving the model unchanged, then one optimiser step on
 * the mean cross-entropy of those examples in training mode (which updates the
 * running statistics once). Returns the loss and the accuracy on them.
 */
export async function trainStep(
  model: tfl.LayersModel,
  optimizer: Optimizer,
  c: TrainConfig,
  x: tf.Tensor,
  y: tf.Tensor1D,
  rng: Rng,
  range: [number, number] = [0, 1],
  step = Infinity,
): Promise<{ loss: number; accuracy: number }> {
  const xTrain = c.method === "natural" ? x : perturb(model, x, y, {
    eps: trainingEps(c, step),
    steps: c.method === "fgsm" ? 1 : c.attackSteps,
    stepSize: c.attackStepSize,
    randomStart: c.randomStart,
    range,
    rng,
    bnMode: c.attackBn ?? "inference",
  });
  const vars = trainableVariables(model);
  let correct: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const z = model.apply(xTrain, { training: true }) as tf.Tensor2D;
    correct = tf.keep(isCorrect(z, y));
    return crossEntropy(z, y).mean() as tf.Scalar;
  }, vars);
  optimizer.apply(vars.map((v) => grads[v.name]));
  const meanCorrect = tf.tidy(() => correct!.cast("float32").mean());
  tf.dispose([correct!, ...Object.values(grads)]);
  if (xTrain !== x) xTrain.dispose();
  // Asynchronous reads: WebGPU has no synchronous one in Deno (and a GPU need not stall the thread).
  try {
    const [loss, accuracy] = await Promise.all([value.data(), meanCorrect.data()]).then((d) => d.map((v) => v[0]));
    return { loss, accuracy };
  } finally {
    tf.dispose([value, meanCorrect]);
  }
}

/** The training adversary's ε at `step` (0-based): `eps`, or its linear ramp over the first `epsRamp` steps. */
export function trainingEps(c: TrainConfig, step: number): number {
  return c.epsRamp ? c.eps * Math.min(1, (step + 1) / c.epsRamp) : c.eps;
}

/** Short name of a config for folders and progress lines, e.g. `mnist-pgd-32x64x1024`. */
export function modelName(c: TrainConfig): string {
  const m = c.model;
  const net = isModelB(m)
    ? "model-b"
    : isResNet(m)
    ? `resnet${m.units}-${m.filters.join("x")}`
    : `${m.conv1}x${m.conv2}x${m.fc}`;
  return `${c.dataset}-${c.method}-${net}`;
}

/** The cache folder of a config's model: `<cacheDir>/models/<name>-<hash of the config>`. */
export async function modelDir(config: TrainConfig, cacheDir = ".cache"): Promise<string> {
  return `${cacheDir}/models/${modelName(config)}-${await configHash(config)}`;
}

/**
 * True when the cache holds the finished model of `config` (its latest
 * checkpoint is marked done and made by this config). Reads only that
 * checkpoint's state file: nothing is loaded, trained or written.
 */
export async function isTrained(config: TrainConfig, cacheDir = ".cache"): Promise<boolean> {
  try {
    const latest = await readLatestState(await modelDir(config, cacheDir));
    return latest?.state.done === true && latest.state.configHash === await configHash(config);
  } catch {
    return false;
  }
}

/**
 * Trains a model for `config`, or returns the cached one. A partial run is
 * resumed from its last checkpoint with nothing lost: weights, optimiser state,
 * data order, random-start generator and loss history all continue as if
 * uninterrupted. One process at a time trains into a model folder: another run
 * of the same config waits for it (saying so on stderr unless quiet), then
 * reuses its model.
 */
export async function trainModel(config: TrainConfig, options: TrainOptions): Promise<TrainedModel> {
  validateTrainConfig(config);
  const hash = await configHash(config);
  const dir = await modelDir(config, options.cacheDir);
  // A finished model is read without the lock (a shared cache may be read-only; nothing writes a
  // finished checkpoint) ...
  let peekError: unknown;
  const latest = options.retrain ? null : await readLatestState(dir).catch((e) => void (peekError = e));
  if (latest?.state.done) {
    const finished = await loadCheckpoint(dir, hash, config.steps);
    if (finished?.state.done) return await trainFrom(finished, config, options, hash, dir);
    finished?.model.dispose();
  }
  // ... anything else waits for a run in progress in another process, then looks again.
  const lock = await Deno.mkdir(dir, { recursive: true })
    .then(() =>
      lockFolder(dir, (holder) => {
        if (!options.quiet) console.error(`waiting for ${holder} training ${dir}`);
      })
    )
    .catch((e) => {
      throw peekError ?? e; // a read-only cache: what was wrong with its checkpoint
    });
  try {
    const ckpt = options.retrain ? null : await loadCheckpoint(dir, hash, config.steps);
    return await trainFrom(ckpt, config, options, hash, dir);
  } finally {
    await lock.release();
  }
}

/** {@link trainModel} from checkpoint `ckpt` (null: from scratch); the caller holds the lock unless it is done. */
async function trainFrom(
  ckpt: Checkpoint | null,
  config: TrainConfig,
  options: TrainOptions,
  hash: string,
  dir: string,
): Promise<TrainedModel> {
  const history: TrainHistory = (ckpt?.state.history as TrainHistory) ?? { loss: [], accuracy: [] };
  let trainSeconds = (ckpt?.state.trainSeconds as number) ?? 0;
  if (ckpt?.state.done) {
    return { model: ckpt.model, config, hash, dir, history, fromCache: true, trainSeconds, step: ckpt.state.step };
  }
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2) + "\n");
  } catch (err) {
    const full = /No space left|os error 28/.test((err as Error).message);
    check(
      false,
      `cannot start the model folder ${dir}: ${full ? "no space left on the device" : (err as Error).message}`,
    );
  }

  const model = ckpt?.model ?? buildModel(config);
  const optimizer = makeOptimizer(config, model);
  if (ckpt) {
    const state = optimizer.state();
    check(
      state.length === ckpt.optimizerState.length,
      `checkpoint ${ckpt.path}: optimiser state does not match the model; run with --retrain`,
    );
    state.forEach((v, i) => v.assign(tf.tensor(ckpt.optimizerState[i], v.shape)));
    optimizer.iterations = ckpt.state.step;
  }
  const rng = new Rng(config.seed);
  if (ckpt) rng.state = ckpt.state.rngState as number;
  const data = typeof options.data === "function" ? await options.data() : options.data;
  check(data.name === config.dataset, `training data is ${data.name}, the config says ${config.dataset}`);
  const n = Math.min(config.trainExamples ?? data.n, data.n);
  check(n >= config.batch, `need at least one batch of ${config.batch} training examples, have ${n}`);

  let step = ckpt?.state.step ?? 0;
  const end = Math.min(config.steps, options.stopAfter ?? Infinity);
  const progress = new Progress(
    options.label ?? `train ${modelName(config)}`,
    config.steps,
    config.batch,
    step,
    10,
    options.quiet,
  );
  if (ckpt && !options.quiet) console.error(`resuming ${dir} from step ${step}`);
  const every = options.checkpointEvery ?? 500;
  const everySeconds = options.checkpointSeconds ?? 60;
  let lastSave = performance.now();
  let runStart = performance.now();
  const save = async () => {
    trainSeconds += (performance.now() - runStart) / 1000;
    runStart = performance.now();
    await saveCheckpoint(dir, model, optimizer.state(), {
      configHash: hash,
      step,
      done: step >= config.steps,
      rngState: rng.state,
      history,
      trainSeconds,
    });
    lastSave = performance.now();
  };

  while (step < end) {
    if (optimizer instanceof Adam || optimizer instanceof Momentum) optimizer.lr = learningRate(config, step);
    const indices = batchIndices(config, n, step);
    let { x, y } = gather(data, indices);
    if (config.augment) {
      const augmented = augmentBatch(await x.data() as Float32Array, indices.length, data.shape, rng);
      x.dispose();
      x = tf.tensor4d(augmented, [indices.length, ...data.shape]);
    }
    const { loss, accuracy } = await trainStep(model, optimizer, config, x, y, rng, data.range, step);
    x.dispose();
    y.dispose();
    check(Number.isFinite(loss), `training diverged at step ${step}: loss is ${loss}; try a lower lr`);
    history.loss.push(loss);
    history.accuracy.push(accuracy);
    step++;
    const recent = history.loss.slice(-20);
    const recentAcc = history.accuracy.slice(-20);
    progress.update(step, {
      [config.method === "natural" ? "acc" : "adv acc"]: `${(100 * mean(recentAcc)).toFixed(1)}%`,
      loss: mean(recent).toFixed(3),
    });
    if (step % every === 0 || performance.now() - lastSave > everySeconds * 1000 || step === end) await save();
  }
  optimizer.dispose();
  return { model, config, hash, dir, history, fromCache: false, trainSeconds, step };
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
}
