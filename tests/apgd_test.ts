/**
 * APGD: the checkpoint schedule, the step-size rule and the momentum step on
 * hand-made cases, the projection, the DLR losses against hand-computed
 * values, the attack's invariants, and APGD-CE (then APGD-T) never weaker than
 * our PGD-100 on the same examples of a small trained net.
 */
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  apgd,
  apgdCheckpoints,
  apgdTargeted,
  dlrLoss,
  dlrTargetedLoss,
  halveStepSize,
  isCorrect,
  loadMnist,
  logits,
  momentumStep,
  pgd,
  projectLinf,
  slice,
  tf,
} from "../mod.ts";
import { tinyTrainedNet } from "./fixtures/tiny_mnist.ts";

await tf.setBackend("cpu");
const model = await tinyTrainedNet();
const test = await loadMnist("test", { limit: 16 });
const { x, y } = slice(test, 0, 16);

Deno.test("APGD's checkpoints: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), ⌈p_j·N⌉", () => {
  // Gaps 22, 19, 16, 13, 10, 7, then 6 (the floor): 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (1.05 is past the end).
  assertEquals(apgdCheckpoints(100), [0, 22, 41, 57, 70, 80, 87, 93, 99]);
  assertEquals(apgdCheckpoints(1000), [0, 220, 410, 570, 700, 800, 870, 930, 990]);
  // Ten iterations: ⌈9.3⌉ and ⌈9.9⌉ are both 10, one checkpoint.
  assertEquals(apgdCheckpoints(10), [0, 3, 5, 6, 7, 8, 9, 10]);
  assertThrows(() => apgdCheckpoints(0), RangeError, "steps must be an integer ≥ 1");
});

/** A loss history of `steps` steps (steps + 1 values) that rises in exactly `rises` of them. */
function history(steps: number, rises: number): number[] {
  const h = [0];
  for (let t = 0; t < steps; t++) h.push(h[t] + (t < rises ? 1 : -0.25));
  return h;
}

Deno.test("the step-size rule halves where the loss rose in at most 75% of the steps, or stalled unhalved", () => {
  const halve = halveStepSize({
    history: [
      history(22, 17), // rose in 17 of 22 > 16.5: moving, and improving
      history(22, 16), // 16 ≤ 16.5: oscillating
      history(16, 12), // 12 = 0.75·16: at most 75%, halved (the paper's "fewer than" would not)
      history(22, 20), // moving, but the best loss did not improve and the step was not halved last time
      history(22, 20), // the same, halved last time: kept
      history(22, 22), // every step rose, best improved
    ],
    halvedLast: [false, false, false, false, true, true],
    bestAtLast: [0, 0, 0, 5, 5, 0],
    best: [16, 15, 11, 5, 5, 22],
  });
  assertEquals(halve, [false, true, true, true, false, false]);
  // ρ is a parameter: at ρ = 0.8 the first (17 ≤ 17.6) oscillates too.
  assertEquals(
    halveStepSize({ history: [history(22, 17)], halvedLast: [true], bestAtLast: [0], best: [16], rho: 0.8 }),
    [true],
  );
});

Deno.test("the momentum step on a hand-made case: z = P(x + η·sign g), then α(z − x) + (1 − α)(x − x_prev)", async () => {
  // One example, 4 pixels around 0.5, ε 0.3 (ball [0.2, 0.8]), η 0.2, α 0.75.
  const x0 = tf.tensor4d([0.5, 0.5, 0.5, 0.5], [1, 1, 4, 1]);
  const prev = tf.tensor4d([0.5, 0.5, 0.5, 0.6], [1, 1, 4, 1]);
  const cur = tf.tensor4d([0.6, 0.4, 0.5, 0.75], [1, 1, 4, 1]);
  const grad = tf.tensor4d([1, 1, -1, 2], [1, 1, 4, 1]);
  const next = momentumStep(cur, prev, grad, x0, [0.2], 0.75, 0.3, [0, 1]);
  // z = [0.8, 0.6, 0.3, 0.8 (0.95 projected)]; 0.6 + 0.75·0.2 + 0.25·0.1 = 0.775; 0.4 + 0.15 − 0.025 = 0.525;
  // 0.5 − 0.15 = 0.35; 0.75 + 0.75·0.05 + 0.25·0.15 = 0.825, projected to 0.8.
  assertClose(await next.data(), [0.775, 0.525, 0.35, 0.8], 1e-6, "momentum step");
  // α = 1 is APGD's first step, the plain projected signed-gradient step z.
  const first = momentumStep(cur, prev, grad, x0, [0.2], 1, 0.3, [0, 1]);
  assertClose(await first.data(), [0.8, 0.6, 0.3, 0.8], 1e-6, "first step");
  // The step is per example: two examples, η 0.2 and 0.05.
  const twice = (t: tf.Tensor) => t.concat(t);
  const two = momentumStep(twice(cur), twice(prev), twice(grad), twice(x0), [0.2, 0.05], 1, 0.3, [0, 1]);
  assertClose(await two.data(), [0.8, 0.6, 0.3, 0.8, 0.65, 0.45, 0.45, 0.8], 1e-6, "per-example step");
  tf.dispose([x0, prev, cur, grad, next, first, two]);
});

Deno.test("the projection keeps ‖δ‖∞ ≤ ε and pixels in range", async () => {
  const v = tf.randomUniform([4, 5, 5, 3], -1, 2, "float32", 1);
  const x0 = tf.randomUniform([4, 5, 5, 3], 0, 1, "float32", 2);
  const p = projectLinf(v, x0, 0.1, [0, 1]);
  const [a, b] = [await p.data(), await x0.data()];
  for (let i = 0; i < a.length; i++) {
    assert(a[i] >= 0 && a[i] <= 1, `pixel ${i} = ${a[i]}`);
    assert(Math.abs(a[i] - b[i]) <= 0.1 + 1e-6, `pixel ${i} moved ${a[i] - b[i]}`);
  }
  tf.dispose([v, x0, p]);
});

