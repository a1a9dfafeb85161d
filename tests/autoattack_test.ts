/**
 * The standard run (APGD-CE → APGD-T → Square): each attack only on what the
 * earlier ones left, flags that only fall, the final flags the last stage's,
 * valid adversarial examples, no tensors left; and the checks: a softmax
 * output is caught, and Square breaking more than 0.2 points beyond the
 * white-box attacks is a warning.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  autoAttack,
  AUTOATTACK_NAME,
  autoAttackChecks,
  loadMnist,
  type SanityCounts,
  sanityCounts,
  slice,
  tf,
  tfl,
  validateAdversarial,
} from "../mod.ts";
import { tinyTrainedNet } from "./fixtures/tiny_mnist.ts";

await tf.setBackend("cpu");
const model = await tinyTrainedNet();
const test = await loadMnist("test", { limit: 12 });
const { x, y } = slice(test, 0, 12);

Deno.test("the standard run: each attack on what the earlier left, flags only fall, valid examples, checks pass", async () => {
  const before = tf.memory().numTensors;
  const logged: string[] = [];
  const eps = 0.05;
  const r = await autoAttack(model, x, y, {
    eps,
    seed: 4,
    steps: 20,
    targets: 3,
    squareQueries: 50,
    log: (m) => logged.push(m),
  });
  assertEquals(r.name, AUTOATTACK_NAME);
  assert(logged[0].includes("seed 4"), logged[0]);
  assertEquals(r.stages.map((s) => s.name), ["APGD-CE", "APGD-T", "Square"]);
  let previous = r.clean;
  for (const s of r.stages) {
    assertEquals(s.ran, previous.filter(Boolean).length, `${s.name} runs on the examples still robust`);
    s.robust.forEach((f, i) => assert(!f || previous[i], `${s.name} made example ${i} robust again`));
    previous = s.robust;
  }
  assertEquals(r.robust, r.stages[2].robust);
  console.log(
    `ε ${eps}: ${
      [
        "clean",
        ...r.stages.map((s) => s.name),
      ].map((name, k) => `${name} ${(k ? r.stages[k - 1].robust : r.clean).filter(Boolean).length}`).join(", ")
    } of 12`,
  );
  assertEquals(
    validateAdversarial(await r.adv.data() as Float32Array, await x.data() as Float32Array, eps, [0, 1]),
    [],
  );
  const checks = autoAttackChecks(r.sanity, r.stages[1].robust, r.robust);
  assertEquals(checks.filter((c) => !c.pass).map((c) => c.name), []);
  r.adv.dispose();
  assertEquals(tf.memory().numTensors, before);
});

Deno.test("a model that outputs probabilities fails the logits check", async () => {
  const soft = tfl.sequential({ layers: [model, tfl.layers.softmax()] });
  const s = await sanityCounts(soft, x, y, x, new Array(12).fill(false), 0.1, [0, 1]);
  assertEquals(s.probabilityRows, 12);
  const [logitsCheck] = autoAttackChecks(s, [], []);
  assert(!logitsCheck.pass && logitsCheck.detail.includes("12 of 12"), logitsCheck.detail);
  // Flags that disagree with what the examples score are caught too (x itself: the correct ones are not broken).
  assert(s.mismatched > 0);
});

Deno.test("Square breaking more than 0.2 points beyond the white-box attacks is a warning", () => {
  const counts: SanityCounts = {
    examples: 1000,
    probabilityRows: 0,
    zeroGradients: 0,
    changedAcrossPasses: 0,
    problems: [],
    mismatched: 0,
  };
  const flags = (robust: number) => Array.from({ length: 1000 }, (_, i) => i < robust);
  const square = (whiteBox: number, final: number) =>
    autoAttackChecks(counts, flags(whiteBox), flags(final)).find((c) => c.name.startsWith("Square"))!;
  assert(square(500, 498).pass, "2 of 1,000 is 0.2 points: no warning");
  const warned = square(500, 497);
  assert(!warned.pass && warned.detail.includes("50.00% after APGD-CE and APGD-T, 49.70% after Square"), warned.detail);
});
