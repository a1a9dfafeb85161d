import { assert, assertEquals, assertSnapshot, assertThrows } from "./assert.ts";
import { gather, loadMnist, parseExperimentArgs, pgd, tf, trainModel, UserError } from "../mod.ts";
import {
  DEFAULTS,
  figure,
  iterationsToFraction,
  PRESETS,
  type Results,
  run,
  SPEC,
  table,
  trainConfigOf,
  write,
} from "../experiments/figure2.ts";
import * as figure1 from "../experiments/figure1.ts";
import { redrawAll } from "../experiments/figures.ts";

await tf.setBackend("cpu");

const SMOKE = { ...DEFAULTS, ...PRESETS.smoke };

/** A small results object with fixed numbers, for the spec and table snapshots. */
function fixture(): Results {
  const curve = (top: number, r: number) => Array.from({ length: 6 }, (_, t) => top * (1 - Math.exp(-t)) + 0.01 * r);
  const train = {
    dataset: "mnist",
    model: { conv1: 2, conv2: 4, fc: 8 },
    eps: 0.3,
    attackSteps: 2,
    attackStepSize: 0.1,
    randomStart: true,
    optimizer: "adam",
    lr: 0.001,
    batch: 50,
    steps: 4,
    trainExamples: 400,
    seed: 0,
  } as const;
  const model = (top: number, method: "natural" | "pgd", correct: number) => ({
    train: { ...train, method },
    hash: method,
    fromCache: true,
    trainSeconds: 1,
    cleanPrediction: 7,
    cleanLoss: 0.01,
    correctRestarts: correct,
    curves: [0, 1, 2].map((r) => curve(top, r)),
  });
  return {
    experiment: "figure2",
    dataset: "mnist",
    preset: "smoke",
    config: { ...SMOKE, steps: 5, restarts: 3 },
    seed: 0,
    attackSeed: 2,
    backend: { name: "cpu", detail: "" },
    versions: {},
    wall_seconds: 1,
    example: { index: 1234, label: 7 },
    models: { natural: model(20, "natural", 0), adversarial: model(0.2, "pgd", 3) },
  };
}

Deno.test("figure 2 spec snapshot", async () => {
  await assertSnapshot("figure2_spec.json", figure(fixture()));
});

Deno.test("figure 2 table states the paper's observations beside the numbers", () => {
  const md = table(fixture());
  for (const s of ["plateaus", "fairly concentrated", "significantly smaller", "figure2_mnist.png", "× lower"]) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
  assert(md.includes("loaded from its cache, not retrained"));
});

Deno.test("iterations to 90% of the rise: first iterate past the mark, 0 when the loss fell", () => {
  assertEquals(iterationsToFraction([0, 5, 8, 9.5, 10]), 3);
  assertEquals(iterationsToFraction([0, 9, 10]), 1);
  assertEquals(iterationsToFraction([3, 2, 1]), 0);
});

Deno.test("figure 2 trains nothing of its own: its training configs are Figure 1's for every preset", () => {
  for (const preset of ["quick", "paper", "smoke"]) {
    const c2 = { ...DEFAULTS, ...(preset === "quick" ? {} : PRESETS[preset]) };
    const c1 = { ...figure1.DEFAULTS, ...(preset === "quick" ? {} : figure1.PRESETS[preset]) };
    for (const kind of ["natural", "adversarial"] as const) {
      assertEquals(trainConfigOf(c2, kind), figure1.trainConfig(c1, kind), `${preset} ${kind}`);
    }
  }
});

Deno.test("figure 2 command line: cifar10 is refused as not built yet, unknown datasets are named", () => {
  assertThrows(() => parseExperimentArgs(["--dataset", "cifar10"], SPEC), UserError, "not available yet");
  assertThrows(() => parseExperimentArgs(["--dataset", "svhn"], SPEC), UserError, 'got "svhn"');
  assertThrows(() => parseExperimentArgs(["--example", "10000"], SPEC), UserError, "--example");
  const ok = parseExperimentArgs(["--dataset", "mnist", "--preset", "smoke"], SPEC);
  assert("config" in ok && ok.config.dataset === "mnist" && ok.config.steps === SMOKE.steps);
});

Deno.test("figure2 smoke preset end to end: curves, figure files, cache reuse, redraw, equal to plain PGD", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const test = await loadMnist("test");
  const results = await run(SMOKE, { preset: "smoke", cacheDir, quiet: true, train, test });
  for (const kind of ["natural", "adversarial"] as const) {
    const m = results.models[kind];
    assertEquals(m.curves.length, SMOKE.restarts);
    for (const c of m.curves) {
      assertEquals(c.length, SMOKE.steps + 1);
      assert(c.every((v) => Number.isFinite(v) && v >= 0));
    }
    // Restarts start at different random points.
    assert(new Set(m.curves.map((c) => c[0])).size > 1, `${kind}: all restarts start with the same loss`);
  }
  assertEquals(results.backend.name, "cpu");
  assertEquals(results.example.label, test.labels[results.example.index]);
  const written = await write(results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "figure2_mnist.results.json",
    "figure2_mnist.vl.json",
    "figure2_mnist.svg",
    "figure2_mnist.png",
    "figure2_mnist.md",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/figure2_mnist.results.json`));
  for (const key of ["config", "seed", "backend", "versions", "wall_seconds", "models", "example"]) {
    assert(key in saved);
  }

  // A second run reuses both cached models, holds no tensors afterwards and gives the same curves.
  const before = tf.memory().numTensors;
  const again = await run(SMOKE, { preset: "smoke", cacheDir, quiet: true, train, test });
  assertEquals(tf.memory().numTensors, before);
  assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
  assertEquals(again.models.adversarial.curves, results.models.adversarial.curves);

  // The last recorded loss of each restart is the final loss of a plain PGD run with the same seed.
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await trainModel(trainConfigOf(SMOKE, kind), { data: train, cacheDir, quiet: true });
    assert(t.fromCache);
    const { x, y } = gather(test, Array(SMOKE.restarts).fill(results.example.index));
    const plain = await pgd(t.model, x, y, {
      eps: SMOKE.eps,
      steps: SMOKE.steps,
      stepSize: SMOKE.stepSize,
      range: [0, 1],
      restarts: 1,
      seed: results.attackSeed,
    });
    assertEquals(results.models[kind].curves.map((c) => c[SMOKE.steps]), Array.from(plain.finalLosses[0]), kind);
    tf.dispose([plain.adv, x, y]);
    t.model.dispose();
  }

  // The figures task redraws from the results alone.
  const svg = await Deno.readTextFile(`${out}/figure2_mnist.svg`);
  await Deno.remove(`${out}/figure2_mnist.svg`);
  await redrawAll(out);
  assertEquals(await Deno.readTextFile(`${out}/figure2_mnist.svg`), svg);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});
