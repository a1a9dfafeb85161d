/**
 * Square Attack: the schedule of square sizes (rescaled to the budget), that
 * it reads only forward passes (through a black box with no graph, never
 * under a gradient tape), that every point stays in the ε-ball and the pixel
 * range within the budget, and that it brings a small naturally trained net's
 * accuracy down.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { isCorrect, loadMnist, logits, slice, square, squareFraction, squareSide, tf } from "../mod.ts";
import { tinyTrainedNet } from "./fixtures/tiny_mnist.ts";

await tf.setBackend("cpu");
const model = await tinyTrainedNet();
const test = await loadMnist("test", { limit: 16 });
const { x, y } = slice(test, 0, 16);

Deno.test("the square's share of the image: 0.8, halved after iterations 10, 50, 200, ... 8000 of 10,000", () => {
  assertEquals([0, 10, 11, 50, 51, 200, 201].map((i) => squareFraction(i, 10000)), [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1]);
  assertEquals(squareFraction(9999, 10000), 0.8 / 512);
  // Another budget rescales the iterations: of 1,000 queries, iteration 2 is iteration 20 of 10,000.
  assertEquals([1, 2, 5, 6].map((i) => squareFraction(i, 1000)), [0.8, 0.4, 0.4, 0.2]);
  // AutoAttack's 5,000: halved after iteration 5 (10 of 10,000), again after 25.
  assertEquals([5, 6, 25, 26].map((i) => squareFraction(i, 5000)), [0.8, 0.4, 0.4, 0.2]);
  assertEquals(squareFraction(0, 100, 0.05), 0.05);
  // Sides on a 28×28 image: √(0.8·784) ≈ 25.0; never 0, never the whole side.
  assertEquals([squareSide(0.8, 28, 28), squareSide(0.4, 28, 28), squareSide(1e-4, 28, 28)], [25, 18, 1]);
  assertEquals(squareSide(1, 28, 28), 27);
});

Deno.test("Square uses only forward passes: a black box with no graph, never called under a gradient tape", async () => {
  let calls = 0;
  const blackBox = (v: tf.Tensor4D) => {
    calls++;
    assertEquals(tf.engine().state.gradientDepth, 0, "called while a gradient is being recorded");
    // Numbers only: a gradient through this output would fail ("not a function of x").
    return tf.tensor2d(Array.from(logits(model, v).dataSync()), [v.shape[0], 10]);
  };
  const before = tf.memory().numTensors;
  const budget = 40;
  const r = await square(blackBox, x, y, { eps: 0.1, queries: budget, seed: 1 });
  // One pass on the clean images, one on the stripes, then one per iteration while any example is left.
  assert(calls >= 2 && calls <= budget + 1, `${calls} calls`);
  assert(Array.from(r.queries).every((q) => q <= budget), `queries ${r.queries}`);
  // Same seed, same result, with the model itself as the scorer.
  const again = await square(model, x, y, { eps: 0.1, queries: budget, seed: 1 });
  assertEquals(again.robust, r.robust);
  assertEquals(Array.from(again.queries), Array.from(r.queries));
  tf.dispose([r.adv, again.adv]);
  assertEquals(tf.memory().numTensors, before);
  await assertRejects(() => square(model, x, y, { eps: 0.1, queries: 0 }), RangeError, "queries must be");
});

Deno.test("Square stays in the ε-ball and the pixel range, and breaks a naturally trained net", async () => {
  const eps = 0.1;
  const r = await square(model, x, y, { eps, queries: 300, seed: 0 });
  const [a, b] = [await r.adv.data(), await x.data()];
  for (let i = 0; i < a.length; i++) {
    assert(a[i] >= 0 && a[i] <= 1, `pixel ${i} = ${a[i]} outside [0, 1]`);
    assert(Math.abs(a[i] - b[i]) <= eps + 1e-6, `pixel ${i} moved ${a[i] - b[i]}`);
  }
  const [okClean, okAdv] = tf.tidy(() => [isCorrect(logits(model, x), y).sum(), isCorrect(logits(model, r.adv), y)]);
  const clean = (await okClean.data())[0];
  const still = Array.from(await okAdv.data(), (v) => v === 1);
  // The flags are what the returned points score.
  assertEquals(still, r.robust);
  const robust = r.robust.filter(Boolean).length;
  const spent = Array.from(r.queries).filter((q) => q > 0);
  console.log(
    `ε ${eps}, 16 examples: clean ${clean}, after Square (300 queries) ${robust}; queries spent per attacked ` +
      `example ${spent.join(" ")}`,
  );
  assert(robust <= clean / 2, `Square left ${robust} of ${clean} correct`);
  tf.dispose([r.adv, okClean, okAdv]);
});
