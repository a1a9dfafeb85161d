/**
 * Accuracy on natural and attacked test sets, in batches.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { type Dataset, slice } from "../data/dataset.ts";
import { isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { pgd, type PgdOptions } from "./pgd.ts";
import { Progress } from "../core/progress.ts";

/** Accuracies measured by {@link evaluate}, as fractions in [0, 1]. */
export interface Accuracy {
  /** Examples evaluated. */
  n: number;
  /** Accuracy on the clean examples. */
  natural: number;
  /** Accuracy under the attack (per-example worst case over restarts), when one was given. */
  adversarial?: number;
}

/** Options of {@link evaluate}. */
export interface EvalOptions {
  /** Examples per batch (default 200). */
  batch?: number;
  /** Evaluate on the first `limit` examples only. */
  limit?: number;
  /** The attack: PGD options (FGSM is `{steps: 1, stepSize: eps, randomStart: false}`). */
  attack?: PgdOptions;
  /** Label of the progress line; no progress when absent. */
  label?: string;
}

/** Accuracy of `model` on `data`, natural and under `options.attack`. */
export async function evaluate(model: tfl.LayersModel, data: Dataset, options: EvalOptions = {}): Promise<Accuracy> {
  const n = Math.min(options.limit ?? data.n, data.n);
  const batch = options.batch ?? 200;
  let natural = 0, adversarial = 0;
  const progress = options.label ? new Progress(options.label, n) : undefined;
  for (let start = 0; start < n; start += batch) {
    const { x, y } = slice(data, start, Math.min(batch, n - start));
    const ok = tf.tidy(() => isCorrect(logits(model, x), y).cast("float32").sum());
    natural += (await ok.data())[0];
    ok.dispose();
    if (options.attack) {
      const seed = (options.attack.seed ?? 0) + start;
      // `?? data.range`, not a spread default: an attack with `range: undefined` must not clip to [0, 1].
      const r = await pgd(model, x, y, { ...options.attack, range: options.attack.range ?? data.range, seed });
      adversarial += r.robust.filter(Boolean).length;
      r.adv.dispose();
    }
    x.dispose();
    y.dispose();
    const done = Math.min(start + batch, n);
    progress?.update(done, {
      nat: `${(100 * natural / done).toFixed(1)}%`,
      ...(options.attack ? { adv: `${(100 * adversarial / done).toFixed(1)}%` } : {}),
    });
  }
  return { n, natural: natural / n, ...(options.attack ? { adversarial: adversarial / n } : {}) };
}