Deno.test("the DLR losses against hand-computed values, with gradients", async () => {
  // Row 1, label 1 (top): sorted 4, 3, 2, 1, 0. Untargeted −(4 − 3)/(4 − 2) = −0.5; target 3: −(4 − 3)/(4 − 1.5) = −0.4.
  // Row 2, label 1, misclassified: sorted 5, 3, 2, 1, 0. −(1 − 5)/(5 − 2) = 4/3; target 4: −(1 − 3)/(5 − 1.5) = 4/7.
  const z = tf.tensor2d([[1, 4, 2, 3, 0], [5, 1, 2, 0, 3]]);
  const labels = tf.tensor1d([1, 1], "int32"), targets = tf.tensor1d([3, 4], "int32");
  const u = dlrLoss(z, labels), t = dlrTargetedLoss(z, labels, targets);
  assertClose(await u.data(), [-0.5, 4 / 3], 1e-6, "untargeted DLR");
  assertClose(await t.data(), [-0.4, 4 / 7], 1e-6, "targeted DLR");
  // Invariant to shifting and scaling the logits.
  const scaled = tf.tidy(() => dlrLoss(z.mul(3).add(7) as tf.Tensor2D, labels));
  assertClose(await scaled.data(), [-0.5, 4 / 3], 1e-5, "shifted and scaled");
  // Gradient of row 1's targeted loss: −(z1 − z3)/D, D = z1 − (z2 + z0)/2 (π3 = 2, π4 = 0). At the point: D = 2.5.
  const g = tf.grad((v: tf.Tensor) => dlrTargetedLoss(v as tf.Tensor2D, labels, targets).sum())(z);
  const row = Array.from((await g.data()).slice(0, 5));
  // ∂/∂z1 = −1/D + (z1 − z3)/D² = −0.4 + 0.16; ∂/∂z3 = 1/D; ∂/∂z2 = ∂/∂z0 = −(z1 − z3)/(2D²) = −0.08.
  assertClose(row, [-0.08, -0.24, -0.08, 0.4, 0], 1e-5, "gradient of the targeted DLR loss");
  tf.dispose([z, labels, targets, u, t, scaled, g]);
});

Deno.test("APGD stays in the ε-ball and the pixel range, is seeded, and leaves no tensors behind", async () => {
  const before = tf.memory().numTensors;
  const o = { eps: 0.1, steps: 10, seed: 3 };
  const [r1, r2] = [await apgd(model, x, y, o), await apgd(model, x, y, o)];
  const [a, b] = [await r1.adv.data(), await x.data()];
  for (let i = 0; i < a.length; i++) {
    assert(a[i] >= 0 && a[i] <= 1 && Math.abs(a[i] - b[i]) <= 0.1 + 1e-6, `pixel ${i}`);
  }
  assertEquals(r1.robust, r2.robust);
  assertEquals(Array.from(await r2.adv.data()), Array.from(a));
  // Every example reported broken is misclassified at its returned point.
  const ok = tf.tidy(() => isCorrect(logits(model, r1.adv), y));
  const correct = Array.from(await ok.data(), (v) => v === 1);
  r1.robust.forEach((rob, i) => assert(rob || !correct[i], `example ${i} is reported broken but classified correctly`));
  tf.dispose([r1.adv, r2.adv, ok]);
  assertEquals(tf.memory().numTensors, before);
  await assertRejects(() => apgd(model, x, y, { eps: 0.1, target: [1] }), RangeError, "dlr-targeted");
  await assertRejects(() => apgd(model, x, y, { eps: 2 }), RangeError, "eps must be in (0, 1]");
});

Deno.test("APGD-CE-100 is never weaker than PGD-100 with one restart, and APGD-T only lowers accuracy", async () => {
  const eps = 0.05;
  const okT = tf.tidy(() => isCorrect(logits(model, x), y).sum());
  const clean = (await okT.data())[0];
  okT.dispose();
  const p = await pgd(model, x, y, { eps, steps: 100, stepSize: 2.5 * eps / 100, restarts: 1, seed: 0 });
  const a = await apgd(model, x, y, { eps, steps: 100, seed: 0 });
  const count = (f: boolean[]) => f.filter(Boolean).length;
  // APGD-T on what APGD-CE left (25 iterations per target to keep the test short).
  const left = a.robust.flatMap((r, i) => r ? [i] : []);
  const idx = tf.tensor1d(left, "int32");
  const [xs, ys] = tf.tidy(() => [tf.gather(x, idx), tf.gather(y, idx) as tf.Tensor1D]);
  const t = await apgdTargeted(model, xs, ys, { eps, steps: 25, seed: 0 });
  console.log(
    `ε ${eps}, ${x.shape[0]} examples: clean ${clean}, PGD-100 robust ${count(p.robust)}, ` +
      `APGD-CE-100 robust ${count(a.robust)}, then APGD-T (9 targets × 25) robust ${count(t.robust)}`,
  );
  assert(count(a.robust) <= count(p.robust), `APGD-CE ${count(a.robust)} > PGD ${count(p.robust)}`);
  assert(count(t.robust) <= count(a.robust));
  assert(count(p.robust) < clean, "the attack does something at this ε");
  tf.dispose([p.adv, a.adv, t.adv, idx, xs, ys]);
});
