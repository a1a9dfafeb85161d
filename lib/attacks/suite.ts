/**
 * An attack suite as data, run against a target model with per-example
 * outcomes (Madry et al., Tables 1 and 2): each attack crafts its examples on
 * a source model (white-box: the target itself; transfer: another model) and
 * the target scores them. Keeping every example's outcome makes the worst
 * case over any set of attacks exact: an example counts as robust to a set
 * only if no attack of the set breaks it.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { Rng } from "../core/rng.ts";
import { type Dataset, gather } from "../data/dataset.ts";
import { crossEntropy, isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { fgsm, pgd } from "./pgd.ts";
import { apgd, apgdTargeted } from "./apgd.ts";
import { square } from "./square.ts";

/** How an attack crafts its examples. */
export type AttackMethod =
  | "natural"
  | "fgsm"
  | "pgd"
  | "targeted"
  | "cw"
  | "cw+"
  | "apgd-ce"
  | "apgd-t"
  | "square";

/** One attack: a row of the paper's tables. */
export interface Attack {
  /** Its label, e.g. "PGD 40×20 (A)". */
  name: string;
  method: AttackMethod;
  /** L∞ radius in pixel units. */
  eps: number;
  /** Iterations (1 for FGSM and natural; per target for APGD-T; queries for Square). */
  steps: number;
  /** Step size in pixel units. */
  stepSize: number;
  /** Random restarts (1 for FGSM and natural). */
  restarts: number;
  /** The model whose gradients craft the examples (the target's own name for white-box rows). */
  source: string;
  /** κ of the CW loss: 0 for CW, 50 for CW+. */
  kappa?: number;
}

/** What one attack did to every example it was run on. */
export interface AttackOutcome {
  name: string;
  /** Test-set index of each example. */
  index: number[];
  /** Whether the target still classified each example correctly. */
  correct: boolean[];
  /** The target's cross-entropy on each adversarial example. */
  loss: number[];
}

/**
 * The target class of the targeted attack for each example: a wrong class drawn
 * uniformly from the other `classes − 1` by a generator seeded with `seed` and
 * the example's test index (so a shard draws what the whole run draws).
 */
export function targetClass(label: number, index: number, seed: number, classes = 10): number {
  const r = new Rng(seed * 7919 + index + 1).uniform(1, 0, classes - 1)[0];
  const other = Math.min(classes - 2, Math.floor(r));
  return other >= label ? other + 1 : other;
}

/**
 * The adversarial examples of `attack` for `x` (labels `y`, test indices
 * `index`), crafted on `source`. Restarts keep, per example, the first that
 * fools the source, else the one of highest loss on the source: the target is
 * never queried, so a transfer row is a true black-box attack.
 */
export async function craft(
  source: tfl.LayersModel,
  x: tf.Tensor4D,
  y: tf.Tensor1D,
  attack: Attack,
  options: { range: [number, number]; seed: number; index: number[] },
): Promise<tf.Tensor4D> {
  const { range, seed } = options;
  const batchSeed = seed * 1000003 + options.index[0];
  switch (attack.method) {
    case "natural":
      return x.clone();
    case "fgsm":
      return fgsm(source, x, y, { eps: attack.eps, range }) as tf.Tensor4D;
    case "apgd-ce":
    case "apgd-t": {
      const o = { eps: attack.eps, steps: attack.steps, restarts: attack.restarts, range, seed: batchSeed };
      const r = attack.method === "apgd-ce" ? await apgd(source, x, y, o) : await apgdTargeted(source, x, y, o);
      return r.adv;
    }
    case "square":
      return (await square(source, x, y, { eps: attack.eps, queries: attack.steps, range, seed: batchSeed })).adv;
    default: {
      const labels = await y.data();
      const target = attack.method === "targeted"
        ? tf.tensor1d(options.index.map((i, k) => targetClass(labels[k], i, seed)), "int32")
        : undefined;
      const result = await pgd(source, x, y, {
        eps: attack.eps,
        steps: attack.steps,
        stepSize: attack.stepSize,
        restarts: attack.restarts,
        range,
        seed: batchSeed,
        loss: attack.method === "cw" || attack.method === "cw+" ? "cw" : "xent",
        kappa: attack.kappa ?? (attack.method === "cw+" ? 50 : 0),
        target,
      });
      target?.dispose();
      return result.adv;
    }
  }
}

/** Options of {@link runSuite}. */
export interface SuiteOptions {
  /** The examples: test indices into `data`. */
  indices: number[];
  /** Examples per batch (default 100). */
  batch?: number;
  /** Seed of the random starts and the targeted attack's classes. */
  seed: number;
  /** Called with each batch's adversarial examples (float32, as crafted) of each attack, e.g. to save them. */
  onAdversarial?: (attack: Attack, indices: number[], adv: Float32Array) => void | Promise<void>;
  /** Called after each batch with the examples done. */
  onProgress?: (done: number) => void;
}

