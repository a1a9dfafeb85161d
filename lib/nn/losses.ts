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
