/**
 * The attack suite of Tables 1 and 2: transfer rows craft on the source and
 * score on the target; the worst case over rows is exact per example; saved
 * examples past ε, out of range or not finite are refused; shards merge into
 * exactly the unsharded outcomes; and both tables run end to end (smoke).
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  advName,
  type Attack,
  type AttackOutcome,
  capacityShape,
  isCorrect,
  loadMnist,
  logits,
  mergeOutcomes,
  mnistNet,
  pgd,
  presetConfig,
  redrawAll,
  runExperiment,
  runSuite,
  slice,
  targetClass,
  tf,
  validateAdversarial,
  worstCase,
  writeResults,
} from "../mod.ts";
import { experiment as table1, rows as table1Rows } from "../experiments/table1.ts";
import { experiment as table2, rows as table2Rows } from "../experiments/table2.ts";
import { findExperiment } from "../experiments/figures.ts";
import { cifarFixture, onFastBackend } from "./fixtures/cifar_data.ts";

await tf.setBackend("cpu");
const test = await loadMnist("test", { limit: 8 });
const target = mnistNet(capacityShape(2), 1), source = mnistNet(capacityShape(2), 2);
const pgdFrom = (from: string): Attack => ({
  name: `pgd from ${from}`,
  method: "pgd",
  eps: 0.3,
  steps: 5,
  stepSize: 0.1,
  restarts: 2,
  source: from,
});

Deno.test("a transfer row crafts on the source and scores on the target", async () => {
  const [out] = await runSuite({ T: target, S: source }, "T", test, [pgdFrom("S")], {
    indices: [0, 1, 2, 3],
    batch: 4,
    seed: 5,
  });
  const { x, y } = slice(test, 0, 4);
  // The same attack by hand: PGD on the source (the suite's seed for a batch starting at example 0), scored on the target.
  const r = await pgd(source, x, y, {
    eps: 0.3,
    steps: 5,
    stepSize: 0.1,
    restarts: 2,
    range: [0, 1],
    seed: 5 * 1000003,
  });
  const ok = tf.tidy(() => isCorrect(logits(target, r.adv), y));
  assertEquals(out.correct, Array.from(await ok.data(), (v) => v === 1));
  assertEquals(out.index, [0, 1, 2, 3]);
  // Scored on the source itself it would be the source's own (white-box) outcome, which differs here.
  const [own] = await runSuite({ S: source }, "S", test, [pgdFrom("S")], { indices: [0, 1, 2, 3], batch: 4, seed: 5 });
  assertEquals(own.correct, r.robust);
  tf.dispose([x, y, ok, r.adv]);
});

Deno.test("the worst case over rows is per example, not the lowest row", () => {
  const row = (name: string, correct: boolean[]): AttackOutcome => ({ name, index: [0, 1, 2, 3], correct, loss: [] });
  const a = row("a", [true, false, true, true]), b = row("b", [true, true, false, true]);
  const w = worstCase([a, b]);
  assertEquals(w.correct, [true, false, false, true]);
  assertEquals(w.accuracy, 0.5); // each row alone: 75%
  assertThrows(() => worstCase([a, { ...b, index: [0, 1, 2, 5] }]), RangeError, "different examples");
});

Deno.test("every row of both tables saves its examples to a folder of its own (CW and CW+ once collided)", () => {
  const files = [
    ...table1Rows(presetConfig(table1, "mnist", "quick")).map(advName),
    ...table2Rows(presetConfig(table2, "cifar10", "quick")).map(advName),
  ];
  assertEquals(files.length, 27);
  assertEquals(new Set(files).size, files.length, files.join(", "));
});

Deno.test("the validator refuses saved examples past ε, outside the pixel range, not finite or of another shape", () => {
  const x = new Float32Array([0, 0.5, 1, 0.2]);
  assertEquals(validateAdversarial(new Float32Array([0.3, 0.2, 0.7, 0.2]), x, 0.3, [0, 1]), []);
  assertEquals(validateAdversarial(new Float32Array([0.30009, 0.5, 1, 0.2]), x, 0.3, [0, 1]), []); // within 1e-4
  assert(validateAdversarial(new Float32Array([0.31, 0.5, 1, 0.2]), x, 0.3, [0, 1])[0].includes("more than ε = 0.3"));
  assert(
    validateAdversarial(new Float32Array([0, 0.5, 1.1, 0.2]), x, 0.3, [0, 1])[0].includes("outside the pixel range"),
  );
  assert(validateAdversarial(new Float32Array([0, NaN, 1, 0.2]), x, 0.3, [0, 1])[0].includes("not finite"));
  assert(validateAdversarial(new Float32Array(3), x, 0.3, [0, 1])[0].startsWith("shape"));
});

Deno.test("shards of whole batches merge into exactly the unsharded outcomes", async () => {
  const attacks: Attack[] = [pgdFrom("T"), { ...pgdFrom("T"), name: "targeted", method: "targeted" }, pgdFrom("S")];
  const run = (indices: number[]) =>
    runSuite({ T: target, S: source }, "T", test, attacks, { indices, batch: 2, seed: 3 });
  const whole = await run([0, 1, 2, 3, 4, 5, 6, 7]);
  // Shard k of 2 takes the batches b with b mod 2 = k: examples 0-1 and 4-5, then 2-3 and 6-7.
  const merged = mergeOutcomes([await run([2, 3, 6, 7]), await run([0, 1, 4, 5])]);
  assertEquals(merged, whole);
  assertThrows(() => mergeOutcomes([whole, whole]), RangeError, "in two shards");
});

Deno.test("the targeted attack's class is a wrong one, fixed by the seed and the test index", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const t = targetClass(i % 10, i, 0);
    assert(t !== i % 10 && t >= 0 && t < 10);
    assertEquals(targetClass(i % 10, i, 0), t);
    seen.add(t);
  }
  assertEquals(seen.size, 10);
});

Deno.test("table1 smoke preset end to end: every row, the worst cases, the checks, files, redraw", () =>
  onFastBackend(async () => {
    const tmp = await Deno.makeTempDir();
    const config = presetConfig(table1, "mnist", "smoke");
    const r = await runExperiment(table1, config, { preset: "smoke", cacheDir: tmp, quiet: true });
    assertEquals(r.rows.length, 20); // 17 of the paper, 3 beyond it
    assertEquals(Object.keys(r.models).sort(), ["A", "A_nat", "A_prime", "B"]);
    assertEquals(r.worst.map((w) => w.name), [
      "worst case, all white-box",
      "worst case, all transfer",
      "worst case, APGD-CE + APGD-T + Square",
      "worst case, every attack",
    ]);
    for (const o of r.outcomes) assertEquals(o.index, [0, 1, 2, 3, 4, 5]);
    assert(r.checks.length >= 8, r.checks.map((c) => c.name).join("; "));
    assert(r.checks.find((c) => c.name.startsWith("the saved examples"))!.pass);
    const written = await writeResults(table1, r, `${tmp}/out`);
    assert(written.some((p) => p.endsWith("table1_mnist.png")));
    const md = await Deno.readTextFile(`${tmp}/out/table1_mnist.md`);
    assert(/\|\s*paper\s*\|/.test(md) && md.includes("worst case, every attack") && md.includes("## Checks"), md);
    const { failed } = await redrawAll(`${tmp}/out`, findExperiment);
    assertEquals(failed, []);
    await Deno.remove(tmp, { recursive: true });
  }));

Deno.test("table2 smoke preset end to end on fixture CIFAR-10 data", () =>
  onFastBackend(async () => {
    const tmp = await Deno.makeTempDir();
    const config = presetConfig(table2, "cifar10", "smoke");
    const r = await runExperiment(table2, config, {
      preset: "smoke",
      cacheDir: tmp,
      quiet: true,
      data: { train: cifarFixture(64, 1), test: cifarFixture(8, 2) },
    });
    assertEquals(r.rows.length, 13); // 10 of the paper, 3 beyond it (the smoke PGD 3×1 to check APGD-CE against is a paper row)
    assertEquals(Object.keys(r.models).sort(), ["A", "A_nat", "A_prime"]);
    assertEquals(r.rows.filter((row) => row.group === "transfer").map((row) => row.source), [
      "A_prime",
      "A_prime",
      "A_prime",
      "A_nat",
      "A_nat",
    ]);
    assert(r.epsCurve.at(-1)!.eps === 255);
    await Deno.remove(tmp, { recursive: true });
  }));