/**
 * Runs every attack on the target over the examples, crafting on each attack's
 * source (`models[attack.source]`) and scoring on `models[target]`; returns one
 * outcome per attack with every example's flag and loss.
 */
export async function runSuite(
  models: Record<string, tfl.LayersModel>,
  target: string,
  data: Dataset,
  attacks: Attack[],
  options: SuiteOptions,
): Promise<AttackOutcome[]> {
  for (const a of [{ source: target }, ...attacks]) {
    if (!models[a.source]) throw new RangeError(`no model "${a.source}" (have ${Object.keys(models).join(", ")})`);
  }
  const outcomes: AttackOutcome[] = attacks.map((a) => ({ name: a.name, index: [], correct: [], loss: [] }));
  const batch = options.batch ?? 100;
  for (let start = 0; start < options.indices.length; start += batch) {
    const indices = options.indices.slice(start, start + batch);
    const { x, y } = gather(data, indices);
    for (const [k, attack] of attacks.entries()) {
      const adv = await craft(models[attack.source], x, y, attack, {
        range: data.range,
        seed: options.seed,
        index: indices,
      });
      const [okT, lossT] = tf.tidy(() => {
        const z = logits(models[target], adv);
        return [isCorrect(z, y), crossEntropy(z, y)];
      });
      const ok = await okT.data(), loss = await lossT.data();
      if (options.onAdversarial) await options.onAdversarial(attack, indices, await adv.data() as Float32Array);
      tf.dispose([adv, okT, lossT]);
      outcomes[k].index.push(...indices);
      outcomes[k].correct.push(...Array.from(ok, (v) => v === 1));
      outcomes[k].loss.push(...loss);
    }
    tf.dispose([x, y]);
    options.onProgress?.(Math.min(start + batch, options.indices.length));
  }
  return outcomes;
}

/**
 * The per-example worst case over a set of outcomes (of the same examples): an
 * example is robust only if every attack of the set left it correct.
 */
export function worstCase(outcomes: AttackOutcome[]): { correct: boolean[]; accuracy: number } {
  if (!outcomes.length) return { correct: [], accuracy: NaN };
  const n = outcomes[0].correct.length;
  for (const o of outcomes) {
    if (o.index.length !== n || o.index.some((v, i) => v !== outcomes[0].index[i])) {
      throw new RangeError(`worst case over outcomes of different examples (${o.name})`);
    }
  }
  const correct = Array.from({ length: n }, (_, i) => outcomes.every((o) => o.correct[i]));
  return { correct, accuracy: accuracy(correct) };
}

/** The share of `true` in `flags` (NaN when empty). */
export function accuracy(flags: boolean[]): number {
  return flags.length ? flags.filter(Boolean).length / flags.length : NaN;
}

/**
 * Merges the outcomes of shards (disjoint sets of examples, the same attacks)
 * into the outcomes of the whole, ordered by test index.
 */
export function mergeOutcomes(shards: AttackOutcome[][]): AttackOutcome[] {
  if (!shards.length) return [];
  return shards[0].map((first, k) => {
    const rows: [number, boolean, number][] = [];
    for (const s of shards) {
      const o = s[k];
      if (o?.name !== first.name) throw new RangeError(`shards ran different attacks (${o?.name} vs ${first.name})`);
      o.index.forEach((idx, i) => rows.push([idx, o.correct[i], o.loss[i]]));
    }
    rows.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < rows.length; i++) {
      if (rows[i][0] === rows[i - 1][0]) throw new RangeError(`example ${rows[i][0]} is in two shards`);
    }
    return {
      name: first.name,
      index: rows.map((r) => r[0]),
      correct: rows.map((r) => r[1]),
      loss: rows.map((r) => r[2]),
    };
  });
}

/**
 * What is wrong with saved adversarial examples `adv` of the originals `x`
 * (both float32, the same shape): every perturbation must be within ε (plus
 * `tol`, 1e-4 as MadryLab's run_attack.py allows), every pixel in the range,
 * every value finite. Returns one line per kind of problem (empty when valid).
 */
export function validateAdversarial(
  adv: Float32Array,
  x: Float32Array,
  eps: number,
  range: [number, number],
  tol = 1e-4,
): string[] {
  if (adv.length !== x.length) return [`shape: ${adv.length} values, expected ${x.length}`];
  let far = 0, out = 0, nan = 0, worst = 0;
  for (let i = 0; i < adv.length; i++) {
    const v = adv[i];
    if (!Number.isFinite(v)) {
      nan++;
      continue;
    }
    const d = Math.abs(v - x[i]);
    if (d > eps + tol) far++;
    worst = Math.max(worst, d);
    if (v < range[0] || v > range[1]) out++;
  }
  const problems: string[] = [];
  if (nan) problems.push(`${nan} values are not finite`);
  if (far) problems.push(`${far} values are more than ε = ${eps} (+${tol}) from the original (largest ${worst})`);
  if (out) problems.push(`${out} values are outside the pixel range [${range[0]}, ${range[1]}]`);
  return problems;
}
