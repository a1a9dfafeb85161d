/**
 * Per-example losses on logits, the objectives that attacks maximise and
 * training minimises.
 *
 * @module
 */
import { tf } from "../core/tf.ts";

/** Cross-entropy of softmax(logits) [n, k] against integer labels [n]; returns [n]. */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const picked = logits.mul(tf.oneHot(labels, k)).sum(1);
    return tf.logSumExp(logits, 1).sub(picked) as tf.Tensor1D;
  });
}

/**
 * The Carlini–Wagner margin loss as Madry et al. maximise it:
 * `-max(z_y - max_{j≠y} z_j + κ, 0)`, per example [n]. The true class is masked
 * with a large negative before the max over the others (multiplying it by zero
 * would be wrong whenever every logit is negative).
 */
export function cwLoss(logits: tf.Tensor2D, labels: tf.Tensor1D, kappa = 0): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const isTrue = tf.oneHot(labels, k).cast("bool");
    const trueLogit = logits.mul(isTrue.cast("float32")).sum(1);
    const otherMax = tf.where(isTrue, tf.fill(logits.shape, -1e9), logits).max(1);
    return tf.relu(trueLogit.sub(otherMax).add(kappa)).neg() as tf.Tensor1D;
  });
}

/** Which of the predictions (argmax of logits [n, k]) equal the labels [n]; returns bool [n]. */
export function isCorrect(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => logits.argMax(1).equal(labels.cast("int32")) as tf.Tensor1D);
}

/**
 * The logits of each row [n, k] in descending order, the first `m` of them
 * ([n, m]), as successive masked maxima: unlike `tf.topk` this has a
 * gradient (TF.js registers none for TopK). Ties go to the lower index.
 */
function topLogits(logits: tf.Tensor2D, m: number): tf.Tensor2D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    if (m > k) throw new RangeError(`the DLR loss needs at least ${m} classes, got ${k}`);
    const out: tf.Tensor1D[] = [];
    let rest: tf.Tensor2D = logits;
    for (let j = 0; j < m; j++) {
      out.push(rest.max(1));
      if (j < m - 1) rest = tf.where(tf.oneHot(rest.argMax(1), k).cast("bool"), tf.fill(rest.shape, -1e9), rest);
    }
    return tf.stack(out, 1) as tf.Tensor2D;
  });
}

/**
 * The difference of logits ratio (Croce & Hein 2020), untargeted, per example
 * [n]: `−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)` with π the descending
 * order of the logits. Invariant to shifting and scaling the logits; positive
 * once the example is misclassified. Needs at least 3 classes.
 */
export function dlrLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const isTrue = tf.oneHot(labels, k).cast("bool");
    const trueLogit = logits.mul(isTrue.cast("float32")).sum(1);
    const otherMax = tf.where(isTrue, tf.fill(logits.shape, -1e9), logits).max(1);
    const top = topLogits(logits, 3);
    const scale = top.slice([0, 0], [-1, 1]).sub(top.slice([0, 2], [-1, 1])).reshape([-1]).add(1e-12);
    return trueLogit.sub(otherMax).div(scale).neg() as tf.Tensor1D;
  });
}

/**
 * The targeted difference of logits ratio (Croce & Hein 2020), per example
 * [n]: `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`, t the target class.
 * Maximising it moves the example toward class t. Needs at least 4 classes.
 */
export function dlrTargetedLoss(logits: tf.Tensor2D, labels: tf.Tensor1D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const trueLogit = logits.mul(tf.oneHot(labels, k)).sum(1);
    const targetLogit = logits.mul(tf.oneHot(targets, k)).sum(1);
    const top = topLogits(logits, 4);
    const scale = top.slice([0, 0], [-1, 1])
      .sub(top.slice([0, 2], [-1, 1]).add(top.slice([0, 3], [-1, 1])).mul(0.5))
      .reshape([-1]).add(1e-12);
    return trueLogit.sub(targetLogit).div(scale).neg() as tf.Tensor1D;
  });
}
